"""The learner's "My growth and goals" page: self-ratings start and end, goals and their check-ins, feedback.

The server renders it from a one-cell notebook (``growth.ipynb``, at ``/growth``)::

    from companion.growth import Growth
    Growth()

Session 6 asks supervisors to compare where they rated themselves at the start
of the series with where they stand at its end, and the agency's evaluation
system asks for goals that are checked on and coached (seed 000). This page puts
those in one place, for the learner alone:

- their start and end self-ratings per competency, drawn as a chart (an inline
  SVG with ``role="img"`` and an ``aria-label`` that says every number), and per
  statement in a table (start, end, change), saying plainly what is not rated yet;
- each goal with its success measure, target date, the feedback on it and its
  history of dated check-ins, with a form to add a check-in at any time, during
  or after the series (:meth:`companion.store.Coaching.add_check_in`);
- the feedback their facilitators wrote, newest first, what came since their last
  visit marked "New" (the visit is remembered only after the page is drawn);
- their whole journal to download (:func:`companion.exports.journal`).

The home page's "New feedback on 2 reflections" line comes from
:func:`new_feedback_summary`. Identity is the home page's: an invalid link shows
"We could not tell who you are" and nothing else. Everything a person wrote is
escaped, never rendered as HTML.
"""

from __future__ import annotations

import base64
import time
from datetime import date
from html import escape

import ipywidgets as widgets

from . import identity, paths
from .activities import _query_string, local_time, signed_in_html
from .activities.page import PRIVACY_NOTE
from .activities.ratings import SCALE, statement_ratings
from .activities.writing import Goal, goal_privacy
from .catalog import Activity, Catalog, load_catalog
from .errors import CourseError, ExportError, StoreError
from .exports import journal
from .settings import load_settings
from .hub.client import page_store
from .store import CheckIn, Feedback, Store

NOT_RATED = "not rated yet"
# A data: link longer than this (about 2 MB) is refused by browsers; the page then says what to do instead.
MAX_DOWNLOAD_CHARS = 2_000_000
# The chart: bars on the 1-4 scale in percent of its width, beside a label column of this many pixels.
LABEL_PX = 56
BAR_PERCENT = 17  # per scale point, so 4 (Leading) reaches 68 %

DOUBLE_CLICK_SECONDS = 2.0  # a second "Add check-in" with an empty note this soon is the same click twice


def _number(value: float | None) -> str:
    """A rating for people: ``3``, ``2.5``, ``2.75``; None is "not rated yet"."""
    return NOT_RATED if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def _mean(ratings: list) -> float | None:
    """The average of a stage's ratings, once every statement has one (as the saved ``score``); else None."""
    rated = [r for r in ratings if isinstance(r, int) and 1 <= r <= 4]
    return round(sum(rated) / len(rated), 2) if rated and len(rated) == len(ratings) else None


def _average_text(ratings: list, mean: float | None) -> str:
    """The average in words: the number, "2 of 4 statements rated" while some wait, or "not rated yet"."""
    rated = sum(r is not None for r in ratings)
    if mean is None and rated:
        return f"{rated} of {len(ratings)} statements rated"
    return _number(mean)


def _change(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "no comparison yet"
    delta = round(end - start, 2)
    if delta == 0:
        return "no change"
    return ("+" if delta > 0 else "−") + _number(abs(delta))


# What a learner is told about feedback --------------------------------------------------------


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def new_feedback_summary(store: Store, catalog: Catalog, username: str, unseen: list[Feedback] | None = None) -> str | None:
    """"New feedback on 2 reflections" / "on 1 goal" / "on 1 reflection and 1 goal", or None when nothing is new.

    Counts the items answered, not the messages: two replies on one reflection are
    one reflection; feedback on a goal's check-in counts under that goal. ``unseen``
    is :meth:`~companion.store.Coaching.unseen_feedback` when the caller has it already."""
    goals, reflections = set(), set()
    for item in store.unseen_feedback(username) if unseen is None else unseen:
        activity = catalog.find(item.activity_id)
        (goals if item.check_in is not None or (activity and activity.kind == "Goal") else reflections).add(item.activity_id)
    parts = [_plural(len(reflections), "reflection")] if reflections else []
    parts += [_plural(len(goals), "goal")] if goals else []
    return f"New feedback on {' and '.join(parts)}" if parts else None


def _feedback_html(items: list[Feedback], heading: str = "Feedback from your facilitator") -> str:
    if not items:
        return ""
    quotes = "".join(
        f'<blockquote><p class="companion-feedback-text">{escape(item.text)}</p>'
        f"<footer>{escape(item.author)}, {local_time(item.at, 'date')}</footer></blockquote>"
        for item in items
    )
    return f'<div class="companion-feedback"><p class="companion-feedback-heading"><strong>{escape(heading)}</strong></p>{quotes}</div>'


# Self-ratings ------------------------------------------------------------------------------------


def ratings_by_competency(store: Store, catalog: Catalog, username: str) -> list[dict]:
    """Per competency: its name, statements, the learner's start and end ratings (None where not rated), and
    each stage's mean once every statement is rated (:func:`companion.activities.ratings.statement_ratings`)."""
    rows = statement_ratings(catalog, store.responses(username))
    return [{**row, "start_mean": _mean(row["start"]), "end_mean": _mean(row["end"])} for row in rows]


def chart_label(rows: list[dict]) -> str:
    """The chart in words, for a screen reader: every competency's start and end."""
    parts = [
        f"{row['name']}: start {_average_text(row['start'], row['start_mean'])}, end {_average_text(row['end'], row['end_mean'])}"
        for row in rows
    ]
    return "Your average self-rating per competency, from 1 (Beginning) to 4 (Leading), at the start and the end of the series. " + "; ".join(parts) + "."


def chart_svg(rows: list[dict]) -> str:
    """Per competency a start bar and an end bar on the 1-4 scale, labelled with their numbers.

    Bars are sized in percent of the chart's width and text in pixels, so the
    chart fills a laptop's column and a phone's screen with its type at full size."""
    axis = 26
    block = 92
    height = axis + block * len(rows)
    parts = [
        f'<g transform="translate({LABEL_PX},0)" class="companion-axis">'
        f'<line class="companion-baseline" x1="0" x2="0" y1="{axis - 4}" y2="{height}" />'
    ]
    for point in range(1, 5):
        x = f"{BAR_PERCENT * point}%"
        parts.append(f'<line x1="{x}" x2="{x}" y1="{axis - 4}" y2="{height}" />')
        parts.append(f'<text x="{x}" y="17" text-anchor="middle">{point}</text>')
    parts.append("</g>")
    for index, row in enumerate(rows):
        top = axis + block * index
        parts.append(f'<text class="companion-chart-name" x="0" y="{top + 20}">{escape(row["name"])}</text>')
        for offset, stage in ((30, "start"), (58, "end")):
            y = top + offset
            score = row[f"{stage}_mean"]
            parts.append(f'<text x="0" y="{y + 17}">{stage.capitalize()}</text>')
            if score is None:
                words = _average_text(row[stage], None)
                parts.append(f'<text class="companion-chart-missing" x="{LABEL_PX + 6}" y="{y + 17}">{words}</text>')
                continue
            width = f"{BAR_PERCENT * score:.2f}%"
            parts.append(
                f'<g transform="translate({LABEL_PX},0)"><rect class="companion-bar-{stage}" x="0" y="{y + 2}" width="{width}" height="20" />'
                f'<text x="{width}" dx="6" y="{y + 18}">{_number(score)}</text></g>'
            )
    return (
        f'<svg class="companion-growth-chart" role="img" aria-label="{escape(chart_label(rows))}" '
        f'width="100%" height="{height}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )


def ratings_table(row: dict) -> str:
    """One competency's statements with the start and end rating of each, and the change."""
    body = []
    for statement, start, end in zip(row["statements"], row["start"], row["end"]):
        body.append(
            f'<tr><th scope="row">{escape(statement)}</th><td data-label="Start">{_number(start)}</td>'
            f'<td data-label="End">{_number(end)}</td><td data-label="Change">{_change(start, end)}</td></tr>'
        )
    average = (
        f'<tr class="companion-average"><th scope="row">Average</th><td data-label="Start">{_average_text(row["start"], row["start_mean"])}</td>'
        f'<td data-label="End">{_average_text(row["end"], row["end_mean"])}</td><td data-label="Change">{_change(row["start_mean"], row["end_mean"])}</td></tr>'
    )
    return (
        f'<table class="companion-ratings"><caption>{escape(row["name"])}: your rating of each statement</caption>'
        '<thead><tr><th scope="col">Statement</th><th scope="col">Start</th><th scope="col">End</th><th scope="col">Change</th></tr></thead>'
        f"<tbody>{''.join(body)}{average}</tbody></table>"
    )


def ratings_html(rows: list[dict], settings, query: str) -> str:
    scale = ", ".join(SCALE).replace(" - ", " ")
    parts = [
        '<h2 id="companion-ratings">My self-ratings, start and end</h2>',
        "<p>You rate yourself on each competency's statements at the start of the series and again at its end. "
        f"The scale is {escape(scale)}. The chart shows your average per competency; the tables show each statement.</p>",
    ]
    missing = []
    for stage, words in (("start", "at the start"), ("end", "at the end")):
        places = {row["where"][stage].session_id for row in rows if stage in row["where"] and any(r is None for r in row[stage])}
        for session_id in sorted(places):
            session = settings.session(session_id)
            missing.append(
                f"Some statements are not rated yet {words}: rate them in "
                f'<a href="{escape(paths.session_link(session, query))}">Session {session.number}: {escape(session.title)}</a>.'
            )
    parts += [f'<p class="companion-note">{line}</p>' for line in missing]
    parts.append(f"<figure>{chart_svg(rows)}<figcaption>Start and end, per competency, on the scale from 1 to 4.</figcaption></figure>")
    for row in rows:
        if any(r is not None for r in row["start"] + row["end"]):
            parts.append(ratings_table(row))
        else:
            parts.append(f'<p class="companion-unrated"><strong>{escape(row["name"])}</strong>: not rated yet, at the start or the end.</p>')
    return "".join(parts)


# Goals -------------------------------------------------------------------------------------------


def _date_text(iso: str | None) -> str:
    """A goal's target date for people (``01 Mar 2027``), or "not set yet"."""
    try:
        return date.fromisoformat(iso).strftime("%d %b %Y") if iso else "not set yet"
    except (TypeError, ValueError):
        return escape(str(iso))


def check_ins_html(store: Store, username: str, goal_id: str, check_ins: list[CheckIn]) -> str:
    """A goal's history: every check-in, oldest first, each with its date, status, note and the feedback on it."""
    if not check_ins:
        return '<p class="companion-history-empty">No check-ins yet. Add one below whenever there is news on this goal.</p>'
    items = []
    for check_in in check_ins:
        note = f'<p class="companion-check-in-note">{escape(check_in.note)}</p>' if check_in.note.strip() else ""
        feedback = _feedback_html(store.feedback(username, goal_id, check_in=check_in.id), "Feedback on this check-in")
        items.append(
            f'<li class="companion-check-in"><p><strong>{escape(check_in.status)}</strong>, {local_time(check_in.at, "date")}</p>'
            f"{note}{feedback}</li>"
        )
    return f'<ol class="companion-history">{"".join(items)}</ol>'


class GoalCheckIns(widgets.VBox):
    """One goal: what it is, how success is measured, its target date, its feedback and history, and a check-in form."""

    def __init__(self, store: Store, catalog: Catalog, username: str, activity: Activity, value: dict):
        super().__init__()
        self.add_class("companion-goal")
        self.store, self.username, self.activity = store, username, activity
        name = catalog.settings.competency(activity.competency).name if activity.competency else activity.title
        self.history_list = store.check_ins(username, activity.id)
        self.value = value
        status = self.history_list[-1].status if self.history_list else value.get("status") or "Not started"
        self.about = widgets.HTML(self._about_html(status))
        self.history = widgets.HTML(check_ins_html(store, username, activity.id, self.history_list))
        self.status = widgets.Dropdown(
            options=Goal.STATUSES, value=status if status in Goal.STATUSES else "Not started", description=f"Status of your {name} goal now"
        )
        self.note = widgets.Textarea(description="Note (optional): what you did, what changed, what comes next")
        self.note.add_class("companion-check-in-box")
        self.button = widgets.Button(description="Add check-in", button_style="primary", tooltip=f"Add a dated check-in on your {name} goal")
        self.message = widgets.HTML("")
        self._added = float("-inf")  # when this page last saved a check-in (monotonic seconds)
        self.button.on_click(lambda _: self.add())
        self.children = (self.about, self.history, self.status, self.note, self.button, self.message)

    def _about_html(self, status: str) -> str:
        """The goal, its success measure, target date and status now, and the feedback on the goal itself."""
        value = self.value
        details = [
            ("How I will know I met it", escape(str(value.get("measure") or "")) or "not written yet"),
            ("Target date", _date_text(value.get("target"))),
            ("Status now", escape(status)),
        ]
        progress = str(value.get("progress") or "").strip()
        if progress:
            details.append(("Progress noted with the goal", escape(progress)))
        rows = "".join(f"<dt>{label}</dt><dd>{text}</dd>" for label, text in details)
        feedback = _feedback_html(self.store.feedback(self.username, self.activity.id), "Feedback on this goal")
        return (
            f'<h3>{escape(self.activity.title)}</h3><p class="companion-goal-text">{escape(str(value.get("goal") or ""))}</p>'
            f"<dl>{rows}</dl>{feedback}<h4>Check-ins</h4>"
        )

    def add(self) -> None:
        """Save a dated check-in with the chosen status and note; show it in the history at once."""
        if not self.note.value.strip() and time.monotonic() - self._added < DOUBLE_CLICK_SECONDS:
            return  # the second click of a double click: the note box was just emptied by the first
        try:
            check_in = self.store.add_check_in(self.username, self.activity.session_id, self.activity.id, self.status.value, self.note.value)
        except StoreError as error:
            self.message.value = (
                f'<p class="companion-status companion-error" role="alert">{escape(str(error))} '
                "Your note is still in the box.</p>"
            )
            return
        self._added = time.monotonic()
        self.history_list.append(check_in)
        self.about.value = self._about_html(check_in.status)
        self.history.value = check_ins_html(self.store, self.username, self.activity.id, self.history_list)
        self.note.value = ""
        self.message.value = (
            f'<p class="companion-status" role="status">Check-in saved: {escape(check_in.status)}, {local_time(check_in.at, "datetime")}. '
            "It is in the history above.</p>"
        )


def goals_children(store: Store, catalog: Catalog, username: str, query: str) -> list[widgets.Widget]:
    """The goals section: the privacy sentence once, then each goal (or where to write it)."""
    saved = store.responses(username)
    parts: list[widgets.Widget] = [
        widgets.HTML(
            '<h2 id="companion-goals">My goals</h2>'
            f'<p class="companion-note">{escape(goal_privacy(catalog.settings))}</p>'
        )
    ]
    for activity in catalog.all_activities():
        if activity.kind != "Goal":
            continue
        response = saved.get(activity.id)
        value = response.value if response and isinstance(response.value, dict) else {}
        if str(value.get("goal") or "").strip():
            parts.append(GoalCheckIns(store, catalog, username, activity, value))
        else:
            session = catalog.settings.session(activity.session_id)
            box = widgets.HTML(
                f"<h3>{escape(activity.title)}</h3><p>Not written yet. Write it in "
                f'<a href="{escape(paths.session_link(session, query))}">Session {session.number}: {escape(session.title)}</a>; '
                "then you can check in on it here at any time.</p>"
            )
            box.add_class("companion-goal")
            parts.append(box)
    return parts


# Feedback and the journal --------------------------------------------------------------------------


def feedback_html(store: Store, catalog: Catalog, username: str, unseen: set[int | None]) -> str:
    """Everything facilitators wrote to the learner, newest first, each with what it answers; new ones marked."""
    received = store.feedback_received(username)
    heading = '<h2 id="companion-feedback">Feedback from your facilitator</h2>'
    if not received:
        return heading + "<p>No feedback yet. When a facilitator answers a reflection you shared, a goal or a check-in, it appears here.</p>"
    dates = {c.id: c.at for c in store.check_ins(username)}
    items = []
    for item in received:
        title = escape(catalog.title_of(item.activity_id))
        if item.check_in is not None:
            when = local_time(dates[item.check_in], "date") if item.check_in in dates else "an earlier date"
            about = f"your check-in of {when} on <strong>{title}</strong>"
        else:
            about = f"<strong>{title}</strong>"
        new = '<span class="companion-new">New</span> ' if item.id in unseen else ""
        items.append(
            f'<li class="companion-feedback-item"><p class="companion-feedback-on">{new}On {about}, '
            f"from {escape(item.author)}, {local_time(item.at, 'date')}</p>"
            f'<blockquote><p class="companion-feedback-text">{escape(item.text)}</p></blockquote></li>'
        )
    return heading + f'<ol class="companion-feedback-list">{"".join(items)}</ol>'


def journal_html(store: Store, catalog: Catalog, username: str) -> str:
    """The "Download my journal" link: the learner's journal (private reflections too) as a data: URI."""
    heading = '<h2 id="companion-journal">My journal</h2>'
    try:
        page = journal(store, catalog, username, "html", include_private=True)  # the learner's own copy: all of it
    except ExportError:
        return heading + "<p>Nothing to download yet: your reflections and goals appear in your journal once you write them.</p>"
    link = "data:text/html;charset=utf-8;base64," + base64.b64encode(page.encode("utf-8")).decode("ascii")
    if len(link) > MAX_DOWNLOAD_CHARS:
        return heading + (
            "<p>Your journal is too large to download from this page. Ask the administrator of this server for a copy "
            "(companion export journal --include-private); everything you wrote is kept.</p>"
        )
    return heading + (
        "<p>Everything you wrote in the series, your private reflections included, in one page you can keep.</p>"
        f'<p><a class="companion-journal-link" href="{link}" download="my-journal.html">Download my journal</a> '
        f"(HTML, {max(1, len(page.encode('utf-8')) // 1024)} KB)</p>"
    )


class Growth(widgets.VBox):
    """The learner's self-ratings start and end, goals with their check-ins, feedback received, and journal."""

    def __init__(self):
        super().__init__()
        self.add_class("companion-growth")
        settings = load_settings()
        header = widgets.HTML(f"<h1>My growth and goals</h1><p>{escape(settings.title)}</p>")
        try:
            store = page_store(settings)
            catalog = load_catalog(settings)
            query = _query_string()
            who = identity.current(settings.home, query)
        except CourseError as error:
            self.children = (
                header,
                widgets.HTML(
                    '<div class="companion-error" role="alert"><h2>We could not tell who you are</h2>'
                    f"<p>{escape(str(error))}</p></div>"
                ),
            )
            return
        self.username = who.username
        unseen = store.unseen_feedback(who.username)
        top = [
            f'<p class="companion-signed-in">{signed_in_html(store, who)} '
            f'<a class="companion-home-link" href="{escape(paths.home_link(query))}">Back to my sessions</a></p>',
            f'<p class="companion-note companion-privacy">{escape(PRIVACY_NOTE)}</p>',
        ]
        summary = new_feedback_summary(store, catalog, who.username, unseen)
        if summary:
            top.append(f'<p class="companion-new-feedback"><a href="#companion-feedback">{escape(summary)}</a>: see below.</p>')
        header.value += "".join(top)
        goals = goals_children(store, catalog, who.username, query)
        self.goals = [w for w in goals if isinstance(w, GoalCheckIns)]
        self.children = (
            header,
            widgets.HTML(ratings_html(ratings_by_competency(store, catalog, who.username), settings, query)),
            *goals,
            widgets.HTML(feedback_html(store, catalog, who.username, {item.id for item in unseen})),
            widgets.HTML(journal_html(store, catalog, who.username)),
        )
        # Seen only now that the page is drawn (so this visit could mark what is new), and only up to the newest
        # item shown: feedback written while the page was being drawn stays new for the next visit.
        if unseen:
            store.mark_feedback_seen(who.username, at=max(item.at for item in unseen))
