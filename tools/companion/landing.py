"""The learner's home page: the sessions, this learner's progress in each, and where to go next.

The server renders it from a one-cell notebook (``home.ipynb``, at ``/``)::

    from companion.landing import Home
    Home()

It says who is signed in (their name from the roster when there is one), how
many sessions they have completed, offers a "Continue" (or "Start") link to the
first session not yet complete, links to "My growth and goals"
(:mod:`companion.growth`), saying when new feedback waits there, and lists
every session with its status in words. Its links keep the learner's personal token (:mod:`companion.paths`).
Dates are written in UTC and marked up as ``<time class="companion-local">``
(:func:`companion.activities.local_time`), which the page script shows in the
learner's own time zone.
"""

from __future__ import annotations

from html import escape

import ipywidgets as widgets

from . import identity, paths
from .activities import _query_string, local_time, signed_in_html
from .activities.page import PRIVACY_NOTE
from .catalog import load_catalog
from .errors import CourseError
from .growth import new_feedback_summary
from .progress import COMPLETE, NOT_STARTED, SessionProgress, learner_progress
from .settings import Session, load_settings
from .hub.client import page_store


def status_html(state: SessionProgress) -> str:
    """A session's status in words, e.g. "In progress: 3 of 7 required activities done"."""
    if state.status == COMPLETE:
        return (
            f'<span class="companion-state">Completed on {local_time(state.completed_at, "date")}</span>'
            f" ({state.done} of {state.required} required activities done)"
        )
    if state.status == NOT_STARTED:
        return '<span class="companion-state">Not started</span>'
    return f'<span class="companion-state">In progress: {state.done} of {state.required} required activities done</span>'


def next_step_html(sessions: tuple[Session, ...], progress: list[SessionProgress], query: str) -> str:
    """The "Continue" (or "Start") link to the first session not complete; when every one is, says so."""
    for session, state in zip(sessions, progress):
        if state.status != COMPLETE:
            verb = "Start" if all(p.status == NOT_STARTED for p in progress) else "Continue"
            return (
                f'<p class="companion-next"><a class="companion-continue" href="{escape(paths.session_link(session, query))}">'
                f"{verb}: Session {session.number} — {escape(session.title)}</a></p>"
            )
    return '<p class="companion-next companion-all-done">You have completed every session. Well done.</p>'


def growth_html(store, catalog, username: str, query: str) -> str:
    """The link to "My growth and goals", and above it "New feedback on 2 reflections" when some is new."""
    link = escape(paths.growth_link(query))
    summary = new_feedback_summary(store, catalog, username)
    new = (
        f'<p class="companion-new-feedback" role="status"><a href="{link}">{escape(summary)}</a></p>' if summary else ""
    )
    return (
        f'{new}<p class="companion-growth-line"><a class="companion-growth-link" href="{link}">My growth and goals</a>: '
        "your self-ratings, your goals and their check-ins, feedback from your facilitator, and your journal.</p>"
    )


class Home(widgets.VBox):
    """The list of sessions with the learner's status in each; links keep the learner's personal token."""

    def __init__(self):
        super().__init__()
        self.add_class("companion-home")
        settings = load_settings()
        parts = [f"<h1>{escape(settings.title)}</h1>"]
        try:
            # What does not depend on the learner happens before a preheated kernel waits for its request.
            store = page_store(settings)
            catalog = load_catalog(settings)
            query = _query_string()
            who = identity.current(settings.home, query)
            progress = learner_progress(store, catalog, who.username)
        except CourseError as error:
            parts.append(f"<p>{escape(settings.description)}</p>")
            parts.append(
                '<div class="companion-error" role="alert"><h2>We could not tell who you are</h2>'
                f"<p>{escape(str(error))}</p></div>"
            )
        else:
            done = sum(p.status == COMPLETE for p in progress)
            parts.append(
                f'<p class="companion-signed-in">{signed_in_html(store, who)} '
                f"You have completed {done} of {len(progress)} sessions.</p>"
            )
            parts.append(next_step_html(settings.sessions, progress, query))
            parts.append(growth_html(store, catalog, who.username, query))
            parts.append(f"<p>{escape(settings.description)}</p>")
            parts.append(f'<p class="companion-note companion-privacy">{escape(PRIVACY_NOTE)}</p>')
            items = []
            for session, state in zip(settings.sessions, progress):
                items.append(
                    f'<li data-session="{escape(session.id)}">'
                    f'<a href="{escape(paths.session_link(session, query))}">Session {session.number}: {escape(session.title)}</a>'
                    f'<br><span class="companion-session-status">{status_html(state)}</span>'
                    f'<br><span class="companion-summary">{escape(session.summary)}</span></li>'
                )
            parts.append(f'<h2 class="companion-sessions-heading">My sessions</h2><ul class="companion-sessions">{"".join(items)}</ul>')
        self.children = (widgets.HTML("".join(parts)),)
