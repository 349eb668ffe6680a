"""The store: the only module that touches the database.

Every save is an append-only event (who, session, activity, verb, value, UTC
time); beside it, in the same transaction, the latest response per learner and
activity is kept, so a page opens with one lookup. Saving the same value again
is harmless. The schema is managed by Alembic migrations from the first table
(``companion/migrations``); opening a store upgrades it under a lock, so many
processes may open it at once.

SQLite (the default, under the data home) runs in WAL mode with a busy timeout
and takes its write lock at the start of each write transaction, so concurrent
writers queue instead of failing. Any other database comes through
``COMPANION_DB_URL`` (PostgreSQL for shared deployments).

Example::

    >>> from companion.store import open_store
    >>> store = open_store("sqlite:///:memory:")
    >>> store.save("ana", "s1", "s1-why", "responded", {"text": "Because..."}, done=True).done
    True
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    and_,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from .errors import StoreError

if TYPE_CHECKING:
    from .progress import SessionRule

MAX_VALUE_BYTES = 200_000  # one saved value, as JSON; a reflection is limited to far less
# The newest migration in companion/migrations/versions (tests/test_store.py keeps the two in agreement).
# A store already at it opens without loading Alembic: every page's kernel opens the store.
HEAD_REVISION = "0003"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class LearnerRow(Base):
    __tablename__ = "learners"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    cohort: Mapped[str] = mapped_column(String(100), default="", index=True)
    department: Mapped[str] = mapped_column(String(200), default="")
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_active: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    # Derived from progress, like it (see ProgressRow): the figures read one row a learner.
    sessions_completed: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    started: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), index=True, nullable=False)
    session_id: Mapped[str] = mapped_column(String(32), nullable=False)
    activity_id: Mapped[str] = mapped_column(String(64), nullable=False)
    verb: Mapped[str] = mapped_column(String(32), nullable=False)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ResponseRow(Base):
    __tablename__ = "responses"
    __table_args__ = (UniqueConstraint("learner_id", "activity_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), index=True, nullable=False)
    session_id: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    activity_id: Mapped[str] = mapped_column(String(64), nullable=False)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    done: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    shared: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FeedbackRow(Base):
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), nullable=False)
    activity_id: Mapped[str] = mapped_column(String(64), nullable=False)
    author: Mapped[str] = mapped_column(String(200), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProgressRow(Base):
    """Per learner and session: required activities done, and when the session was completed.

    Derived from the responses under the completion rules of companion.progress,
    kept current by each save that names its rule, and rebuilt whole when the
    rules change (store_meta 'progress_rule' names the rules it was built under)."""

    __tablename__ = "progress"
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    done: Mapped[int] = mapped_column(Integer, nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class MetaRow(Base):
    __tablename__ = "store_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


PROGRESS_RULE = "progress_rule"
# A page saving under other rules than the stored progress's (its notebooks changed since it
# opened) marks that progress stale; each process checks this at most once in this many seconds.
RULE_CHECK_SECONDS = 30.0
READ_ONLY = "companion_read_only"  # a connection option: this transaction only reads
UNCHECKED = object()  # Store.save's default ``expected``: replace whatever is stored
CONFLICTED = "conflicted"  # the verb of a save that found its response changed elsewhere
_LEARNERS, _RESPONSES, _PROGRESS, _META = (
    LearnerRow.__table__, ResponseRow.__table__, ProgressRow.__table__, MetaRow.__table__
)
# Built once: executed with a row of parameters, on the tables themselves (not the ORM's bulk path).
_EVENT_INSERT = insert(EventRow.__table__)
_STORED_RESPONSE = select(_RESPONSES.c.value, _RESPONSES.c.done, _RESPONSES.c.shared, _RESPONSES.c.updated_at).where(
    _RESPONSES.c.learner_id == bindparam("learner"), _RESPONSES.c.activity_id == bindparam("activity")
)
_LOCK_LEARNER = select(_LEARNERS.c.id).where(_LEARNERS.c.id == bindparam("learner")).with_for_update()
_TOUCH_LEARNER = update(_LEARNERS).where(_LEARNERS.c.id == bindparam("learner")).values(last_active=bindparam("at"))
# Progress kept under other rules than the saving page's is no longer trusted: the next reader rebuilds it.
_FORGET_RULE = delete(_META).where(_META.c.key == PROGRESS_RULE, _META.c.value != bindparam("version"))
_FORGET_ANY_RULE = delete(_META).where(_META.c.key == PROGRESS_RULE)


@dataclass(frozen=True)
class ProgressSummary:
    """Everyone's progress in a few numbers, read in one transaction (see :meth:`Store.progress_summary`)."""

    cohort_sizes: dict[str, int]
    session_counts: list[tuple[str, str, int, int]]  # (cohort, session id, complete, in progress)
    series_complete: dict[str, int]  # by cohort
    not_started_count: int
    stalled_count: int
    # (username, name, cohort, last active, the sessions they completed), as many as were asked for
    not_started: list[tuple[str, str, str, "datetime | None", frozenset]]
    stalled: list[tuple[str, str, str, "datetime | None", frozenset]]


@dataclass(frozen=True)
class Feedback:
    author: str
    text: str
    at: datetime


@dataclass(frozen=True)
class Learner:
    username: str
    name: str = ""
    email: str = ""
    cohort: str = ""
    department: str = ""
    last_active: datetime | None = None  # the last time they opened a page or saved


@dataclass(frozen=True)
class Response:
    """The latest saved state of one learner's activity."""

    username: str
    session_id: str
    activity_id: str
    value: Any
    done: bool
    shared: bool
    updated_at: datetime
    # True when a save did not replace this response because it had changed elsewhere (another tab
    # or device) since the saving page read it: this is the stored response, and the page's value
    # is in the event log (verb "conflicted").
    conflict: bool = False


@dataclass(frozen=True)
class Event:
    username: str
    session_id: str
    activity_id: str
    verb: str
    value: Any
    at: datetime
    id: int


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _response(username: str, row: ResponseRow) -> Response:
    return Response(username, row.session_id, row.activity_id, row.value, row.done, row.shared, _aware(row.updated_at))


def _check_size(value: Any) -> None:
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise StoreError(
            f"The answer is too large to save ({size:,} bytes; the limit is {MAX_VALUE_BYTES:,}). "
            "Shorten it and save again."
        )


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


def _progress_columns(required, finishing) -> tuple:
    """``done`` (required activities done) and ``completed_at`` (a finishing activity done), over responses."""
    r = _RESPONSES
    is_done = r.c.done == True  # noqa: E712 (SQL, not Python)
    return (
        func.coalesce(func.sum(case((and_(is_done, r.c.activity_id.in_(list(required))), 1), else_=0)), 0).label("done"),
        type_coerce(func.max(case((and_(is_done, r.c.activity_id.in_(list(finishing))), r.c.updated_at))), DateTime(timezone=True)).label("completed_at"),
    )


class Store:
    """The learners, their events and their latest responses, in one database."""

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
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
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

    # Learners -------------------------------------------------------------

    def _learner_id(self, db: Session | Connection, username: str) -> int:
        """The learner's id, creating the learner if new (call :meth:`_known` once the transaction commits)."""
        if username in self._learner_ids:
            return self._learner_ids[username]
        found = db.scalar(select(LearnerRow.id).where(LearnerRow.username == username))
        if found is not None:
            return found
        if self._upsert is not None:
            db.execute(self._upsert(LearnerRow).values(username=username, extra={}, created_at=utcnow()).on_conflict_do_nothing())
        else:
            db.execute(insert(LearnerRow).values(username=username, extra={}, created_at=utcnow()))
        return db.scalar(select(LearnerRow.id).where(LearnerRow.username == username))

    def _known(self, username: str, learner_id: int) -> None:
        self._learner_ids[username] = learner_id

    def ensure_learner(self, username: str) -> None:
        with self.session() as db:
            learner_id = self._learner_id(db, username)
        self._known(username, learner_id)

    def learner(self, username: str) -> Learner | None:
        with self.session() as db:
            row = db.scalar(select(LearnerRow).where(LearnerRow.username == username))
            if row is None:
                return None
            active = _aware(row.last_active) if row.last_active else None
            return Learner(row.username, row.name, row.email, row.cohort, row.department, active)

    def upsert_learners(self, people: list[dict]) -> tuple[int, int]:
        """Add or update learners by username (a roster import); returns (added, updated).

        Work already saved is never touched: only the roster columns change."""
        added = updated = 0
        with self.session() as db:
            existing = {row.username: row for row in db.scalars(select(LearnerRow))}
            for person in people:
                row = existing.get(person["username"])
                if row is None:
                    row = LearnerRow(username=person["username"], created_at=utcnow())
                    db.add(row)
                    existing[row.username] = row
                    added += 1
                else:
                    updated += 1
                for column in ("name", "email", "cohort", "department"):
                    setattr(row, column, person.get(column, ""))
                row.extra = person.get("extra", {})
        return added, updated

    # Saving ---------------------------------------------------------------

    def save(
        self,
        username: str,
        session_id: str,
        activity_id: str,
        verb: str,
        value: Any,
        *,
        done: bool | None = None,
        shared: bool | None = None,
        rule: SessionRule | None = None,
        expected: Any = UNCHECKED,
    ) -> Response:
        """Append an event and make ``value`` the latest response, in one transaction.

        ``done`` and ``shared`` keep their stored values when not given.
        ``expected`` is the value the saving page last read or saved (None: it
        found nothing). When the stored value is neither that nor ``value``, the
        response was changed elsewhere (another tab or device): nothing is
        replaced, ``value`` is kept as a "conflicted" event, and the stored
        response comes back with ``conflict=True`` so the page can ask which to keep. With the
        session's ``rule`` (companion.progress), the learner's progress in the
        session is brought up to date too; without it, the stored progress is
        marked stale and the next dashboard rebuilds it. Core
        statements, not the ORM's unit of work: on SQLite the write lock is held
        for the whole transaction, so its length bounds how many saves a second
        all learners together get."""
        _check_size(value)
        now = utcnow()
        changes: dict[str, Any] = {"value": value, "updated_at": now}
        if done is not None:
            changes["done"] = done
        if shared is not None:
            changes["shared"] = shared
        keeps_progress = rule is not None and rule.session_id == session_id
        check_rule = keeps_progress and time.monotonic() - self._rule_checked.get(rule.version, -RULE_CHECK_SECONDS) >= RULE_CHECK_SECONDS
        with self.transaction() as connection:
            learner_id = self._learner_id(connection, username)
            if not self.is_sqlite:
                # Orders one learner's concurrent saves (two tabs), so each sees the other's response
                # when it counts their progress. SQLite's write lock already orders every save.
                connection.execute(_LOCK_LEARNER, {"learner": learner_id})
            if expected is not UNCHECKED:
                stored = connection.execute(_STORED_RESPONSE, {"learner": learner_id, "activity": activity_id}).first()
                if stored is not None and stored.value not in (expected, value):
                    self._append_event(connection, learner_id, session_id, activity_id, CONFLICTED, value, now)
                    return Response(
                        username, session_id, activity_id, stored.value, stored.done, stored.shared, _aware(stored.updated_at), conflict=True
                    )
            self._append_event(connection, learner_id, session_id, activity_id, verb, value, now)
            fresh = dict(learner_id=learner_id, session_id=session_id, activity_id=activity_id, done=False, shared=False) | changes
            stored_done, stored_shared = self._put_response(connection, fresh, changes)
            if keeps_progress:
                if check_rule:
                    connection.execute(_FORGET_RULE, {"version": rule.version})
                self._put_progress(connection, learner_id, rule, now)
            else:
                connection.execute(_FORGET_ANY_RULE)
                connection.execute(_TOUCH_LEARNER, {"learner": learner_id, "at": now})
        self._known(username, learner_id)
        if check_rule:
            self._rule_checked[rule.version] = time.monotonic()
        return Response(username, session_id, activity_id, value, bool(stored_done), bool(stored_shared), now)

    def _put_response(self, connection, fresh: dict, changes: dict) -> tuple[bool, bool]:
        """Insert the response, or update its ``changes``; returns the stored (done, shared)."""
        if self._upsert is not None:
            return tuple(connection.execute(self._upsert_response(tuple(changes)), fresh).one())
        # Elsewhere: update, or insert when there was nothing to update.
        match = (_RESPONSES.c.learner_id == fresh["learner_id"], _RESPONSES.c.activity_id == fresh["activity_id"])
        if connection.execute(update(_RESPONSES).where(*match).values(**changes)).rowcount == 0:
            connection.execute(insert(_RESPONSES), fresh)
        return tuple(connection.execute(select(_RESPONSES.c.done, _RESPONSES.c.shared).where(*match)).one())

    def _put_progress(self, connection, learner_id: int, rule: SessionRule, now: datetime) -> None:
        """Recount the learner's progress in the rule's session, and their sessions completed and started."""
        if self._upsert is not None:
            connection.execute(self._refresh_progress(rule), {"learner": learner_id})
        else:
            done_count, completed_at = connection.execute(self._progress_of(rule), {"learner": learner_id}).one()
            match = (_PROGRESS.c.learner_id == learner_id, _PROGRESS.c.session_id == rule.session_id)
            connection.execute(delete(_PROGRESS).where(*match))
            connection.execute(insert(_PROGRESS), dict(learner_id=learner_id, session_id=rule.session_id, done=done_count, completed_at=completed_at))
        connection.execute(self._learner_state(rule.sessions, one=True), {"learner": learner_id, "at": now})

    @functools.lru_cache(maxsize=None)
    def _upsert_response(self, changed: tuple[str, ...]):
        """INSERT a response, or on conflict UPDATE the ``changed`` columns; returns (done, shared).

        Built once per set of columns: building a statement costs more than running it."""
        statement = self._upsert(ResponseRow.__table__)
        return statement.on_conflict_do_update(
            index_elements=["learner_id", "activity_id"], set_={name: statement.excluded[name] for name in changed}
        ).returning(ResponseRow.__table__.c.done, ResponseRow.__table__.c.shared)

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def _progress_of(rule: SessionRule):
        """One learner's progress in the rule's session, from their responses (parameter ``learner``)."""
        r = _RESPONSES
        return select(*_progress_columns(rule.required, (rule.finishing,) if rule.finishing else ())).where(
            r.c.learner_id == bindparam("learner"), r.c.session_id == rule.session_id
        )

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def _learner_state(sessions: tuple[str, ...], one: bool):
        """Set learners' sessions completed and started from their progress.

        ``one``: only learner ``learner``, who was active ``at`` (a save: one statement
        for both); otherwise everyone, last active untouched (a rebuild)."""
        p = _PROGRESS
        mine = and_(p.c.learner_id == _LEARNERS.c.id, p.c.session_id.in_(sessions))
        completed = select(func.count()).where(mine, p.c.completed_at.is_not(None)).scalar_subquery()
        started = exists().where(mine, or_(p.c.completed_at.is_not(None), p.c.done > 0))
        statement = update(_LEARNERS).values(sessions_completed=completed, started=started)
        if not one:
            return statement
        return statement.where(_LEARNERS.c.id == bindparam("learner")).values(last_active=bindparam("at"))

    @functools.lru_cache(maxsize=None)
    def _refresh_progress(self, rule: SessionRule):
        """Recompute one learner's progress in the rule's session and store it (parameter ``learner``): one statement."""
        statement = self._upsert(_PROGRESS).from_select(
            ["learner_id", "session_id", "done", "completed_at"],
            select(bindparam("learner", type_=Integer), literal(rule.session_id, String), *self._progress_of(rule).selected_columns)
            .where(_RESPONSES.c.learner_id == bindparam("learner"), _RESPONSES.c.session_id == rule.session_id),
        )
        return statement.on_conflict_do_update(
            index_elements=["learner_id", "session_id"],
            set_={"done": statement.excluded.done, "completed_at": statement.excluded.completed_at},
        )

    def record(self, username: str, session_id: str, activity_id: str, verb: str, value: Any = None) -> None:
        """Append an event that changes no response (a page opened, a feedback form sent)."""
        _check_size(value)
        with self.session() as db:
            learner_id = self._learner_id(db, username)
            now = utcnow()
            db.execute(_TOUCH_LEARNER, {"learner": learner_id, "at": now})
            self._append_event(db, learner_id, session_id, activity_id, verb, value, now)
        self._known(username, learner_id)

    @staticmethod
    def _append_event(db, learner_id: int, session_id: str, activity_id: str, verb: str, value: Any, at: datetime) -> None:
        db.execute(
            _EVENT_INSERT,
            dict(learner_id=learner_id, session_id=session_id, activity_id=activity_id, verb=verb, value=value, at=at),
        )

    # Reading --------------------------------------------------------------

    def responses(self, username: str, session_id: str | None = None) -> dict[str, Response]:
        """The learner's latest responses, by activity id."""
        with self.session() as db:
            query = (
                select(ResponseRow)
                .join(LearnerRow, LearnerRow.id == ResponseRow.learner_id)
                .where(LearnerRow.username == username)
            )
            if session_id is not None:
                query = query.where(ResponseRow.session_id == session_id)
            return {row.activity_id: _response(username, row) for row in db.scalars(query)}

    def response(self, username: str, activity_id: str) -> Response | None:
        with self.session() as db:
            row = db.scalar(
                select(ResponseRow)
                .join(LearnerRow, LearnerRow.id == ResponseRow.learner_id)
                .where(LearnerRow.username == username, ResponseRow.activity_id == activity_id)
            )
            return _response(username, row) if row else None

    def events(self, username: str | None = None) -> list[Event]:
        """Events in the order they happened, for one learner or everyone."""
        with self.session() as db:
            query = select(EventRow, LearnerRow.username).join(LearnerRow, LearnerRow.id == EventRow.learner_id)
            if username is not None:
                query = query.where(LearnerRow.username == username)
            return [
                Event(name, row.session_id, row.activity_id, row.verb, row.value, _aware(row.at), row.id)
                for row, name in db.execute(query.order_by(EventRow.id))
            ]

    # Feedback -------------------------------------------------------------

    def add_feedback(self, username: str, activity_id: str, author: str, text: str, max_chars: int = 10_000) -> Feedback:
        """Feedback from a facilitator on a reflection the learner shared (and only then)."""
        if not text.strip():
            raise StoreError("The feedback is empty; write something before sending it.")
        if len(text) > max_chars:
            raise StoreError(f"The feedback has {len(text):,} characters; the limit is {max_chars:,}. Shorten it.")
        with self.session() as db:
            row = db.scalar(
                select(ResponseRow)
                .join(LearnerRow, LearnerRow.id == ResponseRow.learner_id)
                .where(LearnerRow.username == username, ResponseRow.activity_id == activity_id)
            )
            if row is None or not row.shared:
                raise StoreError(f"{username} has not shared '{activity_id}', so it cannot take feedback; nothing was saved.")
            now = utcnow()
            db.add(FeedbackRow(learner_id=row.learner_id, activity_id=activity_id, author=author, text=text, at=now))
            return Feedback(author, text, now)

    def feedback(self, username: str, activity_id: str) -> list[Feedback]:
        """Feedback on one of the learner's reflections, oldest first."""
        with self.session() as db:
            rows = db.scalars(
                select(FeedbackRow)
                .join(LearnerRow, LearnerRow.id == FeedbackRow.learner_id)
                .where(LearnerRow.username == username, FeedbackRow.activity_id == activity_id)
                .order_by(FeedbackRow.id)
            )
            return [Feedback(row.author, row.text, _aware(row.at)) for row in rows]

    def count_events(self) -> int:
        with self.session() as db:
            return db.scalar(select(func.count(EventRow.id)))

    # Reporting (bulk reads for the dashboard and exports) -------------------
    #
    # Each figure is one grouped query over everyone, never one query per learner.
    # Long reads page by id in short transactions, so an export never holds
    # SQLite's write lock while learners are saving. Values a learner wrote leave
    # here only through latest_responses (scores and goals for the exports) and,
    # for a facilitator, only when the learner shared them (facilitator_view).

    def learners(self) -> list[Learner]:
        """Every learner (roster-imported or seen on a page), by username."""
        with self.session() as db:
            rows = db.execute(
                select(LearnerRow.username, LearnerRow.name, LearnerRow.email, LearnerRow.cohort, LearnerRow.department)
                .order_by(LearnerRow.username)
            )
            return [Learner(*row) for row in rows]

    def session_summaries(self, required: list[str], finishing: list[str]) -> list[tuple[str, str, int, datetime | None]]:
        """Per learner and session they saved anything in: ``(username, session_id, done, completed_at)``.

        ``done`` counts the ``required`` activities marked done; ``completed_at`` is
        when a ``finishing`` activity (a SessionComplete) was done, else None."""
        query = (
            select(_LEARNERS.c.username, _RESPONSES.c.session_id, *_progress_columns(required, finishing))
            .join_from(_RESPONSES, _LEARNERS, _LEARNERS.c.id == _RESPONSES.c.learner_id)
            .group_by(_LEARNERS.c.username, _RESPONSES.c.session_id)
        )
        with self.session() as db:
            return [
                (username, session_id, int(done or 0), _aware(completed) if completed is not None else None)
                for username, session_id, done, completed in db.execute(query)
            ]

    def last_active(self) -> dict[str, datetime]:
        """When each learner last did anything (opened a page, saved), by username."""
        with self.session() as db:
            rows = db.execute(select(_LEARNERS.c.username, _LEARNERS.c.last_active).where(_LEARNERS.c.last_active.is_not(None)))
            return {username: _aware(at) for username, at in rows}

    # Progress (the facilitator's figures) ---------------------------------

    def progress_version(self) -> str | None:
        """The rules the stored progress was built under (None: stale, rebuild it)."""
        with self.session() as db:
            return db.scalar(select(_META.c.value).where(_META.c.key == PROGRESS_RULE))

    def rebuild_progress(self, rules: tuple[SessionRule, ...]) -> None:
        """Recompute every learner's progress from the responses under ``rules``, in one statement.

        Seconds for a hundred thousand learners; saves wait for it (SQLite's write
        lock, PostgreSQL's table lock) rather than write progress it would miss."""
        required = [a for rule in rules for a in rule.required]
        finishing = [rule.finishing for rule in rules if rule.finishing]
        with self.session() as db:
            if self.engine.dialect.name == "postgresql":
                db.execute(text("LOCK TABLE progress IN EXCLUSIVE MODE"))
            db.execute(delete(_PROGRESS))
            r = _RESPONSES
            summary = (
                select(r.c.learner_id, r.c.session_id, *_progress_columns(required, finishing))
                .where(r.c.session_id.in_([rule.session_id for rule in rules]))
                .group_by(r.c.learner_id, r.c.session_id)
            )
            db.execute(insert(_PROGRESS).from_select(["learner_id", "session_id", "done", "completed_at"], summary))
            db.execute(self._learner_state(tuple(rule.session_id for rule in rules), one=False))
            db.execute(_FORGET_ANY_RULE)
            db.execute(insert(_META).values(key=PROGRESS_RULE, value=rules[0].version if rules else ""))

    def progress_summary(self, session_ids: list[str], cutoff: datetime, listed: int | None = None) -> ProgressSummary:
        """Completion counts by cohort and session, the series, and who has not started or stalled.

        Reads the stored progress (see :meth:`rebuild_progress`), in one read
        transaction that takes no write lock. Not started: no session started.
        Stalled: started, not every session complete, and not active since
        ``cutoff``. Each list holds its first ``listed`` people (None: all), in
        the order the dashboard shows them, each with the sessions they
        completed; the counts cover everyone."""
        p, learners = _PROGRESS, _LEARNERS
        complete = p.c.completed_at.is_not(None)
        every = learners.c.sessions_completed >= len(session_ids)
        not_started = learners.c.started == False  # noqa: E712 (SQL, not Python)
        inactive = or_(learners.c.last_active.is_(None), learners.c.last_active < cutoff.astimezone(timezone.utc))
        stalled = and_(learners.c.started == True, ~every, inactive)  # noqa: E712
        count = lambda condition: func.sum(case((condition, 1), else_=0))  # noqa: E731
        people = lambda where, *order: (  # noqa: E731
            select(learners.c.id, learners.c.username, learners.c.name, learners.c.cohort, learners.c.last_active)
            .where(where).order_by(*order).limit(listed)
        )
        with self.session(write=False) as db:
            cohorts = db.execute(
                select(learners.c.cohort, func.count(), count(every), count(not_started), count(stalled)).group_by(learners.c.cohort)
            ).all()
            counts = db.execute(
                select(learners.c.cohort, p.c.session_id, count(complete), count(and_(~complete, p.c.done > 0)))
                .join_from(p, learners, learners.c.id == p.c.learner_id)
                .where(p.c.session_id.in_(session_ids))
                .group_by(learners.c.cohort, p.c.session_id)
            ).all()
            waiting = db.execute(people(not_started, learners.c.cohort == "", func.lower(learners.c.cohort), learners.c.username)).all()
            stuck = db.execute(people(stalled, learners.c.last_active.is_not(None), learners.c.last_active, learners.c.username)).all()
            completed: dict[int, set[str]] = {}
            listed_ids = [row[0] for row in stuck]
            for start in range(0, len(listed_ids), 500):
                chunk = listed_ids[start : start + 500]
                for learner_id, session_id in db.execute(select(p.c.learner_id, p.c.session_id).where(p.c.learner_id.in_(chunk), complete)):
                    completed.setdefault(learner_id, set()).add(session_id)
        return ProgressSummary(
            cohort_sizes={cohort: size for cohort, size, *_ in cohorts},
            session_counts=[(cohort, sid, int(c or 0), int(i or 0)) for cohort, sid, c, i in counts],
            series_complete={cohort: int(series or 0) for cohort, _, series, _, _ in cohorts},
            not_started_count=sum(int(n or 0) for *_, n, _ in cohorts),
            stalled_count=sum(int(n or 0) for *_, n in cohorts),
            not_started=[(u, n, c, _aware(a) if a else None, frozenset()) for _, u, n, c, a in waiting],
            stalled=[(u, n, c, _aware(a) if a else None, frozenset(completed.get(i, ()))) for i, u, n, c, a in stuck],
        )

    def latest_responses(self, activity_ids: list[str]) -> list[Response]:
        """Everyone's latest responses to these activities, values included (self-assessments, goals for the feed)."""
        with self.session() as db:
            rows = db.execute(
                select(ResponseRow, LearnerRow.username)
                .join(LearnerRow, LearnerRow.id == ResponseRow.learner_id)
                .where(ResponseRow.activity_id.in_(list(activity_ids)))
                .order_by(ResponseRow.id)
            )
            return [_response(username, row) for row, username in rows]

    def facilitator_view(self, username: str) -> list[Response]:
        """What a facilitator may see of one learner: every response, its value only if the learner shared it."""
        with self.session() as db:
            rows = db.scalars(
                select(ResponseRow)
                .join(LearnerRow, LearnerRow.id == ResponseRow.learner_id)
                .where(LearnerRow.username == username)
                .order_by(ResponseRow.id)
            )
            return [
                Response(username, r.session_id, r.activity_id, r.value if r.shared else None, r.done, r.shared, _aware(r.updated_at))
                for r in rows
            ]

    def recently_shared(self, limit: int = 20) -> list[Response]:
        """The latest shared responses across learners, newest first, without their values."""
        with self.session() as db:
            rows = db.execute(
                select(ResponseRow, LearnerRow.username)
                .join(LearnerRow, LearnerRow.id == ResponseRow.learner_id)
                .where(ResponseRow.shared == True)  # noqa: E712
                .order_by(ResponseRow.updated_at.desc(), ResponseRow.id.desc())
                .limit(limit)
            )
            return [
                Response(username, r.session_id, r.activity_id, None, r.done, r.shared, _aware(r.updated_at))
                for r, username in rows
            ]

    def iter_events(self, batch: int = 5000) -> Iterator[tuple[Event, Learner]]:
        """Every event with its learner, in the order they happened, read ``batch`` at a time."""
        last = 0
        while True:
            with self.session() as db:
                rows = db.execute(
                    select(
                        EventRow.id, EventRow.session_id, EventRow.activity_id, EventRow.verb, EventRow.value, EventRow.at,
                        LearnerRow.username, LearnerRow.name, LearnerRow.email, LearnerRow.cohort, LearnerRow.department,
                    )
                    .join(LearnerRow, LearnerRow.id == EventRow.learner_id)
                    .where(EventRow.id > last)
                    .order_by(EventRow.id)
                    .limit(batch)
                ).all()
                chunk = [
                    (Event(row[6], row[1], row[2], row[3], row[4], _aware(row[5]), row[0]), Learner(*row[6:]))
                    for row in rows
                ]
            if not chunk:
                return
            yield from chunk
            last = chunk[-1][0].id

    def bulk_save(self, saves: list[dict]) -> int:
        """Many saves in one transaction, each at its own time (seeding a cohort, importing history).

        Each item has the arguments of :meth:`save` (``username, session_id,
        activity_id, verb, value``, optional ``done``, ``shared``) and optionally
        ``at`` (an aware datetime; default now) and ``event_only`` (True: an event
        that changes no response, as :meth:`record`). The same rules hold: every
        item is an event, the latest by time is the response, ``done`` and
        ``shared`` keep their values when not given. Returns the number of events added."""
        now = utcnow()
        items = sorted(saves, key=lambda item: _aware(item.get("at") or now))
        for item in items:
            _check_size(item.get("value"))
        names = sorted({item["username"] for item in items})
        with self.session() as db:
            ids: dict[str, int] = {}
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                ids.update(db.execute(select(LearnerRow.username, LearnerRow.id).where(LearnerRow.username.in_(chunk))).all())
            missing = [name for name in names if name not in ids]
            if missing:
                db.execute(
                    insert(LearnerRow),
                    [dict(username=n, name="", email="", cohort="", department="", extra={}, created_at=now) for n in missing],
                )
                for start in range(0, len(missing), 500):
                    chunk = missing[start : start + 500]
                    ids.update(db.execute(select(LearnerRow.username, LearnerRow.id).where(LearnerRow.username.in_(chunk))).all())
            if not items:
                return 0
            db.execute(
                insert(EventRow),
                [
                    dict(
                        learner_id=ids[i["username"]], session_id=i["session_id"], activity_id=i["activity_id"],
                        verb=i["verb"], value=i.get("value"), at=_aware(i.get("at") or now),
                    )
                    for i in items
                ],
            )
            learner_ids = sorted(set(ids[name] for name in names))
            existing: dict[tuple[int, str], ResponseRow] = {}
            for start in range(0, len(learner_ids), 500):
                chunk = learner_ids[start : start + 500]
                for row in db.scalars(select(ResponseRow).where(ResponseRow.learner_id.in_(chunk))):
                    existing[(row.learner_id, row.activity_id)] = row
            new: dict[tuple[int, str], dict] = {}
            for item in items:
                if item.get("event_only"):
                    continue
                key = (ids[item["username"]], item["activity_id"])
                state = existing.get(key)
                if state is None:
                    state = new.setdefault(
                        key,
                        dict(learner_id=key[0], session_id=item["session_id"], activity_id=key[1], done=False, shared=False),
                    )
                    target = state.__setitem__
                elif _aware(state.updated_at) > _aware(item.get("at") or now):
                    continue  # older than what is saved: an event, not the latest response
                else:
                    target = lambda name, value, row=state: setattr(row, name, value)  # noqa: E731
                target("value", item.get("value"))
                target("updated_at", _aware(item.get("at") or now))
                if item.get("done") is not None:
                    target("done", bool(item["done"]))
                if item.get("shared") is not None:
                    target("shared", bool(item["shared"]))
            if new:
                db.execute(insert(ResponseRow), list(new.values()))
            latest: dict[int, datetime] = {}
            for item in items:
                learner_id, at = ids[item["username"]], _aware(item.get("at") or now)
                latest[learner_id] = max(at, latest.get(learner_id, at))
            current = dict(db.execute(select(_LEARNERS.c.id, _LEARNERS.c.last_active).where(_LEARNERS.c.id.in_(list(latest)))).all())
            touched = [{"learner": i, "at": at} for i, at in latest.items() if current.get(i) is None or _aware(current[i]) < at]
            if touched:
                db.execute(_TOUCH_LEARNER, touched)
            db.execute(_FORGET_ANY_RULE)
        return len(items)


_open: dict[tuple[int, str], Store] = {}


def open_store(url: str, upgrade: bool = True) -> Store:
    """The store at ``url``, its schema upgraded; one per process and URL."""
    key = (os.getpid(), url)
    if key not in _open:
        store = Store(url)
        if upgrade and store.revision() != HEAD_REVISION:
            store.upgrade()
        _open[key] = store
    return _open[key]
