"""Canvas frames a session page: the page renders and saves inside the frame, and a host not in the policy is refused.

A small web server on a second origin stands in for Canvas: its page holds an
``<iframe>`` of the session page. It is reached as ``http://localhost:<port>``
while the companion listens on ``127.0.0.1``, so the frame is cross-site, as
Canvas's is.
"""

from __future__ import annotations

import html
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from companion.settings import load_settings
from companion.store import Store
from conftest import Server, make_course

pytestmark = pytest.mark.browser

PAGE = "02-short.ipynb"


class CanvasStandIn(BaseHTTPRequestHandler):
    """``/?src=<url>``: a page that frames ``url``, as a Canvas module item does."""

    def do_GET(self):
        src = parse_qs(urlsplit(self.path).query).get("src", [""])[0]
        body = (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Canvas stand-in</title></head>"
            f"<body><h1>Module item</h1><iframe title='Session page' src='{html.escape(src, quote=True)}'"
            " width='1000' height='800'></iframe></body></html>"
        ).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def canvas_origin():
    """The stand-in's origin, ``http://localhost:<port>``."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), CanvasStandIn)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def course_with_policy(folder: Path, frame_ancestors: list[str], https: bool) -> Path:
    """The fixture course, with its [server] frame_ancestors and https set as given."""
    root = make_course(folder)
    toml = root / "course" / "course.toml"
    text = toml.read_text(encoding="utf-8")
    listed = ", ".join(f'"{origin}"' for origin in frame_ancestors)
    text, count = re.subn(r"(?m)^frame_ancestors = .*$", f"frame_ancestors = [{listed}]\nhttps = {str(https).lower()}", text)
    assert count == 1, "the fixture course.toml should have one frame_ancestors line"
    toml.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def allowing_server(tmp_path_factory, canvas_origin):
    """A server whose policy lists the stand-in, with the third-party cookie attributes on."""
    root = course_with_policy(tmp_path_factory.mktemp("allowing") / "course", ["https://canvas.example.edu", canvas_origin], https=True)
    server = Server(root, mode="local", learner="ana")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def refusing_server(tmp_path_factory):
    """A server whose policy does not list the stand-in."""
    root = course_with_policy(tmp_path_factory.mktemp("refusing") / "course", ["https://canvas.example.edu"], https=False)
    server = Server(root, mode="local", learner="ana")
    yield server
    server.stop()


def framed(page, canvas_origin: str, url: str):
    """Open the stand-in framing ``url``; returns the iframe's frame and the response the frame got."""
    with page.expect_response(lambda response: response.url == url, timeout=120_000) as response:
        page.goto(f"{canvas_origin}/?src={quote(url, safe='')}", wait_until="domcontentloaded")
    return page.wait_for_selector("iframe").content_frame(), response.value


def cookies_set(response) -> list[dict[str, str]]:
    """The cookies a response sets, each as ``{attribute (lowercase): value}``, its name under ``"name"``."""
    cookies = []
    for header in response.headers_array():
        if header["name"].lower() != "set-cookie":
            continue
        for line in header["value"].splitlines():
            first, *attributes = [part.strip() for part in line.split(";")]
            cookie = {"name": first.split("=", 1)[0]}
            cookie.update((a.split("=", 1)[0].lower(), a.partition("=")[2]) for a in attributes)
            cookies.append(cookie)
    return cookies


def test_a_framed_session_page_renders_and_a_reflection_saves(allowing_server, canvas_origin, page):
    frame, response = framed(page, canvas_origin, allowing_server.page(PAGE))
    assert response.headers["content-security-policy"] == f"frame-ancestors 'self' https://canvas.example.edu {canvas_origin}"
    # https = true: every cookie is marked so a browser may keep it inside a third-party frame.
    cookies = cookies_set(response)
    assert cookies, "the session page set no cookie; nothing to check"
    for cookie in cookies:
        assert cookie.get("samesite") == "None" and "secure" in cookie, cookie

    frame.wait_for_selector(".companion-workbook", timeout=120_000)
    assert "Signed in as ana" in frame.inner_text(".companion-workbook")
    frame.get_by_label("One thing you noticed this week.").fill("Noticed from inside Canvas")
    frame.get_by_role("button", name="Save").click()
    frame.wait_for_function("() => document.body.innerText.includes('Saved at')")
    saved = Store(load_settings(allowing_server.root).db_url).response("ana", "s2-note")
    assert saved.value == {"text": "Noticed from inside Canvas"}


def test_a_host_not_in_the_policy_is_refused(refusing_server, canvas_origin, page):
    with page.expect_console_message(lambda message: "frame-ancestors" in message.text, timeout=120_000) as refusal:
        frame, response = framed(page, canvas_origin, refusing_server.page(PAGE))
    assert response.headers["content-security-policy"] == "frame-ancestors 'self' https://canvas.example.edu"
    assert refusing_server.url in refusal.value.text
    assert "frame-ancestors 'self' https://canvas.example.edu" in refusal.value.text
    # In place of the session page, Chromium shows its own error page in the frame.
    frame.wait_for_url(re.compile(r"^chrome-error:"))
    assert frame.locator(".companion-workbook").count() == 0
    # https = false: no cookie is marked Secure, which a browser would drop over plain http.
    cookies = cookies_set(response)
    assert cookies
    for cookie in cookies:
        assert cookie.get("samesite") != "None" and "secure" not in cookie, cookie
