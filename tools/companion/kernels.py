"""The server's kernels: whose page each one serves, and when one stops.

One kernel runs each open page. :class:`CompanionKernelManager` is the
kernel manager ``companion serve`` gives Voila (``VoilaConfiguration.
multi_kernel_manager_class``; Voila adds its preheated pools on top). It adds
two things to Jupyter's own manager:

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
"""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import timedelta

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyter_server.utils import ensure_async
from traitlets import Integer

# How many paused kernel ids are remembered (oldest forgotten first): a page asks within seconds.
PAUSED_REMEMBERED = 10_000
# A page's kernel with no browser connected is being loaded for this long after it was handed out;
# after that, it is a closed page (a reloaded or closed tab).
LOADING_SECONDS = 30


class CompanionKernelManager(AsyncMappingKernelManager):
    """Jupyter's kernel manager, with owners and a pause for open pages left idle."""

    pause_idle_seconds = Integer(
        1800, config=True, help="Stop the kernel of a page left open but untouched for this long (0: never)."
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._owners: dict[str, tuple[str, float]] = {}  # kernel id -> (username, when handed out)
        self._paused: OrderedDict[str, float] = OrderedDict()

    # Owners -----------------------------------------------------------------

    def record_owner(self, kernel_id: str, username: str) -> None:
        """``kernel_id`` serves a page of ``username``."""
        if kernel_id in self._kernels:
            self._owners[kernel_id] = (username, time.monotonic())

    def _closed(self, kernel_id: str, handed_out: float) -> bool:
        """No page connected, none loading: handed out, and quiet, more than LOADING_SECONDS ago."""
        from jupyter_server._tz import utcnow

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

    async def stop_closed_pages(self, username: str) -> None:
        """Stop the kernels of ``username``'s closed pages now, rather than at the next cull: a learner who
        reloads a page does not hold two kernels for minutes."""
        for kernel_id, (owner, since) in list(self._owners.items()):
            if owner == username and kernel_id in self._kernels and self._closed(kernel_id, since):
                await ensure_async(self.shutdown_kernel(kernel_id))

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
            from jupyter_server._tz import utcnow

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
