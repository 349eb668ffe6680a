"""The database under the store: its engine, the one commit-or-rollback session, schema upgrades.

:class:`Database` is the base of both halves of :class:`companion.store.Store`
(``saves`` and ``reads``): every statement they run goes through
:meth:`Database.session` or :meth:`Database.transaction` (the largest reads
through ``_driver_rows``, inside a session), committed when the block ends and
rolled back on any error, with database errors turned into a
:class:`~companion.errors.StoreError` that says what to do (``_reported``):
:class:`~companion.errors.StoreUnavailable` when trying again later may work
(locked, stopped, the connection lost). Those messages may reach a learner's
page, so they name no path, address or SQL; the detail goes to the "companion"
log, which in a kernel is the server log, never the stderr a kernel forwards
to the browser (``_logger``). Opening a store that is damaged or cannot be reached
raises a message for the administrator instead: which store, and what to do.
SQLite runs in WAL mode with a busy timeout and takes its write lock at the
start of each write transaction; the schema is brought up to date by Alembic
under a lock, so many processes may open a store at once.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DatabaseError, DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from ..errors import StoreError, StoreUnavailable
from .prepared import Prepared, driver_error
from .turns import Turns
from .writer import ENVIRONMENT as WRITER_ENVIRONMENT, Client

READ_ONLY = "companion_read_only"  # a connection option: this transaction only reads
BUSY_SECONDS = 60  # SQLite: how long a writer queues for the write lock before it is told the store is busy
CONNECT_SECONDS = 10  # PostgreSQL: how long to wait for a server that does not answer
PSYCOPG = ("psycopg2", "psycopg")  # PostgreSQL drivers with a connect timeout and server-side (named) cursors
BATCH = 50_000  # rows fetched at a time by a bulk read
BULK_CURSOR = "companion_bulk_read"  # its server-side cursor's name on PostgreSQL

# What people are told; the detail (which store, the driver's words) goes to the log.
UNAVAILABLE = (
    "The database could not be reached just now (it is busy, restarting or stopped); nothing was changed. "
    "Try again in a moment; if it keeps happening, tell your facilitator or the server's administrator (the server log says why)."
)
DAMAGED = (
    "The database is damaged and cannot be used; nothing was changed. Tell your facilitator or the server's "
    "administrator: the server log says which file, and the latest backup restores it."
)
REFUSED = (
    "The database refused the change; nothing was saved. "
    "Try again; if it keeps happening, tell your facilitator or the server's administrator (the server log says why)."
)
NUL = "The text contains a NUL character (often pasted from another program); remove it and save again; nothing was saved."

log = logging.getLogger("companion")


def _in_kernel() -> bool:
    """Whether this process is a Jupyter kernel, whose stderr ends up in the learner's browser."""
    return "ipykernel" in sys.modules and type(sys.stderr).__module__.startswith("ipykernel")


def _logger(url: str) -> logging.Logger:
    """The "companion" log: the server log (the kernel's real stderr, not the copy it forwards to the page).

    In a kernel, what is written to ``sys.stderr`` or file descriptor 2 is
    forwarded to the learner's browser, so records go to the duplicate of the
    real stderr the kernel keeps, which is ``companion serve``'s own output;
    a kernel without one writes ``logs/kernels.log`` in the data home instead.
    Outside a kernel (``companion serve``, the command line) records go where
    the application's logging sends them, by default stderr."""
    if not log.handlers and _in_kernel():
        real = getattr(sys.stderr, "_original_stdstream_copy", None)
        if real is not None:
            handler = logging.StreamHandler(os.fdopen(os.dup(real), "w", buffering=1, encoding="utf-8", errors="replace"))
        else:
            home = os.environ.get("COMPANION_HOME")
            database = sqlite_file(url)
            folder = Path(home) if home else Path(database).parent if database else Path.cwd()
            (folder / "logs").mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(folder / "logs" / "kernels.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("[companion kernel %(process)d] %(asctime)s %(levelname)s %(name)s | %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # not also to a handler on the root log that may write to the forwarded stderr
    return log


def transient(error: BaseException) -> bool:
    """Whether trying again later may work: the database is locked, busy, stopped, or the connection was lost."""
    if isinstance(error, StoreError):
        return isinstance(error, StoreUnavailable)
    if damaged(error):
        return False
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (OperationalError, InterfaceError, PoolTimeout))


def damaged(error: BaseException) -> bool:
    """Whether the database file is not a usable SQLite database (overwritten, truncated, corrupted)."""
    reason = str(getattr(error, "orig", "") or "")
    return isinstance(error, DatabaseError) and ("file is not a database" in reason or "database disk image is malformed" in reason)


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite store at ``url``; None for an in-memory store or another database."""
    parsed = make_url(url)
    return parsed.database if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") else None


def _reason(error: BaseException) -> str:
    """The driver's first line about ``error``, for the log and the administrator."""
    words = str(getattr(error, "orig", None) or error).strip()
    return words.splitlines()[0] if words else error.__class__.__name__


def _sqlite_engine(url: str, waits: bool = True) -> Engine:
    """An engine for the SQLite file at ``url``; ``waits=False``: its connections never wait for the write lock
    (page saves, which wait in turn instead: companion.store.turns)."""
    engine = create_engine(url, connect_args={"timeout": BUSY_SECONDS, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, open transactions, so that we can say IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if sqlite_file(url):
            _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000) if waits else 0}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Writers take the write lock up front and queue behind the timeout; readers (WAL) never block.
        connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

    return engine


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Put the file in WAL mode (kept in the file: only a new store's first connection changes it).

    While another connection switches a new file, or writes to it before it is switched, SQLite
    answers "database is locked" at once instead of waiting its busy timeout; so the switch is tried
    again until the busy timeout would have passed, as happens when many processes open a new store."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Database:
    """One database, its sessions and its schema: what the saving and reading halves of the store share."""

    def __init__(self, url: str):
        self.url = url
        try:
            parsed = make_url(url)
        except Exception:
            raise StoreError(f"'{url}' is not a database URL; set COMPANION_DB_URL to e.g. postgresql://user@host/db.")
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._turns: Turns | None = None  # how page saves take a SQLite file's write lock
        self._kept = threading.local()  # each thread's connection for saves to a SQLite file (Saves._kept_connection)
        self._generation = 0  # bumped by close(): a kept connection from before is not used again
        if self.is_sqlite:
            database = sqlite_file(url)
            if database:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                self._turns = Turns(database)
            self.engine = _sqlite_engine(url)
        else:
            waits = parsed.get_driver_name() in PSYCOPG and "connect_timeout" not in parsed.query
            self.engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_SECONDS} if waits else {})
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        dialect = self.engine.dialect.name
        # INSERT ... ON CONFLICT, where the database has it: one statement for "create or update".
        self._upsert = (
            __import__(f"sqlalchemy.dialects.{dialect}", fromlist=["insert"]).insert
            if dialect in ("sqlite", "postgresql")
            else None
        )
        # Learner ids never change once committed, so a save need not look its learner up again.
        self._learner_ids: dict[str, int] = {}
        self._rule_checked: dict[str, float] = {}  # rule version -> when a save last checked it against store_meta
        # Where page saves go when the server runs a writing process for this database (companion.store.writer).
        writer = os.environ.get(WRITER_ENVIRONMENT)
        self._writer = Client(writer, url) if writer and self._turns else None
        self._together = None  # the writing process's open transaction, while it runs a group of saves

    @functools.cached_property
    def _saves_engine(self) -> Engine:
        """The engine page saves write through: for a SQLite file, one whose connections take the write lock in turn."""
        return _sqlite_engine(self.url, waits=False) if self._turns else self.engine

    def close(self) -> None:
        """Close the connections this store holds (its pools and this thread's for saves); it opens new ones when next used.

        For when the database is replaced underneath (a restore) or a test damages it on purpose."""
        kept = getattr(self._kept, "connection", None)
        self._kept.connection = None
        if kept is not None:
            kept.invalidate()
        self._generation += 1  # other threads take a new connection at their next save
        self.engine.dispose()
        if "_saves_engine" in self.__dict__:
            self._saves_engine.dispose()

    def forked(self) -> None:
        """In a process forked from one that used this store: leave the connections it inherited to that
        process (closing them here would close them there) and open new ones when next used."""
        self._kept = threading.local()
        self._generation += 1
        self.engine.dispose(close=False)
        if "_saves_engine" in self.__dict__:
            self._saves_engine.dispose(close=False)

    def __repr__(self) -> str:
        return f"Store({make_url(self.url).render_as_string(hide_password=True)!r})"

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error.

        ``write=False`` for reads: on SQLite they then take no write lock, so
        pages restoring work and a facilitator's dashboard never wait behind the
        saves, nor the saves behind them."""
        db = self._sessions()
        try:
            with self._reported():
                if not write:
                    db.connection(execution_options={READ_ONLY: True})
                try:
                    yield db
                    db.commit()
                except BaseException:
                    db.rollback()
                    raise
        finally:
            db.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on a plain connection, for the save path: committed, or rolled back on any error.

        The same as :meth:`session` without the ORM's bookkeeping, which costs as
        much as a save's statements and, on SQLite, is paid holding the write lock."""
        with self._reported(), self.engine.begin() as connection:
            yield connection

    def _driver_rows(self, query, batch: int = BATCH) -> Iterator[list[tuple]]:
        """The rows of a bulk read, ``batch`` at a time, as the driver's tuples: no ``Row`` made, no type
        read (:class:`Prepared`), so only for columns the driver gives as they are wanted (numbers, text).

        On PostgreSQL through psycopg the cursor is the server's (named), so only
        a batch at a time is held here, as SQLAlchemy's ``yield_per`` would do;
        other drivers have no named cursors and read through a plain one."""
        dialect = self.engine.dialect
        statement = Prepared(query, dialect, {})
        with self.session(write=False) as db:
            connection = db.connection().connection
            cursor = connection.cursor(name=BULK_CURSOR) if dialect.driver in PSYCOPG else connection.cursor()
            try:
                cursor.execute(statement.sql, statement.bind({}))
                while rows := cursor.fetchmany(batch):
                    yield rows
            except dialect.loaded_dbapi.Error as error:
                raise driver_error(error, dialect) from error
            finally:
                cursor.close()

    @contextmanager
    def _reported(self) -> Iterator[None]:
        """Database errors become a :class:`StoreError` a learner may read: what happened and what to do, no path or SQL.

        Faults that may pass (locked, stopped, connection lost) are
        :class:`StoreUnavailable`, so a page retries them; the detail is logged."""
        try:
            yield
        except SQLAlchemyError as error:
            if transient(error):
                _logger(self.url).warning("%r could not be used just now: %s", self, _reason(error))
                raise StoreUnavailable(UNAVAILABLE) from error
            if damaged(error):
                _logger(self.url).error("%r is damaged: %s. Restore the latest backup.", self, _reason(error))
                raise StoreError(DAMAGED) from error
            _logger(self.url).error("%r refused a change: %s", self, _reason(error), exc_info=True)
            raise StoreError(REFUSED) from error
        except ValueError as error:
            if "NUL" not in str(error):
                raise
            raise StoreError(NUL) from error

    # Schema ---------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (Alembic), holding a lock so only one process migrates."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent.parent / "migrations"))
        try:
            with self._migration_lock() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                connection.commit()
        except SQLAlchemyError as error:
            if damaged(error) or transient(error):
                raise self._unusable(error) from error
            raise self._opening_failed(
                StoreError(f"Could not upgrade the database at {self!r} ({_reason(error)}). Nothing was changed; the server log has the detail."),
                error,
            ) from error

    def _unusable(self, error: SQLAlchemyError) -> StoreError:
        """Opening the store failed: a damaged file, or a database that cannot be reached. Says which, and what to do."""
        if damaged(error) and self.is_sqlite:
            path = Path(make_url(self.url).database).absolute()
            problem = StoreError(
                f"{path} is not a usable SQLite database ({_reason(error)}): it is damaged or is not a companion store. "
                "Restore the latest backup with 'companion restore BACKUP-FILE --force' (the damaged file is kept beside "
                f"it, renamed {path.name}.damaged-<time>), or move it away to start again with an empty store."
            )
        else:
            where = "Check COMPANION_DB_URL and that the database server is running" if not self.is_sqlite else (
                "Check that the file and its folder are readable and writable by this user, and that no other program holds it locked"
            )
            problem = StoreUnavailable(f"Could not reach the database at {self!r} ({_reason(error)}). {where}; nothing was changed.")
        return self._opening_failed(problem, error)

    def _opening_failed(self, problem: StoreError, error: BaseException) -> StoreError:
        """``problem`` for the administrator; in a kernel (whose messages a learner reads) logged, and a message without the path instead."""
        if not _in_kernel():
            return problem
        _logger(self.url).error("%s", problem, exc_info=error)
        if damaged(error):
            return StoreError(DAMAGED)
        return StoreUnavailable(UNAVAILABLE) if isinstance(problem, StoreUnavailable) else StoreError(REFUSED)

    @contextmanager
    def _migration_lock(self):
        if self.is_sqlite:
            database = sqlite_file(self.url)
            lock_path = Path(database + ".lock") if database else None
            handle = open(lock_path, "a+") if lock_path else None
            try:
                if handle:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                with self.engine.connect() as connection:
                    yield connection
            finally:
                if handle:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                    handle.close()
        else:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(7301987)"))
                connection.commit()
                try:
                    yield connection
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(7301987)"))
                    connection.commit()

    def revision(self) -> str | None:
        """The schema revision the database is at (None for an empty database).

        Read without SQLite's write lock, so a page opens while others save (or another program writes)."""
        try:
            connection = self.engine.connect().execution_options(**{READ_ONLY: True})
        except SQLAlchemyError as error:
            raise self._unusable(error) from error
        with connection:
            try:
                return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except SQLAlchemyError as error:
                if damaged(error) or transient(error) and not _missing_table(error):
                    raise self._unusable(error) from error
                return None


def _missing_table(error: SQLAlchemyError) -> bool:
    """Whether ``error`` says a table does not exist (a new, empty database)."""
    reason = _reason(error)
    return "no such table" in reason or "does not exist" in reason
