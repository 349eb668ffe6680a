"""Who the learner is.

Three ways, chosen by the environment the kernel runs in:

- **hub**: under JupyterHub the learner is ``JUPYTERHUB_USER``.
- **link**: on a shared Voila server (``COMPANION_IDENTITY=link``) each learner
  opens a personal signed link ``...?learner=<token>``. The token is
  ``<username>.<expiry>.<signature>``, an HMAC-SHA256 over the username and
  expiry with the server's secret, verified in the kernel. A missing, altered or
  expired token raises :class:`LinkError` with a message for the learner.
- **local** (the default): the learner is ``COMPANION_LEARNER`` or the login name.

Example::

    >>> from companion.identity import sign, verify
    >>> token = sign("ana", secret=b"k" * 32, days=30)
    >>> verify(token, secret=b"k" * 32)
    'ana'
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode

from .errors import LinkError

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
LINK_PARAMETER = "learner"
FACILITATOR_PARAMETER = "facilitator"

HUB_SERVICE = "hub-service"  # the mode of the companion hub service (companion.hub.service): facilitators only


@dataclass(frozen=True)
class Identity:
    username: str
    mode: str  # "local", "link" or "hub"


def valid_username(username: str) -> bool:
    return bool(USERNAME.match(username or ""))


def server_secret(home: Path) -> bytes:
    """The server's signing secret: ``COMPANION_SECRET``, or ``<home>/secret.key`` (made on first use)."""
    if os.environ.get("COMPANION_SECRET"):
        return os.environ["COMPANION_SECRET"].encode("utf-8")
    path = home / "secret.key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode("utf-8")


def _signature(message: str, secret: bytes) -> str:
    digest = hmac.new(secret, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def sign(username: str, secret: bytes, days: float = 120, now: float | None = None, purpose: str = "learner") -> str:
    """A token that proves ``username`` until ``days`` from now.

    ``purpose`` separates learner links from facilitator keys: one never opens the other."""
    if not valid_username(username):
        raise LinkError(f"'{username}' is not a valid username; use letters, digits, '.', '_', '@' or '-'.")
    expires = int((now or time.time()) + days * 86400)
    body = f"{username}.{expires}"
    return f"{body}.{_signature(purpose + ':' + body, secret)}"


def verify(token: str | None, secret: bytes, now: float | None = None, purpose: str = "learner") -> str:
    """The username a token proves; :class:`LinkError` says why it proves nothing."""
    if not token:
        raise LinkError(
            "This page needs your personal link. Open the session from the link in your Canvas "
            "course or the email from your facilitator; nothing has been saved."
        )
    body, _, signature = token.rpartition(".")
    username, _, expires = body.rpartition(".")
    if not (username and expires.isdigit() and signature) or not hmac.compare_digest(
        _signature(purpose + ":" + body, secret), signature
    ):
        raise LinkError(
            "This link is not valid: it may have been copied incompletely or changed. Open the "
            "session again from your Canvas course, or ask your facilitator for a new link; "
            "nothing has been saved."
        )
    if int(expires) < (now or time.time()):
        raise LinkError(
            f"This link expired on {time.strftime('%d %B %Y', time.gmtime(int(expires)))}. Ask your "
            "facilitator for a new personal link; nothing has been saved."
        )
    return username


def token_from_query(query_string: str | None, parameter: str = LINK_PARAMETER) -> str | None:
    values = parse_qs(query_string or "").get(parameter)
    return values[0] if values else None


def current(home: Path, query_string: str | None = None) -> Identity:
    """The learner of this kernel, by the mode its environment names."""
    if os.environ.get("JUPYTERHUB_USER"):
        return Identity(os.environ["JUPYTERHUB_USER"], "hub")
    mode = os.environ.get("COMPANION_IDENTITY", "local")
    if mode == "link":
        return Identity(verify(token_from_query(query_string), server_secret(home)), "link")
    username = os.environ.get("COMPANION_LEARNER") or getpass.getuser()
    if not valid_username(username):
        raise LinkError(f"The learner name '{username}' is not usable; set COMPANION_LEARNER to letters and digits.")
    return Identity(username, "local")


_page_arrived = False  # in a kernel: whether a page's request has reached it (see end_quietly_until_a_page_arrives)


def page_query() -> str:
    """The page's query string (where a personal link's token is); a preheated kernel waits for its request first."""
    global _page_arrived
    if os.environ.get("VOILA_KERNEL_ID"):
        from voila.utils import wait_for_request

        end_quietly_until_a_page_arrives()
        wait_for_request()
        # A kept-ready kernel's wait ends with the request's variables set, or without them when the server's
        # connection drops; any other kernel was started for a request.
        _page_arrived = os.environ.get("VOILA_PREHEAT") != "True" or "SCRIPT_NAME" in os.environ
    else:
        _page_arrived = True
    return os.environ.get("QUERY_STRING", "")


def end_quietly_until_a_page_arrives() -> None:
    """In a kernel: until a page's request reaches it, a shutdown ends its process at once.

    A kept-ready kernel runs its cells before any learner asks, then waits
    inside a cell for its page. Told to shut down meanwhile (the server
    stopping, its pool refreshed), ipykernel's own shutdown stops the thread
    that carries the kernel's replies while that cell still runs; the cell,
    ending as the server's connection drops, answered on a closed socket, and
    the kernel printed a ZMQError traceback into the server's log. No page has
    the kernel yet, so there is nothing to finish: it answers the shutdown and
    ends there, before anything is stopped. Once a page has it, a shutdown goes
    as ipykernel's does, so a save being made completes. Called when a forked
    kernel starts (:mod:`companion.forking`), by a session's first cell
    (:class:`~companion.activities.Workbook`) and by :func:`page_query`;
    installing it twice is harmless."""
    kernel = getattr(getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)(), "kernel", None)
    handlers = getattr(kernel, "control_handlers", None)
    shutdown = handlers.get("shutdown_request") if isinstance(handlers, dict) else None
    if shutdown is None or getattr(shutdown, "ends_quietly", False):
        return

    import zmq

    async def shut_down(stream, ident, parent):
        if _page_arrived:
            return await shutdown(stream, ident, parent)
        restart = bool(parent.get("content", {}).get("restart", False))
        kernel.session.send(stream, "shutdown_reply", {"status": "ok", "restart": restart}, parent, ident=ident)
        stream.flush(zmq.POLLOUT)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    shut_down.ends_quietly = True
    handlers["shutdown_request"] = shut_down


# Accounts that run services, not people: shown as "this computer", never as if someone signed in.
FIRST_PERSON_UID = 1000


def is_system_account(username: str) -> bool:
    """True for ``root`` and other local service accounts (uid below 1000)."""
    import pwd

    if username == "root":
        return True
    try:
        return pwd.getpwnam(username).pw_uid < FIRST_PERSON_UID
    except KeyError:
        return False


def display_name(who: Identity, roster_name: str = "") -> str | None:
    """The name a page shows for the learner: the roster's, else the login; None for a system account.

    Example::

        >>> display_name(Identity("ana", "link"), "Ana Lopez")
        'Ana Lopez'
        >>> display_name(Identity("root", "local")) is None
        True
    """
    if roster_name.strip():
        return roster_name.strip()
    if who.mode == "local" and is_system_account(who.username):
        return None
    return who.username


def personal_link(base_url: str, page: str, username: str, secret: bytes, days: float) -> str:
    """The signed URL of ``page`` (a path under the server, e.g. ``voila/render/home.ipynb``) for one learner."""
    query = urlencode({LINK_PARAMETER: sign(username, secret, days)})
    return f"{base_url.rstrip('/')}/{quote(page.lstrip('/'))}?{query}"
