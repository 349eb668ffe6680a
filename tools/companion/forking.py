"""Kernels started by forking a warm process: a page's kernel costs a fork, not a Python start.

The default on Linux (``[server] kernel_start = "fork"``; ``"process"`` turns it
off; :func:`use_forking` turns a Voila configuration over to it). Starting a kernel the usual way runs a new Python
that imports ipykernel, ipywidgets, SQLAlchemy and the companion, about a CPU
second per page, and each kernel holds its own copy of all that code. Here the
server starts one *zygote* (``python -c 'companion.forking.zygote_main()'``)
that imports them once, freezes its objects out of the garbage collector
(``gc.freeze()``, so the copy-on-write pages stay shared) and then only forks.
:class:`ForkingProvisioner` is a ``jupyter_client`` kernel provisioner (entry
point ``companion-fork``) that asks the zygote for each kernel. Each child makes
itself a session leader, takes the environment, working directory and command
line the kernel manager gave (``COMPANION_*``, ``VOILA_*``...), and runs
``IPKernelApp`` with the connection file, exactly as ``python -m
ipykernel_launcher`` would.

The kernel is the zygote's child, not the server's: the zygote reaps it and
reports its exit status over its socket, and the provisioner also watches it
through a pidfd (which survives the zygote). The kernel stops when the server
process does (a watch on the server's pidfd replaces ipykernel's parent poll).
If the zygote dies it is started again; if it keeps dying, or cannot start,
kernels are launched the normal way, with a warning in the log.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import OrderedDict
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from setproctitle import setproctitle
from traitlets.config import Config

PROVISIONER_NAME = "companion-fork"
# What the zygote imports before it forks: a kernel's own modules and the pages' (activities, store).
PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.comm",
    "ipykernel.debugger",
    "IPython",
    "IPython.core.completer",
    "jupyter_client.session",
    "zmq",
    "tornado.ioloop",
    "comm",
    "ipywidgets",
    "sqlalchemy",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite.pysqlite",  # imported by the first create_engine of a SQLite store, else in every kernel
    "voila.utils",
    "companion.activities",
    "companion.landing",
    "companion.store",
    "IPython.core.completerlib",
    "tornado.platform.asyncio",
    "psutil",
    "faulthandler",
    "pwd",
    "ipykernel_launcher",
)
READY_SECONDS = 120  # how long the server waits for a new zygote's imports
LAUNCH_SECONDS = 30  # and for one fork
DEATHS_ALLOWED = 3  # zygotes that may die within DEATHS_WINDOW before kernels are launched the normal way
DEATHS_WINDOW = 300
STATUSES_KEPT = 10_000


def use_forking(config: dict) -> dict:
    """``config`` (Voila's traitlets configuration as a dict) with kernels started by :class:`ForkingProvisioner`."""
    config = dict(config)
    config["KernelProvisionerFactory"] = {**config.get("KernelProvisionerFactory", {}), "default_provisioner_name": PROVISIONER_NAME}
    return config


# The zygote (its own process) --------------------------------------------------------------------


def _send(sock: socket.socket, message: dict) -> None:
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
    except OSError:  # the server is gone
        os._exit(0)


def zygote_main() -> None:
    """The zygote: ``python -c '...zygote_main()' <socket fd> <server pid>``. Imports, then forks on request."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    server_pid = int(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when kernels stop, not a terminal's ^C
    # Nor a SIGTERM to the server's whole process group (systemd's stop, a terminal's kill): the zygote ends
    # when the server closes its end, and until then forks the kernels the server is still starting, which
    # would otherwise be started the slow way, as the server stops.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server_fd = -1
    try:
        server_fd = os.pidfd_open(server_pid)
    except (AttributeError, OSError):
        pass
    if os.getppid() != server_pid:  # the server is gone already
        os._exit(1)
    schedule_as_kernel()  # and so every kernel forked from here
    gc.disable()
    failed = []
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception as error:  # noqa: BLE001 - a missing optional module costs only its import later
            failed.append(f"{name}: {error}")
    _read_course()
    _without_debugger()
    gc.collect()
    gc.freeze()
    if threading.active_count() != 1:
        _send(sock, {"error": f"threads running after the imports: {[t.name for t in threading.enumerate()]}"})
        os._exit(1)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _send(sock, {"ready": os.getpid(), "failed": failed})
    buffer = b""
    while True:
        try:
            readable, _, _ = select.select([sock, wake_read], [], [])
        except InterruptedError:
            continue
        if wake_read in readable:
            os.read(wake_read, 512)
        _reap(sock)
        if sock in readable:
            try:
                data = sock.recv(1 << 20)
            except OSError:
                data = b""
            if not data:  # the server closed its end: it stopped
                os._exit(0)
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                try:
                    pid = os.fork()
                except OSError as error:
                    _send(sock, {"id": request["id"], "error": str(error)})
                    continue
                if pid == 0:
                    _child(request, sock, (wake_read, wake_write), server_pid, server_fd)  # never returns
                _send(sock, {"id": request["id"], "pid": pid})


def schedule_as_kernel() -> None:
    """Run this process under Linux's ``SCHED_BATCH`` policy, as every forked kernel runs (the zygote's, inherited).

    A batch process that wakes up (a kernel whose save's turn has come, or
    whose page sent a message) waits for the running process's time slice to
    end rather than interrupting it. With dozens of kernels saving at once, the
    one writing holds the store's write lock for less time: 64 processes saving
    as fast as they can went from 1,767-2,144 saves a second to 2,348-2,417, in
    alternate runs on 2 cores. Its share of the processor is the same, and the
    server, not a batch process, still answers a browser's request at once. Where the
    policy does not exist (not Linux), nothing changes.

    The store benchmark's writers call it too, as the kernels they stand for do."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def _reap(sock: socket.socket) -> None:
    """Collect every kernel that ended and tell the server how."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def _read_course() -> None:
    """Read the course's notebooks once here, so every kernel forked finds its catalog read.

    Each page's first cell loads the catalog, which parses the six session
    notebooks (about 30 ms of a kernel's CPU); the reading is kept by notebook,
    file and modification time (:func:`companion.catalog.load_catalog`), so a
    kernel forked after a notebook changed reads that notebook again. A course
    that cannot be read is left for each page to report, as without a zygote."""
    if not os.environ.get("COMPANION_COURSE_DIR"):
        return
    try:
        from companion.catalog import load_catalog
        from companion.settings import load_settings

        load_catalog(load_settings())
    except Exception:  # noqa: BLE001 - the page says what is wrong with the course
        pass


def _without_debugger() -> None:
    """Kernels forked from here start without ipykernel's debugger, which no page uses.

    Making it lists the file of every module loaded (about 15 ms of each
    kernel's start, some modules answering ``hasattr`` slowly); without it the
    kernel's ``kernel_info`` lists no ``debugger`` among its supported features,
    as a kernel without debugpy does."""
    try:
        import ipykernel.debugger

        ipykernel.debugger._is_debugpy_available = False
    except ImportError:
        pass


def _kernel_set_up() -> None:
    """What the preloaded modules do when first imported inside a kernel, done now that this process is one.

    The zygote imported them where there was no kernel, so their own set-up found
    nothing to do: ipywidgets registers its comm targets (without them a page's
    widget manager falls back to asking for each widget's state one by one), and
    the companion keeps errors off the page (:func:`keep_errors_off_the_page`).
    And from its first cell on, until a page has it, a shutdown ends the kernel
    at once (:func:`~companion.identity.end_quietly_until_a_page_arrives`)."""
    import ipywidgets

    from companion.activities.workbook import keep_errors_off_the_page
    from companion.identity import end_quietly_until_a_page_arrives

    ipywidgets.register_comm_target()
    keep_errors_off_the_page()
    end_quietly_until_a_page_arrives()


def _child(request: dict, sock: socket.socket, pipes: tuple[int, int], server_pid: int, server_fd: int) -> None:
    """In the forked child: become the kernel the request describes, then exit."""
    code = 1
    connection_file = _connection_file(request["args"])
    try:
        # Seen from outside (ps, /proc/<pid>/cmdline) the child would read as the zygote; it is the kernel.
        # (Before the environment is replaced: setproctitle finds the room it needs beside it.)
        setproctitle(" ".join([sys.executable, "-m", "ipykernel_launcher", *request["args"]]))
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sock.close()
        for fd in pipes:
            os.close(fd)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        env = dict(request["env"])
        # ipykernel's parent poll would watch the zygote; _watch_server watches the server instead.
        env.pop("JPY_PARENT_PID", None)
        os.environ.clear()
        os.environ.update(env)
        cwd = request.get("cwd") or os.getcwd()
        os.chdir(cwd)
        sys.path[0] = cwd  # as for ``python -m ipykernel_launcher`` started in cwd
        gc.enable()
        _watch_server(server_pid, server_fd)
        _end_quietly_if_orphaned(connection_file)
        import ipykernel_launcher
        from ipykernel.kernelapp import IPKernelApp

        # parent_handle 1: no parent poll, and no console banner (its default was read in the zygote's environment).
        args = [*request["args"], "--IPKernelApp.parent_handle=1"]
        sys.argv = [ipykernel_launcher.__file__, *args]
        app = IPKernelApp.instance()  # what IPKernelApp.launch_instance does, with _kernel_set_up between
        app.init_connection_file = _unless_orphaned(app.init_connection_file, connection_file)
        if request["args"] == ["-f", connection_file]:
            # The usual command line, given as the configuration it means: parsing it builds an argument
            # parser for every option of every class of IPython's (a tenth of the kernel's own start).
            app.update_config(Config({"IPKernelApp": {"connection_file": connection_file, "parent_handle": 1}}))
            app.parse_command_line = lambda argv=None: None
            args = []
        app.initialize(args)
        _kernel_set_up()
        app.start()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except KeyboardInterrupt:  # interrupted before ipykernel took SIGINT over: jupyter_client interrupts a kernel it stops
        code = 1
    except BaseException:  # noqa: BLE001 - the child must never return into the zygote's loop
        if not _orphaned(connection_file):
            traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _connection_file(args: list[str]) -> str | None:
    """The connection file in a kernel's command line (``-f <file>``, as jupyter_client gives it)."""
    for flag, value in zip(args, args[1:]):
        if flag == "-f":
            return value
    return None


def _orphaned(connection_file: str | None) -> bool:
    """Whether the server stopped as this kernel started: it removed the kernel's connection file, and with it
    the folder of the kernel's sockets, so the kernel cannot bind them and no page will ever connect."""
    return connection_file is not None and not os.path.exists(connection_file)


def _end_quietly_if_orphaned(connection_file: str | None) -> None:
    """A kernel's thread that fails once the server has removed its connection file ends the kernel, with no traceback.

    A kernel forked as the server stops finds the folder of its sockets gone:
    its heartbeat thread cannot bind and would print a ZMQError traceback into
    the server's log, about a kernel no page ever had. Any other failure is
    reported as before."""
    report = threading.excepthook

    def hook(args) -> None:
        if _orphaned(connection_file):
            os._exit(1)
        report(args)

    threading.excepthook = hook


def _unless_orphaned(init_connection_file, connection_file: str | None):
    """ipykernel's ``init_connection_file``, ending the kernel quietly instead if the server has removed the file:
    finding no file, ipykernel would make its folder again, and sockets of its own choosing that no page knows."""

    def init() -> None:
        if _orphaned(connection_file):
            raise SystemExit(1)
        init_connection_file()

    return init


def _watch_server(server_pid: int, server_fd: int) -> None:
    """Stop this kernel when the server process ends (what ipykernel's parent poll does for a direct child)."""

    def watch():
        if server_fd >= 0:
            select.select([server_fd], [], [])
        else:
            while True:
                try:
                    os.kill(server_pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
                time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="companion-server-watch", daemon=True).start()


# The server's side -------------------------------------------------------------------------------


class ZygoteUnavailable(RuntimeError):
    """No zygote can fork a kernel now: launch it the normal way."""


class Zygote:
    """The server's handle on its zygote: starts it, asks it for kernels, records how they ended."""

    _current: Zygote | None = None
    _deaths: list[float] = []

    def __init__(self, log):
        self.log = log
        self.loop = asyncio.get_running_loop()
        self.statuses: OrderedDict[int, int] = OrderedDict()
        self.pending: dict[int, asyncio.Future] = {}
        self.next_id = 0
        self.alive = False
        self.writer: asyncio.StreamWriter | None = None
        self.ready: asyncio.Future = self.loop.create_future()
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from companion.forking import zygote_main; zygote_main()", str(theirs.fileno()), str(os.getpid())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        theirs.close()
        self.sock = ours
        self.reader_task = self.loop.create_task(self._read())

    @classmethod
    async def get(cls, log) -> Zygote:
        """The running zygote, started (or started again) if need be."""
        loop = asyncio.get_running_loop()
        while True:
            zygote = cls._current
            if zygote is not None and zygote.loop is loop and (zygote.alive or not zygote.ready.done()):
                await asyncio.wait_for(asyncio.shield(zygote.ready), READY_SECONDS)
                if zygote.alive:
                    return zygote
                if cls._current is not zygote:
                    continue  # another launch started the next one: wait for that
            if zygote is not None and zygote.loop is not loop:
                zygote.stop()  # another event loop's (a server has one; tests may run several)
            now = time.monotonic()
            cls._deaths = [t for t in cls._deaths if now - t < DEATHS_WINDOW]
            if len(cls._deaths) >= DEATHS_ALLOWED:
                raise ZygoteUnavailable(f"the kernel zygote stopped {len(cls._deaths)} times in {DEATHS_WINDOW} s")
            cls._current = zygote = cls(log)
            await asyncio.wait_for(asyncio.shield(zygote.ready), READY_SECONDS)
            if not zygote.alive:
                raise ZygoteUnavailable("the kernel zygote did not start")
            return zygote

    async def _read(self) -> None:
        try:
            reader, self.writer = await asyncio.open_unix_connection(sock=self.sock, limit=1 << 20)
            while True:
                line = await reader.readline()
                if not line:
                    break
                message = json.loads(line)
                if "exited" in message:
                    self.statuses[message["exited"]] = message["status"]
                    while len(self.statuses) > STATUSES_KEPT:
                        self.statuses.popitem(last=False)
                elif "ready" in message:
                    self.alive = True
                    self.log.info("Kernel zygote %d ready%s.", message["ready"], f" (not imported: {message['failed']})" if message["failed"] else "")
                    self.ready.set_result(True)
                elif "error" in message and "id" not in message:
                    self.log.error("The kernel zygote could not start: %s", message["error"])
                elif message.get("id") in self.pending:
                    future = self.pending.pop(message["id"])
                    if not future.done():
                        if "pid" in message:
                            self.statuses.pop(message["pid"], None)  # an old kernel's status under a reused pid
                            future.set_result(message["pid"])
                        else:
                            future.set_exception(ZygoteUnavailable(message.get("error", "fork failed")))
        except Exception:  # noqa: BLE001
            self.log.exception("Lost the kernel zygote's messages")
        finally:
            await self._lost()

    async def _lost(self) -> None:
        was_alive = self.alive
        self.alive = False
        if self.writer is not None:
            self.writer.close()
        else:
            self.sock.close()
        if not self.ready.done():
            self.ready.set_result(False)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ZygoteUnavailable("the kernel zygote stopped"))
        self.pending.clear()
        for _ in range(50):  # reap it (it closes its socket only when it exits)
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        else:
            self.process.kill()
            self.process.wait()
        Zygote._deaths.append(time.monotonic())
        if was_alive:
            self.log.warning("The kernel zygote stopped (exit %s); its kernels keep running, and it will be started again.", self.process.returncode)

    async def fork(self, args: list[str], env: dict, cwd: str | None) -> int:
        """A new kernel process running ``ipykernel_launcher args`` in ``env`` and ``cwd``: its pid."""
        self.next_id += 1
        future = self.loop.create_future()
        self.pending[self.next_id] = future
        try:
            self.writer.write(json.dumps({"id": self.next_id, "args": args, "env": env, "cwd": cwd}).encode() + b"\n")
            await self.writer.drain()
        except (OSError, AttributeError) as error:
            self.pending.pop(self.next_id, None)
            raise ZygoteUnavailable(f"the kernel zygote does not answer: {error}") from error
        return await asyncio.wait_for(future, LAUNCH_SECONDS)

    def stop(self) -> None:
        """Stop the zygote (its kernels keep running)."""
        if self.process.poll() is None:
            self.process.terminate()


def _launcher_args(cmd: list[str]) -> list[str] | None:
    """The arguments after ``python -m ipykernel_launcher`` in ``cmd`` when it runs this Python; else None."""
    if len(cmd) >= 3 and cmd[1] == "-m" and cmd[2] in ("ipykernel_launcher", "ipykernel"):
        if os.path.realpath(cmd[0]) == os.path.realpath(sys.executable) or cmd[0] in ("python", "python3"):
            return list(cmd[3:])
    return None


class ForkingProvisioner(LocalProvisioner):
    """Jupyter's local provisioner, but an ipykernel of this Python is forked from the zygote.

    Anything else (another kernel, another interpreter), or no zygote, is launched as
    :class:`LocalProvisioner` launches it."""

    forked_pid: int | None = None
    pidfd: int = -1
    exit_status: int | None = None
    zygote: Zygote | None = None

    @property
    def has_process(self) -> bool:
        return self.forked_pid is not None or super().has_process

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        self._forget()
        args = _launcher_args(cmd)
        if args is not None:
            try:
                zygote = await Zygote.get(self.log)
                pid = await zygote.fork(args, dict(kwargs.get("env") or os.environ), kwargs.get("cwd"))
            except (ZygoteUnavailable, asyncio.TimeoutError, OSError) as error:
                self.log.warning("Starting kernel %s the normal way: %s", self.kernel_id, error or type(error).__name__)
            else:
                self.zygote, self.forked_pid, self.pid, self.pgid, self.exit_status = zygote, pid, pid, pid, None
                self.cwd = kwargs.get("cwd") or os.getcwd()
                try:
                    self.pidfd = os.pidfd_open(pid)
                except (AttributeError, OSError):
                    self.pidfd = -1  # it ended already (or no pidfd here): the zygote's report and kill(pid, 0) tell
                self.log.info("Kernel %s forked as process %d.", self.kernel_id, pid)
                return self.connection_info
        return await super().launch_kernel(cmd, **kwargs)

    async def poll(self) -> int | None:
        if self.forked_pid is None:
            return await super().poll()
        if self.exit_status is not None:
            return self.exit_status
        statuses = self.zygote.statuses if self.zygote else {}
        status = statuses.pop(self.forked_pid, None)
        if status is None and self._ended():
            for _ in range(10):  # the zygote's report follows the exit by a moment
                if status is not None or not (self.zygote and self.zygote.alive):
                    break
                await asyncio.sleep(0.02)
                status = statuses.pop(self.forked_pid, None)
            if status is None:
                status = 1  # it ended, but no one reported how (its zygote is gone)
        if status is not None:
            self.exit_status = status
        return status

    def _ended(self) -> bool:
        if self.pidfd >= 0:
            return bool(select.select([self.pidfd], [], [], 0)[0])
        try:
            os.kill(self.forked_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        try:
            with open(f"/proc/{self.forked_pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except OSError:
            return True

    async def wait(self) -> int | None:
        if self.forked_pid is None:
            return await super().wait()
        while (status := await self.poll()) is None:
            await asyncio.sleep(0.05)
        self._forget()
        return status

    def _forget(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        self.forked_pid = None

    async def send_signal(self, signum: int) -> None:
        if self.forked_pid is None:
            return await super().send_signal(signum)
        if await self.poll() is not None:
            return  # as Popen.send_signal does for a process that ended
        try:
            os.killpg(self.pgid, signum)
            return
        except OSError:
            pass
        if self.pidfd >= 0:
            signal.pidfd_send_signal(self.pidfd, signum)
        else:
            os.kill(self.forked_pid, signum)

    async def kill(self, restart: bool = False) -> None:
        if self.forked_pid is None:
            return await super().kill(restart)
        try:
            await self.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass

    async def terminate(self, restart: bool = False) -> None:
        if self.forked_pid is None:
            return await super().terminate(restart)
        try:
            await self.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    async def cleanup(self, restart: bool = False) -> None:
        if self.forked_pid is not None and await self.poll() is not None:
            self._forget()
        await super().cleanup(restart)

    async def get_provisioner_info(self) -> dict:
        info = await super().get_provisioner_info()
        info["forked"] = self.forked_pid is not None
        return info
