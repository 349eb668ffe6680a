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
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, Workspace, log, tree_cpu, wait_idle  # noqa: E402

FULL = dict(loads=20, learners=20, saves=30, writers=16, seconds=10.0, sizes=[1_000, 10_000, 100_000], cap=900.0, peer_cap=300.0)
SMOKE = dict(loads=1, learners=3, saves=2, writers=4, seconds=2.0, sizes=[200], cap=60.0, peer_cap=10.0)
QUICK = dict(loads=5, learners=20, saves=10, writers=16, seconds=10.0, sizes=[1_000, 10_000], cap=300.0, peer_cap=60.0)


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


def run_burst(workspace: Workspace, plan: dict, results: dict) -> None:
    import pages

    results["burst"] = {}
    for name in ("companion", "voila"):
        for kind in ("browser", "html"):
            log(f"2. Burst ({kind}): {plan['learners']} learners open the page within 1 s on a fresh {name} server")
            companion = workspace.companion(f"burst-{kind}-companion")
            server = companion if name == "companion" else None
            try:
                if name == "voila":
                    server = workspace.stock_voila(companion, f"burst-{kind}-voila")
                    companion.stop()
                wait_idle(server.process.pid)
                if kind == "browser":
                    results["burst"][name] = pages.burst(server, plan["learners"])
                else:
                    results["burst"][f"{name}_html"] = pages.html_burst(server, plan["learners"])
            finally:
                companion.stop()
                if server is not None and server is not companion:
                    server.stop()


def run_store(workspace: Workspace, plan: dict, results: dict) -> None:
    import writers

    log(f"4. Store throughput: {plan['writers']} processes saving for {plan['seconds']:.0f} s (SQLite, WAL)")
    url = f"sqlite:///{workspace.home('throughput') / 'companion.db'}"
    results["store"] = writers.throughput(url, plan["writers"], plan["seconds"])
    log("   and one process alone, for the per-save cost without contention")
    url = f"sqlite:///{workspace.home('throughput-single') / 'companion.db'}"
    results["store_single"] = writers.throughput(url, 1, min(plan["seconds"], 5.0))


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
        add(1, f"Session page time to interactive, one learner at a time (median / p95 of {c['tti']['n']})",
            f"{s(c['tti']['median'])} / {s(c['tti']['p95'])}", f"stock voila {s(v['tti']['median'])} / {s(v['tti']['p95'])}",
            "median <= 1.0 s, p95 <= 2.0 s", met(ok))
    burst = results.get("burst", {})
    if "companion" in burst:
        c, v = burst["companion"], burst.get("voila")
        ok = c["tti"]["median"] <= 1.0 and c["tti"]["p95"] <= 2.0 and not c["failed"]
        peer = f"stock voila {s(v['tti']['median'])} / {s(v['tti']['p95'])}" if v else "n/a"
        add(2, f"Burst: {c['learners']} learners open the page within 1 s, time to interactive p50 / p95"
            + (f" ({c['failed']} never interactive)" if c["failed"] else ""),
            f"{s(c['tti']['median'])} / {s(c['tti']['p95'])}", peer, "median <= 1.0 s, p95 <= 2.0 s", met(ok))
        cm = c["memory"]
        peer = f"stock voila {v['memory']['rss_mib'] / max(v['memory']['kernels'], 1):.0f} MiB" if v else "n/a"
        add("2b", f"Burst: kernel resident memory per open session (RSS; PSS {cm['pss_mib'] / max(cm['kernels'], 1):.0f} MiB)",
            f"{cm['rss_mib'] / max(cm['kernels'], 1):.0f} MiB", peer, "(none)", "-")
    if "companion_html" in burst:
        c, v = burst["companion_html"], burst.get("voila_html")
        peer = (f"stock voila {s(v['html']['median'])} / {s(v['html']['p95'])}" + (f" ({v['failed']} never arrived)" if v["failed"] else "")) if v else "n/a"
        never = f" ({c['failed']} of {plan['learners']} never arrived: {'; '.join(c.get('errors', []))})" if c["failed"] else ""
        add("2c", f"Burst, server share only: the same arrivals as plain HTTP GETs, page fully sent, p50 / p95{never}",
            f"{s(c['html']['median'])} / {s(c['html']['p95'])}", peer, "(diagnostic)", "-")
    saves = results.get("saves")
    if saves:
        c, v = saves["companion"]["round_trip"], saves["voila"]["round_trip"]
        add(3, f"Save round trip, Save click until the store has the row, p50 / p95 of {c['n']}",
            f"{ms(c['median'])} / {ms(c['p95'])}", f"stock voila {ms(v['median'])} / {ms(v['p95'])}", "p95 <= 100 ms", met(c["p95"] <= 0.100))
    store = results.get("store")
    if store:
        ok = store["per_second"] >= 2000 and store["lost"] == 0 and store["in_order"]
        single = results.get("store_single")
        add(4, f"Store throughput: {store['writers']} processes saving for {store['seconds']:.0f} s (SQLite WAL); "
            f"{store['saved']:,} saves returned, {store['stored']:,} events stored, lost {store['lost']}, "
            f"each writer's events in order: {'yes' if store['in_order'] else 'NO'}",
            f"{store['per_second']:,.0f} events/s (save p95 {ms(store['latency']['p95'])}, max {s(store['latency']['max'])})",
            f"1 process alone: {single['per_second']:,.0f} events/s" if single else "n/a", ">= 2,000 events/s, 0 lost", met(ok))
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
        add(f"5e ({size:,})", f"Evaluation export (CSV), {size:,} learners", _seconds(ce), f"nbgrader export {_seconds(ne)}" + _ratio(ce, ne), "(none)", "-")
        if "companion_rebuild" in figures:
            add(f"5r ({size:,})", f"Progress rebuild, {size:,} learners: once, when the notebooks change which activities are required (saves keep it current)",
                _seconds(figures["companion_rebuild"]), "-", "(none)", "-")
    return "\n".join(lines)


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

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}{' (with local changes)' if dirty else ''}, "
            f"{os.cpu_count()} cores, load average {load}, Python {platform.python_version()}, Voila {voila.__version__}")


def report(results: dict, plan: dict, started_env: str) -> str:
    parts = [
        f"Run: {started_env}; finished with load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}.",
        "",
        table(results, plan),
        "",
    ]
    if results.get("tti") or results.get("burst"):
        parts += ["Where a page load's time goes (medians, seconds from the start of navigation):", "", breakdown(results), ""]
        failed = sorted({u for k in ("companion", "voila") for f in (results.get("tti", {}).get(k), results.get("burst", {}).get(k)) if f for u in f["failed_requests"]})
        if failed:
            parts += ["Requests that failed during page loads (the pages still worked): " + ", ".join(f"`{u}`" for u in failed), ""]
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
    parser.add_argument("--only", default="pages,burst,store,dashboard", help="comma-separated subset of: pages (1 and 3), burst (2), store (4), dashboard (5)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (servers' logs, stores)")
    args = parser.parse_args(argv)
    plan = dict(SMOKE if args.smoke else QUICK if args.quick else FULL)
    chosen = [x.strip() for x in args.only.split(",") if x.strip()]
    steps = {"pages": run_pages, "burst": run_burst, "store": run_store, "dashboard": run_dashboard}
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
