"""Activities learners write in: reflections and leadership goals."""

from __future__ import annotations

from datetime import date
from html import escape
from typing import Sequence

from . import controls as widgets

from ..store import Response
from .base import Activity
from .page import MAX_TEXT_CHARS


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
        if self._too_long(text, "this reflection"):
            return
        self._save(verb, {"text": text}, done=bool(text.strip()), shared=self.share.value)



def goal_privacy(settings) -> str:
    """Who reads a goal, as the course's [coaching] setting says: the words every goal box and page use."""
    if settings.coaching.goals_in_evaluation_record:
        return ("Goals are not private: your facilitator reads them and can give feedback, and they go to the agency's "
                "evaluation record with your check-ins.")
    return ("Goals are not private like your reflections: your facilitator reads them and can give feedback. They stay in "
            "this series' record, not the agency's evaluation record; ask your evaluator how they connect to your own "
            "evaluation goals.")


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
            + f'<p class="companion-note">{escape(goal_privacy(self.workbook.settings))}</p>'
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
