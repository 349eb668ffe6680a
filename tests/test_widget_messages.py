"""Malformed widget messages sent to a page's kernel: nothing with a traceback or a server path comes back.

A real ``companion serve`` and headless Chromium. A second tab on the server's
address opens its own websocket to the page's kernel (as any script in a
browser can) and sends
widget messages of the wrong shape: a value of the wrong type, an unknown key,
an index out of range, a state that is not an object, a method that does not
exist, garbage instead of JSON. Every frame the browser receives is checked;
the kernel logs the errors on the server, saves nothing, and the page saves
as before.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest

from conftest import REPO, open_session, wait_until

pytestmark = pytest.mark.browser

PAGE = "02-short.ipynb"
PROMPT = "One thing you noticed this week."
# What the browser must never see: a traceback, or where the server keeps its code and data.
LEAKS = ("Traceback", "site-packages", 'File "', str(REPO), "/work/", "/root/", ".py\"", ".py:", "TraitError")

SEND = """async ([url, messages, garbage]) => {
  const ws = new WebSocket(url);
  await new Promise((opened, failed) => { ws.onopen = opened; ws.onerror = failed; });
  for (const message of messages) ws.send(message);
  await new Promise(r => setTimeout(r, 4000));
  for (const message of garbage) ws.send(message);
  await new Promise(r => setTimeout(r, 1000));
  ws.close();
}"""


def message(kind: str, content) -> str:
    """A kernel message as the websocket's JSON form carries it, addressed to the shell channel."""
    header = {"msg_id": uuid.uuid4().hex, "msg_type": kind, "username": "", "session": uuid.uuid4().hex,
              "date": "2024-01-01T00:00:00Z", "version": "5.3"}
    return json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell", "buffers": []})


def update(comm: str, state) -> str:
    return message("comm_msg", {"comm_id": comm, "data": {"method": "update", "state": state, "buffer_paths": []}})


def saved_text(store) -> str | None:
    saved = store.response("ana", "s2-note")
    return saved.value.get("text") if saved else None


def as_text(frame) -> str:
    return frame if isinstance(frame, str) else frame.decode("utf-8", "replace")


def models(frames: list, name: str) -> list[str]:
    """The ids of the page's widget models of one kind (e.g. "TextareaModel"), from the states the page received."""
    text = "\n".join(as_text(f) for f in frames)
    return re.findall(r'"([0-9a-f]{32})":\{"model_name":"' + name + '"', text)


def malformed(frames: list) -> list[str]:
    textareas, checkboxes, radios, buttons = (models(frames, n) for n in ("TextareaModel", "CheckboxModel", "RadioButtonsModel", "ButtonModel"))
    assert textareas and checkboxes and radios and buttons, "the page's widget states were received"
    sent = []
    for comm in textareas:
        sent += [update(comm, {"value": 123}), update(comm, {"value": None}), update(comm, {"value": {"text": []}}), update(comm, {"no_such_key": 1}),
                 update(comm, "not an object"), update(comm, {"rows": "many"})]
    for comm in checkboxes:
        sent += [update(comm, {"value": "yes please"}), update(comm, {"value": [1]})]
    for comm in radios:
        sent += [update(comm, {"index": 999}), update(comm, {"index": "first"}), update(comm, {"options": 5})]
    for comm in buttons:
        sent += [message("comm_msg", {"comm_id": comm, "data": {"method": "custom", "content": "click"}})]
    for comm in textareas + buttons:
        sent += [message("comm_msg", {"comm_id": comm, "data": "garbage"}), message("comm_msg", {"comm_id": comm, "data": {"method": "no such method"}}),
                 message("comm_msg", {"comm_id": comm})]
    sent += [
        update("0" * 32, {"value": "to no widget"}),
        message("comm_open", {"comm_id": uuid.uuid4().hex, "target_name": "jupyter.widget", "data": {"state": {"_model_name": "NoSuchModel"}}}),
        message("comm_open", {"comm_id": uuid.uuid4().hex, "target_name": "no.such.target", "data": {}}),
        message("comm_open", {"comm_id": uuid.uuid4().hex}),
        message("execute_request", {"code": "import os; print(os.getcwd())", "silent": False}),
    ]
    return sent


def test_malformed_widget_messages_bring_back_no_traceback_change_nothing_and_the_page_still_saves(server, page):
    frames: list = []  # every frame either tab receives
    sockets: list[str] = []

    def watch(ws):
        sockets.append(ws.url)
        ws.on("framereceived", lambda frame: frames.append(frame))

    page.on("websocket", watch)
    other = page.context.new_page()
    other.on("websocket", watch)
    open_session(page, server.page(PAGE))
    box = page.get_by_label(PROMPT)
    box.fill("Before the tampering.")
    store = server.store()
    wait_until(lambda: saved_text(store) == "Before the tampering.", what="the first autosave")
    events_before = store.count_events()
    kernel = re.search(r"/api/kernels/([0-9a-f-]{36})/channels", sockets[0]).group(1)
    url = f"{server.url.replace('http', 'ws', 1)}/api/kernels/{kernel}/channels?session_id={uuid.uuid4().hex}"
    received_before = len(frames)

    other.goto(f"{server.url}/voila/static/voila.js")
    other.evaluate(SEND, [url, malformed(frames), ["{not json", "[]", "null"]])

    answers = [as_text(f) for f in frames[received_before:]]
    assert any('"echo_update"' in a and '"value": 123' in a for a in answers), "the kernel received the messages and answered on the websocket"
    for leak in LEAKS:
        found = [a for a in answers if leak in a]
        assert not found, f"the browser received {leak!r}: {found[0][:2000]}"
    everything = "\n".join(as_text(f) for f in frames)
    assert "Traceback" not in everything and "site-packages" not in everything
    assert '"msg_type": "error"' not in everything and '"msg_type":"error"' not in everything

    # The errors went to the server's log instead, where an administrator can read them.
    wait_until(lambda: "A comm_msg from the page" in server.output(), timeout=10, what="the errors in the server log")
    assert "TraitError" in server.output()

    # Nothing was saved by the malformed messages; the page and its kernel still work.
    assert store.count_events() == events_before
    assert saved_text(store) == "Before the tampering."
    box.fill("After the tampering, still saved.")
    wait_until(lambda: saved_text(store) == "After the tampering, still saved.", what="a save after the tampering")
    banner = page.locator("#companion-connection")
    assert banner.count() == 0 or banner.is_hidden(), f"the page says: {banner.inner_text()}"
