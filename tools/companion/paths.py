"""Where each page lives: the friendly addresses a learner sees, clicks and pastes into Canvas.

``companion serve`` answers ``/`` (the learner's home page), ``/session/<n>``
(session n's workbook, n its number in course.toml), ``/growth`` (the learner's
"My growth and goals") and ``/dashboard`` (the facilitator dashboard); ``/voila/render/<file>`` keeps working for old links.
The pages' own links are built here, so they keep the learner's personal token.

Under JupyterHub there are no friendly addresses: Voila runs inside each
learner's own server and renders the notebook files themselves, so there the
links are relative links to those files (``home.ipynb``, the session's released
notebook), which sit side by side.

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
GROWTH_PATH = "growth"
# The notebook files the server renders: the friendly paths name these (see companion.server).
HOME_NOTEBOOK = "home.ipynb"
DASHBOARD_NOTEBOOK = "dashboard.ipynb"
GROWTH_NOTEBOOK = "growth.ipynb"


def session_path(session: Session) -> str:
    """A session page's path under the server's base URL, e.g. ``session/2``."""
    return f"session/{session.number}"


def under_hub() -> bool:
    """True in a kernel that JupyterHub started: its Voila has no friendly addresses."""
    return bool(os.environ.get("JUPYTERHUB_USER"))


def _base_url() -> str:
    """The server's base URL as Voila tells a page's kernel (``/`` on a plain ``companion serve``)."""
    base = os.environ.get("VOILA_BASE_URL") or "/"
    return base if base.endswith("/") else base + "/"


def token_query(query: str | None) -> str:
    """``?learner=<token>`` when the page's ``query`` carries a personal token, else nothing."""
    token = identity.token_from_query(query)
    return f"?{identity.LINK_PARAMETER}={quote(token)}" if token else ""


def home_link(query: str | None = None) -> str:
    """The learner's home page, keeping their personal token from the page's ``query``."""
    if under_hub():
        return HOME_NOTEBOOK + token_query(query)
    return _base_url() + HOME_PATH + token_query(query)


def growth_link(query: str | None = None) -> str:
    """The learner's "My growth and goals" page (``/growth``), keeping their personal token from ``query``."""
    if under_hub():
        return GROWTH_NOTEBOOK + token_query(query)
    return _base_url() + GROWTH_PATH + token_query(query)


def session_link(session: Session, query: str | None = None) -> str:
    """A session's page, keeping the learner's personal token from the page's ``query``."""
    if under_hub():
        return quote(session.page) + token_query(query)
    return _base_url() + session_path(session) + token_query(query)
