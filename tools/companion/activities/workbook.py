"""The Workbook: the session a notebook belongs to, who the learner is, and where their work is saved."""

from __future__ import annotations

import logging
import os
import sys
from html import escape
from typing import Callable, ClassVar

from . import controls as widgets

from .. import identity, paths
from ..catalog import load_catalog
from ..errors import CourseError, StoreError
from ..identity import page_query as _query_string
from ..progress import session_rule
from ..settings import load_settings
from ..hub.client import page_store
from .page import PRIVACY_NOTE, signed_in_html


WIDGET_MESSAGES = frozenset({"comm_open", "comm_msg", "comm_close"})  # what a page sends its kernel after it has opened


def keep_errors_off_the_page() -> None:
    """Send the kernel's errors and log records to the server log, never to the page.

    A page's kernel publishes on its output channel, which every browser on
    the kernel's websocket receives: ipywidgets shows an error raised while
    handling a widget message (a state of the wrong type, an unknown key, a
    callback that fails) as a full traceback, and log records and warnings
    with no handler of their own go to ``sys.stderr``, which the kernel also
    forwards. Either would show server paths to anyone who sends a malformed
    message. Here such errors are written, traceback and all, to the kernel's
    real stderr (the server log) and the page is told nothing; a message
    that fails to apply changes nothing, and the kernel keeps serving the page. Errors while the
    notebook's cells run are left to Voila, which hides their tracebacks
    itself. Called once per kernel, when the activities are first imported;
    outside a kernel it does nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None or getattr(shell, "_companion_quiet", False):
        return
    # The kernel forwards what is written on file descriptor 2 to the page; it keeps a copy of the real one.
    real_fd = getattr(sys.stderr, "_original_stdstream_copy", None)
    server_log = os.fdopen(os.dup(real_fd), "w", buffering=1, encoding="utf-8", errors="replace") if real_fd is not None else sys.__stderr__
    handler = logging.StreamHandler(server_log)
    handler.setFormatter(logging.Formatter("[companion kernel %(process)d] %(levelname)s %(name)s | %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.captureWarnings(True)
    log = logging.getLogger("companion.page")
    shown = shell.showtraceback

    def showtraceback(exc_tuple=None, *args, **kwargs):
        parent = kernel.get_parent() or {}
        message = parent.get("header", {}).get("msg_type")
        if message not in WIDGET_MESSAGES:
            return shown(exc_tuple, *args, **kwargs)
        content = parent.get("content")
        comm = content.get("comm_id") if isinstance(content, dict) else None
        log.error("A %s from the page (comm %s) failed; the page was not told. The error:", message, comm, exc_info=exc_tuple or sys.exc_info())

    shell.showtraceback = showtraceback
    shell._companion_quiet = True


keep_errors_off_the_page()


def waits_for_its_request() -> bool:
    """True in a preheated kernel that no page has taken yet: it does not know its learner."""
    return os.environ.get("VOILA_PREHEAT") == "True"


class Workbook(widgets.VBox):
    """The session a notebook belongs to: who the learner is and where their work is saved.

    Call it once, in the notebook's first code cell, before any activity::

        from companion.activities import *
        Workbook("s1")

    It shows who is signed in and a link back to all sessions, or, when the
    learner's link is missing, altered or expired, a message saying what to do
    (and then nothing on the page records anything). Its ``data-learner`` and
    ``data-session`` tell the page script (templates/companion/companion.js)
    whose unsaved text it keeps in the browser.

    In a preheated kernel, which runs the notebook before any learner asks for
    the page, the Workbook *opens* (learns who the learner is) only once the
    session's last activity is built: every activity before it is built empty,
    and :meth:`identify` fills them with the learner's saved work and their own
    order of options when the page's request arrives. So the page's request
    waits for that filling only, not for the notebook's cells. Anywhere else
    it opens at once. A cell that fails before the last activity opens it too.
    """

    _active: ClassVar["Workbook | None"] = None

    def __init__(self, session_id: str):
        super().__init__()
        identity.end_quietly_until_a_page_arrives()
        self.add_class("companion-workbook")
        self.settings = load_settings()
        self.session = self.settings.session(session_id)
        self.username: str | None = None
        self.store = None  # set once the learner is known: until then nothing on the page saves
        self.rule = None  # what completes this session: every save keeps the learner's progress by it
        self.query = ""
        self.opened = False
        self._listeners: list[Callable[[], None]] = []
        self._waiting: list = []  # activities built before the learner was known, filled by identify()
        self._store = None
        Workbook._active = self
        try:
            self._store = page_store(self.settings)
            catalog = load_catalog(self.settings)
            self.rule = session_rule(catalog, session_id)
        except CourseError as error:
            self.opened = True
            self.children = (widgets.HTML(self._failure(error)),)
            return
        declared = catalog.activities(session_id)
        self._last = declared[-1].id if declared else None
        if self._last is not None and waits_for_its_request():
            _open_if_a_cell_fails(self)
        else:
            self.identify()

    def identify(self) -> None:
        """Learn who the learner is (a preheated kernel waits here for its page's request), then fill every
        activity built so far with what they saved. Opening again does nothing."""
        if self.opened:
            return
        self.opened = True
        try:
            self.query = _query_string()
            who = identity.current(self.settings.home, self.query)
            self._store.record(who.username, self.session.id, self.session.id, "experienced")
            self.username, self.store = who.username, self._store
            banner = (
                f'<div class="companion-page" data-learner="{escape(self.username)}" data-session="{escape(self.session.id)}">'
                f'<p class="companion-signed-in">{signed_in_html(self.store, who)} '
                f"Your work saves as you go. {escape(PRIVACY_NOTE)} "
                f'<a href="{escape(self.home_link)}">Back to all sessions</a></p></div>'
            )
        except CourseError as error:
            self.username = self.store = None
            banner = self._failure(error)
        self.children = (widgets.HTML(banner),)
        waiting, self._waiting = self._waiting, []
        for activity in waiting:
            activity._fill()

    def place(self, activity) -> None:
        """Fill ``activity`` now if the learner is known; else when the Workbook opens (at the last activity)."""
        if self.opened:
            activity._fill()
            return
        activity.children = ()
        self._waiting.append(activity)
        if activity.activity_id == self._last:
            self.identify()

    @staticmethod
    def _failure(error: CourseError) -> str:
        heading = "Your workbook could not be opened just now" if isinstance(error, StoreError) else "We could not tell who you are"
        return f'<div class="companion-error" role="alert"><h2>{heading}</h2><p>{escape(str(error))}</p></div>'

    @property
    def ready(self) -> bool:
        return self.store is not None

    @property
    def home_link(self) -> str:
        return paths.home_link(self.query)

    def next_session_link(self) -> str:
        """A link to the session after this one, or home after the last."""
        sessions = self.settings.sessions
        later = [s for s in sessions if s.number > self.session.number]
        if not later:
            return f'<a class="companion-next" href="{escape(self.home_link)}">Back to all sessions</a>'
        following = min(later, key=lambda s: s.number)
        return (
            f'<a class="companion-next" href="{escape(paths.session_link(following, self.query))}">'
            f"Continue to Session {following.number}: {escape(following.title)}</a>"
        )

    @classmethod
    def active(cls) -> "Workbook":
        if cls._active is None:
            raise CourseError('Call Workbook("<session id>") in the first code cell, before any activity.')
        return cls._active

    def on_save(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def saved(self) -> None:
        for listener in self._listeners:
            listener()


def _open_if_a_cell_fails(workbook: Workbook) -> None:
    """Open ``workbook`` after the first cell that fails before its last activity is built, so the
    activities built so far are filled even when the rest of the notebook does not run."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def after(result) -> None:
        if not workbook.opened and (result.error_in_exec is not None or result.error_before_exec is not None):
            workbook.identify()
        if workbook.opened:
            shell.events.unregister("post_run_cell", after)

    shell.events.register("post_run_cell", after)
