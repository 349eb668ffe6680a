"""The writing process: the kernels' saves to a SQLite file, several learners' in one transaction, none lost.

Real processes throughout: the writer as ``companion serve`` starts it, and
kernels stood for by spawned processes that open the store as a page does.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3

import psutil
import pytest
from conftest import wait_until

from companion.errors import StoreError
from companion.store import MAX_VALUE_BYTES, UNCHECKED, Store, open_store, writer
from companion.progress import SessionRule

SPAWN = multiprocessing.get_context("spawn")
RULE = SessionRule("s1", ("s1-a0", "s1-a1"), "s1-complete", ("s1", "s2"), "test")


def _kernel(url: str, path: str, learner: str, saves: int, results) -> None:
    """A page's kernel: the server's environment names the writer; it saves ``saves`` times, each after the last returned."""
    os.environ[writer.ENVIRONMENT] = path
    store = open_store(url)
    for n in range(saves):
        store.save(learner, "s1", f"s1-a{n % 2}", "responded", {"n": n}, done=True, rule=RULE)
    results.put(learner)


@pytest.fixture
def running(tmp_path, monkeypatch):
    """A store and its writing process, named in this process's environment as the server names it to its kernels
    (so a ``Store`` made in the test saves as a page's kernel does); stopped after the test."""
    url = f"sqlite:///{tmp_path / 'companion.db'}"
    open_store(url)
    started = writer.start(url)
    assert started is not None, "the writing process started"
    monkeypatch.setenv(writer.ENVIRONMENT, started.path)
    yield url, started
    started.stop()


def saved_in_order(store: Store, learner: str) -> list[int]:
    return [event.value["n"] for event in store.events() if event.username == learner]


def test_the_saves_of_many_kernels_are_written_together_and_none_is_lost(running):
    url, started = running
    learners = [f"learner{n}" for n in range(8)]
    open_store(url).rebuild_progress((RULE,))
    results = SPAWN.Queue()
    kernels = [SPAWN.Process(target=_kernel, args=(url, started.path, learner, 150, results)) for learner in learners]
    for kernel in kernels:
        kernel.start()
    assert sorted(results.get(timeout=300) for _ in learners) == learners
    for kernel in kernels:
        kernel.join(timeout=60)
        assert kernel.exitcode == 0

    store = Store(url)
    for learner in learners:
        assert saved_in_order(store, learner) == list(range(150)), f"{learner}'s saves, each once, in order"
        assert store.response(learner, "s1-a1").value == {"n": 149}
    assert sorted(done for _, session, done, _ in store.progress_rows() if session == "s1") == [2] * 8, "each save kept its learner's progress"
    counted = writer.counts(started.path, url)
    assert counted["saves"] == 8 * 150, "every save went through the writer"
    assert counted["groups"] < counted["saves"], "several learners' saves shared a transaction"


def test_a_save_refused_in_a_group_undoes_nothing_of_the_others(tmp_path):
    url = f"sqlite:///{tmp_path / 'companion.db'}"
    store = open_store(url)
    with sqlite3.connect(tmp_path / "companion.db") as other:
        # The database refuses this one save after its event was written: the event must go with it.
        other.execute("CREATE TRIGGER refuse BEFORE INSERT ON responses WHEN NEW.activity_id = 's1-refused' "
                      "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    saves = [dict(username=learner, session_id="s1", activity_id=activity, verb="responded", value={"text": learner})
             for learner, activity in [("ana", "s1-why"), ("ben", "s1-refused"), ("cai", "s1-why")]]
    outcomes = store.save_together(saves)

    assert [type(outcome).__name__ for outcome in outcomes] == ["Response", "StoreError", "Response"]
    assert "could not" in str(outcomes[1]).lower() or "refused" in str(outcomes[1]).lower()
    assert [event.username for event in store.events()] == ["ana", "cai"], "ben's event went with his refused save"
    assert store.response("ana", "s1-why").value == {"text": "ana"} and store.response("cai", "s1-why").value == {"text": "cai"}
    assert store.response("ben", "s1-refused") is None


def test_a_save_with_the_wrong_fields_is_refused_alone(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'companion.db'}")
    good = dict(session_id="s1", activity_id="s1-why", verb="responded", value="kept")
    outcomes = store.save_together([dict(good, username="ana"), {"username": "ben", "colour": "red"}, dict(good, username="cai")])
    assert isinstance(outcomes[1], StoreError) and "refused" in str(outcomes[1])
    assert [event.username for event in store.events()] == ["ana", "cai"]


def test_when_sqlite_undoes_the_whole_transaction_every_save_of_the_group_is_refused(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'companion.db'}")
    with sqlite3.connect(tmp_path / "companion.db") as other:
        # As SQLite does on a full disk or an I/O error: the whole transaction is undone, not only this save.
        other.execute("CREATE TRIGGER undo BEFORE INSERT ON responses WHEN NEW.activity_id = 's1-undo' "
                      "BEGIN SELECT RAISE(ROLLBACK, 'undone'); END")
    saves = [dict(username=learner, session_id="s1", activity_id=activity, verb="responded", value=learner)
             for learner, activity in [("ana", "s1-why"), ("ben", "s1-undo"), ("cai", "s1-why")]]
    outcomes = store.save_together(saves)

    assert all(isinstance(outcome, StoreError) for outcome in outcomes), "ana's save was undone too: she must not be told it is saved"
    assert store.events() == [] and store.learners() == []
    # Ana was new in that group: the store must not remember an id for her that was undone.
    store.save_together([saves[0]])
    store.save("ana", "s1", "s1-how", "responded", "again")
    assert [event.value for event in store.events()] == ["ana", "again"]


def test_a_conflict_in_a_group_is_answered_to_its_page_with_the_stored_text(running):
    url, started = running
    page = Store(url)
    page.save("ana", "s1", "s1-why", "responded", "first", expected=None)
    other_tab = page.save("ana", "s1", "s1-why", "responded", "from the other tab", expected="first")
    behind = page.save("ana", "s1", "s1-why", "responded", "from this tab", expected="first")
    assert not other_tab.conflict
    assert behind.conflict and behind.value == "from the other tab", "the page is told what is stored, to ask which to keep"
    assert Store(url).response("ana", "s1-why").value == "from the other tab"
    assert writer.counts(started.path, url)["saves"] == 3


def test_a_kernel_saves_on_its_own_when_the_writer_is_gone_and_nothing_is_lost(running):
    url, started = running
    page = Store(url)
    page.save("ana", "s1", "s1-why", "responded", "through the writer")
    assert writer.counts(started.path, url)["saves"] == 1
    dead = started.process
    dead.send_signal(signal.SIGKILL)  # the writer dies (and the server starts another meanwhile)
    dead.wait(timeout=30)
    page.save("ana", "s1", "s1-why", "responded", "on its own")
    page.save("ana", "s1", "s1-how", "responded", "still on its own")
    store = Store(url)
    assert [event.value for event in store.events()] == ["through the writer", "on its own", "still on its own"]
    assert store.response("ana", "s1-why").value == "on its own"


def test_a_writer_that_dies_is_started_again_at_the_same_socket(running):
    url, started = running
    first = started.process.pid
    started.process.send_signal(signal.SIGKILL)
    wait_until(lambda: started.process.pid != first and os.path.exists(started.path), what="the writer started again")
    Store(url).save("ana", "s1", "s1-why", "responded", "through the new writer")
    assert writer.counts(started.path, url)["saves"] == 1


def test_a_writer_that_keeps_dying_is_left_stopped_and_the_log_says_so(running, monkeypatch, caplog):
    url, started = running
    monkeypatch.setattr(writer.Writer, "RESTARTS", 0)
    started.process.send_signal(signal.SIGKILL)
    wait_until(lambda: "each kernel saves on its own until the server is restarted" in caplog.text, what="the log")
    assert started.process.poll() is not None, "not started again"
    Store(url).save("ana", "s1", "s1-why", "responded", "on its own")
    assert Store(url).response("ana", "s1-why").value == "on its own"


def test_a_writer_serving_another_database_is_not_used(running, tmp_path):
    url, started = running
    elsewhere = f"sqlite:///{tmp_path / 'other.db'}"
    open_store(elsewhere).save("ana", "s1", "s1-why", "responded", "into its own database")
    assert Store(elsewhere).response("ana", "s1-why").value == "into its own database"
    assert Store(url).events() == [] and writer.counts(started.path, url)["saves"] == 0


def test_a_writer_answers_nothing_to_what_is_not_a_save_and_keeps_serving(running):
    import socket
    import struct

    url, started = running
    with socket.socket(socket.AF_UNIX) as stranger:
        stranger.connect(started.path)
        stranger.sendall(struct.pack(">I", 9) + b"not json!")
        stranger.settimeout(10)
        assert stranger.recv(100) == b"", "the connection was closed, with no answer"
    Store(url).save("ana", "s1", "s1-why", "responded", "after the stranger")
    assert writer.counts(started.path, url)["saves"] == 1
    assert oct(os.stat(started.path).st_mode & 0o777) == "0o600", "only the server's user may connect"


def test_a_message_whose_rule_is_not_a_rule_is_refused_and_the_writer_goes_on(running):
    url, started = running
    client = writer.Client(started.path, url)
    broken = writer.request_of("ana", "s1", "s1-why", "responded", "text", None, None, None, UNCHECKED) | {"rule": {"session_id": "s1"}}
    with pytest.raises(StoreError, match="refused"):
        client.save(broken)
    Store(url).save("ben", "s1", "s1-why", "responded", "a save after it")
    assert [event.username for event in Store(url).events()] == ["ben"]
    assert writer.counts(started.path, url)["saves"] == 2


def test_an_oversized_save_is_refused_in_the_kernel_before_it_is_sent(running):
    url, started = running
    with pytest.raises(StoreError, match="too large"):
        Store(url).save("ana", "s1", "s1-why", "responded", "x" * (20 << 20))
    assert writer.counts(started.path, url)["saves"] == 0


def test_the_largest_save_goes_through_the_writer(running):
    url, started = running
    largest = "é" * (MAX_VALUE_BYTES // 2 - 10)  # two bytes each in UTF-8: just under the limit
    page = Store(url)
    page.save("ana", "s1", "s1-why", "responded", largest, expected=None)
    page.save("ana", "s1", "s1-why", "responded", largest[:-1] + "!", expected=largest)
    assert Store(url).response("ana", "s1-why").value == largest[:-1] + "!"
    assert writer.counts(started.path, url)["saves"] == 2


def test_the_writer_ends_with_the_server_and_removes_its_socket(running):
    url, started = running
    pid = started.process.pid
    started.stop()
    assert not os.path.exists(started.folder)
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, what="the writer to end")
    assert started.process.returncode == 0


def test_no_writer_is_started_for_postgresql_or_a_store_in_memory():
    assert writer.start("postgresql://companion@localhost/companion") is None
    assert writer.start("sqlite:///:memory:") is None
