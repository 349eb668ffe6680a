"""The store: the only code that touches the database.

Every save is an append-only event (who, session, activity, verb, value, UTC
time); beside it, in the same transaction, the latest response per learner and
activity is kept, so a page opens with one lookup. Saving the same value again
is harmless. The schema is managed by Alembic migrations from the first table
(``companion/migrations``); opening a store upgrades it under a lock, so many
processes may open it at once.

SQLite (the default, under the data home) runs in WAL mode and takes its write
lock at the start of each write transaction, in turn (``turns``), so concurrent
writers queue instead of failing; under ``companion serve`` the pages' saves go
to one writing process (``writer``), several learners' in one transaction. Any
other database comes through ``COMPANION_DB_URL`` (PostgreSQL for shared
deployments).

Example::

    >>> from companion.store import open_store
    >>> store = open_store("sqlite:///:memory:")
    >>> store.save("ana", "s1", "s1-why", "responded", {"text": "Because..."}, done=True).done
    True

The store is this package: ``schema`` (the tables, the statements built once
over them, and the dataclasses it returns), ``database`` (the engine and the
one commit-or-rollback session), ``saves``, ``reads`` and ``coaching`` (feedback,
goal check-ins and the queue of what waits for a reply): together :class:`Store`. Import everything from ``companion.store``.
"""

from __future__ import annotations

import os

from .backup import Copied, backup_store, restore_store
from .coaching import CHECKED_IN, Coaching
from .database import READ_ONLY, Database
from .reads import Reads
from .saves import Saves
from .schema import (
    CONFLICTED, HEAD_REVISION, CheckIn, CheckInRow, Waiting, MAX_VALUE_BYTES, PROGRESS_RULE, RULE_CHECK_SECONDS, UNCHECKED, Base, CompletionRule,
    Event, EventRow, Feedback, FeedbackRow, Learner, LearnerRow, MetaRow, ProgressRow, ReminderRow, ProgressSummary, Response,
    ResponseRow, utcnow,
)

# What other modules import from companion.store: the store, what it returns, its tables and its limits.
__all__ = [
    "CHECKED_IN", "CONFLICTED", "Copied", "backup_store", "restore_store", "HEAD_REVISION", "CheckIn", "CheckInRow", "Coaching", "Waiting", "MAX_VALUE_BYTES", "PROGRESS_RULE", "READ_ONLY", "RULE_CHECK_SECONDS", "UNCHECKED",
    "Base", "CompletionRule", "Database", "Event", "EventRow", "Feedback", "FeedbackRow", "Learner", "LearnerRow",
    "MetaRow", "ProgressRow", "ReminderRow", "ProgressSummary", "Reads", "Response", "ResponseRow", "Saves", "Store", "open_store",
    "utcnow",
]


class Store(Saves, Reads, Coaching):
    """The learners, their events and their latest responses, in one database."""


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
