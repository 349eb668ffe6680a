"""Who gets a page: the checks a page request passes before the server starts (or takes) a kernel.

A kernel costs the server a Python process (about 100 MiB) and a second of CPU,
so on a shared server (link mode) a request is answered with a short page and
no kernel when:

1. its address asked for more than ``[server] requests_per_minute`` pages in the
   last minute (HTTP 429);
2. it carries no valid personal link, or, for the dashboard, no valid facilitator
   link from someone still on the list (HTTP 403);
3. the server already has ``max_pages`` pages open (HTTP 503);
4. the learner already has ``pages_per_learner`` pages open (HTTP 429).

In local mode (one learner on their own computer) only the first check applies.

Example::

    >>> gate = Admission(settings, mode="link")
    >>> gate.check("s1.ipynb", "learner=ana.1790000000.sig", "10.0.0.7", kernels)
    Admitted(username='ana')
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

from . import identity, paths
from .errors import LinkError
from .identity import HUB_SERVICE
from .settings import Settings, load_settings

WINDOW_SECONDS = 60.0


class Kernels(Protocol):
    def pages_of(self, username: str) -> int: ...

    def pages_open(self) -> int: ...


@dataclass(frozen=True)
class Admitted:
    username: str | None  # None in local mode: the page's kernel finds its learner itself


@dataclass(frozen=True)
class Refused:
    status: int
    heading: str
    message: str
    retry_after: int | None = None  # seconds, for the Retry-After header


class RequestRate:
    """Page requests per address in the last minute; an address over ``limit`` is refused until it slows down."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}

    def allow(self, address: str) -> bool:
        """Count a request from ``address``; False when it is over the limit (a refused request counts too)."""
        if self.limit <= 0:
            return True
        now = self.clock()
        if len(self._seen) > 10_000:
            self._forget_before(now - WINDOW_SECONDS)
        times = self._seen.setdefault(address, deque())
        while times and times[0] <= now - WINDOW_SECONDS:
            times.popleft()
        times.append(now)
        return len(times) <= self.limit

    def _forget_before(self, moment: float) -> None:
        for address in [a for a, times in self._seen.items() if not times or times[-1] <= moment]:
            del self._seen[address]


class Admission:
    """The checks of one server: its mode, its course's limits, and each address's recent requests."""

    def __init__(self, settings: Settings, mode: str, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.mode = mode
        self.rate = RequestRate(settings.server.requests_per_minute, clock)

    def check(self, notebook: str, query: str, address: str, kernels: Kernels) -> Admitted | Refused:
        """Whether a request for ``notebook`` with ``query`` from ``address`` may have a kernel."""
        limits = self.settings.server
        if not self.rate.allow(address):
            return Refused(
                429,
                "Too many pages opened",
                f"More than {limits.requests_per_minute} pages were opened from your network in the last minute. "
                "Wait a minute, then open the page again; nothing you wrote is lost.",
                retry_after=int(WINDOW_SECONDS),
            )
        if self.mode == HUB_SERVICE and notebook != paths.DASHBOARD_NOTEBOOK:
            return Refused(
                404,
                "Sessions open in your own server on the hub",
                "The companion service shows only the facilitator dashboard. Open your sessions from their links in Canvas.",
            )
        if self.mode not in ("link", HUB_SERVICE):
            return Admitted(None)
        try:
            username = self.who(notebook, query)
        except LinkError as error:
            heading = "This dashboard is for facilitators" if notebook == paths.DASHBOARD_NOTEBOOK else "We could not tell who you are"
            return Refused(403, heading, str(error))
        if limits.max_pages and kernels.pages_open() >= limits.max_pages:
            return Refused(
                503,
                "The course server is full right now",
                f"{limits.max_pages} pages are open on this server, its limit. Try again in a few minutes; "
                "if this keeps happening, tell your facilitator. Nothing you wrote is lost.",
                retry_after=120,
            )
        if limits.pages_per_learner and kernels.pages_of(username) >= limits.pages_per_learner:
            return Refused(
                429,
                "Too many open pages",
                f"You have {limits.pages_per_learner} pages of this course open, the most one person can have at once. "
                "Close a tab you are not using (its page stops within a few minutes), then open this page again.",
                retry_after=limits.closed_page_seconds,
            )
        return Admitted(username)

    def who(self, notebook: str, query: str) -> str:
        """The person a link in ``query`` proves, for ``notebook``; :class:`LinkError` says why nobody.

        The dashboard needs a facilitator link from someone on the list *now*, so
        course.toml is read again for it."""
        if notebook == paths.DASHBOARD_NOTEBOOK:
            from .dashboard.access import facilitator

            return facilitator(load_settings(self.settings.root), query, {"COMPANION_IDENTITY": self.mode})
        return identity.verify(identity.token_from_query(query), identity.server_secret(self.settings.home))
