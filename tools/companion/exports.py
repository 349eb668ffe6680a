"""Exports: the evaluation feed as CSV, and one learner's own journal.

The xAPI feed is in :mod:`companion.xapi`.

**Evaluation CSV** (:func:`write_evaluation`): one row per supervisor, columns
in this order (sessions and competencies as ``course/course.toml`` lists them;
``<s>`` is a session id such as ``s1``, ``<c>`` a competency id with ``_`` for
``-``, such as ``cultural_proficiency``):

- ``username, name, email, cohort, department``: from the roster
- ``<s>_status``: ``complete``, ``in progress`` or ``not started`` (the rules
  of :mod:`companion.progress`); ``<s>_completed_on``: ``YYYY-MM-DD`` (UTC)
- ``sessions_completed``: a number; ``series_completed``: ``yes`` or ``no``;
  ``series_completed_on``: the day the last session was completed
- ``<c>_start``, ``<c>_end``: the competency self-assessment score at the start
  and end of the series (the mean of its 1-4 ratings, to 2 decimals; empty
  until every indicator is rated); ``<c>_change``: end minus start
- ``rating_<c>_<n>_start``, ``rating_<c>_<n>_end``: the 1-4 rating of the
  competency's statement ``n`` (1, 2, ... in course.toml's order of
  ``indicators``) at the start and the end, as last saved; empty when not rated
- ``goals_set``: how many goals have a goal, a measure and a target date; per
  competency ``goal_<c>_target`` and ``goal_<c>_status``: the goal's target date
  and its latest progress status (Not started, In progress, Met, Revised).
  Only when ``[coaching] goals_in_evaluation_record`` is true (course.toml;
  default false) also the goal's own words, in this order:
  ``goal_<c>, goal_<c>_measure, goal_<c>_target, goal_<c>_status,
  goal_<c>_progress`` (the goal, its success measure, and the progress note).
  When it is false those three columns are not in the file at all: the feed
  goes to the agency's evaluation system, and the goals stay in the series'
  record (``companion export goals``), as the Goal box tells supervisors.
- ``check_ins``: how many dated check-ins the supervisor made on their goals;
  ``last_check_in``: the day of the last (``YYYY-MM-DD``, UTC)
- ``feedback_received``: how many feedback items facilitators wrote to them (on
  reflections, goals and check-ins); ``median_hours_to_feedback``: the median,
  over the shared reflections and check-ins that had feedback, of the hours
  from sharing (or checking in) to the first feedback, to 2 decimals; empty
  when none had feedback (see :class:`companion.coaching_exports.CoachingRecord`)
- ``last_active``: when the supervisor last did anything (UTC, ISO 8601)

Reflections never appear in the feed, nor do check-in notes or feedback text.

**Spreadsheet safety.** A text cell that a spreadsheet could run as a formula
gets a single quote (``'``) in front, so Excel, LibreOffice or Google Sheets show
it as text: one that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return, one where such a sign follows leading spaces (``" =1+1"``), and the
full-width signs ``＝＋－＠`` (:func:`neutralise`). Numbers the companion computes
(scores, ratings, counts, hours) are written as numbers.

**Journal** (:func:`journal`): a learner's reflections, the feedback on them,
and their goals, as HTML or Markdown, everything they wrote escaped so it reads
exactly as typed. The learner's own download has every reflection, private ones
included (``include_private=True``, the default); the administrator's
``companion export journal`` passes ``include_private=False`` unless it is given
``--include-private``, so a private reflection leaves only when asked for, and
the document says which it holds.

Example::

    >>> from companion.exports import write_evaluation
    >>> write_evaluation(store, catalog, "evaluation.csv")
    1000
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
import unicodedata
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Iterator

from .catalog import Catalog
from .dashboard import everyone_progress
from .errors import ExportError
from .progress import COMPLETE, session_progress
from .store import Store


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
IDENTITY_COLUMNS = ("username", "name", "email", "cohort", "department")


def neutralise(cell: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, made plain text with a leading quote.

    Caught: a first character ``=``, ``+``, ``-``, ``@``, tab or carriage return;
    the same four signs after leading whitespace or invisible format characters
    (``" =1+1"``, ``"\\t@x"``); and their full-width and small forms (``"＝1+1"``),
    which some spreadsheets read as the ASCII sign (NFKC folds them to it)."""
    if not isinstance(cell, str) or not cell:
        return cell
    if cell.startswith(FORMULA_STARTS):
        return "'" + cell
    first = next((ch for ch in cell if not (ch.isspace() or unicodedata.category(ch) == "Cf")), "")
    if first and unicodedata.normalize("NFKC", first)[:1] in ("=", "+", "-", "@"):
        return "'" + cell
    return cell


def _key(competency_id: str) -> str:
    return competency_id.replace("-", "_")


def _day(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).date().isoformat() if moment else ""


def evaluation_columns(catalog: Catalog) -> list[str]:
    """The evaluation CSV's header, in order (documented at the top of this module).

    The goals' own words (``goal_<c>``, ``goal_<c>_measure``, ``goal_<c>_progress``)
    are columns only when ``[coaching] goals_in_evaluation_record`` is true."""
    settings = catalog.settings
    with_goals = settings.coaching.goals_in_evaluation_record
    columns = list(IDENTITY_COLUMNS)
    for session in settings.sessions:
        columns += [f"{session.id}_status", f"{session.id}_completed_on"]
    columns += ["sessions_completed", "series_completed", "series_completed_on"]
    for competency in settings.competencies:
        key = _key(competency.id)
        columns += [f"{key}_start", f"{key}_end", f"{key}_change"]
    for competency in settings.competencies:
        key = _key(competency.id)
        for n in range(1, len(competency.indicators) + 1):
            columns += [f"rating_{key}_{n}_start", f"rating_{key}_{n}_end"]
    columns.append("goals_set")
    for competency in settings.competencies:
        key = _key(competency.id)
        if with_goals:
            columns += [f"goal_{key}", f"goal_{key}_measure", f"goal_{key}_target", f"goal_{key}_status", f"goal_{key}_progress"]
        else:
            columns += [f"goal_{key}_target", f"goal_{key}_status"]
    columns += ["check_ins", "last_check_in", "feedback_received", "median_hours_to_feedback", "last_active"]
    return columns


def _scores(store: Store, catalog: Catalog) -> dict[tuple[str, str, str], float]:
    """(username, competency, stage) -> the latest complete self-assessment score."""
    activities = {a.id: a for a in catalog.all_activities() if a.kind == "SelfAssessment"}
    found: dict[tuple[str, str, str], tuple[datetime, float]] = {}
    for response in store.latest_responses(list(activities)):
        value = response.value if isinstance(response.value, dict) else {}
        if not response.done or not isinstance(value.get("score"), (int, float)):
            continue
        activity = activities[response.activity_id]
        key = (response.username, activity.competency, activity.args.get("stage", "start"))
        if key not in found or found[key][0] < response.updated_at:
            found[key] = (response.updated_at, round(float(value["score"]), 2))
    return {key: score for key, (_, score) in found.items()}


def _ratings(store: Store, catalog: Catalog) -> dict[tuple[str, str, str], list]:
    """(username, competency, stage) -> each statement's rating (1-4, None when not rated), as last saved.

    From the latest response that rated anything, complete or not: a statement
    rated is a rating given, even while the score waits for the others."""
    activities = {a.id: a for a in catalog.all_activities() if a.kind == "SelfAssessment"}
    found: dict[tuple[str, str, str], tuple[datetime, list]] = {}
    for response in store.latest_responses(list(activities)):
        value = response.value if isinstance(response.value, dict) else {}
        raw = value.get("ratings") if isinstance(value.get("ratings"), list) else []
        ratings = [r if isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= 4 else None for r in raw]
        if not any(r is not None for r in ratings):
            continue
        activity = activities[response.activity_id]
        key = (response.username, activity.competency, activity.args.get("stage", "start"))
        if key not in found or found[key][0] < response.updated_at:
            found[key] = (response.updated_at, ratings)
    return {key: ratings for key, (_, ratings) in found.items()}


def _goals(store: Store, catalog: Catalog) -> tuple[dict[tuple[str, str], dict], dict[str, int]]:
    """(username, competency) -> the latest goal written for it; username -> goals set."""
    activities = {a.id: a for a in catalog.all_activities() if a.kind == "Goal"}
    latest: dict[tuple[str, str], tuple[datetime, dict]] = {}
    goals_set: dict[str, int] = {}
    for response in store.latest_responses(list(activities)):
        value = response.value if isinstance(response.value, dict) else {}
        if response.done:
            goals_set[response.username] = goals_set.get(response.username, 0) + 1
        if not str(value.get("goal") or "").strip():
            continue
        key = (response.username, activities[response.activity_id].competency)
        if key not in latest or latest[key][0] < response.updated_at:
            latest[key] = (response.updated_at, value)
    return {key: value for key, (_, value) in latest.items()}, goals_set


def evaluation_rows(store: Store, catalog: Catalog) -> Iterator[dict[str, Any]]:
    """One dict per supervisor (by username), keyed by :func:`evaluation_columns`, not yet neutralised."""
    from .coaching_exports import CoachingRecord

    settings = catalog.settings
    with_goals = settings.coaching.goals_in_evaluation_record
    learners = store.learners()
    progress = everyone_progress(store, catalog, learners)
    scores = _scores(store, catalog)
    ratings = _ratings(store, catalog)
    goals, goals_set = _goals(store, catalog)
    coaching = CoachingRecord.read(store, [learner.username for learner in learners])
    last_active = store.last_active()
    for learner in learners:
        row: dict[str, Any] = {column: getattr(learner, column) for column in IDENTITY_COLUMNS}
        sessions = progress[learner.username]
        for state in sessions:
            row[f"{state.session_id}_status"] = state.status
            row[f"{state.session_id}_completed_on"] = _day(state.completed_at)
        completed = [s for s in sessions if s.status == COMPLETE]
        series = len(completed) == len(sessions) and bool(sessions)
        row["sessions_completed"] = len(completed)
        row["series_completed"] = "yes" if series else "no"
        row["series_completed_on"] = _day(max(s.completed_at for s in completed)) if series else ""
        for competency in settings.competencies:
            key = _key(competency.id)
            start = scores.get((learner.username, competency.id, "start"))
            end = scores.get((learner.username, competency.id, "end"))
            row[f"{key}_start"] = "" if start is None else start
            row[f"{key}_end"] = "" if end is None else end
            row[f"{key}_change"] = "" if start is None or end is None else round(end - start, 2)
        for competency in settings.competencies:
            key = _key(competency.id)
            for stage in ("start", "end"):
                given = ratings.get((learner.username, competency.id, stage), [])
                for n in range(1, len(competency.indicators) + 1):
                    rating = given[n - 1] if n <= len(given) else None
                    row[f"rating_{key}_{n}_{stage}"] = "" if rating is None else rating
        row["goals_set"] = goals_set.get(learner.username, 0)
        for competency in settings.competencies:
            key = _key(competency.id)
            goal = goals.get((learner.username, competency.id), {})
            if with_goals:
                row[f"goal_{key}"] = str(goal.get("goal") or "")
                row[f"goal_{key}_measure"] = str(goal.get("measure") or "")
                row[f"goal_{key}_progress"] = str(goal.get("progress") or "")
            row[f"goal_{key}_target"] = str(goal.get("target") or "")
            row[f"goal_{key}_status"] = str(goal.get("status") or "") if goal else ""
        row["check_ins"] = coaching.check_in_count(learner.username)
        row["last_check_in"] = _day(coaching.last_check_in(learner.username))
        row["feedback_received"] = coaching.received(learner.username)
        row["median_hours_to_feedback"] = coaching.median_hours(learner.username)
        active = last_active.get(learner.username)
        row["last_active"] = active.astimezone(timezone.utc).isoformat(timespec="seconds") if active else ""
        yield row


def _write_atomically(path: Path | str, write) -> None:
    """Write through a temporary file beside ``path`` and rename it, so a failed export leaves no half file."""
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path} is a folder; give a file name, e.g. {path / 'evaluation.csv'}.")
    if not path.parent.exists():
        raise ExportError(f"The folder {path.parent} does not exist; create it or write somewhere else. Nothing was written.")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            write(out)
        os.replace(temporary, path)
    except OSError as error:
        raise ExportError(f"Could not write {path}: {error.strerror or error}. Nothing was written.") from error
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_evaluation(store: Store, catalog: Catalog, path: Path | str) -> int:
    """Write the evaluation CSV (formula cells neutralised); returns the number of supervisors."""
    columns = evaluation_columns(catalog)
    count = 0

    def write(out) -> None:
        nonlocal count
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for row in evaluation_rows(store, catalog):
            writer.writerow({key: neutralise(value) for key, value in row.items()})
            count += 1

    _write_atomically(path, write)
    return count


# Journal --------------------------------------------------------------------------

def _markdown_line(line: str) -> str:
    """One line of text as Markdown that renders as exactly that text (no markup, no HTML)."""
    out = []
    for ch in line:
        if ch in "&<>":
            out.append({"&": "&amp;", "<": "&lt;", ">": "&gt;"}[ch])
        elif ch in "\\`*_[]~|":
            out.append("\\" + ch)
        else:
            out.append(ch)
    text = "".join(out)
    body = text.lstrip(" \t")
    indent = "&nbsp;" * (len(text) - len(body))  # kept as spaces, never an indented code block
    if body[:1] in ("#", "-", "+", "="):  # a heading, a list, a setext underline
        body = "\\" + body
    number = re.match(r"\d+(?=[.)])", body)  # an ordered list
    if number:
        body = number.group() + "\\" + body[number.end() :]
    return indent + body


def _md_inline(text: str) -> str:
    return _markdown_line(" ".join(str(text).split()))


def _md_block(text: str) -> str:
    """Text as a Markdown block quote, line breaks kept, rendering as exactly the text."""
    lines = str(text).splitlines() or [""]
    return "\n".join(f"> {_markdown_line(line)}  " if line.strip() else ">" for line in lines)


def journal_entries(store: Store, catalog: Catalog, username: str, include_private: bool = True) -> list[dict]:
    """The learner's reflections and goals, by session in course order.

    ``include_private`` (default True: the learner's own copy) keeps the
    reflections they did not share; False keeps only the shared ones (a
    scenario's closing reflection is never shared). Goals are never private."""
    if store.learner(username) is None:
        raise ExportError(f"No learner '{username}' in the store at {store!r}; check the username (as in the roster).")
    saved = store.responses(username)
    entries = []
    for session in catalog.settings.sessions:
        items = []
        for activity in catalog.activities(session.id):
            response = saved.get(activity.id)
            value = response.value if response and isinstance(response.value, dict) else {}
            if activity.kind == "Reflection" and str(value.get("text") or "").strip() and (include_private or response.shared):
                items.append(
                    {
                        "kind": "reflection",
                        "prompt": activity.args.get("prompt") or activity.title,
                        "text": value["text"],
                        "shared": response.shared,
                        "saved": response.updated_at,
                        "feedback": store.feedback(username, activity.id),
                    }
                )
            elif activity.kind == "Scenario" and str(value.get("reflection") or "").strip() and include_private:
                items.append(
                    {
                        "kind": "reflection",
                        "prompt": activity.args.get("reflection") or activity.title,
                        "text": value["reflection"],
                        "shared": False,  # a scenario's closing reflection is never shared
                        "saved": response.updated_at,
                        "feedback": [],
                    }
                )
            elif activity.kind == "Goal" and str(value.get("goal") or "").strip():
                competency = catalog.settings.competency(activity.competency).name if activity.competency else ""
                items.append({**value, "kind": "goal", "competency": competency, "saved": response.updated_at})
        if items:
            progress = session_progress(catalog, session.id, saved)
            entries.append({"session": session, "status": progress.status, "items": items})
    known = {a.id for a in catalog.all_activities()}
    gone = [
        r for r in saved.values()
        if r.activity_id not in known and isinstance(r.value, dict) and str(r.value.get("text") or "").strip() and (include_private or r.shared)
    ]
    if gone:  # written for an activity a later version of the notebooks dropped: still the learner's
        items = [
            {"kind": "reflection", "prompt": r.activity_id, "text": r.value["text"], "shared": r.shared, "saved": r.updated_at,
             "feedback": store.feedback(username, r.activity_id)}
            for r in sorted(gone, key=lambda r: r.updated_at)
        ]
        entries.append({"session": None, "status": "", "items": items})
    return entries


def journal(store: Store, catalog: Catalog, username: str, fmt: str = "html", include_private: bool = True) -> str:
    """A learner's reflection journal as a standalone HTML page (``fmt="html"``) or Markdown (``"markdown"``).

    ``include_private=False`` leaves out the reflections the learner kept
    private, and the document's opening says so."""
    if fmt not in ("html", "markdown"):
        raise ExportError(f"The journal is written as html or markdown, not '{fmt}'.")
    entries = journal_entries(store, catalog, username, include_private)
    learner = store.learner(username)
    who = learner.name or learner.username
    title = f"Reflection journal: {who}"
    made = datetime.now(timezone.utc).strftime("%d %B %Y")
    intro = f"{catalog.settings.title}. Written by {who} ({learner.username}); exported {made}."
    if not include_private:
        intro += f" Shared reflections only: the ones {who} kept private are not in this copy."
    if fmt == "markdown":
        return _journal_markdown(title, intro, entries)
    return _journal_html(title, intro, entries)


def _goal_lines(goal: dict) -> list[tuple[str, str]]:
    return [
        ("Goal", str(goal.get("goal") or "")),
        ("How I will know I met it", str(goal.get("measure") or "")),
        ("Target date", str(goal.get("target") or "")),
        ("Progress", str(goal.get("status") or "")),
        ("Progress update", str(goal.get("progress") or "")),
    ]


def _journal_markdown(title: str, intro: str, entries: list[dict]) -> str:
    out = [f"# {_md_inline(title)}", "", _md_inline(intro), ""]
    if not entries:
        out += ["No reflections or goals saved yet.", ""]
    for entry in entries:
        session = entry["session"]
        if session is None:
            out += ["## From activities no longer in the course", ""]
        else:
            out += [f"## Session {session.number}: {_md_inline(session.title)}", "", f"*{entry['status'].capitalize()}*", ""]
        for item in entry["items"]:
            if item["kind"] == "reflection":
                shared = "shared with my facilitator" if item["shared"] else "private"
                out += [f"### {_md_inline(item['prompt'])}", "", _md_block(item["text"]), "", f"*Saved {_day(item['saved'])}, {shared}.*", ""]
                for feedback in item["feedback"]:
                    out += [f"**Feedback from {_md_inline(feedback.author)}, {_day(feedback.at)}:**", "", _md_block(feedback.text), ""]
            else:
                out += [f"### Goal: {_md_inline(item['competency'])}", ""]
                for label, value in _goal_lines(item):
                    if value.strip():
                        out += [f"**{label}:**", "", _md_block(value), ""]
    return "\n".join(out)


def _journal_html(title: str, intro: str, entries: list[dict]) -> str:
    def text(value: str) -> str:
        return f'<div class="text">{escape(value)}</div>'

    body = [f"<h1>{escape(title)}</h1>", f"<p>{escape(intro)}</p>"]
    if not entries:
        body.append("<p>No reflections or goals saved yet.</p>")
    for entry in entries:
        session = entry["session"]
        if session is None:
            body.append("<section><h2>From activities no longer in the course</h2>")
        else:
            body.append(f"<section><h2>Session {session.number}: {escape(session.title)}</h2><p><em>{escape(entry['status'].capitalize())}</em></p>")
        for item in entry["items"]:
            if item["kind"] == "reflection":
                shared = "shared with my facilitator" if item["shared"] else "private"
                body.append(f"<h3>{escape(item['prompt'])}</h3>{text(item['text'])}<p class=\"meta\">Saved {_day(item['saved'])}, {shared}.</p>")
                for feedback in item["feedback"]:
                    body.append(
                        f'<div class="feedback"><p class="meta">Feedback from {escape(feedback.author)}, {_day(feedback.at)}:</p>{text(feedback.text)}</div>'
                    )
            else:
                rows = "".join(f"<dt>{escape(label)}</dt><dd>{text(value)}</dd>" for label, value in _goal_lines(item) if value.strip())
                body.append(f"<h3>Goal: {escape(item['competency'])}</h3><dl>{rows}</dl>")
        body.append("</section>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.55;color:#1f2328}"
        ".text{white-space:pre-wrap;border-left:4px solid #1d4f91;padding:.3rem .8rem;background:#f6f8fa}"
        ".feedback{margin-left:1.5rem}.meta{color:#424a53;font-size:.95rem}dt{font-weight:600;margin-top:.5rem}dd{margin:0}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">'
        f"<title>{escape(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_journal(
    store: Store, catalog: Catalog, username: str, path: Path | str, fmt: str | None = None, include_private: bool = True
) -> Path:
    """Write the journal to ``path``; the format is ``fmt`` or, when None, from the suffix (.md: Markdown)."""
    path = Path(path)
    fmt = fmt or ("markdown" if path.suffix.lower() in (".md", ".markdown") else "html")
    document = journal(store, catalog, username, fmt, include_private)
    _write_atomically(path, lambda out: out.write(document))
    return path
