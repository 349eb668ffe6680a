"""Coaching: feedback from facilitators, dated goal check-ins, and what still waits for a reply.

Feedback answers a reflection the learner shared, a goal, or one check-in on a
goal. Check-ins are a goal's history: each is kept, dated, never overwritten,
and logged as an event (verb ``checked-in``) like every save. The queue lists
what learners offered for feedback (shared reflections, check-ins) that has had
no reply yet, oldest first. Reflection text never leaves here: the queue names
activities, not what was written.

Example::

    >>> from companion.store import open_store
    >>> store = open_store("sqlite:///:memory:")
    >>> _ = store.save("ana", "s5", "s5-goal-x", "responded", {"goal": "Ask families first"}, done=True)
    >>> store.add_check_in("ana", "s5", "s5-goal-x", "In progress", "Asked two families.").status
    'In progress'
    >>> [w.kind for w in store.waiting_for_feedback()]
    ['check-in']
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, exists, func, literal_column, select, update
from sqlalchemy.orm import Session

from ..errors import StoreError
from .database import Database
from .reads import _utc_text, among
from .schema import (
    _EVENT_INSERT,
    _TOUCH_LEARNER,
    CheckIn,
    CheckInRow,
    EventRow,
    Feedback,
    FeedbackRow,
    LearnerRow,
    ReminderRow,
    ResponseRow,
    Waiting,
    _aware,
    utcnow,
)

MAX_FEEDBACK_CHARS = 10_000
MAX_NOTE_CHARS = 5_000
CHECKED_IN = "checked-in"  # the event verb of a check-in
# The "shared" verb written into the SQL, not bound: only then does SQLite know that the partial index of shared
# events (migration 0006) holds every row asked for, and read the index alone instead of each event's row too
# (at 100,000 learners, 0.5 s of the evaluation export's 2 s of coaching figures).
SHARED = literal_column("'shared'")


@dataclass
class CoachingFigures:
    """One learner's coaching in the evaluation feed (:meth:`Coaching.coaching_figures`)."""

    check_ins: int = 0
    last_check_in: str = ""  # its day, UTC: 2026-03-01
    feedback: int = 0  # feedback items received
    hours: list[float] = field(default_factory=list)  # to first feedback, per reflection shared or check-in answered

    @property
    def median_hours(self) -> float | str:
        """The median of :attr:`hours`, to 2 decimals; empty when nothing offered had feedback."""
        return round(statistics.median(self.hours), 2) if self.hours else ""


def _clean(text: str, what: str, limit: int) -> str:
    """Text a person wrote, refused (with what to do) when it is empty, too long or holds a NUL character."""
    if not isinstance(text, str) or not text.strip():
        raise StoreError(f"The {what} is empty; write something before sending it.")
    if len(text) > limit:
        raise StoreError(f"The {what} has {len(text):,} characters; the limit is {limit:,}. Shorten it; nothing was saved.")
    if "\x00" in text:
        raise StoreError(f"The {what} contains a NUL character (often pasted from another program); remove it; nothing was saved.")
    return text


def _moment(value: datetime | str) -> datetime:
    """A time as the database's driver gives it, aware: UTC text on SQLite (``2026-03-01 09:30:00.000000``),
    a datetime on PostgreSQL."""
    return _aware(datetime.fromisoformat(value) if isinstance(value, str) else value)


def _check_in(username: str, row: CheckInRow) -> CheckIn:
    return CheckIn(row.id, username, row.activity_id, row.status, row.note, _aware(row.at))


def _feedback(row: FeedbackRow) -> Feedback:
    return Feedback(row.author, row.text, _aware(row.at), row.activity_id, row.check_in_id, row.id)


class Coaching(Database):
    """Feedback, goal check-ins and the queue of what waits for a reply."""

    def _learner_row(self, db: Session, username: str) -> LearnerRow:
        row = db.scalar(select(LearnerRow).where(LearnerRow.username == username))
        if row is None:
            raise StoreError(f"No learner '{username}' in the store; check the username (as in the roster).")
        return row

    # Check-ins ---------------------------------------------------------------

    def add_check_in(
        self, username: str, session_id: str, activity_id: str, status: str, note: str = "", at: datetime | None = None
    ) -> CheckIn:
        """A dated check-in on a goal the learner has set: its status now (or at ``at``), and a note (optional)."""
        if note:
            _clean(note, "note", MAX_NOTE_CHARS)
        if not status or len(status) > 32 or "\x00" in status:
            raise StoreError("Choose a status for the check-in; nothing was saved.")
        with self.session() as db:
            learner = self._learner_row(db, username)
            goal = db.scalar(select(ResponseRow).where(ResponseRow.learner_id == learner.id, ResponseRow.activity_id == activity_id))
            if goal is None or not str((goal.value or {}).get("goal") or "").strip():
                raise StoreError(f"There is no goal saved for '{activity_id}' yet; write the goal first, then check in on it.")
            now = at or utcnow()
            row = CheckInRow(learner_id=learner.id, activity_id=activity_id, status=status, note=note, at=now)
            db.add(row)
            db.flush()
            db.execute(_TOUCH_LEARNER, {"learner": learner.id, "at": now})
            db.execute(
                _EVENT_INSERT,
                dict(learner_id=learner.id, session_id=session_id, activity_id=activity_id, verb=CHECKED_IN,
                     value={"check_in": row.id, "status": status, "note": note}, at=now),
            )
            return _check_in(username, row)

    def check_ins(self, username: str, activity_id: str | None = None) -> list[CheckIn]:
        """The learner's check-ins (on one goal, or all), oldest first."""
        with self.session(write=False) as db:
            query = select(CheckInRow).join(LearnerRow, LearnerRow.id == CheckInRow.learner_id).where(LearnerRow.username == username)
            if activity_id is not None:
                query = query.where(CheckInRow.activity_id == activity_id)
            return [_check_in(username, row) for row in db.scalars(query.order_by(CheckInRow.id))]

    def all_check_ins(self) -> list[CheckIn]:
        """Every check-in of every learner, oldest first (the goal-history export)."""
        with self.session(write=False) as db:
            rows = db.execute(select(CheckInRow, LearnerRow.username).join(LearnerRow, LearnerRow.id == CheckInRow.learner_id).order_by(CheckInRow.id))
            return [_check_in(username, row) for row, username in rows]

    # Feedback ----------------------------------------------------------------

    def add_feedback(
        self, username: str, activity_id: str, author: str, text: str, *, check_in: int | None = None, goal: bool = False,
        max_chars: int = MAX_FEEDBACK_CHARS,
    ) -> Feedback:
        """Feedback from a facilitator on a reflection the learner shared, on a goal (``goal=True``), or on one check-in.

        A reflection the learner did not share cannot take feedback: the facilitator has not seen it."""
        _clean(text, "feedback", max_chars)
        with self.session() as db:
            learner = self._learner_row(db, username)
            if check_in is not None:
                found = db.scalar(
                    select(CheckInRow).where(CheckInRow.id == check_in, CheckInRow.learner_id == learner.id, CheckInRow.activity_id == activity_id)
                )
                if found is None:
                    raise StoreError(f"{username} has no check-in {check_in} on '{activity_id}'; nothing was saved.")
            else:
                row = db.scalar(select(ResponseRow).where(ResponseRow.learner_id == learner.id, ResponseRow.activity_id == activity_id))
                if row is None or not (row.shared or goal):
                    raise StoreError(f"{username} has not shared '{activity_id}', so it cannot take feedback; nothing was saved.")
            now = utcnow()
            row = FeedbackRow(learner_id=learner.id, activity_id=activity_id, author=author, text=text, at=now, check_in_id=check_in)
            db.add(row)
            db.flush()
            return _feedback(row)

    def feedback(self, username: str, activity_id: str, check_in: int | None = None) -> list[Feedback]:
        """Feedback on one of the learner's reflections or goals (not its check-ins), or on one check-in; oldest first."""
        with self.session() as db:
            query = (
                select(FeedbackRow)
                .join(LearnerRow, LearnerRow.id == FeedbackRow.learner_id)
                .where(LearnerRow.username == username, FeedbackRow.activity_id == activity_id)
            )
            query = query.where(FeedbackRow.check_in_id.is_(None) if check_in is None else FeedbackRow.check_in_id == check_in)
            return [_feedback(row) for row in db.scalars(query.order_by(FeedbackRow.id))]

    def feedback_received(self, username: str) -> list[Feedback]:
        """Everything facilitators wrote to the learner, newest first."""
        with self.session(write=False) as db:
            rows = db.scalars(
                select(FeedbackRow)
                .join(LearnerRow, LearnerRow.id == FeedbackRow.learner_id)
                .where(LearnerRow.username == username)
                .order_by(FeedbackRow.at.desc(), FeedbackRow.id.desc())
            )
            return [_feedback(row) for row in rows]

    def all_feedback(self) -> list[tuple[str, Feedback]]:
        """Every feedback item with its learner's username, oldest first (the exports read everyone at once)."""
        with self.session(write=False) as db:
            rows = db.execute(
                select(FeedbackRow, LearnerRow.username).join(LearnerRow, LearnerRow.id == FeedbackRow.learner_id).order_by(FeedbackRow.at, FeedbackRow.id)
            )
            return [(username, _feedback(row)) for row, username in rows]

    def coaching_figures(self, learners: tuple[int, int] | None = None) -> dict[int, CoachingFigures]:
        """Per learner id, for everyone (of the part ``learners``) who checked in or had feedback: the evaluation feed's coaching figures.

        Worked out by the database, with no feedback text read (the export at
        100,000 learners reads this rather than every feedback item). Hours to
        first feedback are measured as :meth:`hours_to_first_feedback` measures
        them: a reflection from its first "shared" event, a check-in from the
        check-in; feedback on a goal itself is counted but not timed."""
        f = FeedbackRow
        shared_at = (
            select(func.min(EventRow.at))
            .where(EventRow.learner_id == f.learner_id, EventRow.activity_id == f.activity_id, EventRow.verb == SHARED)
            .scalar_subquery()
        )
        checked_in_at = (
            select(CheckInRow.at).where(CheckInRow.id == f.check_in_id, CheckInRow.learner_id == f.learner_id).scalar_subquery()
        )
        asked = case((f.check_in_id.is_(None), shared_at), else_=checked_in_at)
        first = func.min(f.at)
        if self.engine.dialect.name == "postgresql":
            hours = func.extract("epoch", first - asked) / 3600
        else:  # SQLite: times are UTC text, which julianday reads (to well under a second)
            hours = (func.julianday(first) - func.julianday(asked)) * 24
        figures: dict[int, CoachingFigures] = {}
        last_day = _utc_text(func.max(CheckInRow.at), self.engine.dialect.name, day=True)
        check_ins = select(CheckInRow.learner_id, func.count(), last_day).where(*among(CheckInRow.learner_id, learners))
        for rows in self._driver_rows(check_ins.group_by(CheckInRow.learner_id)):
            for learner_id, count, last in rows:
                figures[learner_id] = CoachingFigures(count, last)
        feedback = select(f.learner_id, func.count(), hours).where(*among(f.learner_id, learners))
        for rows in self._driver_rows(feedback.group_by(f.learner_id, f.activity_id, f.check_in_id)):
            for learner_id, count, waited in rows:
                item = figures.get(learner_id)
                if item is None:
                    item = figures[learner_id] = CoachingFigures()
                item.feedback += count
                if waited is not None:
                    item.hours.append(max(0.0, float(waited)))
        return figures

    def unseen_feedback(self, username: str) -> list[Feedback]:
        """Feedback that arrived since the learner last looked (:meth:`mark_feedback_seen`), newest first."""
        with self.session(write=False) as db:
            seen = db.scalar(select(LearnerRow.feedback_seen_at).where(LearnerRow.username == username))
        return [item for item in self.feedback_received(username) if seen is None or item.at > _aware(seen)]

    def mark_feedback_seen(self, username: str, at: datetime | None = None) -> None:
        """The learner has read their feedback (up to ``at``, now by default)."""
        with self.session() as db:
            db.execute(update(LearnerRow).where(LearnerRow.username == username).values(feedback_seen_at=at or utcnow()))

    # The queue ---------------------------------------------------------------

    def waiting_for_feedback(self, limit: int | None = None) -> list[Waiting]:
        """Shared reflections and goal check-ins with no feedback yet, oldest first.

        A reflection waits from when it was first shared (its "shared" event), or
        from its last save when the log holds no such event."""
        with self.session(write=False) as db:
            # Both read through the partial indexes of migration 0006: only the shared rows, and for each
            # reflection still waiting, its own first "shared" event.
            shared_at = (
                select(func.min(EventRow.at))
                .where(EventRow.learner_id == ResponseRow.learner_id, EventRow.activity_id == ResponseRow.activity_id,
                       EventRow.verb == SHARED)
                .scalar_subquery()
            )
            answered = exists().where(
                FeedbackRow.learner_id == ResponseRow.learner_id, FeedbackRow.activity_id == ResponseRow.activity_id,
                FeedbackRow.check_in_id.is_(None),
            )
            reflections = db.execute(
                select(LearnerRow.username, LearnerRow.name, LearnerRow.cohort, ResponseRow.activity_id,
                       func.coalesce(shared_at, ResponseRow.updated_at))
                .join(LearnerRow, LearnerRow.id == ResponseRow.learner_id)
                .where(ResponseRow.shared.is_(True), ~answered)
            ).all()
            replied = exists().where(FeedbackRow.check_in_id == CheckInRow.id)
            check_ins = db.execute(
                select(CheckInRow, LearnerRow.username, LearnerRow.name, LearnerRow.cohort)
                .join(LearnerRow, LearnerRow.id == CheckInRow.learner_id)
                .where(~replied)
            ).all()
        waiting = [Waiting(u, n, c, a, "reflection", _aware(at)) for u, n, c, a, at in reflections]
        waiting += [Waiting(u, n, c, row.activity_id, "check-in", _aware(row.at), _check_in(u, row)) for row, u, n, c in check_ins]
        waiting.sort(key=lambda w: (w.since, w.username, w.activity_id))
        return waiting[:limit] if limit is not None else waiting

    def hours_to_first_feedback(self, since: datetime) -> list[float]:
        """For each reflection shared or check-in made since ``since`` that has had feedback: hours until the first.

        Read as the driver's rows (the times as it gives them, read by :func:`_moment`): at 100,000 learners,
        some 40,000 pairs of times, which SQLAlchemy's own reading of each took longer than the query."""
        first_feedback = (
            select(func.min(FeedbackRow.at))
            .where(FeedbackRow.learner_id == EventRow.learner_id, FeedbackRow.activity_id == EventRow.activity_id,
                   FeedbackRow.check_in_id.is_(None))
            .scalar_subquery()
        )
        # The "shared" events through their partial index (migration 0006); feedback looked up only for those since.
        shared = (
            select(func.min(EventRow.at), first_feedback)
            .where(EventRow.verb == SHARED)
            .group_by(EventRow.learner_id, EventRow.activity_id)
            .having(func.min(EventRow.at) >= since)
        )
        check_ins = (
            select(CheckInRow.at, func.min(FeedbackRow.at))
            .join(FeedbackRow, FeedbackRow.check_in_id == CheckInRow.id)
            .where(CheckInRow.at >= since)
            .group_by(CheckInRow.id, CheckInRow.at)
        )
        hours = []
        for query in (shared, check_ins):
            for rows in self._driver_rows(query):
                for asked, answered in rows:
                    if answered is not None:
                        hours.append(max(0.0, (_moment(answered) - _moment(asked)).total_seconds() / 3600))
        return hours

    # Reminders sent ------------------------------------------------------------

    def reminders_sent(self, since: datetime) -> set[tuple[str, str]]:
        """(recipient, topic) of every reminder sent since ``since``: the quiet period's memory."""
        with self.session(write=False) as db:
            rows = db.execute(select(ReminderRow.recipient, ReminderRow.topic).where(ReminderRow.sent_at >= since))
            return {(recipient, topic) for recipient, topic in rows}

    def record_reminder(self, recipient: str, topic: str, subject: str, at: datetime | None = None) -> None:
        """Remember that a reminder was sent (only after the mail server accepted it)."""
        with self.session() as db:
            db.add(ReminderRow(recipient=recipient, topic=topic, subject=subject, sent_at=at or utcnow()))
