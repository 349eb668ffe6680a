"""Friendly addresses and the learner's home page, on a real ``companion serve --mode link`` in real Chromium.

``/`` is the home page itself, ``/session/<n>`` session n's workbook and
``/dashboard`` the facilitator dashboard, each with the learner's (or
facilitator's) token kept; the browser tab names the session; the home page
says who is signed in by their roster name, each session's status in words,
and offers a Continue link to the first session not yet complete.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from companion import landing
from companion.activities import signed_in_html
from companion.identity import Identity, server_secret, sign
from companion.settings import load_settings
from companion.store import open_store
from conftest import open_session, wait_until

pytestmark = pytest.mark.browser

COURSE_TITLE = "Mini course for tests"
S1_TITLE = "A session with every kind of activity"
S2_TITLE = "A short second session"


SERVER_MODE = "link"  # the conftest server: every learner needs a signed link



def token(server, username, purpose="learner"):
    return sign(username, server_secret(load_settings(server.root).home), purpose=purpose)


def open_home(page, url):
    response = page.goto(url, timeout=180_000)
    page.wait_for_selector(".companion-sessions", timeout=180_000)
    return response


def complete(store, username, session_id):
    """What the SessionComplete button saves once every required activity is done."""
    store.save(username, session_id, f"{session_id}-complete", "completed", {"useful": "Useful", "improve": ""}, done=True)


def test_a_session_opens_at_its_number_with_the_learners_token_kept(server, page):
    link = token(server, "cy")
    url = f"{server.url}/session/2?learner={link}"
    open_session(page, url)
    assert page.url == url, "no redirect: the address stays the friendly one"
    banner = page.inner_text(".companion-workbook")
    assert "Signed in as" in banner and "cy" in banner
    assert page.title() == f"Session 2: {S2_TITLE} — {COURSE_TITLE}"

    page.get_by_label("One thing you noticed this week.").fill("Cy's words, saved from /session/2")
    page.get_by_role("button", name="Save").click()
    store = server.store()
    wait_until(lambda: store.response("cy", "s2-note"), what="Cy's save")
    assert store.response("cy", "s2-note").value == {"text": "Cy's words, saved from /session/2"}
    assert store.response("should-not-be-used", "s2-note") is None


def test_the_home_page_is_at_the_root_and_its_links_keep_the_token(server, page):
    link = token(server, "dan")
    url = f"{server.url}/?learner={link}"
    response = open_home(page, url)
    assert response.status == 200 and response.request.redirected_from is None, "served at /, not redirected"
    assert page.url == url
    assert page.title() == f"My sessions — {COURSE_TITLE}"
    assert "Signed in as dan" in page.inner_text(".companion-signed-in")

    hrefs = page.locator(".companion-home a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert sorted(hrefs) == sorted([f"/session/1?learner={link}", f"/session/1?learner={link}", f"/session/2?learner={link}", f"/growth?learner={link}"])
    # Links look like links: underlined, in the theme's blue.
    style = page.locator('li[data-session="s2"] a').evaluate("a => [getComputedStyle(a).textDecorationLine, getComputedStyle(a).color]")
    assert style == ["underline", "rgb(29, 79, 145)"]

    page.locator('li[data-session="s2"]').get_by_role("link").click()
    page.wait_for_selector(".companion-workbook", timeout=180_000)
    assert page.url == f"{server.url}/session/2?learner={link}"
    assert "Signed in as" in page.inner_text(".companion-workbook")
    assert "We could not tell who you are" not in page.inner_text("body")


def test_the_old_voila_addresses_still_open_the_pages(server, page):
    open_session(page, server.page("02-short.ipynb", "learner=" + token(server, "dan")))
    assert page.title() == f"Session 2: {S2_TITLE} — {COURSE_TITLE}"
    assert "Signed in as" in page.inner_text(".companion-workbook")


def test_an_unknown_session_says_which_sessions_exist_and_links_home(server, page):
    link = token(server, "dan")
    response = page.goto(f"{server.url}/session/99?learner={link}")
    assert response.status == 404
    text = page.inner_text("body")
    assert "There is no session 99" in text
    assert f"{COURSE_TITLE} has sessions 1 and 2" in text
    assert f"Session 1: {S1_TITLE}" in text and f"Session 2: {S2_TITLE}" in text
    assert page.get_by_role("link", name=f"Session 2: {S2_TITLE}").get_attribute("href") == f"/session/2?learner={link}"
    page.get_by_role("link", name="Go to my sessions").click()
    page.wait_for_selector(".companion-sessions", timeout=180_000)
    assert page.url == f"{server.url}/?learner={link}"


def test_the_continue_link_leads_to_the_first_unfinished_session_and_moves_on(server, page):
    store = server.store()
    link = token(server, "eli")
    home = f"{server.url}/?learner={link}"

    open_home(page, home)
    button = page.locator("a.companion-continue")
    assert button.inner_text() == f"Start: Session 1 — {S1_TITLE}"
    assert button.get_attribute("href") == f"/session/1?learner={link}"
    assert button.bounding_box()["height"] >= 44, "a touch target a supervisor can hit"
    assert "Not started" in page.inner_text('li[data-session="s1"]')

    complete(store, "eli", "s1")
    store.save("eli", "s2", "s2-note", "responded", {"text": "started"}, done=True)
    open_home(page, home)
    assert button.inner_text() == f"Continue: Session 2 — {S2_TITLE}"
    assert button.get_attribute("href") == f"/session/2?learner={link}"
    first = page.locator('li[data-session="s1"]')
    assert "Completed on " in first.inner_text()
    # The date is marked up for the page script, which shows it in the browser's own time zone.
    when = first.locator("time.companion-local")
    assert when.get_attribute("data-format") == "date"
    completed_at = store.response("eli", "s1-complete").updated_at
    assert datetime.fromisoformat(when.get_attribute("datetime")) == completed_at.replace(microsecond=0)
    assert str(completed_at.year) in when.inner_text()
    assert "In progress: 1 of 1 required activities done" in page.inner_text('li[data-session="s2"]')
    assert "You have completed 1 of 2 sessions." in page.inner_text("body")

    button.click()
    page.wait_for_selector(".companion-workbook", timeout=180_000)
    assert page.title() == f"Session 2: {S2_TITLE} — {COURSE_TITLE}"

    complete(store, "eli", "s2")
    open_home(page, home)
    assert page.locator("a.companion-continue").count() == 0
    assert "You have completed every session." in page.inner_text("body")


def test_the_signed_in_name_is_the_roster_name(server, page):
    server.store().upsert_learners(
        [{"username": "fay", "name": "Fay Okafor", "email": "fay@psesd.example.org", "cohort": "Winter", "department": "HR", "extra": {}}]
    )
    open_home(page, f"{server.url}/?learner={token(server, 'fay')}")
    assert page.inner_text(".companion-signed-in").startswith("Signed in as Fay Okafor.")


def test_the_dashboard_is_at_its_friendly_path_with_its_title(server, page):
    page.goto(f"{server.url}/dashboard?facilitator={token(server, 'lee', purpose='facilitator')}", timeout=180_000)
    page.wait_for_selector(".companion-dashboard", timeout=180_000)
    assert page.title() == f"Facilitator dashboard — {COURSE_TITLE}"


# The rule for showing a name, without a browser -----------------------------------


def test_a_system_account_on_ones_own_machine_is_never_shown_as_a_person(course, monkeypatch):
    store = open_store(course.db_url)
    assert signed_in_html(store, Identity("root", "local")) == "Working on this computer."
    assert signed_in_html(store, Identity("ana", "local")) == "Signed in as <strong>ana</strong>."
    store.upsert_learners([{"username": "ana", "name": "Ana Ruiz", "email": "", "cohort": "", "department": "", "extra": {}}])
    assert signed_in_html(store, Identity("ana", "local")) == "Signed in as <strong>Ana Ruiz</strong>."
    assert signed_in_html(store, Identity("root", "link")) == "Signed in as <strong>root</strong>.", "a personal link names someone, whatever they are called"

    monkeypatch.setenv("COMPANION_IDENTITY", "local")
    monkeypatch.setenv("COMPANION_LEARNER", "root")
    text = landing.Home().children[0].value
    assert "Working on this computer." in text and "Signed in as" not in text
