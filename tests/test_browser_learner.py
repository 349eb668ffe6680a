"""A supervisor works through a session in a real browser on a real ``companion serve``, and nothing is lost."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import open_session, wait_until

pytestmark = pytest.mark.browser

RIGHT_ANSWER = "Success for each child and eliminate the opportunity gap by leading with racial equity"



def test_a_learner_works_through_a_session_and_finds_everything_after_a_reload(server, page):
    open_session(page, server.page("01-every-activity.ipynb"))
    assert "Signed in as ana" in page.inner_text(".companion-workbook")

    # Before anything is done, the session cannot be completed, and says what is left.
    finish = page.get_by_role("button", name="Mark session 1 complete")
    assert finish.is_disabled()
    assert "Still to do before you can mark this session complete (4)" in page.inner_text("body")

    # A choice, answered with the keyboard-operable radio and checked.
    page.get_by_label(RIGHT_ANSWER).check()
    page.get_by_role("button", name="Check my answer").click()
    page.get_by_text("That's right.").wait_for()
    assert "The End is named in the Racial Equity Policy" in page.inner_text("body")

    # A sort: each statement placed, then checked, with a note per item.
    page.get_by_label("Statement 1 belongs to").select_option("Internalized")
    page.get_by_label("Statement 2 belongs to").select_option("Interpersonal")
    page.get_by_label("Statement 3 belongs to").select_option("Structural")
    page.get_by_role("button", name="Check my sorting").click()
    page.get_by_text("2 of 3 placed as the authors would.").wait_for()
    assert "This one is Institutional. A policy of one organization." in page.inner_text("body")

    # A reflection, typed and left to autosave (no Save click), with a live word count.
    why = page.get_by_label("What is your why for leading with racial equity?")
    why.click()
    why.press_sequentially("Because every child deserves leaders who see them.", delay=5)
    page.get_by_text("8 words").wait_for()
    store = server.store()
    wait_until(
        lambda: store.response("ana", "s1-why") and store.response("ana", "s1-why").value == {"text": "Because every child deserves leaders who see them."},
        what="the autosave of the reflection",
    )
    why_status = page.locator(".companion-activity", has=page.get_by_label("What is your why for leading with racial equity?")).locator(".companion-status")
    wait_until(lambda: why_status.inner_text().startswith("Saved at"), timeout=10, what="the status to say it saved")
    # The other reflection, saved with the button.
    private = page.get_by_label("What would you rather keep to yourself?")
    private.fill("Only for me.")
    page.get_by_role("button", name="Save").nth(1).click()
    wait_until(lambda: store.response("ana", "s1-private"), what="the saved private reflection")

    # Reload: everything is still there.
    open_session(page, server.page("01-every-activity.ipynb"))
    assert page.get_by_label("What is your why for leading with racial equity?").input_value() == "Because every child deserves leaders who see them."
    assert page.get_by_label("What would you rather keep to yourself?").input_value() == "Only for me."
    assert page.get_by_label(RIGHT_ANSWER).is_checked()
    assert page.get_by_label("Statement 3 belongs to").input_value() == "Structural" or page.locator("select").nth(2).evaluate("s => s.options[s.selectedIndex].text") == "Structural"
    assert "2 of 3 placed as the authors would." in page.inner_text("body")
    assert page.get_by_label("Share with my facilitator").first.is_checked() is False

    # Every required activity is done: the session can be completed, with the usefulness questions.
    page.get_by_text("Every required activity is done").wait_for()
    page.get_by_label("Very useful").check()
    page.get_by_label("What is one thing that would make it more useful? (optional)").fill("More time to talk.")
    page.get_by_role("button", name="Mark session 1 complete").click()
    page.get_by_text("Session 1 is complete.").wait_for()

    # The landing page shows it complete, and links to each session.
    page.goto(server.url + "/")
    page.wait_for_selector(".companion-sessions")
    first = page.locator('li[data-session="s1"]')
    assert "Complete" in first.inner_text()
    assert "(4 of 4 required activities done)" in first.inner_text()
    assert "Not started" in page.locator('li[data-session="s2"]').inner_text()
    assert "You have completed 1 of 2 sessions." in page.inner_text("body")
    first.get_by_role("link").click()
    page.wait_for_selector(".companion-workbook")
    assert "Session 1 is complete." in page.inner_text("body")


def test_text_a_learner_writes_is_shown_as_text_never_run(server, page):
    hostile = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
    server.store().save("ana", "s2", "s2-note", "responded", {"text": hostile})
    open_session(page, server.page("02-short.ipynb"))
    box = page.get_by_label("One thing you noticed this week.")
    assert box.input_value() == hostile
    assert page.title() != "pwned"
    assert page.locator("img[src=x]").count() == 0


def test_an_overlong_reflection_is_refused_with_a_message_and_the_saved_text_kept(server, page):
    open_session(page, server.page("02-short.ipynb"))
    box = page.get_by_label("One thing you noticed this week.")
    box.fill("short and kept")
    page.get_by_role("button", name="Save").click()
    wait_until(lambda: server.store().response("ana", "s2-note").value == {"text": "short and kept"}, what="the save")
    box.fill("x" * 20_001)
    page.get_by_role("button", name="Save").click()
    page.get_by_text(re.compile("Not saved: this reflection has 20,001 characters; the limit is 20,000")).wait_for()
    assert server.store().response("ana", "s2-note").value == {"text": "short and kept"}


def kernel_pid(kernel_id: str) -> int:
    """The pid of the kernel process whose connection file names ``kernel_id``."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f"kernel-{kernel_id}".encode() in cmdline.read_bytes():
                return int(cmdline.parent.name)
        except OSError:
            continue
    raise AssertionError(f"no process for kernel {kernel_id}")


def test_a_kernel_dying_loses_nothing_already_autosaved(server, page):
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    open_session(page, server.page("02-short.ipynb"))
    box = page.get_by_label("One thing you noticed this week.")
    box.fill("Written just before the kernel died.")
    store = server.store()
    wait_until(lambda: store.response("ana", "s2-note").value == {"text": "Written just before the kernel died."}, what="the autosave")
    kernel_id = next(re.search(r"/api/kernels/([0-9a-f-]{36})/channels", url).group(1) for url in sockets if "/channels" in url)
    os.kill(kernel_pid(kernel_id), signal.SIGKILL)
    open_session(page, server.page("02-short.ipynb"))
    assert page.get_by_label("One thing you noticed this week.").input_value() == "Written just before the kernel died."


def test_a_learner_can_write_save_and_share_with_the_keyboard_alone(server, page):
    open_session(page, server.page("02-short.ipynb"))

    def tab_to(predicate: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"() => {{ const e = document.activeElement; return {predicate}; }}"):
                return
        raise AssertionError(f"Tab never reached an element where {predicate}")

    tab_to("e.tagName === 'TEXTAREA' && e.closest('.companion-activity') !== null")
    page.keyboard.press("Control+A")
    page.keyboard.type("Typed without a mouse.")
    tab_to("e.tagName === 'BUTTON' && e.textContent.trim() === 'Save'")
    page.keyboard.press("Enter")
    tab_to("e.type === 'checkbox'")
    page.keyboard.press("Space")
    store = server.store()
    # The box sends its last keystrokes a moment after they are typed; the autosave then saves them all.
    saved = wait_until(
        lambda: (r := store.response("ana", "s2-note")).shared and r.value == {"text": "Typed without a mouse."} and r,
        what="the shared save of the whole text",
    )
    assert saved.shared is True


def test_a_session_page_loads_no_jupyterlab_extension_and_nothing_from_elsewhere(server, page):
    fetched = []
    page.on("request", lambda request: fetched.append(request.url))
    open_session(page, server.page("02-short.ipynb"))
    page.get_by_label("One thing you noticed this week.").fill("Still works.")
    page.get_by_role("button", name="Save").click()
    wait_until(lambda: server.store().response("ana", "s2-note").value == {"text": "Still works."}, what="the save")
    loaded = {re.search(r"/voila/labextensions/(@[^/]+/[^/]+|[^/]+)/", url).group(1) for url in fetched if "/voila/labextensions/" in url}
    assert loaded == set(), "the companion's front end draws the widgets itself (companion.page_scripts)"
    # (The service worker, companion-worker.js, may be asked for once the page is drawn.)
    scripts = [urlparse(url).path for url in fetched if urlparse(url).path.endswith(".js") and "companion-worker.js" not in url]
    assert scripts == ["/voila/templates/companion/static/page-scripts.js"], "one script, no chunk of Voila's"
    elsewhere = [url for url in fetched if not url.startswith((server.url, "data:"))]
    assert elsewhere == [], "a learner's browser asks nothing of any other host"


def test_page_kernels_talk_to_the_server_over_unix_sockets_not_tcp_ports(server, page):
    # Over TCP, kernels started at once can be handed the same port, and one of them dies.
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    open_session(page, server.page("02-short.ipynb"))
    kernel_id = next(re.search(r"/api/kernels/([0-9a-f-]{36})/channels", url).group(1) for url in sockets if "/channels" in url)
    # A forked kernel's command line is one title (setproctitle), so split on spaces too.
    arguments = re.split(rb"[\0 ]+", Path(f"/proc/{kernel_pid(kernel_id)}/cmdline").read_bytes())
    connection = json.loads(Path(arguments[arguments.index(b"-f") + 1].decode()).read_text())
    assert connection["transport"] == "ipc"
    assert page.get_by_label("One thing you noticed this week.").is_editable()
