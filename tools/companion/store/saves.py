"""Saving: every write to the store, from the learners' pages, the roster and the facilitators.

A save appends an event and, in the same transaction, makes its value the
learner's latest response and keeps their progress in the session current (or
marks the stored progress stale). With ``expected=`` a save is a
compare-and-set: a page that is behind another tab or device does not replace
what was saved there, and its value is kept as a "conflicted" event. Also here,
because they write the same tables under the same rules: events that change no
response (:meth:`Saves.record`), the roster's upsert, feedback, bulk saves, and
the progress rebuild.
"""

from __future__ import annotations

import functools
import json
import os
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, and_, bindparam, delete, exists, func, insert, literal, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..errors import StoreError
from . import database
from .database import Database
from .prepared import Prepared, driver_error
from .writer import request_of
from .schema import (
    _EVENT_INSERT,
    _FORGET_ANY_RULE,
    _FORGET_RULE,
    _LEARNERS,
    _LOCK_LEARNER,
    _META,
    _PROGRESS,
    _RESPONSES,
    _STORED_RESPONSE,
    _TOUCH_LEARNER,
    CONFLICTED,
    MAX_VALUE_BYTES,
    PROGRESS_RULE,
    RULE_CHECK_SECONDS,
    UNCHECKED,
    CompletionRule,
    EventRow,
    LearnerRow,
    Response,
    ResponseRow,
    _aware,
    _progress_columns,
    utcnow,
)


# How stale a learner's "last active" may be: a save within this of the last one it wrote leaves the row alone.
ACTIVE_PRECISION = timedelta(seconds=60)
_EVENT_KEYS = ("learner_id", "session_id", "activity_id", "verb", "value", "at")
# A learner first seen saving: every column, as the table's defaults would set them (a prepared statement runs no defaults).
_NEW_LEARNER = dict(username=None, name="", email="", cohort="", department="", extra={}, created_at=None, sessions_completed=0, started=False)


def _check_size(value: Any) -> None:
    """Refuse a value too large to save, or holding a NUL character (PostgreSQL keeps none in text: refused on every store alike)."""
    dumped = json.dumps(value, ensure_ascii=False)
    size = len(dumped.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise StoreError(
            f"The answer is too large to save ({size:,} bytes; the limit is {MAX_VALUE_BYTES:,}). "
            "Shorten it and save again."
        )
    if "\\u0000" in dumped and _holds_nul(value):  # JSON writes NUL so; the walk rules out a typed "\u0000"
        raise StoreError(
            "The answer contains a NUL character (often pasted from another program), which cannot be saved. "
            "Remove it and save again."
        )


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return any(_holds_nul(item) for item in value)
    return False


class Saves(Database):
    """The store's writes: saves, events, learners, feedback, and the progress they keep."""

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
        rule: CompletionRule | None = None,
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
        marked stale and the next dashboard rebuilds it.

        On SQLite the write lock is held for the whole transaction, so its length
        bounds how many saves a second all learners together get. So the
        statements (an event, the response upserted with RETURNING, the progress
        recounted in one INSERT ... SELECT, the learner's state) are Core
        statements compiled once per store (:class:`Prepared`), bound before the
        transaction, and run on the driver's cursor (:meth:`_write`): inside the
        lock, only the database works."""
        if self._together is None:  # (not in the writing process, which runs saves its kernels have checked and sent)
            _check_size(value)
            if self._writer is not None and self._writer.usable():
                sent = self._writer.save(request_of(username, session_id, activity_id, verb, value, done, shared, rule, expected))
                if sent is not None:
                    return sent
        now = utcnow()
        changes: dict[str, Any] = {"value": value, "updated_at": now}
        if done is not None:
            changes["done"] = done
        if shared is not None:
            changes["shared"] = shared
        keeps_progress = rule is not None and rule.session_id == session_id
        check_rule = keeps_progress and time.monotonic() - self._rule_checked.get(rule.version, -RULE_CHECK_SECONDS) >= RULE_CHECK_SECONDS
        if self._upsert is None:
            return self._save_elsewhere(username, session_id, activity_id, verb, value, changes, rule, keeps_progress, check_rule, expected, now)
        # Every statement compiled once and bound (JSON written, dates formatted) before the
        # transaction: on SQLite, only the driver's work is done holding the write lock.
        event = self._prepared(("event",), lambda: (_EVENT_INSERT, dict.fromkeys(_EVENT_KEYS), list(_EVENT_KEYS)))
        fresh_keys = ("learner_id", "session_id", "activity_id", "done", "shared", *changes)
        response = self._prepared(
            ("response", tuple(changes)), lambda: (self._upsert_response(tuple(changes)), dict.fromkeys(fresh_keys), list(fresh_keys))
        )
        if keeps_progress:
            progress = self._prepared(("progress", rule), lambda: (self._refresh_progress(rule), {"learner": None}))
            after = self._prepared(("state", rule.sessions), lambda: (self._learner_state(rule.sessions, one=True), {"learner": None, "at": None, "stale": None}))
        else:
            after = self._prepared(("touch",), lambda: (_TOUCH_LEARNER, {"learner": None, "at": None}))

        def bind(learner: int) -> list:
            fresh = dict(learner_id=learner, session_id=session_id, activity_id=activity_id, done=False, shared=False) | changes
            return [
                event.bind(dict(learner_id=learner, session_id=session_id, activity_id=activity_id, verb=verb, value=value, at=now)),
                response.bind(fresh),
                progress.bind({"learner": learner}) if keeps_progress else None,
                after.bind({"learner": learner, "at": now, "stale": now - ACTIVE_PRECISION}),  # the touch needs no "stale"
            ]

        learner_id = self._learner_ids.get(username)
        bound = bind(learner_id) if learner_id is not None else None
        with self._reported(), self._write() as cursor:
            if learner_id is None:
                learner_id = self._new_learner_id(cursor, username, now)
                bound = bind(learner_id)
            if not self.is_sqlite:
                # Orders one learner's concurrent saves (two tabs), so each sees the other's response
                # when it counts their progress. SQLite's write lock already orders every save.
                lock = self._prepared(("lock",), lambda: (_LOCK_LEARNER, {"learner": None}))
                cursor.execute(lock.sql, lock.bind({"learner": learner_id}))
            if expected is not UNCHECKED:
                read = self._prepared(("stored",), lambda: (_STORED_RESPONSE, {"learner": None, "activity": None}))
                cursor.execute(read.sql, read.bind({"learner": learner_id, "activity": activity_id}))
                stored = read.row(cursor.fetchone())
                if stored is not None and stored[0] not in (expected, value):
                    row = dict(learner_id=learner_id, session_id=session_id, activity_id=activity_id, verb=CONFLICTED, value=value, at=now)
                    cursor.execute(event.sql, event.bind(row))
                    conflict = Response(username, session_id, activity_id, stored[0], bool(stored[1]), bool(stored[2]), _aware(stored[3]), conflict=True)
                else:
                    conflict = None
                if conflict is not None:
                    return conflict
            cursor.execute(event.sql, bound[0])
            cursor.execute(response.sql, bound[1])
            stored_done, stored_shared = cursor.fetchone()
            if keeps_progress:
                if check_rule:
                    forget = self._prepared(("forget",), lambda: (_FORGET_RULE, {"version": None}))
                    cursor.execute(forget.sql, forget.bind({"version": rule.version}))
                cursor.execute(progress.sql, bound[2])
            else:
                forget = self._prepared(("forget any",), lambda: (_FORGET_ANY_RULE, {}))
                cursor.execute(forget.sql, forget.bind({}))
            cursor.execute(after.sql, bound[3])
        self._known(username, learner_id)
        if check_rule:
            self._rule_checked[rule.version] = time.monotonic()
        return Response(username, session_id, activity_id, value, bool(stored_done), bool(stored_shared), now)

    def save_together(self, saves: list[dict]) -> list[Response | StoreError]:
        """Several :meth:`save` calls (their keyword arguments) in one transaction, each in a savepoint of its own:
        what each returned, or the StoreError that refused it. For the writing process (companion.store.writer),
        whose kernels have checked each value's size before sending it."""
        outcomes: list[Response | StoreError] = []
        try:
            with self._reported(), self._write() as cursor:
                self._together = cursor
                try:
                    for one in saves:
                        try:
                            outcomes.append(self.save(**one))
                        except Exception as error:
                            if not cursor.connection.in_transaction:
                                raise  # SQLite undid the whole transaction (a full disk, an I/O error): every save of the group
                            if not isinstance(error, StoreError):  # a message with the wrong fields
                                database._logger(self.url).error("A save sent to the writing process was refused: %r", error)
                                error = StoreError(database.REFUSED)
                            outcomes.append(error)
                finally:
                    self._together = None
        except StoreError as error:
            # Nothing of the group was committed: the learner ids and rule checks it remembered may not exist.
            self._learner_ids.clear()
            self._rule_checked.clear()
            return [error] * len(saves)
        return outcomes

    def _prepared(self, key: tuple, build) -> Prepared:
        """The save path's statement named ``key``, compiled for this database the first time; ``build`` returns
        (statement, its parameters' names as a dict[, the columns an INSERT sets])."""
        cache = self.__dict__.setdefault("_prepared_statements", {})
        found = cache.get(key)
        if found is None:
            statement, example, *columns = build()
            found = cache[key] = Prepared(statement, self.engine.dialect, example, *columns)
        return found

    def _new_learner_id(self, cursor, username: str, now: datetime) -> int:
        """The id of a learner not yet seen by this process, created if new (inside the save's transaction)."""
        find = self._prepared(("learner",), lambda: (select(_LEARNERS.c.id).where(_LEARNERS.c.username == bindparam("username")), {"username": None}))
        cursor.execute(find.sql, find.bind({"username": username}))
        found = cursor.fetchone()
        if found is None:
            add = self._prepared(
                ("new learner",),
                lambda: (self._upsert(_LEARNERS).on_conflict_do_nothing(), dict.fromkeys(_NEW_LEARNER), list(_NEW_LEARNER)),
            )
            cursor.execute(add.sql, add.bind(_NEW_LEARNER | {"username": username, "created_at": now}))
            cursor.execute(find.sql, find.bind({"username": username}))
            found = cursor.fetchone()
        return found[0]

    @contextmanager
    def _write(self):
        """One write transaction on the driver's connection: committed, or rolled back on any error.

        The driver's errors become SQLAlchemy's, so that ``_reported`` words them as for every
        other transaction, and a connection the database dropped is not used again. On a SQLite
        file the write lock is taken at BEGIN (IMMEDIATE), in turn with the other saving processes
        (companion.store.turns), on a connection each thread keeps for its saves; elsewhere the
        connection comes from the engine's pool for each save."""
        dialect = self.engine.dialect
        failure = dialect.loaded_dbapi.Error
        if self._together is not None:  # one of several saves in the writer's transaction: a savepoint of its own
            cursor = self._together
            try:
                cursor.execute("SAVEPOINT save")
                try:
                    yield cursor
                except BaseException:
                    cursor.execute("ROLLBACK TO save")
                    cursor.execute("RELEASE save")
                    raise
                cursor.execute("RELEASE save")
            except failure as error:
                raise driver_error(error, dialect) from error
            return
        raw = kept = None
        try:
            raw = kept = self._kept_connection() if self._turns else None
            raw = raw or self.engine.raw_connection()
            cursor = raw.cursor()
            try:
                if self._turns:
                    self._turns.begin(cursor, database.BUSY_SECONDS)  # writers queue for the lock here, not at their first write
                elif self.is_sqlite:
                    cursor.execute("BEGIN IMMEDIATE")
                yield cursor
                raw.commit()
            except BaseException:
                try:
                    raw.rollback()
                except Exception:  # the connection is gone: the database has dropped the transaction
                    pass
                raise
        except failure as error:
            gone = raw is not None and dialect.is_disconnect(error, raw.dbapi_connection, None)
            if gone:
                raw.invalidate(error)
                self._kept.connection = None
            raise driver_error(error, dialect, invalidated=gone) from error
        finally:
            if raw is not None and raw is not kept:
                raw.close()

    def _kept_connection(self):
        """This thread's connection for saves to a SQLite file, taken from the saves engine's pool once and kept:
        a save then skips the pool's checkout and its rollback on return (a fifth of a save's time)."""
        kept, now = self._kept, (os.getpid(), self._generation)  # a forked kernel takes its own; so does close()
        if getattr(kept, "connection", None) is None or kept.taken != now:
            kept.connection, kept.taken = self._saves_engine.raw_connection(), now
        return kept.connection

    def _save_elsewhere(self, username, session_id, activity_id, verb, value, changes, rule, keeps_progress, check_rule, expected, now) -> Response:
        """:meth:`save` on a database with no INSERT ... ON CONFLICT, with SQLAlchemy's own execution."""
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

    def _put_progress(self, connection, learner_id: int, rule: CompletionRule, now: datetime) -> None:
        """Recount the learner's progress in the rule's session, and their sessions completed and started."""
        if self._upsert is not None:
            connection.execute(self._refresh_progress(rule), {"learner": learner_id})
        else:
            done_count, completed_at = connection.execute(self._progress_of(rule), {"learner": learner_id}).one()
            match = (_PROGRESS.c.learner_id == learner_id, _PROGRESS.c.session_id == rule.session_id)
            connection.execute(delete(_PROGRESS).where(*match))
            connection.execute(insert(_PROGRESS), dict(learner_id=learner_id, session_id=rule.session_id, done=done_count, completed_at=completed_at))
        connection.execute(self._learner_state(rule.sessions, one=True), {"learner": learner_id, "at": now, "stale": now - ACTIVE_PRECISION})

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
    def _progress_of(rule: CompletionRule):
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
        learner = _LEARNERS.c
        # A learner's row is written only when a count changes or their last active is older
        # than ``stale``: most saves then write no page here (two fewer pages per save on SQLite).
        changed = or_(
            learner.last_active.is_(None),
            learner.last_active < bindparam("stale", type_=learner.last_active.type),
            learner.sessions_completed != completed,
            learner.started.is_distinct_from(started),
        )
        return statement.where(learner.id == bindparam("learner"), changed).values(last_active=bindparam("at"))

    @functools.lru_cache(maxsize=None)
    def _refresh_progress(self, rule: CompletionRule):
        """Recompute one learner's progress in the rule's session and store it (parameter ``learner``): one statement."""
        statement = self._upsert(_PROGRESS).from_select(
            ["learner_id", "session_id", "done", "completed_at"],
            select(bindparam("learner", type_=Integer), literal(rule.session_id, String), *self._progress_of(rule).selected_columns)
            .where(_RESPONSES.c.learner_id == bindparam("learner"), _RESPONSES.c.session_id == rule.session_id),
        )
        return statement.on_conflict_do_update(
            index_elements=["learner_id", "session_id"],
            set_={"done": statement.excluded.done, "completed_at": statement.excluded.completed_at},
            # An unchanged row is not written again (most saves change no count).
            where=or_(
                _PROGRESS.c.done.is_distinct_from(statement.excluded.done),
                _PROGRESS.c.completed_at.is_distinct_from(statement.excluded.completed_at),
            ),
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

    # Progress kept -------------------------------------------------------

    def rebuild_progress(self, rules: tuple[CompletionRule, ...]) -> None:
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
