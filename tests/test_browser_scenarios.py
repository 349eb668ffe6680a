"""Scenarios in the browser: decide, see what happens and why, reload and find the path, and have it count.

Every real session's scenario is played the way a supervisor would; the fixture
course's scenario is played with the keyboard alone and on a phone's screen.
"""

from __future__ import annotations

import pytest

from companion.catalog import load_catalog
from companion.settings import load_settings
from conftest import REPO, Server, open_session, wait_until
from test_browser_layout import CUT_OFF, SMALL_TYPE, TOO_WIDE

pytestmark = pytest.mark.browser

SESSIONS = load_settings(REPO).sessions


@pytest.fixture(scope="module")
def course_server(tmp_path_factory):
    """The real course, served as it is installed, to the learner dee."""
    server = Server(REPO, mode="local", learner="dee", home=tmp_path_factory.mktemp("scenario-home"))
    yield server
    server.stop()


def scenario_of(root, session_id: str):
    return next(a for a in load_catalog(load_settings(root)).activities(session_id) if a.kind == "Scenario")


def consequence_of(scenario, chosen: list[str]) -> list[str]:
    """What the notebook says happens after each choice on the path, in order."""
    steps = {step["id"]: step for step in scenario.args["steps"]}
    step, said = scenario.args["steps"][0], []
    for text in chosen:
        choice = next(c for c in step["choices"] if c["choice"] == text)
        said.append(choice["consequence"])
        step = steps.get(choice["next"])
    return said


def play(card, pick=lambda labels: 0) -> list[str]:
    """Decide every step of the case (the option ``pick`` chooses among those shown); the chosen texts, in order."""
    chosen: list[str] = []
    while card.locator(".companion-step-now").is_visible():
        labels = card.locator(".companion-decision .widget-radio-box label").all_inner_texts()
        choice = labels[pick(labels)].strip()
        card.locator(".companion-decision label", has_text=choice).locator("input").check()
        card.get_by_role("button", name="Decide").click()
        chosen.append(choice)
        wait_until(lambda: card.locator(".companion-chosen").count() == len(chosen), what=f"decision {len(chosen)} to show")
    return chosen


def still_to_do(page) -> str:
    return page.locator(".companion-activity", has_text="Finish this session").inner_text()


@pytest.mark.parametrize("session", SESSIONS, ids=[s.id for s in SESSIONS])
def test_each_session_has_a_scenario_that_shows_consequences_restores_its_path_and_counts(course_server, page, session):
    scenario = scenario_of(REPO, session.id)
    open_session(page, f"{course_server.url}/session/{session.number}")
    card = page.locator(f".companion-a-{scenario.id}")
    assert scenario.title in still_to_do(page)
    assert not card.locator("textarea").is_visible(), "the closing reflection waits until the case is over"

    chosen = play(card)
    shown = card.inner_text()
    for text, consequence in zip(chosen, consequence_of(scenario, chosen)):
        assert text in shown and consequence in shown
    assert card.locator(".companion-consequence").count() == len(chosen)
    assert "The case is over" in shown

    card.locator("textarea").fill("I would ask the people affected before deciding.")
    store = course_server.store()
    saved = wait_until(lambda: (r := store.response("dee", scenario.id)) and r.done and r, what="the scenario to be done")
    assert [step["choice"] for step in saved.value["path"]] == chosen
    wait_until(lambda: scenario.title not in still_to_do(page), what="the to-do list to drop the scenario")

    page.reload()
    open_session(page, f"{course_server.url}/session/{session.number}")
    card = page.locator(f".companion-a-{scenario.id}")
    card.locator(".companion-chosen").first.wait_for()
    assert [t.removeprefix("You chose:").strip() for t in card.locator(".companion-chosen").all_inner_texts()] == chosen
    assert card.locator("textarea").input_value() == "I would ask the people affected before deciding."
    assert not card.locator(".companion-step-now").is_visible()
    assert scenario.title not in still_to_do(page)


def test_a_scenario_can_be_played_with_the_keyboard_alone_and_started_again(server, page):
    """The fixture course's two-step case: Tab to a decision, Space to choose, Enter to decide."""
    scenario = scenario_of(server.root, "s1")
    open_session(page, server.page("01-every-activity.ipynb"))
    card = page.locator(f".companion-a-{scenario.id}")

    def tab_to(predicate: str, limit: int = 60) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"() => {{ const e = document.activeElement; return {predicate}; }}"):
                return
        raise AssertionError(f"Tab never reached an element where {predicate}")

    in_card = f"e.closest('.companion-a-{scenario.id}') !== null"
    chosen = []
    for number in (1, 2):
        tab_to(f"e.type === 'radio' && {in_card}")
        page.keyboard.press("Space")
        chosen.append(page.evaluate("() => document.activeElement.closest('label').innerText.trim()"))
        tab_to("e.tagName === 'BUTTON' && e.textContent.trim() === 'Decide'")
        page.keyboard.press("Enter")
        wait_until(lambda: card.locator(".companion-chosen").count() == number, what=f"decision {number}")
        if not card.locator(".companion-step-now").is_visible():
            break
    tab_to(f"e.tagName === 'TEXTAREA' && {in_card}")
    page.keyboard.type("I would ask her first.")
    store = server.store()
    saved = wait_until(lambda: (r := store.response("ana", scenario.id)) and r.done and r, what="the keyboard scenario to be done")
    assert [step["choice"] for step in saved.value["path"]] == chosen

    tab_to("e.tagName === 'BUTTON' && e.textContent.trim() === 'Start the case again'")
    page.keyboard.press("Enter")
    card.locator(".companion-step-now").wait_for()
    assert card.locator(".companion-chosen").count() == 0
    restarted = wait_until(lambda: (r := store.response("ana", scenario.id)) and r.value["path"] == [] and r, what="the restart to save")
    assert restarted.value["reflection"] == "I would ask her first.", "starting again keeps what the learner wrote"
    assert restarted.done, "a case finished once stays done"


def test_a_scenario_reads_whole_on_a_phone_from_its_first_decision_to_its_reflection(server, chromium):
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        open_session(page, server.page("01-every-activity.ipynb"))
        card = page.locator(f".companion-a-{scenario_of(server.root, 's1').id}")
        card.scroll_into_view_if_needed()
        findings = [page.evaluate(CUT_OFF), page.evaluate(SMALL_TYPE)]
        play(card, pick=lambda labels: 0)
        findings += [page.evaluate(CUT_OFF), page.evaluate(SMALL_TYPE)]
        wider = page.evaluate(TOO_WIDE)
    finally:
        context.close()
    assert [f for f in findings if f] == []
    assert wider["wider"] <= 0, wider["culprits"]
