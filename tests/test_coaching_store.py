"""Coaching in the store (on SQLite and PostgreSQL, conftest's ``store_url``): dated goal check-ins, feedback on reflections, goals and check-ins, and the queue of what waits."""

from __future__ import annotations

import statistics
from datetime import timedelta

import pytest

from companion.errors import StoreError
from companion.store import Store, utcnow

GOAL = "s5-goal-cultural-proficiency"


def with_goal(url: str, *learners: str) -> Store:
    store = Store(url)
    store.upgrade()
    for learner in learners:
        store.save(learner, "s5", GOAL, "responded", {"goal": f"{learner}'s goal", "measure": "families say so"}, done=True)
    return store


def test_check_ins_are_a_dated_history_kept_whole_and_logged(store_url):
    store = with_goal(store_url, "ana")
    first = store.add_check_in("ana", "s5", GOAL, "In progress", "Asked two families.")
    second = store.add_check_in("ana", "s5", GOAL, "Met", "")
    assert [(c.status, c.note) for c in store.check_ins("ana", GOAL)] == [("In progress", "Asked two families."), ("Met", "")]
    assert first.at <= second.at
    assert [e.value for e in store.events("ana") if e.verb == "checked-in"] == [
        {"check_in": first.id, "status": "In progress", "note": "Asked two families."},
        {"check_in": second.id, "status": "Met", "note": ""},
    ]
    assert store.response("ana", GOAL).value["goal"] == "ana's goal", "a check-in changes nothing the learner wrote"


def test_a_check_in_needs_a_goal_and_sane_text(store_url):
    store = with_goal(store_url, "ana")
    store.ensure_learner("bea")
    with pytest.raises(StoreError, match="no goal saved for 's5-goal-cultural-proficiency' yet"):
        store.add_check_in("bea", "s5", GOAL, "In progress", "Early days.")
    with pytest.raises(StoreError, match="NUL character"):
        store.add_check_in("ana", "s5", GOAL, "In progress", "bad\x00note")
    with pytest.raises(StoreError, match="limit is 5,000"):
        store.add_check_in("ana", "s5", GOAL, "In progress", "x" * 5001)
    assert store.check_ins("ana") == [] and store.check_ins("bea") == []


def test_feedback_answers_a_shared_reflection_a_goal_or_one_check_in_and_nothing_private(store_url):
    store = with_goal(store_url, "ana")
    store.save("ana", "s1", "s1-why", "responded", {"text": "private"}, done=True)
    with pytest.raises(StoreError, match="has not shared 's1-why'"):
        store.add_feedback("ana", "s1-why", "Lee", "Seen it.")
    check_in = store.add_check_in("ana", "s5", GOAL, "In progress", "Asked two families.")
    on_goal = store.add_feedback("ana", GOAL, "Lee", "A clear measure.", goal=True)
    on_check_in = store.add_feedback("ana", GOAL, "Lee", "Good start.", check_in=check_in.id)
    assert [f.text for f in store.feedback("ana", GOAL)] == ["A clear measure."]
    assert [f.text for f in store.feedback("ana", GOAL, check_in=check_in.id)] == ["Good start."]
    assert [f.id for f in store.feedback_received("ana")] == [on_check_in.id, on_goal.id], "newest first"
    with pytest.raises(StoreError, match="no check-in 999"):
        store.add_feedback("ana", GOAL, "Lee", "Lost.", check_in=999)
    with pytest.raises(StoreError, match="NUL character"):
        store.add_feedback("ana", GOAL, "Lee", "a\x00b", goal=True)


def test_the_queue_lists_shared_reflections_and_check_ins_without_a_reply_oldest_first_and_empties(store_url):
    store = with_goal(store_url, "ana", "bea")
    store.save("ana", "s1", "s1-why", "shared", {"text": "shared"}, done=True, shared=True)
    store.save("bea", "s1", "s1-why", "responded", {"text": "private"}, done=True)
    check_in = store.add_check_in("bea", "s5", GOAL, "In progress", "Halfway.")
    waiting = store.waiting_for_feedback()
    assert [(w.username, w.kind, w.activity_id) for w in waiting] == [("ana", "reflection", "s1-why"), ("bea", "check-in", GOAL)]
    assert waiting[0].since <= waiting[1].since and waiting[1].check_in.note == "Halfway."
    assert all("private" not in repr(w) and "shared" != getattr(w, "text", None) for w in waiting), "names, not what was written"

    store.add_feedback("ana", "s1-why", "Lee", "Thank you.")
    store.add_feedback("bea", GOAL, "Lee", "Keep going.", check_in=check_in.id)
    assert store.waiting_for_feedback() == []
    hours = store.hours_to_first_feedback(utcnow() - timedelta(days=30))
    assert len(hours) == 2 and all(0 <= h < 1 for h in hours)
    assert statistics.median(hours) >= 0


def test_the_wait_for_feedback_counts_from_the_first_share_and_only_shares_in_the_period_count(store_url):
    from sqlalchemy import update

    from companion.store.schema import EventRow

    store = with_goal(store_url, "ana")
    store.save("ana", "s1", "s1-why", "shared", {"text": "first"}, done=True, shared=True)
    with store.engine.begin() as db:  # shared ten hours ago
        db.execute(update(EventRow).where(EventRow.verb == "shared").values(at=utcnow() - timedelta(hours=10)))
    store.save("ana", "s1", "s1-why", "responded", {"text": "edited since"}, done=True, shared=True)
    [waiting] = store.waiting_for_feedback()
    assert timedelta(hours=9.9) < utcnow() - waiting.since < timedelta(hours=10.1), "an edit does not restart the wait"
    store.add_feedback("ana", "s1-why", "Lee", "Thank you.")
    [hours] = store.hours_to_first_feedback(utcnow() - timedelta(days=1))
    assert 9.9 < hours < 10.1
    assert store.hours_to_first_feedback(utcnow() - timedelta(hours=5)) == [], "shared before the period: not counted"


def test_the_feeds_last_check_in_is_its_utc_day_whatever_the_databases_time_zone(store_url):
    from datetime import datetime, timezone

    from sqlalchemy import text, update

    from companion.store import CheckInRow

    postgres = store_url.startswith("postgresql")
    store = with_goal(store_url + ("?options=-c%20timezone%3DPacific/Auckland" if postgres else ""), "ana")
    store.add_check_in("ana", "s5", GOAL, "In progress", "Late in the day.")
    with store.engine.begin() as db:  # 23:30 UTC on 1 March: already 2 March in Auckland
        db.execute(update(CheckInRow).values(at=datetime(2026, 3, 1, 23, 30, tzinfo=timezone.utc)))
        if postgres:
            assert db.execute(text("SHOW timezone")).scalar() == "Pacific/Auckland"
    [figures] = store.coaching_figures().values()
    assert (figures.check_ins, figures.last_check_in, figures.feedback, figures.median_hours) == (1, "2026-03-01", 0, "")


def test_feedback_is_new_until_the_learner_looks(store_url):
    store = with_goal(store_url, "ana")
    store.add_feedback("ana", GOAL, "Lee", "One.", goal=True)
    assert [f.text for f in store.unseen_feedback("ana")] == ["One."]
    store.mark_feedback_seen("ana")
    assert store.unseen_feedback("ana") == []
    store.add_feedback("ana", GOAL, "Lee", "Two.", goal=True)
    assert [f.text for f in store.unseen_feedback("ana")] == ["Two."]


def test_a_reminder_sent_is_remembered_for_the_quiet_period(store_url):
    store = with_goal(store_url)
    store.record_reminder("ana@example.org", "not-started", "Your first session is waiting", at=utcnow() - timedelta(days=10))
    store.record_reminder("lee@example.org", "digest", "3 items wait for your feedback")
    assert store.reminders_sent(utcnow() - timedelta(days=7)) == {("lee@example.org", "digest")}
    assert len(store.reminders_sent(utcnow() - timedelta(days=30))) == 2


def test_a_facilitator_sees_goals_and_ratings_whole_and_reflections_only_when_shared(store_url):
    store = with_goal(store_url, "ana")
    store.save("ana", "s1", "s1-why", "responded", {"text": "private"}, done=True)
    seen = {r.activity_id: r.value for r in store.facilitator_view("ana", visible=frozenset({GOAL}))}
    assert seen[GOAL]["goal"] == "ana's goal" and seen["s1-why"] is None
