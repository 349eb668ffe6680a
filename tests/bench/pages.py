"""Session pages in headless Chromium: time to interactive, a 20-learner burst, the save round trip.

Time to interactive (TTI) is measured from the start of ``page.goto`` until the
first reflection box inside ``.companion-activity`` is visible and editable, in
a fresh browser context per load. The page itself notes that moment
(``INTERACTIVE``, looked for at every frame the browser draws): Playwright's own
wait looks 0, 20, 50, 100 and 100 ms apart and then only every 500 ms, so it
saw a box up to half a second after a learner could. Each load also records where the time went,
from the page's Navigation Timing: when the server finished sending the HTML
(``html``: Voila executes the notebook before it answers), DOMContentLoaded
(``dom``), the load event (``load``: every script fetched and run), and when
the page opened its kernel websocket (``ws``); from ``load`` to TTI the page
fetches the widget state from the kernel and renders it.

Over an emulated network (Chromium's own emulation, through a CDP session on
each tab: ``Network.emulateNetworkConditions``), a first visit is a fresh
browser context, and the second visit a new tab in that same context, so that
the HTTP cache (and a service worker's cache) holds what the first visit was
allowed to keep. The first tab stays open until the whole machine is at rest,
and the second visit starts once the server is idle again, as when the learner
reads the page, leaves and comes back later.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from common import (
    ACTIVITY_ID,
    FIRST_TEXT_ACTIVITY,
    browser_cpu,
    CHROMIUM,
    CHROMIUM_FLAGS,
    LOAD_TIMEOUT_MS,
    PAGE,
    TEXTAREA,
    kernel_memory,
    link_query,
    log,
    quiet_machine,
    summary,
    tree_cpu,
    wait_idle,
)

KERNEL_SOCKET = re.compile(r"/api/kernels/([0-9a-f-]{36})/channels")
# Run in the page before its own scripts: at each frame, is the first reflection box visible (a box with
# a size, not visibility: hidden) and editable (not disabled, not read-only), as Playwright means it?
INTERACTIVE = """(() => {
  function look() {
    const box = document.querySelector(%s);
    if (box && !box.disabled && !box.readOnly && !box.closest('fieldset[disabled]')
        && box.getAttribute('aria-disabled') !== 'true') {
      const size = box.getBoundingClientRect();
      if (size.width > 0 && size.height > 0 && getComputedStyle(box).visibility !== 'hidden') {
        window.benchInteractive = performance.now();
        return;
      }
    }
    requestAnimationFrame(look);
  }
  requestAnimationFrame(look);
})();""" % json.dumps(TEXTAREA)
NAVIGATION = """() => {
  const n = performance.getEntriesByType('navigation')[0];
  return {html: n.responseEnd, dom: n.domContentLoadedEventEnd, load: n.loadEventEnd, interactive: window.benchInteractive,
          now: performance.now()};
}"""
# What a page that never became interactive shows, for the report: a load that fails
# once in a few hundred is otherwise gone with its browser context.
SHOWING = """() => {
  const alert = document.querySelector('[role=alert]');
  const text = alert ? ` Its alert: "${alert.innerText.trim().slice(0, 160)}".` : ' No alert.';
  return `The page showed ${document.querySelectorAll('textarea').length} text boxes, `
    + `${document.querySelectorAll('.jupyter-widgets').length} widget views, `
    + `${document.querySelectorAll('.widget-error, .jupyter-widgets-error-widget').length} widget errors.` + text;
}"""
SHUTDOWN = """async (kernel) => {
  // Voila's render page sets no _xsrf cookie; tornado accepts any token that matches its cookie.
  let xsrf = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1];
  if (!xsrf) { xsrf = 'benchmark'; document.cookie = '_xsrf=benchmark; path=/'; }
  // Absolute: the companion's page lives under /voila/render/, stock Voila's at /.
  await fetch('/voila/api/shutdown/' + kernel, {method: 'POST', headers: {'X-XSRFToken': xsrf}});
}"""


async def launch(playwright):
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)


# 20 Mbit/s both ways, 40 ms round trip (Chromium adds the latency to each request).
NETWORK = {"offline": False, "latency": 40, "downloadThroughput": 20e6 / 8, "uploadThroughput": 20e6 / 8}


class Load:
    """One page load in its own browser context (or a new tab in ``context``); ``await load.run()`` then read the figures.

    With ``network`` (``Network.emulateNetworkConditions`` parameters), the tab's traffic
    is shaped by Chromium, and ``received`` counts the bytes that came over the wire."""

    def __init__(self, browser, url: str, context=None, network: dict | None = None):
        self.browser, self.url = browser, url
        self.shared_context, self.network = context, network
        self.tti = self.html = self.dom = self.load = self.ws = None
        self.kernel_id: str | None = None
        self.error: str | None = None
        self.browser_cpu = 0.0
        self.failed_requests: list[str] = []
        self.received = 0  # bytes over the wire (encoded), counted when ``network`` is set
        self.requests = 0
        self.from_cache = 0

    async def run(self) -> "Load":
        self.context = self.shared_context or await self.browser.new_context(viewport={"width": 1100, "height": 900})
        page = self.page = await self.context.new_page()
        page.set_default_timeout(LOAD_TIMEOUT_MS)
        if self.network is not None:
            cdp = await self.context.new_cdp_session(page)

            def finished(event):
                self.received += int(event.get("encodedDataLength", 0))

            def served(event):
                self.requests += 1
                response = event.get("response", {})
                if response.get("fromDiskCache") or response.get("fromMemoryCache") or response.get("fromServiceWorker"):
                    self.from_cache += 1

            cdp.on("Network.loadingFinished", finished)
            cdp.on("Network.responseReceived", served)
            await cdp.send("Network.enable")
            await cdp.send("Network.emulateNetworkConditions", self.network)
        start = time.monotonic()

        def on_socket(socket):
            found = KERNEL_SOCKET.search(socket.url)
            if found and self.kernel_id is None:
                self.kernel_id, self.ws = found.group(1), time.monotonic() - start

        page.on("websocket", on_socket)
        page.on("requestfailed", lambda request: self.failed_requests.append(request.url))
        await page.add_init_script(INTERACTIVE)
        try:
            await page.goto(self.url, wait_until="commit", timeout=LOAD_TIMEOUT_MS)
            await page.wait_for_function("() => window.benchInteractive !== undefined", polling="raf", timeout=LOAD_TIMEOUT_MS)
            before = time.monotonic() - start
            timing = await page.evaluate(NAVIGATION)
            # Page times are from the page's time origin; shift them onto our clock (goto start = 0).
            shift = before - timing["now"] / 1000
            self.html, self.dom, self.load, self.tti = (shift + timing[k] / 1000 for k in ("html", "dom", "load", "interactive"))
        except Exception as error:  # a load that never became interactive is counted, not hidden
            self.error = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            socket = f"its kernel websocket opened at {self.ws:.1f} s" if self.ws is not None else "no kernel websocket opened"
            try:
                self.error += f" ({socket}. {await page.evaluate(SHOWING)})"
            except Exception:
                self.error += f" ({socket}; the page could not be read)"
        return self

    async def close(self, shutdown_kernel: bool = True) -> None:
        if shutdown_kernel and self.kernel_id and self.error is None:
            try:
                await self.page.evaluate(SHUTDOWN, self.kernel_id)
            except Exception:
                pass
        if self.shared_context is None:
            await self.context.close()
        else:
            await self.page.close()


def _phases(loads: list[Load]) -> dict:
    ok = [x for x in loads if x.tti is not None]
    return {
        "tti": summary([x.tti for x in ok]),
        "html": summary([x.html for x in ok]),
        "dom": summary([x.dom for x in ok]),
        "load": summary([x.load for x in ok]),
        "ws": summary([x.ws for x in ok if x.ws is not None]),
        "failed": len(loads) - len(ok),
        "errors": sorted({x.error for x in loads if x.error}),
        "failed_requests": sorted({u for x in loads for u in x.failed_requests}),
        "received_kb": summary([x.received / 1000 for x in ok]),
        "requests": summary([x.requests for x in ok]),
        "from_cache": summary([x.from_cache for x in ok]),
    }


# 1. Time to interactive, one learner at a time --------------------------------


async def _sequential(servers: dict, loads: int, warmup: int) -> dict:
    from playwright.async_api import async_playwright

    results: dict[str, list[Load]] = {name: [] for name in servers}
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        servers_pids = {server.process.pid for server in servers.values()}
        for number in range(warmup + loads):
            for name, server in servers.items():  # side by side: A, B, A, B, ...
                before = browser_cpu(servers_pids)
                load = await Load(browser, server.page(PAGE, link_query(f"tti{number}"))).run()
                load.browser_cpu = browser_cpu(servers_pids) - before
                await load.close()
                if number >= warmup:
                    results[name].append(load)
            if number >= warmup:
                done = number - warmup + 1
                if done % 5 == 0 or done == loads:
                    log(f"  TTI {done}/{loads}: " + ", ".join(f"{n} {r[-1].tti or float('nan'):.2f} s" for n, r in results.items()))
        await browser.close()
    figures = {name: _phases(r) for name, r in results.items()}
    for name, r in results.items():
        figures[name]["browser_cpu_per_load"] = sum(x.browser_cpu for x in r) / max(len(r), 1)
    return figures


def time_to_interactive(servers: dict, loads: int = 20, warmup: int = 1) -> dict:
    """Sequential loads of the session page, alternating between the servers."""
    return asyncio.run(_sequential(servers, loads, warmup))


# 1a, 1b. First and second visit over an emulated network ------------------------


async def _visits(servers: dict, loads: int, warmup: int, network: dict) -> dict:
    from playwright.async_api import async_playwright

    first: dict[str, list[Load]] = {name: [] for name in servers}
    second: dict[str, list[Load]] = {name: [] for name in servers}
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        for number in range(warmup + loads):
            for name, server in servers.items():  # side by side: A, B, A, B, ...
                url = server.page(PAGE, link_query(f"net{number}"))
                context = await browser.new_context(viewport={"width": 1100, "height": 900})
                # Each visit finds the server idle (its pool refilled): the learner comes back later, not at once.
                await asyncio.to_thread(wait_idle, server.process.pid)
                visit = await Load(browser, url, context=context, network=network).run()
                # The learner reads the page before leaving: the tab stays open until the whole machine
                # is at rest (the browser done with what the page started after it was interactive, such
                # as the companion's service worker keeping and compiling Voila's scripts).
                await asyncio.to_thread(quiet_machine)
                await visit.close()  # the tab is closed (and its kernel shut down), the context kept
                await asyncio.to_thread(wait_idle, server.process.pid)
                again = await Load(browser, url, context=context, network=network).run()
                await again.close()
                await context.close()
                if number >= warmup:
                    first[name].append(visit)
                    second[name].append(again)
            if number >= warmup:
                done = number - warmup + 1
                log(f"  visits {done}/{loads}: " + ", ".join(
                    f"{n} {first[n][-1].tti or float('nan'):.2f} s then {second[n][-1].tti or float('nan'):.2f} s" for n in servers))
        await browser.close()
    return {name: {"first": _phases(first[name]), "second": _phases(second[name])} for name in servers}


def network_visits(servers: dict, loads: int = 10, warmup: int = 1, network: dict = NETWORK) -> dict:
    """First and second visit of the session page over an emulated link, alternating between the servers.

    Each counted load is a different learner's link; the second visit is the same link
    in a new tab of the first visit's browser context (its HTTP cache warm), once the
    first tab is closed. Before each visit the server is let go idle (its pool refilled),
    as when a learner comes back later."""
    return asyncio.run(_visits(servers, loads, warmup, network))


# 2. A burst of learners --------------------------------------------------------


async def _burst(server, learners: int, window: float) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await launch(playwright)
        loads = [Load(browser, server.page(PAGE, link_query(f"burst{n}"))) for n in range(learners)]

        async def arrive(n: int, load: Load):
            await asyncio.sleep(window * n / learners)  # arrivals spread evenly over the window
            return await load.run()

        started, cpu = time.monotonic(), browser_cpu({server.process.pid})
        server_cpu = tree_cpu(server.process.pid)
        await asyncio.gather(*(arrive(n, load) for n, load in enumerate(loads)))
        wall = time.monotonic() - started
        cpu = {"browser": browser_cpu({server.process.pid}) - cpu, "server": tree_cpu(server.process.pid) - server_cpu}
        memory = kernel_memory(server.process.pid, [x.kernel_id for x in loads if x.kernel_id])
        for load in loads:
            await load.close(shutdown_kernel=False)
        await browser.close()
    figures = _phases(loads)
    figures.update(memory=memory, wall=wall, learners=learners, cpu=cpu,
                   browser_cpu_per_load=cpu["browser"] / learners, server_cpu_per_load=cpu["server"] / learners)
    return figures


def burst(server, learners: int = 20, window: float = 1.0) -> dict:
    """``learners`` open the same session within ``window`` seconds, each in their own browser context."""
    return asyncio.run(_burst(server, learners, window))


def html_burst(server, learners: int = 20, window: float = 1.0, timeout: float = LOAD_TIMEOUT_MS / 1000) -> dict:
    """The server's share of a burst: the same arrivals as plain HTTP GETs of the page, no browser.

    A load counts when the whole page arrived with its widgets in it, within ``timeout``
    (Voila streams heartbeats while it waits, so a stuck render never times out by itself)."""

    def fetch(n: int) -> tuple[float | None, str]:
        time.sleep(window * n / learners)
        start = time.monotonic()
        body = b""
        try:
            with urllib.request.urlopen(server.page(PAGE, link_query(f"html{n}")), timeout=timeout) as response:
                while chunk := response.read1(65536):  # read1: what has arrived (read(n) waits for n bytes)
                    body += chunk
                    if time.monotonic() - start > timeout:
                        return None, f"not finished after {timeout:.0f} s"
        except OSError as error:
            return None, f"{type(error).__name__}: {error}"[:200]
        if b"application/vnd.jupyter.widget-view+json" not in body:
            return None, "the page arrived without its widgets (an error page)"
        return time.monotonic() - start, ""

    with ThreadPoolExecutor(learners) as pool:
        outcomes = list(pool.map(fetch, range(learners)))
    done = [t for t, _ in outcomes if t is not None]
    return {"html": summary(done), "failed": len(outcomes) - len(done), "errors": sorted({e for _, e in outcomes if e})}


# 3. Save round trip -------------------------------------------------------------


def _saved_text(database: str, username: str) -> str | None:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute(
            "SELECT r.value FROM responses r JOIN learners l ON l.id = r.learner_id WHERE l.username = ? AND r.activity_id = ?",
            (username, ACTIVITY_ID),
        ).fetchone()
    return row[0] if row else None


async def _saves(servers: dict, databases: dict, saves: int, warmup: int) -> dict:
    import json

    from playwright.async_api import async_playwright

    results: dict[str, list[float]] = {name: [] for name in servers}
    clicks: dict[str, list[float]] = {name: [] for name in servers}
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        opened = {}
        for name, server in servers.items():
            opened[name] = await Load(browser, server.page(PAGE, link_query("saver"))).run()
            if opened[name].error:
                raise RuntimeError(f"{name}: the page for the save benchmark did not open: {opened[name].error}")
        for number in range(warmup + saves):
            for name, load in opened.items():
                # The first reflection's own box, status line and Save button (the page has an activity each).
                activity = load.page.locator(FIRST_TEXT_ACTIVITY).first
                text = f"Save number {number} on {name} at {time.time():.6f}"
                await activity.locator("textarea").first.fill(text)
                # The kernel has the new text once the page says so; the autosave would follow a second later.
                await activity.locator(".companion-status", has_text="Unsaved changes").first.wait_for()
                button = activity.get_by_role("button", name="Save", exact=True).first
                await button.wait_for()
                # The click is dispatched in the page (one round trip to the browser, a few ms), not
                # with Playwright's click(), whose actionability checks alone take about 100 ms here.
                start = time.monotonic()
                await button.evaluate("button => button.click()")
                clicked = time.monotonic() - start
                deadline = start + 60
                while True:
                    value = _saved_text(databases[name], "saver")
                    if value is not None and json.loads(value).get("text") == text:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{name}: save {number} never reached the store")
                    await asyncio.sleep(0.001)
                if number >= warmup:
                    results[name].append(time.monotonic() - start)
                    clicks[name].append(clicked)
                # Not timed: the page shows the save before the next one starts.
                await activity.locator(".companion-status", has_text="Saved at").first.wait_for()
        for load in opened.values():
            await load.close()
        await browser.close()
    return {name: {"round_trip": summary(r), "click_call": summary(clicks[name])} for name, r in results.items()}


def save_round_trip(servers: dict, databases: dict, saves: int = 30, warmup: int = 2) -> dict:
    """From a Save click until the store has the row, alternating between the servers."""
    return asyncio.run(_saves(servers, databases, saves, warmup))
