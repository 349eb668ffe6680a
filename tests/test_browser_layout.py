"""Every page reads comfortably on a laptop (1280x900) and on a phone (390x844), in real Chromium.

One real ``companion serve`` on the real course; for each width, the home page,
the six sessions, the facilitator dashboard and the learner's growth page are opened and checked in the
browser:

- no text is cut off: no element with text of its own is larger than a box that
  hides or clips its overflow, no prompt (``.widget-label``) runs under the
  control it names, and no control runs past its card;
- the page is never wider than the screen: no sideways scroll in the window or in
  any part of the page;
- prose and inputs are at least 16 px, and text boxes use the page's proportional font.

A full-page screenshot of every page at both widths is saved in the folder
``$COMPANION_SCREENSHOTS`` or, when that is not set, ``screenshots`` under
pytest's base temporary folder; the run's summary prints which.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from companion import identity
from companion.settings import load_settings
from conftest import REPO, SCREENSHOTS, Server, open_session
from test_browser_sessions import serious_violations

pytestmark = pytest.mark.browser

SESSIONS = load_settings(REPO).sessions
VIEWPORTS = {"1280x900": {"width": 1280, "height": 900}, "390x844": {"width": 390, "height": 844}}
PAGES = ["home"] + [f"session-{s.number}" for s in SESSIONS] + ["dashboard", "growth"]
FACILITATOR = "lee"

# Shared by the checks below: whether an element is drawn at all, and the text it holds itself.
SEEN = """
  const visible = el => {
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden') return false;
    }
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const ownText = el => Array.from(el.childNodes).filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
"""

# Text that the page's own boxes cut off: an element with text of its own, larger than its
# box where overflow hides or clips it; a prompt under the control it names; a control past its card.
CUT_OFF = """() => {""" + SEEN + """
  const shown = el => !el.closest('#loading, .voila-spinner, .jp-OutputArea-stderr') && visible(el);
  const describe = el => `<${el.tagName.toLowerCase()} class="${el.className}"> "${(el.innerText || el.textContent).trim().slice(0, 80)}"`;
  const clips = value => value === 'hidden' || value === 'clip';
  const problems = [];
  // Its text, where it is drawn: a box with visible overflow still draws text outside it, under what follows.
  const inked = el => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const r = range.getBoundingClientRect(), b = el.getBoundingClientRect();
    return {left: Math.min(r.left, b.left), right: Math.max(r.right, b.right), top: Math.min(r.top, b.top), bottom: Math.max(r.bottom, b.bottom)};
  };
  for (const el of document.querySelectorAll('body *')) {
    if (!ownText(el) || !shown(el) || el.clientHeight === 0) continue;
    const s = getComputedStyle(el);
    const tall = el.scrollHeight > el.clientHeight + 1 && (clips(s.overflowY) || el.matches('.widget-label'));
    const wide = el.scrollWidth > el.clientWidth + 1 && (clips(s.overflowX) || s.textOverflow === 'ellipsis');
    if (tall || wide) {
      problems.push(`cut off (${el.scrollWidth}x${el.scrollHeight} in ${el.clientWidth}x${el.clientHeight}): ${describe(el)}`);
    }
  }
  const overlap = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  for (const label of document.querySelectorAll('.companion-activity .widget-label, .companion-dashboard .widget-label')) {
    if (!shown(label)) continue;
    const text = inked(label);
    for (let next = label.nextElementSibling; next; next = next.nextElementSibling) {
      if (!shown(next)) continue;
      if (overlap(text, next.getBoundingClientRect())) {
        problems.push(`prompt under its control: ${describe(label)} overlaps ${describe(next)}`);
      }
      break;
    }
  }
  const controls = 'select, textarea, input, button, .widget-radio-box label, .widget-checkbox label';
  for (const card of document.querySelectorAll('.companion-activity')) {
    if (!shown(card)) continue;
    const edge = card.getBoundingClientRect();
    for (const control of card.querySelectorAll(controls)) {
      if (!shown(control)) continue;
      const r = control.getBoundingClientRect();
      if (r.right > edge.right + 1 || r.left < edge.left - 1) {
        problems.push(`runs past its card (${Math.round(r.left)}-${Math.round(r.right)} in ${Math.round(edge.left)}-${Math.round(edge.right)}): ${describe(control)}`);
      }
    }
  }
  return problems;
}"""

# How much wider than the screen the page is, or any part of it that scrolls sideways (Voila scrolls
# the cells inside #rendered_cells), and the things that stick out.
TOO_WIDE = """() => {
  const describe = el => `<${el.tagName.toLowerCase()} class="${el.className}">`;
  const scrollers = [document.documentElement];
  for (const el of document.querySelectorAll('body *')) {
    const s = getComputedStyle(el);
    if (['auto', 'scroll'].includes(s.overflowX) && !el.matches('textarea, select') && el.getBoundingClientRect().width > 0) scrollers.push(el);
  }
  let wider = document.documentElement.scrollWidth - window.innerWidth;
  const culprits = [];
  for (const scroller of scrollers) {
    const over = scroller === document.documentElement ? wider : scroller.scrollWidth - scroller.clientWidth - 1;
    if (over <= 0) continue;
    wider = Math.max(wider, over);
    const edge = scroller === document.documentElement ? window.innerWidth : scroller.getBoundingClientRect().right;
    for (const el of scroller.querySelectorAll('*')) {
      const r = el.getBoundingClientRect(), parent = el.parentElement.getBoundingClientRect();
      if (r.width > 0 && r.right > edge + 1 && !(parent.right > edge + 1 && el.parentElement !== scroller)) {
        culprits.push(`${describe(el)} ${Math.round(r.left)}-${Math.round(r.right)} in ${describe(scroller)} ending at ${Math.round(edge)}`);
      }
    }
  }
  return {wider, culprits: culprits.slice(0, 10)};
}"""

# Text smaller than 16 px in the page's content, and text boxes in a monospace font.
SMALL_TYPE = """() => {
  const root = document.querySelector('#rendered_cells') || document.body;""" + SEEN + """
  const shown = visible;
  const problems = [];
  for (const el of root.querySelectorAll('*')) {
    const field = el.matches('textarea, select, input:not([type=radio]):not([type=checkbox]):not([type=hidden])');
    if (!(field || ownText(el)) || !shown(el)) continue;
    const s = getComputedStyle(el);
    const size = parseFloat(s.fontSize);
    const what = `<${el.tagName.toLowerCase()} class="${el.className}"> "${(ownText(el) || el.value || '').slice(0, 60)}"`;
    if (size < 16 - 0.01) problems.push(`${size}px: ${what}`);
    if (el.tagName === 'TEXTAREA' && /mono|courier|consol|menlo/i.test(s.fontFamily)) {
      problems.push(`monospace text box (${s.fontFamily}): ${what}`);
    }
  }
  return problems;
}"""


def screenshot_folder(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("COMPANION_SCREENSHOTS") or tmp_path_factory.getbasetemp() / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(REPO, mode="local", learner="dee", home=tmp_path_factory.mktemp("layout-home"))
    yield server
    server.stop()


def page_url(server: Server, name: str) -> str:
    """The friendly address a person opens: ``/``, ``/session/<n>``, ``/dashboard``, ``/growth``."""
    if name == "home":
        return server.url + "/"
    if name == "growth":
        return server.url + "/growth"
    if name == "dashboard":
        key = identity.sign(FACILITATOR, identity.server_secret(server.home), purpose="facilitator")
        return f"{server.url}/dashboard?facilitator={key}"
    return f"{server.url}/session/{name.split('-')[1]}"


def open_page(page, server: Server, name: str) -> None:
    url = page_url(server, name)
    if name.startswith("session-"):
        open_session(page, url)
        page.wait_for_selector("text=Finish this session", timeout=180_000)
    else:
        if name == "growth":  # with a start rating and a goal, so the chart, the tables and a check-in form show
            store = server.store()
            store.save("dee", "s1", "s1-start-cultural-proficiency", "answered", {"ratings": [2, 3, 1, 2], "score": 2.0}, done=True)
            store.save("dee", "s5", "s5-goal-cultural-proficiency", "responded", {"goal": "Call three families", "measure": "Notes", "target": "2027-03-01"}, done=True)
        page.goto(url, timeout=180_000)
        selector = {"home": ".companion-sessions", "growth": ".companion-growth h2"}.get(name, ".companion-dashboard")
        page.wait_for_selector(selector, timeout=180_000)
    page.evaluate("document.fonts.ready")
    page.wait_for_timeout(300)  # the last widgets' layout


def screenshot(page, path: Path) -> None:
    """The whole page, the window made as tall as it (and as #rendered_cells, should that ever scroll inside it)."""
    viewport = page.viewport_size
    height = page.evaluate(
        "() => { const cells = document.querySelector('#rendered_cells');"
        " return Math.max(document.documentElement.scrollHeight, cells ? cells.scrollHeight + cells.getBoundingClientRect().top : 0); }"
    )
    page.set_viewport_size({"width": viewport["width"], "height": min(int(height) + 1, 30_000)})
    page.wait_for_timeout(200)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(viewport)
    page.wait_for_timeout(200)


@pytest.mark.parametrize("name", PAGES)
@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_page_reads_whole_and_fits_the_screen(server, chromium, tmp_path_factory, request, size, name):
    context = chromium.new_context(viewport=VIEWPORTS[size])
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        open_page(page, server, name)
        cut = page.evaluate(CUT_OFF)
        width = page.evaluate(TOO_WIDE)
        small = page.evaluate(SMALL_TYPE)
        violations = serious_violations(page)
        folder = screenshot_folder(tmp_path_factory)
        screenshot(page, folder / f"{size}-{name}.png")
        request.config.stash[SCREENSHOTS] = folder
    finally:
        context.close()
    assert cut == [], f"{name} at {size}: text cut off or under its control:\n" + "\n".join(cut)
    assert width["wider"] <= 0, f"{name} at {size}: the page is {width['wider']} px wider than the screen: " + ", ".join(width["culprits"])
    assert small == [], f"{name} at {size}: type smaller than 16 px or a monospace text box:\n" + "\n".join(small)
    assert violations == [], f"{name} at {size}: axe-core found serious or critical problems: {violations}"

