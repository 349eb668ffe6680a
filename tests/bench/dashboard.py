"""The facilitator's figures at scale: the companion's dashboard and evaluation export beside nbgrader's Gradebook.

The course is the real six-session course (``course/`` and ``sessions/`` copied
from the repository). For N learners, the same deterministic progress is seeded
twice:

- into a companion store: learners (cohorts of 50), each one's latest response
  per activity and one event per response, with self-assessment scores (start in
  session 1, end in session 6) and goals (session 5), as the pages would save them;
- into an nbgrader gradebook, the equivalent a facilitator would otherwise keep:
  one student per learner, one assignment per session (one notebook, one grade
  cell of 1 point per activity), one submission per session the learner started,
  with a grade per cell (1 if done, else 0).

Seeding creates each schema with the product's own code, then bulk-inserts rows
(``executemany``, in the storage format SQLAlchemy uses; seeding only). What is
timed is each product's own code, in a fresh process per measurement:

- companion progress rebuild: ``Store.rebuild_progress`` (the per-session
  progress the pages keep as learners save, built whole, as after the notebooks
  change; seeding bypassed the pages, so it runs once before the dashboard);
- companion dashboard: ``companion.dashboard.figures(store, catalog)``;
- companion feedback queue: ``companion.dashboard.coaching.queue`` and
  ``median_hours``, what the dashboard opens on (a fifth of reflections are
  shared, with a "shared" event, and 99% of those have had feedback);
- companion export: ``companion.exports.write_evaluation(store, catalog, path)``;
- nbgrader dashboard: ``Gradebook.student_dicts()`` plus
  ``Gradebook.submission_dicts(a)`` for each assignment (what formgrader's
  student and submission views call), then completion counted per assignment;
- nbgrader export: ``CsvExportPlugin.export(gradebook)`` (``nbgrader export``).

A peer measurement that runs past its time cap is stopped; for the export the
table then shows the projected time from the rows written within the cap.
"""

from __future__ import annotations

import multiprocessing
import random
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from common import REPO, log

BATCH = 20_000
COHORT_SIZE = 50
ANSWERED = 0.99  # of the reflections learners shared, the share a facilitator has answered
BASE = datetime(2025, 9, 1, tzinfo=timezone.utc)
# Share of learners by sessions completed (0..6).
COMPLETED_WEIGHTS = (0.10, 0.10, 0.10, 0.15, 0.15, 0.15, 0.25)


def six_session_course(folder: Path) -> Path:
    """A copy of the repository's course (course.toml, theme, six session notebooks)."""
    root = folder / "six-session-course"
    if not root.exists():
        shutil.copytree(REPO / "course", root / "course")
        shutil.copytree(REPO / "sessions", root / "sessions")
    return root


def _catalog(root: Path, home: Path):
    import os

    os.environ["COMPANION_HOME"] = str(home)
    from companion.catalog import load_catalog
    from companion.settings import load_settings

    return load_catalog(load_settings(root))


def learner_plan(catalog, number: int) -> list[tuple[str, list[tuple[object, bool]], datetime]]:
    """What learner ``number`` has done: per started session, (activity, done) pairs and when."""
    rng = random.Random(number)
    completed = rng.choices(range(7), COMPLETED_WEIGHTS)[0]
    sessions = catalog.settings.sessions
    plan = []
    for index, session in enumerate(sessions):
        at = BASE + timedelta(days=14 * index, minutes=rng.randrange(0, 20_000))
        activities = catalog.activities(session.id)
        if index < completed:
            plan.append((session.id, [(a, True) for a in activities], at))
        elif index == completed and rng.random() < 0.5:
            started = [(a, rng.random() < 0.6) for a in activities if a.kind != "SessionComplete"]
            plan.append((session.id, started, at))
            break
        else:
            break
    return plan


def _value(activity, rng: random.Random) -> dict:
    kind, args = activity.kind, activity.args
    if kind == "Reflection":
        return {"text": "A reflection of a few sentences about leading with racial equity in my team. " * 2}
    if kind == "Choice":
        options = args.get("options") or ["a"]
        return {"selected": [options[0]], "correct": True}
    if kind == "Sort":
        items = args.get("items") or []
        return {"placements": [item[1] for item in items], "score": len(items), "total": len(items)}
    if kind == "SelfAssessment":
        ratings = [rng.randint(1, 4) for _ in range(4)]
        return {"competency": activity.competency, "stage": args.get("stage", "start"), "ratings": ratings, "score": round(sum(ratings) / 4, 2)}
    if kind == "Goal":
        return {"competency": activity.competency, "goal": "Hold a monthly equity check-in with each direct report.",
                "measure": "Twelve check-ins logged by June.", "target": "2026-06-30", "status": "In progress", "progress": ""}
    return {"useful": "Useful", "improve": ""}


def _sqlite_path(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        raise ValueError(f"the scale benchmark seeds SQLite files only, not {url}")
    return parsed.database


def _stamp(moment: datetime) -> str:
    """A UTC time as SQLAlchemy stores DateTime in SQLite."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _bulk(path: str, statements: dict[str, str], rows) -> None:
    """Insert ``rows`` ((statement name, tuple) pairs, in order) in one transaction, BATCH at a time."""
    import sqlite3

    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("BEGIN")
    pending: dict[str, list] = {name: [] for name in statements}

    def flush() -> None:
        for name, sql in statements.items():  # in the order given: parents before children
            if pending[name]:
                connection.executemany(sql, pending[name])
                pending[name].clear()

    for count, (name, row) in enumerate(rows, 1):
        pending[name].append(row)
        if count % BATCH == 0:
            flush()
    flush()
    connection.execute("COMMIT")
    connection.close()


def seed_companion(url: str, catalog, learners: int) -> int:
    """Learners, latest responses and events for ``learners`` people; returns the response rows written.

    The schema is the product's (``Store.upgrade``); the rows go in with plain
    ``executemany`` in the storage format SQLAlchemy uses (seeding only)."""
    import json

    from companion.store import Store

    store = Store(url)
    store.upgrade()
    store.engine.dispose()
    written = 0

    def rows():
        nonlocal written
        created = _stamp(BASE)
        for number in range(1, learners + 1):
            rng, answers = random.Random(-number), random.Random(number)
            plan = learner_plan(catalog, number)
            last = max((at + timedelta(minutes=len(done_list) - 1) for _, done_list, at in plan if done_list), default=None)
            yield "learner", (number, f"learner{number:06d}", f"Learner {number}", f"learner{number}@example.org",
                              f"cohort-{(number - 1) // COHORT_SIZE:04d}", "Teaching and Learning", "{}", created,
                              _stamp(last) if last else None)
            for session_id, done_list, at in plan:
                for step, (activity, done) in enumerate(done_list):
                    moment = _stamp(at + timedelta(minutes=step))
                    value = json.dumps(_value(activity, rng))
                    shared = int(activity.kind == "Reflection" and rng.random() < 0.2)
                    yield "response", (number, session_id, activity.id, value, int(done), shared, moment)
                    verb = "shared" if shared else "completed" if activity.kind == "SessionComplete" else "responded"
                    yield "event", (number, session_id, activity.id, verb, value, moment)
                    # A facilitator has answered most of what was shared, a day later (its own generator: the rest is unchanged).
                    if shared and answers.random() < ANSWERED:
                        yield "feedback", (number, activity.id, "facilitator", "Thank you for sharing this.", _stamp(at + timedelta(days=1, minutes=step)))
                    written += 1

    _bulk(_sqlite_path(url), {
        "learner": "INSERT INTO learners (id, username, name, email, cohort, department, extra, created_at, last_active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "response": "INSERT INTO responses (learner_id, session_id, activity_id, value, done, shared, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        "event": "INSERT INTO events (learner_id, session_id, activity_id, verb, value, at) VALUES (?, ?, ?, ?, ?, ?)",
        "feedback": "INSERT INTO feedback (learner_id, activity_id, author, text, at) VALUES (?, ?, ?, ?, ?)",
    }, rows())
    return written


def seed_gradebook(url: str, catalog, learners: int) -> int:
    """The equivalent nbgrader gradebook; returns the grade rows written.

    Schema, assignments, notebooks and grade cells through nbgrader's own
    ``Gradebook`` API; students, submissions and grades in bulk (seeding only)."""
    from nbgrader.api import Gradebook

    cells: dict[str, dict[str, str]] = {}
    notebooks: dict[str, str] = {}
    assignments: dict[str, str] = {}
    with Gradebook(url) as gradebook:
        for session in catalog.settings.sessions:
            assignment = gradebook.add_assignment(session.id, duedate=(BASE + timedelta(days=14 * session.number)).replace(tzinfo=None))
            notebook = gradebook.add_notebook(Path(session.notebook).stem, session.id)
            assignments[session.id], notebooks[session.id] = assignment.id, notebook.id
            cells[session.id] = {}
            for activity in catalog.activities(session.id):
                cell = gradebook.add_grade_cell(activity.id, notebook.name, session.id, max_score=1, cell_type="markdown")
                cells[session.id][activity.id] = cell.id
        gradebook.engine.dispose()
    written = ids = 0

    def new_id() -> str:
        nonlocal ids
        ids += 1
        return f"{ids:032x}"

    def rows():
        nonlocal written
        for number in range(1, learners + 1):
            student = f"learner{number:06d}"
            yield "student", (student, "Learner", str(number), f"learner{number}@example.org", None)
            for session_id, done_list, at in learner_plan(catalog, number):
                submission, notebook = new_id(), new_id()
                yield "submission", (submission, assignments[session_id], student, _stamp(at))
                yield "notebook", (notebook, submission, notebooks[session_id], 0, None)
                done = {activity.id: ok for activity, ok in done_list}
                for activity_id, cell_id in cells[session_id].items():
                    yield "grade", (new_id(), notebook, cell_id, None, 1.0 if done.get(activity_id) else 0.0, None, 0)
                    written += 1

    _bulk(_sqlite_path(url), {
        "student": "INSERT INTO student (id, first_name, last_name, email, lms_user_id) VALUES (?, ?, ?, ?, ?)",
        "submission": "INSERT INTO submitted_assignment (id, assignment_id, student_id, timestamp, extension) VALUES (?, ?, ?, ?, NULL)",
        "notebook": "INSERT INTO submitted_notebook (id, assignment_id, notebook_id, flagged, late_submission_penalty) VALUES (?, ?, ?, ?, ?)",
        "grade": "INSERT INTO grade (id, notebook_id, cell_id, auto_score, manual_score, extra_credit, needs_manual_grade) VALUES (?, ?, ?, ?, ?, ?, ?)",
    }, rows())
    return written


# The measured calls, each in a fresh process ----------------------------------------


def _companion_rebuild(url: str, root: str, home: str, out: str) -> dict:
    """The progress the pages keep as learners save, built whole (once, after the notebooks change)."""
    from companion.progress import session_rules
    from companion.store import Store

    catalog = _catalog(Path(root), Path(home))
    store = Store(url)
    started = _begin()
    store.rebuild_progress(session_rules(catalog))
    return {"seconds": time.perf_counter() - started, "function": "companion.store.Store.rebuild_progress"}


def _companion_dashboard(url: str, root: str, home: str, out: str) -> dict:
    from companion.store import Store

    catalog = _catalog(Path(root), Path(home))
    store = Store(url)
    try:
        from companion.dashboard import figures
    except ImportError:  # before the dashboard module: the same completion figures through companion.progress
        from companion.progress import COMPLETE, learner_progress

        def figures(store, catalog):
            from sqlalchemy import text

            with store.engine.connect() as connection:
                names = [row[0] for row in connection.execute(text("SELECT username FROM learners"))]
            counts = {}
            for name in names:
                for state in learner_progress(store, catalog, name):
                    counts[state.session_id] = counts.get(state.session_id, 0) + (state.status == COMPLETE)
            return counts

        function = "companion.progress.learner_progress per learner (no companion.dashboard yet)"
    else:
        function = "companion.dashboard.figures"
    started = _begin()
    result = figures(store, catalog)
    seconds = time.perf_counter() - started
    complete = [s.complete for s in result.overall.sessions] if hasattr(result, "overall") else [result.get(s.id, 0) for s in catalog.settings.sessions]
    return {"seconds": seconds, "function": function, "complete": complete}


def _companion_queue(url: str, root: str, home: str, out: str) -> dict:
    """What the dashboard opens on: the feedback queue (its first items described, and the count) and the median wait."""
    from companion.dashboard.coaching import median_hours, queue
    from companion.store import Store

    catalog = _catalog(Path(root), Path(home))
    store = Store(url)
    now = datetime.now(timezone.utc)
    with store.engine.connect() as db:  # the 30 days' median over the seeded months, as if opened just after them
        from sqlalchemy import text

        latest = db.execute(text("SELECT max(at) FROM feedback")).scalar()
    if latest:
        now = datetime.fromisoformat(latest).replace(tzinfo=timezone.utc) + timedelta(days=1)
    started = _begin()
    waiting = queue(store, catalog, now)
    hours = median_hours(store, now)
    return {"seconds": time.perf_counter() - started, "function": "companion.dashboard.coaching.queue and median_hours",
            "waiting": waiting.count, "answered_in_30_days": len(hours)}


def _companion_export(url: str, root: str, home: str, out: str) -> dict:
    from companion.store import Store

    catalog = _catalog(Path(root), Path(home))
    store = Store(url)
    try:
        from companion.exports import write_evaluation
    except ImportError:
        _begin()
        return {"seconds": None, "function": "companion.exports.write_evaluation (not present)", "rows": 0}
    started = _begin()
    rows = write_evaluation(store, catalog, out)
    seconds = time.perf_counter() - started
    try:
        from companion.exports import parts_for
    except ImportError:  # before the export worked in parts
        parts_for = lambda rows: 1  # noqa: E731
    return {"seconds": seconds, "function": "companion.exports.write_evaluation", "rows": rows, "processes": parts_for(rows)}


def _nbgrader_dashboard(url: str, root: str, home: str, out: str) -> dict:
    from nbgrader.api import Gradebook

    with Gradebook(url) as gradebook:
        started = _begin()
        students = gradebook.student_dicts()
        complete = []
        for assignment in gradebook.assignments:
            rows = gradebook.submission_dicts(assignment.name)
            complete.append(sum(1 for row in rows if row["max_score"] and row["score"] >= row["max_score"]))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "function": "Gradebook.student_dicts + submission_dicts per assignment", "complete": complete, "students": len(students)}


def _nbgrader_export(url: str, root: str, home: str, out: str) -> dict:
    from nbgrader.api import Gradebook
    from nbgrader.plugins.export import CsvExportPlugin

    with Gradebook(url) as gradebook:
        started = _begin()
        CsvExportPlugin(to=out).export(gradebook)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "function": "nbgrader CsvExportPlugin.export (nbgrader export)"}


_RESULTS = None


def _begin() -> float:
    """Tell the parent the timed part starts now (its cap counts from here); returns the start time."""
    if _RESULTS is not None:
        _RESULTS.put("started")
    return time.perf_counter()


def _child(name: str, args: tuple, results) -> None:
    global _RESULTS
    _RESULTS = results
    results.put(globals()[name](*args))


def measure(name: str, args: tuple, cap: float) -> dict:
    """Run ``name(*args)`` in a fresh process; stop it after ``cap`` seconds."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_child, args=(name, args, results))
    process.start()
    try:
        if results.get(timeout=300) != "started":  # imports and set-up are not timed
            raise RuntimeError(f"{name} did not start")
        return results.get(timeout=cap)
    except Exception:
        return {"seconds": None, "stopped_after": cap}
    finally:
        if process.is_alive():
            process.kill()
        process.join()


def scale(workdir: Path, sizes: list[int], cap: float, peer_cap: float) -> dict:
    """Every figure at every size; returns {size: {measurement: result}}.

    The companion's calls may run ``cap`` seconds, nbgrader's ``peer_cap``. Once a
    peer call was stopped at a size, it is not run again at larger sizes (it
    would only be slower): the table says so."""
    root = six_session_course(workdir)
    home = workdir / "six-session-home"
    home.mkdir(exist_ok=True)
    catalog = _catalog(root, home)
    results = {}
    over: dict[str, int] = {}  # peer measurement -> the size at which it was stopped
    for size in sizes:
        folder = workdir / f"scale-{size}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        companion_url, gradebook_url = f"sqlite:///{folder / 'companion.db'}", f"sqlite:///{folder / 'gradebook.db'}"
        started = time.monotonic()
        rows = seed_companion(companion_url, catalog, size)
        log(f"  {size:,} learners: seeded the companion store ({rows:,} responses) in {time.monotonic() - started:.0f} s")
        if len(over) < 2:
            started = time.monotonic()
            grades = seed_gradebook(gradebook_url, catalog, size)
            log(f"  {size:,} learners: seeded the nbgrader gradebook ({grades:,} grades) in {time.monotonic() - started:.0f} s")
        figures = {}
        args = (str(root), str(home))
        # The pages keep progress current as learners save; seeding bypassed them, so build it as after a notebook change.
        figures["companion_rebuild"] = measure("_companion_rebuild", (companion_url, *args, ""), cap)
        figures["companion_dashboard"] = measure("_companion_dashboard", (companion_url, *args, str(folder / "x")), cap)
        figures["companion_queue"] = measure("_companion_queue", (companion_url, *args, ""), cap)
        figures["companion_export"] = measure("_companion_export", (companion_url, *args, str(folder / "evaluation.csv")), cap)
        for key, function, out in (("nbgrader_dashboard", "_nbgrader_dashboard", ""), ("nbgrader_export", "_nbgrader_export", str(folder / "grades.csv"))):
            if key in over:
                figures[key] = {"seconds": None, "skipped_after": over[key], "cap": peer_cap}
                continue
            figures[key] = measure(function, (gradebook_url, *args, out), peer_cap)
            if figures[key].get("seconds") is None:
                over[key] = size
                figures[key]["cap"] = peer_cap
        export = folder / "grades.csv"
        if figures["nbgrader_export"].get("stopped_after") and export.exists():
            # Stopped: project from the rows written (one per student and assignment, header excluded).
            done = max(sum(1 for _ in export.open()) - 1, 1)
            figures["nbgrader_export"]["projected"] = peer_cap * size * len(catalog.settings.sessions) / done
        for key, value in figures.items():
            shown = f"{value['seconds']:.2f} s" if value.get("seconds") is not None else ("not run" if value.get("skipped_after") else f"stopped at the {value.get('cap', cap):.0f} s cap")
            log(f"  {size:,} learners: {key} {shown}")
        if figures["companion_dashboard"].get("complete") and figures["nbgrader_dashboard"].get("complete"):
            figures["agree"] = figures["companion_dashboard"]["complete"] == figures["nbgrader_dashboard"]["complete"]
        results[size] = figures
        shutil.rmtree(folder, ignore_errors=True)
    return results
