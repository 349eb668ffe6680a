"""What every benchmark shares: the fixture course, the two servers, statistics, kernel memory.

The course is the repository's own (``course/`` and ``sessions/``, copied into
the benchmark's folder, so nothing is served from the repository in place), and
the page is its session 1 as ``companion serve`` releases it. The servers are the
real ones: ``companion serve`` (through ``tests/conftest.py``'s ``Server``) and
stock ``voila <notebook>`` on a copy of the same released page, with the same
``COMPANION_*`` environment (the page imports companion). Both run in link mode,
so each simulated learner opens a personal signed link, as on a shared server.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TESTS = BENCH.parent
REPO = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from conftest import CHROMIUM, CHROMIUM_FLAGS, Server, free_port, stop_process_group, wait_for_server  # noqa: E402

# Session 1 of the real course, as released. Its first text box is the first
# Reflection ("s1-moment"), below a Choice and four SelfAssessments.
PAGE = "01-foundation-what-is-your-why.ipynb"
SESSION_ID = "s1"
ACTIVITY_ID = "s1-moment"
TEXTAREA = ".companion-activity textarea"
# The activity that holds that first text box (its own status line and Save button).
FIRST_TEXT_ACTIVITY = ".companion-activity:has(textarea)"
SECRET = "benchmark-secret-not-for-production-0123456789abcdef"
LOAD_TIMEOUT_MS = 300_000
KERNEL_ID = re.compile(rb'"kernelId": *"([0-9a-f-]{36})"')

__all__ = [
    "CHROMIUM", "CHROMIUM_FLAGS", "PAGE", "SESSION_ID", "ACTIVITY_ID", "TEXTAREA", "FIRST_TEXT_ACTIVITY", "LOAD_TIMEOUT_MS",
    "kernel_id_in", "machine", "load_average",
    "Server", "StockVoila", "Workspace", "free_port", "wait_for_server", "percentile", "summary",
    "link_query", "kernel_memory", "kernel_pids", "log", "wait_idle", "tree_cpu", "browser_cpu",
]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else math.nan,
        "p95": percentile(values, 95),
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
    }


def link_query(username: str) -> str:
    """The query string of ``username``'s personal link, signed with the benchmark's secret."""
    from companion.identity import LINK_PARAMETER, sign

    return f"{LINK_PARAMETER}={sign(username, SECRET.encode('utf-8'), days=2)}"


class Workspace:
    """A throwaway copy of the repository's course (``course/``, ``sessions/``) with a data home per server."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.root = folder / "course"
        self.root.mkdir(parents=True)
        for part in ("course", "sessions"):
            shutil.copytree(REPO / part, self.root / part)
        self._released: Path | None = None

    def home(self, name: str) -> Path:
        path = self.folder / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def db_url(self, home: Path) -> str:
        return f"sqlite:///{home / 'companion.db'}"

    def companion(self, name: str = "companion-home", session_pool: int | None = None) -> Server:
        """``companion serve --mode link`` on the course, with its own data home (released on start).

        ``session_pool``: session 1 keeps that many kernels ready (its own ``preheated_kernels``, as
        an administrator sets it for the session a cohort opens together), on a copy of the course."""
        root = self.root
        if session_pool is not None:
            root = self.folder / f"course-pool-{session_pool}"
            if not root.exists():
                shutil.copytree(self.root, root)
                toml = root / "course" / "course.toml"
                text = toml.read_text(encoding="utf-8")
                toml.write_text(text.replace('id = "s1"\n', f'id = "s1"\npreheated_kernels = {session_pool}\n', 1), encoding="utf-8")
        return Server(root, mode="link", learner="nobody", extra_env={"COMPANION_SECRET": SECRET}, home=self.home(name))

    def released_page(self, released_from: Server | None = None) -> Path:
        """The session page as released: copied from ``released_from``'s site folder, or from one
        ``companion release`` into a data home of its own (done once, then kept)."""
        if self._released is None:
            cache = self.home("released")
            if released_from is not None:
                shutil.copy2(released_from.home / "site" / PAGE, cache / PAGE)
            else:
                env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPANION_", "JUPYTERHUB_"))}
                env.update(COMPANION_COURSE_DIR=str(self.root), COMPANION_HOME=str(cache / "home"), COMPANION_LEARNER="nobody")
                done = subprocess.run([sys.executable, "-m", "companion.cli", "release"], env=env, capture_output=True, text=True)
                if done.returncode:
                    raise RuntimeError(f"companion release failed:\n{(done.stdout + done.stderr)[-4000:]}")
                shutil.copy2(cache / "home" / "site" / PAGE, cache / PAGE)
            self._released = cache / PAGE
        return self._released

    def stock_voila(self, released_from: Server | None = None, name: str = "voila-home") -> "StockVoila":
        """Stock ``voila <notebook>`` on a copy of the released page, with its own data home."""
        home = self.home(name)
        pages = self.folder / f"{name}-pages"
        pages.mkdir(exist_ok=True)
        notebook = pages / PAGE
        shutil.copy2(self.released_page(released_from), notebook)
        return StockVoila(self.root, home, notebook)


class StockVoila:
    """``voila <notebook> --port P --no-browser``: Voila as it ships, no preheating, no template."""

    def __init__(self, root: Path, home: Path, notebook: Path):
        from companion.store import open_store

        self.root, self.home, self.notebook = root, home, notebook
        open_store(f"sqlite:///{home / 'companion.db'}")  # the schema, as 'companion serve' makes it first
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(home / f"voila-{self.port}.log", "w+")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPANION_", "JUPYTERHUB_"))}
        env.update(
            COMPANION_COURSE_DIR=str(root),
            COMPANION_HOME=str(home),
            COMPANION_DB_URL=f"sqlite:///{home / 'companion.db'}",
            COMPANION_IDENTITY="link",
            COMPANION_SECRET=SECRET,
        )
        voila = Path(sys.executable).with_name("voila")
        command = [str(voila)] if voila.exists() else [sys.executable, "-m", "voila"]
        self.process = subprocess.Popen(
            [*command, str(notebook), "--port", str(self.port), "--no-browser", "--Voila.ip=127.0.0.1"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=notebook.parent,
        )
        try:
            wait_for_server(f"{self.url}/voila/static/voila.js", self.process)
        except Exception:
            self.stop()
            raise RuntimeError(f"voila did not start:\n{self.output()[-4000:]}")

    def page(self, name: str = PAGE, query: str = "") -> str:
        return f"{self.url}/" + (f"?{query}" if query else "")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        stop_process_group(self.process, timeout=30)
        if not self.log.closed:
            self.log.close()


# Kernels ----------------------------------------------------------------------


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def kernel_pids(server_pid: int) -> dict[str, int]:
    """The server's kernel processes, by kernel id (from the connection file each kernel was started with).

    Any descendant of the server counts, not only its children (a kernel may be
    started by a helper process, a provisioner's for example)."""
    found = {}
    for pid in _tree(server_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for part in argv:
            name = Path(part.decode(errors="replace")).name
            if name.startswith("kernel-") and name.endswith(".json"):
                found[name[len("kernel-") : -len(".json")]] = pid
    return found


def _memory_kib(pid: int) -> tuple[int, int]:
    """(resident, proportional) set size of one process, in KiB."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def kernel_memory(server_pid: int, kernel_ids: list[str] | None = None) -> dict:
    """Resident (and proportional) memory of the server's kernels; only ``kernel_ids`` if given."""
    pids = kernel_pids(server_pid)
    chosen = [pids[k] for k in kernel_ids if k in pids] if kernel_ids is not None else list(pids.values())
    sizes = [_memory_kib(pid) for pid in chosen]
    server_rss, server_pss = _memory_kib(server_pid)
    everything = [_memory_kib(pid) for pid in _tree(server_pid)]
    return {
        "kernels": len(chosen),
        "all_kernels": len(pids),
        "rss_mib": sum(s[0] for s in sizes) / 1024,
        "pss_mib": sum(s[1] for s in sizes) / 1024,
        "pss_per_kernel_mib": summary([s[1] / 1024 for s in sizes]),
        "server_rss_mib": server_rss / 1024,
        "server_pss_mib": server_pss / 1024,
        # The server, every kernel (the preheated ones too) and any helper: what the pages cost the machine.
        "tree_pss_mib": sum(s[1] for s in everything) / 1024,
    }


def kernel_id_in(body: bytes) -> str | None:
    """The kernel id a Voila page was rendered with (its page config carries it)."""
    found = KERNEL_ID.search(body)
    return found.group(1).decode() if found else None


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, as ``uptime`` shows them."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def machine() -> str:
    """The processor, the cores and the memory of this machine."""
    model = "unknown processor"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        memory = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal:"))
        size = f", {memory / 1024 / 1024:.0f} GiB memory"
    except (OSError, StopIteration, ValueError):
        size = ""
    return f"{os.cpu_count()} cores ({model}){size}"


def _cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of its children that have exited (so a shut-down kernel still counts)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            children.setdefault(_ppid(int(entry.name)), []).append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu(pid: int) -> float:
    total = 0.0
    for member in _tree(pid):
        try:
            total += _cpu_seconds(member)
        except (OSError, ValueError, IndexError):
            pass
    return total


def wait_idle(pid: int, share: float = 0.05, window: float = 1.0, timeout: float = 180) -> float:
    """Poll until the server and its kernels use under ``share`` of one core over ``window`` s.

    A server is ready for a measurement when its preheated kernels have finished
    starting; this waits for that instead of a fixed sleep. Returns the seconds waited."""
    started = time.monotonic()
    before, at = tree_cpu(pid), time.monotonic()
    while time.monotonic() - started < timeout:
        time.sleep(window)
        now, moment = tree_cpu(pid), time.monotonic()
        if (now - before) / (moment - at) < share:
            return time.monotonic() - started
        before, at = now, moment
    log(f"  (the server was still busy after {timeout:.0f} s; measuring anyway)")
    return time.monotonic() - started


def _cpu_times() -> tuple[float, float]:
    """(idle, total) jiffies of all cores so far, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def quiet_machine(busy: float = 0.1, window: float = 0.5, timeout: float = 120) -> float:
    """Write back what the page cache still holds (``os.sync``), then poll until every core together is
    busy under ``busy`` of the time over ``window`` s; returns the seconds waited.

    The store figures write hundreds of megabytes each; without this, a figure's
    checkpoints share the disk with the write-back of the one before it."""
    started = time.monotonic()
    os.sync()
    idle, total = _cpu_times()
    while time.monotonic() - started < timeout:
        time.sleep(window)
        now_idle, now_total = _cpu_times()
        if now_total > total and 1 - (now_idle - idle) / (now_total - total) < busy:
            return time.monotonic() - started
        idle, total = now_idle, now_total
    log(f"  (the machine was still busy after {timeout:.0f} s; measuring anyway)")
    return time.monotonic() - started


def browser_cpu(exclude: set[int]) -> float:
    """CPU seconds used so far by this process's children other than ``exclude`` (the servers):
    Playwright's driver and the Chromium it started."""
    me = os.getpid()
    total = 0.0
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            pid = int(entry.name)
            if pid in exclude or _ppid(pid) != me:
                continue
        except (OSError, ValueError, IndexError):
            continue
        total += tree_cpu(pid)
    return total
