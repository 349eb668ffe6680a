"""The catalog: every session's activities, found by reading its notebook.

A session declares its activities once, in its notebook, as calls such as
``Reflection("s1-why", prompt="...", competency="racial-equity-mindset")``.
The catalog parses the code cells (it never runs them), so the dashboard, the
completion rules and ``companion check`` all agree with what learners see.

Example::

    >>> from companion.catalog import load_catalog
    >>> catalog = load_catalog()
    >>> [a.id for a in catalog.required("s1")][:2]
    ['s1-start-cultural-proficiency', 's1-start-racial-equity-advocate']
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import CatalogError
from .settings import Settings, load_settings

ACTIVITY_KINDS = ("Reflection", "Choice", "Sort", "Scenario", "SelfAssessment", "Goal", "SessionComplete")
ACTIVITY_ID = re.compile(r"^s[0-9]+-[a-z0-9]+(-[a-z0-9]+)*$")
# Kinds whose notebook must give a title: nothing else names them briefly.
TITLED_KINDS = ("Reflection", "Choice", "Sort", "Scenario")
MAX_TITLE_CHARS = 60
# What a learner spends on each kind, in minutes, besides reading the page (at READING_WORDS_PER_MINUTE):
# the session's stated time must come within STATED_TIME_MARGIN of the sum.
MINUTES_PER_ACTIVITY = {"Reflection": 5, "Goal": 6, "Scenario": 8, "Sort": 4, "Choice": 2, "SelfAssessment": 2, "SessionComplete": 1}
READING_WORDS_PER_MINUTE = 200
STATED_TIME_MARGIN = 0.25
STATED_TIME = re.compile(r"\b(?:about|plan on)\s+(\d+)(?:\s+to\s+(\d+))?\s+minutes\b", re.IGNORECASE)


@dataclass(frozen=True)
class Activity:
    """One activity as its notebook declares it."""

    id: str
    kind: str
    session_id: str
    cell: int  # 1-based index of the cell among all cells
    competency: str | None = None
    required: bool = True
    args: dict = field(default_factory=dict, compare=False, hash=False)
    competency_name: str | None = field(default=None, compare=False)  # from course.toml, for the fallback title

    @property
    def counts_for_completion(self) -> bool:
        return self.required and self.kind != "SessionComplete"

    @property
    def title(self) -> str:
        """The short name supervisors see in the to-do list: the notebook's ``title=``, never cut."""
        given = self.args.get("title")
        if isinstance(given, str) and given.strip():
            return " ".join(given.split())
        return self.fallback_title

    @property
    def fallback_title(self) -> str:
        """A title for an activity whose notebook gives none."""
        name = self.competency_name or (self.competency or "").replace("-", " ").title()
        if self.kind == "SelfAssessment" and name:
            return f"Self-rating: {name} ({self.args.get('stage', 'start')})"
        if self.kind == "Goal" and name:
            return f"Goal: {name}"
        if self.kind == "SessionComplete":
            return "Finish the session"
        text = next(
            (self.args[k] for k in ("prompt", "question", "instructions") if isinstance(self.args.get(k), str)),
            "",
        )
        text = " ".join(text.split()) or self.id
        return text if len(text) <= MAX_TITLE_CHARS else text[: MAX_TITLE_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True)
class Problem:
    """Something wrong in a session notebook, located by file and cell."""

    path: str
    cell: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}, cell {self.cell}" if self.cell else self.path
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class NotebookReading:
    workbook: str | None
    activities: tuple[Activity, ...]
    problems: tuple[Problem, ...]
    words: int = 0  # learner-visible words in the markdown cells (facilitator notes excluded)
    stated: tuple[int, int, int] | None = None  # (cell, low, high): the first "About N minutes" the page states

    @property
    def reading_words(self) -> int:
        """The page's words and its activities' texts (questions, options; a scenario's longest path)."""
        return self.words + sum(_scenario_words(a.args) if a.kind == "Scenario" else _words(a.args) for a in self.activities)

    @property
    def estimated_minutes(self) -> float:
        """What the page asks of a learner: reading it, and each activity (MINUTES_PER_ACTIVITY)."""
        doing = sum(MINUTES_PER_ACTIVITY.get(a.kind, 0) for a in self.activities)
        return self.reading_words / READING_WORDS_PER_MINUTE + doing


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def read_notebook(path: Path, label: str, session_id: str, names: dict[str, str] | None = None) -> NotebookReading:
    """Find the ``Workbook`` and activity calls in one notebook, without running it.

    ``names`` maps competency ids to their names in course.toml, for the
    titles of self-ratings and goals whose notebook gives none.
    """
    problems: list[Problem] = []
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except FileNotFoundError:
        return NotebookReading(None, (), (Problem(label, None, "the notebook does not exist; create it or fix 'notebook' in course/course.toml"),))
    except (ValueError, KeyError, TypeError) as error:
        return NotebookReading(None, (), (Problem(label, None, f"is not a readable notebook ({error}); restore it from git"),))

    workbook = None
    activities: list[Activity] = []
    words, stated = 0, None
    for number, cell in enumerate(cells, 1):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") == "markdown":
            problems.extend(_check_note(cell, source, label, number))
            if not cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
                words += len(source.split())
                found = STATED_TIME.search(source)
                if found and stated is None:
                    stated = (number, int(found.group(1)), int(found.group(2) or found.group(1)))
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError as error:
            problems.append(Problem(label, number, f"Python syntax error on line {error.lineno}: {error.msg}"))
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            if name == "Workbook":
                if node.args and isinstance(node.args[0], ast.Constant):
                    workbook = node.args[0].value
                else:
                    problems.append(Problem(label, number, "Workbook(...) needs the session id as a literal string"))
            elif name in ACTIVITY_KINDS:
                activity = _read_call(node, name, session_id, number, label, problems, names or {})
                if activity:
                    activities.append(activity)
    return NotebookReading(workbook, tuple(activities), tuple(problems), words, stated)


def _scenario_words(args: dict) -> int:
    """What one learner reads of a scenario on its longest path: at each step every choice, then what the chosen one led to."""
    steps = {s.get("id"): s for s in args.get("steps") or [] if isinstance(s, dict)}

    def path(step_id, seen: frozenset) -> int:
        step = steps.get(step_id)
        if step is None or step_id in seen:
            return 0
        choices = [c for c in step.get("choices") or [] if isinstance(c, dict)]
        here = _words([step.get("situation"), step.get("question"), [c.get("choice") for c in choices]])
        after = [_words([c.get("consequence"), c.get("why")]) + path(c.get("next"), seen | {step_id}) for c in choices]
        return here + max(after, default=0)

    first = (args.get("steps") or [{}])[0]
    return _words([args.get("case"), args.get("reflection")]) + path(first.get("id") if isinstance(first, dict) else None, frozenset())


def _words(value) -> int:
    """The words in an activity's literal arguments (its texts, however nested)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        return sum(_words(v) for k, v in value.items() if k not in ("id", "next", "competency", "stage"))
    if isinstance(value, (list, tuple)):
        return sum(_words(v) for v in value)
    return 0


def _check_note(cell: dict, source: str, label: str, number: int) -> list[Problem]:
    """Facilitator notes must be nbgrader solution cells, or the release keeps (or rejects) them."""
    marks = cell.get("metadata", {}).get("nbgrader", {})
    if "BEGIN SOLUTION" in source and not marks.get("solution"):
        return [Problem(label, number, "has a facilitator note (BEGIN SOLUTION) but is not marked as an nbgrader solution cell, so learners would see it; mark it solution and grade with 0 points")]
    if marks.get("solution") and not marks.get("grade"):
        return [Problem(label, number, "is a facilitator note that nbgrader cannot release: mark it grade: true with points: 0")]
    return []


def _read_call(node: ast.Call, kind: str, session_id: str, cell: int, label: str, problems: list, names: dict[str, str]) -> Activity | None:
    if not node.args or not isinstance(node.args[0], ast.Constant) or not isinstance(node.args[0].value, str):
        problems.append(Problem(label, cell, f"{kind}(...) needs its id as the first argument, a literal string"))
        return None
    activity_id = node.args[0].value
    if not ACTIVITY_ID.match(activity_id) or not activity_id.startswith(session_id + "-"):
        problems.append(
            Problem(label, cell, f"activity id '{activity_id}' is malformed; use '{session_id}-' then lowercase words and dashes, e.g. '{session_id}-why'")
        )
        return None
    args = {}
    for keyword in node.keywords:
        try:
            args[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            problems.append(Problem(label, cell, f"{kind} '{activity_id}': argument '{keyword.arg}' must be a literal (text, number, list), not computed"))
    return Activity(
        id=activity_id,
        kind=kind,
        session_id=session_id,
        cell=cell,
        competency=args.get("competency"),
        required=bool(args.get("required", True)),
        args=args,
        competency_name=names.get(args.get("competency")) if isinstance(args.get("competency"), str) else None,
    )


@lru_cache(maxsize=64)
def _read_cached(path: Path, mtime: float, label: str, session_id: str, names: tuple[tuple[str, str], ...]) -> NotebookReading:
    return read_notebook(path, label, session_id, dict(names))


class Catalog:
    """The course's sessions and their activities, read from the notebooks."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.readings: dict[str, NotebookReading] = {}
        names = tuple((c.id, c.name) for c in settings.competencies)
        for session in settings.sessions:
            path = settings.root / session.notebook
            mtime = path.stat().st_mtime if path.exists() else -1.0
            self.readings[session.id] = _read_cached(path, mtime, session.notebook, session.id, names)

    def activities(self, session_id: str) -> tuple[Activity, ...]:
        return self.readings[session_id].activities

    def required(self, session_id: str) -> list[Activity]:
        """The activities a learner must do before the session can be marked complete."""
        return [a for a in self.activities(session_id) if a.counts_for_completion]

    def find(self, activity_id: str) -> Activity | None:
        """The activity, or None when no notebook declares it (any more: learners' work outlives notebook edits)."""
        for reading in self.readings.values():
            for activity in reading.activities:
                if activity.id == activity_id:
                    return activity
        return None

    def activity(self, activity_id: str) -> Activity:
        found = self.find(activity_id)
        if found is None:
            raise CatalogError(f"No activity '{activity_id}' in any session notebook; run 'companion check'.")
        return found

    def title_of(self, activity_id: str) -> str:
        """The activity's title, or its id when no notebook declares it any more."""
        found = self.find(activity_id)
        return found.title if found else activity_id

    def all_activities(self) -> list[Activity]:
        return [a for s in self.settings.sessions for a in self.activities(s.id)]

    def problems(self) -> list[Problem]:
        """Everything ``companion check`` reports, each with file and cell."""
        problems: list[Problem] = []
        competencies = {c.id for c in self.settings.competencies}
        seen: dict[str, Activity] = {}
        for session in self.settings.sessions:
            reading = self.readings[session.id]
            problems.extend(reading.problems)
            label = session.notebook
            if not (self.settings.root / session.notebook).exists():
                continue
            if reading.workbook is None:
                problems.append(Problem(label, None, f"has no Workbook(\"{session.id}\") call; add it to the first code cell"))
            elif reading.workbook != session.id:
                problems.append(Problem(label, None, f"says Workbook(\"{reading.workbook}\") but course/course.toml gives it session '{session.id}'"))
            for activity in reading.activities:
                if activity.id in seen:
                    other = seen[activity.id]
                    problems.append(Problem(label, activity.cell, f"activity id '{activity.id}' is already used in {self.settings.session(other.session_id).notebook}, cell {other.cell}; ids must be unique"))
                seen.setdefault(activity.id, activity)
                if activity.competency is not None and activity.competency not in competencies:
                    problems.append(Problem(label, activity.cell, f"{activity.kind} '{activity.id}' names unknown competency '{activity.competency}'; use one of {', '.join(sorted(competencies))}"))
                if activity.kind in ("SelfAssessment", "Goal") and activity.competency is None:
                    problems.append(Problem(label, activity.cell, f"{activity.kind} '{activity.id}' needs competency=..."))
                problems.extend(_check_answers(activity, label))
            problems.extend(_check_titles(reading.activities, label))
            if not self.required(session.id):
                problems.append(Problem(label, None, "has no required activity, so it could never be completed; add one"))
            if not any(a.kind == "SessionComplete" for a in reading.activities):
                problems.append(Problem(label, None, f"has no SessionComplete(\"{session.id}-complete\") call, so learners cannot finish it"))
            if not any(a.kind == "Scenario" for a in reading.activities):
                problems.append(Problem(label, None, "has no Scenario: add one, a workplace case about the session's topic (see 'Scenario' in companion.activities)"))
            problems.extend(_check_time(reading, label))
        problems.extend(_check_guessable(self.all_activities(), self.settings))
        return problems


def _check_answers(activity: Activity, label: str) -> list[Problem]:
    args, found = activity.args, []
    if activity.kind == "Choice":
        options = args.get("options") or []
        answer = args.get("answer")
        answers = answer if isinstance(answer, (list, tuple)) else ([] if answer is None else [answer])
        for a in answers:
            if a not in options:
                found.append(Problem(label, activity.cell, f"Choice '{activity.id}': answer '{a}' is not one of its options"))
    if activity.kind == "Sort":
        categories = args.get("categories") or []
        for item in args.get("items") or []:
            if len(item) < 2 or item[1] not in categories:
                found.append(Problem(label, activity.cell, f"Sort '{activity.id}': item {item[0]!r} names a category that is not in categories"))
                continue
            named = [c for c in categories if re.search(rf"\b{re.escape(c)}\b", str(item[0]), re.IGNORECASE)]
            if named:
                found.append(Problem(label, activity.cell, f"Sort '{activity.id}': item {_short(item[0])!r} contains the category name '{named[0]}', so it can be sorted by keyword; describe the situation without naming it"))
            elif LABEL_PREFIX.match(str(item[0])):
                found.append(Problem(label, activity.cell, f"Sort '{activity.id}': item {_short(item[0])!r} starts with a label naming what it shows; describe the situation only"))
    if activity.kind == "Scenario":
        found.extend(Problem(label, activity.cell, f"Scenario '{activity.id}': {message}") for message in _scenario_problems(args))
    return found


LABEL_PREFIX = re.compile(r"^\s*[A-Z][\w'’/-]*(?:[ -][\w'’/-]+){0,3}:\s")


def _short(text: str, limit: int = 50) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scenario_problems(args: dict) -> list[str]:
    """What is wrong with a scenario's steps: texts, ids, links, loops, steps nobody can reach."""
    steps, found = args.get("steps"), []
    if not isinstance(args.get("case"), str) or not args["case"].strip():
        found.append("needs case=\"...\": the situation that opens it")
    if not isinstance(args.get("reflection"), str) or not args["reflection"].strip():
        found.append("needs reflection=\"...\": the closing question on what the learner would actually do")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, dict) for s in steps):
        return found + ["steps must be a list of steps, each a {\"id\": ..., \"question\": ..., \"choices\": [...]}"]
    ids = [s.get("id") for s in steps]
    for number, step in enumerate(steps, 1):
        name = f"step {step.get('id')!r}" if isinstance(step.get("id"), str) else f"step {number}"
        if not isinstance(step.get("id"), str) or not ACTIVITY_ID.match(f"s0-{step.get('id')}"):
            found.append(f"{name} needs an id of lowercase words and dashes")
        elif ids.count(step["id"]) > 1:
            found.append(f"{name}: the id is used by more than one step")
        if not isinstance(step.get("question"), str) or not step["question"].strip():
            found.append(f"{name} needs a question")
        choices = step.get("choices")
        if not isinstance(choices, list) or not 2 <= len(choices) <= 4:
            found.append(f"{name} needs 2 to 4 choices")
            continue
        texts = [c.get("choice") if isinstance(c, dict) else None for c in choices]
        for choice in choices:
            if not isinstance(choice, dict) or any(not isinstance(choice.get(k), str) or not choice[k].strip() for k in ("choice", "consequence", "why")):
                found.append(f"{name}: each choice needs non-empty \"choice\", \"consequence\" and \"why\" texts")
                break
        if len(set(map(str, texts))) < len(texts):
            found.append(f"{name}: two choices have the same text")
        for choice in choices:
            following = choice.get("next") if isinstance(choice, dict) else None
            if following is not None and following not in ids:
                found.append(f"{name}: choice {_short(choice.get('choice'))!r} goes to step {following!r}, which does not exist")
    if found:
        return found
    links = {s["id"]: [c.get("next") for c in s["choices"] if c.get("next") is not None] for s in steps}
    reached: set[str] = set()

    def visit(step_id: str, trail: tuple[str, ...]) -> None:
        if step_id in trail:
            found.append(f"step {step_id!r} leads back to itself ({' -> '.join((*trail, step_id))}); every path must end")
            return
        reached.add(step_id)
        for following in links[step_id]:
            visit(following, (*trail, step_id))

    visit(steps[0]["id"], ())
    found.extend(f"step {s!r} cannot be reached from the first step" for s in ids if s not in reached)
    return sorted(set(found), key=found.index)


def _check_time(reading: NotebookReading, label: str) -> list[Problem]:
    """The time a session states must be what it asks: reading plus each activity (MINUTES_PER_ACTIVITY)."""
    estimate = reading.estimated_minutes
    if reading.stated is None:
        return [Problem(label, None, f"does not say how long it takes; state \"About {_five(estimate)} minutes\" in its opening (reading it and doing its activities come to about {estimate:.0f})")]
    cell, low, high = reading.stated
    if abs(low - estimate) > STATED_TIME_MARGIN * estimate or abs(high - estimate) > STATED_TIME_MARGIN * estimate:
        said = f"{low}" if low == high else f"{low} to {high}"
        return [Problem(label, cell, f"says {said} minutes, but reading it ({reading.reading_words} words of page and activity text, at {READING_WORDS_PER_MINUTE} a minute) and doing its activities come to about {estimate:.0f}; say \"About {_five(estimate)} minutes\"")]
    return []


def _five(minutes: float) -> int:
    return max(5, int(5 * round(minutes / 5)))


def _check_guessable(activities: list[Activity], settings: Settings) -> list[Problem]:
    """Across the course, the keyed answer may be the longest option in at most a third of the questions."""
    keyed, giveaways = 0, []
    for activity in activities:
        options = activity.args.get("options") if activity.kind == "Choice" else None
        answer = activity.args.get("answer")
        if not isinstance(options, list) or answer is None:
            continue
        answers = set(answer) if isinstance(answer, (list, tuple)) else {answer}
        others = [len(str(o)) for o in options if o not in answers]
        right = [len(str(o)) for o in options if o in answers]
        keyed += 1
        if right and others and max(right) > max(others):
            giveaways.append((activity, max(right), max(others)))
    if len(giveaways) * 3 <= keyed:
        return []
    return [
        Problem(
            settings.session(a.session_id).notebook, a.cell,
            f"Choice '{a.id}': the keyed answer is the longest option ({longest} characters, the longest other {other}), "
            f"as in {len(giveaways)} of the course's {keyed} questions with an answer (at most a third may be); "
            "make a wrong option as long, or the answer shorter",
        )
        for a, longest, other in giveaways
    ]


def _check_titles(activities: tuple[Activity, ...], label: str) -> list[Problem]:
    """Each activity's title is what supervisors see in the to-do list: given where needed, short, and unique in its session."""
    found, used = [], {}
    for activity in activities:
        given = activity.args.get("title")
        name = f"{activity.kind} '{activity.id}'"
        if given is None and activity.kind in TITLED_KINDS:
            found.append(Problem(label, activity.cell, f"{name} needs title=\"...\": a short name (at most {MAX_TITLE_CHARS} characters) that supervisors see in the to-do list"))
        elif given is not None and not isinstance(given, str):
            found.append(Problem(label, activity.cell, f"{name}: title must be text in quotes, not {given!r}"))
        elif given is not None and not given.strip():
            found.append(Problem(label, activity.cell, f"{name}: title is empty; give it a short name that supervisors see in the to-do list"))
        elif given is not None and len(activity.title) > MAX_TITLE_CHARS:
            found.append(Problem(label, activity.cell, f"{name}: title is {len(activity.title)} characters; shorten it to at most {MAX_TITLE_CHARS} so it fits the to-do list"))
        key = activity.title.casefold()
        if key in used:
            found.append(Problem(label, activity.cell, f"{name}: title '{activity.title}' is already used in cell {used[key].cell}; give each activity in a session its own title"))
        used.setdefault(key, activity)
    return found


def load_catalog(settings: Settings | None = None) -> Catalog:
    """The catalog of the course (re-reads a notebook only when it changed)."""
    return Catalog(settings or load_settings())
