"""The writing process: one process that writes the saves of every page on a server, several learners' in one transaction.

SQLite lets one writer in at a time. When each kernel takes the write lock
itself, every save pays for the handover (a process woken, then its page
cache read again, since another process changed the file) and for a commit of
its own; with dozens of kernels saving at once, the saves that wait behind
them take a tenth of a second. Here ``companion serve`` starts one writing
process (:func:`start`) for a SQLite file, and tells its kernels where it is
(``COMPANION_WRITER``). Each kernel's :meth:`Store.save` sends the save to it
over a Unix socket (:class:`Client`). The writer runs every save that arrived
while it wrote the last group in one transaction, each in a savepoint of its
own (so a save refused undoes nothing of the others'), commits, and only
then answers: a page hears "saved" once its text is in the database, as
before.

If the writer cannot be reached (not started, stopped, gone), the kernel saves
on its own, in turn with the other writers (``companion.store.turns``), and tries
the writer again a few seconds later: the writer makes saving faster, and is
never where a save waits for ever or is lost. A writer that dies between its
commit and its answer leaves that one save stored twice (the page saves it
again on its own), never missing.

Messages are JSON, each after its length (4 bytes, big-endian). A kernel's
first message names its database; a writer serving another answers so, and
that kernel saves on its own.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from typing import Any

from ..errors import StoreError, StoreUnavailable
from .schema import MAX_VALUE_BYTES, UNCHECKED, Response

_log = logging.getLogger("companion.store")
_HEADER = struct.Struct(">I")
MAX_MESSAGE = 2 * MAX_VALUE_BYTES + (64 << 10)  # a value the kernel accepted, the value it expects to replace, and the rest
RETRY_SECONDS = 5.0  # a kernel that could not reach the writer saves on its own this long before trying it again
ANSWER_SECONDS = 90.0  # longer than the writer itself waits for the write lock (database.BUSY_SECONDS)
START_SECONDS = 30.0
ENVIRONMENT = "COMPANION_WRITER"


def _frame(message: dict) -> bytes:
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _HEADER.pack(len(data)) + data


# A kernel's side -------------------------------------------------------------


class Client:
    """A kernel's link to the writer listening at ``path``, for the store at ``url``: one save at a time.

    >>> client = Client("/tmp/companion-writer-x/socket", "sqlite:////srv/companion/companion.db")
    >>> client.save(request_of("ana", "s1", "s1-why", "responded", "Because...", True, None, None, UNCHECKED))
    """

    def __init__(self, path: str, url: str):
        self.path, self.url = path, url
        self._socket: socket.socket | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._failed_at = -RETRY_SECONDS

    def usable(self) -> bool:
        """False for a while after the writer could not be reached, and for good if it serves another database."""
        return time.monotonic() - self._failed_at >= RETRY_SECONDS

    def save(self, request: dict) -> Response | None:
        """The writer's answer to one save (:func:`request_of`); None if it could not be reached: save on your own.

        Raises the StoreError the writer met saving it, in which case nothing was saved."""
        with self._lock:
            try:
                answer = self._ask(request)
            except (OSError, ValueError) as error:  # also socket.timeout, ConnectionError, a garbled answer
                self._drop()
                if self._failed_at == float("inf"):
                    return None  # it serves another database: said once, in _connect
                self._failed_at = time.monotonic()
                _log.warning("The writing process at %s could not be reached (%s); this kernel saves on its own for now.", self.path, error)
                return None
        if "error" in answer:
            raise (StoreUnavailable if answer.get("transient") else StoreError)(answer["error"])
        return Response(
            request["username"], request["session_id"], request["activity_id"],
            answer["value"] if answer.get("conflict") else request["value"],
            answer["done"], answer["shared"], datetime.fromisoformat(answer["at"]), conflict=bool(answer.get("conflict")),
        )

    def _ask(self, request: dict) -> dict:
        if self._socket is None or self._pid != os.getpid():  # a forked process opens its own
            self._connect()
        self._socket.sendall(_frame(request))
        return self._answer()

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(ANSWER_SECONDS)
        try:
            sock.connect(self.path)
            self._socket, self._pid = sock, os.getpid()
            self._socket.sendall(_frame({"hello": self.url}))
            answer = self._answer()
        except BaseException:
            sock.close()
            self._socket = None
            raise
        if "error" in answer:
            self._drop()
            self._failed_at = float("inf")
            _log.warning("The writing process at %s: %s; this kernel saves on its own.", self.path, answer["error"])
            raise ConnectionRefusedError(answer["error"])

    def _answer(self) -> dict:
        size = _HEADER.unpack(self._read(_HEADER.size))[0]
        return json.loads(self._read(size))

    def _read(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = self._socket.recv(min(left, 1 << 20))
            if not chunk:
                raise ConnectionError("the writing process closed the connection")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _drop(self) -> None:
        if self._socket is not None and self._pid == os.getpid():
            self._socket.close()
        self._socket = None


def counts(path: str, url: str) -> dict[str, int]:
    """How many saves the writer at ``path`` has answered, in how many transactions ("groups"): for the benchmark.

    >>> counts(os.environ["COMPANION_WRITER"], settings.db_url)
    {'saves': 22874, 'groups': 1041}"""
    client = Client(path, url)
    try:
        client._connect()
        client._socket.sendall(_frame({"count": True}))
        return client._answer()
    finally:
        client._drop()


def request_of(username, session_id, activity_id, verb, value, done, shared, rule, expected) -> dict:
    """:meth:`Store.save`'s arguments as the message sent to the writer (its rule as a dict, ``expected`` only if given)."""
    request = dict(username=username, session_id=session_id, activity_id=activity_id, verb=verb, value=value, done=done, shared=shared)
    if rule is not None:
        request["rule"] = dict(session_id=rule.session_id, required=list(rule.required), finishing=rule.finishing,
                               sessions=list(rule.sessions), version=rule.version)
    if expected is not UNCHECKED:
        request["expected"] = expected
    return request


def _save_of(message: dict) -> dict | None:
    """The keyword arguments of :meth:`Store.save` a message stands for; None if its rule is not one."""
    from ..progress import SessionRule

    rule = message.get("rule")
    if rule is not None:
        try:
            message["rule"] = SessionRule(rule["session_id"], tuple(rule["required"]), rule["finishing"], tuple(rule["sessions"]), rule["version"])
        except (KeyError, TypeError):
            return None
    return message


def _answer(outcome: Response | StoreError) -> dict[str, Any]:
    if isinstance(outcome, StoreError):
        return {"error": str(outcome), "transient": isinstance(outcome, StoreUnavailable)}
    answer = {"done": outcome.done, "shared": outcome.shared, "at": outcome.updated_at.isoformat()}
    if outcome.conflict:
        answer.update(conflict=True, value=outcome.value)
    return answer


# The writer's side -----------------------------------------------------------


class _Peer:
    """One kernel's connection: what it sent that is not read yet, what it is owed that is not sent yet."""

    __slots__ = ("sock", "inbox", "outbox", "greeted")

    def __init__(self, sock: socket.socket):
        self.sock, self.inbox, self.outbox, self.greeted = sock, bytearray(), bytearray(), False


def serve(store, path: str, stop: threading.Event | None = None, watch: int | None = None) -> None:
    """Answer the saves sent to the Unix socket at ``path``, each group in one transaction, until ``stop`` is set
    or the file descriptor ``watch`` (the server's end of a pipe) closes."""
    from .database import REFUSED, UNAVAILABLE  # (database imports this module)

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)  # the server's user only: its kernels
    listener.listen(1024)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listener")
    if watch is not None:
        selector.register(watch, selectors.EVENT_READ, "watch")
    waiting: list[tuple[_Peer, dict]] = []
    counted = {"saves": 0, "groups": 0}  # answered since it started (:func:`counts`)

    def close(peer: _Peer) -> None:
        if peer.sock.fileno() != -1:
            selector.unregister(peer.sock)
            peer.sock.close()

    def owe(peer: _Peer, answer: dict) -> None:
        peer.outbox += _frame(answer)
        send(peer)

    def receive(peer: _Peer) -> None:
        try:
            data = peer.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            close(peer)
            return
        peer.inbox += data
        while len(peer.inbox) >= _HEADER.size:
            size = _HEADER.unpack_from(peer.inbox)[0]
            if size > MAX_MESSAGE or len(peer.inbox) >= _HEADER.size + size:
                try:
                    message = json.loads(bytes(peer.inbox[_HEADER.size:_HEADER.size + size])) if size <= MAX_MESSAGE else None
                except ValueError:
                    message = None
                if not isinstance(message, dict):
                    _log.warning("The writing process closed a connection that sent something other than a save.")
                    close(peer)
                    return
                del peer.inbox[:_HEADER.size + size]
                if not peer.greeted:
                    peer.greeted = message.get("hello") == store.url
                    owe(peer, {"ok": True} if peer.greeted else {"error": "it writes to another database"})
                elif message.get("count"):
                    owe(peer, dict(counted))
                else:
                    waiting.append((peer, message))
            else:
                break

    def send(peer: _Peer) -> None:
        if peer.sock.fileno() == -1:
            return
        try:
            sent = peer.sock.send(peer.outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            close(peer)
            return
        del peer.outbox[:sent]
        selector.modify(peer.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if peer.outbox else 0), peer)

    ending = False
    try:
        while not ending and not (stop is not None and stop.is_set()):
            for key, mask in selector.select(timeout=0.5):
                if key.data == "watch":
                    ending = True  # the server has gone: write what has come, then end
                    continue
                if key.data == "listener":
                    try:
                        sock, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    sock.setblocking(False)
                    selector.register(sock, selectors.EVENT_READ, _Peer(sock))
                    continue
                if mask & selectors.EVENT_READ:
                    receive(key.data)
                if mask & selectors.EVENT_WRITE:
                    send(key.data)
            if waiting:
                group = waiting[:]
                waiting.clear()
                saves = [_save_of(message) for _, message in group]
                valid = [one for one in saves if one is not None]
                try:
                    written = store.save_together(valid)
                except Exception as error:  # nothing of the group was saved: its pages try again, as after a lost connection
                    _log.error("The writing process could not write a group of saves: %s", error, exc_info=True)
                    written = [StoreUnavailable(UNAVAILABLE)] * len(valid)
                written = iter(written)
                outcomes = [next(written) if one is not None else StoreError(REFUSED) for one in saves]
                counted["saves"] += len(group)
                counted["groups"] += 1
                for (peer, _), outcome in zip(group, outcomes):
                    owe(peer, _answer(outcome))
    finally:
        selector.close()
        listener.close()
        if os.path.exists(path):
            os.unlink(path)


class Writer:
    """A writing process the server keeps running (:func:`start`): started again at the same socket if it ends
    on its own, as kernels saving on their own try it again every few seconds."""

    RESTARTS = 5  # at most this many in a minute; then the kernels save on their own until the server restarts

    def __init__(self, url: str, folder: str):
        self.url, self.folder = url, folder
        self.path = os.path.join(folder, "socket")
        self.process: subprocess.Popen | None = None
        self._pipe: int | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._restarts: list[float] = []

    def _launch(self) -> bool:
        """Start the process and wait until it listens; False if it could not."""
        if os.path.exists(self.path):
            os.unlink(self.path)  # left by a writer that was killed
        ours, theirs = os.pipe()
        environment = {key: value for key, value in os.environ.items() if key != ENVIRONMENT}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from companion.store.writer import main; main(sys.argv[1:])", self.url, self.path, str(ours)],
            pass_fds=[ours], stdin=subprocess.DEVNULL, start_new_session=True, env=environment,
        )
        os.close(ours)
        self._pipe = theirs
        deadline = time.monotonic() + START_SECONDS
        while not os.path.exists(self.path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _keep(self) -> None:
        """Start the process again whenever it ends while the server runs."""
        while True:
            process = self.process
            process.wait()
            with self._lock:
                if self._stopping.is_set():
                    return
                os.close(self._pipe)
                self._pipe = None
                now = time.monotonic()
                self._restarts = [t for t in self._restarts if now - t < 60] + [now]
                if len(self._restarts) > self.RESTARTS:
                    _log.error("The writing process ended %d times in a minute (last: %s); each kernel saves on its own "
                               "until the server is restarted.", len(self._restarts), process.returncode)
                    return
                _log.warning("The writing process ended (%s); starting it again.", process.returncode)
                if not self._launch():
                    _log.error("The writing process could not be started again; each kernel saves on its own.")
                    return

    def stop(self, timeout: float = 10.0) -> None:
        """Let it finish the group it is writing, then end; its socket's folder is removed."""
        with self._lock:
            self._stopping.set()
            if self._pipe is not None:
                os.close(self._pipe)  # it sees the pipe close, as when the server dies
                self._pipe = None
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start(url: str) -> Writer | None:
    """Start a writing process for the SQLite file at ``url``, and return once it listens; None for another
    database, or if it could not start (the kernels then save on their own).

    >>> writer = start("sqlite:////srv/companion/companion.db")
    >>> os.environ[ENVIRONMENT] = writer.path   # before the kernels start
    """
    from .database import sqlite_file  # (database imports this module)

    if sqlite_file(url) is None:
        return None  # PostgreSQL has no single write lock to queue for; an in-memory store is one process's
    # A folder of its own, short: a socket's path has room for about 100 characters.
    writer = Writer(url, tempfile.mkdtemp(prefix="companion-writer-"))
    if not writer._launch():
        _log.warning("The writing process did not start; each kernel saves on its own.")
        writer.stop(timeout=1)
        return None
    threading.Thread(target=writer._keep, name="companion-writer", daemon=True).start()
    return writer


def main(argv: list[str]) -> None:
    """The writing process, given its store's URL, its socket's path and the pipe ``FD`` from the server:
    serve until that pipe closes or a SIGTERM comes."""
    from . import open_store

    url, path, watch = argv[0], argv[1], int(argv[2])
    logging.basicConfig(level=logging.WARNING, format="[companion writer] %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # finish the group being written, then end
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C: the server closes the pipe as it ends
    serve(open_store(url), path, stop, watch)

