"""Reading: a learner's own work back, and the bulk reads behind the dashboard and the exports.

Every read is one query (or a few, paged by id) in its own short read-only
transaction (``session(write=False)``: on SQLite no write lock, so a page
restoring its learner's work never waits behind the saves), through the same
session helper as the saves. Values a learner wrote leave the
store only here, and only as the methods' docstrings say.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator

from sqlalchemy import String, Text, and_, case, cast, func, or_, select

from .database import BATCH, Database
from .schema import (
    _LEARNERS,
    _META,
    _PROGRESS,
    _RESPONSES,
    PROGRESS_RULE,
    Event,
    EventRow,
    Learner,
    LearnerRow,
    ProgressSummary,
    Response,
    ResponseRow,
    _aware,
    _progress_columns,
)


def _response(username: str, row: ResponseRow) -> Response:
    return Response(username, row.session_id, row.activity_id, row.value, row.done, row.shared, _aware(row.updated_at))


def _utc_text(column, dialect: str, day: bool):
    """A time column as UTC text made by the database: the day (``2026-03-01``) or the moment to the second
    (``2026-03-01T09:30:00+00:00``), as Python's ``isoformat`` writes them, without a datetime per row.

    SQLite holds times as UTC text (``2026-03-01 09:30:00.000000``), so this cuts it
    (truncating, as ``timespec="seconds"`` does); PostgreSQL formats its own."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD" if day else 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')
    if day:
        return func.substr(column, 1, 10, type_=String)
    return func.substr(column, 1, 10, type_=String) + "T" + func.substr(column, 12, 8, type_=String) + "+00:00"  # NULL stays NULL


def among(column, learners: tuple[int, int] | None) -> list:
    """The condition that ``column`` (a learner id) is in the part ``learners`` (None: everyone), for ``.where(*...)``.

    A part is ``(first, end)``: the learner ids from ``first`` up to, not including, ``end``."""
    return [] if learners is None else [column >= learners[0], column < learners[1]]


class Reads(Database):
    """The store's reads: responses, events, learners, feedback, and the facilitator's figures."""

    # Reading --------------------------------------------------------------

    def learner(self, username: str) -> Learner | None:
        with self.session(write=False) as db:
            row = db.scalar(select(LearnerRow).where(LearnerRow.username == username))
            if row is None:
                return None
            active = _aware(row.last_active) if row.last_active else None
            return Learner(row.username, row.name, row.email, row.cohort, row.department, active)

    def responses(self, username: str, session_id: str | None = None) -> dict[str, Response]:
        """The learner's latest responses, by activity id."""
        with self.session(write=False) as db:
            query = (
                select(ResponseRow)
                .join(LearnerRow, LearnerRow.id == ResponseRow.learner_id)
                .where(LearnerRow.username == username)
            )
            if session_id is not None:
                query = query.where(ResponseRow.session_id == session_id)
            return {row.activity_id: _response(username, row) for row in db.scalars(query)}

    def response(self, username: str, activity_id: str) -> Response | None:
        with self.session(write=False) as db:
            row = db.scalar(
                select(ResponseRow)
                .join(LearnerRow, LearnerRow.id == ResponseRow.learner_id)
                .where(LearnerRow.username == username, ResponseRow.activity_id == activity_id)
            )
            return _response(username, row) if row else None

    def events(self, username: str | None = None) -> list[Event]:
        """Events in the order they happened, for one learner or everyone."""
        with self.session(write=False) as db:
            query = select(EventRow, LearnerRow.username).join(LearnerRow, LearnerRow.id == EventRow.learner_id)
            if username is not None:
                query = query.where(LearnerRow.username == username)
            return [
                Event(name, row.session_id, row.activity_id, row.verb, row.value, _aware(row.at), row.id)
                for row, name in db.execute(query.order_by(EventRow.id))
            ]

    def count_events(self) -> int:
        with self.session(write=False) as db:
            return db.scalar(select(func.count(EventRow.id)))

    # Reporting (bulk reads for the dashboard and exports) -------------------
    #
    # Each figure is one grouped query over everyone, never one query per learner.
    # Long reads are read-only transactions (the events paged by id), so an export
    # never holds SQLite's write lock while learners are saving. Values a learner wrote leave
    # here only through latest_responses and value_texts (scores and goals for
    # the exports) and, for a facilitator, only when the learner shared them
    # (facilitator_view).

    def learners(self) -> list[Learner]:
        """Every learner (roster-imported or seen on a page), by username."""
        with self.session(write=False) as db:
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
        with self.session(write=False) as db:
            return [
                (username, session_id, int(done or 0), _aware(completed) if completed is not None else None)
                for username, session_id, done, completed in db.execute(query)
            ]

    def last_active(self) -> dict[str, datetime]:
        """When each learner last did anything (opened a page, saved), by username."""
        with self.session(write=False) as db:
            rows = db.execute(select(_LEARNERS.c.username, _LEARNERS.c.last_active).where(_LEARNERS.c.last_active.is_not(None)))
            return {username: _aware(at) for username, at in rows}

    # Progress (the facilitator's figures) ---------------------------------

    def progress_version(self) -> str | None:
        """The rules the stored progress was built under (None: stale, rebuild it)."""
        with self.session(write=False) as db:
            return db.scalar(select(_META.c.value).where(_META.c.key == PROGRESS_RULE))

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
        unfinished = and_(learners.c.started == True, ~every)  # noqa: E712
        never_active, inactive_since = learners.c.last_active.is_(None), learners.c.last_active < cutoff.astimezone(timezone.utc)
        stalled = and_(unfinished, or_(never_active, inactive_since))
        count = lambda condition: func.sum(case((condition, 1), else_=0))  # noqa: E731
        people = lambda where, *order, limit=listed: (  # noqa: E731
            select(learners.c.id, learners.c.username, learners.c.name, learners.c.cohort, learners.c.last_active)
            .where(where).order_by(*order).limit(limit)
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
            # Those never active first, then the longest inactive: two reads, so that the second takes learners
            # in the order of the index on last activity and stops at the listed number, not sorting everyone.
            stuck = db.execute(people(and_(unfinished, never_active), learners.c.username)).all()
            if listed is None or len(stuck) < listed:
                rest = None if listed is None else listed - len(stuck)
                stuck += db.execute(people(and_(unfinished, inactive_since), learners.c.last_active, learners.c.username, limit=rest)).all()
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
        with self.session(write=False) as db:
            rows = db.execute(
                select(ResponseRow, LearnerRow.username)
                .join(LearnerRow, LearnerRow.id == ResponseRow.learner_id)
                .where(ResponseRow.activity_id.in_(list(activity_ids)))
                .order_by(ResponseRow.id)
            )
            return [_response(username, row) for row, username in rows]

    def learner_ids(self) -> list[int]:
        """Every learner's id, in the order of their usernames: the order of the exports' rows."""
        return [row[0] for rows in self._driver_rows(select(_LEARNERS.c.id).order_by(_LEARNERS.c.username)) for row in rows]

    def roster_rows(self, learners: tuple[int, int] | None = None) -> list[tuple[int, str, str, str, str, str, str | None]]:
        """Every learner (or those of the part ``learners``) as ``(id, username, name, email, cohort, department, last_active)``.

        The exports' one read of people: the id joins them to :meth:`progress_rows`
        and :meth:`value_texts` without a join in either. ``last_active`` is text,
        UTC to the second (``2026-03-01T09:30:00+00:00``), as the feed writes it.
        In no particular order: the export's rows are ordered by :meth:`learner_ids`."""
        l = _LEARNERS
        active = _utc_text(l.c.last_active, self.engine.dialect.name, day=False)
        query = select(l.c.id, l.c.username, l.c.name, l.c.email, l.c.cohort, l.c.department, active).where(*among(l.c.id, learners))
        return [row for rows in self._driver_rows(query) for row in rows]

    def progress_rows(self, learners: tuple[int, int] | None = None) -> list[tuple[int, str, int, str | None]]:
        """The stored progress (of the part ``learners``; None: everyone's): ``(learner_id, session_id, done, completed_on)``
        per learner and session started.

        ``completed_on`` is the day (UTC, ``2026-03-01``) the session was
        completed, or None. Current only under the rules :meth:`progress_version`
        names (:func:`companion.progress.current_progress` makes sure of that first)."""
        p = _PROGRESS
        day = _utc_text(p.c.completed_at, self.engine.dialect.name, day=True)
        query = select(p.c.learner_id, p.c.session_id, p.c.done, day).where(*among(p.c.learner_id, learners))
        return [row for rows in self._driver_rows(query) for row in rows]

    def value_texts(self, activity_ids: list[str], in_time_order: bool = False, batch: int = BATCH,
                    learners: tuple[int, int] | None = None) -> Iterator[list[tuple[int, str, str, int]]]:
        """Everyone's responses to these activities as ``(learner_id, activity_id, value as JSON text, done)``, ``batch`` rows at a time.

        For the evaluation export, which reads some 700,000 of them at 100,000
        learners: the values come as the JSON text the database holds, for the
        caller to decode a whole batch in one call, ``done`` as the database holds
        it (0 or 1 on SQLite), and nothing is made per row but the driver's tuple
        (the statement runs on the driver's cursor: :class:`Prepared`).
        ``in_time_order``: oldest save first (the first saved first among equal
        times), so a caller keeping the last row of each kind keeps the latest;
        otherwise in no particular order. One read-only transaction (on SQLite it
        takes no write lock, so learners' saves never wait). ``learners``: only
        those of that part."""
        if not activity_ids:
            return
        r = _RESPONSES
        query = select(r.c.learner_id, r.c.activity_id, func.coalesce(cast(r.c.value, Text), "null"), r.c.done).where(
            r.c.activity_id.in_(list(activity_ids)), *among(r.c.learner_id, learners)
        )
        if in_time_order:
            query = query.order_by(r.c.updated_at, r.c.id.desc())
        yield from self._driver_rows(query, batch)

    def facilitator_view(self, username: str, visible: frozenset[str] = frozenset()) -> list[Response]:
        """What a facilitator may see of one learner: every response, its value only if the learner shared it.

        ``visible`` names activities that are never private (goals and self-ratings):
        their values come whole. Reflections come only when shared."""
        with self.session(write=False) as db:
            rows = db.scalars(
                select(ResponseRow)
                .join(LearnerRow, LearnerRow.id == ResponseRow.learner_id)
                .where(LearnerRow.username == username)
                .order_by(ResponseRow.id)
            )
            return [
                Response(username, r.session_id, r.activity_id, r.value if (r.shared or r.activity_id in visible) else None,
                         r.done, r.shared, _aware(r.updated_at))
                for r in rows
            ]

    def recently_shared(self, limit: int = 20) -> list[Response]:
        """The latest shared responses across learners, newest first, without their values."""
        with self.session(write=False) as db:
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
            with self.session(write=False) as db:
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
