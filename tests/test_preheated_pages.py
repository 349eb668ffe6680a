"""A ready kernel runs its session's cells before any learner asks, and fills them for the one who does.

A real ``companion serve --mode link`` of the fixture course and real Chromium.
Session 2 gets one more code cell, which writes to a file in the data home
whether the page's request had reached the kernel when the cell ran. Each
kernel Voila keeps ready runs the notebook as far as its last activity before
any request; the learner's identity, saved work and order of choices come in
only once a page takes the kernel.
"""

from __future__ import annotations

import json
import re

import pytest

from companion.activities.page import shuffled
from companion.catalog import load_catalog
from companion.identity import server_secret, sign
from companion.settings import load_settings
from conftest import Server, make_course, open_session, wait_until

PAGE = "02-short.ipynb"
NOTE = "One thing you noticed this week."
MARKER = (
    "import os, pathlib\n"
    'with open(pathlib.Path(os.environ["COMPANION_HOME"]) / "cells-ran.txt", "a") as ran:\n'
    '    ran.write((os.environ.get("QUERY_STRING") or "before any request") + "\\n")'
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The fixture course served in link mode, session 2 with the marker cell after its Workbook."""
    root = make_course(tmp_path_factory.mktemp("preheated") / "course")
    notebook = root / "sessions" / PAGE
    content = json.loads(notebook.read_text())
    content["cells"].insert(2, {"cell_type": "code", "execution_count": None, "id": "marker", "metadata": {}, "outputs": [], "source": MARKER})
    notebook.write_text(json.dumps(content))
    server = Server(root, mode="link", learner="nobody")
    yield server
    server.stop()


def link(server: Server, learner: str) -> str:
    return server.page(PAGE, "learner=" + sign(learner, server_secret(load_settings(server.root).home)))


def cell_runs(server: Server) -> list[str]:
    path = server.home / "cells-ran.txt"
    return path.read_text().splitlines() if path.exists() else []


def taken(server: Server) -> int:
    return len(re.findall(r"Using pre-heated kernel: [0-9a-f-]+ for 02-short", server.output()))


def test_a_ready_kernel_runs_the_sessions_cells_before_any_learner_asks_for_the_page(served):
    runs = wait_until(lambda: cell_runs(served), timeout=120, what="the ready kernel to run session 2's cells")
    assert runs == ["before any request"], "no page was asked for, so no request had reached the kernel"


def from_a_ready_kernel(served: Server, chromium, learner: str, pages_before: int):
    """``learner``'s session 2 in a new browser context, once a kernel kept ready has run the cells; it must take that kernel."""
    wait_until(lambda: len(cell_runs(served)) > pages_before, timeout=120, what="a kernel kept ready")
    context = chromium.new_context()
    page = open_session(context.new_page(), link(served, learner))
    assert taken(served) == pages_before + 1, "the page was served from a kernel kept ready"
    assert f"Signed in as {learner}" in page.inner_text(".companion-workbook")
    return context, page


def test_a_learner_comes_back_to_a_ready_kernel_and_finds_their_work_in_their_own_order(served, chromium):
    first, page = from_a_ready_kernel(served, chromium, "ana", 0)
    page.get_by_label(NOTE).fill("The agenda never has time for families' questions.")
    page.locator(".companion-a-s2-note .companion-status", has_text=re.compile("^Saved at")).wait_for()
    first.close()

    # The kernel that replaced the one taken has run the cells before its own request.
    again, page = from_a_ready_kernel(served, chromium, "ana", 1)
    assert page.get_by_label(NOTE).input_value() == "The agenda never has time for families' questions."
    choices = load_catalog(load_settings(served.root)).activity("s2-case-note").args["steps"][0]["choices"]
    shown = page.locator(".companion-a-s2-case-note .widget-radio-box label").all_inner_texts()
    assert shown == shuffled([c["choice"] for c in choices], "ana", "s2-case-note:first")
    again.close()

    other, page = from_a_ready_kernel(served, chromium, "bo", 2)
    assert page.get_by_label(NOTE).input_value() == "", "bo's page shows nothing of ana's"
    other.close()
    assert set(cell_runs(served)) == {"before any request"}, "no cell ran again once a page had asked"
