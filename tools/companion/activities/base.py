"""Activity: what every activity shares (saving, restoring, retrying, and the choice between two versions)."""

from __future__ import annotations

from html import escape
from typing import Any, Callable, ClassVar

from . import controls as widgets

from ..errors import CourseError, StoreUnavailable
from ..store import Response
from .page import AUTOSAVE_SECONDS, MAX_TEXT_CHARS, RETRY_SECONDS, _later, _saved_at, _status, local_time
from .workbook import Workbook

# What the status line says while the store cannot take a save; the page tries again by itself.
NOT_SAVED_YET = "Your work could not be saved just now; it is kept on this page and will be retried in {seconds} s."
RETRYING = "Trying again to save your work..."
NOT_LOADED = (
    "Your saved work could not be loaded just now, so this activity is not shown (nothing was changed). "
    "Reload the page in a minute."
)


class Activity(widgets.VBox):
    """What every activity shares: its id and title, the workbook, saving and restoring.

    Activities with text boxes name them in ``TEXT_FIELDS`` (the keys of their
    saved value). Their saves are checked against what this page last read or
    saved, so a save from a page that is behind (another tab, another device)
    never silently replaces newer text: the learner is asked which to keep, and
    both versions stay in the event log.

    A save the store cannot take just now (:class:`StoreUnavailable`: locked,
    stopped, the connection lost) is tried again after 1, 2, 4 ... 30 s
    (``RETRY_SECONDS``) until it succeeds, while the status line says so. A newer
    save (the learner typed on, clicked again) replaces the waiting one, so
    what is saved is always the latest. Refusals (too long, a NUL character)
    are said at once and not retried."""

    TEXT_FIELDS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, activity_id: str, *, title: str = "", competency: str | None = None, required: bool = True):
        super().__init__()
        self.add_class("companion-activity")
        self.add_class(f"companion-a-{activity_id}")
        self.workbook = Workbook.active()
        self.activity_id = activity_id
        self.title = title
        self.competency = competency
        self.required = required
        self.status = widgets.HTML(_status(""))
        self.conflict = widgets.VBox()
        self.conflict.add_class("companion-conflict-box")
        self._restoring = False
        self._cancel: Callable[[], None] | None = None
        self._cancel_retry: Callable[[], None] | None = None  # cancels the waiting retry of a save
        self._failures = 0  # saves in a row the store could not take: how long the next retry waits
        self._known: Any = None  # the stored value as this page last read or saved it

    def _text_box(self, field: str, description: str, **options) -> widgets.Textarea:
        """A text box for one of ``TEXT_FIELDS``, marked for the page script."""
        box = widgets.Textarea(description=description, **options)
        box.add_class("companion-text")
        box.add_class(f"companion-field-{field}")
        return box

    def _texts(self, value: Any) -> dict[str, str] | None:
        """The saved text of each text field (None for activities without text boxes)."""
        if not self.TEXT_FIELDS:
            return None
        value = value if isinstance(value, dict) else {}
        return {field: str(value.get(field) or "") for field in self.TEXT_FIELDS}

    def _show(self, *controls: widgets.Widget) -> None:
        """Put the controls on the page, filled with what the learner saved, once the learner is known.

        Called at the end of each activity's ``__init__``; in a preheated kernel the
        filling waits for the page's request (see :class:`Workbook`)."""
        self._controls = controls
        self.workbook.place(self)

    def _personalise(self) -> None:
        """Arrange the controls for this learner (their own order of options) before they are filled."""

    def _fill(self) -> None:
        """Show the controls with what the learner saved; nothing when the learner is not known."""
        controls = self._controls
        if not self.workbook.ready:
            self.children = ()
            return
        self._personalise()
        try:
            saved = self.workbook.store.response(self.workbook.username, self.activity_id)
            if saved is not None:
                self._known = saved.value
                self.restore(saved)
        except CourseError:
            # Controls shown empty could save over what the learner wrote before: show none.
            self.status.value = _status(NOT_LOADED, "error")
            self.children = (self.status,)
            return
        self.children = (*controls, self.conflict, self.status)
        if saved is None:
            self.status.value = _status("", saved=self._texts(None))
            return
        self.status.value = _saved_at(saved.updated_at, self._texts(saved.value))

    def restore(self, saved: Response) -> None:
        """Fill the controls from the saved response."""

    def save_now(self) -> None:
        """Save the current state (activities that autosave implement it)."""

    def _edited(self, _change=None) -> None:
        """A control changed: say so, and save once the learner pauses for AUTOSAVE_SECONDS."""
        if self._restoring:
            return
        self.status.value = _status("Unsaved changes...", "pending", saved=self._texts(self._known))
        self._cancel_autosave()
        self._stop_retrying()  # the autosave saves the newer text instead
        self._cancel = _later(AUTOSAVE_SECONDS, self.save_now)

    def _cancel_autosave(self) -> None:
        if self._cancel:
            self._cancel()
            self._cancel = None

    def _stop_retrying(self) -> None:
        if self._cancel_retry:
            self._cancel_retry()
            self._cancel_retry = None

    def _too_long(self, text: str, what: str) -> bool:
        """Whether ``text`` is over MAX_TEXT_CHARS; if so, say so (nothing is saved, the text stays in its box)."""
        if len(text) <= MAX_TEXT_CHARS:
            return False
        self._refuse(
            f"Not saved: {what} has {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}. "
            "Shorten it and it will save. Your text is still in the box."
        )
        return True

    def _refuse(self, message: str) -> None:
        """Say why nothing was saved; the learner's text stays in the box."""
        self.status.value = _status(message, "error", saved=self._texts(self._known))

    def _save(self, verb: str, value: Any, *, done: bool, shared: bool | None = None) -> Response | None:
        """Save ``value``; None when it was not saved (refused, a conflict, or waiting to be retried)."""
        if not self.workbook.ready:
            return None
        self._stop_retrying()  # this save is newer than the one waiting
        checked = {"expected": self._known} if self.TEXT_FIELDS else {}
        try:
            saved = self.workbook.store.save(
                self.workbook.username, self.workbook.session.id, self.activity_id, verb, value,
                done=done, shared=shared, rule=self.workbook.rule, **checked,
            )
        except StoreUnavailable:
            self._retry_later(lambda: self._save(verb, value, done=done, shared=shared))
            return None
        except CourseError as error:
            self._failures = 0
            self._refuse(f"Not saved: {error}")
            return None
        self._failures = 0
        if saved.conflict:
            self._ask_which(saved)
            return None
        self._stored(saved)
        return saved

    def _retry_later(self, again: Callable[[], Any]) -> None:
        """The store could not take a save just now: say so, and call ``again`` after the next wait of RETRY_SECONDS."""
        seconds = RETRY_SECONDS[min(self._failures, len(RETRY_SECONDS) - 1)]
        self._failures += 1
        self.status.value = _status(NOT_SAVED_YET.format(seconds=seconds), "retrying", saved=self._texts(self._known))

        def retry() -> None:
            self._cancel_retry = None
            self.status.value = _status(RETRYING, "retrying", saved=self._texts(self._known))
            again()

        self._cancel_retry = _later(seconds, retry)

    def _stored(self, saved: Response) -> None:
        """``saved`` is what the store holds now, and what this page's next save is checked against."""
        self._known = saved.value
        self.conflict.children = ()
        self.status.value = _saved_at(saved.updated_at, self._texts(saved.value))
        self.workbook.saved()

    # Two versions -------------------------------------------------------------

    def _ask_which(self, other: Response) -> None:
        """The text changed elsewhere since this page read it: show the other version, let the learner choose."""
        texts = self._texts(other.value) or {}
        shown = "".join(
            f'<div class="companion-other-text">{escape(text)}</div>' for text in texts.values() if text.strip()
        ) or '<p class="companion-other-text">(empty)</p>'
        keep = widgets.Button(description="Keep what I wrote here", button_style="primary")
        take = widgets.Button(description="Use the other version")
        keep.on_click(lambda _: self._keep_mine(other))
        take.on_click(lambda _: self._take_other(other))
        buttons = widgets.HBox([keep, take])
        buttons.add_class("companion-row")
        self.conflict.children = (
            widgets.HTML(
                '<div class="companion-conflict" role="alert"><p><strong>This was changed in another tab or on another '
                "device</strong> (saved at "
                f"{local_time(other.updated_at, 'time')}) after this page opened. Your text here is not lost: "
                "choose which version to keep. The other version:</p>"
                f"{shown}</div>"
            ),
            buttons,
        )
        self._refuse("Not saved yet: choose a version below.")

    def _keep_mine(self, other: Response) -> None:
        self._known = other.value  # this save replaces the version the learner has now seen
        self.conflict.children = ()
        self.save_now()

    def _take_other(self, other: Response) -> None:
        self._cancel_autosave()
        self._stop_retrying()
        self.restore(other)
        self._stored(other)
