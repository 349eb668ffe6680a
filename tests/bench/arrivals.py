"""A cohort arriving together: 40 learners open the session page within 2 s, as plain HTTP.

No browsers: 40 Chromium tabs on the same 2 cores would measure Chromium. Each
learner is a thread that GETs the page with their own personal link (link mode,
as on a shared server) and reads it until the last byte has arrived. Voila runs
the whole notebook before it finishes the response, so a page fully received is
a page whose kernel has run every cell and is ready for the browser's websocket.

Figures: the time from the first request to the last page complete (what the
last learner of the cohort waits, plus the arrival spread), each learner's own
wait, then, with every page still open, the proportional memory (PSS) of each
page's kernel, and, once the server is idle again (its pool refilled), the
server's CPU-seconds per page opened (the server and all its descendants).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from common import LOAD_TIMEOUT_MS, PAGE, kernel_id_in, kernel_memory, link_query, log, summary, tree_cpu, wait_idle


def cohort(server, learners: int = 40, window: float = 2.0, timeout: float = LOAD_TIMEOUT_MS / 1000) -> dict:
    """``learners`` GET the page, arrivals spread evenly over ``window`` s; see the module's docstring."""
    pid = server.process.pid
    wait_idle(pid)
    cpu_before = tree_cpu(pid)
    kernels_before = set(kernel_memory_ids(pid))
    barrier = threading.Barrier(learners)
    origin: list[float] = []

    def fetch(n: int) -> dict:
        url = server.page(PAGE, link_query(f"cohort{n}"))
        barrier.wait()
        if n == 0:
            origin.append(time.monotonic())
        time.sleep(window * n / learners)
        start = time.monotonic()
        body = b""
        outcome = {"start": start, "end": None, "kernel": None, "error": ""}
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read1(65536):  # read1: what has arrived (read(n) waits for n bytes)
                    body += chunk
                    if time.monotonic() - start > timeout:
                        outcome["error"] = f"not finished after {timeout:.0f} s"
                        return outcome
        except OSError as error:
            outcome["error"] = f"{type(error).__name__}: {error}"[:200]
            return outcome
        if b"application/vnd.jupyter.widget-view+json" not in body:
            outcome["error"] = "the page arrived without its widgets (an error page)"
            return outcome
        outcome.update(end=time.monotonic(), kernel=kernel_id_in(body), bytes=len(body))
        return outcome

    with ThreadPoolExecutor(learners) as pool:
        outcomes = list(pool.map(fetch, range(learners)))
    done = [x for x in outcomes if x["end"] is not None]
    first = min(x["start"] for x in outcomes)
    last = max((x["end"] for x in done), default=None)
    kernels = [x["kernel"] for x in done if x["kernel"]]
    # Memory with every page still open (nobody closed a tab: no browser connected).
    memory = kernel_memory(pid, kernels)
    log(f"   last page complete {last - first if last else float('nan'):.1f} s after the first request; waiting for the server to go idle")
    idle_wait = wait_idle(pid, timeout=300)
    cpu = tree_cpu(pid) - cpu_before
    pool_kernels = len(set(kernel_memory_ids(pid)) - kernels_before - set(kernels))
    return {
        "learners": learners,
        "window": window,
        "last_page": (last - first) if last is not None and len(done) == learners else None,
        "last_done": (last - first) if last is not None else None,
        "wait": summary([x["end"] - x["start"] for x in done]),
        "failed": learners - len(done),
        "errors": sorted({x["error"] for x in outcomes if x["error"]}),
        "kernels_found": memory["kernels"],
        "memory": memory,
        "pss_per_page_mib": memory["pss_mib"] / memory["kernels"] if memory["kernels"] else None,
        "rss_per_page_mib": memory["rss_mib"] / memory["kernels"] if memory["kernels"] else None,
        "server_cpu": cpu,
        "server_cpu_per_page": cpu / learners,
        "idle_after": idle_wait,
        "pool_refilled": pool_kernels,
        "started_at_offset": first - origin[0] if origin else None,
    }


def kernel_memory_ids(pid: int) -> list[str]:
    from common import kernel_pids

    return list(kernel_pids(pid))
