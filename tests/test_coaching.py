"""Facilitator coaching on the dashboard, in-process: the queue of what waits for feedback and how long,
the median time to first feedback, a cohort's self-ratings from start to end and each session's
usefulness (against an independent computation on a generated cohort), feedback on goals and
check-ins, and no private reflection's text in anything the dashboard builds."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pytest

import cohort
from companion.activities.closing import USEFULNESS
from companion.catalog import load_catalog
from companion.dashboard import Dashboard
from companion.dashboard.coaching import count_text, hours_words, median_text, more_text, queue, words_for
from companion.dashboard.cohort import cohort_view, growth_html, usefulness_html
from companion.identity import server_secret, sign
from companion.settings import load_settings
from companion.store import open_store

GOAL = "s1-goal"  # the mini course's goal (Transformational Value), title "Your Transformational Value goal"
LEARNERS = 300


def html_of(widget) -> str:
    out = [getattr(widget, "value", "")] if widget.__class__.__name__ == "HTML" else []
    for child in getattr(widget, "children", ()):
        out.append(html_of(child))
    return "".join(out)


def every_text(widget) -> str:
    """Every string a widget tree holds (HTML, values, labels, placeholders, tooltips, options)."""
    out = []
    for name in ("value", "description", "placeholder", "tooltip"):
        value = getattr(widget, name, None)
        if isinstance(value, str):
            out.append(value)
    out += [str(option) for option in getattr(widget, "options", ()) or ()]
    for child in getattr(widget, "children", ()):
        out.append(every_text(child))
    return "\n".join(out)


def find(widget, kind, **match):
    found = [widget] if widget.__class__.__name__ == kind and all(getattr(widget, k) == v for k, v in match.items()) else []
    for child in getattr(widget, "children", ()):
        found += find(child, kind, **match)
    return found


def open_dashboard(monkeypatch, settings, name="lee"):
    monkeypatch.setenv("COMPANION_IDENTITY", "link")
    monkeypatch.setenv("QUERY_STRING", "facilitator=" + sign(name, server_secret(settings.home), purpose="facilitator"))
    monkeypatch.delenv("VOILA_KERNEL_ID", raising=False)
    return Dashboard()


# Words ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "span, words",
    [
        (timedelta(seconds=59), "less than a minute"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(minutes=59, seconds=59), "59 minutes"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(hours=5, minutes=59), "5 hours"),
        (timedelta(hours=23, minutes=59), "23 hours"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=3, hours=23), "3 days"),
        (timedelta(days=-1), "less than a minute"),
    ],
)
def test_waited_time_in_words(span, words):
    assert words_for(span) == words


def test_the_median_sentence():
    assert median_text([2.0, 14.0, 30.0]) == "Median time to first feedback over the last 30 days: 14 hours"
    assert median_text([0.25]) == "Median time to first feedback over the last 30 days: 15 minutes"
    assert median_text([70.0, 74.0]) == "Median time to first feedback over the last 30 days: 3 days"
    assert median_text([]) == "Median time to first feedback over the last 30 days: no feedback given in the last 30 days"
    assert hours_words(1) == "1 hour" and hours_words(60) == "2.5 days"


# The queue --------------------------------------------------------------------------------


@pytest.fixture
def coached(course):
    """bea shared a reflection 3 days ago and checked in on her goal 5 hours ago; cy wrote only in private."""
    store = open_store(course.db_url)
    now = datetime.now(timezone.utc)
    store.upsert_learners([
        {"username": "bea", "name": "Bea Ortiz", "email": "", "cohort": "Winter 2021", "department": "", "extra": {}},
        {"username": "cy", "name": "", "email": "", "cohort": "", "department": "", "extra": {}},
    ])
    store.bulk_save([
        dict(username="bea", session_id="s1", activity_id="s1-why", verb="shared", value={"text": "Every child, by name."},
             done=True, shared=True, at=now - timedelta(days=3, hours=2)),
        dict(username="bea", session_id="s1", activity_id=GOAL, verb="responded",
             value={"competency": "transformational-value", "goal": "Weekly one-to-ones <b>with each</b> person",
                    "measure": "Every person says they got feedback", "target": "2026-12-31", "status": "In progress", "progress": ""},
             done=True, at=now - timedelta(days=2)),
        dict(username="bea", session_id="s1", activity_id="s1-start-cultural-proficiency", verb="answered",
             value={"competency": "cultural-proficiency", "stage": "start", "ratings": [1, 2, 3, 4]}, done=True, at=now - timedelta(days=2)),
        dict(username="cy", session_id="s1", activity_id="s1-private", verb="responded", value={"text": "SECRET-NEVER-SHOWN"},
             done=True, at=now - timedelta(days=4)),
    ])
    check_in = store.add_check_in("bea", "s1", GOAL, "In progress", "Held <i>four</i> of six.", at=now - timedelta(hours=5, minutes=10))
    return store, load_catalog(course), now, check_in


def test_the_queue_names_who_what_and_how_long_oldest_first(coached):
    store, catalog, now, _ = coached
    waiting = queue(store, catalog, now=now)
    assert waiting.count == 2
    assert [(i.learner, i.cohort, i.what, i.waited) for i in waiting.items] == [
        ("Bea Ortiz", "Winter 2021", "Your why", "3 days"),
        ("Bea Ortiz", "Winter 2021", "check-in on Your Transformational Value goal", "5 hours"),
    ]
    assert count_text(waiting.count) == "2 items wait for feedback, oldest first."
    assert more_text(waiting) == ""


def test_a_long_queue_lists_the_oldest_50_and_says_how_many_more(course):
    store = open_store(course.db_url)
    now = datetime.now(timezone.utc)
    store.bulk_save([
        dict(username=f"sup{n:03d}", session_id="s1", activity_id="s1-why", verb="shared", value={"text": "x"}, done=True, shared=True,
             at=now - timedelta(hours=200 - n))
        for n in range(130)
    ])
    waiting = queue(store, load_catalog(course), now=now)
    assert waiting.count == 130 and len(waiting.items) == 50
    assert [i.username for i in waiting.items] == [f"sup{n:03d}" for n in range(50)], "oldest first"
    assert waiting.items[0].waited == "8 days"
    assert more_text(waiting) == '<p class="companion-queue-more">and 80 more (the oldest 50 are listed).</p>'


def test_the_dashboard_shows_the_queue_and_answering_empties_it(coached, course, monkeypatch):
    store, catalog, now, check_in = coached
    board = open_dashboard(monkeypatch, course)
    shown = html_of(board)
    assert "2 items wait for feedback, oldest first." in shown
    assert "Bea Ortiz</strong> (Winter 2021) &mdash; shared reflection: Your why. <span class=\"companion-waited\">Waiting 3 days.</span>" in shown
    assert "(Winter 2021) &mdash; check-in on Your Transformational Value goal. <span" in shown
    assert "Status In progress: &ldquo;Held &lt;i&gt;four&lt;/i&gt; of six.&rdquo;" in shown
    assert "Median time to first feedback over the last 30 days: no feedback given in the last 30 days." in shown

    find(board, "Button", description="Answer: open Bea Ortiz's record")[0].click()
    record = html_of(board.record)
    # The goal in full, its check-in history, the ratings side by side, the shared reflection.
    for text in ("Weekly one-to-ones &lt;b&gt;with each&lt;/b&gt; person", "Every person says they got feedback", "31 Dec 2026",
                 "In progress", "Check-in 1, ", "Held &lt;i&gt;four&lt;/i&gt; of six.", "1 - Beginning", "4 - Leading", "not rated",
                 "Every child, by name."):
        assert text in record, text

    # An empty send is refused with what happened, and the text stays.
    goal_box = find(board, "Textarea", description="Your feedback on the goal \u201cYour Transformational Value goal\u201d")
    assert len(goal_box) == 1
    goal_box[0].value = "   "
    find(board, "Button", description="Send feedback on this goal")[0].click()
    assert "Not sent: The feedback is empty; write something before sending it. Your text is still in the box." in html_of(board)
    assert goal_box[0].value == "   "
    goal_box[0].value = "A clear measure."
    find(board, "Button", description="Send feedback on this goal")[0].click()
    assert [f.text for f in store.feedback("bea", GOAL)] == ["A clear measure."]
    assert goal_box[0].value == ""

    box = find(board, "Textarea", description=f"Your feedback on check-in 1 ({check_in.at:%d %b %Y}) of \u201cYour Transformational Value goal\u201d")
    box[0].value = "Four of six is a real start."
    find(board, "Button", description="Send feedback on this check-in")[0].click()
    assert [f.text for f in store.feedback("bea", GOAL, check_in=check_in.id)] == ["Four of six is a real start."]
    assert "1 item waits for feedback, oldest first." in html_of(board.queue), "the queue follows each reply"

    find(board, "Textarea", description="Your feedback")[0].value = "Thank you, Bea."
    find(board, "Button", description="Send feedback")[0].click()
    assert store.waiting_for_feedback() == []
    board.refresh()
    assert "Nothing waits for feedback" in html_of(board.queue)
    # Waited 74 hours (the reflection) and 5 hours 10 minutes (the check-in): the median of the two is 40 hours.
    assert "Median time to first feedback over the last 30 days: 40 hours." in html_of(board.queue)


def test_no_private_reflection_text_in_anything_the_dashboard_builds(coached, course, monkeypatch):
    store, *_ = coached
    store.save("bea", "s1", "s1-private", "responded", {"text": "SECRET-NEVER-SHOWN too"}, done=True)
    store.save("bea", "s2", "s2-note", "shared", {"text": "SECRET-NEVER-SHOWN once shared"}, done=True, shared=True)
    store.save("bea", "s2", "s2-note", "unshared", {"text": "SECRET-NEVER-SHOWN once shared"}, shared=False)
    board = open_dashboard(monkeypatch, course)
    for who in ("bea", "cy"):
        board.open_record(who)
        assert "SECRET" not in every_text(board), who
    assert "private: not shared" in html_of(board.record)
    assert "SECRET" not in every_text(board)


# The cohort view, against an independent computation ---------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """300 learners: start and end self-ratings (some incomplete, some only one of the two), usefulness and suggestions."""
    root = cohort.make_evaluation_course(tmp_path_factory.mktemp("coaching") / "course")
    settings = load_settings(root)
    store = open_store(f"sqlite:///{root / 'reflections' / 'companion.db'}")
    rng = random.Random(11)
    now = datetime.now(timezone.utc)
    plan, saves = [], []
    for n in range(LEARNERS):
        who = f"sup{n:03d}"
        start = [rng.randint(1, 4) for _ in range(4)] if rng.random() < 0.8 else None
        end = [rng.randint(1, 4) for _ in range(4)] if rng.random() < 0.7 else None
        at = now - timedelta(days=10, minutes=n)
        if start:
            # A first, partial rating, then the full one: only the latest counts.
            saves.append(dict(username=who, session_id="s1", activity_id="s1-start-cultural-proficiency", verb="answered",
                              value={"stage": "start", "ratings": [4, None, None, None]}, done=False, at=at))
            saves.append(dict(username=who, session_id="s1", activity_id="s1-start-cultural-proficiency", verb="answered",
                              value={"stage": "start", "ratings": start}, done=True, at=at + timedelta(minutes=1)))
        if end:
            partial = rng.random() < 0.1
            saves.append(dict(username=who, session_id="s2", activity_id="s2-end-cultural-proficiency", verb="answered",
                              value={"stage": "end", "ratings": end[:3] + [None] if partial else end}, done=not partial, at=at + timedelta(days=5)))
            end = None if partial else end
        useful = {}
        for session in ("s1", "s2"):
            if rng.random() < 0.6:
                answer = rng.choice(USEFULNESS + (None,))
                improve = rng.choice(["", "  ", f"More time for pairs ({who})", f"Shorter videos {n}"])
                saves.append(dict(username=who, session_id=session, activity_id=f"{session}-complete", verb="answered",
                                  value={"useful": answer, "improve": improve}, done=False, at=at + timedelta(days=1)))
                useful[session] = (answer, improve)
        plan.append((who, start, end, useful))
    store.bulk_save(saves)
    return store, load_catalog(settings), plan


def test_self_ratings_moved_as_an_independent_count_says(generated):
    store, catalog, plan = generated
    view = cohort_view(store, catalog)
    moved = {m.competency: m for m in view.movements}
    both = [(s, e) for _, s, e, _ in plan if s and e]
    assert len(both) > 100
    cp = moved["cultural-proficiency"]
    assert cp.learners == len(both)
    assert cp.mean_start == pytest.approx(float(sum(Fraction(sum(s), 4) for s, _ in both) / len(both)))
    assert cp.mean_end == pytest.approx(float(sum(Fraction(sum(e), 4) for _, e in both) / len(both)))
    assert (cp.rose, cp.same, cp.fell) == (
        sum(sum(e) > sum(s) for s, e in both), sum(sum(e) == sum(s) for s, e in both), sum(sum(e) < sum(s) for s, e in both)
    )
    assert all(m.learners == 0 and m.mean_start is None for c, m in moved.items() if c != "cultural-proficiency")

    chart = growth_html(view)
    assert chart.count('role="img"') == len(catalog.settings.competencies)
    assert (f'aria-label="Cultural Proficiency: mean self-rating {cp.mean_start:.2f} at the start and {cp.mean_end:.2f} at the end, '
            f'on a scale of 1 to 4, over {cp.learners} learners; {cp.rose} rose, {cp.same} stayed the same, {cp.fell} fell."') in chart
    assert f'<td class="num" data-label="Learners with both">{cp.learners:,}</td>' in chart
    assert "no learner has both ratings yet" in chart

    # One cohort: only its members count.
    members = {who for who, *_ in plan[:100]}
    part = {m.competency: m for m in cohort_view(store, catalog, members).movements}["cultural-proficiency"]
    assert part.learners == sum(1 for who, s, e, _ in plan[:100] if s and e)


def test_usefulness_counts_and_suggestions_without_names(generated):
    store, catalog, plan = generated
    view = cohort_view(store, catalog)
    for usefulness in view.usefulness:
        answers = [u[usefulness.session_id] for *_, u in plan if usefulness.session_id in u]
        assert usefulness.counts == {a: sum(1 for given, _ in answers if given == a) for a in USEFULNESS}
        assert list(usefulness.suggestions) == sorted((t.strip() for _, t in answers if t.strip()), key=str.casefold)
    shown = usefulness_html(view)
    s1 = view.usefulness[0]
    assert f'<td class="num" data-label="Very useful">{s1.counts["Very useful"]:,}</td>' in shown
    assert f"Suggestions for session 1 ({len(s1.suggestions):,}, without names)" in shown
    assert "Shorter videos" in shown
    # Suggestions carry no names: only what the learner typed (here a username typed into the text itself).
    assert "<li>More time for pairs (sup" in shown and "data-username" not in shown
