"""The hub service's store API: what a learner's page may ask of the store, for its own user only.

``POST <service prefix>api/store/<method>`` with a JSON object of arguments and
``Authorization: token <the learner's hub token>`` (their server's
``JUPYTERHUB_API_TOKEN``). The user is the token's owner, whatever the request
says: there is no way to name another learner. Answers are JSON
(:mod:`companion.hub.wire`); a refused request is a 4xx with ``{"error": ...}``
in words a learner can read, and changes nothing.

The methods are the ones a page uses (:data:`METHODS`); a save's completion
rule is the service's own, from its copy of the course, not the page's.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Callable

from tornado import web

from ..errors import CourseError, StoreUnavailable
from ..store import UNCHECKED
from . import wire

SIGN_IN_AGAIN = "Your sign-in has expired or is not valid here. Sign in again through Canvas (open the session from its link in Canvas). Nothing was saved."
MAX_BODY = 2_000_000  # bytes: above the store's largest answer, with room for JSON's escapes
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")  # session and activity ids, goal statuses


class BadRequest(Exception):
    """A request the service will not act on; its words go back to the page."""


def _text(args: dict, key: str, *, optional: bool = False, pattern: re.Pattern | None = NAME, limit: int = 64) -> str | None:
    value = args.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit or (pattern is not None and not pattern.match(value)):
        raise BadRequest(f"'{key}' must be {'an id' if pattern else 'text'} of at most {limit} characters.")
    return value


def _flag(args: dict, key: str) -> bool | None:
    value = args.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"'{key}' must be true or false.")
    return value


def _save(service, user: str, args: dict) -> Any:
    session_id = _text(args, "session_id")
    rule = service.rule(session_id)
    expected = args["expected"] if "expected" in args else UNCHECKED
    return service.store.save(
        user, session_id, _text(args, "activity_id"), _text(args, "verb"), args.get("value"),
        done=_flag(args, "done"), shared=_flag(args, "shared"), rule=rule, expected=expected,
    )


def _record(service, user: str, args: dict) -> None:
    session_id = _text(args, "session_id")
    service.rule(session_id)  # an unknown session is refused
    service.store.record(user, session_id, _text(args, "activity_id"), _text(args, "verb"), args.get("value"))


def _check_in_id(args: dict) -> int | None:
    value = args.get("check_in")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise BadRequest("'check_in' must be a number.")
    return value


def _moment(args: dict):
    value = args.get("at")
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise BadRequest("'at' must be a date and time with its time zone (ISO 8601).")
    return moment


# method -> what it does for ``user`` with the request's arguments
METHODS: dict[str, Callable[[Any, str, dict], Any]] = {
    "whoami": lambda service, user, args: {"username": user},
    "learner": lambda service, user, args: service.store.learner(user),
    "record": _record,
    "save": _save,
    "response": lambda service, user, args: service.store.response(user, _text(args, "activity_id")),
    "responses": lambda service, user, args: service.store.responses(user, _text(args, "session_id", optional=True)),
    "feedback": lambda service, user, args: service.store.feedback(user, _text(args, "activity_id"), check_in=_check_in_id(args)),
    "feedback_received": lambda service, user, args: service.store.feedback_received(user),
    "unseen_feedback": lambda service, user, args: service.store.unseen_feedback(user),
    "mark_feedback_seen": lambda service, user, args: service.store.mark_feedback_seen(user, at=_moment(args)),
    "check_ins": lambda service, user, args: service.store.check_ins(user, _text(args, "activity_id", optional=True)),
    "add_check_in": lambda service, user, args: service.store.add_check_in(
        user, _text(args, "session_id"), _text(args, "activity_id"), _text(args, "status"),
        _text(args, "note", pattern=None, limit=20_000) or "",
    ),
}


def store_api_handler():
    """The tornado handler class (made on first use: it needs JupyterHub's auth classes)."""
    from jupyterhub.services.auth import HubAuthenticated

    class StoreAPI(HubAuthenticated, web.RequestHandler):
        """``POST api/store/<method>``: one store call for the token's owner."""

        def initialize(self, service):
            self.service = service
            self.hub_auth = service.hub_auth

        def check_xsrf_cookie(self):
            """Token-authenticated JSON from a kernel: no cookies, so no cross-site forgery to guard against."""

        def get_login_url(self):
            raise web.HTTPError(403)

        def _answer(self, status: int, body: Any) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps(body) if status >= 400 else wire.dump(body))

        def write_error(self, status_code: int, **kwargs) -> None:
            words = SIGN_IN_AGAIN if status_code in (401, 403) else "The companion service could not answer this request."
            self._answer(status_code, {"error": words})

        async def post(self, method: str):
            user = await self.hub_auth.get_user(self, sync=False)
            # A token without the service's scope (one made for something else) is refused like none at all.
            if not user or not user.get("name") or not self.hub_auth.check_scopes(self.hub_auth.access_scopes, user):
                self._answer(403, {"error": SIGN_IN_AGAIN})
                return
            call = METHODS.get(method)
            if call is None:
                self._answer(404, {"error": f"There is no store method '{method}' here."})
                return
            if len(self.request.body) > MAX_BODY:
                self._answer(413, {"error": "This is too large to save. Shorten it and save again."})
                return
            try:
                args = json.loads(self.request.body or b"{}")
                if not isinstance(args, dict):
                    raise BadRequest("The request must be a JSON object of arguments.")
                answer = call(self.service, user["name"], args)
            except (ValueError, BadRequest) as error:  # json's errors are ValueErrors
                self._answer(400, {"error": str(error) if isinstance(error, BadRequest) else "The request is not JSON."})
                return
            except StoreUnavailable as error:
                self._answer(503, {"error": str(error), "retry": True})
                return
            except CourseError as error:
                self._answer(400, {"error": str(error)})  # refused (too large, a NUL, an unknown session): nothing changed
                return
            self._answer(200, answer)

    return StoreAPI
