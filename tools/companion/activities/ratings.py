"""Self-ratings on a competency's statements, at the start and the end of the series."""

from __future__ import annotations

from html import escape
from typing import Mapping

from . import controls as widgets

from ..store import Response
from .base import Activity

SCALE = ("1 - Beginning", "2 - Developing", "3 - Applying", "4 - Leading")


def statement_ratings(catalog, saved: Mapping[str, Response]) -> list[dict]:
    """Per competency: its id, name, statements, and one learner's start and end rating of each (None where not
    rated), from their saved responses by activity id; ``where`` names the activity that rates each stage.

    The learner's growth page and the facilitator's record both read ratings this way. When a stage is
    rated in more than one activity, the latest save that holds a rating counts."""
    rows = []
    for competency in catalog.settings.competencies:
        size = len(competency.indicators)
        stages: dict[str, list] = {"start": [None] * size, "end": [None] * size}
        where: dict[str, object] = {}
        latest: dict[str, object] = {}
        for activity in catalog.all_activities():
            if activity.kind != "SelfAssessment" or activity.competency != competency.id:
                continue
            stage = activity.args.get("stage", "start")
            if stage not in stages:
                continue
            where.setdefault(stage, activity)
            response = saved.get(activity.id)
            value = response.value if response and isinstance(response.value, dict) else {}
            ratings = value.get("ratings") if isinstance(value.get("ratings"), list) else []
            if any(ratings) and (stage not in latest or response.updated_at > latest[stage]):
                latest[stage] = response.updated_at
                stages[stage] = [r if isinstance(r, int) and 1 <= r <= len(SCALE) else None for r in ratings][:size]
                stages[stage] += [None] * (size - len(stages[stage]))
        rows.append({
            "id": competency.id, "name": competency.name, "statements": competency.indicators,
            "start": stages["start"], "end": stages["end"], "where": where,
        })
    return rows


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
