"""Every real session page renders in Voila with no error, passes axe-core, and session 1 completes end to end."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from companion.settings import load_settings
from companion.store import Store
from conftest import REPO, Server, open_session

pytestmark = pytest.mark.browser
SESSIONS = load_settings(REPO).sessions


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(REPO, mode="local", learner="dee", home=tmp_path_factory.mktemp("home"))
    yield server
    server.stop()


def serious_violations(page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("session", SESSIONS, ids=[s.id for s in SESSIONS])
def test_every_session_page_renders_without_errors_and_passes_axe(server, page, session):
    open_session(page, server.page(session.page))
    page.wait_for_selector("text=Finish this session")
    body = page.inner_text("body")
    assert f"Session {session.number}: {session.title}" in body
    assert "Signed in as dee" in body
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert "Traceback" not in body and "Error" not in page.locator(".jp-OutputArea-output").all_inner_texts().__str__()
    assert "Facilitator notes" not in body
    assert serious_violations(page) == []


def do_every_activity(page) -> None:
    """Answer everything on the page as a learner would: first options, categories in turn, some words."""
    for case in page.locator(".companion-scenario").all():
        for decided in range(1, 10):
            if not case.locator(".companion-step-now").is_visible():
                break
            case.locator(".companion-decision .widget-radio-box input[type=radio]").first.check()
            case.get_by_role("button", name="Decide").click()
            case.locator(".companion-chosen").nth(decided - 1).wait_for()
    for group in page.locator(".widget-radio-box").all():
        if group.is_visible():
            group.locator("input[type=radio]").first.check()
    for box in page.locator(".companion-checkboxes input[type=checkbox]").all()[:1]:
        box.check()
    for select in page.locator(".companion-sort-item select").all():
        select.select_option(index=1)
    for button in page.get_by_role("button", name="Check my answer").all() + page.get_by_role("button", name="Save my answer").all():
        button.click()
    for button in page.get_by_role("button", name="Check my sorting").all():
        button.click()
    for box in page.locator(".companion-activity textarea").all():
        box.fill("My considered answer, written for this exercise.")
    for date in page.locator(".companion-activity input[type=date]").all():
        date.fill("2027-03-01")
    for button in page.get_by_role("button", name="Save").all() + page.get_by_role("button", name="Save goal").all():
        button.click()


def test_session_1_completes_end_to_end(server, page):
    open_session(page, server.page(SESSIONS[0].page))
    do_every_activity(page)
    page.get_by_text("Every required activity is done").wait_for()
    page.get_by_role("button", name="Mark session 1 complete").click()
    page.get_by_text("Session 1 is complete.").wait_for()
    store = Store(load_settings(REPO).db_url.replace(str(REPO / "reflections"), str(server.home)))
    assert store.response("dee", "s1-complete").done
    assert store.response("dee", "s1-start-cultural-proficiency").value["score"] == 1.0
    page.goto(server.url + "/")
    page.wait_for_selector(".companion-sessions")
    assert "Complete" in page.locator('li[data-session="s1"]').inner_text()
