"""On a shared server each learner opens a personal signed link; a bad link says why and records nothing."""

from __future__ import annotations

import time

import pytest

from companion.identity import server_secret, sign
from companion.settings import load_settings
from companion.store import Store
from conftest import open_session, wait_until

pytestmark = pytest.mark.browser


SERVER_MODE = "link"  # the conftest server: every learner needs a signed link


def token(root, username, **kwargs):
    return sign(username, server_secret(load_settings(root).home), **kwargs)


def events(root):
    return Store(load_settings(root).db_url).count_events()


def test_a_personal_link_signs_the_learner_in_and_keeps_them_signed_in_across_pages(server, page):
    link = token(server.root, "bea")
    page.goto(f"{server.url}/?learner={link}")
    page.wait_for_selector(".companion-sessions")
    assert "Signed in as bea" in page.inner_text("body")
    page.get_by_role("link", name="Session 2: A short second session").click()
    page.wait_for_selector(".companion-workbook")
    page.get_by_label("One thing you noticed this week.").fill("Bea's words")
    page.get_by_role("button", name="Save").click()
    store = Store(load_settings(server.root).db_url)
    wait_until(lambda: store.response("bea", "s2-note"), what="Bea's save")
    assert store.response("bea", "s2-note").value == {"text": "Bea's words"}
    assert Store(load_settings(server.root).db_url).response("should-not-be-used", "s2-note") is None


@pytest.mark.parametrize(
    "query, message",
    [
        ("", "This page needs your personal link"),
        ("learner=bea.9999999999.AAAAforgedAAAA", "This link is not valid"),
        ("learner=EXPIRED", "This link expired on"),
    ],
    ids=["missing", "altered", "expired"],
)
def test_a_missing_altered_or_expired_link_records_nothing_and_says_why(server, page, query, message):
    if query == "learner=EXPIRED":
        query = "learner=" + token(server.root, "bea", days=1, now=time.time() - 3 * 86400)
    before = events(server.root)
    answer = page.goto(server.page("01-every-activity.ipynb", query))
    assert answer.status == 403, "the server answers before any kernel starts"
    assert page.get_by_role("heading", level=1).inner_text() == "We could not tell who you are"
    said = page.locator("main").inner_text()
    assert message in said
    assert "nothing has been saved" in said
    assert page.locator("textarea").count() == 0, "no activity renders without a learner"
    assert page.get_by_role("button").count() == 0
    assert page.locator("script").count() == 0
    assert events(server.root) == before


def test_an_altered_link_to_another_learner_is_refused(server, page):
    real = token(server.root, "bea")
    forged = "cy" + real[len("bea"):]
    page.goto(server.page("02-short.ipynb", f"learner={forged}"))
    assert "This link is not valid" in page.locator("main").inner_text()


@pytest.mark.parametrize("path", ["/voila/tree", "/voila/tree/", "/voila/tree/dashboard.ipynb"])
def test_nobody_gets_a_list_of_the_servers_pages(server, path):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.url + path, timeout=30)
    assert refused.value.code == 404
    assert b"dashboard.ipynb" not in refused.value.read()
