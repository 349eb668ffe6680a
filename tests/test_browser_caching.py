"""A session page over the network: text is sent compressed, versioned static files are cached as
immutable, and a second visit asks the server for nothing but the page itself (and its kernel).

On a real ``companion serve`` with headless Chromium; what reached the server is read from
Chromium's own network log (DevTools protocol), which says which responses came from its cache."""

from __future__ import annotations

import re

import pytest
from conftest import Server, make_course

TEXT = re.compile(r"text/html|javascript|text/css|application/json")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    server = Server(make_course(tmp_path_factory.mktemp("caching") / "course"))
    yield server
    server.stop()


def visit(context, url: str) -> list[dict]:
    """Open ``url`` in a new tab of ``context`` until its activities are live; every request, as Chromium saw it."""
    page = context.new_page()
    network = context.new_cdp_session(page)
    network.send("Network.enable")
    seen: dict[str, dict] = {}
    network.on("Network.requestWillBeSent", lambda e: seen.setdefault(e["requestId"], {}).update(url=e["request"]["url"]))
    network.on("Network.requestServedFromCache", lambda e: seen.setdefault(e["requestId"], {}).update(cached=True))

    def answered(event):
        response = event["response"]
        headers = {name.lower(): value for name, value in response["headers"].items()}
        entry = seen.setdefault(event["requestId"], {})
        entry.update(status=response["status"], headers=headers, mime=response["mimeType"])
        if response.get("fromDiskCache") or response.get("fromPrefetchCache"):
            entry["cached"] = True

    network.on("Network.responseReceived", answered)
    page.goto(url, timeout=180_000)
    page.wait_for_selector(".companion-workbook", timeout=180_000)
    page.wait_for_load_state("networkidle")
    page.close()
    return [entry for entry in seen.values() if entry.get("url", "").startswith("http")]


def path_of(entry: dict, server: Server) -> str:
    return entry["url"][len(server.url):]


def test_text_is_compressed_and_versioned_files_are_immutable(served, chromium):
    context = chromium.new_context()
    try:
        first = visit(context, f"{served.url}/session/1")
    finally:
        context.close()
    answered = [e for e in first if "headers" in e and e["status"] == 200 and not e.get("cached")]
    texts = [e for e in answered if TEXT.search(e["mime"]) and int(e["headers"].get("content-length", "2000")) > 1000]
    assert len(texts) > 20, "the page, its scripts and its styles"
    plain = [path_of(e, served) for e in texts if e["headers"].get("content-encoding") != "gzip"]
    assert plain == [], f"sent uncompressed: {plain}"
    static = [e for e in answered if "/voila/" in e["url"] and "/api/" not in e["url"]]
    assert any("/voila/static/v" in e["url"] for e in static), "Voila's chunks load from the versioned path"
    for entry in static:
        cache = entry["headers"].get("cache-control", "")
        versioned = "/voila/static/v" in entry["url"] or "?v=" in entry["url"] or re.search(r"\.[0-9a-f]{16,}\.js", entry["url"])
        if versioned:
            assert "immutable" in cache and "max-age=31536000" in cache, f"{path_of(entry, served)}: {cache!r}"
        else:
            assert "no-cache" in cache and entry["headers"].get("etag"), f"{path_of(entry, served)} needs a validator"


def test_a_second_visit_downloads_nothing_but_the_page(served, chromium):
    context = chromium.new_context()
    try:
        visit(context, f"{served.url}/session/1")
        second = visit(context, f"{served.url}/session/2")
    finally:
        context.close()
    from_server = [
        path_of(e, served) for e in second
        if not e.get("cached") and "/api/kernels/" not in e["url"] and not e["url"].startswith("data:")
    ]
    assert from_server == ["/session/2"], f"the second visit fetched {from_server}"


def test_an_old_or_made_up_static_version_is_not_served(served):
    from urllib.error import HTTPError
    from urllib.request import urlopen

    with pytest.raises(HTTPError) as answer:
        urlopen(f"{served.url}/voila/static/v000000000000/voila.js", timeout=30)
    assert answer.value.code in (403, 404)
