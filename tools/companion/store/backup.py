"""Backup and restore of a SQLite store; for PostgreSQL, the pg_dump and pg_restore commands to use.

A backup is SQLite's online backup API (``sqlite3.Connection.backup``) run
inside one read transaction on the store: in WAL mode that transaction sees a
fixed snapshot and blocks no writer, so the copy holds exactly the saves
committed before it began, while ``companion serve`` and its kernels go on
saving. The copy is written to a temporary file beside the target, checked,
and only then renamed to the target, so a failed backup leaves no half file.

A restore checks that the file is a companion store at a schema revision this
companion knows, prepares a copy of it upgraded to the current schema, and
then copies that into the store with the same backup API, as one transaction
under SQLite's own locks: readers see the old store or the new one, never a
mixture, and a restore that fails changes nothing.

Example::

    >>> from companion.store import backup_store  # doctest: +SKIP
    >>> backup_store("sqlite:////srv/companion/reflections/companion.db", "nightly.db").learners  # doctest: +SKIP
    42
"""

from __future__ import annotations

import math
import os
import shlex
import sqlite3
import tempfile
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy.engine import URL, make_url

from ..errors import BackupError
from .schema import HEAD_REVISION

STEP_PAGES = 1024  # pages copied per step of a backup: 4 MiB at SQLite's default page size
COUNTED = ("learners", "responses", "events")  # the tables whose rows a backup or restore reports
REQUIRED_TABLES = {"alembic_version", "learners", "events", "responses"}  # present at every known revision


@dataclass(frozen=True)
class Copied:
    """What a backup wrote or a restore put in place: where, at which schema revision, and how many rows."""

    path: Path
    revision: str
    learners: int
    responses: int
    events: int
    size: int  # bytes
    upgraded_from: str | None = None  # a restore: the backup's older revision, when it was upgraded
    set_aside: Path | None = None  # a restore with --force: where the damaged store it replaced was moved


def backup_store(url: str, target: str | Path, force: bool = False, progress: Callable[[int, int], None] | None = None) -> Copied:
    """Copy the SQLite store at ``url`` to ``target``: a consistent snapshot, taken while others write.

    ``progress(copied, total)`` is called with page counts after each step of a
    store larger than one step. An existing ``target`` is refused unless
    ``force``. Raises :class:`BackupError` for a PostgreSQL store (with the
    pg_dump command to use) and for anything that stops the copy."""
    source = _sqlite_path(url, "backup", target)
    target = Path(target).expanduser().absolute()
    if not source.is_file():
        raise BackupError(f"There is no store at {source} to back up; check COMPANION_HOME or COMPANION_DB_URL. Nothing was written.")
    if target.resolve() == source.resolve():
        raise BackupError(f"{target} is the store itself; give the backup another file name. Nothing was written.")
    if target.is_dir():
        raise BackupError(f"{target} is a folder; give a file name for the backup, e.g. {target / 'companion-backup.db'}. Nothing was written.")
    if not target.parent.is_dir():
        raise BackupError(f"The folder {target.parent} does not exist; create it or choose another place for the backup. Nothing was written.")
    if target.exists() and not force:
        raise BackupError(f"{target} already exists; choose another file name, or add --force to replace it. Nothing was written.")
    with _beside(target, ".partial") as temporary:
        try:
            with closing(_connect(source, read_only=True)) as store, closing(sqlite3.connect(temporary, isolation_level=None)) as copy:
                # One read transaction around every step: each step sees the same snapshot, and writers go on (WAL).
                store.execute("BEGIN")
                store.execute("SELECT count(*) FROM sqlite_master").fetchone()
                total = store.execute("PRAGMA page_count").fetchone()[0]
                step = max(STEP_PAGES, math.ceil(total / 20))

                def report(_status, remaining, pages):
                    if progress and pages > step:
                        progress(pages - remaining, pages)

                store.backup(copy, pages=step, progress=report)
                store.execute("COMMIT")
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, whatever the store's mode
                _check_intact(copy, temporary)
                copied = _describe(copy, temporary)
        except sqlite3.Error as error:
            raise BackupError(f"Could not back up the store at {source} ({error}); check that it is readable and that {target.parent} has room. Nothing was written.") from error
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        if force:
            os.replace(temporary, target)
        else:
            try:
                os.link(temporary, target)  # never replaces a file that appeared meanwhile
            except FileExistsError:
                raise BackupError(f"{target} appeared while the backup was being taken; choose another file name, or add --force to replace it. Nothing was written.")
    return Copied(target, copied.revision, copied.learners, copied.responses, copied.events, target.stat().st_size)


def restore_store(url: str, backup_file: str | Path, force: bool = False) -> Copied:
    """Replace the SQLite store at ``url`` with the companion backup in ``backup_file``, upgraded to the current schema.

    Refuses a file that is not a companion store at a known revision, and a
    store that holds learners, responses or events unless ``force``; either
    way nothing is changed. Raises :class:`BackupError`."""
    backup_file = Path(backup_file).expanduser().absolute()
    target = _sqlite_path(url, "restore", backup_file)
    revision = _companion_revision(backup_file)
    if target.is_file() and not force:
        held = _counts_of(target)
        if any(held.values()):
            raise BackupError(
                f"The store at {target} is not empty: it holds {_many(held['learners'], 'learner')}, {_many(held['responses'], 'response')} "
                f"and {_many(held['events'], 'event')}, which restoring {backup_file} would replace. Stop 'companion serve', then run "
                "the restore again with --force to replace them. Nothing was changed."
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    set_aside = _set_aside_if_damaged(target) if force else None
    with _beside(target, ".restoring") as prepared:
        try:
            with closing(_connect(backup_file, read_only=True)) as source, closing(sqlite3.connect(prepared, isolation_level=None)) as copy:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")
            if revision != HEAD_REVISION:
                _upgrade(prepared)
            with closing(sqlite3.connect(target, isolation_level=None, timeout=60)) as store, closing(sqlite3.connect(prepared, isolation_level=None)) as copy:
                _match_page_size(copy, store)
                copy.backup(store)  # one write transaction on the store, under its locks: all or nothing
                _check_intact(store, target)
                restored = _describe(store, target)
        except sqlite3.Error as error:
            raise BackupError(f"Could not restore {backup_file} into the store at {target} ({error}); stop 'companion serve' and try again. Nothing was changed.") from error
    return Copied(target, restored.revision, restored.learners, restored.responses, restored.events, target.stat().st_size,
                  upgraded_from=revision if revision != restored.revision else None, set_aside=set_aside)


@contextmanager
def _beside(target: Path, suffix: str) -> Iterator[Path]:
    """A temporary SQLite file in ``target``'s folder (so it can be renamed into place), removed afterwards with its side files."""
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(handle)
    try:
        yield Path(name)
    finally:
        for leftover in (name, *(f"{name}{end}" for end in (".lock", "-journal", "-wal", "-shm"))):
            Path(leftover).unlink(missing_ok=True)


def _set_aside_if_damaged(target: Path) -> Path | None:
    """Move a store SQLite cannot read (with its -wal and -shm) to ``<name>.damaged-<time>``, kept, not deleted,
    so a restore with --force can write a fresh file; None when the store is readable or absent."""
    if not target.is_file():
        return None
    try:
        with closing(_connect(target, read_only=True)) as connection:
            connection.execute("PRAGMA schema_version").fetchone()
        return None
    except sqlite3.DatabaseError:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = target.with_name(f"{target.name}.damaged-{stamp}")
        for end in ("", "-wal", "-shm"):
            if Path(f"{target}{end}").exists():
                os.replace(f"{target}{end}", f"{aside}{end}")
        return aside


def _many(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


def _sqlite_path(url: str, action: str, file: str | Path) -> Path:
    """The store's file, or for PostgreSQL a :class:`BackupError` that gives the commands to use instead."""
    try:
        parsed = make_url(url)
    except Exception:
        raise BackupError(f"'{url}' is not a database URL; set COMPANION_DB_URL to e.g. postgresql://user@host/db. Nothing was changed.")
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        raise BackupError(_postgres_commands(parsed, action, file))
    if backend != "sqlite":
        raise BackupError(f"companion {action} works on SQLite stores only, and this store is {backend}; use that database's own backup tools.")
    if parsed.database in (None, "", ":memory:"):
        raise BackupError("The store is in memory, so there is no file to back up or restore; set COMPANION_DB_URL to a SQLite file.")
    return Path(parsed.database).expanduser().absolute()


def postgres_url(parsed: URL) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL (no driver, no password), as pg_dump and psql take it."""
    plain = URL.create("postgresql", username=parsed.username, host=parsed.host, port=parsed.port, database=parsed.database, query=parsed.query)
    return plain.render_as_string(hide_password=False)


def _postgres_commands(parsed: URL, action: str, file: str | Path) -> str:
    database = shlex.quote(postgres_url(parsed))
    file = shlex.quote(str(file))
    if action == "backup":
        return (
            f"This store is PostgreSQL, so companion backup does not copy it; PostgreSQL's own pg_dump does, consistently while "
            f"the server runs. Back it up with:\n  pg_dump --format=custom --file={file} {database}\n"
            f"and restore it later with:\n  pg_restore --clean --if-exists --no-owner --dbname={database} {file}\n"
            "(the password comes from PGPASSWORD or ~/.pgpass). Nothing was written."
        )
    return (
        f"This store is PostgreSQL, so companion restore does not load it; restore a pg_dump backup with PostgreSQL's own "
        f"pg_restore. Stop 'companion serve', then run:\n  pg_restore --clean --if-exists --no-owner --dbname={database} {file}\n"
        "then 'companion upgrade' and start the server again (the password comes from PGPASSWORD or ~/.pgpass). Nothing was changed."
    )


def _connect(path: Path, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=60)
    else:
        connection = sqlite3.connect(path, isolation_level=None, timeout=60)
    connection.execute("PRAGMA busy_timeout=60000")
    return connection


def _companion_revision(path: Path) -> str:
    """The schema revision of the companion store in ``path``; a :class:`BackupError` if it is not one."""
    not_a_store = f"{path} is not a companion store backup"
    if not path.is_file():
        raise BackupError(f"There is no file {path}; give the path of a file written by 'companion backup'. Nothing was changed.")
    try:
        with closing(_connect(path, read_only=True)) as connection:
            _check_intact(connection, path)
            missing = REQUIRED_TABLES - _tables(connection)
            if missing:
                raise BackupError(f"{not_a_store}: it is a SQLite database without the companion's tables ({', '.join(sorted(missing))} missing); "
                                  "give a file written by 'companion backup'. Nothing was changed.")
            revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error as error:
        raise BackupError(f"{not_a_store}: SQLite cannot read it ({error}); give a file written by 'companion backup'. Nothing was changed.") from error
    known = _known_revisions()
    if revision is None or revision[0] not in known:
        found = "no schema revision" if revision is None else f"schema revision {revision[0]}"
        raise BackupError(f"{path} has {found}, which this companion does not know (it knows {', '.join(known)}); it was made by another "
                          "version of the companion: restore it with that version, or install the one that made it. Nothing was changed.")
    return revision[0]


def _known_revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(Path(__file__).parent.parent / "migrations"))
    return sorted(script.revision for script in scripts.walk_revisions())


def _check_intact(connection: sqlite3.Connection, path: Path) -> None:
    verdict = connection.execute("PRAGMA quick_check").fetchone()[0]
    if verdict != "ok":
        raise BackupError(f"{path} is damaged (SQLite's check says: {verdict}); nothing was changed. Use an older backup.")


def _tables(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _counts(connection: sqlite3.Connection) -> dict[str, int]:
    tables = _tables(connection)
    return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if table in tables else 0 for table in COUNTED}


def _counts_of(path: Path) -> dict[str, int]:
    try:
        with closing(_connect(path, read_only=True)) as connection:
            return _counts(connection)
    except sqlite3.Error as error:
        raise BackupError(f"Could not read the store at {path} ({error}) to see what a restore would replace; nothing was changed. "
                          "If it is damaged, add --force to replace it with the backup.") from error


def _describe(connection: sqlite3.Connection, path: Path) -> Copied:
    counts = _counts(connection)
    revision = connection.execute("SELECT version_num FROM alembic_version").fetchone() if "alembic_version" in _tables(connection) else None
    return Copied(path, revision[0] if revision else "none", counts["learners"], counts["responses"], counts["events"], 0)


def _upgrade(path: Path) -> None:
    """Bring the prepared copy at ``path`` to the current schema, with the store's own migrations."""
    from .database import Database

    database = Database(f"sqlite:///{path}")
    try:
        database.upgrade()
    finally:
        database.close()


def _match_page_size(source: sqlite3.Connection, destination: sqlite3.Connection) -> None:
    """Give ``source`` the page size of ``destination``: a store in WAL mode takes a backup of its own page size only."""
    wanted = destination.execute("PRAGMA page_size").fetchone()[0]
    if source.execute("PRAGMA page_size").fetchone()[0] != wanted:
        source.execute(f"PRAGMA page_size={int(wanted)}")
        source.execute("VACUUM")
