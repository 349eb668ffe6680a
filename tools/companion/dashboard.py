"""The facilitator dashboard: who is where, what learners shared, and feedback on it.

Two halves, read in this order:

- **figures** (no widgets): :func:`figures` gives completion by session and by
  cohort, the series completion rate, and who has not started or has stalled,
  from the store's per-session progress (kept under the completion rules of
  :mod:`companion.progress`); :func:`everyone_progress` is every learner's
  progress in full, for the exports;
  :func:`learner_record` is one learner's record as a facilitator may see it:
  what is done, and the text of only the reflections the learner shared.
- **the page**: :class:`Dashboard`, the Voila app served as
  ``voila/render/dashboard.ipynb`` (a one-cell notebook ``companion release``
  writes), with an accessible bar chart, the lists, a learner's record and a
  feedback box under each shared reflection.

Who may open it (:func:`facilitator`), by the mode the server runs in:

- **JupyterHub**: ``JUPYTERHUB_USER`` must be on ``[server] facilitators`` in
  ``course/course.toml``.
- **link** (and local): ``?facilitator=<key>``, a key signed with the server's
  secret for the purpose "facilitator" (``companion dashboard --name NAME``
  prints the link), so a learner's personal link never opens it. When the list
  is not empty, NAME must be on it too: taking a name off revokes its key.
- **local** only: the local learner (``COMPANION_LEARNER`` or the login) on the
  list opens it without a key.

Anyone else gets a message (``role="alert"``) and the page reads no data.
Everything a learner or a roster wrote is escaped before it becomes HTML.

Example::

    >>> from companion.dashboard import figures
    >>> numbers = figures(store, catalog)
    >>> f"{numbers.overall.series_rate:.0%} of supervisors completed the series"
    '89% of supervisors completed the series'
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html import escape
from typing import Mapping
from urllib.parse import quote

import ipywidgets as widgets

from . import identity
from .catalog import Activity, Catalog
from .errors import CourseError, LinkError
from .progress import SessionProgress, session_progress, session_rules
from .settings import Settings
from .store import Feedback, Learner, Store

DASHBOARD_PAGE = "dashboard"
STALLED_DAYS = 14  # started, not finished, and nothing done for this long: stalled
LISTED = 50  # people listed per table on the page (the count always covers everyone)
NO_COHORT = "(no cohort)"


# Figures ----------------------------------------------------------------------


def everyone_progress(store: Store, catalog: Catalog, learners: list[Learner] | None = None) -> dict[str, list[SessionProgress]]:
    """Every learner's progress in every session (course order), by username, from one grouped query.

    The same rules as :func:`companion.progress.learner_progress`, for everyone at once."""
    rules = session_rules(catalog)
    summaries = store.session_summaries(
        [a for rule in rules for a in rule.required], [rule.finishing for rule in rules if rule.finishing]
    )
    saved = {(username, session_id): (done, completed) for username, session_id, done, completed in summaries}
    sessions = catalog.settings.sessions
    return {
        learner.username: [
            SessionProgress(s.id, s.number, s.title, len(rule.required), *saved.get((learner.username, s.id), (0, None)))
            for s, rule in zip(sessions, rules)
        ]
        for learner in (store.learners() if learners is None else learners)
    }


@dataclass(frozen=True)
class SessionFigures:
    session_id: str
    number: int
    title: str
    learners: int
    complete: int
    in_progress: int

    @property
    def not_started(self) -> int:
        return self.learners - self.complete - self.in_progress

    @property
    def rate(self) -> float:
        """Completed, as a fraction of the learners (0 when there are none)."""
        return self.complete / self.learners if self.learners else 0.0


@dataclass(frozen=True)
class Group:
    """The figures of everyone (``cohort`` None) or of one cohort (``""`` is no cohort)."""

    cohort: str | None
    learners: int
    series_complete: int
    sessions: tuple[SessionFigures, ...]

    @property
    def label(self) -> str:
        return "All cohorts" if self.cohort is None else (self.cohort or NO_COHORT)

    @property
    def series_rate(self) -> float:
        return self.series_complete / self.learners if self.learners else 0.0


@dataclass(frozen=True)
class Straggler:
    """A learner who has not started, or has stalled: where they are and when they were last active."""

    username: str
    name: str
    cohort: str
    at_session: int | None  # the first session they have not completed
    last_active: datetime | None  # None: never opened a session page


@dataclass(frozen=True)
class Figures:
    overall: Group
    cohorts: tuple[Group, ...]
    not_started: tuple[Straggler, ...]  # no session started, by cohort then username (the first ones)
    stalled: tuple[Straggler, ...]  # started, not finished, inactive STALLED_DAYS or more; longest first (the first ones)
    stalled_days: int
    computed_at: datetime
    not_started_count: int  # everyone, however many the list holds
    stalled_count: int


def current_progress(store: Store, catalog: Catalog) -> None:
    """Make sure the store's per-session progress follows the notebooks' current rules.

    Pages keep it current as learners save; after the notebooks change which
    activities are required (or a bulk import), it is rebuilt here, once."""
    rules = session_rules(catalog)
    if store.progress_version() != (rules[0].version if rules else ""):
        store.rebuild_progress(rules)


def figures(
    store: Store, catalog: Catalog, now: datetime | None = None, stalled_days: int = STALLED_DAYS, listed: int | None = LISTED
) -> Figures:
    """Completion by session and cohort, the series rate, and who has not started or has stalled.

    A few grouped queries over the stored progress (one row per learner and
    session started), so the cost grows with the learners, not their answers.
    The lists hold the first ``listed`` people (None: everyone); the counts
    always cover everyone."""
    now = now or datetime.now(timezone.utc)
    current_progress(store, catalog)
    sessions = catalog.settings.sessions
    summary = store.progress_summary([s.id for s in sessions], now - timedelta(days=stalled_days), listed)
    counts: dict[str, dict[str, tuple[int, int]]] = {}
    for cohort, session_id, complete, in_progress in summary.session_counts:
        counts.setdefault(cohort, {})[session_id] = (complete, in_progress)

    def group(cohort: str | None, members: list[str]) -> Group:
        size = sum(summary.cohort_sizes.get(c, 0) for c in members)
        per_session = []
        for session in sessions:
            complete = sum(counts.get(c, {}).get(session.id, (0, 0))[0] for c in members)
            in_progress = sum(counts.get(c, {}).get(session.id, (0, 0))[1] for c in members)
            per_session.append(SessionFigures(session.id, session.number, session.title, size, complete, in_progress))
        return Group(cohort, size, sum(summary.series_complete.get(c, 0) for c in members), tuple(per_session))

    def people(rows) -> tuple[Straggler, ...]:
        first_open = lambda done: next((s.number for s in sessions if s.id not in done), None)  # noqa: E731
        return tuple(Straggler(username, name, cohort, first_open(done), active) for username, name, cohort, active, done in rows)

    names = sorted(summary.cohort_sizes, key=lambda c: (c == "", c.lower()))
    return Figures(
        overall=group(None, names),
        cohorts=tuple(group(cohort, [cohort]) for cohort in names),
        not_started=people(summary.not_started),
        stalled=people(summary.stalled),
        stalled_days=stalled_days,
        computed_at=now,
        not_started_count=summary.not_started_count,
        stalled_count=summary.stalled_count,
    )


@dataclass(frozen=True)
class RecordItem:
    """One activity in a learner's record. ``text`` is set only for a reflection the learner shared."""

    activity: Activity
    done: bool
    shared: bool
    text: str | None
    updated_at: datetime | None
    feedback: tuple[Feedback, ...] = ()


@dataclass(frozen=True)
class LearnerRecord:
    learner: Learner
    progress: tuple[SessionProgress, ...]
    items: dict[str, tuple[RecordItem, ...]]  # by session id, in notebook order
    last_active: datetime | None


def learner_record(store: Store, catalog: Catalog, username: str) -> LearnerRecord | None:
    """What a facilitator may see of one learner (None if there is no such learner).

    Built only from :meth:`Store.facilitator_view`, which never returns the value
    of anything the learner did not share."""
    learner = store.learner(username)
    if learner is None:
        return None
    saved = {r.activity_id: r for r in store.facilitator_view(username)}
    items: dict[str, tuple[RecordItem, ...]] = {}
    for session in catalog.settings.sessions:
        row = []
        for activity in catalog.activities(session.id):
            response = saved.get(activity.id)
            if activity.kind == "SessionComplete":
                continue
            shared = bool(response and response.shared)
            text = None
            if activity.kind == "Reflection" and shared and isinstance(response.value, dict):
                text = str(response.value.get("text", ""))
            feedback = tuple(store.feedback(username, activity.id)) if shared else ()
            row.append(
                RecordItem(activity, bool(response and response.done), shared, text, response.updated_at if response else None, feedback)
            )
        items[session.id] = tuple(row)
    progress = tuple(session_progress(catalog, s.id, saved) for s in catalog.settings.sessions)
    return LearnerRecord(learner, progress, items, learner.last_active)


# Who may open it --------------------------------------------------------------


def facilitator(settings: Settings, query: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The facilitator opening the dashboard; :class:`LinkError` says why this person may not."""
    allowed = settings.server.facilitators
    listed = "[server] facilitators in course/course.toml"
    hub_user = environ.get("JUPYTERHUB_USER")
    if hub_user:
        if hub_user in allowed:
            return hub_user
        raise LinkError(
            f"The facilitator dashboard is only for facilitators, and {hub_user} is not on the list of "
            f"facilitators ({listed}). Ask the course administrator to add you. Nothing is shown."
        )
    token = identity.token_from_query(query, identity.FACILITATOR_PARAMETER)
    if token:
        try:
            name = identity.verify(token, identity.server_secret(settings.home), purpose="facilitator")
        except LinkError as error:
            if str(error).startswith("This link expired"):
                raise LinkError("This facilitator link has expired. Ask the course administrator for a new one ('companion dashboard --name YOUR-NAME'). Nothing is shown.")
            raise LinkError(
                "This is not a valid facilitator link: it may have been copied incompletely, or it is a learner's "
                "link. Ask the course administrator for yours ('companion dashboard --name YOUR-NAME'). Nothing is shown."
            )
        if allowed and name not in allowed:
            raise LinkError(f"{name} is no longer on the list of facilitators ({listed}), so this link does not open the dashboard. Nothing is shown.")
        return name
    if environ.get("COMPANION_IDENTITY", "local") == "local":
        local = environ.get("COMPANION_LEARNER") or getpass.getuser()
        if local in allowed:
            return local
    raise LinkError(
        "The facilitator dashboard opens only with a facilitator link; a learner's personal link does not open it. "
        "Ask the course administrator for yours ('companion dashboard --name YOUR-NAME'). Nothing is shown."
    )


def facilitator_link(settings: Settings, base_url: str, name: str, days: float | None = None) -> str:
    """The dashboard's address with a signed facilitator key for ``name`` (what ``companion dashboard`` prints)."""
    allowed = settings.server.facilitators
    if allowed and name not in allowed:
        raise LinkError(
            f"{name} is not on the list of facilitators ([server] facilitators in course/course.toml: "
            f"{', '.join(allowed)}). Add them there first; a link for them would not open the dashboard."
        )
    token = identity.sign(name, identity.server_secret(settings.home), days or settings.server.link_days, purpose="facilitator")
    return f"{base_url.rstrip('/')}/{DASHBOARD_PAGE}?{identity.FACILITATOR_PARAMETER}={quote(token)}"


# The page -------------------------------------------------------------------------

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


def _feedback_html(items) -> str:
    if not items:
        return ""
    parts = "".join(
        f"<blockquote><p>{escape(f.text)}</p><footer>{escape(f.author)}, {_date(f.at)}</footer></blockquote>" for f in items
    )
    return f'<div class="companion-feedback"><h5>Feedback sent</h5>{parts}</div>'


class Dashboard(widgets.VBox):
    """The facilitator dashboard (served from a one-cell notebook)::

        from companion.dashboard import Dashboard
        Dashboard()
    """

    def __init__(self):
        super().__init__()
        self.add_class("companion-dashboard")
        from .activities import _query_string
        from .catalog import load_catalog
        from .settings import load_settings
        from .store import open_store

        self.facilitator: str | None = None
        try:
            self.settings = load_settings()
            # What does not depend on who is asking is done before a preheated kernel waits for its request.
            store = open_store(self.settings.db_url)
            catalog = load_catalog(self.settings)
            self.facilitator = facilitator(self.settings, _query_string())
        except CourseError as error:
            self.children = (
                widgets.HTML(
                    '<div class="companion-error" role="alert"><h2>This dashboard is for facilitators</h2>'
                    f"<p>{escape(str(error))}</p></div>"
                ),
            )
            return
        self.store, self.catalog = store, catalog
        self.figures: Figures | None = None
        self.header = widgets.HTML(
            '<h1>Facilitator dashboard</h1><p class="companion-signed-in">Signed in as facilitator '
            f"<strong>{escape(self.facilitator)}</strong>. You see who has done what, and the text of only the "
            "reflections learners chose to share with you.</p>"
        )
        self.refresh_button = widgets.Button(
            description="Refresh figures", tooltip="Read the figures again from the store", layout=widgets.Layout(width="auto")
        )
        self.refresh_button.on_click(lambda _: self.refresh())
        self.series = widgets.HTML()
        wide = {"description_width": "initial"}
        self.cohort = widgets.Dropdown(description="Show cohort", options=[("All cohorts", 0)], value=0, style=wide)
        self.cohort.observe(lambda _: self._show_chart(), "value")
        self.chart = widgets.HTML()
        self.cohorts = widgets.HTML()
        self.stragglers = widgets.HTML()
        self.shared = widgets.VBox()
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
            widgets.HTML("<h2>Who needs a nudge</h2>"),
            self.stragglers,
            widgets.HTML("<h2>Recently shared reflections</h2>"),
            self.shared,
            section,
        )
        self.refresh()

    # Overview -----------------------------------------------------------------

    def refresh(self) -> None:
        """Compute the figures again and show them."""
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
        self._show_shared()

    def _group(self) -> Group:
        index = self.cohort.value or 0
        return self.figures.overall if index == 0 else self.figures.cohorts[index - 1]

    def _show_chart(self) -> None:
        if self.figures is None:
            return
        group = self._group()
        self.series.value = series_html(group)
        self.chart.value = chart_html(group)

    def _show_shared(self) -> None:
        recent = self.store.recently_shared(limit=10)
        if not recent:
            self.shared.children = (widgets.HTML("<p>No learner has shared a reflection yet.</p>"),)
            return
        rows = []
        for response in recent:
            title = self._title(response.activity_id)
            button = widgets.Button(
                description=f"Open {response.username}'s record", tooltip=f"{response.username}: {title}", layout=widgets.Layout(width="auto")
            )
            button.on_click(lambda _, who=response.username: self.open_record(who))
            label = widgets.HTML(f"<span>{escape(response.username)} shared &ldquo;{escape(title)}&rdquo; on {_date(response.updated_at)}</span>")
            row = widgets.HBox([button, label])
            row.add_class("companion-row")
            rows.append(row)
        self.shared.children = tuple(rows)

    def _title(self, activity_id: str) -> str:
        try:
            return self.catalog.activity(activity_id).title
        except CourseError:
            return activity_id

    # One learner ----------------------------------------------------------------

    def open_record(self, username: str) -> None:
        """Show one learner's record: progress, what is done, and their shared reflections with a feedback box each."""
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
        shown = widgets.HTML(
            f'<h4>Shared: {escape(item.activity.title)}</h4><div class="companion-reflection-text">{escape(item.text or "")}</div>'
        )
        given = widgets.HTML(_feedback_html(item.feedback))
        box = widgets.Textarea(description="Your feedback", placeholder=f"Feedback for {username} on this reflection")
        box.add_class("companion-text")
        send = widgets.Button(description="Send feedback", button_style="primary")
        status = widgets.HTML("")

        def sent(_):
            try:
                self.store.add_feedback(username, item.activity.id, self.facilitator, box.value)
            except CourseError as error:
                status.value = f'<span class="companion-status companion-error" role="status">Not sent: {escape(str(error))}</span>'
                return
            box.value = ""
            given.value = _feedback_html(self.store.feedback(username, item.activity.id))
            status.value = (
                f'<span class="companion-status" role="status">Feedback sent. {escape(username)} sees it under this '
                "reflection the next time they open the session.</span>"
            )

        send.on_click(sent)
        panel = widgets.VBox([shown, given, box, send, status])
        panel.add_class("companion-activity")
        panel.add_class("companion-shared-reflection")
        return panel
