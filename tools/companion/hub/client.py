"""A learner's page under JupyterHub: the store reached through the companion hub service.

:class:`RemoteStore` has the store's methods that pages use, with the same
arguments and answers, so the activities save and read one way wherever they
run. Each call is one HTTP request to the service with the learner server's own
hub token; the service decides whose data it is, so the ``username`` the
methods take is only checked to be that user's.

:func:`page_store` is what the pages call: the service when
``COMPANION_SERVICE_URL`` is set (under JupyterHub), otherwise the store itself.

Example::

    >>> from companion.hub.client import page_store
    >>> store = page_store(load_settings())   # in a page's first cell
    >>> store.responses(store.username)
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from ..errors import LinkError, StoreError, StoreUnavailable
from ..settings import Settings
from ..store import UNCHECKED, Response
from . import wire

TIMEOUT_SECONDS = 30
UNREACHABLE = (
    "The companion service could not be reached just now; nothing was changed. "
    "Your page keeps what you wrote and tries again. If this goes on, tell your facilitator."
)


def page_store(settings: Settings):
    """Where a page's work is kept: the hub service under JupyterHub, else the store at ``settings.db_url``."""
    if settings.service_url:
        return RemoteStore(settings.service_url, os.environ.get("JUPYTERHUB_API_TOKEN", ""))
    from ..store import open_store

    return open_store(settings.db_url)


class RemoteStore:
    """The store's page methods, answered by the companion hub service for this token's user.

    The constructor asks the service who the token belongs to, so a missing
    or expired token is found when the page opens (:class:`LinkError`, saying
    to sign in again through Canvas) rather than at the first save."""

    def __init__(self, url: str, token: str):
        self.url = url if url.endswith("/") else url + "/"
        self._token = token
        if not token:
            raise LinkError("This page was opened without a hub sign-in. Sign in again through Canvas (open the session from its link in Canvas).")
        self.username: str = self._call("whoami")["username"]

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r}, user {self.username!r})"

    def _call(self, method: str, **args: Any) -> Any:
        request = urllib.request.Request(
            f"{self.url}api/store/{method}",
            data=json.dumps(wire.encode(args)).encode("utf-8"),
            headers={"Authorization": f"token {self._token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
                return wire.load(answer.read())
        except urllib.error.HTTPError as error:
            words = _words(error)
            if error.code in (401, 403):
                raise LinkError(words)
            if error.code >= 500 and error.code != 501:  # the service is down, restarting or overloaded
                raise StoreUnavailable(words if error.code == 503 else UNREACHABLE)
            raise StoreError(words)
        except (urllib.error.URLError, OSError):
            raise StoreUnavailable(UNREACHABLE)

    def _mine(self, username: str) -> None:
        if username != self.username:
            raise StoreError(f"This page belongs to {self.username}; it cannot read or write another learner's work.")

    # The store's methods, as pages call them ------------------------------------

    def learner(self, username: str):
        self._mine(username)
        return self._call("learner")

    def record(self, username: str, session_id: str, activity_id: str, verb: str, value: Any = None) -> None:
        self._mine(username)
        self._call("record", session_id=session_id, activity_id=activity_id, verb=verb, value=value)

    def save(self, username: str, session_id: str, activity_id: str, verb: str, value: Any, *,
             done: bool | None = None, shared: bool | None = None, rule=None, expected: Any = UNCHECKED) -> Response:
        """As :meth:`companion.store.Store.save`; the service applies its own copy of the session's rule."""
        self._mine(username)
        args = dict(session_id=session_id, activity_id=activity_id, verb=verb, value=value, done=done, shared=shared)
        if expected is not UNCHECKED:
            args["expected"] = expected
        return self._call("save", **args)

    def response(self, username: str, activity_id: str):
        self._mine(username)
        return self._call("response", activity_id=activity_id)

    def responses(self, username: str, session_id: str | None = None) -> dict:
        self._mine(username)
        return self._call("responses", session_id=session_id)

    def feedback(self, username: str, activity_id: str, check_in: int | None = None) -> list:
        self._mine(username)
        return self._call("feedback", activity_id=activity_id, check_in=check_in)

    def feedback_received(self, username: str) -> list:
        self._mine(username)
        return self._call("feedback_received")

    def unseen_feedback(self, username: str) -> list:
        self._mine(username)
        return self._call("unseen_feedback")

    def mark_feedback_seen(self, username: str, at=None) -> None:
        self._mine(username)
        self._call("mark_feedback_seen", at=at)

    def check_ins(self, username: str, activity_id: str | None = None) -> list:
        self._mine(username)
        return self._call("check_ins", activity_id=activity_id)

    def add_check_in(self, username: str, session_id: str, activity_id: str, status: str, note: str = "", at=None):
        self._mine(username)
        return self._call("add_check_in", session_id=session_id, activity_id=activity_id, status=status, note=note)


def _words(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["error"])
    except Exception:
        return UNREACHABLE
