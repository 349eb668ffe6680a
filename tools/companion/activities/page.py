"""What every activity's page parts share: the status line and its fingerprints, times, prompts, timers."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from datetime import datetime, timezone
from html import escape
from typing import Callable, Mapping, Sequence

from . import controls as widgets

from .. import identity

MAX_TEXT_CHARS = 20_000
# Who reads a private reflection, said the same way on every page (the home page, each session, growth).
PRIVACY_NOTE = (
    'Reflections are private: only you read them, unless you tick "Share with my facilitator" under one. '
    "They are kept on the agency's server, whose administrator can export private reflections only by asking for them on purpose."
)
AUTOSAVE_SECONDS = 1.0
RETRY_SECONDS = (1, 2, 4, 8, 16, 30)  # waits before each new try of a save the store could not take; then every 30 s


def local_time(moment: datetime, form: str = "datetime") -> str:
    """A ``<time>`` the page script shows in the learner's own time zone (``form``: time, date or datetime).

    The text inside, in UTC, is what a browser without the script shows."""
    moment = moment.astimezone(timezone.utc)
    fallback = {"time": "%H:%M UTC on %d %b %Y", "date": "%d %b %Y", "datetime": "%d %b %Y, %H:%M UTC"}[form]
    return (
        f'<time class="companion-local" datetime="{moment.isoformat(timespec="seconds")}" '
        f'data-format="{form}">{moment.strftime(fallback)}</time>'
    )


def fingerprint(text: str) -> str:
    """FNV-1a (32 bits) over the text's UTF-16 code units, in hex: the page script computes the same.

    A status carries the fingerprint of each saved text, so the browser knows
    which of the learner's keystrokes the server has confirmed."""
    value = 0x811C9DC5
    for unit in memoryview(text.encode("utf-16-le")).cast("H"):
        value = ((value ^ unit) * 0x01000193) & 0xFFFFFFFF
    return f"{value:08x}"


def _status(text: str, kind: str = "ok", saved: Mapping[str, str] | None = None, html: str = "") -> str:
    """The activity's status line; ``saved`` (field -> saved text) tells the page script what the server holds.

    ``kind``: ok, pending, error, or retrying (a pending save the page will try again by itself)."""
    marks = " ".join(f"{field}:{fingerprint(value)}" for field, value in (saved or {}).items())
    attribute = f' data-saved="{marks}"' if saved is not None else ""
    classes = "companion-pending companion-retrying" if kind == "retrying" else f"companion-{kind}"
    return (
        f'<span class="companion-status {classes}" role="status" aria-live="polite"{attribute}>'
        f"{escape(text)}{html}</span>"
    )


def signed_in_html(store, who: identity.Identity) -> str:
    """"Signed in as <name>." with the roster's name, or "Working on this computer." for a system account.

    The rule is :func:`companion.identity.display_name`; the home page and every session page say it the same way."""
    learner = store.learner(who.username)
    name = identity.display_name(who, learner.name if learner else "")
    return f"Signed in as <strong>{escape(name)}</strong>." if name else "Working on this computer."


def _saved_at(moment: datetime, saved: Mapping[str, str] | None = None) -> str:
    return _status("Saved at ", saved=saved, html=local_time(moment, "time"))


def _paragraph(text: str, cls: str = "companion-prompt") -> widgets.HTML:
    return widgets.HTML(f'<p class="{cls}">{escape(text)}</p>')


def _later(seconds: float, callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` after ``seconds`` on the kernel's loop; returns a cancel function."""
    try:
        handle = asyncio.get_running_loop().call_later(seconds, callback)
        return handle.cancel
    except RuntimeError:
        timer = threading.Timer(seconds, callback)
        timer.daemon = True
        timer.start()
        return timer.cancel


def shuffled(items: Sequence[str], learner: str, key: str) -> list[str]:
    """``items`` in an order fixed by the learner and ``key``: each learner has their own, the same on every visit.

    Options shown this way cannot be guessed from their position, and answers
    are recorded by their text, so grading never depends on the order.

    >>> shuffled(["a", "b", "c"], "ana", "s1-q") == shuffled(["a", "b", "c"], "ana", "s1-q")
    True
    """
    order = list(items)
    random.Random(hashlib.sha256(f"{learner}\0{key}".encode("utf-8")).digest()).shuffle(order)
    return order
