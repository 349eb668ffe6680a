"""The widgets a session notebook is made of.

A session notebook starts with::

    from companion.activities import *
    Workbook("s1")

and then declares each activity in its own code cell, with literal arguments
(the catalog reads them without running the notebook)::

    Reflection("s1-why", prompt="What is your why for leading with racial equity?",
               competency="racial-equity-mindset")

Every activity saves as the learner works (an append-only event plus the
latest response), restores what was saved when the page opens again, and
renders learner text as text, never as HTML. Controls carry visible labels and
work from the keyboard. When the learner cannot be identified (an invalid or
expired link), the Workbook says why and no activity renders or records.
"""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import date, datetime
from html import escape
from typing import Any, Callable, ClassVar, Sequence

import ipywidgets as widgets

from . import identity
from .catalog import load_catalog
from .errors import CourseError
from .progress import session_rule
from .settings import load_settings
from .store import Response, open_store

__all__ = ["Workbook", "Reflection", "Choice", "Sort", "SelfAssessment", "Goal", "SessionComplete"]

MAX_TEXT_CHARS = 20_000
AUTOSAVE_SECONDS = 1.0
SCALE = ("1 - Beginning", "2 - Developing", "3 - Applying", "4 - Leading")
USEFULNESS = ("Not useful", "Somewhat useful", "Useful", "Very useful")
UNSET = "Choose..."


def _saved_at(moment: datetime) -> str:
    return moment.strftime("Saved at %H:%M:%S UTC on %d %b %Y")


def _status(text: str, kind: str = "ok") -> str:
    return f'<span class="companion-status companion-{kind}" role="status" aria-live="polite">{escape(text)}</span>'


def _paragraph(text: str, cls: str = "companion-prompt") -> widgets.HTML:
    return widgets.HTML(f'<p class="{cls}">{escape(text)}</p>')


def _later(seconds: float, callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` after ``seconds`` on the kernel's loop; returns a cancel function."""
    try:
        handle = asyncio.get_running_loop().call_later(seconds, callback)
        return handle.cancel
    except RuntimeError:
        timer = threading.Timer(seconds, callback)
        timer.daemon = True
        timer.start()
        return timer.cancel


def _query_string() -> str:
    """The page's query string; with Voila's preheated kernels it arrives only with the request."""
    if os.environ.get("VOILA_KERNEL_ID"):
        from voila.utils import wait_for_request

        wait_for_request()
    return os.environ.get("QUERY_STRING", "")


class Workbook(widgets.VBox):
    """The session a notebook belongs to: who the learner is and where their work is saved.

    Call it once, in the notebook's first code cell, before any activity::

        from companion.activities import *
        Workbook("s1")

    It shows who is signed in and a link back to all sessions, or, when the
    learner's link is missing, altered or expired, a message saying what to do
    (and then nothing on the page records anything).
    """

    _active: ClassVar["Workbook | None"] = None

    def __init__(self, session_id: str):
        super().__init__()
        self.add_class("companion-workbook")
        self.settings = load_settings()
        self.session = self.settings.session(session_id)
        self.username: str | None = None
        self.store = None
        self.rule = None  # what completes this session: every save keeps the learner's progress by it
        self.query = ""
        self._listeners: list[Callable[[], None]] = []
        try:
            # Everything that does not depend on the learner happens before a preheated
            # kernel waits for its request, so the page opens with that work already done.
            store = open_store(self.settings.db_url)
            self.rule = session_rule(load_catalog(self.settings), session_id)
            self.query = _query_string()
            self.username = identity.current(self.settings.home, self.query).username
            self.store = store
            self.store.record(self.username, session_id, session_id, "experienced")
            banner = (
                f'<p class="companion-signed-in">Signed in as <strong>{escape(self.username)}</strong>. '
                "Your work saves as you go. Reflections are private unless you tick "
                '"Share with my facilitator". '
                f'<a href="{escape(self.home_link)}">Back to all sessions</a></p>'
            )
        except CourseError as error:
            self.username = self.store = None
            banner = (
                '<div class="companion-error" role="alert"><h2>We could not tell who you are</h2>'
                f"<p>{escape(str(error))}</p></div>"
            )
        self.children = (widgets.HTML(banner),)
        Workbook._active = self

    @property
    def ready(self) -> bool:
        return self.store is not None

    @property
    def home_link(self) -> str:
        token = identity.token_from_query(self.query)
        return "home.ipynb" + (f"?{identity.LINK_PARAMETER}={token}" if token else "")

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


class Activity(widgets.VBox):
    """What every activity shares: its id, the workbook, saving and restoring."""

    def __init__(self, activity_id: str, *, competency: str | None = None, required: bool = True):
        super().__init__()
        self.add_class("companion-activity")
        self.workbook = Workbook.active()
        self.activity_id = activity_id
        self.competency = competency
        self.required = required
        self.status = widgets.HTML(_status(""))
        self._restoring = False
        self._cancel: Callable[[], None] | None = None

    def _show(self, *controls: widgets.Widget) -> None:
        """Put the controls on the page and fill them with what was saved."""
        if not self.workbook.ready:
            self.children = ()
            return
        self.children = (*controls, self.status)
        saved = self.workbook.store.response(self.workbook.username, self.activity_id)
        if saved is not None:
            self.restore(saved)
            self.status.value = _status(_saved_at(saved.updated_at))

    def restore(self, saved: Response) -> None:
        """Fill the controls from the saved response."""

    def save_now(self) -> None:
        """Save the current state (activities that autosave implement it)."""

    def _edited(self, _change=None) -> None:
        """A control changed: say so, and save once the learner pauses for AUTOSAVE_SECONDS."""
        if self._restoring:
            return
        self.status.value = _status("Unsaved changes...", "pending")
        self._cancel_autosave()
        self._cancel = _later(AUTOSAVE_SECONDS, self.save_now)

    def _cancel_autosave(self) -> None:
        if self._cancel:
            self._cancel()
            self._cancel = None

    def _save(self, verb: str, value: Any, *, done: bool, shared: bool | None = None) -> Response | None:
        if not self.workbook.ready:
            return None
        try:
            saved = self.workbook.store.save(
                self.workbook.username, self.workbook.session.id, self.activity_id, verb, value,
                done=done, shared=shared, rule=self.workbook.rule,
            )
        except CourseError as error:
            self.status.value = _status(f"Not saved: {error}", "error")
            return None
        self.status.value = _status(_saved_at(saved.updated_at))
        self.workbook.saved()
        return saved


class Reflection(Activity):
    """A written reflection: autosaves while the learner types, private unless shared.

    Example::

        Reflection("s1-why", prompt="What is your why for leading with racial equity?",
                   competency="racial-equity-mindset")
    """

    def __init__(
        self,
        activity_id: str,
        *,
        prompt: str,
        competency: str | None = None,
        required: bool = True,
        placeholder: str = "Write here. Your words are saved as you type.",
    ):
        super().__init__(activity_id, competency=competency, required=required)
        self.text = widgets.Textarea(description=prompt, placeholder=placeholder, continuous_update=True)
        self.text.add_class("companion-text")
        self.words = widgets.HTML(self._word_count(""))
        self.share = widgets.Checkbox(value=False, description="Share with my facilitator", indent=False)
        self.save_button = widgets.Button(description="Save", tooltip="Save this reflection now", button_style="primary")
        self.feedback = widgets.HTML("")
        self.text.observe(self._typed, "value")
        self.share.observe(self._shared, "value")
        self.save_button.on_click(lambda _: self.save_now())
        row = widgets.HBox([self.save_button, self.share, self.words])
        row.add_class("companion-row")
        self._show(self.text, row, self.feedback)

    @staticmethod
    def _word_count(text: str) -> str:
        count = len(text.split())
        return f'<span class="companion-words">{count} word{"s" if count != 1 else ""}</span>'

    def restore(self, saved: Response) -> None:
        self._restoring = True
        self.text.value = (saved.value or {}).get("text", "")
        self.share.value = saved.shared
        self._restoring = False
        self.words.value = self._word_count(self.text.value)
        feedback = self.workbook.store.feedback(self.workbook.username, self.activity_id)
        if feedback:
            self.show_feedback(feedback)

    def show_feedback(self, items: Sequence) -> None:
        parts = "".join(
            f"<blockquote><p>{escape(item.text)}</p><footer>{escape(item.author)}, "
            f"{item.at.strftime('%d %b %Y')}</footer></blockquote>"
            for item in items
        )
        self.feedback.value = f'<section class="companion-feedback" aria-label="Feedback from your facilitator"><h4>Feedback from your facilitator</h4>{parts}</section>'

    def _typed(self, change) -> None:
        self.words.value = self._word_count(change["new"])
        self._edited()

    def _shared(self, change) -> None:
        if not self._restoring:
            self.save_now(verb="shared" if change["new"] else "unshared")

    def save_now(self, verb: str = "responded") -> None:
        """Save the text now (the Save button; autosave calls this too)."""
        self._cancel_autosave()
        text = self.text.value
        if len(text) > MAX_TEXT_CHARS:
            self.status.value = _status(
                f"Not saved: this reflection has {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}. "
                "Shorten it and it will save. Your text is still in the box.",
                "error",
            )
            return
        self._save(verb, {"text": text}, done=bool(text.strip()), shared=self.share.value)


class Choice(Activity):
    """A question with one answer (``multiple=False``) or several (``multiple=True``).

    After answering, the learner sees the explanation (and, with ``feedback``, a
    note on the option they chose). ``answer=None`` means there is no right
    answer, as in a self-placement.

    Example::

        Choice("s1-end", question="What is the agency's End?",
               options=["Success for each child and eliminate the opportunity gap", "Balanced budgets"],
               answer="Success for each child and eliminate the opportunity gap",
               explanation="The End guides every policy, including the Racial Equity Policy.")
    """

    def __init__(
        self,
        activity_id: str,
        *,
        question: str,
        options: Sequence[str],
        answer: str | Sequence[str] | None = None,
        explanation: str = "",
        multiple: bool = False,
        feedback: dict | None = None,
        competency: str | None = None,
        required: bool = True,
    ):
        super().__init__(activity_id, competency=competency, required=required)
        self.options = list(options)
        self.answer = answer
        self.explanation = explanation
        self.multiple = multiple
        self.option_feedback = feedback or {}
        self.question = _paragraph(question)
        if multiple:
            self.boxes = [widgets.Checkbox(value=False, description=option, indent=False) for option in self.options]
            self.picker = widgets.VBox(self.boxes)
            self.picker.add_class("companion-checkboxes")
        else:
            self.picker = widgets.RadioButtons(options=self.options, value=None, description="Your answer")
        self.check = widgets.Button(description="Check my answer" if answer is not None else "Save my answer", button_style="primary")
        self.result = widgets.HTML("")
        self.check.on_click(lambda _: self.submit())
        self._show(self.question, self.picker, self.check, self.result)

    def selected(self) -> list[str]:
        if self.multiple:
            return [box.description for box in self.boxes if box.value]
        return [] if self.picker.value is None else [self.picker.value]

    def _select(self, chosen: Sequence[str]) -> None:
        if self.multiple:
            for box in self.boxes:
                box.value = box.description in chosen
        elif chosen and chosen[0] in self.options:
            self.picker.value = chosen[0]

    def restore(self, saved: Response) -> None:
        chosen = (saved.value or {}).get("selected", [])
        self._select(chosen)
        self._explain(chosen)

    def _correct(self, chosen: Sequence[str]) -> bool | None:
        if self.answer is None:
            return None
        expected = set(self.answer) if isinstance(self.answer, (list, tuple)) else {self.answer}
        return set(chosen) == expected

    def _explain(self, chosen: Sequence[str]) -> None:
        correct = self._correct(chosen)
        verdict = {True: "<p><strong>That's right.</strong></p>", False: "<p><strong>Not quite.</strong></p>", None: ""}[correct]
        notes = "".join(f"<p>{escape(self.option_feedback[c])}</p>" for c in chosen if c in self.option_feedback)
        explanation = f"<p>{escape(self.explanation)}</p>" if self.explanation else ""
        self.result.value = f'<div class="companion-explanation" role="status">{verdict}{notes}{explanation}</div>'

    def submit(self) -> None:
        chosen = self.selected()
        if not chosen:
            self.result.value = '<p class="companion-error" role="status">Choose an answer first.</p>'
            return
        self._explain(chosen)
        self._save("answered", {"selected": chosen, "correct": self._correct(chosen)}, done=True)


class Sort(Activity):
    """Place each statement in one of several categories, then check, with a reason per item.

    ``items`` are ``(statement, correct category, explanation)`` tuples.

    Example::

        Sort("s2-levels", instructions="Place each example at its level of racism.",
             categories=["Internalized", "Interpersonal", "Institutional", "Structural"],
             items=[("A hiring panel dismisses an accent as 'unprofessional'.", "Interpersonal",
                     "One person's bias acted out toward another.")])
    """

    def __init__(
        self,
        activity_id: str,
        *,
        instructions: str,
        categories: Sequence[str],
        items: Sequence[Sequence[str]],
        competency: str | None = None,
        required: bool = True,
    ):
        super().__init__(activity_id, competency=competency, required=required)
        self.categories = list(categories)
        self.items = [tuple(item) for item in items]
        self.instructions = _paragraph(instructions)
        self.rows, self.pickers, self.notes = [], [], []
        for number, item in enumerate(self.items, 1):
            statement = widgets.HTML(f'<p class="companion-statement"><strong>{number}.</strong> {escape(item[0])}</p>')
            picker = widgets.Dropdown(options=[UNSET, *self.categories], value=UNSET, description=f"Statement {number} belongs to")
            note = widgets.HTML("")
            self.pickers.append(picker)
            self.notes.append(note)
            row = widgets.VBox([statement, picker, note])
            row.add_class("companion-sort-item")
            self.rows.append(row)
        self.check = widgets.Button(description="Check my sorting", button_style="primary")
        self.result = widgets.HTML("")
        self.check.on_click(lambda _: self.submit())
        self._show(self.instructions, *self.rows, self.check, self.result)

    def placements(self) -> list[str | None]:
        return [None if p.value == UNSET else p.value for p in self.pickers]

    def restore(self, saved: Response) -> None:
        for picker, placed in zip(self.pickers, (saved.value or {}).get("placements", [])):
            if placed in self.categories:
                picker.value = placed
        if saved.done:
            self._explain(self.placements())

    def _explain(self, placed: list[str | None]) -> int:
        right = 0
        for item, choice, note in zip(self.items, placed, self.notes):
            ok = choice == item[1]
            right += ok
            reason = escape(item[2]) if len(item) > 2 else ""
            verdict = "Yes: " if ok else f"This one is {escape(item[1])}. "
            note.value = f'<p class="companion-{"right" if ok else "wrong"}">{verdict}{reason}</p>'
        self.result.value = f'<p role="status"><strong>{right} of {len(self.items)} placed as the authors would.</strong> Read each note above.</p>'
        return right

    def submit(self) -> None:
        placed = self.placements()
        missing = [str(n) for n, p in enumerate(placed, 1) if p is None]
        if missing:
            self.result.value = f'<p class="companion-error" role="status">Place every statement first (still open: {", ".join(missing)}).</p>'
            return
        right = self._explain(placed)
        self._save("answered", {"placements": placed, "score": right, "total": len(self.items)}, done=True)


class SelfAssessment(Activity):
    """A self-rating, 1 to 4, on each indicator of one competency (from course/course.toml).

    ``stage`` is ``"start"`` (session 1) or ``"end"`` (session 6): the evaluation
    feed compares the two.

    Example::

        SelfAssessment("s1-start-cultural-proficiency", competency="cultural-proficiency", stage="start")
    """

    def __init__(self, activity_id: str, *, competency: str, stage: str = "start", prompt: str = "", required: bool = True):
        super().__init__(activity_id, competency=competency, required=required)
        self.stage = stage
        self.definition = self.workbook.settings.competency(competency)
        intro = prompt or f"Rate yourself today on each statement about {self.definition.name}."
        heading = widgets.HTML(
            f'<h3 class="companion-competency">{escape(self.definition.name)}</h3><p class="companion-prompt">{escape(intro)}</p>'
        )
        self.scales = [widgets.RadioButtons(options=SCALE, value=None, description=text) for text in self.definition.indicators]
        for scale in self.scales:
            scale.add_class("companion-scale")
            scale.observe(lambda _: self._changed(), "value")
        self._show(heading, *self.scales)

    def ratings(self) -> list[int | None]:
        return [None if s.value is None else SCALE.index(s.value) + 1 for s in self.scales]

    def restore(self, saved: Response) -> None:
        self._restoring = True
        for scale, rating in zip(self.scales, (saved.value or {}).get("ratings", [])):
            if rating:
                scale.value = SCALE[rating - 1]
        self._restoring = False

    def _changed(self) -> None:
        if self._restoring:
            return
        ratings = self.ratings()
        complete = all(r is not None for r in ratings)
        value = {"competency": self.competency, "stage": self.stage, "ratings": ratings}
        if complete:
            value["score"] = round(sum(ratings) / len(ratings), 2)
        self._save("answered", value, done=complete)


class Goal(Activity):
    """A leadership goal tied to a competency: the goal, how success is measured, a target date, progress.

    Example::

        Goal("s5-goal-cultural-proficiency", competency="cultural-proficiency",
             prompt="Set one goal for this evaluation cycle.")
    """

    STATUSES = ("Not started", "In progress", "Met", "Revised")

    def __init__(self, activity_id: str, *, competency: str, prompt: str = "", required: bool = True):
        super().__init__(activity_id, competency=competency, required=required)
        name = self.workbook.settings.competency(competency).name
        heading = widgets.HTML(
            f'<h3 class="companion-competency">Goal: {escape(name)}</h3>'
            + (f'<p class="companion-prompt">{escape(prompt)}</p>' if prompt else "")
            + '<p class="companion-note">Goals are part of your evaluation record: your facilitator '
            "and the agency's evaluation system receive them, with your progress updates.</p>"
        )
        self.goal = widgets.Textarea(description="My goal", placeholder="What will you do, with whom, and why?")
        self.measure = widgets.Textarea(description="How I will know I met it (success measure)")
        self.target = widgets.DatePicker(description="Target date")
        self.progress_status = widgets.Dropdown(options=self.STATUSES, value="Not started", description="Progress")
        self.progress = widgets.Textarea(description="Progress update (optional)")
        for control in (self.goal, self.measure, self.progress):
            control.add_class("companion-text")
        self.save_button = widgets.Button(description="Save goal", button_style="primary")
        self.save_button.on_click(lambda _: self.save_now())
        for control in (self.goal, self.measure, self.target, self.progress_status, self.progress):
            control.observe(self._edited, "value")
        self._show(heading, self.goal, self.measure, self.target, self.progress_status, self.progress, self.save_button)

    def restore(self, saved: Response) -> None:
        value = saved.value or {}
        self._restoring = True
        self.goal.value = value.get("goal", "")
        self.measure.value = value.get("measure", "")
        self.target.value = date.fromisoformat(value["target"]) if value.get("target") else None
        self.progress_status.value = value.get("status") if value.get("status") in self.STATUSES else "Not started"
        self.progress.value = value.get("progress", "")
        self._restoring = False

    def save_now(self) -> None:
        self._cancel_autosave()
        texts = (self.goal.value, self.measure.value, self.progress.value)
        if any(len(t) > MAX_TEXT_CHARS for t in texts):
            self.status.value = _status(f"Not saved: each box holds at most {MAX_TEXT_CHARS:,} characters. Shorten it and save again.", "error")
            return
        value = {
            "competency": self.competency,
            "goal": self.goal.value,
            "measure": self.measure.value,
            "target": self.target.value.isoformat() if self.target.value else None,
            "status": self.progress_status.value,
            "progress": self.progress.value,
        }
        done = bool(self.goal.value.strip() and self.measure.value.strip() and self.target.value)
        self._save("responded", value, done=done)


class SessionComplete(Activity):
    """The end of a session: what is still required, two short questions, and the button that completes it.

    The session is marked complete only when every required activity is done.

    Example::

        SessionComplete("s1-complete")
    """

    def __init__(self, activity_id: str, *, required: bool = True):
        super().__init__(activity_id, required=required)
        session = self.workbook.session
        self.required_activities = load_catalog(self.workbook.settings).required(session.id)
        self.todo = widgets.HTML("")
        self.useful = widgets.RadioButtons(options=USEFULNESS, value=None, description="How useful was this session for your work?")
        self.improve = widgets.Textarea(description="What is one thing that would make it more useful? (optional)")
        self.improve.add_class("companion-text")
        self.complete = widgets.Button(description=f"Mark session {session.number} complete", button_style="success")
        self.complete.on_click(lambda _: self.submit())
        self.completed = False
        self.workbook.on_save(self.refresh)
        self._show(widgets.HTML("<h2>Finish this session</h2>"), self.todo, self.useful, self.improve, self.complete)
        self.refresh()

    def remaining(self) -> list:
        if not self.workbook.ready:
            return self.required_activities
        saved = self.workbook.store.responses(self.workbook.username, self.workbook.session.id)
        return [a for a in self.required_activities if not (a.id in saved and saved[a.id].done)]

    def restore(self, saved: Response) -> None:
        value = saved.value or {}
        self.completed = saved.done
        if value.get("useful") in USEFULNESS:
            self.useful.value = value["useful"]
        self.improve.value = value.get("improve", "")

    def refresh(self) -> None:
        """Show what is still to do, or that the session is complete."""
        if self.completed:
            self.todo.value = f'<p class="companion-complete" role="status"><strong>Session {self.workbook.session.number} is complete.</strong> Thank you. Everything you wrote stays here for you.</p>'
            self.complete.disabled = True
            return
        left = self.remaining()
        self.complete.disabled = bool(left)
        if left:
            items = "".join(f"<li>{escape(a.title)}</li>" for a in left)
            self.todo.value = f'<div role="status"><p>Still to do before you can mark this session complete ({len(left)}):</p><ul>{items}</ul></div>'
        else:
            self.todo.value = '<p role="status">Every required activity is done. Answer the two questions and mark the session complete.</p>'

    def submit(self) -> None:
        if self.remaining():
            self.refresh()
            return
        if len(self.improve.value) > MAX_TEXT_CHARS:
            self.status.value = _status(f"Not saved: the answer is longer than {MAX_TEXT_CHARS:,} characters; shorten it.", "error")
            return
        value = {"useful": self.useful.value, "improve": self.improve.value}
        if self._save("completed", value, done=True):
            self.completed = True
            self.refresh()
