"""The store's faults reach people as clear words: no path, address or SQL on a page, the detail in the log,
faults that pass retried by the page, refusals said at once, a damaged or unreachable store refused at start."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

from companion.errors import StoreError, StoreUnavailable
from companion.store import database, open_store
from conftest import _postgres_bin, free_port, held, run_in_own_loop

SQL_WORDS = ("SELECT", "INSERT", "UPDATE", "BEGIN", "sqlite", "postgresql", "psycopg", "OperationalError", "127.0.0.1")


class OwnPostgres:
    """A PostgreSQL server of one test's own, on a free port, to stop and start at will.

    The suite's shared server (conftest's ``postgres_url``) serves other tests,
    so a test that takes its database away starts its own. Its folder is made
    with ``tempfile`` (pytest's ``tmp_path`` is root's alone, and PostgreSQL
    refuses to run as root)."""

    def __init__(self):
        self.bin = _postgres_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="companion-own-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(self.folder, "postgres")
        subprocess.run([*self.as_postgres, str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        self.start()

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), *args], check=True, capture_output=True)

    def start(self) -> None:
        self._ctl("-l", str(self.folder / "pg.log"), "-w", "-o", f"-p {self.port} -k {self.folder} -h 127.0.0.1", "start")

    def stop(self) -> None:
        """Stop the server now, closing every connection to it (as a crash or a restart would)."""
        self._ctl("-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run([*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def own_postgres():
    server = OwnPostgres()
    yield server
    server.remove()


@pytest.fixture
def quick_lock(monkeypatch):
    """SQLite writers wait 0.3 s for the write lock, not a minute, so a held lock is seen at once."""
    monkeypatch.setattr(database, "BUSY_SECONDS", 0.3)


def assert_plain(message: str, *hidden: str) -> None:
    """``message`` names none of ``hidden`` (paths, addresses) and no SQL or driver words."""
    for word in (*hidden, *SQL_WORDS):
        assert word not in message, f"{word!r} in a message people read: {message}"


# A store that cannot be used just now ------------------------------------------------------------


def test_a_locked_sqlite_store_is_unavailable_says_so_without_its_path_and_logs_the_detail(tmp_path, quick_lock, caplog):
    path = tmp_path / "companion.db"
    store = open_store(f"sqlite:///{path}")
    store.save("ana", "s1", "s1-why", "responded", {"text": "kept"})
    other = held(path)
    with caplog.at_level(logging.WARNING, logger="companion"):
        with pytest.raises(StoreUnavailable) as raised:
            store.save("ana", "s1", "s1-why", "responded", {"text": "new"})
    other.execute("COMMIT")
    other.close()
    message = str(raised.value)
    assert message.startswith("The database could not be reached just now") and "Try again in a moment" in message
    assert_plain(message, str(tmp_path), "companion.db")
    assert database.transient(raised.value)
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "companion")
    assert str(path) in logged and "database is locked" in logged, "the administrator's detail is in the log"

    assert store.save("ana", "s1", "s1-why", "responded", {"text": "new"}).value == {"text": "new"}, "the same save works once the lock is gone"
    assert store.count_events() == 2


def test_a_stopped_postgres_is_unavailable_without_its_address_and_a_restarted_one_is_used_again(own_postgres):
    store = open_store(own_postgres.url)
    store.save("ana", "s1", "s1-why", "responded", {"text": "before"})
    own_postgres.stop()
    for attempt in range(2):  # the pooled connection is gone, then no new one can be made
        with pytest.raises(StoreUnavailable) as raised:
            store.save("ana", "s1", "s1-why", "responded", {"text": "during"})
        assert_plain(str(raised.value), str(own_postgres.port), "postgres@")
    with pytest.raises(StoreUnavailable):
        store.response("ana", "s1-why")
    own_postgres.start()
    store.save("ana", "s1", "s1-why", "responded", {"text": "after"})
    assert [event.value["text"] for event in store.events("ana")] == ["before", "after"]


# Refusals: said at once, never retried -------------------------------------------------------------


def test_nul_characters_are_refused_on_every_store_and_a_typed_backslash_u0000_is_text(store_url):
    store = open_store(store_url)
    store.save("ana", "s1", "s1-why", "responded", {"text": "kept"})
    for value in ({"text": "a\x00b"}, {"text": "ok", "more": ["x\x00"]}, {"a\x00": "key"}):
        with pytest.raises(StoreError, match="contains a NUL character") as raised:
            store.save("ana", "s1", "s1-why", "responded", value)
        assert not database.transient(raised.value)
        with pytest.raises(StoreError, match="contains a NUL character"):
            store.record("ana", "s1", "s1-why", "opened", value)
    typed = {"text": "a literal \\u0000 typed as six characters"}
    assert store.save("ana", "s1", "s1-why", "responded", typed).value == typed
    assert store.response("ana", "s1-why").value == typed
    assert store.count_events() == 2


def test_refusals_and_faults_are_told_apart():
    from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError

    locked = OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    damaged = DatabaseError("SELECT", {}, sqlite3.DatabaseError("file is not a database"))
    duplicate = IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert database.transient(locked) and database.transient(StoreUnavailable("busy"))
    assert not database.transient(damaged) and database.damaged(damaged)
    assert not database.transient(duplicate) and not database.transient(StoreError("too long"))


# Opening: the administrator is told which store, and what to do ------------------------------------


def test_a_damaged_sqlite_file_is_refused_at_open_with_what_to_do(tmp_path):
    path = tmp_path / "companion.db"
    path.write_bytes(b"not a database, just bytes\n" * 400)
    with pytest.raises(StoreError) as raised:
        open_store(f"sqlite:///{path}")
    message = str(raised.value)
    assert f"{path} is not a usable SQLite database" in message
    assert "companion restore BACKUP-FILE" in message and "start again with an empty store" in message
    assert not isinstance(raised.value, StoreUnavailable)
    assert path.read_bytes().startswith(b"not a database"), "nothing was changed"


def test_a_store_damaged_while_open_is_refused_without_its_path(tmp_path):
    path = tmp_path / "companion.db"
    store = open_store(f"sqlite:///{path}")
    store.save("ana", "s1", "s1-why", "responded", {"text": "kept"})
    store.close()
    path.write_bytes(b"\x07" * 8192)
    for sidecar in ("-wal", "-shm"):
        Path(f"{path}{sidecar}").unlink(missing_ok=True)
    with pytest.raises(StoreError) as raised:
        store.save("ana", "s1", "s1-why", "responded", {"text": "new"})
    assert not isinstance(raised.value, StoreUnavailable), "a damaged file is not retried"
    assert str(raised.value).startswith("The database is damaged")
    assert_plain(str(raised.value), str(tmp_path))


def test_an_unreachable_postgres_is_refused_at_open_with_what_to_check():
    with pytest.raises(StoreUnavailable, match=r"Could not reach the database .*Connection refused.*Check COMPANION_DB_URL"):
        open_store(f"postgresql+psycopg2://nobody:secret@127.0.0.1:{free_port()}/none")


def test_a_password_in_the_url_never_reaches_a_message(tmp_path):
    with pytest.raises(StoreError) as raised:
        open_store(f"postgresql+psycopg2://nobody:s3cret-word@127.0.0.1:{free_port()}/none")
    assert "s3cret-word" not in str(raised.value)


# The page: retried until it succeeds, the latest text saved -------------------------------------------


async def until(condition, timeout: float = 20, what: str = "the condition"):
    """Poll ``condition`` on the running loop (timers fire meanwhile, as in a kernel)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_a_page_retries_a_save_until_the_store_takes_it_and_saves_the_latest_text(course, quick_lock, monkeypatch):
    from companion.activities import Reflection, Workbook, base
    from companion.activities.page import fingerprint

    monkeypatch.setattr(base, "AUTOSAVE_SECONDS", 0.05)
    monkeypatch.setattr(base, "RETRY_SECONDS", (0.2, 0.4, 0.8))
    path = course.home / "companion.db"

    async def learner_types_through_an_outage():
        workbook = Workbook("s1")
        why = Reflection("s1-why", prompt="Why?")
        store = workbook.store
        tries = []
        save = store.save
        monkeypatch.setattr(store, "save", lambda *a, **k: tries.append(a[4]) or save(*a, **k))

        other = held(path)
        why.text.value = "first"
        await until(lambda: "retried in 0.2 s" in why.status.value, what="the first retry to be announced")
        assert "Your work could not be saved just now; it is kept on this page" in why.status.value
        assert "companion-retrying" in why.status.value and f'data-saved="text:{fingerprint("")}"' in why.status.value
        assert_plain(why.status.value, str(course.home))
        await until(lambda: "retried in 0.4 s" in why.status.value, what="the second, longer wait")
        assert tries == [{"text": "first"}] * 2

        # The learner types on while a retry waits: the waiting retry gives way to the newer text.
        why.text.value = "first, then more"
        assert why._cancel_retry is None, "the autosave of the newer text replaces the waiting retry"
        await until(lambda: tries[-1] == {"text": "first, then more"} and why._cancel_retry, what="the newer text to be tried")
        assert "retried in 0.8 s" in why.status.value, "the wait keeps growing while the store is away"

        other.execute("COMMIT")
        other.close()
        await until(lambda: "Saved at" in why.status.value, what="the retried save")
        assert f'data-saved="text:{fingerprint("first, then more")}"' in why.status.value
        await asyncio.sleep(1.0)  # no second timer left to save an older text
        return store, tries

    store, tries = run_in_own_loop(learner_types_through_an_outage)  # a loop of its own, as a kernel has
    assert store.response("ana", "s1-why").value == {"text": "first, then more"}
    assert [event.value for event in store.events("ana") if event.activity_id == "s1-why"] == [{"text": "first, then more"}]
    assert tries[-1] == {"text": "first, then more"} and {"text": "first"} not in tries[tries.index({"text": "first, then more"}):]


def test_a_page_refuses_nul_text_at_once_and_does_not_retry_it(course, store_url, monkeypatch):
    from companion.activities import Reflection, Workbook

    monkeypatch.setenv("COMPANION_DB_URL", store_url)
    workbook = Workbook("s1")
    why = Reflection("s1-why", prompt="Why?")
    why.text.value = "pasted\x00from a PDF"
    why.save_now()
    assert "Not saved: The answer contains a NUL character" in why.status.value and "companion-error" in why.status.value
    assert why._cancel_retry is None, "a refusal is not retried"
    assert workbook.store.response("ana", "s1-why") is None
