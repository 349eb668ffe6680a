"""Completion rules over the store.

A session is *complete* when the learner pressed its SessionComplete button,
which is only possible once every required activity is done; *in progress*
when anything in it was saved; otherwise *not started*.

Example::

    >>> from companion.progress import learner_progress
    >>> [p.status for p in learner_progress(store, catalog, "ana")]
    ['complete', 'in progress', 'not started', 'not started', 'not started', 'not started']
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .catalog import Catalog
from .store import Response, Store

NOT_STARTED, IN_PROGRESS, COMPLETE = "not started", "in progress", "complete"


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
    required = catalog.required(session_id)
    done = sum(1 for a in required if a.id in saved and saved[a.id].done)
    finish = next((a for a in catalog.activities(session_id) if a.kind == "SessionComplete"), None)
    completed = saved.get(finish.id) if finish else None
    return SessionProgress(
        session.id,
        session.number,
        session.title,
        len(required),
        done,
        completed.updated_at if completed is not None and completed.done else None,
    )


def learner_progress(store: Store, catalog: Catalog, username: str) -> list[SessionProgress]:
    """Every session's progress for one learner, in course order."""
    saved = store.responses(username)
    return [session_progress(catalog, s.id, saved) for s in catalog.settings.sessions]
