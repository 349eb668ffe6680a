"""Coaching figures (no widgets): what waits for a facilitator's feedback, for how long, and how fast feedback comes.

The queue is the store's :meth:`~companion.store.Store.waiting_for_feedback`
(shared reflections and goal check-ins with no reply, oldest first), each item
named for a person: the learner, their cohort, what it is (the activity's
title; for a check-in, "check-in on <goal>" with its status and note: goals
are never private) and how long it has waited in words ("3 days"). A shared
reflection's text is not in the queue: the facilitator reads it in the
learner's record, where the feedback box is. "Timely" is measured as the median
time to first feedback over the last 30 days.

Example::

    >>> words_for(timedelta(hours=5, minutes=40))
    '5 hours'
    >>> median_text([2.0, 14.0, 30.0])
    'Median time to first feedback over the last 30 days: 14 hours'
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html import escape

from ..catalog import Catalog
from ..store import Store, Waiting
from .figures import LISTED, NO_COHORT

MEDIAN_DAYS = 30  # the window of the "time to first feedback" figure


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def words_for(span: timedelta) -> str:
    """How long, in the words a person uses: "less than a minute", "12 minutes", "5 hours", "3 days" (rounded down)."""
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return "less than a minute"
    if seconds < 3600:
        return _plural(seconds // 60, "minute")
    if seconds < 86400:
        return _plural(seconds // 3600, "hour")
    return _plural(seconds // 86400, "day")


def hours_words(hours: float) -> str:
    """A number of hours, rounded, in words: "40 minutes", "14 hours", "3.5 days" (from 48 hours on)."""
    if hours < 1:
        return _plural(max(1, round(hours * 60)), "minute")
    if hours < 48:
        return _plural(round(hours), "hour")
    days = round(hours / 24, 1)
    return f"{days:g} days"


def median_text(hours: list[float], days: int = MEDIAN_DAYS) -> str:
    """The dashboard's "timely feedback" sentence, from the hours each item waited for its first feedback."""
    if not hours:
        return f"Median time to first feedback over the last {days} days: no feedback given in the last {days} days"
    return f"Median time to first feedback over the last {days} days: {hours_words(statistics.median(hours))}"


def median_hours(store: Store, now: datetime | None = None, days: int = MEDIAN_DAYS) -> list[float]:
    """Hours to first feedback of each reflection shared or check-in made in the last ``days`` days that has had feedback."""
    now = now or datetime.now(timezone.utc)
    return store.hours_to_first_feedback(now - timedelta(days=days))


@dataclass(frozen=True)
class QueueItem:
    """One thing waiting for feedback, in words a facilitator reads."""

    waiting: Waiting
    learner: str  # the learner's name, or their username when the roster gives none
    cohort: str
    what: str  # the activity's title, or "check-in on <goal title>"
    waited: str  # "3 days"

    @property
    def username(self) -> str:
        return self.waiting.username


@dataclass(frozen=True)
class Queue:
    items: tuple[QueueItem, ...]  # the first ``listed``, oldest first
    count: int  # everything waiting, however many are listed


def queue(store: Store, catalog: Catalog, now: datetime | None = None, listed: int | None = LISTED) -> Queue:
    """What waits for feedback, oldest first: the first ``listed`` (None: all) described, and how many in all."""
    now = now or datetime.now(timezone.utc)
    waiting = store.waiting_for_feedback()
    shown = waiting if listed is None else waiting[:listed]
    items = []
    for item in shown:
        title = catalog.title_of(item.activity_id)
        what = f"check-in on {title}" if item.kind == "check-in" else title
        items.append(QueueItem(item, item.name or item.username, item.cohort or NO_COHORT, what, words_for(now - item.since)))
    return Queue(tuple(items), len(waiting))


def count_text(count: int) -> str:
    if count == 0:
        return "Nothing waits for feedback: every shared reflection and goal check-in has a reply."
    return f"{_plural(count, 'item')} {'waits' if count == 1 else 'wait'} for feedback, oldest first."


def item_html(item: QueueItem) -> str:
    """One row of the queue as HTML: who, their cohort, what it is and how long it has waited (learner text escaped)."""
    what = escape(item.what) if item.waiting.kind == "check-in" else f"shared reflection: {escape(item.what)}"
    detail = ""
    check_in = item.waiting.check_in
    if check_in is not None:
        note = f": &ldquo;{escape(check_in.note)}&rdquo;" if check_in.note.strip() else " (no note)"
        detail = f'<span class="companion-queue-note">Status {escape(check_in.status)}{note}</span>'
    return (
        f'<p class="companion-queue-item"><strong>{escape(item.learner)}</strong> ({escape(item.cohort)}) &mdash; '
        f"{what}. <span class=\"companion-waited\">Waiting {escape(item.waited)}.</span>"
        f"{' ' + detail if detail else ''}</p>"
    )


def more_text(queue: Queue) -> str:
    more = queue.count - len(queue.items)
    return f'<p class="companion-queue-more">and {more:,} more (the oldest {len(queue.items)} are listed).</p>' if more > 0 else ""
