"""The learner's home page: the six sessions, this learner's progress in each, and links.

The server renders it from a one-cell notebook (``home.ipynb``)::

    from companion.landing import Home
    Home()
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

import ipywidgets as widgets

from . import identity
from .activities import _query_string
from .catalog import load_catalog
from .errors import CourseError
from .progress import COMPLETE, learner_progress
from .settings import load_settings
from .store import open_store


class Home(widgets.VBox):
    """The list of sessions with the learner's status in each; links keep the learner's personal token."""

    def __init__(self):
        super().__init__()
        settings = load_settings()
        parts = [f"<h1>{escape(settings.title)}</h1>", f"<p>{escape(settings.description)}</p>"]
        try:
            query = _query_string()
            username = identity.current(settings.home, query).username
            store = open_store(settings.db_url)
            progress = learner_progress(store, load_catalog(settings), username)
        except CourseError as error:
            parts.append(
                '<div class="companion-error" role="alert"><h2>We could not tell who you are</h2>'
                f"<p>{escape(str(error))}</p></div>"
            )
        else:
            token = identity.token_from_query(query)
            suffix = f"?{identity.LINK_PARAMETER}={quote(token)}" if token else ""
            done = sum(p.status == COMPLETE for p in progress)
            parts.append(
                f'<p class="companion-signed-in">Signed in as <strong>{escape(username)}</strong>. '
                f"You have completed {done} of {len(progress)} sessions.</p>"
            )
            items = []
            for session, state in zip(settings.sessions, progress):
                items.append(
                    f'<li data-session="{escape(session.id)}"><a href="{escape(session.page + suffix)}">'
                    f"Session {session.number}: {escape(session.title)}</a><br>"
                    f'<span class="companion-state">{state.status.capitalize()}</span>'
                    f" ({state.done} of {state.required} required activities done)"
                    f"<br>{escape(session.summary)}</li>"
                )
            parts.append(f'<ul class="companion-sessions">{"".join(items)}</ul>')
        self.children = (widgets.HTML("".join(parts)),)
