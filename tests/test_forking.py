"""Kernels forked from a warm zygote (companion.forking) keep every guarantee of the learner path.

A real ``companion serve`` of the fixture course (forking is the default on
Linux: ``[server] kernel_start``), real Chromium, and psutil for the processes: pages open
and save, two learners get separate kernel processes, a killed kernel is
restarted, the zygote dying takes neither the server nor the open pages down,
and stopped kernels leave no zombie or orphan.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from companion.forking import PROVISIONER_NAME, use_forking
from companion.identity import server_secret, sign
from companion.settings import load_settings
from companion.store.writer import counts
from conftest import Server, make_course, open_session, run_in_own_loop, wait_until

PAGE = "02-short.ipynb"
PROMPT = "One thing you noticed this week."
FORKED = re.compile(r"Kernel ([0-9a-f-]{36}) forked as process (\d+)")


@pytest.fixture(scope="module")
def forking(tmp_path_factory):
    """A link-mode server whose kernels are forked; closed pages' kernels stop after 10 s."""
    root = make_course(tmp_path_factory.mktemp("forking") / "course")
    toml = root / "course" / "course.toml"
    toml.write_text(toml.read_text().replace("closed_page_seconds = 120", "closed_page_seconds = 10"))
    # A home of its own: where IPython would keep its history if the kernels kept one.
    server = Server(root, mode="link", learner="nobody", extra_env={"HOME": str(tmp_path_factory.mktemp("user-home"))})
    yield server
    server.stop()


def link(server: Server, learner: str) -> str:
    return server.page(PAGE, "learner=" + sign(learner, server_secret(load_settings(server.root).home)))


def forked(server: Server) -> dict[str, int]:
    """Each kernel id's process, as the server's log says (the last fork of each id)."""
    return {kernel: int(pid) for kernel, pid in FORKED.findall(server.output())}


def zygote(server: Server) -> psutil.Process:
    found = [p for p in psutil.Process(server.process.pid).children() if "zygote_main" in " ".join(p.cmdline())]
    assert len(found) == 1, f"one zygote under the server, found {found}"
    return found[0]


def writer_process(server: Server) -> psutil.Process:
    found = [p for p in psutil.Process(server.process.pid).children() if "companion.store.writer" in " ".join(p.cmdline())]
    assert len(found) == 1, f"one writing process under the server, found {found}"
    return found[0]


def writer_counts(server: Server) -> dict[str, int]:
    """What the server's writing process has answered: it is given its store's URL and socket when started."""
    url, path = writer_process(server).cmdline()[-3:-1]
    return counts(path, url)


def gone(pid: int) -> bool:
    """The process ended and was reaped (no zombie left)."""
    return not psutil.pid_exists(pid)


def page_kernel(page) -> list[str]:
    """Collects the kernel id of each websocket the page opens."""
    ids: list[str] = []
    page.on("websocket", lambda ws: ids.extend(re.findall(r"/api/kernels/([0-9a-f-]{36})/channels", ws.url)))
    return ids


def saved_text(store, learner: str) -> str | None:
    saved = store.response(learner, "s2-note")
    return saved.value.get("text") if saved else None


def test_use_forking_selects_the_provisioner_and_a_kernel_runs_in_the_given_environment(tmp_path, fresh_zygote):
    config = use_forking({"VoilaConfiguration": {"preheat_kernel": True}})
    assert config["KernelProvisionerFactory"]["default_provisioner_name"] == PROVISIONER_NAME
    assert config["VoilaConfiguration"] == {"preheat_kernel": True}, "the rest of the configuration is kept"

    async def run():
        from jupyter_client.manager import AsyncKernelManager
        from traitlets.config import Config, Configurable

        manager = AsyncKernelManager(parent=Configurable(config=Config(config)))
        await manager.start_kernel(env={**os.environ, "COMPANION_PROBE": "probe-value"}, cwd=str(tmp_path))
        assert type(manager.provisioner).__name__ == "ForkingProvisioner"
        pid = manager.provisioner.forked_pid
        client = manager.client()
        client.start_channels()
        await client.wait_for_ready(timeout=120)
        out: list[str] = []
        code = "import os, threading; print(os.environ['COMPANION_PROBE'], os.getcwd(), os.getpid(), os.getsid(0) == os.getpid())"
        await client.execute_interactive(code, timeout=60, output_hook=lambda m: out.append(m["content"].get("text", "")))
        assert "".join(out).split() == ["probe-value", str(tmp_path), str(pid), "True"]
        # An interrupt reaches the forked kernel (a signal to its process group), and it carries on.
        running = asyncio.ensure_future(client.execute_interactive("import time; time.sleep(60)", timeout=60))
        await asyncio.sleep(2)
        await manager.interrupt_kernel()
        reply = await asyncio.wait_for(running, 30)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        process = psutil.Process(pid)
        assert process.ppid() != os.getpid(), "forked by the zygote, not started by this process"
        # Scheduled as a batch process (companion.forking.schedule_as_kernel); the server that started it is not.
        assert os.sched_getscheduler(pid) == os.SCHED_BATCH and os.sched_getscheduler(0) == os.SCHED_OTHER
        assert await manager.is_alive()
        client.stop_channels()
        await manager.shutdown_kernel()
        assert not await manager.is_alive()
        wait_until(lambda: gone(pid), timeout=10, what="the kernel reaped")

        # A kernel killed from outside is noticed, and reaped by the zygote.
        second = AsyncKernelManager(parent=Configurable(config=Config(config)))
        await second.start_kernel(env=dict(os.environ), cwd=str(tmp_path))
        pid = second.provisioner.forked_pid
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            if not await second.is_alive():
                break
            await asyncio.sleep(0.1)
        assert await second.provisioner.poll() == -signal.SIGKILL
        await second.shutdown_kernel(now=True)
        wait_until(lambda: gone(pid), timeout=10, what="the killed kernel reaped")

    run_in_own_loop(run)


def test_a_forked_kernel_starts_with_the_course_read_and_without_what_no_page_uses(tmp_path, monkeypatch, fresh_zygote):
    """What the zygote does once for every kernel: the catalog is read, the debugger and the script magics are
    not made, and the kernel's usual command line is taken as configuration without parsing it."""
    from companion.server import kernel_ipython_dir, write_kernel_profile

    root = make_course(tmp_path / "course")
    settings = load_settings(root)
    write_kernel_profile(settings)
    # As `companion serve` starts it: the zygote inherits the course's folder from the server's environment.
    monkeypatch.setenv("COMPANION_COURSE_DIR", str(root))
    monkeypatch.setenv("COMPANION_HOME", str(settings.home))
    monkeypatch.setenv("IPYTHONDIR", str(kernel_ipython_dir(settings)))
    config = use_forking({})

    async def run():
        from jupyter_client.manager import AsyncKernelManager
        from traitlets.config import Config, Configurable

        manager = AsyncKernelManager(parent=Configurable(config=Config(config)))
        await manager.start_kernel(env=dict(os.environ), cwd=str(root))
        assert type(manager.provisioner).__name__ == "ForkingProvisioner"
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=120)
            info = await client.kernel_info(reply=True)
            assert "debugger" not in info["content"]["supported_features"]
            out: list[str] = []
            code = textwrap.dedent("""\
                from companion.catalog import _read_cached
                from ipykernel.kernelapp import IPKernelApp
                app = IPKernelApp.instance()
                print(_read_cached.cache_info().currsize, get_ipython().find_cell_magic("bash") is None,
                      app.parent_handle, app.connection_file == {connection!r})
            """).format(connection=manager.connection_file)
            await client.execute_interactive(code, timeout=60, output_hook=lambda m: out.append(m["content"].get("text", "")))
            # Every session's notebook read before this kernel ran a line of a page.
            assert "".join(out).split() == [str(len(settings.sessions)), "True", "1", "True"]
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)

    run_in_own_loop(run)


def test_two_learners_pages_open_and_save_in_separate_forked_kernels(forking, chromium):
    store = forking.store()
    kernels = {}
    for learner in ("ana", "bea"):
        context = chromium.new_context(viewport={"width": 1100, "height": 900})
        try:
            page = context.new_page()
            page.set_default_timeout(180_000)
            ids = page_kernel(page)
            open_session(page, link(forking, learner))
            page.get_by_label(PROMPT).fill(f"{learner}'s own note")
            wait_until(lambda: saved_text(store, learner) == f"{learner}'s own note", timeout=120, what=f"{learner}'s autosave")
            assert ids, "the page connected to its kernel"
            kernels[learner] = ids[0]
            # Seen in ps, a forked kernel reads as the kernel it is, named by its connection file.
            command = " ".join(psutil.Process(forked(forking)[ids[0]]).cmdline())
            assert "-m ipykernel_launcher -f" in command and f"kernel-{ids[0]}.json" in command
            assert "ana's own note" not in page.content() if learner == "bea" else True, "nothing of ana's on bea's page"
        finally:
            context.close()
    assert saved_text(store, "ana") == "ana's own note" and saved_text(store, "bea") == "bea's own note"
    pids = forked(forking)
    assert kernels["ana"] != kernels["bea"] and pids[kernels["ana"]] != pids[kernels["bea"]]
    zygote_pid = zygote(forking).pid
    for learner, kernel in kernels.items():
        # Each page's kernel is its own process and session, forked by the zygote, not the server.
        assert pids[kernel] != zygote_pid
        # A kernel gives way to the process running when it wakes; the server answering requests does not.
        assert os.sched_getscheduler(pids[kernel]) == os.SCHED_BATCH
    assert os.sched_getscheduler(forking.process.pid) == os.SCHED_OTHER
    # Both notes went through the server's writing process (companion.store.writer), not each kernel on its own.
    assert writer_counts(forking)["saves"] >= 2


def test_the_pages_kernels_keep_no_command_history(forking):
    with urllib.request.urlopen(link(forking, "hal"), timeout=180) as response:
        assert response.status == 200  # the page's cells have run in its kernel
    home = load_settings(forking.root).home
    profile = home / "ipython" / "profile_default"
    assert "HistoryManager.enabled = False" in (profile / "ipython_kernel_config.py").read_text()
    # IPython made its folder where the server pointed it, and wrote no history there or in the user's home.
    assert (profile / "security").is_dir() and (profile / "startup").is_dir()
    databases = [*profile.glob("*.sqlite"), *(Path(forking.env["HOME"]) / ".ipython").rglob("*.sqlite")]
    assert databases == []


def test_a_killed_kernel_is_restarted_and_an_unused_one_culled_without_a_zombie(forking, page):
    page.set_default_timeout(180_000)
    ids = page_kernel(page)
    open_session(page, link(forking, "cleo"))
    wait_until(lambda: ids, what="the page's websocket")
    kernel = ids[0]
    first = forked(forking)[kernel]
    assert psutil.Process(first).ppid() == zygote(forking).pid
    os.kill(first, signal.SIGKILL)
    # The server's restarter notices (it polls the provisioner) and starts the kernel again, forked.
    second = wait_until(lambda: forked(forking).get(kernel) != first and forked(forking).get(kernel), timeout=60, what="the kernel restarted")
    assert psutil.Process(second).is_running()
    wait_until(lambda: gone(first), timeout=10, what="the killed kernel reaped")
    assert "restarting kernel" in forking.output().lower()

    # A page opened over plain HTTP and never connected: its kernel is culled after 10 s, and reaped.
    before = set(forked(forking).values())
    with urllib.request.urlopen(link(forking, "dan"), timeout=180) as response:
        html = response.read().decode()
    served = [k for k in set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", html)) if k in forked(forking)]
    assert len(served) == 1, "the page names its kernel, a forked one"
    pid = forked(forking)[served[0]]
    assert psutil.Process(pid).is_running()
    wait_until(lambda: set(forked(forking).values()) - before, timeout=60, what="the pool refilled by forking")
    wait_until(lambda: gone(pid), timeout=90, what="the unused page's kernel culled and reaped")


def test_the_zygote_dying_leaves_the_server_the_open_pages_and_new_pages_working(forking, page):
    page.set_default_timeout(180_000)  # others share the CPU: a page may take long to connect
    store = forking.store()
    open_session(page, link(forking, "eve"))
    box = page.get_by_label(PROMPT)
    box.fill("before the zygote died")
    wait_until(lambda: saved_text(store, "eve") == "before the zygote died", timeout=120, what="the first save")
    old = zygote(forking)
    old.kill()
    wait_until(lambda: not old.is_running() or old.status() == psutil.STATUS_ZOMBIE, timeout=10, what="the zygote gone")
    assert forking.process.poll() is None, "the server is still up"
    # The open page's kernel did not die with it.
    box.fill("after the zygote died")
    wait_until(lambda: saved_text(store, "eve") == "after the zygote died", timeout=120, what="a save after the zygote died")
    # New pages still open: from a new zygote (or, failing that, started the normal way).
    with urllib.request.urlopen(link(forking, "fay"), timeout=180) as response:
        assert response.status == 200 and b"companion" in response.read().lower()
    wait_until(lambda: "Kernel zygote" in forking.output().split("The kernel zygote stopped", 1)[-1], timeout=60, what="a new zygote")
    assert zygote(forking).pid != old.pid


def test_stopping_the_server_leaves_no_kernel_zygote_or_zombie(forking):
    server = psutil.Process(forking.process.pid)
    zygotes = [p.pid for p in server.children() if "zygote_main" in " ".join(p.cmdline())]
    kernels = set(forked(forking).values())
    saves = writer_process(forking)
    socket_folder = Path(saves.cmdline()[-2]).parent
    assert kernels and zygotes and socket_folder.is_dir()
    forking.stop()

    def described(pid):
        try:
            process = psutil.Process(pid)
            return f"{pid} {process.status()} (parent {process.ppid()} {psutil.Process(process.ppid()).name()})"
        except psutil.NoSuchProcess:
            return f"{pid} gone"

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(gone(pid) for pid in [*kernels, *zygotes, saves.pid]):
        time.sleep(0.2)
    alive = [described(pid) for pid in [*kernels, *zygotes, saves.pid] if not gone(pid)]
    assert not alive, f"left behind: {alive} (zygotes were {zygotes}, the writer {saves.pid})"
    assert not socket_folder.exists(), "the writing process's socket removed"
    # Kept-ready kernels wait inside a cell for their page's request; stopped, they end quietly, where each
    # used to answer on a closed socket. A kernel still starting as the server stops ends quietly too (its
    # heartbeat thread used to print a ZMQError).
    output = Path(forking.log.name).read_text(errors="replace")
    assert "is filled with" in output and "Kernel shutdown" in output
    for fault in ("Exception in message handler", "Socket operation on non-socket", "ZMQError", "Traceback"):
        assert fault not in output, output[output.index(fault) - 2000 :][:4000]


def test_kernels_start_the_normal_way_when_the_zygote_keeps_dying(tmp_path, monkeypatch, fresh_zygote):
    from companion import forking as module

    async def run():
        from jupyter_client.manager import AsyncKernelManager
        from traitlets.config import Config, Configurable

        monkeypatch.setattr(module.Zygote, "_deaths", [time.monotonic()] * module.DEATHS_ALLOWED)
        manager = AsyncKernelManager(parent=Configurable(config=Config(use_forking({}))))
        await manager.start_kernel(env=dict(os.environ), cwd=str(tmp_path))
        assert manager.provisioner.forked_pid is None and manager.provisioner.process is not None, "launched as a child"
        pid = manager.provisioner.process.pid
        assert psutil.Process(pid).ppid() == os.getpid()
        assert await manager.is_alive()
        await manager.shutdown_kernel(now=True)
        assert not await manager.is_alive()
        wait_until(lambda: gone(pid), timeout=10, what="the kernel reaped")

    run_in_own_loop(run)


def connection_file(folder: Path, sockets: Path) -> Path:
    """A kernel's connection file whose Unix sockets are to be made in ``sockets`` (ipc, as the server's kernels use)."""
    path = folder / "kernel-probe.json"
    ports = dict(shell_port=1, iopub_port=2, stdin_port=3, control_port=4, hb_port=5)
    path.write_text(json.dumps({**ports, "ip": str(sockets / "kernel-probe-ipc"), "transport": "ipc", "key": "k",
                                "signature_scheme": "hmac-sha256", "kernel_name": ""}))
    return path


def test_a_forked_kernel_that_cannot_make_its_sockets_says_why(tmp_path, capfd, fresh_zygote):
    connection = connection_file(tmp_path, tmp_path / "no-such-folder")

    async def run():
        from companion.forking import Zygote

        zygote = await Zygote.get(logging.getLogger("test"))
        try:
            pid = await zygote.fork(["-f", str(connection)], dict(os.environ), str(tmp_path))
            for _ in range(300):
                if pid in zygote.statuses:
                    break
                await asyncio.sleep(0.1)
            assert zygote.statuses.get(pid) == 1, "the kernel ended with an error"
        finally:
            zygote.stop()

    run_in_own_loop(run)
    assert "Traceback" in capfd.readouterr().err, "a kernel failing while its server runs reports why"


@pytest.mark.parametrize("server_stopped", [True, False])
def test_a_kernel_thread_failing_after_the_server_removed_its_connection_file_ends_it_quietly(tmp_path, server_stopped):
    # What a kernel forked as the server stops meets: its heartbeat thread cannot bind in the removed folder.
    connection = connection_file(tmp_path, tmp_path)
    code = textwrap.dedent(f"""
        import os, threading
        from companion.forking import _end_quietly_if_orphaned
        _end_quietly_if_orphaned({str(connection)!r})
        if {server_stopped}:
            os.remove({str(connection)!r})
        threading.Thread(target=lambda: 1 / 0, name="Heartbeat").start()
        threading.Event().wait(5)
        print("still running")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if server_stopped:
        assert (done.returncode, done.stdout, done.stderr) == (1, "", "")
    else:
        assert "ZeroDivisionError" in done.stderr and done.stdout == "still running\n" and done.returncode == 0


def test_a_server_stopped_while_its_kernels_start_ends_them_removes_their_folder_and_prints_no_traceback(tmp_path):
    """Stopped just as it answers, the server is still filling its pool: kernels are starting, making their
    sockets in the connection folder. Voila removed the folder before stopping them, and the removal could
    fail ("Directory not empty"); and its way of stopping every kernel stops short with a traceback at a
    kernel still starting ("Kernel does not exist")."""
    root = make_course(tmp_path / "course")
    for attempt in range(3):
        server = Server(root, mode="link", learner="nobody", home=tmp_path / f"home-{attempt}")
        wait_until(lambda: FORKED.search(server.output()), what="a kernel forked for the pool")
        server.stop()
        output = Path(server.log.name).read_text(errors="replace")
        assert server.process.returncode == 0, f"the server did not stop by itself (exit {server.process.returncode})"
        assert "Traceback" not in output, output[max(0, output.index("Traceback") - 2000) :][:4000]
        kernels = [int(pid) for _, pid in FORKED.findall(output)]
        wait_until(lambda: all(gone(pid) for pid in kernels), timeout=30, what="every kernel forked to end")
        folder = re.search(r"Storing connection files in (\S+)\.", output).group(1)
        assert not os.path.exists(folder), f"the connection folder {folder} was left behind: {os.listdir(folder)}"


def test_a_kernel_no_page_has_taken_ends_at_a_shutdown_without_answering_on_a_closed_socket(tmp_path):
    """A kept-ready kernel waits inside a cell for its page; the server stopping ends that wait as it shuts the
    kernel down. ipykernel's own shutdown stops the thread that carries replies; on a loaded machine the cell
    ended before the kernel exited, answered on the closed socket and printed a ZMQError traceback into the
    server's log (seen in CI). Here the kernel's exit is held up as a loaded machine would hold it."""
    from jupyter_client.manager import KernelManager

    log = tmp_path / "kernel.log"
    manager = KernelManager(kernel_name="python3")
    with log.open("w") as output:
        manager.start_kernel(stdout=output, stderr=output, cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive(textwrap.dedent("""
            import sys, threading, time
            from companion.identity import end_quietly_until_a_page_arrives
            end_quietly_until_a_page_arrives()
            replies = get_ipython().kernel.shell_channel_thread
            flush = sys.stdout.flush
            def held_up(replies=replies, flush=flush, time=time, threading=threading):
                if threading.current_thread().name == "Control":
                    deadline = time.monotonic() + 3
                    while replies.is_alive() and time.monotonic() < deadline:
                        time.sleep(0.01)
                    time.sleep(0.5)
                flush()
            sys.stdout.flush = held_up
        """), timeout=60)
        assert reply["content"]["status"] == "ok"
        # The kept-ready kernel's wait, ending as the server's side goes: here, when the reply thread stops.
        client.execute("stop = time.monotonic() + 30\nwhile replies.is_alive() and time.monotonic() < stop:\n    time.sleep(0.005)")
        time.sleep(0.5)  # the cell is running (it answers nothing until it ends)
        manager.shutdown_kernel(now=False)
    finally:
        client.stop_channels()
    assert not manager.is_alive()
    output = log.read_text(errors="replace")
    for fault in ("Traceback", "ZMQError", "Exception in message handler"):
        assert fault not in output, output
