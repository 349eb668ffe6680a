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
  when none had feedback (see :meth:`companion.store.Store.coaching_figures`)
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
import functools
import gc
import json
import os
import re
import tempfile
import unicodedata
from contextlib import contextmanager
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Iterator

from .catalog import Catalog
from .errors import ExportError
from .parts import MAX_PARTS, Part, cores, in_parts, split
from .progress import COMPLETE, SessionProgress, current_progress, session_progress, session_rules
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
    if cell[0].isascii() and cell[0].isalnum():  # the usual case, and never a formula
        return cell
    if cell.startswith(FORMULA_STARTS):
        return "'" + cell
    first = next((ch for ch in cell if not (ch.isspace() or unicodedata.category(ch) == "Cf")), "")
    if first and unicodedata.normalize("NFKC", first)[:1] in ("=", "+", "-", "@"):
        return "'" + cell
    return cell


# A text that begins with a letter or digit is never a formula (neutralise's fast case), nor is an empty one.
_MAYBE_FORMULA = re.compile(r"(?:^|\x00)[^A-Za-z0-9\x00]")


def neutralise_texts(texts: list[str]) -> list[str]:
    """:func:`neutralise` over a list of texts, in one look for the usual case where none needs it.

    For the evaluation export's 100,000 rows of roster cells and goal cells:
    joined, the texts are searched once for one that does not begin with a
    letter or digit, and only then is each one neutralised.

    >>> neutralise_texts(["ana", "=1+1", ""])
    ['ana', "'=1+1", '']"""
    if _MAYBE_FORMULA.search("\x00".join(texts)) is None:
        return texts
    return [neutralise(text) for text in texts]


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


class _Layout:
    """Where each self-assessment and goal lands in a row of the feed, from the catalog.

    Each competency has a start and an end score, ``2 x indicators`` rating cells
    (start and end alternate, as :func:`evaluation_columns` lists them) and its
    goal cells (2, or 5 with the goals' own words)."""

    def __init__(self, catalog: Catalog) -> None:
        settings = catalog.settings
        self.with_goals = settings.coaching.goals_in_evaluation_record
        self.goal_fields = ("goal", "measure", "target", "status", "progress") if self.with_goals else ("target", "status")
        competencies = [(c.id, len(c.indicators)) for c in settings.competencies]
        self.counts = [count for _, count in competencies]
        index = {competency: i for i, (competency, _) in enumerate(competencies)}
        self.offsets = [sum(2 * n for n in self.counts[:i]) for i in range(len(self.counts))]  # each competency's first rating cell
        self.rating_cells = sum(2 * n for n in self.counts)
        self.assessed: dict[str, tuple[int, int]] = {}  # activity -> (competency index, 0 start / 1 end)
        self.goal_of: dict[str, int | None] = {}  # activity -> competency index
        stages = {"start": 0, "end": 1}
        for a in catalog.all_activities():
            stage = stages.get(a.args.get("stage", "start"))
            if a.kind == "SelfAssessment" and a.competency in index and stage is not None:
                self.assessed[a.id] = (index[a.competency], stage)
            elif a.kind == "Goal" and a.competency is not None:  # one the course no longer lists counts as set, has no cells
                self.goal_of[a.id] = index.get(a.competency)
        # Two activities that feed the same cells: the latest saved must win, so rows come in time order.
        places = [("a", *place) for place in self.assessed.values()] + [("g", i) for i in self.goal_of.values() if i is not None]
        self.shared_cells = len(places) != len(set(places))


def _assessment(text: str, count: int) -> tuple[float | None, list | None]:
    """A saved self-assessment (its JSON text) as its score, rounded (None: not a number), and its ``count``
    rating cells (None: nothing rated; a cell is empty where the rating is not a whole 1-4)."""
    value = json.loads(text)
    if not isinstance(value, dict):
        return None, None
    score = value.get("score")
    raw = value.get("ratings")
    cells = None
    if isinstance(raw, list):
        given = [r if type(r) is int and 1 <= r <= 4 else "" for r in raw]
        if any(r != "" for r in given):
            cells = given[:count] + [""] * (count - len(given))
    return (round(float(score), 2) if isinstance(score, (int, float)) else None), cells


class _Feed:
    """Everyone's self-assessment scores, ratings and goals, by learner id, as the feed's cells.

    From one bulk read (:meth:`Store.value_texts`); rows of other activities are
    passed over. Each kind of cell keeps the latest response that has one: a
    complete score, any valid rating (1-4), a goal with words. ``goals_set``
    counts the goals marked done. ``cells`` holds, per learner, the row's cells
    from ``<c>_start`` to the last goal cell, in :func:`evaluation_columns`'
    order (``goals_set`` included); :meth:`finish` fills in the changes.

    Some 700,000 rows at 100,000 learners, so each is touched as little as it can
    be: a self-assessment holds only its ratings and score, so the same saved text
    recurs thousands of times and is read once, into the cells it sets
    (:meth:`_patch`); goals, each in someone's own words, are decoded a batch at
    a time in one call."""

    def __init__(self, store: Store, catalog: Catalog, learners: Part | None = None) -> None:
        layout = self.layout = _Layout(catalog)
        competencies = len(layout.counts)
        self.ratings_at = 3 * competencies  # where the ratings start in a learner's cells
        self.goals_set_at = self.ratings_at + layout.rating_cells
        self.blank = [""] * (self.goals_set_at + 1 + len(layout.goal_fields) * competencies)
        self.blank[self.goals_set_at] = 0
        self.cells: dict[int, list] = {}
        patches: dict[str, dict[str, tuple]] = {activity: {} for activity in layout.assessed}  # per activity: text -> cells set
        cells, blank = self.cells, self.blank
        for rows in store.value_texts([*layout.assessed, *layout.goal_of], in_time_order=layout.shared_cells, learners=learners):
            goal_rows = []
            for row in rows:
                learner, activity_id, text, done = row
                known = patches.get(activity_id)
                if known is None:
                    goal_rows.append(row)
                    continue
                patch = known.get(text)
                if patch is None:
                    patch = known[text] = self._patch(activity_id, text)
                mine = cells.get(learner)
                if mine is None:
                    mine = cells[learner] = blank[:]
                score_at, score, rated, given = patch
                if score is not None and done:
                    mine[score_at] = score
                if given is not None:
                    mine[rated] = given
            self._goals(goal_rows)

    def _patch(self, activity_id: str, text: str) -> tuple:
        """What one saved self-assessment sets: ``(score cell, score or None, rating cells as a slice, ratings or None)``."""
        layout = self.layout
        competency, stage = layout.assessed[activity_id]
        score, given = _assessment(text, layout.counts[competency])
        rated = self.ratings_at + layout.offsets[competency] + stage
        return 3 * competency + stage, score, slice(rated, rated + 2 * len(given or ()), 2), given

    def _goals(self, rows: list) -> None:
        """Goals set and each competency's goal cells from these rows, in their order."""
        fields = self.layout.goal_fields
        width = len(fields)
        first = self.goals_set_at + 1
        cells, blank, goal_of = self.cells, self.blank, self.layout.goal_of
        values = json.loads("[" + ",".join(row[2] for row in rows) + "]")
        for (learner, activity_id, _, done), value in zip(rows, values):
            mine = cells.get(learner)
            if mine is None:
                mine = cells[learner] = blank[:]
            if done:
                mine[self.goals_set_at] += 1
            competency = goal_of[activity_id]
            if competency is not None and type(value) is dict and str(value.get("goal") or "").strip():
                at = first + width * competency
                mine[at : at + width] = neutralise_texts([str(value.get(f) or "") for f in fields])

    def finish(self) -> dict[int, list]:
        """Every learner's cells with each competency's change (end minus start) where both are scored."""
        competencies = range(0, self.ratings_at, 3)
        for mine in self.cells.values():
            for at in competencies:
                start, end = mine[at], mine[at + 1]
                if start != "" and end != "":
                    mine[at + 2] = round(end - start, 2)
        return self.cells


def _progress(store: Store, catalog: Catalog, learners: Part | None = None) -> tuple[dict[int, list], list]:
    """Everyone's session cells (or the part ``learners``'), by learner id, and a not-started learner's:
    ``<s>_status, <s>_completed_on`` for every session (course order), then ``sessions_completed,
    series_completed, series_completed_on``.

    From the store's kept progress (made current by the caller first, as the
    dashboard's figures are) under the same rules as
    :func:`companion.progress.learner_progress`, without an object per learner
    and session: each status comes from one :class:`SessionProgress` per kind of state."""
    rules = session_rules(catalog)
    sessions = catalog.settings.sessions
    index = {s.id: i for i, s in enumerate(sessions)}
    statuses: dict[tuple[int, int, bool], str] = {}

    def status(i: int, done: int, completed: str | None) -> str:
        kind = (i, done, completed is None)
        if kind not in statuses:
            s, rule = sessions[i], rules[i]
            statuses[kind] = SessionProgress(s.id, s.number, s.title, len(rule.required), done, completed).status
        return statuses[kind]

    count = 2 * len(sessions)  # where sessions_completed is
    empty = [cell for i in range(len(sessions)) for cell in (status(i, 0, None), "")] + [0, "no", ""]
    saved: dict[int, list] = {}
    for learner, session_id, done, completed in store.progress_rows(learners):
        i = index.get(session_id)
        if i is None:  # a session no longer in the course
            continue
        cells = saved.get(learner)
        if cells is None:
            cells = saved[learner] = empty[:]
        state = statuses.get((i, done, completed is None)) or status(i, done, completed)
        cells[2 * i : 2 * i + 2] = state, completed or ""
        if state == COMPLETE:
            cells[count] += 1
    for cells in saved.values():
        if cells[count] == len(sessions):
            cells[count + 1 : count + 3] = "yes", max(cells[1:count:2])
    return saved, empty


def _evaluation_values(store: Store, catalog: Catalog, learners: Part | None = None) -> Iterator[tuple[int, list]]:
    """Per supervisor (everyone, or the part ``learners``), their id and their row: a list in the order of
    :func:`evaluation_columns`, every text cell neutralised.

    The text a person wrote (the roster's, a goal's) is neutralised where it is
    read; every other cell is a number, a date, empty or one of the export's own
    words, never a formula."""
    people = store.roster_rows(learners)
    progress, not_started = _progress(store, catalog, learners)
    feed = _Feed(store, catalog, learners)
    cells = feed.finish()
    nothing = feed.blank
    coaching = store.coaching_figures(learners)
    for learner_id, username, name, email, cohort, department, active in people:
        row = neutralise_texts([username, name, email, cohort, department])
        row += progress.get(learner_id, not_started)
        row += cells.get(learner_id, nothing)
        figures = coaching.get(learner_id)
        if figures is not None:
            row += (figures.check_ins, figures.last_check_in, figures.feedback, figures.median_hours)
        else:  # no check-in and no feedback
            row += (0, "", 0, "")
        row.append(active or "")
        yield learner_id, row


def _evaluation_lines(store: Store, catalog: Catalog, learners: Part) -> dict[int, str]:
    """The part ``learners``' rows as CSV lines, by learner id."""
    lines: list[str] = []
    writer = csv.writer(_Lines(lines))
    ids = []
    for learner_id, row in _evaluation_values(store, catalog, learners):
        writer.writerow(row)
        ids.append(learner_id)
    return dict(zip(ids, lines))


class _Lines:
    """Where a :class:`csv.writer` puts each line it writes: a list (it writes a row in one call)."""

    def __init__(self, lines: list[str]) -> None:
        self.write = lines.append


@contextmanager
def _bulk() -> Iterator[None]:
    """No cyclic garbage collection while an export holds everyone's rows.

    The export builds about a million small dicts, lists and tuples and keeps
    most of them to the end; none of them refers back to itself, so reference
    counting frees them all, and a collection would only walk the whole heap
    again and again (at 100,000 learners, as long as the reads themselves)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


# Learners: from this many on, the evaluation export works in parts, one per core; with fewer, one process
# takes a few seconds at most (1.3 s at 10,000 in the benchmark), and forking is not worth its memory.
PARTS_FROM = 20_000


def parts_for(learners: int) -> int:
    """How many parts :func:`write_evaluation` works out ``learners`` rows in, by default."""
    return min(cores(), MAX_PARTS) if learners >= PARTS_FROM else 1


def write_evaluation(store: Store, catalog: Catalog, path: Path | str, parts: int | None = None) -> int:
    """Write the evaluation CSV (formula cells neutralised); returns the number of supervisors.

    From :data:`PARTS_FROM` learners on, the rows are worked out in parts of
    the learners at once, one process per core (up to
    :data:`companion.parts.MAX_PARTS`; :mod:`companion.parts`): at 100,000
    learners the export takes 8 to 12 CPU-seconds on the benchmark's machine.
    ``parts`` sets how many (1: all in this process)."""
    count = 0

    def write(out) -> None:
        nonlocal count
        order = store.learner_ids()
        current_progress(store, catalog)  # once, before the parts read it
        wanted = parts if parts is not None else parts_for(len(order))
        if wanted > 1:
            # No connection may cross a fork (SQLite's rule: its locks are the process's): each process
            # opens its own, and one opened here meanwhile is left to this process (store.forked).
            store.close()
        lines: dict[int, str] = {}
        for part in in_parts(functools.partial(_evaluation_lines, store, catalog), split(order, wanted), store.forked):
            lines.update(part)
        writer = csv.writer(out)
        writer.writerow(evaluation_columns(catalog))
        for learner_id in order:
            line = lines.get(learner_id)
            if line is not None:  # else removed from the roster while the export read
                out.write(line)
                count += 1

    with _bulk():
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
