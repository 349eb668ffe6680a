"""The store's schema: its tables, the statements built once over them, and what the store hands out.

The ORM tables are the schema that the Alembic migrations (``companion/migrations``)
build. Beside them: the Core aliases of those tables and the statements the save
path executes with a row of parameters, built once because building a statement
costs more than running it; and the frozen dataclasses (:class:`Response`,
:class:`Event`, :class:`Learner`, :class:`Feedback`, :class:`ProgressSummary`)
that the store returns, so no ORM row leaves the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MAX_VALUE_BYTES = 200_000  # one saved value, as JSON; a reflection is limited to far less
# The newest migration in companion/migrations/versions (tests/test_store.py keeps the two in agreement).
# A store already at it opens without loading Alembic: every page's kernel opens the store.
HEAD_REVISION = "0006"


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
    # The last time the learner looked at their feedback: newer feedback is marked new on the home page.
    feedback_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), index=True, nullable=False)
    session_id: Mapped[str] = mapped_column(String(32), nullable=False)
    activity_id: Mapped[str] = mapped_column(String(64), nullable=False)
    verb: Mapped[str] = mapped_column(String(32), nullable=False)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)  # not indexed: no read looks events up by time (migration 0005)


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
    check_in_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # feedback on one check-in


class CheckInRow(Base):
    """One dated check-in on a goal: its status then, and a note. The goal's history, never overwritten."""

    __tablename__ = "check_ins"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("learners.id"), nullable=False)
    activity_id: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReminderRow(Base):
    """A message ``companion remind`` sent: to whom, about what (a topic key), and when."""

    __tablename__ = "reminders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipient: Mapped[str] = mapped_column(String(254), nullable=False)
    topic: Mapped[str] = mapped_column(String(200), nullable=False)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


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
    """A facilitator's feedback: on a shared reflection, on a goal, or on one check-in (``check_in``)."""

    author: str
    text: str
    at: datetime
    activity_id: str = ""
    check_in: int | None = None
    id: int | None = None


@dataclass(frozen=True)
class CheckIn:
    """One dated check-in on a learner's goal."""

    id: int
    username: str
    activity_id: str
    status: str
    note: str
    at: datetime


@dataclass(frozen=True)
class Waiting:
    """Something a learner offered for feedback that has had no reply: a shared reflection or a goal check-in."""

    username: str
    name: str
    cohort: str
    activity_id: str
    kind: str  # "reflection" or "check-in"
    since: datetime
    check_in: CheckIn | None = None


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


class CompletionRule(Protocol):
    """What a save and a rebuild read of a session's completion rule (companion.progress.SessionRule).

    Described here so that the store depends on nothing in companion.progress,
    which is built on the store. A rule must be hashable: the statements built
    from it are kept by rule."""

    @property
    def session_id(self) -> str: ...

    @property
    def required(self) -> tuple[str, ...]: ...  # the activities that must be done

    @property
    def finishing(self) -> str | None: ...  # the activity that marks the session complete

    @property
    def sessions(self) -> tuple[str, ...]: ...  # every session of the course, in order

    @property
    def version(self) -> str: ...  # names the whole course's rules


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _progress_columns(required, finishing) -> tuple:
    """``done`` (required activities done) and ``completed_at`` (a finishing activity done), over responses."""
    r = _RESPONSES
    is_done = r.c.done == True  # noqa: E712 (SQL, not Python)
    return (
        func.coalesce(func.sum(case((and_(is_done, r.c.activity_id.in_(list(required))), 1), else_=0)), 0).label("done"),
        type_coerce(func.max(case((and_(is_done, r.c.activity_id.in_(list(finishing))), r.c.updated_at))), DateTime(timezone=True)).label("completed_at"),
    )
