"""Run every benchmark and write one Markdown table (see tests/bench/README.md).

    python tests/bench/run.py -o bench-results.md          # the full suite (about 30-60 minutes)
    python tests/bench/run.py --quick -o bench-results.md  # fewer loads, no 100,000-learner stores

Each figure is measured side by side with its peer in the same run (stock
Voila for the pages, nbgrader's Gradebook for the dashboard), so machine noise
affects both. Nothing is skipped: a target that is missed says NO.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, Workspace, load_average, log, machine, tree_cpu, wait_idle  # noqa: E402

FULL = dict(loads=20, learners=20, saves=30, writers=16, many_writers=64, seconds=10.0, sizes=[1_000, 10_000, 100_000], cap=900.0, peer_cap=300.0)
SMOKE = dict(loads=1, learners=3, saves=2, writers=4, many_writers=8, seconds=2.0, sizes=[200], cap=60.0, peer_cap=10.0)
QUICK = dict(loads=5, learners=20, saves=10, writers=16, many_writers=64, seconds=10.0, sizes=[1_000, 10_000], cap=300.0, peer_cap=60.0)
# The emulated-network visits (loads of each server) and the cohort (learners within 2 s), added to each plan in main().
PAGE_PLANS = {"full": dict(net_loads=10, cohort=40), "quick": dict(net_loads=5, cohort=40), "smoke": dict(net_loads=1, cohort=4)}


def ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def s(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def met(ok: bool) -> str:
    return "yes" if ok else "**NO**"


# Measurements -------------------------------------------------------------------------


def run_pages(workspace: Workspace, plan: dict, results: dict) -> None:
    import pages

    log("Starting companion serve and stock voila for the page benchmarks")
    companion = workspace.companion("companion-home")
    voila = None
    try:
        voila = workspace.stock_voila(companion, "voila-home")
        for server in (companion, voila):
            wait_idle(server.process.pid)
        servers = {"companion": companion, "voila": voila}
        cpu_before = {name: tree_cpu(server.process.pid) for name, server in servers.items()}
        log(f"1. Time to interactive: {plan['loads']} loads of each, alternating")
        results["tti"] = pages.time_to_interactive(servers, loads=plan["loads"])
        for name, server in servers.items():
            # Server CPU per page load, the pool's refills included (both servers idle again first).
            wait_idle(server.process.pid)
            results["tti"][name]["server_cpu_per_load"] = (tree_cpu(server.process.pid) - cpu_before[name]) / (plan["loads"] + 1)
        log(f"3. Save round trip: {plan['saves']} saves on each, alternating")
        databases = {"companion": str(companion.home / "companion.db"), "voila": str(voila.home / "companion.db")}
        results["saves"] = pages.save_round_trip(servers, databases, saves=plan["saves"])
        results["logs"] = {"companion": str(Path(companion.log.name)), "voila": str(Path(voila.log.name))}
    finally:
        companion.stop()
        if voila is not None:
            voila.stop()


def run_network(workspace: Workspace, plan: dict, results: dict) -> None:
    import pages

    log("Starting companion serve and stock voila for the visits over an emulated network")
    companion = workspace.companion("network-companion")
    voila = None
    try:
        voila = workspace.stock_voila(companion, "network-voila")
        for server in (companion, voila):
            wait_idle(server.process.pid)
        servers = {"companion": companion, "voila": voila}
        log(f"1a/1b. First and second visit over 20 Mbit/s, 40 ms RTT: {plan['net_loads']} of each, alternating")
        results["network"] = pages.network_visits(servers, loads=plan["net_loads"])
    finally:
        companion.stop()
        if voila is not None:
            voila.stop()


def _fresh(workspace: Workspace, name: str, home: str):
    """A fresh server of kind ``name`` ("companion" or "voila") with its own data home."""
    return workspace.companion(f"{home}-companion") if name == "companion" else workspace.stock_voila(None, f"{home}-voila")


def run_burst(workspace: Workspace, plan: dict, results: dict) -> None:
    import pages

    results["burst"] = {}
    for name in ("companion", "voila"):
        for kind in ("browser", "html"):
            log(f"2. Burst ({kind}): {plan['learners']} learners open the page within 1 s on a fresh {name} server")
            server = _fresh(workspace, name, f"burst-{kind}")
            try:
                wait_idle(server.process.pid)
                if kind == "browser":
                    results["burst"][name] = pages.burst(server, plan["learners"])
                else:
                    results["burst"][f"{name}_html"] = pages.html_burst(server, plan["learners"])
            finally:
                server.stop()


def run_cohort(workspace: Workspace, plan: dict, results: dict) -> None:
    import arrivals

    results["cohort"] = {}
    for name in ("companion", "voila", "companion_pool"):
        log(f"2d. Cohort: {plan['cohort']} learners (plain HTTP, each with a personal link) arrive within 2 s on a fresh {name} server")
        if name == "companion_pool":  # 2e: session 1 keeps a kernel ready for each of them
            server = workspace.companion("cohort-companion-pool", session_pool=plan["cohort"])
        else:
            server = _fresh(workspace, name, "cohort")
        try:
            results["cohort"][name] = arrivals.cohort(server, plan["cohort"], 2.0)
        finally:
            server.stop()


def run_store(workspace: Workspace, plan: dict, results: dict) -> None:
    import writers

    log(f"4. Store throughput: {plan['writers']} processes saving for {plan['seconds']:.0f} s (SQLite, WAL)")
    url = f"sqlite:///{workspace.home('throughput') / 'companion.db'}"
    results["store"] = writers.throughput(url, plan["writers"], plan["seconds"])
    log(f"   and {plan['many_writers']} processes, a kernel per learner on a full server")
    url = f"sqlite:///{workspace.home('throughput-many') / 'companion.db'}"
    results["store_many"] = writers.throughput(url, plan["many_writers"], plan["seconds"])
    log(f"   and {plan['many_writers']} processes each saving on its own, with no writing process (the peer)")
    url = f"sqlite:///{workspace.home('throughput-own') / 'companion.db'}"
    results["store_own"] = writers.throughput(url, plan["many_writers"], plan["seconds"], own=True)
    log("   and one process alone, saving on its own, for the per-save cost without contention")
    url = f"sqlite:///{workspace.home('throughput-single') / 'companion.db'}"
    results["store_single"] = writers.throughput(url, 1, min(plan["seconds"], 5.0), own=True)


def run_dashboard(workspace: Workspace, plan: dict, results: dict) -> None:
    import dashboard

    log(f"5. Dashboard and evaluation export at {', '.join(f'{n:,}' for n in plan['sizes'])} learners")
    results["dashboard"] = dashboard.scale(workspace.folder, plan["sizes"], plan["cap"], plan["peer_cap"])


# The table ----------------------------------------------------------------------------


def table(results: dict, plan: dict) -> str:
    lines = [
        "| # | Figure | Companion | Peer | Target | Met? |",
        "|---|---|---|---|---|---|",
    ]
    add = lambda *cells: lines.append("| " + " | ".join(str(c) for c in cells) + " |")  # noqa: E731

    tti = results.get("tti")
    if tti:
        c, v = tti["companion"], tti["voila"]
        ok = c["tti"]["median"] <= 1.0 and c["tti"]["p95"] <= 2.0 and not c["failed"]
        add(1, f"Session 1 page (the real course), time to interactive on localhost, one learner at a time (median / p95 of {c['tti']['n']})"
            + _failed(c),
            f"{s(c['tti']['median'])} / {s(c['tti']['p95'])}", f"stock voila {s(v['tti']['median'])} / {s(v['tti']['p95'])}" + _failed(v),
            "median <= 1.0 s, p95 <= 2.0 s", met(ok))
    network = results.get("network")
    if network:
        for row, visit, limit, what in (("1a", "first", 2.0, "first visit (empty cache)"), ("1b", "second", 1.2, "second visit (a new tab, same browser: HTTP cache warm)")):
            c, v = network["companion"][visit], network["voila"][visit]
            add(row, f"Session 1 page over an emulated 20 Mbit/s, 40 ms RTT link, {what}: time to interactive, median / p95 of {c['tti']['n']}"
                + _failed(c), f"{s(c['tti']['median'])} / {s(c['tti']['p95'])}; {_wire(c)}",
                f"stock voila {s(v['tti']['median'])} / {s(v['tti']['p95'])}; {_wire(v)}" + _failed(v),
                f"median <= {limit} s", met(c["tti"]["median"] <= limit and not c["failed"]))
    cohort = results.get("cohort", {})
    burst = results.get("burst", {})
    cpu = {name: _cpu_per_page(results, name) for name in ("companion", "voila")}
    if cpu["companion"]:
        worst = max(x for x, _ in cpu["companion"])
        add("1c", "Server CPU-seconds per page opened (the server and all its descendants, pool refills included, until idle again): "
            + "; ".join(label for _, label in cpu["companion"]),
            " / ".join(s(x) for x, _ in cpu["companion"]), ("stock voila " + " / ".join(s(x) for x, _ in cpu["voila"])) if cpu["voila"] else "n/a",
            "<= 0.6 s", met(worst <= 0.6))
    if "companion" in burst:
        c, v = burst["companion"], burst.get("voila")
        ok = c["tti"]["median"] <= 1.0 and c["tti"]["p95"] <= 2.0 and not c["failed"]
        peer = f"stock voila {s(v['tti']['median'])} / {s(v['tti']['p95'])}" + _failed(v) if v else "n/a"
        add(2, f"Burst: {c['learners']} learners open the page within 1 s (one Chromium), time to interactive p50 / p95" + _failed(c),
            f"{s(c['tti']['median'])} / {s(c['tti']['p95'])}", peer, "median <= 1.0 s, p95 <= 2.0 s", met(ok))
    memory = {name: _memory_per_page(results, name) for name in ("companion", "voila")}
    if memory["companion"]:
        worst = max(pss for pss, _, _ in memory["companion"])
        cell = lambda figures: " / ".join(f"{pss:.0f} MiB (RSS {rss:.0f})" for pss, rss, _ in figures)  # noqa: E731
        add("2b", "Memory per open page: proportional set size (PSS) of the page's kernel, with "
            + " / ".join(label for _, _, label in memory["companion"]),
            cell(memory["companion"]), f"stock voila {cell(memory['voila'])}" if memory["voila"] else "n/a", "PSS <= 60 MiB", met(worst <= 60))
    if "companion_html" in burst:
        c, v = burst["companion_html"], burst.get("voila_html")
        peer = (f"stock voila {s(v['html']['median'])} / {s(v['html']['p95'])}" + (f" ({v['failed']} never arrived)" if v["failed"] else "")) if v else "n/a"
        never = f" ({c['failed']} of {plan['learners']} never arrived: {'; '.join(c.get('errors', []))})" if c["failed"] else ""
        add("2c", f"Burst, server share only: the same arrivals as plain HTTP GETs, page fully sent, p50 / p95{never}",
            f"{s(c['html']['median'])} / {s(c['html']['p95'])}", peer, "(diagnostic)", "-")
    if "companion" in cohort:
        c, v = cohort["companion"], cohort.get("voila")
        ok = _cohort_met(c, v)
        add("2d", f"Cohort: {c['learners']} learners (plain HTTP GETs, each with a personal link) arrive within {c['window']:.0f} s: "
            "time from the first request to the last page fully received (every cell run, kernel ready); each learner's wait p50 / p95 in brackets",
            _cohort_cell(c), f"stock voila {_cohort_cell(v)}" if v else "n/a",
            "<= 10 s and <= half of stock voila's", met(ok))
    if "companion_pool" in cohort:
        c, v = cohort["companion_pool"], cohort.get("voila")
        ok = _cohort_met(c, v)
        add("2e", f"Cohort as in 2d, with session 1 keeping {c['learners']} kernels ready (`preheated_kernels = {c['learners']}` in its "
            "[[sessions]] entry, as for the session a cohort opens together in a live meeting); after the semicolon, PSS per page",
            f"{_cohort_cell(c)}; {c['pss_per_page_mib']:.0f} MiB" if c.get("pss_per_page_mib") else _cohort_cell(c),
            f"stock voila {_cohort_cell(v)}" if v else "n/a", "<= 10 s and <= half of stock voila's", met(ok))
    saves = results.get("saves")
    if saves:
        c, v = saves["companion"]["round_trip"], saves["voila"]["round_trip"]
        add(3, f"Save round trip, Save click until the store has the row, p50 / p95 of {c['n']}",
            f"{ms(c['median'])} / {ms(c['p95'])}", f"stock voila {ms(v['median'])} / {ms(v['p95'])}", "p95 <= 100 ms", met(c["p95"] <= 0.100))
    store = results.get("store")
    if store:
        ok = store["per_second"] >= 2000 and store["lost"] == 0 and store["in_order"]
        single = results.get("store_single")
        add(4, f"Store throughput: {store['writers']} processes saving for {store['seconds']:.0f} s (SQLite WAL, "
            f"through the writing process, {store['per_transaction']:.1f} saves a transaction); "
            f"{store['saved']:,} saves returned, {store['stored']:,} events stored, lost {store['lost']}, "
            f"each writer's events in order: {'yes' if store['in_order'] else 'NO'}",
            f"{store['per_second']:,.0f} events/s (save p95 {ms(store['latency']['p95'])}, max {s(store['latency']['max'])})",
            f"1 process alone: {single['per_second']:,.0f} events/s" if single else "n/a", ">= 2,000 events/s, 0 lost", met(ok))
    many = results.get("store_many")
    if many:
        ok = many["per_second"] >= 2000 and many["latency"]["p95"] <= 0.100 and many["lost"] == 0 and many["in_order"]
        own = results.get("store_own")
        add("4b", f"Store throughput: {many['writers']} processes saving for {many['seconds']:.0f} s (SQLite WAL, "
            f"through the writing process, {many['per_transaction']:.1f} saves a transaction); "
            f"{many['saved']:,} saves returned, {many['stored']:,} events stored, lost {many['lost']}, "
            f"each writer's events in order: {'yes' if many['in_order'] else 'NO'}",
            f"{many['per_second']:,.0f} events/s (save p95 {ms(many['latency']['p95'])}, max {s(many['latency']['max'])})",
            f"each saving on its own: {own['per_second']:,.0f} events/s (p95 {ms(own['latency']['p95'])}, max {s(own['latency']['max'])}, "
            f"lost {own['lost']})" if own else "n/a",
            ">= 2,000 events/s, p95 <= 100 ms, 0 lost", met(ok))
    board = results.get("dashboard", {})
    sizes = sorted(board)
    for size in sizes:
        figures = board[size]
        cd, nd = figures["companion_dashboard"], figures["nbgrader_dashboard"]
        ce, ne = figures["companion_export"], figures["nbgrader_export"]
        target, ok = "(none)", "-"
        if size == max(plan["sizes"]) and size >= 100_000:
            target = "<= 1 s and >= 10x faster than nbgrader"
            peer, _ = _peer_seconds(nd)
            ok = met(cd.get("seconds") is not None and cd["seconds"] <= 1.0 and peer is not None and peer >= 10 * cd["seconds"])
        agree = {True: "; completion counts agree", False: "; completion counts DIFFER"}.get(figures.get("agree"), "")
        add(f"5 ({size:,})", f"Dashboard figures, {size:,} learners x 6 sessions: seconds to compute{agree}",
            _seconds(cd), f"nbgrader Gradebook {_seconds(nd)}" + _ratio(cd, nd), target, ok)
        export_target, export_ok = "(none)", "-"
        if size >= 100_000:  # issue 13: the whole evaluation CSV, read in bulk, within 5 s at 100,000 learners
            export_target, export_ok = "<= 5 s", met(ce.get("seconds") is not None and ce["seconds"] <= 5.0)
        processes = f", in {ce['processes']} processes at once (one per core)" if ce.get("processes", 1) > 1 else ""
        add(f"5e ({size:,})", f"Evaluation export (CSV), {size:,} learners{processes}", _seconds(ce), f"nbgrader export {_seconds(ne)}" + _ratio(ce, ne), export_target, export_ok)
        cq = figures.get("companion_queue")
        if cq:
            detail = f": {cq['waiting']:,} waiting, {cq['answered_in_30_days']:,} answered in the 30 days" if cq.get("seconds") is not None else ""
            add(f"5q ({size:,})", f"Feedback queue and median wait (what the dashboard opens on), {size:,} learners{detail}",
                _seconds(cq), "- (nbgrader has no sharing)", "(none)", "-")
        if "companion_rebuild" in figures:
            add(f"5r ({size:,})", f"Progress rebuild, {size:,} learners: once, when the notebooks change which activities are required (saves keep it current)",
                _seconds(figures["companion_rebuild"]), "-", "(none)", "-")
    return "\n".join(lines)


def _failed(figures: dict | None) -> str:
    if not figures or not figures.get("failed"):
        return ""
    return f" ({figures['failed']} never interactive: {'; '.join(figures.get('errors', []))[:300]})"


def _wire(figures: dict) -> str:
    """Bytes over the wire and requests served from the HTTP cache, medians of one visit."""
    return f"{figures['received_kb']['median'] / 1000:.2f} MB over the wire, {figures['from_cache']['median']:.0f} of {figures['requests']['median']:.0f} responses from cache"


def _cpu_per_page(results: dict, name: str) -> list[tuple[float, str]]:
    """(CPU-seconds per page opened, how it was measured) for each benchmark that measured it."""
    found = []
    tti = results.get("tti", {}).get(name, {})
    if tti.get("server_cpu_per_load") is not None:
        found.append((tti["server_cpu_per_load"], "pages opened one at a time in Chromium (1), each closed after"))
    cohort = results.get("cohort", {}).get(name, {})
    if cohort.get("server_cpu_per_page") is not None:
        found.append((cohort["server_cpu_per_page"], f"the cohort of {cohort['learners']} (2d), pages left open"))
    return found


def _memory_per_page(results: dict, name: str) -> list[tuple[float, float, str]]:
    """(PSS MiB, RSS MiB, with how many pages open) per open page, for each benchmark that measured it."""
    found = []
    for key, label in (("burst", "the burst's {n} pages open in Chromium (2)"), ("cohort", "the cohort's {n} pages open (2d)")):
        figures = results.get(key, {}).get(name)
        memory = (figures or {}).get("memory")
        if memory and memory.get("kernels"):
            n = memory["kernels"]
            found.append((memory["pss_mib"] / n, memory["rss_mib"] / n, label.format(n=n)))
    return found


def _cohort_met(companion: dict, voila: dict | None) -> bool:
    """The cohort target: the last page within 10 s, and in at most half of stock Voila's time."""
    voila = voila or {}
    # When some of stock Voila's pages never arrived, its time is at least that of the last that did.
    mine, theirs = companion.get("last_page"), voila.get("last_page") or voila.get("last_done")
    return mine is not None and mine <= 10.0 and theirs is not None and mine <= theirs / 2


def _cohort_cell(figures: dict) -> str:
    wait = figures["wait"]
    last = figures.get("last_page")
    text = s(last) if last is not None else f"> {s(figures['last_done'])} ({figures['failed']} of {figures['learners']} never arrived: {'; '.join(figures['errors'])[:200]})" if figures.get("last_done") else "none arrived"
    return f"{text} ({s(wait['median'])} / {s(wait['p95'])})"


def _seconds(figure: dict) -> str:
    if figure.get("seconds") is not None:
        return s(figure["seconds"])
    if figure.get("skipped_after"):
        return f"> {s(figure['cap'])} (not run: already over its cap at {figure['skipped_after']:,})"
    if figure.get("projected"):
        return f"> {s(figure['stopped_after'])} (stopped; projected {s(figure['projected'])} from the rows written)"
    if figure.get("stopped_after"):
        return f"> {s(figure['stopped_after'])} (stopped)"
    return "n/a"


def _peer_seconds(figure: dict) -> tuple[float | None, bool]:
    """(seconds, exact): a stopped peer took at least its cap (or the projection, when there is one)."""
    if figure.get("seconds") is not None:
        return figure["seconds"], True
    if figure.get("projected"):
        return figure["projected"], False
    return figure.get("stopped_after") or figure.get("cap"), False


def _ratio(ours: dict, theirs: dict) -> str:
    mine = ours.get("seconds")
    peer, exact = _peer_seconds(theirs)
    if not mine or not peer:
        return ""
    if not exact and not theirs.get("projected"):
        return f" (at least {peer / mine:.0f}x the companion's time)"
    return f" ({peer / mine:.0f}x the companion's time)" if peer >= mine else f" (the companion takes {mine / peer:.1f}x as long)"


def breakdown(results: dict) -> str:
    """Where a page load's time goes: medians of each phase, from the start of navigation."""
    rows = ["| Load | HTML fully received | DOMContentLoaded | load event (scripts run) | kernel websocket open | interactive | server CPU per load | browser CPU per load |",
            "|---|---|---|---|---|---|---|---|"]
    for label, figures in (
        ("companion, one learner", results.get("tti", {}).get("companion")),
        ("stock voila, one learner", results.get("tti", {}).get("voila")),
        ("companion, first visit at 20 Mbit/s", results.get("network", {}).get("companion", {}).get("first")),
        ("stock voila, first visit at 20 Mbit/s", results.get("network", {}).get("voila", {}).get("first")),
        ("companion, second visit at 20 Mbit/s", results.get("network", {}).get("companion", {}).get("second")),
        ("stock voila, second visit at 20 Mbit/s", results.get("network", {}).get("voila", {}).get("second")),
        ("companion, burst", results.get("burst", {}).get("companion")),
        ("stock voila, burst", results.get("burst", {}).get("voila")),
    ):
        if not figures or not figures["tti"]["n"]:
            continue
        cpu = [figures.get(k) for k in ("server_cpu_per_load", "browser_cpu_per_load")]
        rows.append(f"| {label} | " + " | ".join(s(figures[k]["median"]) for k in ("html", "dom", "load", "ws", "tti"))
                    + "".join(f" | {s(c)}" if c is not None else " | -" for c in cpu) + " |")
    return "\n".join(rows)


def functions(results: dict) -> str:
    board = results.get("dashboard", {})
    if not board:
        return ""
    first = board[min(board)]
    return "Measured functions: " + "; ".join(
        f"{key.replace('_', ' ')}: `{value.get('function', '?')}`" for key, value in first.items() if isinstance(value, dict)
    ) + "."


def environment() -> str:
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    import voila

    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}{' (with local changes)' if dirty else ''}, "
            f"{machine()}, load average (1 / 5 / 15 min) {load_average()} at the start, Python {platform.python_version()}, Voila {voila.__version__}")


def report(results: dict, plan: dict, started_env: str) -> str:
    parts = [
        f"Run: {started_env}; load average {load_average()} at the end.",
        "",
        table(results, plan),
        "",
    ]
    if results.get("tti") or results.get("burst") or results.get("network"):
        parts += ["Where a page load's time goes (medians, seconds from the start of navigation):", "", breakdown(results), ""]
        for key, name in (("companion", "the companion's"), ("voila", "stock voila's")):
            loads = (results.get("tti", {}).get(key), results.get("burst", {}).get(key), *results.get("network", {}).get(key, {}).values())
            failed = sorted({u for f in loads if f for u in f["failed_requests"]})
            if failed:
                parts += [f"Requests that failed during {name} page loads (the pages still worked): " + ", ".join(f"`{u}`" for u in failed), ""]
    text = functions(results)
    if text:
        parts += [text, ""]
    if results.get("errors"):
        parts += ["Benchmarks that could not finish: " + "; ".join(results["errors"]), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Supervisor Companion benchmarks and print a Markdown table.")
    parser.add_argument("--quick", action="store_true", help="fewer loads and saves, stores up to 10,000 learners (about 10 minutes)")
    parser.add_argument("--smoke", action="store_true", help="a few minutes: checks that every benchmark runs, figures mean nothing")
    parser.add_argument("-o", "--output", help="also write the Markdown report to this file")
    parser.add_argument("--json", help="also write every raw figure as JSON to this file")
    parser.add_argument("--only", default="pages,network,burst,cohort,store,dashboard",
                        help="comma-separated subset of: pages (1 and 3), network (1a, 1b), burst (2), cohort (2d), store (4), dashboard (5)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (servers' logs, stores)")
    args = parser.parse_args(argv)
    plan = dict(SMOKE if args.smoke else QUICK if args.quick else FULL)
    plan.update(PAGE_PLANS["smoke" if args.smoke else "quick" if args.quick else "full"])
    chosen = [x.strip() for x in args.only.split(",") if x.strip()]
    steps = {"pages": run_pages, "network": run_network, "burst": run_burst, "cohort": run_cohort, "store": run_store, "dashboard": run_dashboard}
    unknown = [x for x in chosen if x not in steps]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(steps)}")

    started_env = environment()
    folder = Path(tempfile.mkdtemp(prefix="companion-bench-"))
    log(f"Benchmarks in {folder} ({'smoke' if args.smoke else 'quick' if args.quick else 'full'} run): {', '.join(chosen)}")
    workspace = Workspace(folder)
    results: dict = {"errors": []}
    for name in chosen:
        started = time.monotonic()
        try:
            steps[name](workspace, plan, results)
        except Exception as error:  # one failed benchmark is reported; the others still run
            traceback.print_exc()
            results["errors"].append(f"{name}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        log(f"   {name} took {time.monotonic() - started:.0f} s")
    raw = Path(args.json) if args.json else folder / "results.json"
    raw.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    try:
        text = report(results, plan, started_env)
    except Exception:
        traceback.print_exc()
        log(f"Could not build the table; the raw figures are in {raw} (folder kept)")
        return 1
    print()
    print(text)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        log(f"Wrote {args.output}")
    if args.keep:
        log(f"Kept {folder}")
    else:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
