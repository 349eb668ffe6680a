"""Nothing a learner types is lost without a word: a dead kernel, a stopped server, a quick reload, two tabs.

Each test drives a real ``companion serve`` in headless Chromium. The page
script (``templates/companion/companion.js``) keeps text the server has not
confirmed in the browser and says so; these tests check what the learner sees
and what the store holds.
"""

from __future__ import annotations

import os
import re
import signal

import pytest

from conftest import Server, open_session, wait_until
from test_browser_learner import kernel_pid

pytestmark = pytest.mark.browser

PAGE = "02-short.ipynb"
PROMPT = "One thing you noticed this week."
BANNER = "#companion-connection"
KERNEL_MODEL = re.compile(r".*/api/kernels/[0-9a-f-]{36}(\?.*)?$")  # the REST address of a kernel, not its websocket



def text_of(store, username: str = "ana", activity: str = "s2-note") -> str | None:
    saved = store.response(username, activity)
    return saved.value.get("text") if saved else None


def kept_in_browser(page) -> dict:
    return page.evaluate("() => Object.fromEntries(Object.keys(localStorage).filter(k => k.startsWith('companion:')).map(k => [k, localStorage.getItem(k)]))")


def answers_that_can_be_cut(page) -> dict:
    """Route the page's kernel websockets through the test: what the page sends reaches the kernel
    (which saves it) only while ``link["sending"]`` is true, and the kernel's answers reach the page
    only while ``link["hearing"]`` is true; what is not passed on is dropped.
    ``link["socket"]`` is the page's end of the last websocket. The route passes messages on only
    while the test is in a call to the browser: poll with :func:`through`."""
    link = {"sending": True, "hearing": True, "socket": None}

    def route(socket):
        kernel = socket.connect_to_server()
        socket.on_message(lambda message: kernel.send(message) if link["sending"] else None)
        kernel.on_message(lambda message: socket.send(message) if link["hearing"] else None)
        link["socket"] = socket

    page.route_web_socket(re.compile(r".*/channels.*"), route)
    return link


def through(page, condition):
    """``condition`` for ``wait_until``, polled while the browser runs, so a routed websocket passes messages on."""
    return lambda: page.wait_for_timeout(50) or condition()


def channels_kernel(sockets: list[str]) -> str:
    return next(re.search(r"/api/kernels/([0-9a-f-]{36})/channels", url).group(1) for url in reversed(sockets) if "/channels" in url)


def test_text_the_server_confirmed_is_not_kept_in_the_browser_whatever_its_characters(server, page):
    words = "Café — naïve 👋🏽 \"quoted\"\nsecond line\ttab"
    open_session(page, server.page(PAGE))
    box = page.get_by_label(PROMPT)
    box.fill(words)
    store = server.store()
    wait_until(lambda: text_of(store) == words, what="the autosave")
    # The status's fingerprint of the saved text matches the browser's: nothing stays kept, no banner.
    wait_until(lambda: kept_in_browser(page) == {}, timeout=10, what="the browser to let go of confirmed text")
    assert page.locator(BANNER).is_hidden() or page.locator(BANNER).count() == 0


def test_a_page_whose_kernel_is_gone_before_it_connects_says_so_and_offers_a_reload(server, page):
    # The kernel the page names has stopped (a server restarted, a culled kernel) by the time the
    # page's front end asks for it: the server answers 404.
    page.route(KERNEL_MODEL, lambda route: route.fulfill(status=404, body='{"message": "Kernel does not exist"}'))
    page.goto(server.page(PAGE), timeout=180_000)
    page.locator(BANNER).wait_for(state="visible", timeout=30_000)
    assert "Not connected: this page lost its link to your workbook" in page.inner_text(BANNER)
    assert page.get_by_role("button", name="Reload the page").is_visible()
    assert page.locator("#rendered_cells").is_visible(), "the page's text is still there to read"
    page.unroute(KERNEL_MODEL)
    page.get_by_role("button", name="Reload the page").click()
    page.wait_for_selector(".companion-workbook", timeout=180_000)
    assert page.get_by_label(PROMPT).is_editable()
    assert page.locator(BANNER).count() == 0 or page.locator(BANNER).is_hidden()


def test_the_widgets_are_drawn_once_their_states_are_all_in_however_late(server, page):
    # A view asked for while the widgets' states are on their way looks for its model for 2 s
    # (ipywidgets' ManagerBase.get_model); on a busy machine it gave up just as they arrived and
    # showed "Error displaying widget: model not found" for good (a burst of 20 learners: 13 of
    # 20 pages). The front end now draws the outputs only once the states are in.
    link = {"holding": True, "held": [], "socket": None}

    def route(socket):
        kernel = socket.connect_to_server()
        socket.on_message(kernel.send)
        kernel.on_message(lambda message: link["held"].append(message) if link["holding"] else socket.send(message))
        link["socket"] = socket

    page.route_web_socket(re.compile(r".*/channels.*"), route)
    page.goto(server.page(PAGE), timeout=180_000)
    wait_until(through(page, lambda: len(link["held"]) > 0), timeout=60, what="the kernel's first answers, held back")
    page.wait_for_timeout(3_000)  # longer than a view looks for its model
    assert page.locator(".jp-OutputArea-output").count() == 0, "nothing is drawn while the states are on their way"
    # Passed on in order: what the kernel sends while the held messages go is held behind them.
    while link["held"]:
        link["socket"].send(link["held"].pop(0))
    link["holding"] = False
    wait_until(through(page, lambda: page.get_by_label(PROMPT).count() == 1), timeout=60, what="the widgets, drawn")
    assert page.get_by_label(PROMPT).is_editable()
    assert "Error displaying widget" not in page.inner_text("#rendered_cells")


def test_a_killed_kernel_shows_the_banner_and_the_text_typed_after_it_is_saved_after_a_reload(server, page):
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.on("dialog", lambda dialog: dialog.accept())
    open_session(page, server.page(PAGE))
    box = page.get_by_label(PROMPT)
    box.fill("Saved before the kernel died.")
    store = server.store()
    wait_until(lambda: text_of(store) == "Saved before the kernel died.", what="the first autosave")

    os.kill(kernel_pid(channels_kernel(sockets)), signal.SIGKILL)
    # Typed at once: when the server restarts the dead kernel (about a second later), Voila's front
    # end drops the page's widgets, so only what reached the box before that can be kept.
    box.fill("Saved before the kernel died. Typed after it died.")
    page.locator(BANNER).wait_for(state="visible", timeout=5_000)
    assert "Not connected: this page lost its link to your workbook" in page.inner_text(BANNER)
    assert "kept in this browser" in page.inner_text(BANNER)
    assert text_of(store) == "Saved before the kernel died."

    open_session(page, server.page(PAGE))
    full = "Saved before the kernel died. Typed after it died."
    wait_until(lambda: page.get_by_label(PROMPT).input_value() == full, timeout=30, what="the kept text back in its box")
    wait_until(lambda: text_of(store) == full, what="the kept text saved")
    assert "back in its box" in page.inner_text(".companion-workbook")
    wait_until(lambda: kept_in_browser(page) == {}, timeout=10, what="the browser to let go of it once saved")


def test_a_stopped_server_shows_the_banner_and_once_it_is_back_the_text_is_saved(module_course, tmp_path_factory, page):
    home = tmp_path_factory.mktemp("restarted")
    first = Server(module_course, mode="local", learner="cy", home=home)
    store = first.store()
    try:
        page.on("dialog", lambda dialog: dialog.accept())
        open_session(page, first.page(PAGE))
        box = page.get_by_label(PROMPT)
        box.fill("Before the server stopped.")
        wait_until(lambda: text_of(store, "cy") == "Before the server stopped.", what="the first autosave")
        # And the page has heard it was saved (as the learner sees "Saved"): otherwise the text typed next is
        # kept as a change to an older version, and after the reload the learner is asked which to keep.
        wait_until(lambda: kept_in_browser(page) == {}, timeout=10, what="the page to hear of the first autosave")
    finally:
        first.stop()

    box.click()
    box.press("End")
    box.press_sequentially(" Written while it was down.", delay=20)
    page.locator(BANNER).wait_for(state="visible", timeout=5_000)
    assert "Not connected: your last changes are kept in this browser" in page.inner_text(BANNER)

    second = Server(module_course, mode="local", learner="cy", home=home, port=first.port)
    try:
        reload = page.get_by_role("button", name="Reload the page")
        reload.wait_for(state="visible", timeout=30_000)
        assert "The connection is back" in page.inner_text(BANNER)
        reload.click()
        page.wait_for_selector(".companion-workbook", timeout=180_000)
        full = "Before the server stopped. Written while it was down."
        wait_until(lambda: text_of(store, "cy") == full, timeout=60, what="the text written while the server was down, saved")
        assert page.get_by_label(PROMPT).input_value() == full
    finally:
        second.stop()


def test_text_saved_as_the_page_lost_its_kernel_is_continued_after_a_reload_without_a_question(server, page):
    """The store has the learner's text, but the page lost its link before it heard so (a server stopping
    between its save and its answer). What the learner types next continues what this page saved, not a
    change made elsewhere: after the reload it is put back and saved, and nobody is asked which to keep."""
    link = answers_that_can_be_cut(page)

    page.on("dialog", lambda dialog: dialog.accept())
    open_session(page, server.page(PAGE))
    store = server.store()
    box = page.get_by_label(PROMPT)
    box.fill("First words.")
    wait_until(through(page, lambda: text_of(store) == "First words." and kept_in_browser(page) == {}), what="the first save, confirmed")

    link["hearing"] = False  # the kernel still gets what the page sends, and saves it; its answers never arrive
    box.fill("First words. More words.")  # one change: the widget sends the next only once it hears of this one
    wait_until(through(page, lambda: text_of(store) == "First words. More words."), what="the save the page never hears of")
    link["socket"].close()
    page.locator(BANNER).wait_for(state="visible", timeout=10_000)
    box.press("End")
    box.press_sequentially(" Typed once the link was gone.", delay=20)

    link["hearing"] = True
    open_session(page, server.page(PAGE))
    full = "First words. More words. Typed once the link was gone."
    wait_until(through(page, lambda: text_of(store) == full), what="the text typed after the lost link, saved after the reload")
    assert page.get_by_label(PROMPT).input_value() == full
    assert page.locator(".companion-conflict").count() == 0, "the learner was asked which version to keep"
    assert "It is back in its box and being saved now" in page.inner_text(".companion-notice")


def test_reloading_right_after_typing_finds_the_text_and_the_browser_asked_first(server, page):
    """Reloaded before the text reached the server, the browser asks first, and the text is back and saved.

    "Right after" is made certain, not left to a race with a fast server (which can save and confirm
    the text within the 200 ms, and then rightly does not ask): the link carries nothing while the
    learner types, and works again for the reload."""
    dialogs: list[str] = []

    def answer(dialog):
        dialogs.append(dialog.type)
        dialog.accept()

    page.on("dialog", answer)
    link = answers_that_can_be_cut(page)
    open_session(page, server.page(PAGE))
    box = page.get_by_label(PROMPT)
    box.click()
    box.press("Control+A")
    link["sending"] = link["hearing"] = False
    box.press_sequentially("Typed a moment before the reload.", delay=5)
    page.wait_for_timeout(200)
    link["sending"] = link["hearing"] = True
    open_session(page, server.page(PAGE))
    assert dialogs == ["beforeunload"], "the browser asks before leaving a page with unsaved text"
    wait_until(lambda: page.get_by_label(PROMPT).input_value() == "Typed a moment before the reload.", timeout=30, what="the text in the reloaded page")
    store = server.store()
    wait_until(through(page, lambda: text_of(store) == "Typed a moment before the reload."), what="the text saved")


def test_two_tabs_of_one_session_say_when_they_disagree_and_lose_neither_version(server, chromium):
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    try:
        first, second = context.new_page(), context.new_page()
        for tab in (first, second):
            tab.set_default_timeout(60_000)
            open_session(tab, server.page(PAGE))
        store = server.store()

        second.get_by_label(PROMPT).fill("Written in the second tab.")
        wait_until(lambda: text_of(store) == "Written in the second tab.", what="the second tab's save")

        first.get_by_label(PROMPT).fill("Written in the first tab.")
        first.get_by_text("This was changed in another tab or on another device").wait_for(timeout=30_000)
        assert "Written in the second tab." in first.inner_text(".companion-conflict")
        assert text_of(store) == "Written in the second tab.", "the first tab's save did not silently replace it"
        logged = [e.value["text"] for e in store.events("ana") if e.activity_id == "s2-note" and e.verb in ("responded", "conflicted")]
        assert "Written in the first tab." in logged and "Written in the second tab." in logged

        first.get_by_role("button", name="Keep what I wrote here").click()
        wait_until(lambda: text_of(store) == "Written in the first tab.", what="the learner's choice saved")
        wait_until(lambda: first.locator(".companion-conflict").count() == 0, what="the question gone once answered")

        # The second tab is now behind: its next save asks too, and taking the other version keeps the first tab's text.
        second.get_by_label(PROMPT).fill("Second tab again.")
        second.get_by_text("This was changed in another tab or on another device").wait_for(timeout=30_000)
        second.get_by_role("button", name="Use the other version").click()
        wait_until(lambda: second.get_by_label(PROMPT).input_value() == "Written in the first tab.", what="the other version in the box")
        assert text_of(store) == "Written in the first tab."
        assert "Second tab again." in [e.value["text"] for e in store.events("ana") if e.verb == "conflicted"]
    finally:
        context.close()
