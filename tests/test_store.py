"""The store keeps every save: an append-only log, the latest response beside it, under concurrency and upgrades."""

from __future__ import annotations

import multiprocessing
from contextlib import contextmanager
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from companion.errors import StoreError
from companion.progress import SessionRule
from companion.store import HEAD_REVISION, MAX_VALUE_BYTES, Store, open_store, utcnow


def test_a_save_is_an_event_and_the_latest_response(store_url):
    store = open_store(store_url)
    store.save("ana", "s1", "s1-why", "responded", {"text": "first"}, done=True)
    store.save("ana", "s1", "s1-why", "responded", {"text": "second"})
    latest = store.response("ana", "s1-why")
    assert latest.value == {"text": "second"}
    assert latest.done is True, "done keeps its stored value when a save does not say"
    assert latest.shared is False, "reflections are private by default"
    assert [e.value["text"] for e in store.events("ana")] == ["first", "second"]
    assert latest.updated_at.tzinfo is not None


@pytest.mark.parametrize("upsert", [True, False], ids=["on-conflict", "update-then-insert"])
def test_what_a_save_returns_is_what_is_stored(tmp_path, upsert):
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    store.upgrade()
    if not upsert:
        store._upsert = None  # the portable path, for databases without INSERT ... ON CONFLICT
    first = store.save("ana", "s1", "s1-why", "responded", {"text": "one"}, done=True, shared=True)
    second = store.save("ana", "s1", "s1-why", "responded", {"text": "two"})
    third = store.save("ana", "s1", "s1-why", "unshared", {"text": "two"}, shared=False)
    assert (first.done, first.shared) == (True, True)
    assert (second.done, second.shared, second.value) == (True, True, {"text": "two"})
    assert (third.done, third.shared) == (True, False)
    assert store.response("ana", "s1-why") == third
    assert store.count_events() == 3
    assert len(store.responses("ana")) == 1

    # With its session's rule a save keeps the learner's progress, as a rebuild would find it.
    rule = SessionRule("s1", ("s1-why",), "s1-complete", ("s1",), "v1")
    store.rebuild_progress((rule,))
    store.save("ben", "s1", "s1-why", "responded", {"text": "b"}, done=True, rule=rule)
    store.save("ben", "s1", "s1-complete", "completed", {}, done=True, rule=rule)
    assert store.progress_version() == "v1"
    kept = store.progress_summary(["s1"], datetime.now(timezone.utc), listed=None)
    assert sorted(kept.session_counts) == [("", "s1", 1, 1)], "ben complete, ana in progress"
    store.rebuild_progress((rule,))
    assert store.progress_summary(["s1"], datetime.now(timezone.utc), listed=None).session_counts == kept.session_counts


def test_a_save_that_expects_what_is_stored_replaces_it(store_url):
    store = open_store(store_url)
    store.save("ana", "s1", "s1-why", "responded", {"text": "one"})
    saved = store.save("ana", "s1", "s1-why", "responded", {"text": "two"}, expected={"text": "one"})
    assert saved.conflict is False
    assert store.response("ana", "s1-why").value == {"text": "two"}
    assert [(e.verb, e.value["text"]) for e in store.events("ana")] == [("responded", "one"), ("responded", "two")]


def test_a_save_from_a_page_that_is_behind_replaces_nothing_and_keeps_both_versions(store_url):
    store = open_store(store_url)
    store.save("ana", "s1", "s1-why", "responded", {"text": "one"}, done=True, shared=True)
    # Two tabs read "one"; the first saves "two", then the second, still on "one", saves "three".
    store.save("ana", "s1", "s1-why", "responded", {"text": "two"}, expected={"text": "one"})
    refused = store.save("ana", "s1", "s1-why", "responded", {"text": "three"}, done=False, shared=False, expected={"text": "one"})
    assert refused.conflict is True
    assert (refused.value, refused.done, refused.shared) == ({"text": "two"}, True, True), "the stored response comes back"
    stored = store.response("ana", "s1-why")
    assert stored == replace(refused, conflict=False), "nothing was replaced"
    assert [(e.verb, e.value["text"]) for e in store.events("ana")] == [
        ("responded", "one"), ("responded", "two"), ("conflicted", "three")
    ], "the event log holds both versions"


def test_a_save_of_the_value_already_stored_is_not_a_conflict(store_url):
    store = open_store(store_url)
    store.save("ana", "s1", "s1-why", "responded", {"text": "one"})
    store.save("ana", "s1", "s1-why", "responded", {"text": "two"}, expected={"text": "one"})
    same = store.save("ana", "s1", "s1-why", "responded", {"text": "two"}, done=True, expected={"text": "one"})
    assert same.conflict is False
    assert (same.value, same.done) == ({"text": "two"}, True)
    assert [e.verb for e in store.events("ana")] == ["responded"] * 3


def test_a_save_expecting_nothing_saves_when_nothing_is_stored(store_url):
    store = open_store(store_url)
    first = store.save("ana", "s1", "s1-why", "responded", {"text": "one"}, expected=None)
    assert first.conflict is False
    assert store.response("ana", "s1-why").value == {"text": "one"}
    # Another page that also found nothing, saving after it, is behind.
    late = store.save("ana", "s1", "s1-why", "responded", {"text": "other"}, expected=None)
    assert (late.conflict, late.value) == (True, {"text": "one"})
    assert store.response("ana", "s1-why").value == {"text": "one"}
    assert [e.verb for e in store.events("ana")] == ["responded", "conflicted"]


def test_learners_never_see_each_others_responses(store_url):
    store = open_store(store_url)
    store.save("ana", "s1", "s1-why", "responded", {"text": "ana's"})
    store.save("ben", "s1", "s1-why", "responded", {"text": "ben's"})
    assert store.responses("ana")["s1-why"].value == {"text": "ana's"}
    assert store.responses("ben")["s1-why"].value == {"text": "ben's"}
    assert store.responses("cy") == {}


def test_an_oversized_value_is_refused_and_changes_nothing(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    store.save("ana", "s1", "s1-why", "responded", {"text": "kept"})
    with pytest.raises(StoreError, match="too large to save"):
        store.save("ana", "s1", "s1-why", "responded", {"text": "x" * (MAX_VALUE_BYTES + 1)})
    assert store.response("ana", "s1-why").value == {"text": "kept"}
    assert store.count_events() == 1


def test_hostile_text_is_stored_exactly_as_written(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    text = "<script>alert(1)</script> =SUM(A1) '; DROP TABLE events; -- \u202e\U0001f600"
    store.save("ana", "s1", "s1-why", "responded", {"text": text})
    assert store.response("ana", "s1-why").value["text"] == text


def test_an_unreachable_database_says_what_to_do(tmp_path):
    with pytest.raises(StoreError, match=r"Could not reach the database .*Connection refused.*Check COMPANION_DB_URL"):
        open_store("postgresql+psycopg2://nobody@127.0.0.1:1/none")


def _writer(url: str, writer: int, count: int) -> None:
    store = open_store(url)
    for n in range(count):
        store.save(f"learner{writer}", "s1", f"s1-a{n % 5}", "responded", {"writer": writer, "n": n}, done=True)


@pytest.mark.parametrize("processes", [16])
def test_many_processes_saving_at_once_lose_no_event(store_url, processes):
    open_store(store_url)  # created once, as the server does before kernels start
    per_writer = 60
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(store_url, w, per_writer)) for w in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0] * processes
    store = Store(store_url)
    events = store.events()
    assert len(events) == processes * per_writer
    for w in range(processes):
        mine = [e.value["n"] for e in events if e.username == f"learner{w}"]
        assert mine == list(range(per_writer)), f"writer {w}'s events are missing or out of order"
        assert store.response(f"learner{w}", "s1-a4").value == {"writer": w, "n": per_writer - 1}


PAGE_RULE = SessionRule("s1", ("s1-a0", "s1-a1", "s1-a2"), "s1-complete", ("s1", "s2"), "v1")
PAGE_ACTIVITIES = ("s1-a0", "s1-a1", "s1-a2", "s1-complete")


def _page_writer(url: str, writer: int, learner: str, count: int, results) -> None:
    """Saves as a page does: with its session's rule, each checked against what this page last saw stored."""
    store = open_store(url)
    seen: dict[str, object] = {}
    outcome = []
    for n in range(count):
        activity = PAGE_ACTIVITIES[n % len(PAGE_ACTIVITIES)]
        saved = store.save(learner, "s1", activity, "responded", {"writer": writer, "n": n}, done=n % 3 != 1, rule=PAGE_RULE, expected=seen.get(activity))
        seen[activity] = saved.value  # after a conflict the learner takes the other version, and carries on
        outcome.append(saved.conflict)
    results.put((writer, outcome))


def _progress_rows(store: Store) -> list[tuple]:
    from sqlalchemy import select

    from companion.store import LearnerRow, ProgressRow

    with store.session(write=False) as db:
        progress = db.execute(select(ProgressRow.learner_id, ProgressRow.session_id, ProgressRow.done, ProgressRow.completed_at)
                              .order_by(ProgressRow.learner_id, ProgressRow.session_id)).all()
        learners = db.execute(select(LearnerRow.id, LearnerRow.sessions_completed, LearnerRow.started).order_by(LearnerRow.id)).all()
    return [tuple(row) for row in progress] + [tuple(row) for row in learners]


def test_a_save_writes_the_learners_row_only_when_a_count_changes_or_last_active_is_a_minute_old(store_url, monkeypatch):
    """Most page saves leave the learner's row alone (on SQLite, two pages fewer to write inside the lock):
    their "last active" stays within a minute of their last save, and their sessions completed stay exact."""
    import companion.store.saves as saves

    store = open_store(store_url)
    rule = SessionRule("s1", ("s1-a0",), "s1-complete", ("s1", "s2"), "v1")
    start = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    clock = [start]
    monkeypatch.setattr(saves, "utcnow", lambda: clock[0])

    def save(activity: str, seconds: float) -> tuple:
        clock[0] = start + timedelta(seconds=seconds)
        store.save("ana", "s1", activity, "responded", {"at": seconds}, done=True, rule=rule)
        return store.last_active()["ana"], _progress_rows(store)[-1][1:]

    assert save("s1-a0", 0) == (start, (0, True)), "the first save writes the row"
    assert save("s1-a0", 30) == (start, (0, True)), "30 s later, nothing changed: the row is left alone"
    assert save("s1-complete", 45) == (start + timedelta(seconds=45), (1, True)), "a session completed is written at once"
    assert save("s1-a0", 100) == (start + timedelta(seconds=45), (1, True))
    assert save("s1-a0", 106) == (start + timedelta(seconds=106), (1, True)), "over a minute since the last write: written"
    assert [e.value["at"] for e in store.events()] == [0, 30, 45, 100, 106], "every save is still an event"


def test_pages_saving_at_once_lose_nothing_see_each_others_changes_and_keep_progress_current(store_url):
    """Eight processes save as pages do (the session's rule, the text checked against what the page saw):
    six learners alone, and one learner in two tabs at once. Every save is an event, in each page's order;
    exactly the saves that found another tab's change are conflicts, and replaced nothing; each response
    is the latest save that was not a conflict; the progress kept is what a rebuild finds."""
    store = open_store(store_url)
    store.rebuild_progress((PAGE_RULE,))  # progress built under the pages' rule, as the first dashboard does
    count = 40
    learners = {w: f"learner{w}" for w in range(6)} | {6: "two-tabs", 7: "two-tabs"}
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_page_writer, args=(store_url, w, learners[w], count, results)) for w in learners]
    for worker in workers:
        worker.start()
    outcomes = dict(results.get(timeout=600) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0] * len(workers)

    events = store.events()
    assert len(events) == len(learners) * count, "every save returned is an event"
    for w, learner in learners.items():
        mine = [e for e in events if e.value["writer"] == w]
        assert [e.value["n"] for e in mine] == list(range(count)), f"page {w}'s saves are missing or out of order"
        assert [e.verb == "conflicted" for e in mine] == outcomes[w], "a conflict is exactly a save that found another tab's change"
        assert all(e.username == learner for e in mine)
        if learner != "two-tabs":
            assert not any(outcomes[w]), "a learner alone never conflicts with themself"
    for learner in set(learners.values()):
        latest = {}
        for e in events:  # in the order they were stored
            if e.username == learner and e.verb != "conflicted":
                latest[e.activity_id] = e.value
        assert {a: r.value for a, r in store.responses(learner).items()} == latest, f"{learner}'s responses are their latest saves"
    assert store.progress_version() == "v1", "saves under the same rule keep the progress trusted"
    kept = _progress_rows(store)
    store.rebuild_progress((PAGE_RULE,))
    assert _progress_rows(store) == kept, "the progress the saves kept is what a rebuild finds"


def test_a_learner_first_seen_saving_is_created_once_as_the_roster_would(store_url):
    store = open_store(store_url)
    store.save("ana", "s1", "s1-why", "responded", {"text": "one"})
    other = Store(store_url)  # another process's store: it has not seen ana yet
    other.save("ana", "s1", "s1-why", "responded", {"text": "two"}, expected={"text": "one"})
    assert [(p.username, p.name, p.email, p.cohort, p.department) for p in store.learners()] == [("ana", "", "", "", "")]
    assert [e.value["text"] for e in store.events("ana")] == ["one", "two"]


def test_many_processes_opening_a_new_database_migrate_it_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(url, w, 3)) for w in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0] * 8
    assert Store(url).count_events() == 24


def test_a_new_database_another_connection_is_writing_is_opened_once_it_finishes(tmp_path):
    """SQLite refuses to switch a file to WAL at once, without its busy timeout, while another connection
    writes to it in the old mode: the moment many processes open a new store; opening waits instead."""
    import sqlite3
    import threading

    path = tmp_path / "fresh.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE scratch (x)")
    other.execute("BEGIN IMMEDIATE")
    finishing = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    finishing.start()
    try:
        store = open_store(f"sqlite:///{path}")
    finally:
        finishing.join()
        other.close()
    assert store.revision() == HEAD_REVISION
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_schema_upgrade_keeps_everything_saved_before_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url)
    old.upgrade("0001")
    with old.engine.begin() as db:  # what the first release wrote, as it wrote it
        db.exec_driver_sql("INSERT INTO learners (id, username, name, email, cohort, department, extra, created_at) "
                           "VALUES (1, 'ana', 'Ana', '', 'north', '', '{}', '2026-01-05 09:00:00.000000')")
        db.exec_driver_sql("INSERT INTO events (learner_id, session_id, activity_id, verb, value, at) VALUES "
                           "(1, 's1', 's1-why', 'responded', '{\"text\": \"written before the upgrade\"}', '2026-01-05 09:30:00.000000')")
        db.exec_driver_sql("INSERT INTO responses (learner_id, session_id, activity_id, value, done, shared, updated_at) VALUES "
                           "(1, 's1', 's1-why', '{\"text\": \"written before the upgrade\"}', 1, 1, '2026-01-05 09:30:00.000000')")
    new = Store(url)
    new.upgrade()
    assert new.revision() == HEAD_REVISION
    saved = new.response("ana", "s1-why")
    assert (saved.value, saved.done, saved.shared) == ({"text": "written before the upgrade"}, True, True)
    assert len(new.events("ana")) == 1
    assert new.last_active() == {"ana": datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)}, "filled from the events"
    assert new.progress_version() is None, "progress depends on the notebooks: the first dashboard builds it"
    new.save("ana", "s1", "s1-why", "responded", {"text": "and after it"})
    assert [e.value["text"] for e in new.events("ana")] == ["written before the upgrade", "and after it"]

def test_the_upgrade_to_0005_drops_the_index_no_read_used_and_keeps_every_event(store_url):
    """Events are no longer indexed by time (one page less for every save to write); nothing else changes."""
    from sqlalchemy import inspect

    old = Store(store_url)
    old.upgrade("0004")
    old.save("ana", "s1", "s1-why", "responded", {"text": "before"})
    assert "ix_events_at" in {index["name"] for index in inspect(old.engine).get_indexes("events")}
    old.close()
    new = Store(store_url)
    new.upgrade()
    indexes = {index["name"] for index in inspect(new.engine).get_indexes("events")}
    assert "ix_events_at" not in indexes and "ix_events_learner_id" in indexes
    new.save("ana", "s1", "s1-why", "responded", {"text": "after"})
    assert [e.value["text"] for e in new.events("ana")] == ["before", "after"]


@contextmanager
def statements_run(store: Store, monkeypatch):
    """Every statement the store runs in the block, as ``(sql, parameters)``: through SQLAlchemy, and the bulk
    reads on the driver's cursor, which pass SQLAlchemy's events by."""
    from sqlalchemy import event

    from companion.store.database import BATCH
    from companion.store.prepared import Prepared

    statements = []

    def record(conn, cursor, sql, params, *_):
        statements.append((sql, params))

    bulk = store._driver_rows

    def driver_rows(query, batch=BATCH):
        prepared = Prepared(query, store.engine.dialect, {})
        statements.append((prepared.sql, prepared.bind({})))
        return bulk(query, batch)

    event.listen(store.engine, "before_cursor_execute", record)
    with monkeypatch.context() as patched:
        patched.setattr(store, "_driver_rows", driver_rows)
        try:
            yield statements
        finally:
            event.remove(store.engine, "before_cursor_execute", record)


def test_stalled_learners_are_listed_never_active_first_then_longest_inactive_without_sorting_everyone(store_url, monkeypatch):
    """The dashboard lists its first 50 stalled learners; at 100,000 learners sorting them all to find those
    took a third of its second. The list reads learners in the order of the index on last activity instead."""
    store = open_store(store_url)
    rule = SessionRule("s1", ("s1-why",), "s1-complete", ("s1", "s2"), "v1")
    store.rebuild_progress((rule,))
    for username in ("ana", "bea", "cy", "dee", "eve"):
        store.save(username, "s1", "s1-why", "responded", {"text": "started"}, done=True, rule=rule)
    last_active = {"ana": "2026-01-03 09:00:00", "bea": "2026-01-01 09:00:00", "cy": None,
                   "dee": "2026-01-01 09:00:00", "eve": "2026-11-20 09:00:00"}
    with store.engine.begin() as db:
        for username, at in last_active.items():
            db.execute(text("UPDATE learners SET last_active = :at WHERE username = :u"), {"at": at, "u": username})
    cutoff = datetime(2026, 2, 1, tzinfo=timezone.utc)

    def stalled(listed):
        summary = store.progress_summary(["s1", "s2"], cutoff, listed=listed)
        assert summary.stalled_count == 4, "eve was active after the cutoff"
        return [username for username, *_ in summary.stalled]

    assert stalled(None) == ["cy", "bea", "dee", "ana"], "never active first, then the longest inactive; ties by username"
    assert stalled(3) == ["cy", "bea", "dee"]
    assert stalled(1) == ["cy"]
    with statements_run(store, monkeypatch) as statements:
        assert stalled(2) == ["cy", "bea"]
    if not store_url.startswith("sqlite"):
        return  # PostgreSQL's planner reads a table this small whole, whatever its indexes
    by_activity = [(sql, params) for sql, params in statements if "ORDER BY learners.last_active" in sql]
    assert by_activity, "the longest inactive are listed by last activity"
    with store.engine.connect() as db:
        for sql, params in by_activity:
            plan = " | ".join(row[-1] for row in db.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
            assert "ix_learners_last_active" in plan and "USE TEMP B-TREE FOR ORDER BY" not in plan, plan


def test_the_upgrade_to_0006_indexes_what_was_shared_and_the_feedback_queue_reads_through_it(store_url, monkeypatch):
    """The queue reads only the shared responses and their "shared" events, not every row, on a store upgraded in place."""
    from sqlalchemy import inspect

    old = Store(store_url)
    old.upgrade("0005")
    old.save("ana", "s1", "s1-why", "shared", {"text": "shared before"}, done=True, shared=True)
    old.save("bea", "s1", "s1-why", "responded", {"text": "private"}, done=True)
    old.close()
    new = Store(store_url)
    new.upgrade()
    assert "ix_events_shared" in {index["name"] for index in inspect(new.engine).get_indexes("events")}
    assert "ix_responses_shared" in {index["name"] for index in inspect(new.engine).get_indexes("responses")}
    with statements_run(new, monkeypatch) as statements:
        assert [(w.username, w.activity_id) for w in new.waiting_for_feedback()] == [("ana", "s1-why")]
        new.add_feedback("ana", "s1-why", "Lee", "Thank you.")
        assert len(new.hours_to_first_feedback(utcnow() - timedelta(days=1))) == 1
    if not store_url.startswith("sqlite"):
        return  # PostgreSQL's planner reads a table this small whole, whatever its indexes
    with new.engine.connect() as db:
        plans = {sql: " | ".join(row[-1] for row in db.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
                 for sql, params in statements if "FROM events" in sql}
    queue = next(plan for sql, plan in plans.items() if "FROM responses" in sql)
    hours = next(plan for sql, plan in plans.items() if "GROUP BY events.learner_id" in sql)
    assert "USING INDEX ix_responses_shared" in queue and "USING INDEX ix_events_shared" in queue, queue
    assert "USING INDEX ix_events_shared" in hours, hours


def test_the_coaching_reads_take_the_shared_events_from_their_index_without_reading_the_events_table(tmp_path, monkeypatch):
    """The queue, the dashboard's hours to feedback and the export's coaching figures find each "shared" event in
    the partial index of shared events alone. Asked with the verb as a parameter, SQLite could not know that
    the index holds only shared events, and read every event's row to check its verb (at 100,000 learners the
    export's coaching figures took 2.9 s instead of 1.7)."""
    store = open_store(f"sqlite:///{tmp_path / 'companion.db'}")
    store.save("ana", "s1", "s1-why", "shared", {"text": "shared"}, done=True, shared=True)
    store.save("bea", "s1", "s1-why", "shared", {"text": "shared too"}, done=True, shared=True)
    store.add_feedback("ana", "s1-why", "Lee", "Thank you.")
    with statements_run(store, monkeypatch) as statements:
        assert [w.username for w in store.waiting_for_feedback()] == ["bea"]
        assert len(store.hours_to_first_feedback(utcnow() - timedelta(days=1))) == 1
        assert [figures.feedback for figures in store.coaching_figures().values()] == [1]
    with store.engine.connect() as db:
        events = db.exec_driver_sql("SELECT rootpage FROM sqlite_master WHERE name = 'events'").scalar()
        readers = []
        for sql, params in statements:
            if "FROM events" not in sql:
                continue
            program = db.exec_driver_sql("EXPLAIN " + sql, params).all()  # (address, opcode, p1, p2, ...)
            table = {op[2] for op in program if op[1] == "OpenRead" and op[3] == events}
            if any(op[1] == "Column" and op[2] in table for op in program):
                readers.append(sql)
    assert len([sql for sql, _ in statements if "FROM events" in sql]) == 3
    assert not readers, readers


def test_the_head_revision_the_store_knows_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import companion
    import companion.store as store_module

    config = Config()
    config.set_main_option("script_location", str(Path(companion.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(config).get_current_head() == store_module.HEAD_REVISION


def test_a_store_already_at_the_newest_schema_opens_without_migrating(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    open_store(url).save("ana", "s1", "s1-why", "responded", {"text": "kept"})
    opened = subprocess.run(
        [sys.executable, "-c", f"import sys; from companion.store import open_store; s = open_store({url!r}); "
         "print('alembic' in sys.modules, s.response('ana', 's1-why').value)"],
        capture_output=True, text=True, check=True,
    )
    assert opened.stdout.split(None, 1) == ["False", "{'text': 'kept'}\n"]
