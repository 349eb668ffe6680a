"""`companion release` gives learners clean, locked notebooks, and every one of them runs top to bottom."""

from __future__ import annotations

import json
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

from companion.catalog import read_notebook
from companion.release import is_stale, release, site_dir
from companion.settings import load_settings
from conftest import REPO, make_course


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The real course, released by nbgrader into a temporary data home."""
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    os.environ.update(COMPANION_COURSE_DIR=str(REPO), COMPANION_HOME=str(home), COMPANION_LEARNER="ana", COMPANION_IDENTITY="local")
    try:
        settings = load_settings(REPO)
        release(settings)
        yield settings
    finally:
        os.environ.clear()
        os.environ.update(saved)


def notes_in(path):
    """The sentences of every facilitator note in a source notebook."""
    cells = json.loads(path.read_text())["cells"]
    notes = ["".join(c["source"]) for c in cells if c["metadata"].get("nbgrader", {}).get("solution")]
    sentences = [s.strip() for note in notes for s in re.split(r"[.\n]", note.replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", ""))]
    return [s for s in sentences if len(s) > 30]


def test_every_session_has_facilitator_notes_and_none_survive_the_release(released):
    for session in released.sessions:
        sentences = notes_in(released.root / session.notebook)
        assert len(sentences) >= 3, f"{session.notebook} should carry facilitator notes"
        page = (site_dir(released) / session.page).read_text()
        leaked = [s for s in sentences if s in page]
        assert leaked == [], f"facilitator notes leaked into {session.page}: {leaked[:2]}"
        assert "BEGIN SOLUTION" not in page and "Facilitator notes" not in page


def test_released_cells_are_locked_and_declare_the_same_activities(released):
    for session in released.sessions:
        page = site_dir(released) / session.page
        cells = json.loads(page.read_text())["cells"]
        assert all(c["metadata"].get("editable") is False and c["metadata"].get("deletable") is False for c in cells)
        source = read_notebook(released.root / session.notebook, session.notebook, session.id)
        learner = read_notebook(page, session.page, session.id)
        assert [a.id for a in learner.activities] == [a.id for a in source.activities]


def test_the_home_page_is_released_beside_the_sessions(released):
    assert (site_dir(released) / "home.ipynb").exists()


def test_every_page_is_titled_for_the_browser_tab(released):
    """Voila's template puts the notebook's metadata title in <title>: the tab says which session it is."""
    site = site_dir(released)
    title = lambda name: json.loads((site / name).read_text(encoding="utf-8"))["metadata"]["title"]
    first = released.sessions[0]
    assert title(first.page) == f"Session 1: {first.title} — {released.title}"
    assert title(first.page).startswith("Session 1: Building the foundation")
    for session in released.sessions:
        assert title(session.page).startswith(f"Session {session.number}: {session.title}")
    assert title("home.ipynb") == f"My sessions — {released.title}"
    assert title("dashboard.ipynb") == f"Facilitator dashboard — {released.title}"
    assert not is_stale(released)


def test_pages_released_before_they_had_titles_are_released_again(course):
    release(course)
    assert not is_stale(course)
    home = site_dir(course) / "home.ipynb"
    untitled = json.loads(home.read_text(encoding="utf-8"))
    del untitled["metadata"]["title"]
    home.write_text(json.dumps(untitled), encoding="utf-8")
    assert is_stale(course), "a page without its title (an older release) makes the server release again"


def execute(path, cwd):
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error" or o.get("name") == "stderr"]
    return notebook, errors


@pytest.mark.parametrize("number", range(1, 7))
def test_every_released_session_runs_top_to_bottom(released, number):
    session = released.sessions[number - 1]
    notebook, errors = execute(site_dir(released) / session.page, site_dir(released))
    assert errors == [], f"{session.page} printed errors: {errors[:1]}"
    widgets = [o for c in notebook.cells for o in c.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    activity_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert len(widgets) == len(activity_cells), "every code cell shows its widget"


def test_the_fixture_course_releases_and_runs(course):
    pages = release(course)
    assert [p.name for p in pages] == ["01-every-activity.ipynb", "02-short.ipynb"]
    assert "SECRET-FACILITATOR-NOTE" not in pages[0].read_text()
    for page in [*pages, site_dir(course) / "home.ipynb"]:
        _, errors = execute(page, site_dir(course))
        assert errors == []
