"""Scenario: a workplace case decided step by step, ending in a reflection on what the learner would do."""

from __future__ import annotations

from html import escape
from typing import Mapping, Sequence

from . import controls as widgets

from ..store import Response
from .base import Activity
from .page import shuffled


class Scenario(Activity):
    """A short workplace case: a decision at each step, its consequence and reasoning shown, then a reflection.

    ``steps`` is a list of steps; the first opens the case. Each step has an
    ``id``, a ``question``, an optional ``situation`` (what changed since the
    last decision) and two to four ``choices``, each with the ``choice`` text,
    its ``consequence``, ``why`` it helps or hurts, and the ``next`` step's id
    (``None`` ends the case). Choices appear in an order shuffled per learner,
    the same on every visit. The path is saved by the choices' text, so it
    comes back when the page opens again; the activity is done once the case
    has reached an end and the closing reflection is written. ``companion
    check`` verifies the steps (ids, links, no loops).

    Example::

        Scenario("s6-case-debrief", title="The panel debrief", competency="racial-equity-advocate",
                 case="You chair a hiring panel. In the debrief, a panelist says the strongest candidate 'may not fit'.",
                 steps=[{"id": "first", "question": "What do you do?", "choices": [
                     {"choice": "Ask what job-related evidence is behind the concern",
                      "consequence": "The panelist cannot name any; the panel returns to the scoring guide.",
                      "why": "Fit without evidence often carries bias; criteria keep the decision fair.", "next": None},
                     {"choice": "Move on to the next candidate to keep the meeting on time",
                      "consequence": "The comment stands and lowers her score.",
                      "why": "Leaving it unexamined lets an unnamed standard decide.", "next": None}]}],
                 reflection="What would you say in your own next debrief?")
    """

    TEXT_FIELDS = ("reflection",)

    def __init__(
        self,
        activity_id: str,
        *,
        case: str,
        steps: Sequence[Mapping],
        reflection: str,
        title: str = "",
        competency: str | None = None,
        required: bool = True,
    ):
        super().__init__(activity_id, title=title, competency=competency, required=required)
        self.add_class("companion-scenario")
        self.steps = {str(step["id"]): step for step in steps}
        self.first = str(steps[0]["id"])
        self.path: list[dict[str, str]] = []  # {"step": id, "choice": the chosen text}, in order
        self.ended = False  # the case reached an end once; starting again does not undo the learner's work
        self.opening = widgets.HTML(f'<p class="companion-case">{escape(case)}</p>')
        self.story = widgets.HTML("")
        self.picker = widgets.RadioButtons(options=[], value=None, description="Your decision")
        self.picker.add_class("companion-decision")
        self.decide = widgets.Button(description="Decide", button_style="primary")
        self.decide.on_click(lambda _: self.choose(self.picker.value))
        self.hint = widgets.HTML("")
        self.current = widgets.VBox([self.picker, self.decide, self.hint], layout=widgets.Layout())  # shown or hidden: its own layout
        self.current.add_class("companion-step-now")
        self.reflection = self._text_box("reflection", reflection, placeholder="Write here. Your words are saved as you type.")
        self.reflection.observe(self._edited, "value")
        self.again = widgets.Button(description="Start the case again", tooltip="Decide each step again; what you wrote stays")
        self.again.on_click(lambda _: self.start_again())
        self.closing = widgets.VBox([self.reflection, self.again], layout=widgets.Layout())
        self.closing.add_class("companion-step-end")
        self._show(self.opening, self.story, self.current, self.closing)

    # Where the learner is -----------------------------------------------------------

    def _choice(self, step_id: str, text: str | None) -> Mapping | None:
        step = self.steps.get(step_id) or {}
        return next((c for c in step.get("choices", ()) if c.get("choice") == text), None)

    def _walk(self, path: Sequence) -> list[dict[str, str]]:
        """The saved path as far as it still follows this notebook's steps (a changed notebook cuts it there)."""
        kept, expected = [], self.first
        for entry in path if isinstance(path, list) else []:
            if expected is None or not isinstance(entry, dict) or entry.get("step") != expected:
                break
            choice = self._choice(expected, entry.get("choice"))
            if choice is None:
                break
            kept.append({"step": expected, "choice": choice["choice"]})
            expected = choice.get("next")
        return kept

    @property
    def next_step(self) -> str | None:
        """The step waiting for a decision, or None once the path reached an end."""
        if not self.path:
            return self.first
        return self._choice(self.path[-1]["step"], self.path[-1]["choice"]).get("next")

    # Showing it -------------------------------------------------------------

    def _render(self) -> None:
        parts = []
        for number, entry in enumerate(self.path, 1):
            step, choice = self.steps[entry["step"]], self._choice(entry["step"], entry["choice"])
            parts.append(
                f'<section class="companion-step" aria-label="Decision {number}"><h4>Decision {number}</h4>'
                f"{self._situation(step)}"
                f'<p class="companion-chosen"><strong>You chose:</strong> {escape(choice["choice"])}</p>'
                f'<div class="companion-consequence"><p><strong>What happens:</strong> {escape(choice.get("consequence", ""))}</p>'
                f'<p><strong>Why:</strong> {escape(choice.get("why", ""))}</p></div></section>'
            )
        waiting = self.next_step
        if waiting is not None:
            step = self.steps[waiting]
            number = len(self.path) + 1
            situation = f'<p class="companion-prompt">{escape(step["situation"])}</p>' if step.get("situation") else ""
            parts.append(f'<section class="companion-step companion-step-open" aria-label="Decision {number}"><h4>Decision {number}</h4>{situation}</section>')
            texts = [c["choice"] for c in step.get("choices", ())]
            self.picker.options = shuffled(texts, self.workbook.username or "", f"{self.activity_id}:{waiting}")
            self.picker.value = None
            self.picker.description = str(step.get("question") or "What do you do?")
        else:
            parts.append('<p class="companion-step-done" role="status"><strong>The case is over.</strong> Now the part that counts: what you would do.</p>')
        # The controls first, the story last: the browser applies the changes in the order they are made, so
        # by the time a decision shows as taken, the step just decided is no longer offered.
        self.current.layout.display = None if waiting is not None else "none"
        self.closing.layout.display = None if (waiting is None or self.ended) else "none"
        self.story.value = "".join(parts)

    @staticmethod
    def _situation(step: Mapping) -> str:
        """A decided step's situation and question (the open step's question is its choices' label)."""
        situation = f'<p class="companion-prompt">{escape(step["situation"])}</p>' if step.get("situation") else ""
        return situation + f'<p class="companion-question"><strong>{escape(str(step.get("question") or ""))}</strong></p>'

    def _personalise(self) -> None:
        self._render()  # the open step's choices, in this learner's order

    def restore(self, saved: Response) -> None:
        value = saved.value if isinstance(saved.value, dict) else {}
        self._restoring = True
        self.path = self._walk(value.get("path", []))
        self.ended = bool(value.get("ended")) or (bool(self.path) and self.next_step is None)
        self.reflection.value = str(value.get("reflection") or "")
        self._restoring = False
        self._render()

    # What the learner does ----------------------------------------------------------

    def choose(self, text: str | None) -> None:
        """Take the decision ``text`` at the waiting step: show its consequence and save the path."""
        waiting = self.next_step
        choice = self._choice(waiting, text) if waiting is not None else None
        if choice is None:
            self.hint.value = '<p class="companion-error" role="status">Choose what you would do first, then press Decide.</p>'
            return
        self.hint.value = ""
        self.path.append({"step": waiting, "choice": choice["choice"]})
        self.ended = self.ended or choice.get("next") is None
        self._render()
        self.save_now(verb="answered")
        (self.picker if self.next_step is not None else self.reflection).focus()

    def start_again(self) -> None:
        self.path = []
        self._render()
        self.save_now(verb="answered")
        self.picker.focus()

    def save_now(self, verb: str = "responded") -> None:
        """Save the path and the reflection (each decision, and the autosave while the learner writes)."""
        self._cancel_autosave()
        text = self.reflection.value
        if self._too_long(text, "your reflection"):
            return
        value = {"path": list(self.path), "ended": self.ended, "reflection": text}
        self._save(verb, value, done=self.ended and bool(text.strip()))
