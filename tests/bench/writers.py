"""Store throughput: many processes saving at once for a fixed time, and proof that none was lost.

Each writer is its own process (as each learner's page has its own kernel) and
is scheduled as a forked kernel is (``companion.forking.schedule_as_kernel``).
As on a server, a writing process (``companion.store.writer``) writes their saves,
several in one transaction; with ``own=True`` each saves on its own instead, in
turn with the others (what a kernel does when the writer cannot be reached). It
calls the product's ``Store.save`` with its session's rule, as a page does (an
event, the latest response and the learner's progress, one transaction) in a loop: all start together, stop at the same deadline, and
report how many saves returned. They start once the machine is quiet (the page
cache written back, the cores idle: :func:`common.quiet_machine`). Afterwards the events table must hold exactly
that many events, and each writer's events must be its sequence 0..n-1 in order.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from common import quiet_machine, summary


def _writer(url: str, writer: int, ready, start_at, seconds: float, results) -> None:
    from companion.forking import schedule_as_kernel
    from companion.progress import SessionRule
    from companion.store import open_store

    schedule_as_kernel()  # as a forked kernel is scheduled
    store = open_store(url)  # opened (and the schema checked) before the clock starts
    # As a page saves: with its session's rule, so each save keeps the learner's progress current too.
    rule = SessionRule("s1", tuple(f"s1-a{n}" for n in range(5)), "s1-complete", ("s1", "s2"), "bench")
    ready.put(writer)
    start_at.wait()
    deadline = time.monotonic() + seconds
    count, latencies = 0, []
    while time.monotonic() < deadline:
        began = time.monotonic()
        store.save(f"writer{writer}", "s1", f"s1-a{count % 5}", "responded", {"writer": writer, "n": count}, done=True, rule=rule)
        latencies.append(time.monotonic() - began)
        count += 1
    results.put((writer, count, latencies))


def throughput(url: str, writers: int = 16, seconds: float = 10.0, own: bool = False) -> dict:
    """``writers`` processes saving for ``seconds`` into the store at ``url``; events per second and losses.

    ``own``: each process saves on its own, with no writing process."""
    from companion.store import Store, open_store, writer

    open_store(url)  # the schema, once, as the server makes it before kernels start
    before = Store(url).count_events()
    saves = None if own else writer.start(url)  # as companion serve starts it, before the kernels
    assert own or saves is not None, "the writing process started"
    context = multiprocessing.get_context("spawn")
    ready, start_at, results = context.Queue(), context.Event(), context.Queue()
    processes = [context.Process(target=_writer, args=(url, w, ready, start_at, seconds, results)) for w in range(writers)]
    if saves is not None:
        os.environ[writer.ENVIRONMENT] = saves.path  # what the kernels inherit from the server
    try:
        for process in processes:
            process.start()
    finally:
        os.environ.pop(writer.ENVIRONMENT, None)
    for _ in processes:  # every writer has imported the package and opened the store
        ready.get(timeout=300)
    settled = quiet_machine()  # not in the wake of the figure before (its write-back, its processes exiting)
    started = time.monotonic()
    start_at.set()
    reports = [results.get(timeout=seconds + 300) for _ in processes]
    elapsed = time.monotonic() - started
    for process in processes:
        process.join(timeout=60)
    counted = writer.counts(saves.path, url) if saves is not None else {"saves": 0, "groups": 0}
    if saves is not None:
        saves.stop()
    saved = sum(count for _, count, _ in reports)
    store = Store(url)
    stored = store.count_events() - before
    in_order = True
    events = store.events()
    for writer, count, _ in reports:
        mine = [e.value["n"] for e in events if e.username == f"writer{writer}"]
        in_order &= mine == list(range(count))
    latencies = sorted(x for _, _, lat in reports for x in lat)

    return {
        "writers": writers,
        "own": own,
        "through_writer": counted["saves"],
        "per_transaction": counted["saves"] / counted["groups"] if counted["groups"] else 1.0,
        "seconds": seconds,
        "elapsed": elapsed,
        "saved": saved,
        "stored": stored,
        "lost": saved - stored,
        "in_order": in_order,
        "exit_codes": [p.exitcode for p in processes],
        "per_second": saved / seconds,
        "settled_seconds": settled,
        "latency": summary(latencies),
    }
