"""The coaching side of the evaluation feed, the goal history, the sessions' usefulness and the xAPI statements of
check-ins and feedback, each checked against what a generated cohort of more than 1,000 learners was planned to do,
on SQLite and on PostgreSQL; and the administrator's journal, shared reflections only unless asked.

The expected figures are computed here from the plan alone (never from the code under test): the cohort of
tests/cohort.py, plus dated goal check-ins (store.add_check_in), "shared" events, end-of-session answers, and
feedback with planned times (written straight into the feedback table: the store stamps feedback with the time
it is given, and a plan needs its own times).
"""

from __future__ import annotations

import csv
import json
import random
import statistics
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from ralph.models.xapi.base.statements import BaseXapiStatement

import cohort
from companion.catalog import load_catalog
from companion.cli import main
from companion.coaching_exports import write_goals, write_sessions
from companion.exports import write_evaluation
from companion.settings import load_settings
from companion.store import CHECKED_IN, CheckInRow, FeedbackRow, LearnerRow, open_store
from companion.xapi import write_xapi
from conftest import new_database
from sqlalchemy import select

LEARNERS = 1100
BASE = "https://companion.psesd.example.org"
GOALS = {"transformational-value": ("s1", "s1-goal"), "cultural-proficiency": ("s2", "s2-goal-cultural-proficiency")}
RATED = {("cultural-proficiency", "start"): "s1-start-cultural-proficiency", ("cultural-proficiency", "end"): "s2-end-cultural-proficiency"}
COMPETENCIES = ["cultural-proficiency", "racial-equity-advocate", "racial-equity-mindset", "transformational-value"]
STATUSES = ["Not started", "In progress", "Met", "Revised"]
USEFULNESS = ["Not useful", "Somewhat useful", "Useful", "Very useful"]
NOTES = ["", "Asked two families.", " =1+1", "＝1+1", "\t@x", "-2 hires postponed", "CHECK-IN-NOTE on the panel"]
SUGGESTIONS = ["", "", "Shorter videos", "  more time for the case  ", "=HYPERLINK(\"http://x\")", "＠facilitators", "Zebra stripes"]
FEEDBACK_TEXT = "FEEDBACK-TEXT about what you wrote: <b>keep going</b>"
HOSTILE_NAMES = {0: " =1+1", 1: "＝1+1", 2: "\t@x"}  # the first three learners on the roster get these names


def safe(cell: str) -> str:
    """What a spreadsheet-safe export must show for text ``cell`` (the rule, written independently)."""
    body = cell.lstrip(" \t\r\n\u3000\xa0")
    if cell[:1] in ("\t", "\r") or body[:1] in ("=", "+", "-", "@", "＝", "＋", "－", "＠"):
        return "'" + cell
    return cell


def day(moment) -> str:
    return moment.astimezone(timezone.utc).date().isoformat() if moment else ""


def moment(at) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="seconds") if at else ""


def database(kind: str, tmp, request) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'companion.db'}"
    return new_database(request.getfixturevalue("postgres_url"))


class Coaching:
    """What the cohort was planned to do beyond tests/cohort.py: check-ins, sharing, session answers, feedback."""

    def __init__(self, plans, now, seed=4242):
        rng = random.Random(seed)
        self.now = now
        self.check_ins = []  # dicts: username, session, activity, status, note, at (and id once stored)
        self.shared = {}  # (username, activity) -> first "shared" event time
        self.shared_events = []  # bulk_save items
        self.answers = {}  # (username, session) -> the SessionComplete value that stands
        self.answer_saves = []  # bulk_save items
        self.feedback = []  # dicts: username, activity, author, at, check_in (index into check_ins or None)
        self.names = {}
        self.extra_times = {}
        roster = [p for p in plans if p.on_roster]
        for n, name in HOSTILE_NAMES.items():
            self.names[roster[n].username] = name
        for plan in plans:
            latest = {}
            for item in plan.saves:
                latest[item["activity_id"]] = item
            # Session answers: the cohort's own, or an answer given again just after (the one that stands).
            for session in ("s1", "s2"):
                done = latest.get(f"{session}-complete")
                if done is None:
                    continue
                self.answers[(plan.username, session)] = done["value"]
                if rng.random() < 0.6:
                    value = {"useful": rng.choice(USEFULNESS + [None]), "improve": rng.choice(SUGGESTIONS)}
                    at = done["at"] + timedelta(microseconds=1)
                    self.answer_saves.append(dict(username=plan.username, session_id=session, activity_id=f"{session}-complete",
                                                  verb="responded", value=value, at=at))
                    self.answers[(plan.username, session)] = value
                    self.extra_times.setdefault(plan.username, []).append(at)
            # Sharing: most shared reflections have a "shared" event at the save; some were shared twice.
            for item in plan.saves:
                if item.get("shared") and rng.random() < 0.7:
                    key = (plan.username, item["activity_id"])
                    self.shared.setdefault(key, item["at"])
                    self.shared_events.append(dict(username=plan.username, session_id=item["session_id"], activity_id=item["activity_id"],
                                                   verb="shared", value=item["value"], at=item["at"], event_only=True))
                    if rng.random() < 0.2:
                        self.shared_events.append(dict(username=plan.username, session_id=item["session_id"], activity_id=item["activity_id"],
                                                       verb="shared", value=item["value"], at=item["at"] + timedelta(microseconds=1), event_only=True))
                        self.extra_times.setdefault(plan.username, []).append(item["at"] + timedelta(microseconds=1))
            # Check-ins on each goal, after everything else the learner did, in time order across goals.
            last = max(plan.times + self.extra_times.get(plan.username, [])) if plan.times else None
            mine = []
            for competency in plan.goals:
                session, activity = GOALS[competency]
                for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
                    mine.append(dict(username=plan.username, session=session, activity=activity, competency=competency,
                                     status=rng.choice(STATUSES), note=rng.choice(NOTES)))
            if mine:
                times = sorted(last + (now - last) * rng.uniform(0.05, 0.95) for _ in mine)
                for check_in, at in zip(mine, times):
                    check_in["at"] = at
                self.check_ins += mine
            # Feedback: on shared reflections (timed only when a "shared" event exists), goals, check-ins.
            for item in plan.saves:
                if item.get("shared") and rng.random() < 0.6:
                    for _ in range(rng.choice([1, 1, 2])):
                        self.feedback.append(self._reply(rng, plan.username, item["activity_id"], item["at"], None))
            for competency in plan.goals:
                if rng.random() < 0.3:
                    self.feedback.append(self._reply(rng, plan.username, GOALS[competency][1], latest[GOALS[competency][1]]["at"], None))
        for index, check_in in enumerate(self.check_ins):
            if rng.random() < 0.5:
                for _ in range(rng.choice([1, 1, 2])):
                    self.feedback.append(self._reply(rng, check_in["username"], check_in["activity"], check_in["at"], index))

    def _reply(self, rng, username, activity, asked, check_in):
        hours = rng.choice([0.2, 3.5, 26.0, 70.0, rng.uniform(0, 200)])
        at = min(asked + timedelta(hours=hours), self.now - timedelta(seconds=rng.uniform(1, 60)))
        return dict(username=username, activity=activity, author=rng.choice(["lee", "kim", "=mo"]), at=max(at, asked), check_in=check_in)

    def store(self, store):
        """Put the plan in the store: names, answers, shared events, check-ins (the store's own call), feedback."""
        people = {p.username: p for p in store.learners()}
        store.upsert_learners([{"username": u, "name": name, "email": people[u].email, "cohort": people[u].cohort,
                                "department": people[u].department, "extra": {}} for u, name in self.names.items()])
        store.bulk_save(self.answer_saves + self.shared_events)
        # The first hundred learners check in through the store's own call; the rest in bulk, as it stores them
        # (a check-in row, and an event "checked-in" with the check-in's number, status and note).
        ordered = sorted(self.check_ins, key=lambda c: (c["username"], c["at"]))
        for check_in in [c for c in ordered if c["username"] < "sup0100"]:
            check_in["id"] = store.add_check_in(check_in["username"], check_in["session"], check_in["activity"], check_in["status"],
                                                check_in["note"], at=check_in["at"]).id
        bulk = [c for c in ordered if c["username"] >= "sup0100"]
        with store.session() as db:
            ids = dict(db.execute(select(LearnerRow.username, LearnerRow.id)).all())
            rows = [CheckInRow(learner_id=ids[c["username"]], activity_id=c["activity"], status=c["status"], note=c["note"], at=c["at"])
                    for c in bulk]
            db.add_all(rows)
            db.flush()
            for check_in, row in zip(bulk, rows):
                check_in["id"] = row.id
        store.bulk_save([dict(username=c["username"], session_id=c["session"], activity_id=c["activity"], verb=CHECKED_IN,
                              value={"check_in": c["id"], "status": c["status"], "note": c["note"]}, at=c["at"], event_only=True)
                         for c in bulk])
        with store.session() as db:
            db.add_all(
                FeedbackRow(learner_id=ids[f["username"]], activity_id=f["activity"], author=f["author"], text=FEEDBACK_TEXT, at=f["at"],
                            check_in_id=None if f["check_in"] is None else self.check_ins[f["check_in"]]["id"])
                for f in self.feedback
            )

    # What the exports must say, from the plan alone -----------------------------------

    def hours(self, username):
        if not hasattr(self, "_by_learner"):
            self._by_learner = {}
            for f in self.feedback:
                self._by_learner.setdefault(f["username"], []).append(f)
        first = {}
        for f in self._by_learner.get(username, []):
            key = (f["activity"], f["check_in"])
            first[key] = min(first.get(key, f["at"]), f["at"])
        hours = []
        for (activity, check_in), answered in first.items():
            asked = self.check_ins[check_in]["at"] if check_in is not None else self.shared.get((username, activity))
            if asked is not None:
                hours.append(max(0.0, (answered - asked).total_seconds() / 3600))
        return hours


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def planned(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"coaching-{request.param}")
    root = cohort.make_evaluation_course(tmp / "course")
    with_goals = cohort.make_evaluation_course(tmp / "course-with-goals")
    toml = with_goals / "course" / "course.toml"
    toml.write_text(toml.read_text() + "\n[coaching]\ngoals_in_evaluation_record = true\n")
    store = open_store(database(request.param, tmp, request))
    now = datetime.now(timezone.utc)
    plans = cohort.plan_cohort(LEARNERS, now, seed=90210)
    assert len(plans) >= 1000
    cohort.seed(store, plans)
    coaching = Coaching(plans, now)
    coaching.store(store)
    return store, load_catalog(load_settings(root)), load_catalog(load_settings(with_goals)), plans, coaching


@pytest.fixture(scope="module")
def evaluation(planned, tmp_path_factory):
    """The evaluation CSV of the planned cohort under the default settings, written once for the tests that read it."""
    store, catalog, _, plans, _ = planned
    path = tmp_path_factory.mktemp("evaluation") / "evaluation.csv"
    assert write_evaluation(store, catalog, path) == len(plans)
    return path


def read(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def latest_values(plan):
    latest = {}
    for item in sorted(plan.saves, key=lambda i: i["at"]):
        latest[item["activity_id"]] = item["value"]
    return latest


def test_the_evaluation_csv_has_ratings_check_ins_and_feedback_as_planned(planned, evaluation):
    store, catalog, _, plans, coaching = planned
    rows = {row["username"]: row for row in read(evaluation)}
    header = list(next(iter(rows.values())))
    ratings = [f"rating_{c.replace('-', '_')}_{n}_{stage}" for c in COMPETENCIES for n in range(1, 5) for stage in ("start", "end")]
    assert [c for c in header if c.startswith("rating_")] == ratings
    assert header[-5:] == ["check_ins", "last_check_in", "feedback_received", "median_hours_to_feedback", "last_active"]
    assert not [c for c in header if c.startswith("goal_") and not c.endswith(("_target", "_status"))], \
        "by default the goals' own words are not in the feed"

    check_ins = {}
    for c in coaching.check_ins:
        check_ins.setdefault(c["username"], []).append(c["at"])
    received = Counter(f["username"] for f in coaching.feedback)
    timed = 0
    for plan in plans:
        row = rows[plan.username]
        saved = latest_values(plan)
        for competency in COMPETENCIES:
            key = competency.replace("-", "_")
            for stage in ("start", "end"):
                value = saved.get(RATED.get((competency, stage)), {}) or {}
                given = value.get("ratings") or [None] * 4
                for n in range(1, 5):
                    expected = given[n - 1]
                    assert row[f"rating_{key}_{n}_{stage}"] == ("" if expected is None else str(expected)), (plan.username, key, n, stage)
        for competency, (_, activity) in GOALS.items():
            key = competency.replace("-", "_")
            goal = saved.get(activity)
            assert row[f"goal_{key}_status"] == (goal["status"] if goal else "")
            assert row[f"goal_{key}_target"] == ((goal or {}).get("target") or "")
        mine = check_ins.get(plan.username, [])
        assert row["check_ins"] == str(len(mine))
        assert row["last_check_in"] == day(max(mine) if mine else None)
        assert row["feedback_received"] == str(received[plan.username])
        hours = coaching.hours(plan.username)
        if hours:
            timed += 1
            assert float(row["median_hours_to_feedback"]) == pytest.approx(statistics.median(hours), abs=0.0051), plan.username
        else:
            assert row["median_hours_to_feedback"] == ""
        active = max(plan.times + mine + coaching.extra_times.get(plan.username, []), default=None)
        assert row["last_active"] == moment(active)
        assert row["name"] == safe(coaching.names.get(plan.username, plan.name))
    assert timed > 300 and sum(1 for r in rows.values() if r["check_ins"] != "0") > 300
    assert {rows[u]["name"] for u in coaching.names} == {"' =1+1", "'＝1+1", "'\t@x"}


def test_goals_go_into_the_feed_only_when_the_course_says_so(planned, evaluation, tmp_path):
    store, catalog, with_goals, plans, _ = planned
    without, within = evaluation, tmp_path / "with.csv"
    write_evaluation(store, with_goals, within)
    plain, full = read(without), read(within)
    text = without.read_text(encoding="utf-8")
    assert "Coach weekly" not in text and "Monthly check-ins" not in text and "on track" not in text
    assert "Coach weekly" in within.read_text(encoding="utf-8")
    for competency in GOALS:
        key = competency.replace("-", "_")
        assert f"goal_{key}" not in plain[0] and f"goal_{key}_measure" not in plain[0] and f"goal_{key}_progress" not in plain[0]
        assert list(full[0]).index(f"goal_{key}") + 1 == list(full[0]).index(f"goal_{key}_measure")
    by_name = {row["username"]: row for row in full}
    for plan in plans:
        saved = latest_values(plan)
        for competency, (_, activity) in GOALS.items():
            key = competency.replace("-", "_")
            goal = saved.get(activity) or {}
            row = by_name[plan.username]
            assert row[f"goal_{key}"] == safe(goal.get("goal") or "")
            assert row[f"goal_{key}_measure"] == safe(goal.get("measure") or "")
            assert row[f"goal_{key}_progress"] == safe(goal.get("progress") or "")
    # Everything else is the same in both.
    for a, b in zip(plain, full):
        assert {k: v for k, v in b.items() if k in a} == a


def test_the_evaluation_export_in_parts_is_the_same_file_byte_for_byte(planned, evaluation, tmp_path, monkeypatch):
    """From 20,000 learners on (here from 100) the rows are worked out in parts of the learners at once, one
    forked process per core; the file is the one a single process writes, with and without the goals' words."""
    import os

    import companion.exports
    from companion.parts import MAX_PARTS, cores

    store, catalog, with_goals, plans, _ = planned
    forks = []
    fork = os.fork
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or fork())
    assert write_evaluation(store, catalog, tmp_path / "three.csv", parts=3) == len(plans)
    assert len(forks) == 2, "two parts in other processes, the last in this one"
    assert (tmp_path / "three.csv").read_bytes() == evaluation.read_bytes()

    write_evaluation(store, with_goals, tmp_path / "one-with-goals.csv", parts=1)
    assert len(forks) == 2
    write_evaluation(store, with_goals, tmp_path / "four-with-goals.csv", parts=4)
    assert len(forks) == 5
    assert (tmp_path / "four-with-goals.csv").read_bytes() == (tmp_path / "one-with-goals.csv").read_bytes()

    monkeypatch.setattr(companion.exports, "PARTS_FROM", 100)
    forks.clear()
    write_evaluation(store, catalog, tmp_path / "default.csv")
    assert len(forks) == min(cores(), MAX_PARTS) - 1, "one part a core"
    assert (tmp_path / "default.csv").read_bytes() == evaluation.read_bytes()


def test_each_bulk_read_of_a_part_of_the_learners_holds_that_part_alone_and_the_parts_together_everyone(planned):
    from companion.parts import split

    store, catalog, _, _, _ = planned
    activities = [a.id for a in catalog.all_activities() if a.kind in ("SelfAssessment", "Goal")]
    reads = {
        "roster": lambda part: store.roster_rows(part),
        "progress": lambda part: store.progress_rows(part),
        "responses": lambda part: [row for rows in store.value_texts(activities, learners=part) for row in rows],
        "coaching": lambda part: [(learner, f.check_ins, f.last_check_in, f.feedback, f.median_hours)
                                  for learner, f in store.coaching_figures(part).items()],
    }
    parts = split(store.learner_ids(), 3)
    assert len(parts) == 3
    for name, read in reads.items():
        everyone = read(None)
        pieces = [read(part) for part in parts]
        for (first, end), piece in zip(parts, pieces):
            assert piece and all(first <= row[0] < end for row in piece), name
        assert sorted(row for piece in pieces for row in piece) == sorted(everyone), name


def test_an_export_a_part_of_which_fails_writes_nothing_and_says_why(planned, tmp_path, monkeypatch):
    from companion.errors import StoreUnavailable

    store, catalog, _, plans, _ = planned
    first = min(store.learner_ids())
    figures = store.coaching_figures

    def unreachable_for_the_first_part(learners=None):
        if learners and learners[0] == first:
            raise StoreUnavailable("The database could not be reached just now (it is busy, restarting or stopped); nothing was changed.")
        return figures(learners)

    monkeypatch.setattr(store, "coaching_figures", unreachable_for_the_first_part)
    path = tmp_path / "evaluation.csv"
    with pytest.raises(StoreUnavailable, match="could not be reached just now"):
        write_evaluation(store, catalog, path, parts=2)
    assert list(tmp_path.iterdir()) == [], "no file, and no half-written part left beside it"


def test_the_goal_history_has_one_row_per_check_in_with_its_feedback(planned, tmp_path):
    store, catalog, _, plans, coaching = planned
    path = tmp_path / "goals.csv"
    assert write_goals(store, catalog, path) == len(coaching.check_ins) > 500
    rows = read(path)
    assert list(rows[0]) == ["username", "name", "cohort", "competency", "goal_id", "goal", "status", "note", "checked_in_at",
                             "feedback", "feedback_count", "first_feedback_at"]
    people = {p.username: p for p in plans}
    replies = {}
    for f in coaching.feedback:
        if f["check_in"] is not None:
            replies.setdefault(f["check_in"], []).append(f["at"])
    expected = []
    for index, c in enumerate(coaching.check_ins):
        plan = people[c["username"]]
        got = replies.get(index, [])
        expected.append((c["username"], safe(coaching.names.get(plan.username, plan.name)), safe(plan.cohort), c["competency"],
                         c["activity"], safe(latest_values(plan)[c["activity"]]["goal"]), c["status"], safe(c["note"]),
                         moment(c["at"]), "yes" if got else "no", str(len(got)), moment(min(got)) if got else ""))
    assert sorted(tuple(row.values()) for row in rows) == sorted(expected)
    assert [row["checked_in_at"] for row in rows] == sorted(row["checked_in_at"] for row in rows), "oldest first"
    notes = {row["note"] for row in rows}
    assert {"' =1+1", "'＝1+1", "'\t@x", "'-2 hires postponed"} <= notes
    assert "A reflection" not in path.read_text(encoding="utf-8") and "Noticed" not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("with_names", [False, True], ids=["anonymous", "with-names"])
def test_the_sessions_export_counts_each_answer_and_lists_the_suggestions(planned, tmp_path, with_names):
    store, catalog, _, plans, coaching = planned
    path = tmp_path / "sessions.csv"
    assert write_sessions(store, catalog, path, with_names=with_names) == 2
    rows = read(path)
    names = {p.username: coaching.names.get(p.username, p.name) for p in plans}
    columns = ["session", "number", "title", "row", "answers", "not_useful", "somewhat_useful", "useful", "very_useful", "answer", "suggestion"]
    assert list(rows[0]) == columns + (["username", "name"] if with_names else [])
    for session in ("s1", "s2"):
        given = [(u, v) for (u, s), v in coaching.answers.items() if s == session]
        counts = [row for row in rows if row["session"] == session and row["row"] == "counts"]
        assert len(counts) == 1
        tally = Counter(v.get("useful") for _, v in given)
        assert counts[0]["answers"] == str(sum(tally[a] for a in USEFULNESS))
        for answer in USEFULNESS:
            assert counts[0][answer.lower().replace(" ", "_")] == str(tally[answer]), (session, answer)
        listed = [row for row in rows if row["session"] == session and row["row"] == "response"]
        if with_names:
            expected = sorted((u, safe(names[u]), v.get("useful") or "", safe((v.get("improve") or "").strip()))
                              for u, v in given if v.get("useful") or (v.get("improve") or "").strip())
            assert sorted((r["username"], r["name"], r["answer"], r["suggestion"]) for r in listed) == expected
        else:
            texts = [(v.get("improve") or "").strip() for _, v in given if (v.get("improve") or "").strip()]
            assert [r["suggestion"] for r in listed] == [safe(t) for t in sorted(texts, key=lambda t: (t.casefold(), t))]
            assert all(set(r) == set(columns) for r in listed)
    text = path.read_text(encoding="utf-8")
    assert ("sup0" in text) == with_names, "names only when asked"
    assert "'=HYPERLINK" in text and "'＠facilitators" in text


def test_the_xapi_feed_has_a_statement_per_check_in_and_per_feedback_without_anyones_words(planned, tmp_path):
    store, catalog, _, plans, coaching = planned
    path = tmp_path / "statements.jsonl"
    events = store.count_events()
    assert write_xapi(store, catalog, path, BASE) == events + len(coaching.feedback)
    text = path.read_text(encoding="utf-8")
    statements = [json.loads(line) for line in text.splitlines()]
    ext = f"{BASE}/xapi/extensions/"

    progressed = [s for s in statements if s["verb"]["id"] == "http://adlnet.gov/expapi/verbs/progressed"]
    assert sorted(
        (s["actor"]["account"]["name"], s["object"]["id"], s["result"]["extensions"][ext + "goal-status"], s["result"]["completion"],
         s["timestamp"], s["result"]["extensions"][ext + "check-in"])
        for s in progressed
    ) == sorted(
        (c["username"], f"{BASE}/xapi/activities/{c['activity']}", c["status"], c["status"] == "Met",
         c["at"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", c["id"])
        for c in coaching.check_ins
    )
    assert all(s["result"]["extensions"][ext + "competency"] in GOALS for s in progressed)

    commented = [s for s in statements if s["verb"]["id"] == "http://adlnet.gov/expapi/verbs/commented"]
    goal_ids = {activity for _, activity in GOALS.values()}

    def planned_kind(f):
        return "check-in" if f["check_in"] is not None else "goal" if f["activity"] in goal_ids else "reflection"

    assert sorted(
        (s["actor"]["account"]["name"], s["context"]["extensions"][ext + "learner"]["name"], s["object"]["id"],
         s["context"]["extensions"][ext + "feedback-on"], s["context"]["extensions"].get(ext + "check-in"), s["timestamp"])
        for s in commented
    ) == sorted(
        (f["author"], f["username"], f"{BASE}/xapi/activities/{f['activity']}", planned_kind(f),
         None if f["check_in"] is None else coaching.check_ins[f["check_in"]]["id"],
         f["at"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
        for f in coaching.feedback
    )
    assert all(s["actor"]["account"]["homePage"] == BASE and "result" not in s for s in commented)
    assert {s["context"]["contextActivities"]["parent"][0]["id"].rsplit("/", 1)[-1] for s in commented} == {"s1", "s2"}
    assert len({s["id"] for s in statements}) == len(statements)

    # No one's words: not the reflections, the goals, the notes, the suggestions, nor the feedback text.
    for words in ("A reflection", "Noticed", "Coach weekly", "Monthly check-ins", "Asked two families", "hires postponed", "CHECK-IN-NOTE", "FEEDBACK-TEXT", "keep going", "Shorter videos", "HYPERLINK"):
        assert words not in text, words

    # ralph-malph validates every shape of statement, and a random few hundred more.
    shapes = {}
    for s in statements:
        shape = (s["verb"]["id"], tuple(sorted(s.get("result", {}))), tuple(sorted(s["context"])),
                 s["context"].get("extensions", {}).get(ext + "feedback-on"))
        shapes.setdefault(shape, s)
    for s in list(shapes.values()) + random.Random(3).sample(progressed + commented, 300):
        BaseXapiStatement.model_validate(s)
    assert len({k[0] for k in shapes}) >= 6


def test_the_feeds_median_hours_are_the_stores_hours_to_first_feedback(planned, tmp_path):
    """Per learner, the feed's timing covers exactly what the store's own measure covers, and the plan agrees."""
    store, catalog, _, plans, coaching = planned
    everyone = sorted(round(h, 6) for p in plans for h in coaching.hours(p.username))
    stored = sorted(round(h, 6) for h in store.hours_to_first_feedback(datetime(2000, 1, 1, tzinfo=timezone.utc)))
    assert stored == everyone and len(stored) > 500


# The journal: shared reflections only unless the administrator asks ------------------------------


@pytest.fixture
def diary(course):
    store = open_store(course.db_url)
    store.upsert_learners([{"username": "ana", "name": "Ana", "email": "", "cohort": "W", "department": "", "extra": {}}])
    store.save("ana", "s1", "s1-why", "responded", {"text": "Shared with Lee."}, done=True, shared=True)
    store.save("ana", "s1", "s1-private", "responded", {"text": "Only for me."}, done=True)
    store.save("ana", "s1", "s1-case-meeting", "responded", {"path": [], "ended": False, "reflection": "My scenario answer."}, done=True)
    store.save("ana", "s1", "s1-goal", "responded", {"competency": "transformational-value", "goal": "Coach weekly", "measure": "Check-ins",
                                                     "target": "2025-06-30", "status": "Met", "progress": "Done"}, done=True)
    store.add_feedback("ana", "s1-why", "lee", "Thank you.")
    return store


def test_the_administrators_journal_is_shared_reflections_only_and_says_so(course, diary, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "journal", "--learner", "ana"]) == 0
    said = capsys.readouterr().out.strip()
    assert said == "Wrote ana's journal (shared reflections only; add --include-private for all) to journal-ana.html."
    page = (tmp_path / "journal-ana.html").read_text()
    assert "Shared with Lee." in page and "Thank you." in page and "Coach weekly" in page
    assert "Only for me." not in page and "My scenario answer." not in page
    assert "Shared reflections only: the ones Ana kept private are not in this copy." in page


def test_with_include_private_the_journal_has_every_reflection_and_says_so(course, diary, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "journal", "--learner", "ana", "--include-private", "-o", "ana.md"]) == 0
    said = capsys.readouterr().out.strip()
    assert said == "Wrote ana's journal (every reflection, private ones included) to ana.md."
    text = (tmp_path / "ana.md").read_text()
    assert "Shared with Lee." in text and "Only for me." in text and "My scenario answer." in text
    assert "Shared reflections only" not in text


def test_the_learners_own_journal_call_still_has_their_private_reflections(course, diary):
    from companion.exports import journal

    catalog = load_catalog(course)
    assert "Only for me." in journal(diary, catalog, "ana", "html"), "exports.journal(store, catalog, username, 'html')"
    assert "Only for me." not in journal(diary, catalog, "ana", "html", include_private=False)


def test_the_new_exports_through_the_command(course, diary, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_in = diary.add_check_in("ana", "s1", "s1-goal", "In progress", "=Half way")
    diary.add_feedback("ana", "s1-goal", "lee", "Good.", check_in=check_in.id)
    diary.save("ana", "s1", "s1-complete", "completed", {"useful": "Useful", "improve": "More cases"}, done=True)
    assert main(["export", "goals", "-o", "goals.csv"]) == 0
    assert capsys.readouterr().out.startswith("Wrote 1 goal check-in to goals.csv. It holds goal text and check-in notes")
    row = read(tmp_path / "goals.csv")[0]
    assert (row["username"], row["goal"], row["status"], row["note"], row["feedback"], row["feedback_count"]) == \
        ("ana", "Coach weekly", "In progress", "'=Half way", "yes", "1")
    assert main(["export", "sessions", "-o", "sessions.csv"]) == 0
    assert "without names; add --with-names" in capsys.readouterr().out
    rows = read(tmp_path / "sessions.csv")
    assert [(r["session"], r["row"], r["useful"], r["answer"], r["suggestion"]) for r in rows] == [
        ("s1", "counts", "1", "", ""), ("s1", "response", "", "Useful", "More cases"), ("s2", "counts", "0", "", "")]
    assert "ana" not in (tmp_path / "sessions.csv").read_text()
    assert main(["export", "sessions", "-o", "named.csv", "--with-names"]) == 0
    assert read(tmp_path / "named.csv")[1]["username"] == "ana"
