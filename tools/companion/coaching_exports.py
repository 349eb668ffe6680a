"""The coaching record for export: goal check-ins, feedback and its timeliness, and what learners said of each session.

Three things live here, all read-only compositions of the store's reads:

- :class:`CoachingRecord`: everyone's check-ins and the feedback they received,
  read once per export of the goal history. (The evaluation feed's coaching
  figures, per learner, the store works out itself:
  :meth:`~companion.store.Store.coaching_figures`.)
- :func:`write_goals` (``companion export goals``): the goal history, one row per
  check-in: ``username, name, cohort, competency, goal_id, goal, status, note,
  checked_in_at, feedback, feedback_count, first_feedback_at``. The goal is its
  text as it stands now. This file is the series' record of goals: it holds the
  goal text and the check-in notes (never a reflection), whatever
  ``[coaching] goals_in_evaluation_record`` says, so it is not for the agency's
  evaluation system unless that setting is true.
- :func:`write_sessions` (``companion export sessions``): what learners said at
  the end of each session (the SessionComplete answers). Per session, a
  ``counts`` row with how many answered and how many gave each answer of
  :data:`companion.activities.closing.USEFULNESS` (columns ``not_useful``,
  ``somewhat_useful``, ``useful``, ``very_useful``), then a ``response`` row per
  suggestion (the "what would make it more useful" text) with the usefulness
  answer given beside it. Without names, response rows carry no username and
  are sorted by their text, so neither the order nor the columns say who wrote
  what. With names (``--with-names``), every response is listed, with
  ``username`` and ``name``.

Every text cell goes through :func:`companion.exports.neutralise`, so nothing
opens as a formula in a spreadsheet.

Example::

    >>> from companion.coaching_exports import write_goals, write_sessions
    >>> write_goals(store, catalog, "goals.csv")
    1804
    >>> write_sessions(store, catalog, "sessions.csv")
    6
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .exports import _write_atomically, neutralise
from .store import CheckIn, Feedback, Store

GOAL_COLUMNS = ("username", "name", "cohort", "competency", "goal_id", "goal", "status", "note", "checked_in_at", "feedback",
                "feedback_count", "first_feedback_at")


def _moment(at: datetime | None) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="seconds") if at else ""


@dataclass
class CoachingRecord:
    """Everyone's goal check-ins and the feedback they received, by username, oldest first."""

    check_ins: dict[str, list[CheckIn]] = field(default_factory=dict)
    feedback: dict[str, list[Feedback]] = field(default_factory=dict)

    @classmethod
    def read(cls, store: Store) -> "CoachingRecord":
        """Read everyone's record: two bulk reads, whatever the cohort."""
        record = cls()
        for check_in in store.all_check_ins():
            record.check_ins.setdefault(check_in.username, []).append(check_in)
        for username, item in store.all_feedback():
            record.feedback.setdefault(username, []).append(item)
        return record

    def on_check_in(self, username: str, check_in_id: int) -> list[Feedback]:
        """The feedback on one check-in, oldest first."""
        return [f for f in self.feedback.get(username, ()) if f.check_in == check_in_id]


# The goal history --------------------------------------------------------------------


def goal_rows(store: Store, catalog: Catalog) -> list[dict[str, Any]]:
    """One dict per goal check-in (oldest first), keyed by :data:`GOAL_COLUMNS`, not yet neutralised."""
    goals = {a.id: a for a in catalog.all_activities() if a.kind == "Goal"}
    people = {learner.username: learner for learner in store.learners()}
    record = CoachingRecord.read(store)
    ids = sorted({c.activity_id for checks in record.check_ins.values() for c in checks})
    written = {(r.username, r.activity_id): r.value if isinstance(r.value, dict) else {} for r in store.latest_responses(ids)}
    rows = []
    for username, checks in sorted(record.check_ins.items()):
        learner = people.get(username)
        for check_in in checks:
            goal = written.get((username, check_in.activity_id), {})
            activity = goals.get(check_in.activity_id)
            replies = record.on_check_in(username, check_in.id)
            rows.append(
                {
                    "username": username,
                    "name": learner.name if learner else "",
                    "cohort": learner.cohort if learner else "",
                    "competency": (activity.competency if activity else None) or str(goal.get("competency") or ""),
                    "goal_id": check_in.activity_id,
                    "goal": str(goal.get("goal") or ""),
                    "status": check_in.status,
                    "note": check_in.note,
                    "checked_in_at": _moment(check_in.at),
                    "feedback": "yes" if replies else "no",
                    "feedback_count": len(replies),
                    "first_feedback_at": _moment(replies[0].at) if replies else "",
                }
            )
    rows.sort(key=lambda row: (row["checked_in_at"], row["username"], row["goal_id"]))
    return rows


def _write_csv(path: Path | str, columns: list[str] | tuple[str, ...], rows: list[dict]) -> int:
    def write(out) -> None:
        writer = csv.DictWriter(out, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: neutralise(value) for key, value in row.items()})

    _write_atomically(path, write)
    return len(rows)


def write_goals(store: Store, catalog: Catalog, path: Path | str) -> int:
    """Write the goal history (one row per check-in); returns the number of check-ins."""
    return _write_csv(path, GOAL_COLUMNS, goal_rows(store, catalog))


# What learners said of each session ---------------------------------------------------


def usefulness_columns() -> list[str]:
    """``not_useful``, ``somewhat_useful``, ``useful``, ``very_useful``: the closing question's answers as columns."""
    from .activities.closing import USEFULNESS

    return [answer.lower().replace(" ", "_") for answer in USEFULNESS]


def session_columns(with_names: bool = False) -> list[str]:
    columns = ["session", "number", "title", "row", "answers", *usefulness_columns(), "answer", "suggestion"]
    return columns + (["username", "name"] if with_names else [])


def session_rows(store: Store, catalog: Catalog, with_names: bool = False) -> list[dict[str, Any]]:
    """Per session a ``counts`` row, then its ``response`` rows (documented at the top of this module)."""
    from .activities.closing import USEFULNESS

    keys = dict(zip(USEFULNESS, usefulness_columns()))
    closing = {a.id: a.session_id for a in catalog.all_activities() if a.kind == "SessionComplete"}
    by_session: dict[str, list] = {}
    for response in store.latest_responses(list(closing)):
        by_session.setdefault(closing[response.activity_id], []).append(response)
    names = {learner.username: learner.name for learner in store.learners()} if with_names else {}
    rows = []
    for session in catalog.settings.sessions:
        answers = []
        for response in by_session.get(session.id, []):
            value = response.value if isinstance(response.value, dict) else {}
            useful = value.get("useful") if value.get("useful") in keys else ""
            suggestion = str(value.get("improve") or "").strip()
            if useful or suggestion:
                answers.append((response.username, useful, suggestion))
        base = {"session": session.id, "number": session.number, "title": session.title}
        counts = {keys[answer]: sum(1 for _, useful, _ in answers if useful == answer) for answer in USEFULNESS}
        rows.append({**base, "row": "counts", "answers": sum(1 for _, useful, _ in answers if useful), **counts})
        if with_names:
            listed = sorted(answers)
        else:  # sorted by what was written, so the order does not say who wrote it
            listed = sorted((a for a in answers if a[2]), key=lambda a: (a[2].casefold(), a[2], a[1]))
        for username, useful, suggestion in listed:
            row = {**base, "row": "response", "answer": useful, "suggestion": suggestion}
            if with_names:
                row.update(username=username, name=names.get(username, ""))
            rows.append(row)
    return rows


def write_sessions(store: Store, catalog: Catalog, path: Path | str, with_names: bool = False) -> int:
    """Write what learners said of each session; returns the number of sessions."""
    rows = session_rows(store, catalog, with_names)
    _write_csv(path, session_columns(with_names), rows)
    return sum(1 for row in rows if row["row"] == "counts")
