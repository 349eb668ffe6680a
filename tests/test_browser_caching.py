"""A session page over the network: text is sent compressed, versioned static files are cached as
immutable, a second visit asks the server for nothing but the page itself (and its kernel), the
page's front end is the companion's own, one script and one stylesheet (companion.page_scripts),
and a service worker keeps that script in the browser for later visits (templates/companion/worker.js).

On a real ``companion serve`` with headless Chromium; what reached the server is read from
Chromium's own network log (DevTools protocol), which says which responses came from its cache."""

from __future__ import annotations

import json
import os
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
        if response.get("fromDiskCache") or response.get("fromPrefetchCache") or response.get("fromServiceWorker"):
            entry["cached"] = True

    network.on("Network.responseReceived", answered)
    network.on("Network.webSocketCreated", lambda e: seen.setdefault(e["requestId"], {}).update(url=e["url"]))

    def upgraded(event):
        headers = {name.lower(): value for name, value in event["response"]["headers"].items()}
        seen.setdefault(event["requestId"], {}).update(status=event["response"]["status"], headers=headers)

    network.on("Network.webSocketHandshakeResponseReceived", upgraded)
    page.goto(url, timeout=180_000)
    page.wait_for_selector(".companion-workbook", timeout=180_000)
    page.wait_for_load_state("networkidle")
    page.close()
    return [entry for entry in seen.values() if entry.get("url", "").startswith(("http", "ws"))]


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
    names = sorted(path_of(e, served).split("?")[0].rsplit("/", 1)[-1] for e in texts)
    assert names == sorted(["1", "index.css", "page-scripts.css", "page-scripts.js", "theme-light.css"]), (
        "the page, its front end (one script, one stylesheet) and Voila's two stylesheets"
    )
    plain = [path_of(e, served) for e in texts if e["headers"].get("content-encoding") != "gzip"]
    assert plain == [], f"sent uncompressed: {plain}"
    static = [e for e in answered if "/voila/" in e["url"] and "/api/" not in e["url"]]
    assert any("/page-scripts.js?v=" in e["url"] for e in static), "the front end comes in one versioned file"
    # Gzipped as it goes out, a file is sent in chunks with no length; the copy compressed once has one.
    streamed = [path_of(e, served) for e in static if e["headers"].get("content-encoding") == "gzip" and "content-length" not in e["headers"]]
    assert streamed == [], f"compressed again for this visit: {streamed}"
    for entry in static:
        cache = entry["headers"].get("cache-control", "")
        versioned = "/voila/static/v" in entry["url"] or "?v=" in entry["url"] or re.search(r"\.[0-9a-f]{16,}\.js", entry["url"])
        if versioned:
            assert "immutable" in cache and "max-age=31536000" in cache, f"{path_of(entry, served)}: {cache!r}"
        else:
            assert "no-cache" in cache and entry["headers"].get("etag"), f"{path_of(entry, served)} needs a validator"
    # The kernel's messages too: the widgets' states come in one message of tens of KB.
    (socket,) = [e for e in first if e["url"].startswith("ws") and "/api/kernels/" in e["url"]]
    assert socket["status"] == 101 and "permessage-deflate" in socket["headers"].get("sec-websocket-extensions", ""), socket


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


def fetch(server: Server, path: str, **headers) -> tuple[int, dict, bytes]:
    """One plain GET (``HEAD`` with ``method="HEAD"``): status, headers (lower-case names), body as sent."""
    import http.client

    method = headers.pop("method", "GET")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(method, path, headers={name.replace("_", "-"): value for name, value in headers.items()})
        answer = connection.getresponse()
        return answer.status, {name.lower(): value for name, value in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def page_config(html: str) -> dict:
    return json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', html, re.S).group(1))


def static_paths(server: Server) -> dict[str, str]:
    """One path of each kind of static file the session page loads, read from the page itself."""
    _, _, page = fetch(server, "/session/1")
    html = page.decode("utf-8")
    versioned = re.fullmatch(r".*(/voila/static/v[0-9a-f]{12})", page_config(html)["fullStaticUrl"]).group(1)
    federated = page_config(html)["federated_extensions"]
    extension = f"/voila/labextensions/{federated[0]['name']}/{federated[0]['load']}"
    template = "/voila/" + re.search(r"templates/[^\"'\s]+?\.css\?v=[0-9a-f]+", html).group(0)
    scripts = re.search(r"/voila/templates/[^\"'\s]+?/page-scripts\.js\?v=[0-9a-f]+", html).group(0)
    return {"versioned": versioned + "/voila.js", "page scripts": scripts, "unversioned": "/voila/static/voila.js", "extension": extension, "template": template}


def test_static_files_go_gzipped_from_a_copy_compressed_once_and_unzip_to_the_file_itself(served):
    import gzip

    for kind, path in static_paths(served).items():
        status, plain_headers, plain = fetch(served, path)
        assert status == 200 and "content-encoding" not in plain_headers, f"{kind} {path}: without gzip accepted, sent as is"
        status, headers, body = fetch(served, path, Accept_Encoding="gzip, deflate")
        assert status == 200 and headers.get("content-encoding") == "gzip", f"{kind} {path}: {headers}"
        assert gzip.decompress(body) == plain, f"{kind} {path}: the gzipped body is not the file"
        assert int(headers["content-length"]) == len(body)
        assert [v.strip() for v in headers["vary"].split(",")].count("Accept-Encoding") == 1, headers["vary"]
        assert headers["cache-control"] == plain_headers["cache-control"], f"{kind} {path}: same caching either way"
        if len(plain) > 64 * 1024:  # compressed as it is sent, a file this size would carry a flush per 64 KB
            assert body == gzip.compress(plain, 6, mtime=0), f"{kind} {path}: not the copy compressed once"
        again = fetch(served, path, Accept_Encoding="gzip")[2]
        assert again == body


def test_a_gzipped_static_file_keeps_its_validator_range_and_head_answers(served):
    import gzip

    path = static_paths(served)["unversioned"]
    _, plain_headers, plain = fetch(served, path)
    status, headers, body = fetch(served, path, Accept_Encoding="gzip", If_None_Match=plain_headers["etag"])
    assert status == 304 and body == b"", "a browser holding the file is told it has not changed"
    status, headers, body = fetch(served, path, Accept_Encoding="gzip", Range="bytes=0-99")
    if headers.get("content-encoding") == "gzip":  # tornado compresses the part it sends
        body = gzip.decompress(body)
    assert status == 206 and body == plain[:100], "a range is of the file as it is, not of its gzipped copy"
    status, head_headers, body = fetch(served, path, Accept_Encoding="gzip", method="HEAD")
    gzipped = fetch(served, path, Accept_Encoding="gzip")[2]
    assert status == 200 and body == b"" and head_headers.get("content-encoding") == "gzip"
    assert int(head_headers["content-length"]) == len(gzipped)
    for missing in ("/voila/static/no-such-file.js", "/voila/static/../../../etc/passwd", "/voila/templates/companion/static/none.css"):
        refused = fetch(served, missing, Accept_Encoding="gzip")
        assert refused[0] in (403, 404) and refused[0] == fetch(served, missing)[0], f"{missing}: {refused[0]}"
        assert b"root:" not in refused[2]


def test_a_file_is_compressed_once_and_again_only_once_it_changes(tmp_path, monkeypatch):
    import gzip

    from companion import caching

    monkeypatch.setattr(caching, "_GZIPPED", {})
    script = tmp_path / "chunk.js"
    script.write_text("let x = 1;\n" * 2000)
    first = caching.gzipped(str(script))
    assert gzip.decompress(first) == script.read_bytes()
    assert caching.gzipped(str(script)) is first, "the kept copy, not compressed again"
    script.write_text("let y = 2;\n" * 3000)
    assert gzip.decompress(caching.gzipped(str(script))) == script.read_bytes(), "a changed file is compressed again"


def test_what_would_not_shrink_or_is_too_large_is_not_kept_and_the_kept_copies_have_a_ceiling(tmp_path, monkeypatch):
    from companion import caching

    monkeypatch.setattr(caching, "_GZIPPED", {})
    compressed = []
    compress = caching.gzip.compress
    monkeypatch.setattr(caching.gzip, "compress", lambda data, *args, **kwargs: compressed.append(len(data)) or compress(data, *args, **kwargs))
    noise = tmp_path / "noise.js"
    noise.write_bytes(os.urandom(50_000))
    assert caching.gzipped(str(noise)) is None, "random bytes do not shrink: sent as they are"
    assert caching.gzipped(str(noise)) is None and compressed == [50_000], "and that is not found out again"
    large = tmp_path / "large.js"
    large.write_text("a" * 5000)
    monkeypatch.setattr(caching, "GZIPPED_LARGEST", 4000)
    assert caching.gzipped(str(large)) is None
    monkeypatch.setattr(caching, "GZIPPED_LARGEST", 16 * 2**20)
    monkeypatch.setattr(caching, "GZIPPED_KEPT", 200)
    small = [tmp_path / f"s{i}.js" for i in range(10)]
    for i, path in enumerate(small):
        path.write_text(f"var v{i} = '{i}';\n" * 300)
        assert caching.gzipped(str(path)) is not None, "sent gzipped even when not kept"
    kept = sum(len(body or b"") for _, _, body in caching._GZIPPED.values())
    kept_small = [path for path in small if str(path) in caching._GZIPPED]
    assert 0 < kept <= 200 and 0 < len(kept_small) < len(small)


def test_the_page_runs_the_companions_front_end_alone_one_script_and_one_stylesheet(served, chromium):
    from companion import page_scripts

    context = chromium.new_context()
    page = context.new_page()
    asked, errors = [], []
    page.on("request", lambda request: asked.append(request.url.split("?")[0].rsplit("/", 1)[-1]))
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{served.url}/session/1", timeout=180_000)
        box = page.locator(".companion-activity textarea").first
        box.fill("Typed once the front end had started")
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    voilas = [name for name in asked if re.fullmatch(r"(\d+\.)?voila(-style)?\.js|remoteEntry\..*\.js", name)]
    assert voilas == [], f"the page asked for Voila's own front end: {voilas}"
    assert asked.count(page_scripts.NAME) == 1 and asked.count(page_scripts.STYLESHEET) == 1, asked
    assert errors == [], f"the page's scripts failed: {errors}"


def test_the_front_end_goes_whole_into_the_templates_static_folder(tmp_path):
    from companion.page_scripts import BUILT, NAME, STYLESHEET, write_page_scripts

    assert write_page_scripts(tmp_path) == [NAME, STYLESHEET]
    for name in (NAME, STYLESHEET):
        assert (tmp_path / "static" / name).read_bytes() == (BUILT / name).read_bytes()
    assert sorted(path.name for path in (tmp_path / "static").iterdir()) == sorted([NAME, STYLESHEET]), "no partial file left"


# The service worker (templates/companion/worker.js) ----------------------------------------------

ACTIVE_WORKER = """async () => {
    const registration = await navigator.serviceWorker.getRegistration();
    return !!(registration && registration.active && registration.active.state === "activated"
              && !registration.installing && !registration.waiting);
}"""
KEPT = "async () => Promise.all((await caches.keys()).map(async n => [n, (await (await caches.open(n)).keys()).map(r => r.url)]))"


def poll(page, predicate: str, arg=None, timeout: float = 60) -> None:
    """Evaluate the async ``predicate`` in ``page`` until it is true (``wait_for_function`` takes its promise for true)."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate, arg):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {predicate}"
        page.wait_for_timeout(250)


def open_session(context, url: str) -> tuple:
    """A new tab on ``url`` with its activities live: (page, page-scripts.js's response, page errors, every response)."""
    page = context.new_page()
    responses, errors = [], []
    page.on("response", lambda response: responses.append(response))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url, timeout=180_000)
    box = page.locator(".companion-activity textarea").first
    box.fill("Typed on this visit")
    (scripts,) = [r for r in responses if "/page-scripts.js?v=" in r.url]
    return page, scripts, errors, responses


def test_a_later_visit_runs_voilas_front_end_from_the_service_workers_cache_and_nothing_else(served, chromium):
    context = chromium.new_context()
    try:
        page, scripts, errors, _ = open_session(context, f"{served.url}/session/1")
        assert not scripts.from_service_worker and errors == []
        # Asked for once the page's widgets are drawn, when the page is next idle, so that it never delays them.
        poll(page, ACTIVE_WORKER)
        registration = page.evaluate("async () => { const r = await navigator.serviceWorker.getRegistration(); return [r.scope, r.active.scriptURL] }")
        assert registration[0] == f"{served.url}/" and registration[1].startswith(f"{served.url}/companion-worker.js?scripts=")
        ((name, kept),) = page.evaluate(KEPT)
        assert kept == [scripts.url], "the worker keeps the one file, at its versioned address"
        page.close()

        page, again, errors, responses = open_session(context, f"{served.url}/session/2")
        assert again.url == scripts.url and again.from_service_worker and again.status == 200
        others = [r.url for r in responses if r.from_service_worker and r is not again]
        assert others == [], f"the worker answered more than the page's scripts: {others}"
        assert errors == [], f"the page's scripts failed: {errors}"
        assert page.evaluate("() => !!navigator.serviceWorker.controller")

        # Should the browser drop the kept copy, the file comes from the server again and the page works.
        page.evaluate(f"async () => caches.delete({json.dumps(name)})")
        page.close()
        page, dropped, errors, _ = open_session(context, f"{served.url}/session/1")
        assert not dropped.from_service_worker and dropped.status == 200 and errors == []
    finally:
        context.close()


def test_a_new_version_of_the_file_gets_a_new_worker_that_drops_the_old_and_leaves_other_caches_alone(served, chromium):
    context = chromium.new_context()
    try:
        page, scripts, _, _ = open_session(context, f"{served.url}/session/1")
        poll(page, ACTIVE_WORKER)
        # Another application on the same origin (JupyterHub serves every learner's JupyterLab from it) has a cache.
        page.evaluate("async () => { await (await caches.open('another-app')).put('/elsewhere', new Response('theirs')); }")
        # As a page served after an upgrade asks: the same file at a new version.
        upgraded = re.sub(r"v=[0-9a-f]+", "v=0123456789ab", scripts.url)
        page.evaluate(
            """async (scripts) => { await navigator.serviceWorker.register("/companion-worker.js?scripts=" + encodeURIComponent(scripts), {scope: "/"}); }""",
            upgraded,
        )
        poll(
            page,
            "async (scripts) => { const r = await navigator.serviceWorker.getRegistration();"
            " return !!(r && r.active && r.active.scriptURL.endsWith(encodeURIComponent(scripts)) && r.active.state === 'activated'); }",
            upgraded,
        )
        poll(page, "async () => (await caches.keys()).length === 2")
        assert sorted(kept for _, kept in page.evaluate(KEPT)) == sorted([[upgraded], [f"{served.url}/elsewhere"]]), "the old version dropped, the other cache kept"
    finally:
        context.close()


def test_the_service_worker_is_plain_javascript_that_anyone_may_fetch_and_is_always_revalidated(served):
    from companion.caching import WORKER

    status, headers, body = fetch(served, "/companion-worker.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert headers["cache-control"] == "no-cache"
    assert body == WORKER.read_bytes()
    # No fetch handler: every request but the page's scripts reaches the server without the worker.
    assert b'addEventListener("fetch"' not in body and b"onfetch" not in body
