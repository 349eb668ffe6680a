"""A facilitator on a real ``companion serve --mode link``: reads only what a learner shared, gives
feedback the learner sees after a reload, and a learner's link never opens the dashboard."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from companion.identity import server_secret, sign
from companion.settings import load_settings
from conftest import open_session, wait_until

pytestmark = pytest.mark.browser

SHARED = "Shared: every child deserves leaders who see them. <img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"
PRIVATE = "PRIVATE: only for me."


SERVER_MODE = "link"  # the conftest server: every learner needs a signed link



def learner_link(server, username):
    return "learner=" + sign(username, server_secret(load_settings(server.root).home))


def facilitator_key(server, username):
    return "facilitator=" + sign(username, server_secret(load_settings(server.root).home), purpose="facilitator")


def open_dashboard(page, url):
    page.goto(url)
    page.wait_for_selector(".companion-dashboard", timeout=120_000)
    return page


def test_shared_text_only_then_feedback_the_learner_sees_after_a_reload(server, page):
    store = server.store()
    store.upsert_learners([{"username": "bea", "name": "Bea Ortiz", "email": "bea@psesd.example.org", "cohort": "Winter 2021", "department": "HR", "extra": {}}])

    # The learner shares one reflection and keeps another private.
    session = server.page("01-every-activity.ipynb", learner_link(server, "bea"))
    open_session(page, session)
    why = page.get_by_label("What is your why for leading with racial equity?")
    why.fill(SHARED)
    page.get_by_label("Share with my facilitator").first.check()
    page.get_by_label("What would you rather keep to yourself?").fill(PRIVATE)
    page.get_by_role("button", name="Save").nth(1).click()
    wait_until(lambda: (r := store.response("bea", "s1-why")) and r.shared and r.value == {"text": SHARED}, what="the shared reflection")
    wait_until(lambda: (r := store.response("bea", "s1-private")) and r.value == {"text": PRIVATE} and not r.shared, what="the private one")

    # The facilitator opens bea's record: the shared text, as text; nothing of the private one.
    open_dashboard(page, server.page("dashboard.ipynb", facilitator_key(server, "lee")))
    assert "Signed in as facilitator lee" in page.inner_text("body")
    assert "completed the series" in page.inner_text(".companion-series")
    page.get_by_label("Learner username").fill("bea")
    page.get_by_role("button", name="Show record").click()
    shared = page.locator(".companion-shared-reflection")
    shared.wait_for()
    assert shared.count() == 1
    assert page.locator(".companion-reflection-text").inner_text() == SHARED
    body = page.inner_text("body")
    assert "Bea Ortiz (bea)" in body
    assert "PRIVATE" not in body and "private: not shared" in body
    assert page.locator(".companion-dashboard img").count() == 0
    assert page.title() != "pwned"

    # Feedback, written and sent.
    page.get_by_label("Your feedback").fill("Thank you, Bea. Bring this to session 2.")
    page.get_by_role("button", name="Send feedback").click()
    page.get_by_text("Feedback sent.").wait_for()
    assert [(f.author, f.text) for f in store.feedback("bea", "s1-why")] == [("lee", "Thank you, Bea. Bring this to session 2.")]

    # The learner reloads the session page and finds it under the reflection.
    open_session(page, session)
    feedback = page.locator(".companion-feedback")
    feedback.wait_for()
    assert "Feedback from your facilitator" in feedback.inner_text()
    assert "Thank you, Bea. Bring this to session 2." in feedback.inner_text()
    assert page.get_by_label("What is your why for leading with racial equity?").input_value() == SHARED


def test_the_dashboard_passes_axe_and_shows_the_chart_as_text(server, page):
    server.store().save("cy", "s2", "s2-note", "responded", {"text": "Cy's note"}, done=True)
    open_dashboard(page, server.page("dashboard.ipynb", facilitator_key(server, "lee")))
    chart = page.locator("table.companion-chart")
    chart.wait_for()
    assert "Completion by session: All cohorts" in chart.inner_text()
    assert "% complete" in chart.inner_text()
    results = Axe().run(page)
    serious = [f"{v['id']}: {v['help']}" for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == []


@pytest.mark.parametrize("query", ["learner", "learner-as-key", "none"])
def test_a_learners_link_is_refused_by_the_dashboard(server, page, query):
    link = learner_link(server, "bea")
    query = {"learner": link, "learner-as-key": "facilitator=" + link.split("=", 1)[1], "none": ""}[query]
    answer = page.goto(server.page("dashboard.ipynb", query))
    assert answer.status == 403, "refused before any kernel starts"
    assert page.get_by_role("heading", level=1).inner_text() == "This dashboard is for facilitators"
    assert "facilitator link" in page.locator("main").inner_text()
    body = page.inner_text("body")
    assert "bea" not in body and "Completion" not in body
    assert page.get_by_role("button").count() == 0
    assert page.locator("textarea, input").count() == 0
