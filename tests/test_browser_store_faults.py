"""A real ``companion serve`` whose database goes away and comes back: the learner reads plain words, keeps typing,
and everything typed arrives; a damaged store stops the server at start with what to do."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from companion.store import open_store
from conftest import Server, free_port, make_course, open_session, wait_until
from test_store_faults import OwnPostgres

pytestmark = pytest.mark.browser

NOT_SAVED = "Your work could not be saved just now; it is kept on this page and will be retried in"


@pytest.fixture
def own_postgres():
    server = OwnPostgres()
    yield server
    server.remove()


def test_a_learner_keeps_typing_through_a_database_outage_and_everything_arrives(tmp_path, own_postgres, page, monkeypatch):
    # Kernels started under pytest do not forward file descriptor 2 to the page (ipykernel checks this
    # variable); without it they do, as in production, which is what the store's log must stay out of.
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    server = Server(make_course(tmp_path / "course"), extra_env={"COMPANION_DB_URL": own_postgres.url})
    received: list[str] = []  # everything the kernel sent to the browser
    page.on("websocket", lambda socket: socket.on("framereceived", lambda frame: received.append(frame if isinstance(frame, str) else frame.decode("utf-8", "replace"))))
    try:
        open_session(page, server.page("02-short.ipynb"))
        store = open_store(own_postgres.url)
        box = page.get_by_label("One thing you noticed this week.")
        status = page.locator(".companion-activity", has=box).locator(".companion-status")
        box.click()
        box.press_sequentially("Before.", delay=5)
        wait_until(lambda: (store.response("ana", "s2-note") or False) and store.response("ana", "s2-note").value == {"text": "Before."}, what="the first autosave")

        own_postgres.stop()
        box.press_sequentially(" During the outage.", delay=5)
        wait_until(lambda: status.inner_text().startswith(NOT_SAVED), timeout=30, what="the learner to be told the save will be retried")
        shown = status.inner_text()
        assert status.is_visible() and "kept on this page" in shown
        for hidden in (str(server.home), str(tmp_path), "127.0.0.1", "postgres", "SELECT", "INSERT", "Traceback"):
            assert hidden not in shown and hidden not in page.inner_text("body"), f"{hidden!r} shown to the learner"

        # The learner keeps typing while the page waits to retry; the status keeps saying so.
        box.press_sequentially(" And more while it retries.", delay=5)
        wait_until(lambda: status.inner_text().startswith(NOT_SAVED), timeout=30, what="the newer text to wait for its retry too")

        own_postgres.start()
        everything = "Before. During the outage. And more while it retries."
        back = open_store(own_postgres.url)
        wait_until(lambda: (back.response("ana", "s2-note") or False) and back.response("ana", "s2-note").value == {"text": everything},
                   timeout=60, what="everything typed to arrive once the database is back")
        wait_until(lambda: status.inner_text().startswith("Saved at"), timeout=10, what="the status to say it saved")
        assert box.input_value() == everything

        # The detail went to the server log (the kernel's real stderr), never over the page's connection.
        log = server.output()
        assert not (server.home / "logs" / "kernels.log").exists(), "a kernel that forwards stderr logs to the server log"
        assert "could not be used just now" in log and f"127.0.0.1:{own_postgres.port}" in log
        assert any(NOT_SAVED in frame for frame in received), "the page's connection was listened to"
        leaked = [frame for frame in received if "could not be used just now" in frame or f"127.0.0.1:{own_postgres.port}" in frame or "Connection refused" in frame]
        assert not leaked, f"the browser received the store's detail: {leaked[0][:300]}"
    finally:
        server.stop()


LOCKER = """
import sqlite3, sys
held = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
held.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
held.execute("COMMIT")
"""


def test_a_learner_keeps_typing_while_another_process_locks_the_sqlite_store_past_its_busy_timeout(tmp_path, page):
    server = Server(make_course(tmp_path / "course"))
    locker = None
    try:
        open_session(page, server.page("02-short.ipynb"))
        store = server.store()
        box = page.get_by_label("One thing you noticed this week.")
        status = page.locator(".companion-activity", has=box).locator(".companion-status")
        box.click()
        box.press_sequentially("Before.", delay=5)
        wait_until(lambda: (store.response("ana", "s2-note") or False) and store.response("ana", "s2-note").value == {"text": "Before."}, what="the first autosave")

        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(server.home / "companion.db")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert locker.stdout.readline().strip() == "locked"
        box.press_sequentially(" While locked.", delay=5)
        # SQLite's busy timeout (a minute) passes first; then the page says it will retry.
        wait_until(lambda: status.inner_text().startswith(NOT_SAVED), timeout=120, what="the learner to be told the save will be retried")
        for hidden in (str(server.home), "companion.db", "database is locked", "Traceback"):
            assert hidden not in page.inner_text("body"), f"{hidden!r} shown to the learner"
        box.press_sequentially(" More.", delay=5)

        locker.communicate("release\n", timeout=30)
        everything = "Before. While locked. More."
        wait_until(lambda: store.response("ana", "s2-note").value == {"text": everything}, timeout=150, what="everything typed to arrive once the lock is gone")
        wait_until(lambda: status.inner_text().startswith("Saved at"), timeout=10, what="the status to say it saved")
        assert [event.value["text"] for event in store.events("ana") if event.activity_id == "s2-note"][-1] == everything
    finally:
        if locker is not None and locker.poll() is None:
            locker.kill()
        server.stop()


def test_a_damaged_sqlite_store_stops_companion_serve_at_start_with_what_to_do(tmp_path):
    root = make_course(tmp_path / "course")
    home = root / "reflections"
    home.mkdir(exist_ok=True)
    (home / "companion.db").write_bytes(b"\x00garbage, not a database\xff" * 1000)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPANION_", "JUPYTERHUB_"))}
    env.update(COMPANION_COURSE_DIR=str(root), COMPANION_HOME=str(home), COMPANION_LEARNER="ana")
    done = subprocess.run(
        [sys.executable, "-m", "companion.cli", "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {home / 'companion.db'} is not a usable SQLite database (file is not a database): it is damaged or is not a "
        "companion store. Restore the latest backup with 'companion restore BACKUP-FILE --force' (the damaged file is kept "
        "beside it, renamed companion.db.damaged-<time>), or move it away to start again with an empty store."
    ]
