"""Saves to a SQLite file take its write lock in turn: first come, first served, and a writer that dies lets the next go."""

from __future__ import annotations

import multiprocessing
import sqlite3
import struct
import threading
import time
from pathlib import Path

import pytest
from conftest import held, wait_until

from companion.store import open_store

SPAWN = multiprocessing.get_context("spawn")


def _saver(url: str, learner: str, ready, go, results) -> None:
    store = open_store(url)  # as a page's kernel has, before the learner saves
    ready.put(learner)
    go.wait()
    store.save(learner, "s1", "s1-why", "responded", {"text": f"from {learner}"})
    results.put(learner)


def tickets_taken(database: Path) -> int:
    """How many saves have queued for a turn so far (the counter at the start of ``<database>-turns``)."""
    turns = Path(f"{database}-turns")
    counted = turns.read_bytes()[:8] if turns.exists() else b""
    return struct.unpack("<Q", counted)[0] if len(counted) == 8 else 0


def queue_savers(url: str, path: Path, learners: list[str], results) -> tuple[list, sqlite3.Connection]:
    """One process per learner with the store open; then another program locks the store, and each
    learner saves, one after the other, each once the one before has queued behind the lock."""
    ready = SPAWN.Queue()
    starts = [SPAWN.Event() for _ in learners]
    processes = [SPAWN.Process(target=_saver, args=(url, learner, ready, go, results)) for learner, go in zip(learners, starts)]
    for process in processes:
        process.start()
    for _ in learners:
        ready.get(timeout=120)
    other = held(path)
    for learner, go in zip(learners, starts):
        before = tickets_taken(path)
        go.set()
        wait_until(lambda: tickets_taken(path) > before, what=f"{learner}'s save to queue")
    return processes, other


def test_saves_waiting_for_a_locked_store_go_in_the_order_they_came(tmp_path):
    path = tmp_path / "companion.db"
    url = f"sqlite:///{path}"
    store = open_store(url)
    results = SPAWN.Queue()
    learners = ["ana", "ben", "cai", "dee", "eli", "fay"]
    processes, other = queue_savers(url, path, learners, results)
    assert results.empty(), "nobody saved while the lock was held"

    other.execute("COMMIT")
    other.close()
    finished = [results.get(timeout=60) for _ in learners]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    assert sorted(finished) == learners
    assert [event.username for event in store.events()] == learners, "stored in the order the saves came"


def test_a_saver_that_dies_while_it_waits_lets_the_next_one_go(tmp_path):
    path = tmp_path / "companion.db"
    url = f"sqlite:///{path}"
    store = open_store(url)
    results = SPAWN.Queue()
    (first, second), other = queue_savers(url, path, ["ana", "ben"], results)

    first.kill()  # a kernel killed while its save waits for its turn
    first.join(timeout=60)
    other.execute("COMMIT")
    other.close()

    assert results.get(timeout=60) == "ben"
    second.join(timeout=60)
    assert second.exitcode == 0
    assert [event.username for event in store.events()] == ["ben"]
    assert store.response("ben", "s1-why").value == {"text": "from ben"}


def test_a_store_locked_from_outside_past_the_busy_time_is_reported_busy_and_the_next_save_works(tmp_path, monkeypatch):
    from companion.errors import StoreUnavailable
    from companion.store import database

    monkeypatch.setattr(database, "BUSY_SECONDS", 0.3)
    path = tmp_path / "companion.db"
    store = open_store(f"sqlite:///{path}")
    other = held(path)
    began = time.monotonic()
    with pytest.raises(StoreUnavailable, match="could not be reached just now"):
        store.save("ana", "s1", "s1-why", "responded", {"text": "waits"})
    assert 0.3 <= time.monotonic() - began < 5, "it waited its turn for the busy time, then gave up"
    other.execute("COMMIT")
    other.close()
    store.save("ana", "s1", "s1-why", "responded", {"text": "saved"})
    assert store.response("ana", "s1-why").value == {"text": "saved"}


def test_without_a_usable_turns_file_saves_still_wait_for_the_lock_and_go_through(tmp_path, caplog):
    path = tmp_path / "companion.db"
    store = open_store(f"sqlite:///{path}")
    Path(f"{path}-turns").mkdir()  # not a file this process can open
    other = held(path)
    done = []
    saver = threading.Thread(target=lambda: done.append(store.save("ana", "s1", "s1-why", "responded", {"text": "waited"})))
    saver.start()
    wait_until(lambda: "in no particular order" in caplog.text, what="the warning about the turns file")
    assert not done, "the save waits while the lock is held"
    other.execute("COMMIT")
    other.close()
    saver.join(timeout=60)
    assert store.response("ana", "s1-why").value == {"text": "waited"}
    assert "could not be opened" in caplog.text and str(path) in caplog.text, "the server log says which file and why"


def test_a_store_opens_at_once_while_another_program_holds_the_write_lock(tmp_path):
    """A page's first cell opens the store (reading its schema revision), whoever is writing."""
    path = tmp_path / "companion.db"
    url = f"sqlite:///{path}"
    open_store(url).save("ana", "s1", "s1-why", "responded", {"text": "kept"})
    other = held(path)
    began = time.monotonic()
    store = open_store(url)
    assert time.monotonic() - began < 5, "opening waited for the write lock"
    assert store.response("ana", "s1-why").value == {"text": "kept"}
    other.execute("COMMIT")
    other.close()
