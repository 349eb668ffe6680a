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
import threading
from datetime import date, datetime, timezone
from html import escape
from typing import Any, Callable, ClassVar, Mapping, Sequence

import ipywidgets as widgets

from . import identity, paths
from .catalog import load_catalog
from .errors import CourseError
from .identity import page_query as _query_string
from .progress import session_rule
from .settings import load_settings
from .store import Response, open_store

__all__ = ["Workbook", "Reflection", "Choice", "Sort", "SelfAssessment", "Goal", "SessionComplete"]

MAX_TEXT_CHARS = 20_000
AUTOSAVE_SECONDS = 1.0
SCALE = ("1 - Beginning", "2 - Developing", "3 - Applying", "4 - Leading")
USEFULNESS = ("Not useful", "Somewhat useful", "Useful", "Very useful")
UNSET = "Choose..."


def local_time(moment: datetime, form: str = "datetime") -> str:
    """A ``<time>`` the page script shows in the learner's own time zone (``form``: time, date or datetime).

    The text inside, in UTC, is what a browser without the script shows."""
    moment = moment.astimezone(timezone.utc)
    fallback = {"time": "%H:%M UTC on %d %b %Y", "date": "%d %b %Y", "datetime": "%d %b %Y, %H:%M UTC"}[form]
    return (
        f'<time class="companion-local" datetime="{moment.isoformat(timespec="seconds")}" '
        f'data-format="{form}">{moment.strftime(fallback)}</time>'
    )


def fingerprint(text: str) -> str:
    """FNV-1a (32 bits) over the text's UTF-16 code units, in hex: the page script computes the same.

    A status carries the fingerprint of each saved text, so the browser knows
    which of the learner's keystrokes the server has confirmed."""
    value = 0x811C9DC5
    for unit in memoryview(text.encode("utf-16-le")).cast("H"):
        value = ((value ^ unit) * 0x01000193) & 0xFFFFFFFF
    return f"{value:08x}"


def _status(text: str, kind: str = "ok", saved: Mapping[str, str] | None = None, html: str = "") -> str:
    """The activity's status line; ``saved`` (field -> saved text) tells the page script what the server holds."""
    marks = " ".join(f"{field}:{fingerprint(value)}" for field, value in (saved or {}).items())
    attribute = f' data-saved="{marks}"' if saved is not None else ""
    return (
        f'<span class="companion-status companion-{kind}" role="status" aria-live="polite"{attribute}>'
        f"{escape(text)}{html}</span>"
    )


def signed_in_html(store, who: identity.Identity) -> str:
    """"Signed in as <name>." with the roster's name, or "Working on this computer." for a system account.

    The rule is :func:`companion.identity.display_name`; the home page and every session page say it the same way."""
    learner = store.learner(who.username)
    name = identity.display_name(who, learner.name if learner else "")
    return f"Signed in as <strong>{escape(name)}</strong>." if name else "Working on this computer."


def _saved_at(moment: datetime, saved: Mapping[str, str] | None = None) -> str:
    return _status("Saved at ", saved=saved, html=local_time(moment, "time"))


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
            who = identity.current(self.settings.home, self.query)
            self.username = who.username
            self.store = store
            self.store.record(self.username, session_id, session_id, "experienced")
            banner = (
                f'<div class="companion-page" data-learner="{escape(self.username)}" data-session="{escape(session_id)}">'
                f'<p class="companion-signed-in">{signed_in_html(store, who)} '
                "Your work saves as you go. Reflections are private unless you tick "
                '"Share with my facilitator". '
                f'<a href="{escape(self.home_link)}">Back to all sessions</a></p></div>'
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


class Activity(widgets.VBox):
    """What every activity shares: its id and title, the workbook, saving and restoring.

    Activities with text boxes name them in ``TEXT_FIELDS`` (the keys of their
    saved value). Their saves are checked against what this page last read or
    saved, so a save from a page that is behind (another tab, another device)
    never silently replaces newer text: the learner is asked which to keep, and
    both versions stay in the event log."""

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
        """Put the controls on the page and fill them with what was saved."""
        if not self.workbook.ready:
            self.children = ()
            return
        self.children = (*controls, self.conflict, self.status)
        saved = self.workbook.store.response(self.workbook.username, self.activity_id)
        if saved is None:
            self.status.value = _status("", saved=self._texts(None))
            return
        self._known = saved.value
        self.restore(saved)
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
        self._cancel = _later(AUTOSAVE_SECONDS, self.save_now)

    def _cancel_autosave(self) -> None:
        if self._cancel:
            self._cancel()
            self._cancel = None

    def _refuse(self, message: str) -> None:
        """Say why nothing was saved; the learner's text stays in the box."""
        self.status.value = _status(message, "error", saved=self._texts(self._known))

    def _save(self, verb: str, value: Any, *, done: bool, shared: bool | None = None) -> Response | None:
        if not self.workbook.ready:
            return None
        checked = {"expected": self._known} if self.TEXT_FIELDS else {}
        try:
            saved = self.workbook.store.save(
                self.workbook.username, self.workbook.session.id, self.activity_id, verb, value,
                done=done, shared=shared, rule=self.workbook.rule, **checked,
            )
        except CourseError as error:
            self._refuse(f"Not saved: {error}")
            return None
        if saved.conflict:
            self._ask_which(saved)
            return None
        self._stored(saved)
        return saved

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
        self.restore(other)
        self._stored(other)


class Reflection(Activity):
    """A written reflection: autosaves while the learner types, private unless shared.

    Example::

        Reflection("s1-why", title="Your why", prompt="What is your why for leading with racial equity?",
                   competency="racial-equity-mindset")
    """

    TEXT_FIELDS = ("text",)

    def __init__(
        self,
        activity_id: str,
        *,
        prompt: str,
        title: str = "",
        competency: str | None = None,
        required: bool = True,
        placeholder: str = "Write here. Your words are saved as you type.",
    ):
        super().__init__(activity_id, title=title, competency=competency, required=required)
        self.text = self._text_box("text", prompt, placeholder=placeholder, continuous_update=True)
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
            self._refuse(
                f"Not saved: this reflection has {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}. "
                "Shorten it and it will save. Your text is still in the box."
            )
            return
        self._save(verb, {"text": text}, done=bool(text.strip()), shared=self.share.value)


class Choice(Activity):
    """A question with one answer (``multiple=False``) or several (``multiple=True``).

    After answering, the learner sees the explanation (and, with ``feedback``, a
    note on the option they chose). ``answer=None`` means there is no right
    answer, as in a self-placement.

    Example::

        Choice("s1-end", title="The agency's End", question="What is the agency's End?",
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
        title: str = "",
        answer: str | Sequence[str] | None = None,
        explanation: str = "",
        multiple: bool = False,
        feedback: dict | None = None,
        competency: str | None = None,
        required: bool = True,
    ):
        super().__init__(activity_id, title=title, competency=competency, required=required)
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

        Sort("s2-levels", title="Levels of racism", instructions="Place each example at its level of racism.",
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
        title: str = "",
        competency: str | None = None,
        required: bool = True,
    ):
        super().__init__(activity_id, title=title, competency=competency, required=required)
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

    def __init__(
        self, activity_id: str, *, competency: str, stage: str = "start", title: str = "", prompt: str = "", required: bool = True
    ):
        super().__init__(activity_id, title=title, competency=competency, required=required)
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
    TEXT_FIELDS = ("goal", "measure", "progress")

    def __init__(self, activity_id: str, *, competency: str, title: str = "", prompt: str = "", required: bool = True):
        super().__init__(activity_id, title=title, competency=competency, required=required)
        name = self.workbook.settings.competency(competency).name
        heading = widgets.HTML(
            f'<h3 class="companion-competency">Goal: {escape(name)}</h3>'
            + (f'<p class="companion-prompt">{escape(prompt)}</p>' if prompt else "")
            + '<p class="companion-note">Goals are part of your evaluation record: your facilitator '
            "and the agency's evaluation system receive them, with your progress updates.</p>"
        )
        self.goal = self._text_box("goal", "My goal", placeholder="What will you do, with whom, and why?")
        self.measure = self._text_box("measure", "How I will know I met it (success measure)")
        self.target = widgets.DatePicker(description="Target date")
        self.progress_status = widgets.Dropdown(options=self.STATUSES, value="Not started", description="Progress")
        self.progress = self._text_box("progress", "Progress update (optional)")
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
            self._refuse(f"Not saved: each box holds at most {MAX_TEXT_CHARS:,} characters. Shorten it and save again.")
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
        self._show(widgets.HTML("<h2>Finish this session</h2>"), self.todo, self.useful, self.improve, self.complete)
        self.useful.observe(self._edited, "value")
        self.improve.observe(self._edited, "value")
        self.refresh()

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
