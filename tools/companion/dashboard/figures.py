"""The dashboard's figures (no widgets): completion by session and cohort, who needs a nudge, one learner's record.

:func:`figures` gives completion by session and by cohort, the series
completion rate, and who has not started or has stalled, from the store's
per-session progress (kept under the completion rules of
:mod:`companion.progress`); :func:`everyone_progress` is every learner's
progress in full, for the exports; :func:`learner_record` is one learner's
record as a facilitator may see it: what is done, and the text of only the
reflections the learner shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..catalog import Activity, Catalog
from ..progress import SessionProgress, current_progress, session_progress, session_rules
from ..store import Feedback, Learner, Store

STALLED_DAYS = 14  # started, not finished, and nothing done for this long: stalled
LISTED = 50  # people listed per table on the page (the count always covers everyone)
NO_COHORT = "(no cohort)"


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
    counts: dict[str, dict[str, tuple[int, int]]] = {}  # cohort -> session -> (complete, in progress)
    everyone: dict[str, tuple[int, int]] = {}  # session -> the same, over all cohorts
    for cohort, session_id, complete, in_progress in summary.session_counts:
        counts.setdefault(cohort, {})[session_id] = (complete, in_progress)
        before = everyone.get(session_id, (0, 0))
        everyone[session_id] = (before[0] + complete, before[1] + in_progress)

    def group(cohort: str | None, size: int, series_complete: int, tally: dict[str, tuple[int, int]]) -> Group:
        per_session = tuple(SessionFigures(s.id, s.number, s.title, size, *tally.get(s.id, (0, 0))) for s in sessions)
        return Group(cohort, size, series_complete, per_session)

    def people(rows) -> tuple[Straggler, ...]:
        first_open = lambda done: next((s.number for s in sessions if s.id not in done), None)  # noqa: E731
        return tuple(Straggler(username, name, cohort, first_open(done), active) for username, name, cohort, active, done in rows)

    names = sorted(summary.cohort_sizes, key=lambda c: (c == "", c.lower()))
    return Figures(
        overall=group(None, sum(summary.cohort_sizes.values()), sum(summary.series_complete.values()), everyone),
        cohorts=tuple(group(c, summary.cohort_sizes[c], summary.series_complete.get(c, 0), counts.get(c, {})) for c in names),
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

