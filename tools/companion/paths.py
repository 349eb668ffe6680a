"""Where each page lives: the friendly addresses a learner sees, clicks and pastes into Canvas.

``companion serve`` answers ``/`` (the learner's home page), ``/session/<n>``
(session n's workbook) and ``/dashboard`` (the facilitator dashboard). The
pages' own links are built here, so they keep the learner's personal token.

Example::

    >>> from companion.paths import session_link
    >>> session_link(settings.session("s2"), "learner=ana.1790000000.sig")
    '/session/2?learner=ana.1790000000.sig'
"""

from __future__ import annotations

import os
from urllib.parse import quote

from . import identity
from .settings import Session

HOME_PATH = ""
DASHBOARD_PATH = "dashboard"


def session_path(session: Session) -> str:
    """A session page's path under the server's base URL, e.g. ``session/2``."""
    return f"session/{session.number}"


def _base_url() -> str:
    """The server's base URL as Voila tells a page's kernel (``/`` on a plain ``companion serve``)."""
    base = os.environ.get("VOILA_BASE_URL") or "/"
    return base if base.endswith("/") else base + "/"


def _with_token(path: str, query: str | None) -> str:
    token = identity.token_from_query(query)
    return _base_url() + path + (f"?{identity.LINK_PARAMETER}={quote(token)}" if token else "")


def home_link(query: str | None = None) -> str:
    """The learner's home page, keeping their personal token from the page's ``query``."""
    return _with_token(HOME_PATH, query)


def session_link(session: Session, query: str | None = None) -> str:
    """A session's page, keeping the learner's personal token from the page's ``query``."""
    return _with_token(session_path(session), query)
