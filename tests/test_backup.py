"""companion backup and companion restore: a consistent copy of a running SQLite store, and a careful way back.

Real SQLite files, real writer processes, and for PostgreSQL a real server and
the real pg_dump and pg_restore that the message tells the administrator to run.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import shlex
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from companion.cli import main
from companion.store import HEAD_REVISION, Database, backup_store, open_store

WRITERS = 16


def rows(path: Path) -> dict[str, list[tuple]]:
    """Every learner, response and event in the SQLite file ``path``, in a comparable form."""
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as connection:
        return {
            "learners": connection.execute("SELECT username, name, cohort FROM learners ORDER BY username").fetchall(),
            "responses": connection.execute(
                "SELECT l.username, r.activity_id, r.value, r.done FROM responses r JOIN learners l ON l.id = r.learner_id ORDER BY 1, 2").fetchall(),
            "events": connection.execute(
                "SELECT l.username, e.activity_id, e.verb, e.value, e.at FROM events e JOIN learners l ON l.id = e.learner_id ORDER BY e.id").fetchall(),
        }


def fingerprint(db: Path) -> dict[str, str]:
    """The bytes of a store and its WAL, to show that a refused restore changed nothing."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in db.parent.glob(db.name + "*") if p.is_file()}


def write_until_stopped(url: str, writer: int, acknowledged, stop) -> None:
    """One writer process: saves a{0}, a{1}, ... and counts each save only once ``save`` has returned."""
    store = open_store(url)
    number = 0
    while not stop.is_set():
        store.save(f"writer{writer}", "s1", f"a{number}", "responded", {"text": f"save {number}"}, done=True)
        number += 1
        acknowledged[writer] = number


def fill(url: str, megabytes: int) -> None:
    """A store large enough that its backup takes several steps."""
    store = open_store(url)
    for number in range(megabytes * 1_000_000 // 150_000 + 1):
        store.save(f"filler{number % 4}", "s1", f"big{number}", "responded", {"text": "x" * 150_000})


def test_a_backup_taken_while_16_processes_save_holds_every_save_acknowledged_before_it(course, tmp_path):
    url = course.db_url
    fill(url, 12)
    context = multiprocessing.get_context("fork")
    acknowledged = context.Array("i", WRITERS, lock=False)
    stop = context.Event()
    writers = [context.Process(target=write_until_stopped, args=(url, w, acknowledged, stop)) for w in range(WRITERS)]
    for process in writers:
        process.start()
    try:
        deadline = time.monotonic() + 120
        while min(acknowledged) < 5:
            assert time.monotonic() < deadline, "the writers did not get going"
            assert all(p.is_alive() for p in writers), "a writer stopped"
            time.sleep(0.05)
        before = list(acknowledged)
        during = []  # saves acknowledged so far, at each step of the backup
        done = backup_store(url, tmp_path / "nightly.db", progress=lambda copied, total: during.append(sum(acknowledged)))
        time.sleep(0.5)
    finally:
        stop.set()
        for process in writers:
            process.join(60)
    assert all(p.exitcode == 0 for p in writers), "every writer ran without an error while the backup was taken"
    assert len(during) >= 3 and during[-1] > during[0], "the writers went on saving while the backup was copied, step by step"
    assert done.path == tmp_path / "nightly.db" and done.revision == HEAD_REVISION

    store_file = course.home / "companion.db"
    with sqlite3.connect(store_file) as live:
        assert live.execute("PRAGMA journal_mode").fetchone()[0] == "wal", "the store was in WAL mode, as the server keeps it"
    copy, final = rows(tmp_path / "nightly.db"), rows(store_file)
    for writer in range(WRITERS):
        saved = [r for r in copy["responses"] if r[0] == f"writer{writer}"]
        events = [e for e in copy["events"] if e[0] == f"writer{writer}"]
        assert len(saved) >= before[writer], f"writer{writer}: a save acknowledged before the backup began is missing"
        # A snapshot: the saves a0..a(n-1), each with its event, and nothing torn in between.
        assert sorted(r[1] for r in saved) == sorted(f"a{n}" for n in range(len(saved)))
        assert [e[1] for e in events] == [f"a{n}" for n in range(len(saved))]
    assert len(final["events"]) > len(copy["events"]), "the writers went on saving after the backup"
    with sqlite3.connect(tmp_path / "nightly.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete", "the backup is one self-contained file"


def test_the_backup_of_a_large_store_reports_its_progress(course, tmp_path, capsys):
    fill(course.db_url, 12)
    assert main(["backup", "-o", str(tmp_path / "nightly.db")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(re.fullmatch(r"  copied \d+ of \d+ pages", line) for line in lines[:-1]) and len(lines) >= 3
    assert lines[-2].split()[1] == lines[-2].split()[3], "the last step copies the last page"
    assert lines[-1].startswith(f"Backed up the store to {tmp_path / 'nightly.db'} (") and f"schema revision {HEAD_REVISION}): 4 learners, " in lines[-1]
    assert lines[-1].endswith(f"Restore it with 'companion restore {tmp_path / 'nightly.db'}'.")


def test_a_backup_refuses_to_replace_a_file_unless_forced(course, tmp_path, capsys):
    open_store(course.db_url).save("ana", "s1", "s1-why", "responded", {"text": "Because"})
    target = tmp_path / "backup.db"
    target.write_text("an older backup")
    assert main(["backup", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {target} already exists; choose another file name, or add --force to replace it. Nothing was written.\n"
    assert target.read_text() == "an older backup"
    assert main(["backup", "-o", str(target), "--force"]) == 0
    assert "1 learner, 1 response, 1 event." in capsys.readouterr().out
    assert rows(target)["responses"] == [("ana", "s1-why", '{"text": "Because"}', 0)]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary file is left behind"


def test_a_backup_into_a_missing_folder_says_so(course, tmp_path, capsys):
    open_store(course.db_url)
    assert main(["backup", "-o", str(tmp_path / "nowhere" / "b.db")]) == 2
    assert f"The folder {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err


def test_a_round_trip_into_an_empty_home_gives_the_same_rows(course, tmp_path, monkeypatch, capsys):
    store = open_store(course.db_url)
    store.upsert_learners([{"username": "ana", "name": "Ana Ruiz", "email": "", "cohort": "Winter", "department": "HR"}])
    store.save("ana", "s1", "s1-why", "responded", {"text": "Because équité matters"}, done=True, shared=True)
    store.save("bo", "s1", "s1-why", "responded", {"text": "First"})
    store.save("bo", "s1", "s1-why", "responded", {"text": "Second"})
    assert main(["backup", "-o", str(tmp_path / "b.db")]) == 0
    capsys.readouterr()

    monkeypatch.setenv("COMPANION_HOME", str(tmp_path / "new-home"))
    assert main(["restore", str(tmp_path / "b.db")]) == 0
    out = capsys.readouterr().out
    restored = tmp_path / "new-home" / "companion.db"
    assert out == f"Restored {tmp_path / 'b.db'} into the store at {restored}: 2 learners, 2 responses, 3 events. Start the server again with 'companion serve'.\n"
    assert rows(restored) == rows(course.home / "companion.db")
    again = open_store(f"sqlite:///{restored}")
    assert again.revision() == HEAD_REVISION
    assert again.response("bo", "s1-why").value == {"text": "Second"}
    again.save("bo", "s1", "s1-why", "responded", {"text": "Third"})  # the restored store takes saves


def test_a_restore_refuses_a_store_with_work_in_it_and_changes_nothing(course, tmp_path, monkeypatch, capsys):
    other = tmp_path / "other.db"
    open_store(f"sqlite:///{other}").save("cy", "s1", "s1-why", "responded", {"text": "From the backup"})
    backup_store(f"sqlite:///{other}", tmp_path / "b.db")
    store = open_store(course.db_url)
    store.save("ana", "s1", "s1-why", "responded", {"text": "Mine"})
    store.save("ana", "s1", "s1-goal", "responded", {"text": "Goal"})
    db = course.home / "companion.db"
    before_rows, before_bytes = rows(db), fingerprint(db)

    assert main(["restore", str(tmp_path / "b.db")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: The store at {db} is not empty: it holds 1 learner, 2 responses and 2 events, which restoring {tmp_path / 'b.db'} "
        "would replace. Stop 'companion serve', then run the restore again with --force to replace them. Nothing was changed.\n"
    )
    assert rows(db) == before_rows and fingerprint(db) == before_bytes

    assert main(["restore", str(tmp_path / "b.db"), "--force"]) == 0
    assert "1 learner, 1 response, 1 event" in capsys.readouterr().out
    assert [r[0] for r in rows(db)["learners"]] == ["cy"]
    assert store.response("ana", "s1-why") is None and store.response("cy", "s1-why").value == {"text": "From the backup"}


def test_a_damaged_store_is_set_aside_not_deleted_by_a_forced_restore(course, tmp_path, capsys):
    open_store(course.db_url).save("ana", "s1", "s1-why", "responded", {"text": "Mine"})
    backup_store(course.db_url, tmp_path / "b.db")
    db = course.home / "companion.db"
    for leftover in db.parent.glob("companion.db-*"):
        leftover.unlink()
    db.write_bytes(b"\x00damaged" * 1000)
    assert main(["restore", str(tmp_path / "b.db")]) == 2
    assert "add --force to replace it" in capsys.readouterr().err
    assert db.read_bytes() == b"\x00damaged" * 1000

    assert main(["restore", str(tmp_path / "b.db"), "--force"]) == 0
    out = capsys.readouterr().out
    kept = list(db.parent.glob("companion.db.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"\x00damaged" * 1000
    assert f"could not be read (damaged); it was moved to {kept[0]}, not deleted." in out
    assert open_store(course.db_url).response("ana", "s1-why").value == {"text": "Mine"}


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: p.write_bytes(b"\x00garbage, not a database" * 100), "is not a companion store backup: SQLite cannot read it (file is not a database)"),
        (lambda p: sqlite3.connect(p).execute("CREATE TABLE notes (t TEXT)").connection.commit(),
         "is not a companion store backup: it is a SQLite database without the companion's tables (alembic_version, events, learners, responses missing)"),
        (lambda p: None, "There is no file"),
    ],
    ids=["garbage", "another-sqlite-database", "missing"],
)
def test_a_restore_of_a_file_that_is_not_a_companion_backup_is_refused(course, tmp_path, capsys, make, says):
    open_store(course.db_url).save("ana", "s1", "s1-why", "responded", {"text": "Mine"})
    db = course.home / "companion.db"
    before = fingerprint(db)
    bad = tmp_path / "bad.db"
    make(bad)
    assert main(["restore", str(bad), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.endswith("Nothing was changed.\n") and err.count("\n") == 1
    assert fingerprint(db) == before


def test_a_backup_from_a_newer_companion_is_refused(course, tmp_path, capsys):
    future = tmp_path / "future.db"
    open_store(f"sqlite:///{tmp_path / 'src.db'}").save("ana", "s1", "s1-why", "responded", {"text": "x"})
    backup_store(f"sqlite:///{tmp_path / 'src.db'}", future)
    with sqlite3.connect(future) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    assert main(["restore", str(future)]) == 2
    err = capsys.readouterr().err
    assert f"{future} has schema revision 9999, which this companion does not know" in err
    assert not (course.home / "companion.db").exists()


def test_an_older_backup_is_upgraded_as_it_is_restored(course, tmp_path, capsys):
    old = tmp_path / "old.db"
    database = Database(f"sqlite:///{old}")
    database.upgrade("0003")
    with database.engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO learners (username, name, email, cohort, department, extra, created_at) "
                                   "VALUES ('ana', 'Ana', '', 'Winter', '', '{}', '2024-01-01 00:00:00')")
    database.close()
    assert main(["restore", str(old)]) == 0
    out = capsys.readouterr().out
    assert f"its schema upgraded from revision 0003 to {HEAD_REVISION}: 1 learner, 0 responses, 0 events." in out
    restored = open_store(course.db_url)
    assert restored.revision() == HEAD_REVISION and [l.username for l in restored.learners()] == ["ana"]
    assert Database(f"sqlite:///{old}").revision() == "0003", "the backup file itself is left as it was"


def test_for_postgresql_the_commands_say_which_pg_dump_and_pg_restore_to_run_and_those_work(course, postgres_url, monkeypatch, tmp_path, capsys):
    from conftest import new_database

    url = new_database(postgres_url)
    monkeypatch.setenv("COMPANION_DB_URL", url.replace("postgres@", "postgres:hunter2@"))
    store = open_store(url)
    store.save("ana", "s1", "s1-why", "responded", {"text": "Kept in PostgreSQL"})
    dump = tmp_path / "companion.dump"

    assert main(["backup", "-o", str(dump)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not dump.exists()
    message = captured.err
    assert message.startswith("error: This store is PostgreSQL, so companion backup does not copy it;")
    assert "hunter2" not in message and "psycopg2" not in message, "no password and no driver name in the commands"
    pg_dump = re.search(r"^  (pg_dump .*)$", message, re.M).group(1)
    pg_restore = re.search(r"^  (pg_restore .*)$", message, re.M).group(1)

    assert main(["restore", str(dump)]) == 2
    restore_message = capsys.readouterr().err
    assert "Stop 'companion serve', then run:\n  pg_restore --clean --if-exists --no-owner --dbname=" in restore_message
    assert "Nothing was changed." in restore_message

    # The commands as printed: dump, lose a row, restore, and the row is back.
    subprocess.run(shlex.split(pg_dump), check=True, capture_output=True)
    store.save("ana", "s1", "s1-why", "responded", {"text": "Changed after the dump"})
    subprocess.run(shlex.split(pg_restore), check=True, capture_output=True)
    store.close()
    assert store.response("ana", "s1-why").value == {"text": "Kept in PostgreSQL"}
