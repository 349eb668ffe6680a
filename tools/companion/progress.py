"""Completion rules over the store.

A session is *complete* when the learner pressed its SessionComplete button,
which is only possible once every required activity is done; *in progress*
when any of its required activities is done; otherwise *not started*. The same
rules, as a :class:`SessionRule` per session, keep the store's per-session
progress current as learners save, for the facilitator's figures.

Example::

    >>> from companion.progress import learner_progress
    >>> [p.status for p in learner_progress(store, catalog, "ana")]
    ['complete', 'in progress', 'not started', 'not started', 'not started', 'not started']
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime

from .catalog import Catalog
from .store import Response, Store

NOT_STARTED, IN_PROGRESS, COMPLETE = "not started", "in progress", "complete"


@dataclass(frozen=True)
class SessionRule:
    """What completes a session: its required activities, and the activity that marks it complete.

    The store applies it as learners save, to keep each learner's progress per
    session current for the facilitator's figures."""

    session_id: str
    required: tuple[str, ...]
    finishing: str | None  # the SessionComplete activity
    sessions: tuple[str, ...] = ()  # every session of the course, in order
    version: str = ""  # names the whole course's rules: progress kept under other rules is rebuilt


def session_rules(catalog: Catalog) -> tuple[SessionRule, ...]:
    """Every session's rule, in course order, each carrying the version of the whole set."""
    rules = []
    for session in catalog.settings.sessions:
        finish = next((a for a in catalog.activities(session.id) if a.kind == "SessionComplete"), None)
        rules.append(SessionRule(session.id, tuple(a.id for a in catalog.required(session.id)), finish.id if finish else None))
    text = json.dumps([[r.session_id, list(r.required), r.finishing] for r in rules])
    version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    sessions = tuple(rule.session_id for rule in rules)
    return tuple(replace(rule, sessions=sessions, version=version) for rule in rules)


def current_progress(store: Store, catalog: Catalog) -> None:
    """Make sure the store's per-session progress follows the notebooks' current rules.

    Pages keep it current as learners save; after the notebooks change which
    activities are required (or a bulk import), it is rebuilt here, once."""
    rules = session_rules(catalog)
    if store.progress_version() != (rules[0].version if rules else ""):
        store.rebuild_progress(rules)


def session_rule(catalog: Catalog, session_id: str) -> SessionRule:
    catalog.settings.session(session_id)  # an unknown session says so
    return next(rule for rule in session_rules(catalog) if rule.session_id == session_id)


@dataclass(frozen=True)
class SessionProgress:
    session_id: str
    number: int
    title: str
    required: int
    done: int
    completed_at: datetime | None

    @property
    def status(self) -> str:
        if self.completed_at is not None:
            return COMPLETE
        return IN_PROGRESS if self.done else NOT_STARTED


def session_progress(catalog: Catalog, session_id: str, saved: dict[str, Response]) -> SessionProgress:
    """One session's progress from a learner's saved responses (by activity id)."""
    session = catalog.settings.session(session_id)
    rule = session_rule(catalog, session_id)
    done = sum(1 for a in rule.required if a in saved and saved[a].done)
    completed = saved.get(rule.finishing) if rule.finishing else None
    return SessionProgress(
        session.id,
        session.number,
        session.title,
        len(rule.required),
        done,
        completed.updated_at if completed is not None and completed.done else None,
    )


def learner_progress(store: Store, catalog: Catalog, username: str) -> list[SessionProgress]:
    """Every session's progress for one learner, in course order."""
    saved = store.responses(username)
    return [session_progress(catalog, s.id, saved) for s in catalog.settings.sessions]
