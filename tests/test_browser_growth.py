""""My growth and goals" at ``/growth``, on a real ``companion serve`` of the real course in real Chromium.

The learner (dee, on this computer) has rated herself at the start and the end,
set two goals and checked in on one ten days ago; a facilitator has answered a
reflection she shared and then her goal. Her home page says so until she opens
the growth page; there she sees both ratings, the chart's numbers in words, her
goals' history, adds a second check-in through the form, reads the feedback
newest first and downloads her journal.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from companion.catalog import load_catalog
from companion.settings import load_settings
from companion.store import utcnow
from conftest import REPO, Server, wait_until

pytestmark = pytest.mark.browser

CP = "cultural-proficiency"
GOAL, OTHER_GOAL = "s5-goal-cultural-proficiency", "s5-goal-racial-equity-mindset"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(REPO, mode="local", learner="dee", home=tmp_path_factory.mktemp("growth-home"))
    yield server
    server.stop()


def open_growth(page, url):
    page.goto(url, timeout=180_000)
    page.wait_for_selector(".companion-growth h2", timeout=180_000)


def open_home(page, url):
    page.goto(url, timeout=180_000)
    page.wait_for_selector(".companion-sessions", timeout=180_000)


def test_a_learner_sees_her_growth_adds_a_check_in_and_reads_new_feedback(server, page, tmp_path):
    store = server.store()
    statements = load_settings(REPO).competency(CP).indicators
    reflection = next(a for a in load_catalog(load_settings(REPO)).all_activities() if a.kind == "Reflection")
    store.save("dee", "s1", "s1-start-cultural-proficiency", "answered",
               {"competency": CP, "stage": "start", "ratings": [1, 2, 2, 3], "score": 2.0}, done=True)
    store.save("dee", "s6", "s6-end-cultural-proficiency", "answered",
               {"competency": CP, "stage": "end", "ratings": [3, 2, 4, 4], "score": 3.25}, done=True)
    for goal, text in ((GOAL, "Call three families before the spring plan"), (OTHER_GOAL, "Reframe deficit talk in team meetings")):
        store.save("dee", "s5", goal, "responded", {"competency": CP, "goal": text, "measure": "Notes from each call",
                                                   "target": "2027-03-01", "status": "Not started", "progress": ""}, done=True)
    first = store.add_check_in("dee", "s5", GOAL, "In progress", "Called the first family.", at=utcnow() - timedelta(days=10))
    store.save("dee", reflection.session_id, reflection.id, "shared", {"text": "Private until I shared it."}, done=True, shared=True)
    store.add_feedback("dee", reflection.id, "Lee Facilitator", "Older: thank you for sharing your why.")
    store.add_feedback("dee", GOAL, "Lee Facilitator", "Newer: a measure you can count.", goal=True)

    # The home page says feedback is waiting, and where.
    open_home(page, server.url + "/")
    notice = page.locator(".companion-new-feedback")
    assert notice.inner_text() == "New feedback on 1 reflection and 1 goal"
    assert page.locator("a.companion-growth-link").get_attribute("href") == "/growth"
    page.locator("a.companion-growth-link").click()
    page.wait_for_selector(".companion-growth h2", timeout=180_000)
    assert page.url == server.url + "/growth"
    assert page.title().startswith("My growth and goals — ")

    # Both ratings, per statement and in the chart's words.
    label = page.locator("svg.companion-growth-chart").get_attribute("aria-label")
    assert page.locator("svg.companion-growth-chart").get_attribute("role") == "img"
    assert "Cultural Proficiency: start 2, end 3.25" in label and "Racial Equity Advocate: start not rated yet" in label
    table = page.locator("table.companion-ratings").first
    rows = [[cell.strip() for cell in row.split("\t")] for row in table.locator("tbody tr").all_inner_texts()]
    assert rows[0] == [statements[0], "1", "3", "+2"]
    assert rows[1] == [statements[1], "2", "2", "no change"]
    assert rows[4] == ["Average", "2", "3.25", "+1.25"]

    # The feedback, newest first, both new on this visit.
    items = page.locator(".companion-feedback-item").all_inner_texts()
    assert len(items) == 2
    assert "Newer: a measure you can count." in items[0] and "Your Cultural Proficiency goal" in items[0]
    assert "Older: thank you for sharing your why." in items[1] and reflection.title in items[1]
    assert all(item.startswith("New") for item in items)

    # The goal's history, and a second check-in through the form.
    goal = page.locator(".companion-goal").filter(has_text="Call three families before the spring plan")
    assert "Notes from each call" in goal.inner_text() and "Called the first family." in goal.inner_text()
    goal.get_by_label("Status of your Cultural Proficiency goal now").select_option("Met")
    goal.get_by_label("Note (optional): what you did, what changed, what comes next").fill("All three calls made; <b>plan</b> changed.")
    goal.get_by_role("button", name="Add check-in").click()
    wait_until(lambda: "Check-in saved: Met" in goal.inner_text(), what="the check-in's confirmation")
    history = goal.locator(".companion-history li")
    assert history.count() == 2
    assert "All three calls made; <b>plan</b> changed." in history.nth(1).inner_text(), "the note is shown as text"
    dates = goal.locator(".companion-history li > p time").all_inner_texts()
    assert len(dates) == 2 and dates[0] != dates[1]
    assert goal.get_by_label("Note (optional): what you did, what changed, what comes next").input_value() == ""
    saved = store.check_ins("dee", GOAL)
    assert [(c.id, c.status) for c in saved] == [(first.id, "In progress"), (saved[1].id, "Met")]
    assert saved[1].note == "All three calls made; <b>plan</b> changed."

    # The other goal has no check-ins yet; the privacy sentence is said once.
    other = page.locator(".companion-goal").filter(has_text="Reframe deficit talk in team meetings")
    assert "No check-ins yet." in other.inner_text()
    assert page.inner_text(".companion-growth").count("Goals are not private like your reflections") == 1

    # The journal downloads, with what she wrote.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download my journal").click()
    assert download.value.suggested_filename == "my-journal.html"
    journal = Path(download.value.path()).read_text(encoding="utf-8")
    assert "Private until I shared it." in journal and "Call three families before the spring plan" in journal

    # Seen: the home page no longer says so, and a second visit marks nothing new.
    assert store.unseen_feedback("dee") == []
    open_home(page, server.url + "/")
    assert page.locator(".companion-new-feedback").count() == 0
    assert page.locator("a.companion-growth-link").count() == 1
    open_growth(page, server.url + "/growth")
    assert page.locator(".companion-new").count() == 0
    assert page.locator(".companion-goal").filter(has_text="Call three families").locator(".companion-history li").count() == 2
