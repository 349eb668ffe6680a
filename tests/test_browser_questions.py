"""A question with an answer shows each learner its options in their own order, kept across visits, and grades by content."""

from __future__ import annotations

import pytest

from companion.identity import server_secret, sign
from companion.settings import load_settings
from conftest import open_session, wait_until

pytestmark = pytest.mark.browser

SERVER_MODE = "link"  # the conftest server: two learners, each with their own link
RIGHT = "Success for each child and eliminate the opportunity gap by leading with racial equity"


def options_seen(page, url: str) -> list[str]:
    open_session(page, url)
    question = page.locator(".companion-a-s1-end .widget-radio-box label")
    question.first.wait_for()
    return [text.strip() for text in question.all_inner_texts()]


def test_two_learners_see_their_own_option_order_each_stable_across_reloads_and_graded_by_content(server, chromium):
    secret = server_secret(load_settings(server.root).home)
    orders = {}
    for learner in ("ana", "bea"):
        context = chromium.new_context(viewport={"width": 1100, "height": 900})
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            url = server.page("01-every-activity.ipynb", "learner=" + sign(learner, secret))
            orders[learner] = options_seen(page, url)
            assert options_seen(page, url) == orders[learner], f"{learner}'s order is the same on the next visit"
            card = page.locator(".companion-a-s1-end")
            card.get_by_label(RIGHT).check()
            card.get_by_role("button", name="Check my answer").click()
            card.get_by_text("That's right.").wait_for()
        finally:
            context.close()
    assert sorted(orders["ana"]) == sorted(orders["bea"])
    assert orders["ana"] != orders["bea"], "two learners see the same question's options in different orders"
    assert orders["ana"].index(RIGHT) != orders["bea"].index(RIGHT), "the right answer is not in one place for everyone"
    store = server.store()
    for learner in ("ana", "bea"):
        saved = wait_until(lambda: store.response(learner, "s1-end"), what=f"{learner}'s answer")
        assert saved.value == {"selected": [RIGHT], "correct": True}, "recorded by the option's text, whatever its place"
