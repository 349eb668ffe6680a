"""Questions: choices with an explanation, and sorting statements into categories."""

from __future__ import annotations

from html import escape
from typing import Sequence

from . import controls as widgets

from ..store import Response
from .base import Activity
from .page import _paragraph, shuffled

UNSET = "Choose..."


class Choice(Activity):
    """A question with one answer (``multiple=False``) or several (``multiple=True``).

    After answering, the learner sees the explanation (and, with ``feedback``, a
    note on the option they chose). ``answer=None`` means there is no right
    answer, as in a self-placement. A question with an answer shows its options
    in an order shuffled per learner (the same on every visit) and is graded by
    the options' text, never their position; a self-placement keeps the written
    order.

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

    def _personalise(self) -> None:
        # A keyed question's options come in the learner's own order, so the answer cannot be guessed
        # from its place; a self-placement keeps the written order (it is often a scale).
        if self.answer is None:
            return
        shown = shuffled(self.options, self.workbook.username or "", self.activity_id)
        if self.multiple:
            self.boxes.sort(key=lambda box: shown.index(box.description))
            self.picker.children = tuple(self.boxes)
        else:
            self.picker.options = shown
            self.picker.value = None

    def selected(self) -> list[str]:
        """The chosen options, by their text as the notebook declares them (a label changed in the browser is not one)."""
        if self.multiple:
            chosen = [box.description for box in self.boxes if box.value]
        else:
            chosen = [] if self.picker.value is None else [self.picker.value]
        return [option for option in self.options if option in chosen]

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
