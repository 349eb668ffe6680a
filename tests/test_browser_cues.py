"""What a supervisor sees around the work: their own name, times in their own zone, where to go next."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conftest import Server, open_session, wait_until

pytestmark = pytest.mark.browser



@pytest.fixture
def pacific_page(chromium):
    context = chromium.new_context(viewport={"width": 1100, "height": 900}, timezone_id="America/Los_Angeles", locale="en-US")
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def test_the_page_names_the_learner_as_the_roster_does(server, page):
    server.store().upsert_learners([{"username": "ana", "name": "Ana Lopez", "email": "", "cohort": "", "department": "", "extra": {}}])
    open_session(page, server.page("02-short.ipynb"))
    assert "Signed in as Ana Lopez." in page.inner_text(".companion-workbook")


def test_a_system_account_is_never_shown_as_a_person(module_course, tmp_path_factory, page):
    root_server = Server(module_course, mode="local", learner="root", home=tmp_path_factory.mktemp("as-root"))
    try:
        open_session(page, root_server.page("02-short.ipynb"))
        banner = page.inner_text(".companion-workbook")
        assert "Working on this computer." in banner
        assert "root" not in banner
    finally:
        root_server.stop()


def test_save_times_are_shown_in_the_learners_own_time_zone(server, pacific_page):
    page = pacific_page
    open_session(page, server.page("02-short.ipynb"))
    page.get_by_label("One thing you noticed this week.").fill("A time to show.")
    status = page.locator(".companion-a-s2-note .companion-status")
    wait_until(lambda: status.locator("time[data-local]").count() == 1, what="the saved-at time, shown locally")
    moment = status.locator("time").get_attribute("datetime")
    expected = page.evaluate(
        "iso => new Date(iso).toLocaleTimeString('en-US', {timeZone: 'America/Los_Angeles', hour: 'numeric', minute: '2-digit'})", moment
    )
    shown = status.inner_text()
    assert shown.startswith(f"Saved at {expected} on ")
    assert "UTC" not in shown


def test_after_completing_a_session_the_page_links_to_the_next_and_keeps_the_answers_as_given(server, page):
    store = server.store()
    for activity, value in (
        ("s1-end", {"selected": ["A balanced budget"], "correct": False}),
        ("s1-levels", {"placements": ["Internalized"] * 3, "score": 1, "total": 3}),
        ("s1-why", {"text": "Done before."}),
        ("s1-private", {"text": "Also done."}),
    ):
        store.save("ana", "s1", activity, "answered", value, done=True)
    open_session(page, server.page("01-every-activity.ipynb"))
    page.get_by_text("Every required activity is done").wait_for()
    page.get_by_label("Useful", exact=True).check()
    page.get_by_label(re.compile("What is one thing that would make it more useful")).fill("More stories.")
    wait_until(lambda: (r := store.response("ana", "s1-complete")) and r.value.get("improve") == "More stories.", what="the answers saved as given")
    assert not store.response("ana", "s1-complete").done
    page.get_by_role("button", name="Mark session 1 complete").click()
    page.get_by_text("Session 1 is complete.").wait_for()

    following = page.get_by_role("link", name="Continue to Session 2: A short second session")
    assert following.get_attribute("href").endswith("/session/2")
    # Each control's disabled state reaches the browser as its own widget message, just after the status text.
    expect(page.get_by_label(re.compile("What is one thing that would make it more useful"))).to_be_disabled()
    expect(page.get_by_label("Useful", exact=True)).to_be_disabled()
    completed = store.response("ana", "s1-complete")
    assert completed.done and completed.value == {"useful": "Useful", "improve": "More stories."}
