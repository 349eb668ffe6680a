"""The database under the store: its engine, the one commit-or-rollback session, schema upgrades.

:class:`Database` is the base of both halves of :class:`companion.store.Store`
(``saves`` and ``reads``): every statement they run goes through
:meth:`Database.session` or :meth:`Database.transaction`, committed when the
block ends and rolled back on any error, with database errors turned into a
:class:`~companion.errors.StoreError` that says what to do (``_reported``).
SQLite runs in WAL mode with a busy timeout and takes its write lock at the
start of each write transaction; the schema is brought up to date by Alembic
under a lock, so many processes may open a store at once.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import StoreError

READ_ONLY = "companion_read_only"  # a connection option: this transaction only reads


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, open transactions, so that we can say IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if make_url(url).database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Writers take the write lock up front and queue behind the timeout; readers (WAL) never block.
        connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

    return engine


class Database:
    """One database, its sessions and its schema: what the saving and reading halves of the store share."""

    def __init__(self, url: str):
        self.url = url
        try:
            parsed = make_url(url)
        except Exception:
            raise StoreError(f"'{url}' is not a database URL; set COMPANION_DB_URL to e.g. postgresql://user@host/db.")
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = parsed.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(url)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
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

    def __repr__(self) -> str:
        return f"Store({make_url(self.url).render_as_string(hide_password=True)!r})"

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error.

        ``write=False`` for long reads: on SQLite they then take no write lock,
        so learners' saves never wait behind a facilitator's dashboard."""
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

    @contextmanager
    def _reported(self) -> Iterator[None]:
        """Database errors become a :class:`StoreError` that says what to do."""
        try:
            yield
        except OperationalError as error:
            raise StoreError(
                f"The database at {self!r} could not be used ({error.orig}). Check that it is "
                "reachable and writable, and that 'companion upgrade' has been run; nothing was saved."
            ) from error
        except SQLAlchemyError as error:
            raise StoreError(f"The database refused the change ({error.__class__.__name__}: {error}); nothing was saved.") from error

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
        except OperationalError as error:
            raise self._unreachable(error) from error
        except SQLAlchemyError as error:
            raise StoreError(f"Could not upgrade the database at {self!r}: {error}. Nothing was changed.") from error

    def _unreachable(self, error: OperationalError) -> StoreError:
        reason = str(error.orig).strip().splitlines()[0]
        return StoreError(
            f"Could not reach the database at {self!r} ({reason}). Check COMPANION_DB_URL and that "
            "the database server is running; nothing was changed."
        )

    @contextmanager
    def _migration_lock(self):
        if self.is_sqlite:
            database = make_url(self.url).database
            lock_path = Path(database + ".lock") if database and database != ":memory:" else None
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
        """The schema revision the database is at (None for an empty database)."""
        try:
            connection = self.engine.connect()
        except OperationalError as error:
            raise self._unreachable(error) from error
        with connection:
            try:
                return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except SQLAlchemyError:
                return None
