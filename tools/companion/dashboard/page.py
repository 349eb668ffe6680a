"""The dashboard page: the :class:`Dashboard` widget (the Voila app) and the HTML of its tables.

Served as ``/dashboard`` (``voila/render/dashboard.ipynb``, a one-cell notebook
``companion release`` writes). Anyone :func:`~.access.facilitator` refuses
gets a message (``role="alert"``) and the page reads no data. Everything a
learner or a roster wrote is escaped before it becomes HTML.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from typing import Callable

import ipywidgets as widgets

from .. import identity
from ..errors import CourseError
from . import coaching
from .access import facilitator
from .cohort import cohort_view, growth_html, usefulness_html
from .figures import LISTED, NO_COHORT, Figures, Group, RecordItem, Straggler, figures, learner_record
from .record import feedback_panel, goals_and_ratings, goals_widget, ratings_html, visible_ids

# Its look is in course/theme.css, the one stylesheet of every page. Each table cell carries the
# name of its column (data-label), which the cell shows on a phone, where each row is a block.


def _date(moment: datetime | None, never: str = "never") -> str:
    return moment.astimezone(timezone.utc).strftime("%d %b %Y") if moment else never


def _percent(fraction: float) -> str:
    return f"{round(100 * fraction)}%"


def _bar(fraction: float) -> str:
    return f'<span class="companion-bar" aria-hidden="true"><span style="width: {100 * fraction:.1f}%"></span></span>'


def chart_html(group: Group) -> str:
    """Completion by session for everyone or one cohort: a table with a bar and the numbers in text."""
    rows = "".join(
        f'<tr data-session="{escape(s.session_id)}"><th scope="row">Session {s.number}: {escape(s.title)}</th>'
        f'<td class="num" data-label="Complete">{s.complete:,}</td><td class="num" data-label="In progress">{s.in_progress:,}</td>'
        f'<td class="num" data-label="Not started">{s.not_started:,}</td>'
        f'<td data-label="Completion">{_bar(s.rate)}{_percent(s.rate)} complete</td></tr>'
        for s in group.sessions
    )
    return (
        f'<table class="companion-chart"><caption>Completion by session: {escape(group.label)} '
        f"({group.learners:,} supervisors)</caption><thead><tr><th scope=\"col\">Session</th>"
        '<th scope="col">Complete</th><th scope="col">In progress</th><th scope="col">Not started</th>'
        f'<th scope="col">Completion</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def series_html(group: Group) -> str:
    return (
        f'<p class="companion-series" role="status"><strong>{_percent(group.series_rate)}</strong> of supervisors '
        f"({group.series_complete:,} of {group.learners:,}, {escape(group.label.lower() if group.cohort is None else group.label)}) "
        "completed the series.</p>"
    )


def cohorts_html(figures: Figures, sessions) -> str:
    head = "".join(f'<th scope="col">Session {s.number}</th>' for s in sessions)
    rows = "".join(
        f'<tr><th scope="row">{escape(g.label)}</th><td class="num" data-label="Supervisors">{g.learners:,}</td>'
        + "".join(f'<td class="num" data-label="Session {s.number}">{_percent(s.rate)} ({s.complete:,})</td>' for s in g.sessions)
        + f'<td data-label="Series">{_bar(g.series_rate)}{_percent(g.series_rate)} ({g.series_complete:,})</td></tr>'
        for g in figures.cohorts
    )
    return (
        '<table class="companion-cohorts"><caption>Completion by cohort (percent of the cohort, and how many)</caption>'
        f'<thead><tr><th scope="col">Cohort</th><th scope="col">Supervisors</th>{head}<th scope="col">Series</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def stragglers_html(title: str, people: tuple[Straggler, ...], css: str, never: str, count: int | None = None) -> str:
    """A table of the first LISTED ``people``; ``count`` is how many there are in all (default: as many as given)."""
    count = len(people) if count is None else count
    if not count:
        return f'<h3>{escape(title)} (0)</h3><p class="{css}">Nobody.</p>'
    rows = "".join(
        f'<tr><td data-label="Name">{escape(p.name or p.username)}</td><td data-label="Username">{escape(p.username)}</td>'
        f'<td data-label="Cohort">{escape(p.cohort or NO_COHORT)}</td>'
        f'<td data-label="At">{"Session " + str(p.at_session) if p.at_session else ""}</td>'
        f'<td data-label="Last active">{_date(p.last_active, never)}</td></tr>'
        for p in people[:LISTED]
    )
    shown = min(len(people), LISTED)
    more = f"<p>and {count - shown:,} more.</p>" if count > shown else ""
    return (
        f'<table class="{css}"><caption>{escape(title)} ({count:,})</caption><thead><tr><th scope="col">Name</th>'
        '<th scope="col">Username</th><th scope="col">Cohort</th><th scope="col">At</th><th scope="col">Last active</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>{more}"
    )


class CheckedStore:
    """The store as one facilitator's page uses it: each feedback sent first checks they still may."""

    def __init__(self, store, check: Callable[[], None]):
        self._store, self._check = store, check

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def add_feedback(self, *args, **kwargs):
        self._check()
        return self._store.add_feedback(*args, **kwargs)


class Dashboard(widgets.VBox):
    """The facilitator dashboard (served from a one-cell notebook)::

        from companion.dashboard import Dashboard
        Dashboard()
    """

    def __init__(self):
        super().__init__()
        self.add_class("companion-dashboard")
        from ..activities import _query_string
        from ..catalog import load_catalog
        from ..settings import load_settings
        from ..store import open_store

        self.facilitator: str | None = None
        try:
            self.settings = load_settings()
            # What does not depend on who is asking is done before a preheated kernel waits for its request.
            store = open_store(self.settings.db_url)
            catalog = load_catalog(self.settings)
            self.query = _query_string()
            self.facilitator = facilitator(self.settings, self.query)
        except CourseError as error:
            self.children = (
                widgets.HTML(
                    '<div class="companion-error" role="alert"><h2>This dashboard is for facilitators</h2>'
                    f"<p>{escape(str(error))}</p></div>"
                ),
            )
            return
        self.store, self.catalog = CheckedStore(store, self.authorised), catalog
        self.figures: Figures | None = None
        self.header = widgets.HTML(
            '<h1>Facilitator dashboard</h1><p class="companion-signed-in">Signed in as facilitator '
            f"<strong>{escape(self.facilitator)}</strong>. You see who has done what, learners' goals and self-ratings, "
            "and the text of only the reflections learners chose to share with you.</p>"
        )
        self.refresh_button = widgets.Button(
            description="Refresh figures", tooltip="Read the figures again from the store", layout=widgets.Layout(width="auto")
        )
        self.refresh_button.on_click(lambda _: self.refresh())
        self.series = widgets.HTML()
        wide = {"description_width": "initial"}
        self.cohort = widgets.Dropdown(description="Show cohort", options=[("All cohorts", 0)], value=0, style=wide)
        self.cohort.observe(lambda _: (self._show_chart(), self._show_cohort_view()), "value")
        self.chart = widgets.HTML()
        self.cohorts = widgets.HTML()
        self.stragglers = widgets.HTML()
        self.queue = widgets.VBox()
        self.growth = widgets.HTML()
        self.usefulness = widgets.HTML()
        self.who = widgets.Text(description="Learner username", placeholder="e.g. ana", style=wide)
        self.who.add_class("companion-who")
        self.show = widgets.Button(description="Show record", button_style="primary")
        self.show.on_click(lambda _: self.open_record(self.who.value.strip()))
        self.record = widgets.VBox()
        finder = widgets.HBox([self.who, self.show])
        finder.add_class("companion-row")
        section = widgets.VBox(
            [widgets.HTML("<h2>One learner's record</h2>"), finder, self.record]
        )
        section.add_class("companion-activity")
        self.children = (
            self.header,
            self.refresh_button,
            widgets.HTML("<h2>Completion</h2>"),
            self.series,
            self.cohort,
            self.chart,
            self.cohorts,
            widgets.HTML("<h2>Waiting for feedback</h2>"),
            self.queue,
            section,
            widgets.HTML("<h2>Who needs a nudge</h2>"),
            self.stragglers,
            widgets.HTML("<h2>How self-ratings moved from start to end</h2>"),
            self.growth,
            widgets.HTML("<h2>How useful each session was</h2>"),
            self.usefulness,
        )
        self.refresh()

    # Who may act -------------------------------------------------------------

    def authorised(self) -> None:
        """Check, at the moment of each action, that this facilitator still may: course.toml is read again,
        so a name taken off the list (or a link past its date) stops working at once, whatever the kernel
        read when the page opened. Raises LinkError; the page then shows why and nothing more."""
        from ..settings import load_settings

        try:
            facilitator(load_settings(self.settings.root), self.query)
        except CourseError as error:
            self.children = (
                widgets.HTML(
                    '<div class="companion-error" role="alert"><h2>This dashboard is closed to you now</h2>'
                    f"<p>{escape(str(error))}</p></div>"
                ),
            )
            raise

    def _allowed(self) -> bool:
        try:
            self.authorised()
        except CourseError:
            return False
        return True

    # Overview -----------------------------------------------------------------

    def refresh(self) -> None:
        """Compute the figures again and show them."""
        if not self._allowed():
            return
        self.figures = figures(self.store, self.catalog)
        groups = [("All cohorts", 0)] + [(g.label, n) for n, g in enumerate(self.figures.cohorts, 1)]
        chosen = self.cohort.value if self.cohort.value < len(groups) else 0
        self.cohort.options = groups
        self.cohort.value = chosen
        self._show_chart()
        self.cohorts.value = cohorts_html(self.figures, self.catalog.settings.sessions)
        self.stragglers.value = (
            stragglers_html(
                "Not started", self.figures.not_started, "companion-not-started", "never opened a session", self.figures.not_started_count
            )
            + stragglers_html(
                f"Stalled: no activity for {self.figures.stalled_days} days or more",
                self.figures.stalled, "companion-stalled", "never", self.figures.stalled_count,
            )
        )
        self._show_queue()
        self._show_cohort_view()

    def _group(self) -> Group:
        index = self.cohort.value or 0
        return self.figures.overall if index == 0 else self.figures.cohorts[index - 1]

    def _show_chart(self) -> None:
        if self.figures is None:
            return
        group = self._group()
        self.series.value = series_html(group)
        self.chart.value = chart_html(group)

    def _show_queue(self) -> None:
        """The queue of what waits for feedback (oldest first, the first LISTED), its count and the median time to reply."""
        waiting = coaching.queue(self.store, self.catalog)
        median = coaching.median_text(coaching.median_hours(self.store))
        rows: list[widgets.Widget] = [
            widgets.HTML(
                f'<p class="companion-queue-count" role="status"><strong>{escape(coaching.count_text(waiting.count))}</strong></p>'
                f'<p class="companion-median">{escape(median)}.</p>'
            )
        ]
        for item in waiting.items:
            button = widgets.Button(
                description=f"Answer: open {item.learner}'s record", tooltip=f"{item.learner}: {item.what}", layout=widgets.Layout(width="auto")
            )
            button.on_click(lambda _, who=item.username: self._answer(who))
            row = widgets.VBox([widgets.HTML(coaching.item_html(item)), button])
            row.add_class("companion-queue-row")
            rows.append(row)
        if waiting.count > len(waiting.items):
            rows.append(widgets.HTML(coaching.more_text(waiting)))
        self.queue.children = tuple(rows)

    def _answer(self, username: str) -> None:
        """Open the learner's record below the queue and move the keyboard focus to it."""
        self.open_record(username)
        self.who.focus()

    def _show_cohort_view(self) -> None:
        """Growth per competency and usefulness per session, for the cohort chosen above (or everyone)."""
        if self.figures is None:
            return
        group = self._group()
        members = None
        if group.cohort is not None:
            members = {learner.username for learner in self.store.learners() if (learner.cohort or "") == group.cohort}
        view = cohort_view(self.store, self.catalog, members)
        self.growth.value = growth_html(view, group.label)
        self.usefulness.value = usefulness_html(view, group.label)

    # One learner ----------------------------------------------------------------

    def open_record(self, username: str) -> None:
        """Show one learner's record: goals in full (with check-ins), self-ratings start and end, progress, what is
        done, and their shared reflections; a feedback box on each goal, check-in and shared reflection."""
        if not self._allowed():
            return
        self.who.value = username
        if not identity.valid_username(username):
            self.record.children = (widgets.HTML('<p class="companion-error" role="status">Type a learner\'s username first.</p>'),)
            return
        record = learner_record(self.store, self.catalog, username)
        if record is None:
            self.record.children = (
                widgets.HTML(f'<p class="companion-error" role="status">No learner with the username {escape(username)}.</p>'),
            )
            return
        learner = record.learner
        parts = [
            f'<h3 class="companion-record-name">{escape(learner.name or learner.username)} ({escape(learner.username)})</h3>'
            f"<p>Cohort: {escape(learner.cohort or NO_COHORT)}. Department: {escape(learner.department or 'not given')}. "
            f"Last active: {_date(record.last_active)}.</p>"
        ]
        children: list[widgets.Widget] = [widgets.HTML("".join(parts))]
        goals, ratings = goals_and_ratings(
            self.store, self.catalog, username, self.store.facilitator_view(username, visible=visible_ids(self.catalog))
        )
        children.append(goals_widget(self.store, self.facilitator, username, goals, on_sent=self._show_queue))
        children.append(widgets.HTML(ratings_html(ratings)))
        children.append(widgets.HTML("<h4>Sessions, and every reflection shared</h4>"))
        for session, progress in zip(self.catalog.settings.sessions, record.progress):
            items = record.items[session.id]
            done = ", completed " + _date(progress.completed_at) if progress.completed_at else ""
            lines = "".join(self._item_html(item) for item in items)
            children.append(
                widgets.HTML(
                    f'<h4 data-session="{escape(session.id)}">Session {session.number}: {escape(session.title)} &mdash; '
                    f"{progress.status.capitalize()} ({progress.done} of {progress.required} required activities done{done})</h4>"
                    f"<ul>{lines}</ul>"
                )
            )
            for item in items:
                if item.text is not None:
                    children.append(self._feedback_box(learner.username, item))
        self.record.children = tuple(children)

    @staticmethod
    def _item_html(item: RecordItem) -> str:
        state = "Done" if item.done else ("Saved, not done" if item.updated_at else "Not done")
        if item.activity.kind == "Reflection" and item.updated_at:
            state += ", shared (below)" if item.shared else ', <span class="companion-private">private: not shared</span>'
        return f"<li>{escape(item.activity.title)} &mdash; {state}</li>"

    def _feedback_box(self, username: str, item: RecordItem) -> widgets.VBox:
        """A shared reflection's text and its feedback panel (the same panel goals and check-ins have)."""
        shown = widgets.HTML(
            f'<h4>Shared: {escape(item.activity.title)}</h4><div class="companion-reflection-text">{escape(item.text or "")}</div>'
        )
        feedback = feedback_panel(
            "Your feedback", "Send feedback", item.feedback,
            lambda text: self.store.add_feedback(username, item.activity.id, self.facilitator, text),
            lambda: self.store.feedback(username, item.activity.id),
            f"Feedback sent. {username} sees it under this reflection the next time they open the session.",
            on_sent=self._show_queue, placeholder=f"Feedback for {username} on this reflection",
        )
        panel = widgets.VBox([shown, feedback])
        panel.add_class("companion-activity")
        panel.add_class("companion-shared-reflection")
        return panel
