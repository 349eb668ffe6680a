"""Facilitator coaching on a real ``companion serve --mode link`` in real Chromium.

A learner has shared a reflection and checked in on a goal (through the store);
the facilitator opens the dashboard, sees both in the "Waiting for feedback"
queue with how long each has waited, answers the check-in and the reflection
in the browser, and after a refresh (the button, then a reload of the page)
the queue is empty and the feedback is in the store. The page with the
learner's record open passes axe, fits a 390 px phone with 16 px type, and is
photographed at both widths."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import cohort
from companion.identity import server_secret, sign
from companion.settings import load_settings
from conftest import Server
from test_browser_layout import CUT_OFF, SMALL_TYPE, TOO_WIDE, screenshot
from test_browser_sessions import serious_violations

pytestmark = pytest.mark.browser

GOAL = "s1-goal"
GOAL_TITLE = "Your Transformational Value goal"
SHARED = "I lead with equity because <b>my students</b> deserve it."
PRIVATE = "PRIVATE-DO-NOT-SHOW"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The mini course with an end-of-series self-rating (so the cohort chart has both ends), served in link mode."""
    root = cohort.make_evaluation_course(tmp_path_factory.mktemp("coaching") / "course")
    server = Server(root, mode="link", learner="should-not-be-used")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def seeded(server):
    store = server.store()
    now = datetime.now(timezone.utc)
    store.upsert_learners([
        {"username": "bea", "name": "Bea Ortiz", "email": "", "cohort": "Winter 2021", "department": "HR", "extra": {}},
        {"username": "cy", "name": "Cy Park", "email": "", "cohort": "Winter 2021", "department": "", "extra": {}},
    ])
    store.bulk_save([
        dict(username="bea", session_id="s1", activity_id="s1-why", verb="shared", value={"text": SHARED}, done=True, shared=True,
             at=now - timedelta(days=2, hours=1)),
        dict(username="bea", session_id="s1", activity_id="s1-private", verb="responded", value={"text": PRIVATE}, done=True,
             at=now - timedelta(days=2)),
        dict(username="bea", session_id="s1", activity_id=GOAL, verb="responded",
             value={"competency": "transformational-value", "goal": "Hold a one-to-one with each person every week",
                    "measure": "Each person says in June that they got timely feedback", "target": "2027-06-15",
                    "status": "In progress", "progress": ""}, done=True, at=now - timedelta(days=2)),
        dict(username="bea", session_id="s1", activity_id="s1-start-cultural-proficiency", verb="answered",
             value={"stage": "start", "ratings": [1, 2, 2, 3]}, done=True, at=now - timedelta(days=2)),
        dict(username="bea", session_id="s2", activity_id="s2-end-cultural-proficiency", verb="answered",
             value={"stage": "end", "ratings": [3, 3, 2, 4]}, done=True, at=now - timedelta(hours=4)),
        dict(username="cy", session_id="s1", activity_id="s1-start-cultural-proficiency", verb="answered",
             value={"stage": "start", "ratings": [3, 3, 3, 3]}, done=True, at=now - timedelta(days=3)),
        dict(username="cy", session_id="s2", activity_id="s2-end-cultural-proficiency", verb="answered",
             value={"stage": "end", "ratings": [2, 3, 3, 3]}, done=True, at=now - timedelta(days=1)),
        dict(username="cy", session_id="s1", activity_id="s1-complete", verb="answered",
             value={"useful": "Very useful", "improve": "More time to talk in pairs."}, done=False, at=now - timedelta(days=3)),
    ])
    check_in = store.add_check_in("bea", "s1", GOAL, "In progress", "Held four of six so far.", at=now - timedelta(hours=3, minutes=20))
    return store, check_in


def facilitator_url(server) -> str:
    key = sign("lee", server_secret(load_settings(server.root).home), purpose="facilitator")
    return server.page("dashboard.ipynb", f"facilitator={key}")


def open_dashboard(page, server):
    page.goto(facilitator_url(server), timeout=180_000)
    page.wait_for_selector(".companion-queue-count", timeout=180_000)


def test_the_facilitator_answers_the_queue_and_it_empties(server, seeded, page):
    store, check_in = seeded
    open_dashboard(page, server)
    count = page.locator(".companion-queue-count")
    assert count.inner_text() == "2 items wait for feedback, oldest first."
    rows = page.locator(".companion-queue-item")
    assert rows.count() == 2
    assert rows.nth(0).inner_text() == "Bea Ortiz (Winter 2021) — shared reflection: Your why. Waiting 2 days."
    assert rows.nth(1).inner_text() == (
        f"Bea Ortiz (Winter 2021) — check-in on {GOAL_TITLE}. Waiting 3 hours.\nStatus In progress: “Held four of six so far.”"
    )
    assert "no feedback given in the last 30 days" in page.inner_text(".companion-median")
    body = page.inner_text("body")
    assert PRIVATE not in body and SHARED not in body, "the queue names what waits; the text is read in the record"

    # Answer the check-in from the record the queue opens.
    page.get_by_role("button", name="Answer: open Bea Ortiz's record").first.click()
    page.locator(".companion-coach-goal").first.wait_for()
    goal = page.locator(".companion-coach-goal-record")
    for text in ("Hold a one-to-one with each person every week", "Each person says in June that they got timely feedback",
                 "15 Jun 2027", "Check-in 1, ", "In progress. Held four of six so far."):
        assert text in goal.inner_text(), text
    ratings = page.locator("table.companion-coach-ratings")
    assert "1 - Beginning" in ratings.inner_text() and "3 - Applying" in ratings.inner_text()
    assert page.locator(".companion-reflection-text").inner_text() == SHARED
    assert PRIVATE not in page.inner_text("body")

    label = f"Your feedback on check-in 1 ({check_in.at:%d %b %Y}) of “{GOAL_TITLE}”"
    page.get_by_role("button", name="Send feedback on this check-in", exact=True).click()
    page.get_by_text("Not sent: The feedback is empty").wait_for()
    page.get_by_label(label, exact=True).fill("Four of six in a month is real progress.")
    page.get_by_role("button", name="Send feedback on this check-in", exact=True).click()
    page.get_by_text("Feedback sent on this check-in.").wait_for()
    assert page.get_by_label(label, exact=True).input_value() == ""

    # Answer the shared reflection.
    page.get_by_label("Your feedback", exact=True).fill("Thank you, Bea: name one student this week.")
    page.get_by_role("button", name="Send feedback", exact=True).click()
    page.get_by_text("Feedback sent. bea sees it under this reflection").wait_for()

    # Refresh: the queue is empty, on the page and after a reload.
    page.get_by_role("button", name="Refresh figures").click()
    page.get_by_text("Nothing waits for feedback").wait_for()
    open_dashboard(page, server)
    assert "Nothing waits for feedback" in page.inner_text(".companion-queue-count")
    assert page.locator(".companion-queue-item").count() == 0
    assert "Median time to first feedback over the last 30 days:" in page.inner_text(".companion-median")
    assert [f.text for f in store.feedback("bea", GOAL, check_in=check_in.id)] == ["Four of six in a month is real progress."]
    assert [(f.author, f.text) for f in store.feedback("bea", "s1-why")] == [("lee", "Thank you, Bea: name one student this week.")]
    assert store.waiting_for_feedback() == []


def test_the_cohort_view_the_record_and_the_page_read_whole_at_both_widths(server, seeded, chromium, tmp_path):
    folder = Path(os.environ.get("COMPANION_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for size, viewport in {"1280x900": {"width": 1280, "height": 900}, "390x844": {"width": 390, "height": 844}}.items():
        context = chromium.new_context(viewport=viewport)
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            open_dashboard(page, server)
            chart = page.locator("svg.companion-coach-growth-svg[role=img]").first
            assert chart.get_attribute("aria-label") == (
                "Cultural Proficiency: mean self-rating 2.50 at the start and 2.88 at the end, on a scale of 1 to 4, "
                "over 2 learners; 1 rose, 0 stayed the same, 1 fell."
            )
            table = page.locator("table.companion-coach-growth-table").inner_text()
            assert "2.50" in table and "2.88" in table
            usefulness = page.locator("table.companion-coach-usefulness").inner_text()
            assert "1" in usefulness and "More time to talk in pairs." in page.inner_text(".companion-coach-suggestions")
            assert "Cy Park" not in page.inner_text(".companion-coach-suggestions")
            page.get_by_label("Learner username").fill("bea")
            page.get_by_role("button", name="Show record").click()
            page.locator(".companion-coach-goal").first.wait_for()
            page.evaluate("document.fonts.ready")
            page.wait_for_timeout(300)
            cut, width, small = page.evaluate(CUT_OFF), page.evaluate(TOO_WIDE), page.evaluate(SMALL_TYPE)
            violations = serious_violations(page)
            screenshot(page, folder / f"{size}-coaching.png")
        finally:
            context.close()
        assert cut == [], f"{size}: {cut}"
        assert width["wider"] <= 0, f"{size}: {width}"
        assert small == [], f"{size}: {small}"
        assert violations == [], f"{size}: {violations}"
