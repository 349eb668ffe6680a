"""The server's kernels: whose page each one serves, and when one stops.

One kernel runs each open page. :class:`CompanionKernelManager` is the
kernel manager ``companion serve`` gives Voila (``VoilaConfiguration.
multi_kernel_manager_class``; Voila adds its preheated pools on top). To
Jupyter's own manager it adds:

- **Owners.** The page handler records which learner each kernel serves
  (:meth:`~CompanionKernelManager.record_owner`), so the server can count a
  learner's open pages (``[server] pages_per_learner`` in course.toml).
- **Two idle limits.** Jupyter's culler stops a kernel with no page connected
  once it has been idle for ``cull_idle_timeout`` (``closed_page_seconds``: a
  closed tab's kernel goes within a minute or two). A kernel whose page is
  still open but untouched for ``pause_idle_seconds`` is *paused*: stopped, and
  remembered as paused, so the page (companion.js asks ``/companion/paused/<id>``)
  can tell the learner so and offer to resume with one click. What the learner
  wrote is in the store, and anything unconfirmed in their browser.
- **Refills when the server is free.** Voila replaces a pool's ready kernel
  the moment a page takes it. When a cohort arrives together at a session that
  keeps many kernels ready, those replacements start while the cohort's pages
  are being made, and every learner waits longer. Here a kernel taken while
  another is still ready is not replaced at once; the pool is topped up once no
  page has been in the making for ``refill_quiet_seconds``
  (:meth:`~CompanionKernelManager.taking`, :meth:`~CompanionKernelManager.page_made`).
- **A lighter watch on activity.** Jupyter's manager reads every message a
  kernel publishes to keep its last activity and execution state (which the
  culling and the pause go by); here only what that takes is read of each
  (:func:`activity_of`).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import OrderedDict
from datetime import timedelta
from functools import partial

from jupyter_client.session import Session
from jupyter_server._tz import utcnow
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyter_server.utils import ensure_async
from traitlets import Float, Integer

# How many paused kernel ids are remembered (oldest forgotten first): a page asks within seconds.
PAUSED_REMEMBERED = 10_000
# A page's kernel with no browser connected is being loaded for this long after it was handed out;
# after that, it is a closed page (a reloaded or closed tab).
LOADING_SECONDS = 30
# A pool whose refill waits for a quiet server is topped up after this long even if the server never is.
LONGEST_REFILL_WAIT = 60


class CompanionKernelManager(AsyncMappingKernelManager):
    """Jupyter's kernel manager, with owners and a pause for open pages left idle."""

    pause_idle_seconds = Integer(
        1800, config=True, help="Stop the kernel of a page left open but untouched for this long (0: never)."
    )

    refill_quiet_seconds = Float(
        2.0, config=True,
        help="Top up a pool of ready kernels once no page has been in the making for this long; "
        "until then a kernel taken while another is ready is not replaced (0: replace each at once).",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._owners: dict[str, tuple[str, float]] = {}  # kernel id -> (username, when handed out)
        self._paused: OrderedDict[str, float] = OrderedDict()
        self._pool_targets: dict[str, int] = {}  # notebook -> its configured pool size, while a refill waits
        self._making = 0  # pages being made right now
        self._last_page = 0.0  # when a page was last taken or made (monotonic)
        self._stopping: set[asyncio.Future] = set()  # closed pages' kernels being stopped (kept from the collector)

    # Owners -----------------------------------------------------------------

    def record_owner(self, kernel_id: str, username: str) -> None:
        """``kernel_id`` serves a page of ``username``."""
        if kernel_id in self._kernels:
            self._owners[kernel_id] = (username, time.monotonic())

    def _closed(self, kernel_id: str, handed_out: float) -> bool:
        """No page connected, none loading: handed out, and quiet, more than LOADING_SECONDS ago."""
        if self._kernel_connections.get(kernel_id, 0) or time.monotonic() - handed_out <= LOADING_SECONDS:
            return False
        last = getattr(self._kernels.get(kernel_id), "last_activity", None)
        return last is None or utcnow() - last > timedelta(seconds=LOADING_SECONDS)

    def pages_of(self, username: str) -> int:
        """How many pages ``username`` has open or opening (a closed tab's kernel, soon stopped, is not counted)."""
        return sum(
            1 for kernel_id, (owner, since) in self._owners.items()
            if owner == username and kernel_id in self._kernels and not self._closed(kernel_id, since)
        )

    def pages_open(self) -> int:
        """Kernels serving someone's page (the preheated ones waiting in a pool are not counted)."""
        return sum(1 for kernel_id in self._owners if kernel_id in self._kernels)

    def stop_closed_pages(self, username: str) -> None:
        """Start stopping the kernels of ``username``'s closed pages now, rather than at the next cull: a
        learner who reloads a page does not hold two kernels for minutes.

        The page being opened does not wait for them: a kernel takes a few tenths of
        a second to stop, which a learner coming back to a session used to wait
        before the server began to make their page."""
        for kernel_id, (owner, since) in list(self._owners.items()):
            if owner == username and kernel_id in self._kernels and self._closed(kernel_id, since):
                del self._owners[kernel_id]  # not stopped twice by two requests close together
                stopping = asyncio.ensure_future(ensure_async(self.shutdown_kernel(kernel_id)))
                self._stopping.add(stopping)
                stopping.add_done_callback(partial(self._stopped, kernel_id))

    def _stopped(self, kernel_id: str, stopping: asyncio.Future) -> None:
        self._stopping.discard(stopping)
        if not stopping.cancelled() and stopping.exception() is not None:
            self.log.warning("Could not stop the kernel %s of a closed page (%s); the culler will stop it.", kernel_id, stopping.exception())

    # Refills ----------------------------------------------------------------

    def taking(self, notebook: str) -> None:
        """A page is about to take one of ``notebook``'s ready kernels: replace it now only if it is the last one ready.

        Voila refills a pool up to its configured size right after a page takes a
        kernel; while another kernel is ready, the size is lowered to what is left,
        so nothing starts. :meth:`_top_up` puts it back when the server is free."""
        pool = getattr(self, "_pools", {}).get(notebook)  # Voila's preheated pools
        self._last_page = time.monotonic()
        if not pool or self.refill_quiet_seconds <= 0:
            return
        ready = sum(1 for item in pool if item.done() and not item.cancelled() and item.exception() is None)
        configured = self.kernel_pools_config
        entry = configured.setdefault(notebook, dict(configured.get("default", {})))
        if not self._pool_targets:  # the first refill put off since the last top-up: its latest time
            asyncio.get_running_loop().call_later(LONGEST_REFILL_WAIT, self._top_up, True)
        self._pool_targets.setdefault(notebook, entry.get("pool_size", 1))
        entry["pool_size"] = len(pool) - 1 if ready > 1 else len(pool)

    def page_making(self) -> None:
        """A page request has begun (the page handler calls this, and :meth:`page_made` when it is sent)."""
        self._making += 1

    def page_made(self) -> None:
        self._making -= 1
        self._last_page = time.monotonic()
        if self._making == 0 and self._pool_targets:
            asyncio.get_running_loop().call_later(self.refill_quiet_seconds, self._top_up)

    def _top_up(self, anyway: bool = False) -> None:
        """Refill the pools that gave kernels away, if no page is being made and none was for ``refill_quiet_seconds``."""
        quiet = self._making == 0 and time.monotonic() - self._last_page >= self.refill_quiet_seconds - 0.01
        if not (quiet or anyway) or not self._pool_targets:
            return
        for notebook, target in list(self._pool_targets.items()):
            self.kernel_pools_config[notebook]["pool_size"] = target
            missing = target - len(getattr(self, "_pools", {}).get(notebook, ()))
            if missing > 0:
                self.log.info("Refilling the pool of %s with %d kernel(s), the server being free.", notebook, missing)
                self.fill_if_needed(delay=0, notebook_name=notebook)
        self._pool_targets.clear()

    # Activity ---------------------------------------------------------------

    def start_watching_activity(self, kernel_id):
        """Jupyter's watch on a kernel's messages, reading of each only what it keeps.

        Jupyter's reads each message whole but its content, parsing every date in
        its headers: about a tenth of the server's own CPU per page opened, as a
        page's cells publish some hundreds of messages. The rule is Jupyter's: a
        message counts as activity unless both it and the request it answers are
        of untracked types (``untracked_message_types``) and the kernel is not
        busy; a status message sets the execution state."""
        super().start_watching_activity(kernel_id)
        kernel = self._kernels[kernel_id]

        def record_activity(msg_list):
            seen = activity_of(kernel.session, msg_list)
            if seen is None:
                return
            msg_type, parent_type, state = seen
            if self.track_message_type(msg_type) or self.track_message_type(parent_type) or kernel.execution_state == "busy":
                self.last_kernel_activity = kernel.last_activity = utcnow()
            if state is not None:
                if self.track_message_type(parent_type):
                    kernel.execution_state = state
                elif kernel.execution_state == "starting" and state != "starting":
                    kernel.execution_state = "idle"  # as Jupyter does: after starting, idle unless a tracked request says

        kernel._activity_stream.on_recv(record_activity)  # in place of Jupyter's reader

    # Stopping ---------------------------------------------------------------

    def was_paused(self, kernel_id: str) -> bool:
        """Whether this server paused ``kernel_id`` (its page was left idle), as opposed to it failing."""
        return kernel_id in self._paused

    def _close_pages(self, kernel_id: str) -> None:
        """Close the connections of ``kernel_id``'s page, so the page learns at once that it was paused.

        A kernel shut down on purpose leaves its page's websocket open and silent;
        closed, the page asks ``/companion/paused/<id>`` and says so."""
        from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

        for key, handler in list(ZMQChannelsWebsocketConnection._open_sessions.items()):
            if key.split(":", 1)[0] == kernel_id:
                handler.close()

    async def shutdown_kernel(self, kernel_id: str, *args, **kwargs):
        self._owners.pop(kernel_id, None)
        return await ensure_async(super().shutdown_kernel(kernel_id, *args, **kwargs))

    async def cull_kernel_if_idle(self, kernel_id: str):
        """Jupyter's rule for pages no one has open; and a pause for open pages idle past ``pause_idle_seconds``."""
        kernel = self._kernels.get(kernel_id)
        if kernel is None:
            return
        connections = self._kernel_connections.get(kernel_id, 0)
        last = getattr(kernel, "last_activity", None)
        if connections and self.pause_idle_seconds > 0 and last is not None and kernel.execution_state != "busy":
            idle = utcnow() - last
            owned = self._owners.get(kernel_id)
            # A page still loading in a slow browser has a connected kernel that was idle in the pool.
            opened_long_ago = owned is None or time.monotonic() - owned[1] > self.pause_idle_seconds
            if opened_long_ago and idle > timedelta(seconds=self.pause_idle_seconds):
                self.log.info("Pausing the page of kernel %s: open but untouched for %d s.", kernel_id, idle.total_seconds())
                self._paused[kernel_id] = time.time()
                while len(self._paused) > PAUSED_REMEMBERED:
                    self._paused.popitem(last=False)
                self._close_pages(kernel_id)
                await ensure_async(self.shutdown_kernel(kernel_id))
                return
        return await ensure_async(super().cull_kernel_if_idle(kernel_id))


def activity_of(session: Session, msg_list: list[bytes]) -> tuple[str | None, str | None, str | None] | None:
    """A kernel's published message as ``(type, type of the request it answers, execution state)``, None if unsigned.

    Reads the header and parent header, and a status message's content; the
    state is None for any other message. A message whose signature does not
    match the kernel's key is not counted, as Jupyter's reader refuses it.

    >>> session = Session(key=b"k")
    >>> frames = session.serialize(session.msg("status", {"execution_state": "busy"}))
    >>> activity_of(session, frames)
    ('status', None, 'busy')"""
    try:
        _, parts = session.feed_identities(msg_list)
    except ValueError:  # no delimiter: not a Jupyter message
        return None
    if len(parts) < 5:
        return None
    if session.auth is not None and not hmac.compare_digest(parts[0], session.sign(parts[1:5])):
        return None
    header, parent = session.unpack(parts[1]), session.unpack(parts[2])
    msg_type = header.get("msg_type")
    state = session.unpack(parts[4]).get("execution_state") if msg_type == "status" else None
    return msg_type, parent.get("msg_type") if isinstance(parent, dict) else None, state
