"""The coaching half of a learner's record: goals in full, self-ratings start and end, and feedback boxes.

Goals and self-ratings are never private (the store's
:meth:`~companion.store.Store.facilitator_view` returns them whole when named
in ``visible``); reflections come only when the learner shared them. Each goal
shows its success measure, target date, status and the dated history of its
check-ins, with a feedback box on the goal and on each check-in. A failed send
(:class:`~companion.errors.StoreError`: empty, too long, NUL) says why and keeps
the text in the box.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from html import escape
from typing import Callable

import ipywidgets as widgets

from ..activities.ratings import SCALE, statement_ratings
from ..catalog import Activity, Catalog
from ..errors import CourseError
from ..store import CheckIn, Feedback, Response, Store


def _date(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).strftime("%d %b %Y") if moment else "never"


def _target(text) -> str:
    try:
        return date.fromisoformat(str(text)).strftime("%d %b %Y")
    except ValueError:
        return "not set"


def visible_ids(catalog: Catalog) -> frozenset[str]:
    """The activities a facilitator reads whole: goals and self-ratings (never private)."""
    return frozenset(a.id for a in catalog.all_activities() if a.kind in ("Goal", "SelfAssessment"))


@dataclass(frozen=True)
class GoalRecord:
    activity: Activity
    value: dict
    check_ins: tuple[CheckIn, ...]  # oldest first
    feedback: tuple[Feedback, ...]  # on the goal itself, oldest first
    check_in_feedback: dict[int, tuple[Feedback, ...]]  # by check-in id


@dataclass(frozen=True)
class RatingRow:
    statement: str
    start: int | None
    end: int | None


@dataclass(frozen=True)
class RatingTable:
    competency: str
    name: str
    rows: tuple[RatingRow, ...]


def goals_and_ratings(store: Store, catalog: Catalog, username: str, seen: list[Response]) -> tuple[list[GoalRecord], list[RatingTable]]:
    """The learner's saved goals (with check-ins and feedback) and statement ratings, from ``facilitator_view`` rows."""
    saved = {r.activity_id: r for r in seen}
    check_ins: dict[str, list[CheckIn]] = {}
    for item in store.check_ins(username):
        check_ins.setdefault(item.activity_id, []).append(item)
    given: dict[tuple[str, int | None], list[Feedback]] = {}
    for item in reversed(store.feedback_received(username)):  # oldest first
        given.setdefault((item.activity_id, item.check_in), []).append(item)

    goals = []
    for activity in catalog.all_activities():
        response = saved.get(activity.id)
        if activity.kind != "Goal" or response is None or not isinstance(response.value, dict):
            continue
        if not str(response.value.get("goal") or "").strip():
            continue
        history = tuple(check_ins.get(activity.id, ()))
        goals.append(
            GoalRecord(activity, response.value, history, tuple(given.get((activity.id, None), ())),
                       {c.id: tuple(given.get((activity.id, c.id), ())) for c in history})
        )

    tables = [
        RatingTable(row["id"], row["name"], tuple(RatingRow(text, *pair) for text, pair in zip(row["statements"], zip(row["start"], row["end"]))))
        for row in statement_ratings(catalog, saved)
        if any(row["start"]) or any(row["end"])
    ]
    return goals, tables


def _rated(value: int | None) -> str:
    return SCALE[value - 1] if value and 1 <= value <= len(SCALE) else "not rated"


def ratings_html(tables: list[RatingTable]) -> str:
    """Statement-level self-ratings, start and end side by side, one table per competency."""
    if not tables:
        return '<h4>Self-ratings, start and end</h4><p>No self-ratings saved yet.</p>'
    parts = ["<h4>Self-ratings, start and end</h4>"]
    for table in tables:
        body = "".join(
            f'<tr><th scope="row">{escape(row.statement)}</th><td data-label="Start">{escape(_rated(row.start))}</td>'
            f'<td data-label="End">{escape(_rated(row.end))}</td></tr>'
            for row in table.rows
        )
        parts.append(
            f'<table class="companion-coach-ratings"><caption>{escape(table.name)}</caption><thead><tr><th scope="col">Statement</th>'
            f'<th scope="col">Start</th><th scope="col">End</th></tr></thead><tbody>{body}</tbody></table>'
        )
    return "".join(parts)


def feedback_html(items) -> str:
    if not items:
        return ""
    parts = "".join(f"<blockquote><p>{escape(f.text)}</p><footer>{escape(f.author)}, {_date(f.at)}</footer></blockquote>" for f in items)
    return f'<div class="companion-feedback"><h5>Feedback sent</h5>{parts}</div>'


def goal_html(goal: GoalRecord) -> str:
    """A goal in full: the goal, its success measure, target date, status and progress note (all escaped)."""
    value = goal.value
    progress = str(value.get("progress") or "").strip()
    fields = [
        ("Goal", str(value.get("goal") or "")),
        ("Success measure", str(value.get("measure") or "").strip() or "not written yet"),
        ("Target date", _target(value.get("target"))),
        ("Status", str(value.get("status") or "Not started")),
    ] + ([("Progress update", progress)] if progress else [])
    lines = "".join(f'<p><strong>{name}:</strong> <span class="companion-coach-value">{escape(text)}</span></p>' for name, text in fields)
    return f'<h4 class="companion-coach-goal-title">{escape(goal.activity.title)}</h4><div class="companion-coach-goal">{lines}</div>'


def check_in_html(number: int, item: CheckIn) -> str:
    note = escape(item.note) if item.note.strip() else "(no note)"
    return f'<p class="companion-coach-check-in"><strong>Check-in {number}, {_date(item.at)}:</strong> {escape(item.status)}. {note}</p>'


def feedback_panel(label: str, button: str, given: list | tuple, send: Callable[[str], object],
                   reload: Callable[[], list], sent_text: str, on_sent: Callable[[], None] | None = None,
                   placeholder: str = "") -> widgets.VBox:
    """A labelled box and a send button; a refused send says why and keeps the text, a sent one clears it."""
    shown = widgets.HTML(feedback_html(given))
    box = widgets.Textarea(description=label, placeholder=placeholder)
    box.add_class("companion-text")
    go = widgets.Button(description=button, button_style="primary", layout=widgets.Layout(width="auto"))
    status = widgets.HTML("")

    def sent(_):
        try:
            send(box.value)
        except CourseError as error:
            status.value = (
                f'<span class="companion-status companion-error" role="status">Not sent: {escape(str(error))} '
                "Your text is still in the box.</span>"
            )
            return
        box.value = ""
        shown.value = feedback_html(reload())
        status.value = f'<span class="companion-status" role="status">{escape(sent_text)}</span>'
        if on_sent:
            on_sent()

    go.on_click(sent)
    panel = widgets.VBox([shown, box, go, status])
    panel.add_class("companion-coach-feedback-panel")
    return panel


def goals_widget(store: Store, author: str, username: str, goals: list[GoalRecord], on_sent: Callable[[], None] | None = None) -> widgets.VBox:
    """Every saved goal in full, its check-in history, and a feedback box on the goal and on each check-in."""
    children: list[widgets.Widget] = [widgets.HTML("<h4>Goals</h4>" + ("" if goals else "<p>No goals written yet.</p>"))]
    for goal in goals:
        gid, title = goal.activity.id, goal.activity.title
        part: list[widgets.Widget] = [widgets.HTML(goal_html(goal))]
        part.append(feedback_panel(
            f"Your feedback on the goal \u201c{title}\u201d", "Send feedback on this goal", goal.feedback,
            lambda text, gid=gid: store.add_feedback(username, gid, author, text, goal=True),
            lambda gid=gid: store.feedback(username, gid), f"Feedback sent on this goal. {username} sees it on their growth and goals page.",
            on_sent,
        ))
        if not goal.check_ins:
            part.append(widgets.HTML("<p>No check-ins on this goal yet.</p>"))
        for number, item in enumerate(goal.check_ins, 1):
            check = widgets.VBox([
                widgets.HTML(check_in_html(number, item)),
                feedback_panel(
                    f"Your feedback on check-in {number} ({_date(item.at)}) of \u201c{title}\u201d", "Send feedback on this check-in",
                    goal.check_in_feedback.get(item.id, ()),
                    lambda text, gid=gid, cid=item.id: store.add_feedback(username, gid, author, text, check_in=cid),
                    lambda gid=gid, cid=item.id: store.feedback(username, gid, check_in=cid),
                    f"Feedback sent on this check-in. {username} sees it on their growth and goals page.", on_sent,
                ),
            ])
            check.add_class("companion-coach-check-in-panel")
            part.append(check)
        card = widgets.VBox(part)
        card.add_class("companion-activity")
        card.add_class("companion-coach-goal-record")
        children.append(card)
    return widgets.VBox(children)
