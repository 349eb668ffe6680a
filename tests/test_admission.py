"""Who gets a kernel on a shared server: strangers, floods and crowds get a short page and no kernel;
closed pages' kernels stop; an open page left idle is paused and resumes with its text.

All on a real ``companion serve --mode link`` with the fixture course; kernels are counted as the
server's child processes, memory as the resident size of the server and its kernels."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import urlopen

import psutil
import pytest
from conftest import Server, make_course, open_session, run_in_own_loop, wait_until

from companion.admission import Admission, Admitted, Refused, RequestRate
from companion.errors import SettingsError
from companion.identity import server_secret, sign
from companion.settings import load_settings

MiB = 1024 * 1024


def with_server_settings(root: Path, **values) -> Path:
    """The fixture course with ``[server]`` ``values`` set in its course.toml."""
    path = root / "course" / "course.toml"
    text = path.read_text(encoding="utf-8")
    for key, value in values.items():
        text = re.sub(rf"^{key} = .*\n", "", text, flags=re.M)
        line = f"{key} = {str(value).lower() if isinstance(value, bool) else value}\n"
        text = text.replace("[server]\n", f"[server]\n{line}", 1)
    path.write_text(text, encoding="utf-8")
    return root


def link(root: Path, username: str) -> str:
    return "learner=" + sign(username, server_secret(load_settings(root).home))


def get(url: str) -> tuple[int, str]:
    """The status and text of a plain GET, read to its end (as a browser receives the page)."""
    try:
        with urlopen(url, timeout=180) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def running(server: Server) -> list[psutil.Process]:
    """The server and its living descendants (an exited kernel not yet reaped is not one of them)."""
    root = psutil.Process(server.process.pid)
    return [p for p in [root, *root.children(recursive=True)] if _alive(p)]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _measure(process: psutil.Process, read, default):
    try:
        return read(process)
    except psutil.Error:  # it exited meanwhile
        return default


def kernels(server: Server) -> int:
    """The server's kernels: its living descendants running ipykernel."""
    return sum(1 for p in running(server) if "ipykernel" in " ".join(_measure(p, psutil.Process.cmdline, [])))


def resident(server: Server) -> int:
    """Bytes resident in the server and all its kernels."""
    return sum(_measure(p, lambda q: q.memory_info().rss, 0) for p in running(server))


def settled_pool(server: Server) -> int:
    """The kernel count once the preheated pools are full (unchanged for 3 s)."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        count = kernels(server)
        if count != last:
            last, since = count, time.monotonic()
        elif count and time.monotonic() - since > 3:
            return count
        time.sleep(0.2)
    raise AssertionError(f"the preheated pool never settled (last count {last})")


# The checks, without a server --------------------------------------------------------------------


class FakeKernels:
    def __init__(self, open_pages: dict[str, int]):
        self.open = open_pages

    def pages_of(self, username: str) -> int:
        return self.open.get(username, 0)

    def pages_open(self) -> int:
        return sum(self.open.values())


def test_an_address_over_its_requests_per_minute_is_refused_until_the_minute_has_passed():
    now = [1000.0]
    rate = RequestRate(3, clock=lambda: now[0])
    assert [rate.allow("10.0.0.7") for _ in range(4)] == [True, True, True, False]
    assert rate.allow("10.0.0.8"), "another address has its own count"
    now[0] += 61
    assert rate.allow("10.0.0.7")


def test_link_mode_admits_a_valid_link_and_refuses_the_rest_with_what_to_do(tmp_path):
    root = with_server_settings(make_course(tmp_path / "course"), pages_per_learner=2, max_pages=3)
    gate = Admission(load_settings(root), mode="link")
    page = "01-every-activity.ipynb"
    assert gate.check(page, link(root, "ana"), "a", FakeKernels({})) == Admitted("ana")
    stranger = gate.check(page, "", "a", FakeKernels({}))
    assert isinstance(stranger, Refused) and stranger.status == 403
    assert "personal link" in stranger.message and "nothing has been saved" in stranger.message
    forged = gate.check(page, link(root, "ana").replace("ana", "bo", 1), "a", FakeKernels({}))
    assert isinstance(forged, Refused) and "not valid" in forged.message
    crowded = gate.check(page, link(root, "ana"), "a", FakeKernels({"ana": 2}))
    assert isinstance(crowded, Refused) and crowded.status == 429 and "Close a tab" in crowded.message
    full = gate.check(page, link(root, "cy"), "a", FakeKernels({"ana": 2, "bo": 1}))
    assert isinstance(full, Refused) and full.status == 503 and "Try again in a few minutes" in full.message


def test_a_learner_link_does_not_admit_to_the_dashboard(tmp_path):
    root = make_course(tmp_path / "course")
    gate = Admission(load_settings(root), mode="link")
    refused = gate.check("dashboard.ipynb", link(root, "ana"), "a", FakeKernels({}))
    assert isinstance(refused, Refused) and refused.status == 403 and "facilitator link" in refused.message


def test_local_mode_has_no_link_to_check(tmp_path):
    gate = Admission(load_settings(make_course(tmp_path / "course")), mode="local")
    assert gate.check("home.ipynb", "", "127.0.0.1", FakeKernels({})) == Admitted(None)


@pytest.mark.parametrize(
    "key, value, said",
    [
        ("pages_per_learner", -1, "write 0 \\(no limit\\) or more"),
        ("requests_per_minute", '"many"', "write a whole number"),
        ("closed_page_seconds", 0, "write 10 to 86400"),
        ("behind_proxy", '"yes"', "write true or false"),
        ("kernel_start", '"spawn"', 'write "fork" \\(the default on Linux\\) or "process"'),
    ],
)
def test_a_bad_limit_in_course_toml_says_which_and_what_to_write(tmp_path, key, value, said):
    root = with_server_settings(make_course(tmp_path / "course"), **{key: value})
    with pytest.raises(SettingsError, match=f"\\[server\\] {key} is .*; {said}"):
        load_settings(root)


def with_session_pool(root: Path, count) -> Path:
    """The fixture course with session 1 keeping its own ``count`` kernels ready."""
    path = root / "course" / "course.toml"
    path.write_text(path.read_text(encoding="utf-8").replace('id = "s1"\n', f'id = "s1"\npreheated_kernels = {count}\n', 1), encoding="utf-8")
    return root


def test_a_session_can_keep_its_own_number_of_kernels_ready(tmp_path):
    from companion.server import voila_config

    settings = load_settings(with_session_pool(make_course(tmp_path / "course"), 3))
    assert [s.preheated_kernels for s in settings.sessions] == [3, None]
    pools = voila_config(settings, port=8866)["CompanionKernelManager"]["kernel_pools_config"]
    assert pools == {"default": {"pool_size": 1}, "01-every-activity.ipynb": {"pool_size": 3}}


@pytest.mark.parametrize("count, said", [(-1, "write 0 .* or more"), ('"many"', "write a whole number")])
def test_a_bad_session_pool_says_what_to_write(tmp_path, count, said):
    root = with_session_pool(make_course(tmp_path / "course"), count)
    with pytest.raises(SettingsError, match=f"session 1 preheated_kernels is .*; {said}"):
        load_settings(root)


def test_the_kernel_that_replaces_a_taken_one_is_not_given_the_learners_link():
    """Voila starts the replacement with the taking request's URL in its environment; it will serve someone else."""
    from companion.server import _OwnerRecorder

    class Pools:
        def __init__(self):
            self.asked, self.owners = [], {}

        def taking(self, notebook):
            self.asked.append(("taking", notebook))

        async def get_rendered_notebook(self, notebook_name, extra_kernel_env_variables):
            self.asked.append((notebook_name, extra_kernel_env_variables))  # Voila passes these to the refill
            return "task", [], "kernel-1"

        def record_owner(self, kernel_id, username):
            self.owners[kernel_id] = username

    pools = Pools()
    url = "https://course.example.org/session/1?learner=ana.1900000000.c2lnbmF0dXJl"
    taking = _OwnerRecorder(pools, "ana").get_rendered_notebook(
        notebook_name="01-every-activity.ipynb", extra_kernel_env_variables={"VOILA_REQUEST_URL": url})
    taken = run_in_own_loop(lambda: taking)
    assert taken == ("task", [], "kernel-1") and pools.owners == {"kernel-1": "ana"}
    assert pools.asked == [("taking", "01-every-activity.ipynb"), ("01-every-activity.ipynb", {})]


def test_kernels_are_forked_unless_the_course_says_otherwise(tmp_path):
    root = make_course(tmp_path / "course")
    assert load_settings(root).server.kernel_start == "fork"
    assert load_settings(with_server_settings(root, kernel_start='"process"')).server.kernel_start == "process"


# A real server ---------------------------------------------------------------------------------


@pytest.fixture
def link_server(tmp_path):
    servers = []

    def start(session_pool: int | None = None, **values) -> Server:
        root = with_server_settings(make_course(tmp_path / f"course{len(servers)}"), **values)
        if session_pool is not None:
            with_session_pool(root, session_pool)
        server = Server(root, mode="link")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_fifty_strangers_at_once_start_no_kernel(link_server):
    server = link_server()
    pool = settled_pool(server)
    memory = resident(server)
    addresses = ["/", "/session/1", "/session/2", "/dashboard", "/growth", "/voila/render/home.ipynb"]
    urls = [server.url + addresses[n % len(addresses)] + ("?learner=ana.1.forged" if n % 2 else "") for n in range(50)]
    with ThreadPoolExecutor(50) as pool_of_strangers:
        answers = list(pool_of_strangers.map(get, urls))
    assert {status for status, _ in answers} == {403}
    headings = ("We could not tell who you are", "This dashboard is for facilitators")
    assert all(any(heading in text for heading in headings) for _, text in answers)
    assert any("This page needs your personal link" in text for _, text in answers)
    assert any("This link is not valid" in text for _, text in answers)
    assert not any("<script" in text for _, text in answers), "a refusal page runs nothing"
    time.sleep(1)
    assert kernels(server) == pool, "a request without a valid link must not start or take a kernel"
    assert resident(server) - memory < 200 * MiB


def test_a_session_with_a_larger_pool_serves_learners_arriving_together_from_it_and_refills_once_they_are_served(link_server):
    server = link_server(session_pool=3)
    pool = settled_pool(server)
    urls = [f"{server.url}/session/1?{link(server.root, name)}" for name in ("ana", "bo", "cy")]
    with ThreadPoolExecutor(3) as together:
        assert [status for status, _ in together.map(get, urls)] == [200, 200, 200]
    used = re.findall(r"Using pre-heated kernel: [0-9a-f-]+ for 01-every-activity", server.output())
    assert len(used) == 3, "each of the three arrivals took a kernel that was already running"
    # Only the last ready kernel taken was replaced at once; the two others once every page was sent.
    refill = "Refilling the pool of 01-every-activity.ipynb with 2 kernel(s), the server being free."
    wait_until(lambda: refill in server.output(), what="the pool to be topped up")
    log = server.output()
    assert log.index(refill) > max(m.end() for m in re.finditer(r"Using pre-heated kernel: [0-9a-f-]+ for 01-every-activity", log))
    wait_until(lambda: kernels(server) == pool + 3, what="three pages' kernels and a full pool again")


def test_a_learner_over_the_limits_gets_a_page_that_says_what_to_do(link_server):
    server = link_server(pages_per_learner=1, requests_per_minute=8)
    settled_pool(server)
    ana = link(server.root, "ana")
    status, text = get(f"{server.url}/session/1?{ana}")
    assert status == 200 and "voila_finish" in text, "the whole page was sent"
    status, text = get(f"{server.url}/session/2?{ana}")
    assert status == 429
    assert "Too many open pages" in text and "Close a tab you are not using" in text
    status, _ = get(f"{server.url}/session/2?{link(server.root, 'bo')}")
    assert status == 200, "another learner is not held back by ana's pages"
    answers = [get(f"{server.url}/session/1") for _ in range(6)]
    assert answers[-1][0] == 429 and "Too many pages opened" in answers[-1][1]
    assert "Wait a minute" in answers[-1][1]


def test_the_server_full_page_comes_before_any_new_kernel(link_server):
    server = link_server(max_pages=1)
    pool = settled_pool(server)
    assert get(f"{server.url}/session/1?{link(server.root, 'ana')}")[0] == 200
    wait_until(lambda: kernels(server) == pool + 1, what="the pool to refill behind ana's page")
    status, text = get(f"{server.url}/session/1?{link(server.root, 'bo')}")
    assert status == 503 and "The course server is full right now" in text
    time.sleep(1)
    assert kernels(server) == pool + 1


def test_a_closed_pages_kernel_stops_within_the_configured_time(link_server):
    server = link_server(closed_page_seconds=10)
    pool = settled_pool(server)
    # A page fetched and never connected to is a closed page from the start.
    assert get(f"{server.url}/session/1?{link(server.root, 'ana')}")[0] == 200
    began = time.monotonic()
    used = wait_until(lambda: re.search(r"Using pre-heated kernel: ([0-9a-f-]+) for 01", server.output()), what="ana's kernel")[1]
    wait_until(lambda: f"Kernel shutdown: {used}" in server.output(), timeout=60, what="the closed page's kernel to stop")
    assert time.monotonic() - began < 10 + 2 + 8, "idle for closed_page_seconds, then the next cull"
    wait_until(lambda: kernels(server) == pool, timeout=90, what="only the refilled pool to be left")


def test_a_learner_coming_back_is_not_kept_waiting_while_their_closed_pages_kernel_stops(tmp_path, monkeypatch, caplog, own_provisioner_factory):
    """The page handler starts stopping a returning learner's closed pages and makes the page at once."""
    import asyncio
    import logging

    from companion import kernels as kernels_module
    from companion.kernels import CompanionKernelManager

    monkeypatch.setattr(kernels_module, "LOADING_SECONDS", 0)  # closed as soon as no page is connected

    async def run():
        manager = CompanionKernelManager(root_dir=str(tmp_path), connection_dir=str(tmp_path))
        manager.log = logging.getLogger("companion.test.kernels")
        anas, bens = await manager.start_kernel(), await manager.start_kernel()
        manager.record_owner(anas, "ana")
        manager.record_owner(bens, "ben")
        try:
            await asyncio.sleep(0.05)
            assert manager.stop_closed_pages("ana") is None, "nothing to wait for"
            assert anas in manager, "still stopping: the page was not kept waiting for it"
            assert manager.pages_of("ana") == 0
            manager.stop_closed_pages("ana")  # ana's next request, close behind: stopped once
            for _ in range(300):
                if anas not in manager:
                    break
                await asyncio.sleep(0.1)
            assert anas not in manager, "ana's closed page's kernel stops"
            assert bens in manager, "ben's is not ana's"
        finally:
            await manager.shutdown_kernel(bens, now=True)

    with caplog.at_level(logging.WARNING, logger="companion.test.kernels"):
        run_in_own_loop(run)
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_a_page_left_open_is_paused_and_resumes_with_its_text(link_server, page):
    server = link_server(pause_idle_seconds=12, closed_page_seconds=60)
    pool = settled_pool(server)
    open_session(page, f"{server.url}/session/1?{link(server.root, 'ana')}")
    box = page.get_by_role("textbox").first
    box.fill("What I wrote before I went for coffee.")
    page.locator(".companion-status", has_text=re.compile("^Saved at")).first.wait_for()  # not "Unsaved changes..."
    banner = page.locator("#companion-connection")
    # The closed connection is reported first ("Not connected"), then the server says it was a pause.
    banner.get_by_text("This page was paused").wait_for(timeout=120_000)
    assert "Everything you wrote is kept" in banner.inner_text()
    assert "Pausing the page of kernel" in server.output()
    wait_until(lambda: kernels(server) == pool, timeout=60, what="the paused page's kernel to stop (and the pool to refill)")
    resume = page.get_by_role("button", name="Resume")
    assert resume.evaluate("element => element === document.activeElement"), "focus moves to Resume"
    page.keyboard.press("Enter")
    page.wait_for_selector(".companion-workbook", timeout=180_000)
    assert page.get_by_role("textbox").first.input_value() == "What I wrote before I went for coffee."
    assert not page.locator("#companion-connection").is_visible()
