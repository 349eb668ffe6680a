"""Issue 11's whole coaching loop, as its people would do it, on one real ``companion serve --mode link``.

A learner rates herself at the start, sets two goals, shares a reflection and
rates herself at the end, all on the session pages; she checks in on a goal
from "My growth and goals" (an earlier check-in is already there), and sees
both ratings and the dated history. The facilitator answers everything in the
"Waiting for feedback" queue; the learner's home page then says new feedback
has arrived, and the queue is empty.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

import cohort
from companion.identity import server_secret, sign
from companion.settings import load_settings
from companion.store import utcnow
from conftest import Server, open_session, wait_until

pytestmark = pytest.mark.browser

GOAL_1, GOAL_2 = "s1-goal", "s2-goal-cultural-proficiency"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = cohort.make_evaluation_course(tmp_path_factory.mktemp("journey") / "course")
    server = Server(root, mode="link", learner="should-not-be-used")
    yield server
    server.stop()


def rate(page, activity_id: str, ratings: list[int]) -> None:
    groups = page.locator(f".companion-a-{activity_id} .widget-radio-box")
    for group, rating in zip(groups.all(), ratings):
        group.locator("input[type=radio]").nth(rating - 1).check()


def set_goal(page, activity_id: str, goal: str, measure: str) -> None:
    card = page.locator(f".companion-a-{activity_id}")
    card.get_by_label("My goal").fill(goal)
    card.get_by_label("How I will know I met it (success measure)").fill(measure)
    card.locator("input[type=date]").fill("2027-06-15")
    card.get_by_role("button", name="Save goal").click()


def test_rate_set_goals_check_in_share_rate_again_get_feedback_and_the_queue_empties(server, page):
    store = server.store()
    store.upsert_learners([{"username": "bea", "name": "Bea Ortiz", "email": "", "cohort": "Winter", "department": "", "extra": {}}])
    secret = server_secret(load_settings(server.root).home)
    me = "learner=" + sign("bea", secret)

    # Session 1: the starting self-rating, a goal, a shared reflection.
    open_session(page, server.page("01-every-activity.ipynb", me))
    rate(page, "s1-start-cultural-proficiency", [1, 2, 2, 3])
    set_goal(page, GOAL_1, "Hold a one-to-one with each person every week", "Each person says in June they got timely feedback")
    why = page.locator(".companion-a-s1-why")
    why.get_by_label("What is your why for leading with racial equity?").fill("Because every child deserves it.")
    why.get_by_label("Share with my facilitator").check()
    wait_until(lambda: (r := store.response("bea", "s1-start-cultural-proficiency")) and r.done, what="the start rating")
    wait_until(lambda: (r := store.response("bea", GOAL_1)) and r.done, what="the first goal")
    wait_until(lambda: (r := store.response("bea", "s1-why")) and r.shared and r.value["text"], what="the shared reflection")

    # Session 2: the ending self-rating and a second goal.
    open_session(page, server.page("02-short.ipynb", me))
    rate(page, "s2-end-cultural-proficiency", [3, 3, 2, 4])
    set_goal(page, GOAL_2, "Ask families before changing a procedure", "Three families reviewed the next change")
    wait_until(lambda: (r := store.response("bea", "s2-end-cultural-proficiency")) and r.done, what="the end rating")
    wait_until(lambda: (r := store.response("bea", GOAL_2)) and r.done, what="the second goal")

    # A check-in from ten days ago, then one today from the growth page: two dates in the history.
    earlier = store.add_check_in("bea", "s1", GOAL_1, "In progress", "Two of six so far.", at=utcnow() - timedelta(days=10))
    page.goto(f"{server.url}/growth?{me}", timeout=180_000)
    page.wait_for_selector(".companion-growth-chart", timeout=180_000)
    ratings = page.locator("table.companion-ratings").first.inner_text()
    assert "1" in ratings and "4" in ratings
    chart = page.locator("svg.companion-growth-chart").get_attribute("aria-label")
    assert "start 2" in chart and "end 3" in chart, chart
    goal = page.locator(".companion-goal", has_text="Hold a one-to-one with each person every week")
    goal.get_by_label("Note (optional): what you did, what changed, what comes next").fill("Five of six now.")
    goal.get_by_role("button", name="Add check-in").click()
    goal.get_by_text("Check-in saved").wait_for()
    history = goal.locator(".companion-check-in").all_inner_texts()
    assert len(history) == 2 and "Two of six so far." in history[0] and "Five of six now." in history[1]
    dates = [goal.locator(".companion-check-in").nth(n).locator("time").first.get_attribute("datetime")[:10] for n in (0, 1)]
    assert dates == [f"{earlier.at:%Y-%m-%d}", f"{utcnow():%Y-%m-%d}"], "two dates"

    # The facilitator answers everything waiting: two check-ins and the shared reflection.
    key = sign("lee", secret, purpose="facilitator")
    page.goto(server.page("dashboard.ipynb", f"facilitator={key}"), timeout=180_000)
    page.wait_for_selector(".companion-queue-count", timeout=180_000)
    assert page.locator(".companion-queue-count").inner_text() == "3 items wait for feedback, oldest first."
    page.get_by_role("button", name="Answer: open Bea Ortiz's record").first.click()
    page.locator(".companion-coach-goal").first.wait_for()
    for number in (1, 2):
        box = page.get_by_label(f"Your feedback on check-in {number} (", exact=False).first
        box.fill(f"Thank you for check-in {number}.")
        page.get_by_role("button", name="Send feedback on this check-in").nth(number - 1).click()
        wait_until(lambda: len([w for w in store.waiting_for_feedback() if w.kind == "check-in"]) == 2 - number, what=f"check-in {number} answered")
    page.get_by_label("Your feedback", exact=True).fill("Thank you, Bea.")
    page.get_by_role("button", name="Send feedback", exact=True).click()
    wait_until(lambda: store.waiting_for_feedback() == [], what="the queue to empty")
    page.get_by_role("button", name="Refresh figures").click()
    page.get_by_text("Nothing waits for feedback").wait_for()

    # The learner's home page says feedback has arrived; the growth page shows it, newest first.
    page.goto(f"{server.url}/?{me}", timeout=180_000)
    page.wait_for_selector(".companion-sessions", timeout=180_000)
    assert "New feedback on 1 reflection and 1 goal" in page.inner_text("body")
    page.goto(f"{server.url}/growth?{me}", timeout=180_000)
    page.wait_for_selector(".companion-feedback-list", timeout=180_000)
    assert page.locator(".companion-feedback-item").first.inner_text().count("Thank you, Bea.") == 1
    page.goto(f"{server.url}/?{me}", timeout=180_000)
    page.wait_for_selector(".companion-sessions", timeout=180_000)
    assert "New feedback" not in page.inner_text("body")
