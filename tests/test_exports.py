"""The evaluation feed (CSV and xAPI) and a learner's journal, checked against a seeded cohort and
an independent xAPI implementation (ralph-malph's statement models)."""

from __future__ import annotations

import csv
import json
import random
import re
import sqlite3
import statistics
import uuid
from datetime import datetime, timezone
from html.parser import HTMLParser

import mistune
import pandas as pd
import pytest
from ralph.models.xapi.base.statements import BaseXapiStatement
from ralph.models.xapi.concepts.verbs.adl_vocabulary import AnsweredVerb
from ralph.models.xapi.concepts.verbs.scorm_profile import CompletedVerb

import cohort
from companion.catalog import load_catalog
from companion.cli import main
from companion.exports import ExportError, journal, neutralise, write_evaluation, write_journal
from companion.settings import load_settings
from companion.store import open_store
from companion.xapi import write_xapi

LEARNERS = 1200
BASE = "https://companion.psesd.example.org"
# The documented columns, written out by hand for the test course (2 sessions, 4 competencies).
COMPETENCIES = ["cultural_proficiency", "racial_equity_advocate", "racial_equity_mindset", "transformational_value"]
COLUMNS = (
    ["username", "name", "email", "cohort", "department", "s1_status", "s1_completed_on", "s2_status", "s2_completed_on",
     "sessions_completed", "series_completed", "series_completed_on"]
    + [f"{c}_{part}" for c in COMPETENCIES for part in ("start", "end", "change")]
    + [f"rating_{c}_{n}_{stage}" for c in COMPETENCIES for n in range(1, 5) for stage in ("start", "end")]
    + ["goals_set"]
    + [f"goal_{c}{part}" for c in COMPETENCIES for part in ("_target", "_status")]
    + ["check_ins", "last_check_in", "feedback_received", "median_hours_to_feedback", "last_active"]
)
# With [coaching] goals_in_evaluation_record = true, the goals' own words too.
COLUMNS_WITH_GOALS = (
    COLUMNS[: COLUMNS.index("goals_set") + 1]
    + [f"goal_{c}{part}" for c in COMPETENCIES for part in ("", "_measure", "_target", "_status", "_progress")]
    + COLUMNS[COLUMNS.index("check_ins"):]
)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    root = cohort.make_evaluation_course(tmp_path_factory.mktemp("feed") / "course")
    settings = load_settings(root)
    store = open_store(f"sqlite:///{root / 'reflections' / 'companion.db'}")
    now = datetime.now(timezone.utc)
    plans = cohort.plan_cohort(LEARNERS, now)
    events = cohort.seed(store, plans)
    return store, load_catalog(settings), plans, events, now


@pytest.fixture(scope="module")
def with_goals(seeded, tmp_path_factory):
    """The same course with ``[coaching] goals_in_evaluation_record = true``: its catalog."""
    root = cohort.make_evaluation_course(tmp_path_factory.mktemp("feed-goals") / "course")
    toml = root / "course" / "course.toml"
    toml.write_text(toml.read_text() + "\n[coaching]\ngoals_in_evaluation_record = true\n")
    return load_catalog(load_settings(root))


@pytest.mark.parametrize("goals_in_record", [False, True], ids=["goals-not-in-record", "goals-in-record"])
def test_the_evaluation_csv_of_a_1200_learner_cohort_matches_the_plan(seeded, with_goals, tmp_path, goals_in_record):
    store, catalog, plans, _, _ = seeded
    catalog = with_goals if goals_in_record else catalog
    path = tmp_path / "evaluation.csv"
    assert write_evaluation(store, catalog, path) == len(plans) > LEARNERS * 0.95

    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(table.columns) == (COLUMNS_WITH_GOALS if goals_in_record else COLUMNS)
    assert sorted(table["username"]) == sorted(p.username for p in plans)
    rows = table.set_index("username")
    for plan in plans:
        row = rows.loc[plan.username]
        for session in ("s1", "s2"):
            assert row[f"{session}_status"] == plan.states[session], (plan.username, session)
            when = plan.completed_at.get(session)
            assert row[f"{session}_completed_on"] == (cohort.utc(when).date().isoformat() if when else "")
        done = [s for s in ("s1", "s2") if plan.states[s] == "complete"]
        assert int(row["sessions_completed"]) == len(done)
        assert row["series_completed"] == ("yes" if len(done) == 2 else "no")
        last = max(plan.completed_at.values()) if len(done) == 2 else None
        assert row["series_completed_on"] == (cohort.utc(last).date().isoformat() if last else "")
        start, end = plan.start_score, plan.end_score
        assert row["cultural_proficiency_start"] == ("" if start is None else str(start))
        assert row["cultural_proficiency_end"] == ("" if end is None else str(end))
        if start is not None and end is not None:
            assert float(row["cultural_proficiency_change"]) == pytest.approx(end - start, abs=0.006)
        else:
            assert row["cultural_proficiency_change"] == ""
        assert row["racial_equity_mindset_start"] == ""
        assert int(row["goals_set"]) == sum(goal[0] for goal in plan.goals.values())
        for competency, (done, status, target, text) in plan.goals.items():
            key = competency.replace("-", "_")
            assert row[f"goal_{key}_status"] == status
            assert row[f"goal_{key}_target"] == (target or "")
            if goals_in_record:
                assert row[f"goal_{key}"] == ("'" + text if text.startswith("=") else text)
                assert row[f"goal_{key}_measure"] == ("Monthly check-ins" if done else "")
                assert row[f"goal_{key}_progress"] == "'-on track"
        expected_name = ("'" + plan.name) if plan.name[:1] in "=+-@\t" and plan.name else plan.name
        assert row["name"] == expected_name
        assert row["cohort"] == ("'" + plan.cohort if plan.cohort.startswith("=") else plan.cohort)
        active = plan.last_active
        assert row["last_active"] == (cohort.utc(active).isoformat(timespec="seconds") if active else "")


def test_scores_and_counts_are_numbers_and_negative_changes_are_not_quoted(seeded, tmp_path):
    store, catalog, plans, _, _ = seeded
    path = tmp_path / "evaluation.csv"
    write_evaluation(store, catalog, path)
    table = pd.read_csv(path)
    assert table["sessions_completed"].dtype.kind == "i"
    assert table["cultural_proficiency_change"].dtype.kind == "f"
    assert (table["cultural_proficiency_change"] < 0).any(), "the cohort has someone whose score went down"
    falling = sum(1 for p in plans if p.start_score is not None and p.end_score is not None and p.end_score < p.start_score)
    assert (table["cultural_proficiency_change"] < 0).sum() == falling


@pytest.mark.parametrize(
    "cell, shown",
    [("=SUM(A1:A9)", "'=SUM(A1:A9)"), ("+1 555", "'+1 555"), ("-2", "'-2"), ("@admin", "'@admin"), ("\tx", "'\tx"),
     ("\rx", "'\rx"), ("plain", "plain"), ("a=b", "a=b"), ("", ""), (-0.5, -0.5), (3, 3),
     (" =1+1", "' =1+1"), ("＝1+1", "'＝1+1"), ("\t@x", "'\t@x"), ("\u3000＋1", "'\u3000＋1"), ("  -2", "'  -2"), ("＠x", "'＠x"),
     ("－1", "'－1"), (" plain", " plain"), ("a＝b", "a＝b")],
)
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_quote(cell, shown):
    assert neutralise(cell) == shown


def test_texts_neutralised_together_are_each_as_neutralised_alone():
    """The export's one look over a row's texts (neutralise_texts) misses none that neutralise would quote."""
    from companion.exports import neutralise_texts

    rng = random.Random(13)
    alphabet = ["a", "Z", "7", "é", " ", "\t", "\r", "\x00", "=", "+", "-", "@", "＝", "＋", "\u3000", "\u200b", "x=1"]
    for _ in range(3000):
        texts = ["".join(rng.choices(alphabet, k=rng.randrange(0, 4))) for _ in range(rng.randrange(1, 6))]
        assert neutralise_texts(list(texts)) == [neutralise(text) for text in texts], texts


def test_every_text_cell_in_the_csv_is_safe_to_open_in_a_spreadsheet(seeded, tmp_path):
    store, catalog, _, _, _ = seeded
    path = tmp_path / "evaluation.csv"
    write_evaluation(store, catalog, path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        numeric = {c for c in header if c.endswith(("_start", "_end", "_change")) or c in ("sessions_completed", "goals_set")}
        for row in reader:
            for column, cell in zip(header, row):
                if column not in numeric:
                    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (column, cell)


def test_the_xapi_feed_has_one_valid_statement_per_event(seeded, tmp_path):
    store, catalog, plans, events, _ = seeded
    path = tmp_path / "statements.jsonl"
    assert write_xapi(store, catalog, path, BASE) == events
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == events == sum(len(p.saves) for p in plans)

    statements = [json.loads(line) for line in lines]
    for statement in validation_sample(statements):
        BaseXapiStatement.model_validate(statement)  # ralph-malph: an independent xAPI implementation
    for statement in statements:
        assert statement["version"] == "1.0.3"
        assert uuid.UUID(statement["id"]).version == 5
        assert statement["timestamp"].endswith("Z")
        assert statement["actor"]["account"] == {"homePage": BASE, "name": statement["actor"]["account"]["name"]}

    assert len({s["id"] for s in statements}) == len(statements), "statement ids are unique"
    verbs = {s["verb"]["id"] for s in statements}
    assert verbs == {
        "http://adlnet.gov/expapi/verbs/experienced",
        "http://adlnet.gov/expapi/verbs/responded",
        "http://adlnet.gov/expapi/verbs/answered",
        "http://adlnet.gov/expapi/verbs/completed",
    }
    assert CompletedVerb().id in verbs and AnsweredVerb().id in verbs

    # Every planned event is there: who, verb, object and time.
    def key(username, verb, object_id, when):
        return (username, verb, object_id, when)

    def object_id(item):
        if item["activity_id"] == item["session_id"] or item["activity_id"].endswith("-complete"):
            return f"{BASE}/xapi/sessions/{item['session_id']}"
        return f"{BASE}/xapi/activities/{item['activity_id']}"

    planned = sorted(
        key(i["username"], i["verb"], object_id(i), cohort.utc(i["at"]).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
        for p in plans
        for i in p.saves
    )
    found = sorted(
        key(s["actor"]["account"]["name"], s["verb"]["display"]["en-US"], s["object"]["id"], s["timestamp"]) for s in statements
    )
    assert found == planned
    assert all(s["verb"]["id"].endswith("/" + s["verb"]["display"]["en-US"]) for s in statements)

    # Completion of a session is about the session; scores carry their range.
    completed = [s for s in statements if s["verb"]["id"] == CompletedVerb().id]
    assert len(completed) == sum(len(p.completed_at) for p in plans)
    assert all(s["result"]["completion"] is True for s in completed)
    scored = [s for s in statements if s["object"]["id"].endswith("/s1-levels") and "score" in s.get("result", {})]
    planned_sorts = [i["value"]["score"] for p in plans for i in p.saves if i["activity_id"] == "s1-levels" and "score" in i["value"]]
    assert len(scored) == len(planned_sorts) > 0
    assert all(s["result"]["score"]["max"] == 3 and s["result"]["score"]["min"] == 0 for s in scored)
    assert sorted(s["result"]["score"]["raw"] for s in scored) == sorted(planned_sorts)

    # Nothing a learner wrote is in the feed.
    text = path.read_text(encoding="utf-8")
    for written in ("A reflection", "Noticed 0.", "Coach weekly", "Monthly check-ins", "on track"):
        assert written not in text


def validation_sample(statements: list[dict], extra: int = 400) -> list[dict]:
    """Every shape of statement once (verb, kind of object, result fields, actor fields), and a random few hundred more.

    ralph takes milliseconds a statement (its IRI check is a large regular expression), so
    validating all 11,000 would spend most of a minute on copies of the same shapes."""
    def shape(s):
        result = s.get("result", {})
        return (s["verb"]["id"], s["object"]["id"].rsplit("/", 1)[-1].split("-")[-1], tuple(sorted(result)),
                tuple(sorted(result.get("score", {}))), tuple(sorted(s["actor"])), tuple(sorted(s["context"]["contextActivities"])))
    seen, sample = set(), []
    for statement in statements:
        if shape(statement) not in seen:
            seen.add(shape(statement))
            sample.append(statement)
    return sample + random.Random(7).sample(statements, min(extra, len(statements)))


def test_the_validator_refuses_what_xapi_forbids(seeded, tmp_path):
    """The independent validator is not a rubber stamp: a broken copy of a real statement fails."""
    store, catalog, _, _, _ = seeded
    path = tmp_path / "statements.jsonl"
    write_xapi(store, catalog, path, BASE)
    good = json.loads(path.read_text().splitlines()[0])
    BaseXapiStatement.model_validate(good)
    for breaking in (
        lambda s: s["verb"].update(id="completed"),
        lambda s: s["actor"].pop("account"),
        lambda s: s.update(version="2.0"),
        lambda s: s["object"].update(id="not an iri"),
        lambda s: s.update(timestamp="yesterday"),
    ):
        broken = json.loads(json.dumps(good))
        breaking(broken)
        with pytest.raises(Exception):
            BaseXapiStatement.model_validate(broken)


def test_exporting_again_gives_the_same_statement_ids(seeded, tmp_path):
    store, catalog, _, _, _ = seeded
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_xapi(store, catalog, first, BASE)
    write_xapi(store, catalog, second, BASE + "/")
    ids = lambda path: [json.loads(line)["id"] for line in path.read_text().splitlines()]  # noqa: E731
    assert ids(first) == ids(second)


def test_a_verb_outside_the_adl_vocabulary_gets_the_companions_own_iri(course, tmp_path):
    store = open_store(course.db_url)
    store.save("ana", "s2", "s2-note", "responded", {"text": "mine"}, done=True, shared=True)
    store.save("ana", "s2", "s2-note", "unshared", {"text": "mine"}, shared=False)
    path = tmp_path / "s.jsonl"
    write_xapi(store, load_catalog(course), path, BASE)
    statements = [json.loads(line) for line in path.read_text().splitlines()]
    for statement in statements:
        BaseXapiStatement.model_validate(statement)
    assert [s["verb"]["id"] for s in statements] == ["http://adlnet.gov/expapi/verbs/responded", f"{BASE}/xapi/verbs/unshared"]


@pytest.mark.parametrize("base", ["", "companion.example.org", "ftp://x.org", "https://x.org/a b"])
def test_the_xapi_export_needs_the_companions_address(course, tmp_path, base):
    with pytest.raises(ExportError, match="public address"):
        write_xapi(open_store(course.db_url), load_catalog(course), tmp_path / "s.jsonl", base)
    assert not (tmp_path / "s.jsonl").exists()


def test_an_export_to_a_missing_folder_says_so_and_writes_nothing(course, tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        write_evaluation(open_store(course.db_url), load_catalog(course), tmp_path / "nope" / "e.csv")
    assert not (tmp_path / "nope").exists()


def test_the_feed_is_the_same_from_sqlite_and_postgresql(postgres_url, tmp_path):
    """Days and times in the feed are UTC even where the PostgreSQL server keeps another time zone."""
    from sqlalchemy import create_engine, text

    database = f"f{abs(hash(str(tmp_path))) % 10**9}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {database}"))
        connection.execute(text(f"ALTER DATABASE {database} SET timezone TO 'Pacific/Kiritimati'"))  # UTC+14: most days differ
    admin.dispose()
    root = cohort.make_evaluation_course(tmp_path / "course")
    catalog = load_catalog(load_settings(root))
    plans = cohort.plan_cohort(150, datetime.now(timezone.utc), seed=11)
    outputs = []
    for url in (f"sqlite:///{tmp_path / 'c.db'}", postgres_url.rsplit("/", 1)[0] + "/" + database):
        store = open_store(url)
        cohort.seed(store, plans)
        csv_path, xapi_path = tmp_path / "e.csv", tmp_path / "x.jsonl"
        write_evaluation(store, catalog, csv_path)
        write_xapi(store, catalog, xapi_path, BASE)
        outputs.append((csv_path.read_text(), xapi_path.read_text()))
    assert outputs[0][0] == outputs[1][0]
    assert outputs[0][1] == outputs[1][1]


# Journal ---------------------------------------------------------------------------

HOSTILE = '<script>document.title="pwned"</script><img src=x onerror=alert(1)> [link](javascript:alert(1))\n# not a heading\n1. not a list\n    not code'


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


@pytest.fixture
def journaling(course):
    store = open_store(course.db_url)
    store.upsert_learners([{"username": "ana", "name": "Ana <b>R</b>", "email": "", "cohort": "W", "department": "", "extra": {}}])
    store.save("ana", "s1", "s1-why", "responded", {"text": HOSTILE}, done=True, shared=True)
    store.save("ana", "s1", "s1-private", "responded", {"text": "Only for me."}, done=True)
    store.add_feedback("ana", "s1-why", "lee", "Thank you <i>for this</i>.")
    store.save("ana", "s1", "s1-goal", "responded", {"competency": "transformational-value", "goal": "Coach *weekly*", "measure": "Check-ins", "target": "2025-06-30", "status": "Met", "progress": "Done"}, done=True)
    store.save("ben", "s1", "s1-why", "responded", {"text": "Ben's words"}, done=True, shared=True)
    return store, load_catalog(course)


def test_the_html_journal_shows_the_learners_own_words_as_text(journaling):
    store, catalog = journaling
    page = journal(store, catalog, "ana", "html")
    found = parse(page)
    assert {tag for tag, _ in found.tags} <= {"html", "head", "meta", "title", "style", "body", "h1", "p", "section", "h2", "em", "h3", "div", "dl", "dt", "dd"}
    text = "".join(found.text)
    assert HOSTILE in text
    assert "Only for me." in text, "the learner's own journal has their private reflections"
    assert "Thank you <i>for this</i>." in text
    assert "Coach *weekly*" in text and "Met" in text and "2025-06-30" in text
    assert "Ben's words" not in text
    assert "Reflection journal: Ana <b>R</b>" in text


def test_the_markdown_journal_renders_as_text_in_a_markdown_renderer(journaling, tmp_path):
    store, catalog = journaling
    path = write_journal(store, catalog, "ana", tmp_path / "ana.md")
    source = path.read_text(encoding="utf-8")
    rendered = mistune.html(source)
    found = parse(rendered)
    tags = {tag for tag, _ in found.tags}
    assert not tags & {"script", "img", "a", "ol", "pre", "code", "b", "i"}, tags
    text = "".join(found.text)
    assert "Coach *weekly*" in text
    for line in HOSTILE.splitlines():
        assert line.strip() in text.replace("\xa0", " ")
    assert "Only for me." in text and "Ben's words" not in text


def test_the_journal_keeps_words_written_for_an_activity_the_course_dropped(journaling):
    store, catalog = journaling
    store.save("ana", "s1", "s1-retired", "responded", {"text": "Written for an older notebook."}, done=True)
    assert "Written for an older notebook." in journal(store, catalog, "ana", "markdown")
    assert "From activities no longer in the course" in journal(store, catalog, "ana", "html")


def test_the_journal_keeps_what_the_learner_wrote_at_the_end_of_a_scenario(journaling):
    store, catalog = journaling
    path = [{"step": "first", "choice": "Bring the team back to her idea and ask her to finish"}]
    store.save("ana", "s1", "s1-case-meeting", "responded", {"path": path, "ended": False, "reflection": "I would <b>pause</b> the meeting."}, done=True)
    text = "".join(parse(journal(store, catalog, "ana", "html")).text)
    assert "What would you actually do at your own next meeting?" in text
    assert "I would <b>pause</b> the meeting." in text, "shown as the text the learner wrote"


def test_a_journal_for_nobody_says_so(journaling):
    store, catalog = journaling
    with pytest.raises(ExportError, match="No learner 'cy'"):
        journal(store, catalog, "cy")


def test_a_learner_with_nothing_written_gets_a_journal_that_says_so(journaling):
    store, catalog = journaling
    store.ensure_learner("dee")
    assert "No reflections or goals saved yet." in journal(store, catalog, "dee", "markdown")


# The commands (need `companion export ...` wired in cli.py) --------------------------------


def test_export_evaluation_writes_the_csv(course, journaling, tmp_path, capsys):
    path = tmp_path / "evaluation.csv"
    assert main(["export", "evaluation", "-o", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"Wrote 2 supervisors to {path}."
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(table["username"]) == ["ana", "ben"]
    assert table.loc[0, "goal_transformational_value_status"] == "Met"


def test_export_xapi_writes_statements(course, journaling, tmp_path, capsys):
    path = tmp_path / "statements.jsonl"
    assert main(["export", "xapi", "-o", str(path), "--base-url", BASE]) == 0
    assert capsys.readouterr().out.strip() == f"Wrote 5 xAPI statements to {path}.", "4 saves and lee's feedback"
    statements = [json.loads(line) for line in path.read_text().splitlines()]
    for statement in statements:
        BaseXapiStatement.model_validate(statement)
    feedback = statements[-1]
    assert feedback["actor"]["account"] == {"homePage": BASE, "name": "lee"}
    assert feedback["verb"]["id"] == "http://adlnet.gov/expapi/verbs/commented"
    assert feedback["object"]["id"] == f"{BASE}/xapi/activities/s1-why"
    assert feedback["context"]["extensions"][f"{BASE}/xapi/extensions/learner"] == {"homePage": BASE, "name": "ana"}
    assert "Thank you" not in path.read_text() and "<script>" not in path.read_text()


def test_export_journal_writes_the_learners_document(course, journaling, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "journal", "--learner", "ana", "--include-private"]) == 0
    assert "journal-ana.html" in capsys.readouterr().out
    assert "Only for me." in (tmp_path / "journal-ana.html").read_text()
    assert main(["export", "journal", "--learner", "ana", "-o", "ana.md"]) == 0
    assert (tmp_path / "ana.md").read_text().startswith("# Reflection journal: Ana &lt;b&gt;R&lt;/b&gt;")


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "xapi", "-o", "s.jsonl", "--base-url", "companion.example.org"], "is not the companion's public address"),
        (["export", "journal", "--learner", "nobody"], "No learner 'nobody'"),
        (["export", "evaluation", "-o", "missing/e.csv"], "does not exist"),
    ],
    ids=["bad address", "unknown learner", "missing folder"],
)
def test_export_errors_are_one_clear_line(course, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


# The bulk reads behind the evaluation export ------------------------------------------------
#
# The export reads self-assessments and goals as plain tuples of JSON text (Store.value_texts),
# not as one ORM object and Response per row, and progress as the store keeps it. What it wrote before, from Store.latest_responses, is kept
# here as the reference: the same rows, the same figures, the same file, byte for byte.

SELF_ASSESSMENTS = ["s1-start-cultural-proficiency", "s2-end-cultural-proficiency"]
GOALS = ["s1-goal", "s2-goal-cultural-proficiency"]


def _reference_feed(store, catalog):
    """_scores, _ratings and _goals as they were, over Response objects."""
    assessments = {a.id: a for a in catalog.all_activities() if a.kind == "SelfAssessment"}
    scores, ratings = {}, {}
    for response in store.latest_responses(list(assessments)):
        value = response.value if isinstance(response.value, dict) else {}
        activity = assessments[response.activity_id]
        key = (response.username, activity.competency, activity.args.get("stage", "start"))
        if response.done and isinstance(value.get("score"), (int, float)):
            if key not in scores or scores[key][0] < response.updated_at:
                scores[key] = (response.updated_at, round(float(value["score"]), 2))
        raw = value.get("ratings") if isinstance(value.get("ratings"), list) else []
        given = [r if isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= 4 else None for r in raw]
        if any(r is not None for r in given) and (key not in ratings or ratings[key][0] < response.updated_at):
            ratings[key] = (response.updated_at, given)
    goal_activities = {a.id: a for a in catalog.all_activities() if a.kind == "Goal"}
    latest, goals_set = {}, {}
    for response in store.latest_responses(list(goal_activities)):
        value = response.value if isinstance(response.value, dict) else {}
        if response.done:
            goals_set[response.username] = goals_set.get(response.username, 0) + 1
        if not str(value.get("goal") or "").strip():
            continue
        key = (response.username, goal_activities[response.activity_id].competency)
        if key not in latest or latest[key][0] < response.updated_at:
            latest[key] = (response.updated_at, value)
    strip = lambda found: {key: value for key, (_, value) in found.items()}  # noqa: E731
    return strip(scores), strip(ratings), strip(latest), goals_set


def _reference_coaching(store) -> dict[str, dict]:
    """Per username, the feed's coaching columns as documented, from every check-in, feedback item and event."""
    day = lambda moment: moment.astimezone(timezone.utc).date().isoformat() if moment else ""  # noqa: E731
    check_ins, feedback, shared = {}, {}, {}
    for check_in in store.all_check_ins():
        check_ins.setdefault(check_in.username, []).append(check_in)
    for username, item in store.all_feedback():
        feedback.setdefault(username, []).append(item)
    for event in store.events():
        if event.verb == "shared":
            shared.setdefault((event.username, event.activity_id), event.at)
    columns = {}
    for name in check_ins.keys() | feedback.keys():
        mine = {c.id: c for c in check_ins.get(name, [])}
        first = {}
        for item in feedback.get(name, []):
            key = (item.activity_id, item.check_in)
            first[key] = min(first.get(key, item.at), item.at)
        hours = []
        for (activity_id, check_in), answered in first.items():
            asked = shared.get((name, activity_id)) if check_in is None else getattr(mine.get(check_in), "at", None)
            if asked is not None:
                hours.append(max(0.0, (answered - asked).total_seconds() / 3600))
        columns[name] = dict(check_ins=len(mine), last_check_in=day(max((c.at for c in mine.values()), default=None)),
                             feedback_received=len(feedback.get(name, [])),
                             median_hours_to_feedback=round(statistics.median(hours), 2) if hours else "")
    return columns


def _reference_csv(store, catalog, path) -> None:
    """The evaluation CSV as write_evaluation wrote it before the bulk reads (DictWriter, every cell neutralised)."""
    from companion.dashboard import everyone_progress
    from companion.exports import IDENTITY_COLUMNS, evaluation_columns
    from companion.progress import COMPLETE

    day = lambda moment: moment.astimezone(timezone.utc).date().isoformat() if moment else ""  # noqa: E731
    settings = catalog.settings
    with_goals = settings.coaching.goals_in_evaluation_record
    learners = store.learners()
    progress = everyone_progress(store, catalog, learners)
    scores, ratings, goals, goals_set = _reference_feed(store, catalog)
    coaching = _reference_coaching(store)
    last_active = store.last_active()
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=evaluation_columns(catalog))
        writer.writeheader()
        for learner in learners:
            name = learner.username
            row = {column: getattr(learner, column) for column in IDENTITY_COLUMNS}
            sessions = progress[name]
            for state in sessions:
                row[f"{state.session_id}_status"], row[f"{state.session_id}_completed_on"] = state.status, day(state.completed_at)
            completed = [s for s in sessions if s.status == COMPLETE]
            series = len(completed) == len(sessions) and bool(sessions)
            row.update(sessions_completed=len(completed), series_completed="yes" if series else "no",
                       series_completed_on=day(max(s.completed_at for s in completed)) if series else "")
            for competency in settings.competencies:
                key = competency.id.replace("-", "_")
                start, end = scores.get((name, competency.id, "start")), scores.get((name, competency.id, "end"))
                row[f"{key}_start"], row[f"{key}_end"] = "" if start is None else start, "" if end is None else end
                row[f"{key}_change"] = "" if start is None or end is None else round(end - start, 2)
                for stage in ("start", "end"):
                    given = ratings.get((name, competency.id, stage), [])
                    for n in range(1, len(competency.indicators) + 1):
                        rating = given[n - 1] if n <= len(given) else None
                        row[f"rating_{key}_{n}_{stage}"] = "" if rating is None else rating
                goal = goals.get((name, competency.id), {})
                if with_goals:
                    for part, field_ in (("", "goal"), ("_measure", "measure"), ("_progress", "progress")):
                        row[f"goal_{key}{part}"] = str(goal.get(field_) or "")
                row[f"goal_{key}_target"] = str(goal.get("target") or "")
                row[f"goal_{key}_status"] = str(goal.get("status") or "") if goal else ""
            row["goals_set"] = goals_set.get(name, 0)
            row.update(coaching.get(name, dict(check_ins=0, last_check_in="", feedback_received=0, median_hours_to_feedback="")))
            active = last_active.get(name)
            row["last_active"] = active.astimezone(timezone.utc).isoformat(timespec="seconds") if active else ""
            writer.writerow({key: neutralise(value) for key, value in row.items()})


@pytest.fixture
def assorted(store_url, tmp_path):
    """A store of a few learners with every kind of row the export reads, and the edge cases it handles."""
    root = cohort.make_evaluation_course(tmp_path / "course")
    catalog = load_catalog(load_settings(root))
    store = open_store(store_url)
    store.upsert_learners([
        {"username": "ana", "name": "Ana Ruiz", "email": "ana@example.org", "cohort": "Winter", "department": "Schools", "extra": {}},
        {"username": "ben", "name": "=HYPERLINK(\"http://x\")", "email": "@ben", "cohort": "+cohort", "department": "-dept", "extra": {}},
        {"username": "cy", "name": "Cy (on the roster, nothing saved)", "email": "", "cohort": "", "department": "", "extra": {}},
        {"username": "dee", "name": " =1+1", "email": "dee@example.org", "cohort": "＝full width", "department": "\tTabbed", "extra": {}},
    ])
    assess = lambda ratings, score=None: {  # noqa: E731
        "competency": "cultural-proficiency", "ratings": ratings, **({} if score is None else {"score": score})}
    # ana: everything, saved more than once (the latest counts), a check-in and feedback on it and on a reflection.
    store.save("ana", "s1", "s1-start-cultural-proficiency", "answered", assess([1, None, None, None]), done=False)
    store.save("ana", "s1", "s1-start-cultural-proficiency", "answered", assess([1, 2, 3, 4], 2.5), done=True)
    store.save("ana", "s2", "s2-end-cultural-proficiency", "answered", assess([4, 4, 3, 4], 3.75), done=True)
    store.save("ana", "s1", "s1-goal", "responded", {"competency": "transformational-value", "goal": "Coach weekly",
               "measure": "Check-ins", "target": "2026-06-30", "status": "In progress", "progress": "=going well"}, done=True)
    store.save("ana", "s1", "s1-why", "responded", {"text": "Because."}, done=True, shared=True)
    store.add_feedback("ana", "s1-why", "lee", "Thank you.")
    check = store.add_check_in("ana", "s1", "s1-goal", "In progress", "Halfway")
    store.add_feedback("ana", "s1-goal", "lee", "Keep going.", check_in=check.id)
    # ben: hostile and odd values: formula text, booleans and out-of-range ratings, a score not a number,
    # a value that is not an object, a score on an unfinished assessment.
    store.save("ben", "s1", "s1-start-cultural-proficiency", "answered", assess([True, 5, 0, 3], "3.5"), done=True)
    store.save("ben", "s2", "s2-end-cultural-proficiency", "answered", assess([2, 2, 2, 2], 2.0), done=False)
    store.save("ben", "s1", "s1-goal", "responded", ["not", "an", "object"], done=True)
    store.save("ben", "s2", "s2-goal-cultural-proficiency", "responded", {"goal": "=cmd|' /C calc'!A0", "measure": "@SUM(1)",
               "target": " =1+1", "status": "－1", "progress": "日本語 ✓ \u202e<script>alert(1)</script>\r\nline"}, done=True)
    store.save("ben", "s1", "s1-why", "responded", {"text": "+ private"}, done=True)
    # dee: a score and a goal for activities the notebooks dropped, a goal set with no words, a bool score.
    store.save("dee", "s1", "s1-retired-assessment", "answered", assess([4, 4, 4, 4], 4.0), done=True)
    store.save("dee", "s1", "s1-retired-goal", "responded", {"goal": "Old goal", "target": "2020-01-01"}, done=True)
    store.save("dee", "s1", "s1-goal", "responded", {"goal": "   ", "target": "2026-01-01", "status": "Met"}, done=True)
    store.save("dee", "s1", "s1-start-cultural-proficiency", "answered", assess([1, 1, 1, 1], True), done=True)
    # eve: seen on a page only.
    store.ensure_learner("eve")
    return store, catalog


def _written_as_before(store, catalog, tmp_path, supervisors: int) -> dict[str, dict]:
    """The evaluation CSV, checked byte for byte against the reference, as rows by username."""
    before, after = tmp_path / "before.csv", tmp_path / "after.csv"
    _reference_csv(store, catalog, before)
    assert write_evaluation(store, catalog, after) == supervisors
    assert after.read_bytes() == before.read_bytes()
    return {row["username"]: row for row in csv.DictReader(after.open(newline="", encoding="utf-8"))}


def _names(store) -> dict[int, str]:
    return {row[0]: row[1] for row in store.roster_rows()}


def test_the_bulk_read_gives_every_response_once_with_the_value_it_holds(assorted):
    store, catalog = assorted
    names = _names(store)
    every = SELF_ASSESSMENTS + GOALS + ["s1-retired-assessment", "s1-retired-goal", "s1-why"]
    by_key = lambda rows: sorted(rows, key=lambda row: row[:2])  # noqa: E731
    for ids in (SELF_ASSESSMENTS, GOALS, every):
        expected = by_key((r.username, r.activity_id, r.value, r.done) for r in store.latest_responses(ids))
        for batch in (50_000, 2, 1):
            batches = list(store.value_texts(ids, batch=batch))
            assert all(len(rows) <= batch for rows in batches)
            read = [(names[learner], activity, json.loads(text), done) for rows in batches for learner, activity, text, done in rows]
            assert by_key(read) == expected, (ids, batch)
    in_time = [(names[learner], activity) for rows in store.value_texts(every, in_time_order=True) for learner, activity, *_ in rows]
    saved = store.latest_responses(every)
    assert len({r.updated_at for r in saved}) == len(saved)  # no ties here: time order is one order
    assert in_time == [(r.username, r.activity_id) for r in sorted(saved, key=lambda r: r.updated_at)]
    assert list(store.value_texts([])) == []


def test_scores_ratings_and_goals_from_the_bulk_read_are_those_of_before(assorted):
    from companion.exports import _Feed

    store, catalog = assorted
    names = _names(store)
    feed = _Feed(store, catalog)
    cells = {names[learner]: mine for learner, mine in feed.finish().items()}
    competencies = [c.id for c in catalog.settings.competencies]
    cp, tv = competencies.index("cultural-proficiency"), competencies.index("transformational-value")
    scores = {name: mine[: feed.ratings_at] for name, mine in cells.items()}
    assert set(cells) == {"ana", "ben", "dee"}  # cy and eve saved nothing the feed reads
    assert scores["ana"][3 * cp : 3 * cp + 3] == [2.5, 3.75, 1.25] and scores["dee"][3 * cp : 3 * cp + 3] == [1.0, "", ""]
    assert all(score == "" for score in scores["ben"])  # "3.5" is not a number, and 2.0 was not finished
    assert all(score == "" for name in scores for i, score in enumerate(scores[name]) if i // 3 != cp)
    ratings = {name: mine[feed.ratings_at : feed.goals_set_at] for name, mine in cells.items()}
    start = feed.layout.offsets[cp]
    assert ratings["ben"][start : start + 8 : 2] == ["", "", "", 3]  # True, 5 and 0 are not ratings
    assert ratings["ana"][start : start + 8 : 2] == [1, 2, 3, 4] and ratings["ana"][start + 1 : start + 8 : 2] == [4, 4, 3, 4]
    assert {name: mine[feed.goals_set_at] for name, mine in cells.items()} == {"ana": 1, "ben": 2, "dee": 1}
    goals = {name: mine[feed.goals_set_at + 1 :] for name, mine in cells.items()}
    assert goals["ana"][2 * tv : 2 * tv + 2] == ["2026-06-30", "In progress"]
    assert goals["ben"][2 * cp : 2 * cp + 2] == ["' =1+1", "'－1"]  # neutralised as they are read
    assert all(cell == "" for cell in goals["dee"])  # a goal with no words fills no cells, though it counts as set


def test_when_two_activities_feed_the_same_cells_the_latest_saved_wins(store_url, tmp_path):
    """A retake of the start self-assessment and a second goal for one competency: the latest by time,
    not by the order the rows were written, and the first saved of two saved at the same moment."""
    root = cohort.make_evaluation_course(tmp_path / "course")
    path = root / "sessions" / "02-short.ipynb"
    notebook = json.loads(path.read_text())
    notebook["cells"][-1:-1] = [
        {"cell_type": "code", "execution_count": None, "id": f"again{n}", "metadata": {}, "outputs": [], "source": source}
        for n, source in enumerate([
            'SelfAssessment("s2-retake-cultural-proficiency", competency="cultural-proficiency", stage="start", required=False)',
            'Goal("s2-goal-again", competency="transformational-value", prompt="Again.", required=False)',
        ])
    ]
    path.write_text(json.dumps(notebook))
    catalog = load_catalog(load_settings(root))
    store = open_store(store_url)
    early, late = datetime(2026, 3, 1, 9, tzinfo=timezone.utc), datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
    assess = lambda who, activity, score, at: dict(  # noqa: E731
        username=who, session_id=activity[:2], activity_id=activity, verb="answered", at=at, done=True,
        value={"competency": "cultural-proficiency", "ratings": [int(score)] * 4, "score": score})
    goal = lambda who, activity, words, at: dict(  # noqa: E731
        username=who, session_id=activity[:2], activity_id=activity, verb="responded", at=at, done=True,
        value={"goal": words, "target": words, "status": "In progress"})
    # Written in the opposite order to their times: the later save has the lower row id.
    store.bulk_save([assess("ana", "s2-retake-cultural-proficiency", 3.0, late), goal("ana", "s2-goal-again", "later", late)])
    store.bulk_save([assess("ana", "s1-start-cultural-proficiency", 2.0, early), goal("ana", "s1-goal", "earlier", early)])
    # Saved at the same moment: the first saved stays.
    store.bulk_save([assess("ben", "s1-start-cultural-proficiency", 1.0, early)])
    store.bulk_save([assess("ben", "s2-retake-cultural-proficiency", 4.0, early)])

    rows = _written_as_before(store, catalog, tmp_path, 2)
    assert rows["ana"]["cultural_proficiency_start"] == "3.0" and rows["ana"]["rating_cultural_proficiency_1_start"] == "3"
    assert rows["ana"]["goal_transformational_value_target"] == "later" and rows["ana"]["goals_set"] == "2"
    assert rows["ben"]["cultural_proficiency_start"] == "1.0" and rows["ben"]["rating_cultural_proficiency_4_start"] == "1"


@pytest.mark.parametrize("goals_in_record", [False, True], ids=["goals-not-in-record", "goals-in-record"])
def test_the_evaluation_csv_is_byte_for_byte_what_it_was_before_the_bulk_reads(assorted, tmp_path, goals_in_record):
    store, catalog = assorted
    if goals_in_record:
        toml = tmp_path / "course" / "course" / "course.toml"
        toml.write_text(toml.read_text() + "\n[coaching]\ngoals_in_evaluation_record = true\n")
        catalog = load_catalog(load_settings(tmp_path / "course"))
    rows = _written_as_before(store, catalog, tmp_path, 5)
    assert rows["ben"]["name"] == "'=HYPERLINK(\"http://x\")" and rows["ben"]["email"] == "'@ben"
    assert rows["ben"]["cohort"] == "'+cohort" and rows["ben"]["department"] == "'-dept"
    assert rows["dee"]["name"] == "' =1+1" and rows["dee"]["cohort"] == "'＝full width" and rows["dee"]["department"] == "'\tTabbed"
    assert rows["ben"]["goal_cultural_proficiency_target"] == "' =1+1"
    assert rows["ben"]["goal_cultural_proficiency_status"] == "'－1"
    assert rows["ben"]["cultural_proficiency_start"] == "" and rows["ben"]["rating_cultural_proficiency_4_start"] == "3"
    assert rows["ana"]["cultural_proficiency_change"] == "1.25" and rows["ana"]["check_ins"] == "1"
    assert rows["ana"]["feedback_received"] == "2"
    if goals_in_record:
        assert rows["ben"]["goal_cultural_proficiency"] == "'=cmd|' /C calc'!A0"
        assert rows["ben"]["goal_cultural_proficiency_measure"] == "'@SUM(1)"
        assert rows["ben"]["goal_cultural_proficiency_progress"] == "日本語 ✓ \u202e<script>alert(1)</script>\r\nline"
        assert rows["ana"]["goal_transformational_value_progress"] == "'=going well"
    for nobody in ("cy", "eve"):
        row = rows[nobody]
        assert row["sessions_completed"] == "0" and row["goals_set"] == "0" and row["check_ins"] == "0"
        assert all(row[c] == "" for c in row if c.startswith(("rating_", "cultural_", "goal_")))


def test_a_store_damaged_under_the_bulk_read_gives_the_stores_own_words(tmp_path):
    """The bulk reads run on the driver's cursor: a fault found while rows are being fetched is still
    the store's error (what happened, what to do), never the driver's."""
    from companion.store.database import DAMAGED, StoreError

    path = tmp_path / "companion.db"
    store = open_store(f"sqlite:///{path}")
    store.bulk_save([
        dict(username=f"l{n:04d}", session_id="s1", activity_id=f"s1-a{k}", verb="responded", value={"text": "x" * 200},
             done=True, at=datetime(2026, 3, 1, tzinfo=timezone.utc))
        for n in range(400) for k in range(5)
    ])
    assert sum(len(rows) for rows in store.value_texts(["s1-a1"])) == 400
    store.close()
    with sqlite3.connect(path) as connection:  # everything in the file itself, and where the responses' pages are
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root, size = connection.execute("SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master WHERE name = 'responses'").fetchone()
    with path.open("r+b") as damaged:  # the middle leaf of the responses table (its root is an interior page), overwritten
        damaged.seek((root - 1) * size)
        page = damaged.read(size)
        assert page[0] == 0x05, "the responses table should span several pages"
        cells = int.from_bytes(page[3:5], "big")
        pointer = int.from_bytes(page[12 + 2 * (cells // 2) : 14 + 2 * (cells // 2)], "big")
        leaf = int.from_bytes(page[pointer : pointer + 4], "big")
        damaged.seek((leaf - 1) * size)
        damaged.write(random.Random(1).randbytes(size))
    rows = store.value_texts(["s1-a1"], batch=10)
    assert len(next(rows)) == 10  # the read began before the damaged page
    with pytest.raises(StoreError, match="^" + re.escape(DAMAGED[:40])):
        for _ in rows:
            pass


def test_on_postgresql_the_bulk_read_holds_one_batch_at_a_time(postgres_url):
    """The bulk read runs on the driver's cursor; on PostgreSQL that is a server-side cursor, fetched a batch
    at a time, so an export of 100,000 learners never holds all their rows at once."""
    from sqlalchemy import create_engine, text

    from conftest import new_database
    from companion.store.database import BULK_CURSOR

    url = new_database(postgres_url)
    store = open_store(url)
    at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    store.bulk_save([dict(username=f"l{n:03d}", session_id="s1", activity_id="s1-a", verb="responded", value={"n": n},
                          done=True, at=at) for n in range(30)])
    rows = store.value_texts(["s1-a"], batch=10)
    first = next(rows)
    watcher = create_engine(url, isolation_level="AUTOCOMMIT")
    with watcher.connect() as connection:  # what the reading connection last asked the server for
        asked = connection.execute(text(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%FETCH%'"
        )).scalars().all()
    watcher.dispose()
    assert any(BULK_CURSOR in query and "FETCH FORWARD 10" in query for query in asked), asked
    assert sorted(json.loads(value)["n"] for batch in (first, *rows) for _, _, value, _ in batch) == list(range(30))
