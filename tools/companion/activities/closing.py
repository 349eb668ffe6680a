"""The end of a session: what is still to do, two short questions, and completing it."""

from __future__ import annotations

from html import escape

from . import controls as widgets

from ..catalog import load_catalog
from ..store import Response
from .base import Activity
from .page import MAX_TEXT_CHARS

USEFULNESS = ("Not useful", "Somewhat useful", "Useful", "Very useful")


class SessionComplete(Activity):
    """The end of a session: what is still required, two short questions, and the button that completes it.

    The session is marked complete only when every required activity is done.
    The two answers save as the learner gives them; once the session is
    complete they are shown as given, with a link to the next session.

    Example::

        SessionComplete("s1-complete", title="Finish the session")
    """

    TEXT_FIELDS = ("improve",)

    def __init__(self, activity_id: str, *, title: str = "", required: bool = True):
        super().__init__(activity_id, title=title, required=required)
        session = self.workbook.session
        self.required_activities = load_catalog(self.workbook.settings).required(session.id)
        self.todo = widgets.HTML("")
        self.useful = widgets.RadioButtons(options=USEFULNESS, value=None, description="How useful was this session for your work?")
        self.improve = self._text_box("improve", "What is one thing that would make it more useful? (optional)")
        self.complete = widgets.Button(description=f"Mark session {session.number} complete", button_style="success")
        self.complete.on_click(lambda _: self.submit())
        self.completed = False
        self.workbook.on_save(self.refresh)
        self.useful.observe(self._edited, "value")
        self.improve.observe(self._edited, "value")
        self._show(widgets.HTML("<h2>Finish this session</h2>"), self.todo, self.useful, self.improve, self.complete)

    def _fill(self) -> None:
        super()._fill()
        self.refresh()  # what this learner still has to do

    def remaining(self) -> list:
        if not self.workbook.ready:
            return self.required_activities
        saved = self.workbook.store.responses(self.workbook.username, self.workbook.session.id)
        return [a for a in self.required_activities if not (a.id in saved and saved[a.id].done)]

    def restore(self, saved: Response) -> None:
        value = saved.value or {}
        self._restoring = True
        self.completed = saved.done
        self.useful.value = value["useful"] if value.get("useful") in USEFULNESS else None
        self.improve.value = value.get("improve") or ""
        self._restoring = False

    def _stored(self, saved: Response) -> None:
        # A "completed" save that went through on a retry completes the session too, so a later
        # autosave of the answers (done=False) cannot undo it.
        super()._stored(saved)
        if saved.done and not self.completed:
            self.completed = True
            self.refresh()

    def refresh(self) -> None:
        """Show what is still to do, or that the session is complete and where to go next."""
        if self.completed:
            self.todo.value = (
                f'<div class="companion-complete" role="status"><p><strong>Session {self.workbook.session.number} is complete.</strong> '
                "Thank you. Everything you wrote stays here for you.</p>"
                f"<p>{self.workbook.next_session_link()}</p></div>"
            )
            for control in (self.complete, self.useful, self.improve):
                control.disabled = True
            return
        left = self.remaining()
        self.complete.disabled = bool(left)
        if left:
            items = "".join(f"<li>{escape(a.title)}</li>" for a in left)
            self.todo.value = f'<div role="status"><p>Still to do before you can mark this session complete ({len(left)}):</p><ul>{items}</ul></div>'
        else:
            self.todo.value = '<p role="status">Every required activity is done. Answer the two questions and mark the session complete.</p>'

    def _answers(self) -> dict | None:
        if len(self.improve.value) > MAX_TEXT_CHARS:
            self._refuse(f"Not saved: the answer is longer than {MAX_TEXT_CHARS:,} characters; shorten it.")
            return None
        return {"useful": self.useful.value, "improve": self.improve.value}

    def save_now(self) -> None:
        """Keep the two answers while the session is still open (the autosave)."""
        self._cancel_autosave()
        value = self._answers()
        if value is not None and not self.completed:
            self._save("responded", value, done=False)

    def submit(self) -> None:
        if self.remaining():
            self.refresh()
            return
        self._cancel_autosave()
        value = self._answers()
        if value is not None and self._save("completed", value, done=True):
            self.completed = True
            self.refresh()
