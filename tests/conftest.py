"""Shared fixtures: a course in a temporary folder, real servers on free ports, real Chromium, real PostgreSQL.

Nothing here skips: a missing browser or database server fails the test with
what to install, because a skipped browser test would hide a broken product.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FILES = Path(__file__).resolve().parent / "files"
CHROMIUM = os.environ.get("COMPANION_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen | None = None, timeout: float = 180) -> None:
    """Poll ``url`` until it answers (any HTTP status below 500), or fail with the server's output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as error:
            if error.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"nothing answered at {url} within {timeout} s")


def make_course(folder: Path, source: Path = FILES / "mini_course") -> Path:
    """A copy of a fixture course (with the real theme) in ``folder``: its own course.toml, sessions and data home."""
    shutil.copytree(source, folder)
    (folder / "course").mkdir(exist_ok=True)
    shutil.copy2(REPO / "course" / "theme.css", folder / "course" / "theme.css")
    return folder


@pytest.fixture
def course(tmp_path, monkeypatch):
    """The two-session fixture course, as the current course, with its own empty data home."""
    root = make_course(tmp_path / "course")
    for name in ("COMPANION_DB_URL", "COMPANION_SECRET", "JUPYTERHUB_USER", "COMPANION_IDENTITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COMPANION_COURSE_DIR", str(root))
    monkeypatch.setenv("COMPANION_HOME", str(root / "reflections"))
    monkeypatch.setenv("COMPANION_LEARNER", "ana")
    from companion.settings import load_settings

    return load_settings()


class Server:
    """A real ``companion serve`` in its own process group."""

    def __init__(
        self, root: Path, mode: str = "local", learner: str = "ana", extra_env: dict | None = None, home: Path | None = None, port: int | None = None
    ):
        self.root = root
        self.home = home or root / "reflections"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.home / f"serve-{self.port}.log", "w+")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPANION_", "JUPYTERHUB_"))}
        env.update(
            COMPANION_COURSE_DIR=str(root),
            COMPANION_HOME=str(self.home),
            COMPANION_LEARNER=learner,
            **(extra_env or {}),
        )
        self.env = env
        self.process = subprocess.Popen(
            [sys.executable, "-m", "companion.cli", "serve", "--port", str(self.port), "--mode", mode],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_server(f"{self.url}/voila/static/voila.js", self.process)
        except Exception:
            output = self.output()
            self.stop()
            raise RuntimeError(f"companion serve did not start:\n{output[-4000:]}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def store(self):
        """The server's own store (SQLite in its data home), opened as the tests' side of it."""
        from companion.store import open_store

        return open_store(f"sqlite:///{self.home / 'companion.db'}")

    def page(self, name: str, query: str = "") -> str:
        return f"{self.url}/voila/render/{name}" + (f"?{query}" if query else "")

    def stop(self) -> None:
        stop_process_group(self.process)
        self.log.close()


def stop_process_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a server started with ``start_new_session=True`` and its kernels: TERM, then KILL after ``timeout`` s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def module_course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("served") / "course")


@pytest.fixture(scope="module")
def server(request, module_course):
    """One ``companion serve`` of the fixture course per test module.

    In the mode the module names in ``SERVER_MODE`` (default ``"local"``, where
    the learner is ana); in ``"link"`` mode every learner needs a signed link."""
    mode = getattr(request.module, "SERVER_MODE", "local")
    server = Server(module_course, mode=mode, learner="ana" if mode == "local" else "should-not-be-used")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium, driven by Playwright; missing, it fails with what to install."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"No browser at {CHROMIUM}: install Debian's chromium (apt-get install chromium) and run again.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def open_session(page, url: str):
    """Open a session page and wait until its activities are live."""
    page.goto(url, timeout=180_000)
    page.wait_for_selector(".companion-workbook", timeout=180_000)
    return page


def run_in_own_loop(coroutine_function):
    """``asyncio.run(coroutine_function())`` in a thread of its own (the browser tests' Playwright holds
    this thread's loop); its result."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine_function()).result()


@pytest.fixture
def own_provisioner_factory():
    """Jupyter keeps one provisioner factory per process, set up by the first kernel started: this test's is its own."""
    from jupyter_client.provisioning.factory import KernelProvisionerFactory

    KernelProvisionerFactory.clear_instance()
    yield
    KernelProvisionerFactory.clear_instance()


@pytest.fixture
def fresh_zygote(monkeypatch):
    """For a test that starts kernels in its own event loop (:func:`run_in_own_loop`): a zygote of its own.

    The server's handle on its zygote counts the zygote's deaths, to stop forking
    after three in five minutes; a zygote whose test loop ended counts as one, as
    a server's would when it stops, so each test starts from none."""
    from companion.forking import Zygote

    monkeypatch.setattr(Zygote, "_deaths", [])
    monkeypatch.setattr(Zygote, "_current", None)
    yield
    if Zygote._current is not None:
        Zygote._current.stop()


def wait_until(condition, timeout: float = 60, what: str = "the condition"):
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def held(path: Path):
    """Another program's view of a SQLite store: a connection holding its write lock until it commits."""
    import sqlite3

    other = sqlite3.connect(path, isolation_level=None, timeout=5)
    other.execute("BEGIN EXCLUSIVE")
    return other


# PostgreSQL -------------------------------------------------------------------


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql, then run the tests again.")
    return found[-1].parent


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on a free port, as ``postgresql://`` URL."""
    bin_dir = _postgres_bin()
    # PostgreSQL refuses to run as root, and pytest's temporary folders are root's alone.
    folder = Path(tempfile.mkdtemp(prefix="companion-pg-"))
    data = folder / "data"
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(folder, "postgres")
    subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    log = data.parent / "pg.log"
    subprocess.run(
        [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", f"-p {port} -k {data.parent} -h 127.0.0.1", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def new_database(postgres_url: str) -> str:
    """A new, empty database on the test PostgreSQL server (see ``postgres_url``), as its URL."""
    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return postgres_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """A new store's database URL: SQLite in ``tmp_path``, then a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'companion.db'}"
    return new_database(request.getfixturevalue("postgres_url"))


# Screenshots ------------------------------------------------------------------

SCREENSHOTS = pytest.StashKey[Path]()  # the folder tests/test_browser_layout.py saved its screenshots in


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Says where the page screenshots of this run are, when any were taken."""
    folder = config.stash.get(SCREENSHOTS, None)
    if folder is not None:
        terminalreporter.write_sep("-", "page screenshots")
        terminalreporter.write_line(f"Screenshots: {folder}")
