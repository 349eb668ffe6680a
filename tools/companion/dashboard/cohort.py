"""The cohort view (figures and their HTML): how self-ratings moved from start to end, and how useful each session was.

Both come from one grouped read of the store
(:meth:`~companion.store.Store.latest_responses` over every SelfAssessment and
SessionComplete activity in the catalog).

- **Growth**: per competency, over the learners who rated themselves on all its
  statements at both the start and the end of the series, the mean start and
  end rating (a learner's rating is the mean of their statement ratings, 1 to
  4) and how many rose, stayed the same or fell. Drawn as an inline SVG
  (``role="img"`` with an ``aria-label`` saying the numbers) beside an HTML table
  of the same numbers for screen readers.
- **Usefulness**: per session, how many answered each of
  :data:`companion.activities.closing.USEFULNESS`, and the suggestions (the
  "improve" text) listed without names, in alphabetical order so the list does
  not follow the roster.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from statistics import fmean

from ..activities.closing import USEFULNESS
from ..catalog import Catalog
from ..store import Response, Store
from .figures import LISTED

SCALE_LOW, SCALE_HIGH = 1, 4


@dataclass(frozen=True)
class Movement:
    """How one competency's self-ratings moved, over the learners who have both a start and an end rating."""

    competency: str
    name: str
    learners: int
    mean_start: float | None
    mean_end: float | None
    rose: int
    same: int
    fell: int


@dataclass(frozen=True)
class Usefulness:
    session_id: str
    number: int
    title: str
    counts: dict[str, int]  # each answer of USEFULNESS, in that order
    suggestions: tuple[str, ...]  # the "improve" texts, no names, alphabetical

    @property
    def answered(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class CohortView:
    movements: tuple[Movement, ...]
    usefulness: tuple[Usefulness, ...]


def rating(value) -> float | None:
    """A learner's rating on one competency: the mean of their statement ratings, when every statement is rated."""
    ratings = (value or {}).get("ratings") if isinstance(value, dict) else None
    if not ratings or not all(isinstance(r, int) and SCALE_LOW <= r <= SCALE_HIGH for r in ratings):
        return None
    return sum(ratings) / len(ratings)


def cohort_view(store: Store, catalog: Catalog, members: set[str] | None = None) -> CohortView:
    """Growth per competency and usefulness per session, for everyone or for the usernames in ``members``."""
    assessments = [a for a in catalog.all_activities() if a.kind == "SelfAssessment" and a.competency]
    closings = [a for a in catalog.all_activities() if a.kind == "SessionComplete"]
    responses = store.latest_responses([a.id for a in assessments + closings])
    if members is not None:
        responses = [r for r in responses if r.username in members]
    by_activity: dict[str, list[Response]] = {}
    for response in responses:
        by_activity.setdefault(response.activity_id, []).append(response)

    movements = []
    for competency in catalog.settings.competencies:
        stages: dict[str, dict[str, tuple]] = {"start": {}, "end": {}}
        for activity in assessments:
            stage = activity.args.get("stage", "start")
            if activity.competency != competency.id or stage not in stages:
                continue
            for response in by_activity.get(activity.id, []):
                score = rating(response.value)
                known = stages[stage].get(response.username)
                if score is not None and (known is None or response.updated_at > known[1]):
                    stages[stage][response.username] = (score, response.updated_at)
        both = sorted(set(stages["start"]) & set(stages["end"]))
        pairs = [(stages["start"][u][0], stages["end"][u][0]) for u in both]
        movements.append(
            Movement(
                competency.id, competency.name, len(pairs),
                fmean(s for s, _ in pairs) if pairs else None, fmean(e for _, e in pairs) if pairs else None,
                sum(1 for s, e in pairs if e > s), sum(1 for s, e in pairs if e == s), sum(1 for s, e in pairs if e < s),
            )
        )

    usefulness = []
    for session in catalog.settings.sessions:
        counts = dict.fromkeys(USEFULNESS, 0)
        suggestions = []
        for activity in (a for a in closings if a.session_id == session.id):
            for response in by_activity.get(activity.id, []):
                value = response.value if isinstance(response.value, dict) else {}
                if value.get("useful") in counts:
                    counts[value["useful"]] += 1
                text = value.get("improve")
                if isinstance(text, str) and text.strip():
                    suggestions.append(text.strip())
        suggestions.sort(key=str.casefold)
        usefulness.append(Usefulness(session.id, session.number, session.title, counts, tuple(suggestions)))
    return CohortView(tuple(movements), tuple(usefulness))


# HTML -----------------------------------------------------------------------------

WIDTH, LEFT, RIGHT = 400, 24, 376  # the chart's scale runs from 1 at LEFT to 4 at RIGHT (viewBox units)


def _x(value: float) -> float:
    return LEFT + (value - SCALE_LOW) / (SCALE_HIGH - SCALE_LOW) * (RIGHT - LEFT)


def _mean(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"


def movement_label(m: Movement) -> str:
    """What the chart of one competency shows, in words (its aria-label)."""
    if not m.learners:
        return f"{m.name}: no learner has rated themselves at both the start and the end yet."
    return (
        f"{m.name}: mean self-rating {_mean(m.mean_start)} at the start and {_mean(m.mean_end)} at the end, on a scale of 1 to 4, "
        f"over {m.learners} learners; {m.rose} rose, {m.same} stayed the same, {m.fell} fell."
    )


def movement_svg(m: Movement) -> str:
    """One competency's movement on the 1 to 4 scale: a hollow dot at the mean start, a filled dot at the mean end."""
    ticks = "".join(
        f'<line x1="{_x(n):.1f}" y1="34" x2="{_x(n):.1f}" y2="44" stroke="#57606a" stroke-width="2"/>'
        f'<text x="{_x(n):.1f}" y="66" text-anchor="middle" font-size="19" fill="#1f2328">{n}</text>'
        for n in range(SCALE_LOW, SCALE_HIGH + 1)
    )
    marks = ""
    if m.learners:
        start, end = _x(m.mean_start), _x(m.mean_end)
        marks = (
            f'<line x1="{start:.1f}" y1="20" x2="{end:.1f}" y2="20" stroke="#1d4f91" stroke-width="5"/>'
            f'<circle cx="{start:.1f}" cy="20" r="9" fill="#ffffff" stroke="#1f2328" stroke-width="3"/>'
            f'<circle cx="{end:.1f}" cy="20" r="9" fill="#1d4f91" stroke="#1d4f91" stroke-width="3"/>'
        )
    return (
        f'<svg class="companion-coach-growth-svg" viewBox="0 0 {WIDTH} 72" role="img" aria-label="{escape(movement_label(m))}" '
        f'focusable="false"><line x1="{LEFT}" y1="39" x2="{RIGHT}" y2="39" stroke="#57606a" stroke-width="2"/>{ticks}{marks}</svg>'
    )


def growth_html(view: CohortView, who: str = "All cohorts") -> str:
    """The growth chart (one row per competency) and the same numbers as a table."""
    if not view.movements:
        return "<p>The course has no competencies.</p>"
    rows = "".join(
        f'<div class="companion-coach-growth-row"><p class="companion-coach-growth-name">{escape(m.name)}'
        f'{"" if m.learners else " (no learner has both ratings yet)"}</p>{movement_svg(m)}</div>'
        for m in view.movements
    )
    legend = (
        '<p class="companion-coach-growth-legend">Mean self-rating on a scale of 1 (Beginning) to 4 (Leading), over the learners who '
        "rated themselves at both the start and the end of the series: hollow dot the start, filled dot the end.</p>"
    )
    body = "".join(
        f'<tr><th scope="row">{escape(m.name)}</th><td class="num" data-label="Learners with both">{m.learners:,}</td>'
        f'<td class="num" data-label="Mean at start">{_mean(m.mean_start)}</td><td class="num" data-label="Mean at end">{_mean(m.mean_end)}</td>'
        f'<td class="num" data-label="Rose">{m.rose:,}</td><td class="num" data-label="Same">{m.same:,}</td>'
        f'<td class="num" data-label="Fell">{m.fell:,}</td></tr>'
        for m in view.movements
    )
    table = (
        f'<table class="companion-coach-growth-table"><caption>Self-ratings from start to end: {escape(who)}</caption><thead><tr>'
        '<th scope="col">Competency</th><th scope="col">Learners with both</th><th scope="col">Mean at start</th>'
        '<th scope="col">Mean at end</th><th scope="col">Rose</th><th scope="col">Same</th><th scope="col">Fell</th>'
        f"</tr></thead><tbody>{body}</tbody></table>"
    )
    return f'<div class="companion-coach-growth">{legend}{rows}</div>{table}'


def usefulness_html(view: CohortView, who: str = "All cohorts", listed: int = LISTED) -> str:
    """Each session's usefulness answers as counts, and its first ``listed`` suggestions, without names."""
    head = "".join(f'<th scope="col">{escape(answer)}</th>' for answer in USEFULNESS)
    body = "".join(
        f'<tr><th scope="row">Session {u.number}: {escape(u.title)}</th>'
        + "".join(f'<td class="num" data-label="{escape(answer)}">{u.counts[answer]:,}</td>' for answer in USEFULNESS)
        + f'<td class="num" data-label="Answered">{u.answered:,}</td></tr>'
        for u in view.usefulness
    )
    parts = [
        f'<table class="companion-coach-usefulness"><caption>How useful each session was: {escape(who)} (how many gave each answer)</caption>'
        f'<thead><tr><th scope="col">Session</th>{head}<th scope="col">Answered</th></tr></thead><tbody>{body}</tbody></table>'
    ]
    for u in view.usefulness:
        if u.suggestions:
            items = "".join(f"<li>{escape(text)}</li>" for text in u.suggestions[:listed])
            more = len(u.suggestions) - listed
            parts.append(
                f'<h4>Suggestions for session {u.number} ({len(u.suggestions):,}, without names)</h4>'
                f'<ul class="companion-coach-suggestions">{items}</ul>'
                + (f"<p>and {more:,} more (the first {listed}, in alphabetical order, are listed).</p>" if more > 0 else "")
            )
        else:
            parts.append(f"<h4>Suggestions for session {u.number}</h4><p>None yet.</p>")
    return "".join(parts)
