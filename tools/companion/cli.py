"""The ``companion`` command: each subcommand reads the settings, makes one library call, prints.

Errors from the library (:class:`CourseError` and its kinds) become one clear
message on stderr and exit status 2; never a traceback, never exit 0.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

from .errors import CourseError
from .settings import load_settings


def cmd_check(args) -> int:
    from .catalog import load_catalog

    catalog = load_catalog(load_settings())
    problems = catalog.problems()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found; fix them and run 'companion check' again.", file=sys.stderr)
        return 1
    count = len(catalog.all_activities())
    print(f"All {len(catalog.settings.sessions)} sessions are in order: {count} activities.")
    return 0


def cmd_release(args) -> int:
    from .release import publish, release

    settings = load_settings()
    progress = lambda s: print(f"  released session {s.number}: {s.page}", flush=True)  # noqa: E731
    if args.to:
        pages = publish(settings, args.to, progress)
        print(f"Published the learners' copy ({len(pages)} pages and course/course.toml) in {args.to}: commit it to the branch nbgitpuller pulls, or share it read-only.")
        return 0
    pages = release(settings, progress)
    print(f"Released {len(pages)} sessions into {pages[0].parent}.")
    return 0


def cmd_serve(args) -> int:
    from . import server

    settings = load_settings()
    print("Preparing the session pages...", flush=True)
    server.prepare(settings, progress=lambda s: print(f"  released session {s.number}", flush=True))
    print(f"Learner server: http://{args.host}:{args.port}/  (identity: {args.mode}; press Ctrl+C to stop)", flush=True)
    server.serve(settings, port=args.port, mode=args.mode, host=args.host)
    return 0


def cmd_hub_service(args) -> int:
    from . import server
    from .hub import service

    service.check_environment()
    settings = load_settings()
    server.prepare(settings, progress=lambda s: print(f"  released session {s.number}", flush=True))
    print(f"Companion hub service at {os.environ.get('JUPYTERHUB_SERVICE_URL', '?')} (the hub starts and stops it)", flush=True)
    service.run(settings)
    return 0


def cmd_links(args) -> int:
    """Each learner's personal link: the home page (``<base>/?learner=<token>``), from which every session opens."""
    from .identity import personal_link, server_secret
    from .roster import read_roster
    from .server import HOME_PAGE

    settings = load_settings()
    people = read_roster(args.roster)
    secret = server_secret(settings.home)
    days = args.days or settings.server.link_days
    rows = [(p["username"], p["name"], p["email"], personal_link(args.base_url, HOME_PAGE, p["username"], secret, days)) for p in people]
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(["username", "name", "email", "link"])
        writer.writerows(rows)
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"Wrote {len(rows)} personal links to {args.output}; each is valid for {days} days.")
    return 0


def cmd_canvas_links(args) -> int:
    from .canvas import https_note, links_csv, session_links

    links = session_links(load_settings(), args.base_url, hub=args.hub, repo=args.repo, branch=args.branch, parent=args.parent_path)
    sys.stdout.write(links_csv(links))
    note = https_note(args.base_url)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_canvas_package(args) -> int:
    from .canvas import build_package, https_note

    settings = load_settings()
    package = build_package(settings, args.base_url, args.output, hub=args.hub, repo=args.repo, branch=args.branch, parent=args.parent_path)
    print(
        f"Wrote {package}: {len(settings.sessions)} modules, one per session, each with an overview page and a link "
        "to the session page. Import it in Canvas: Settings > Import Course Content > Common Cartridge 1.x Package."
    )
    note = https_note(args.base_url)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _canvas_link_options(command) -> None:
    command.add_argument("--base-url", required=True, help="the public address of the server (or, with --hub, of JupyterHub), e.g. https://companion.example.org")
    command.add_argument("--hub", action="store_true", help="links through JupyterHub instead of a standalone companion server")
    command.add_argument("--repo", help="with --hub: the course repository's clone URL, which nbgitpuller pulls into each learner's home")
    command.add_argument("--branch", default="main", help="with --hub: the branch to pull, where 'companion release --to' was published (default main)")
    command.add_argument("--parent-path", default="", help="with --hub: NBGITPULLER_PARENTPATH, when the single-user servers set it (the folder nbgitpuller pulls into)")


def cmd_roster_import(args) -> int:
    from .roster import read_roster
    from .store import open_store

    people = read_roster(args.file)
    added, updated = open_store(load_settings().db_url).upsert_learners(people)
    print(f"Imported {len(people)} people from {args.file}: {added} added, {updated} updated; work already saved is kept.")
    return 0


def cmd_dashboard(args) -> int:
    from .dashboard import facilitator_link

    settings = load_settings()
    if args.hub:
        print(f"Under JupyterHub the dashboard is the companion service's; facilitators (the hub group {settings.facilitator_group}) sign in to the hub and open:")
        print(f"{args.hub.rstrip('/')}/services/companion/dashboard")
        return 0
    if not args.name:
        raise CourseError("Say whose link to print: companion dashboard --name NAME (or --hub URL under JupyterHub).")
    days = args.days or settings.server.link_days
    link = facilitator_link(settings, args.base_url, args.name, days)
    print(f"{args.name}'s link to the facilitator dashboard, valid for {days:g} days. Keep it private: it opens every shared reflection.")
    print(link)
    return 0


def _store_and_catalog():
    from .catalog import load_catalog
    from .store import open_store

    settings = load_settings()
    return open_store(settings.db_url), load_catalog(settings)


def cmd_export_evaluation(args) -> int:
    from .exports import write_evaluation

    count = write_evaluation(*_store_and_catalog(), args.output)
    print(f"Wrote {count} supervisors to {args.output}.")
    return 0


def cmd_export_xapi(args) -> int:
    from .xapi import write_xapi

    count = write_xapi(*_store_and_catalog(), args.output, args.base_url)
    print(f"Wrote {count} xAPI statements to {args.output}.")
    return 0


def cmd_export_journal(args) -> int:
    from .exports import write_journal

    output = args.output or f"journal-{args.learner}.html"
    path = write_journal(*_store_and_catalog(), args.learner, output, args.format, include_private=args.include_private)
    held = "every reflection, private ones included" if args.include_private else "shared reflections only; add --include-private for all"
    print(f"Wrote {args.learner}'s journal ({held}) to {path}.")
    return 0


def cmd_export_goals(args) -> int:
    from .coaching_exports import write_goals

    count = write_goals(*_store_and_catalog(), args.output)
    print(f"Wrote {count} goal check-in{'s' if count != 1 else ''} to {args.output}. It holds goal text and check-in notes (the series' "
          "record): send it to the evaluation system only if [coaching] goals_in_evaluation_record is true.")
    return 0


def cmd_export_sessions(args) -> int:
    from .coaching_exports import write_sessions

    count = write_sessions(*_store_and_catalog(), args.output, with_names=args.with_names)
    names = "with each learner's name" if args.with_names else "without names; add --with-names to say who answered what"
    print(f"Wrote how useful {count} sessions were, and the suggestions, to {args.output} ({names}).")
    return 0


def cmd_remind(args) -> int:
    """Show (or with --send, send) the reminders due: supervisors not started or stalled, facilitators' digests."""
    from .reminders import facilitator_addresses, plan, preview, send

    store, catalog = _store_and_catalog()
    planned = plan(store, catalog, args.base_url, facilitator_emails=facilitator_addresses(args.facilitator_email or []))
    skipped = f"{len(planned.quiet)} skipped (written to within {planned.quiet_days} days)"
    if not args.send:
        for message in planned.messages:
            print(preview(message, args.lines))
        count = len(planned.messages)
        print(f"Would send {count} message{'s' if count != 1 else ''}; {skipped}. Nothing was sent: add --send to send them.")
        for note in planned.notes(catalog.settings):
            print(f"note: {note}", file=sys.stderr)
        return 0
    done: list = []

    def progress(message, refusal):
        done.append(message)
        status = f"refused by the mail server ({refusal}); not recorded" if refusal else "sent"
        print(f"  [{len(done)}/{len(planned.messages)}] {message.recipient} ({message.topic}): {status}", flush=True)

    outcome = send(store, catalog.settings, planned.messages, progress)
    print(f"Sent {len(outcome.sent)} message{'s' if len(outcome.sent) != 1 else ''}; {skipped}.")
    for note in planned.notes(catalog.settings):
        print(f"note: {note}", file=sys.stderr)
    if outcome.refused:
        refused = ", ".join(m.recipient for m, _ in outcome.refused)
        print(f"error: the mail server refused {len(outcome.refused)} recipient(s): {refused}; they were not recorded. "
              "Check their addresses in the roster and run again; the others were sent.", file=sys.stderr)
        return 1
    return 0


def cmd_upgrade(args) -> int:
    from .store import open_store

    store = open_store(load_settings().db_url)
    print(f"The database is at schema revision {store.revision()}.")
    return 0


def _held(done) -> str:
    """'3 learners, 1 response, 12 events': what a backup or restore copied."""
    return ", ".join(f"{n} {thing}{'' if n == 1 else 's'}" for n, thing in ((done.learners, "learner"), (done.responses, "response"), (done.events, "event")))


def cmd_backup(args) -> int:
    from .store import backup_store

    done = backup_store(load_settings().db_url, args.output, force=args.force,
                        progress=lambda copied, total: print(f"  copied {copied} of {total} pages", flush=True))
    print(f"Backed up the store to {done.path} ({done.size / 1_048_576:.1f} MB, schema revision {done.revision}): {_held(done)}. "
          f"Restore it with 'companion restore {done.path}'.")
    return 0


def cmd_restore(args) -> int:
    from .store import restore_store

    done = restore_store(load_settings().db_url, args.file, force=args.force)
    upgraded = f", its schema upgraded from revision {done.upgraded_from} to {done.revision}" if done.upgraded_from else ""
    if done.set_aside:
        print(f"The store at {done.path} could not be read (damaged); it was moved to {done.set_aside}, not deleted.")
    print(f"Restored {args.file} into the store at {done.path}{upgraded}: {_held(done)}. Start the server again with 'companion serve'.")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="companion", description="Supervisor Companion: the Antiracist Leadership training's workbooks, store and tools.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="check every session notebook's activities against course.toml")
    check.set_defaults(run=cmd_check)

    rel = commands.add_parser("release", help="make the learner versions of the sessions with nbgrader")
    rel.add_argument("--to", metavar="FOLDER", help="also publish the learners' copy for JupyterHub there: the pages, home and course.toml, without facilitator notes or the dashboard")
    rel.set_defaults(run=cmd_release)

    serve = commands.add_parser("serve", help="start the learner server (Voila) on the session pages")
    serve.add_argument("--port", type=int, default=8866, help="port to listen on (default 8866)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--mode", choices=["local", "link"], default="local", help="local: the learner is this login (default); link: each learner opens a personal signed link")
    serve.set_defaults(run=cmd_serve)

    hub_service = commands.add_parser("hub-service", help="run as the companion JupyterHub service that alone holds the store (JupyterHub starts it)")
    hub_service.set_defaults(run=cmd_hub_service)

    links = commands.add_parser("links", help="write every learner's personal signed link, from a roster CSV")
    links.add_argument("--roster", required=True, help="roster CSV: username,name,email,cohort,department")
    links.add_argument("--base-url", required=True, help="the server's public address, e.g. https://companion.example.org")
    links.add_argument("--days", type=float, help="days each link stays valid (default: link_days in course.toml)")
    links.add_argument("-o", "--output", help="CSV file to write (default: print)")
    links.set_defaults(run=cmd_links)

    canvas = commands.add_parser("canvas", help="the session pages' links for Canvas, and the Common Cartridge package")
    canvas_commands = canvas.add_subparsers(dest="canvas_command", required=True, metavar="WHAT")
    canvas_links = canvas_commands.add_parser("links", help="print each session page's link as CSV (with --hub: the JupyterHub, nbgitpuller and LTI forms)")
    _canvas_link_options(canvas_links)
    canvas_links.set_defaults(run=cmd_canvas_links)
    canvas_package = canvas_commands.add_parser("package", help="write the IMS Common Cartridge that Canvas imports as one module per session")
    _canvas_link_options(canvas_package)
    canvas_package.add_argument("-o", "--output", default="course.imscc", help="the package to write (default course.imscc)")
    canvas_package.set_defaults(run=cmd_canvas_package)

    roster = commands.add_parser("roster", help="import the roster of supervisors")
    roster_actions = roster.add_subparsers(dest="action", required=True, metavar="ACTION")
    roster_import = roster_actions.add_parser("import", help="add or update supervisors from a roster CSV (username,name,email,cohort,department; more columns are kept)")
    roster_import.add_argument("file", help="the roster CSV file")
    roster_import.set_defaults(run=cmd_roster_import)

    dashboard = commands.add_parser("dashboard", help="print a facilitator's personal link to the facilitator dashboard")
    dashboard.add_argument("--name", help="the facilitator's username (on [server] facilitators in course.toml, when that list is set)")
    dashboard.add_argument("--hub", metavar="URL", help="under JupyterHub: print the dashboard's address on the hub at URL (no personal link: the hub's login decides)")
    dashboard.add_argument("--base-url", default="http://127.0.0.1:8866", help="the server's public address (default http://127.0.0.1:8866)")
    dashboard.add_argument("--days", type=float, help="days the link stays valid (default: link_days in course.toml)")
    dashboard.set_defaults(run=cmd_dashboard)

    export = commands.add_parser("export", help="export the evaluation feed (CSV or xAPI), the goal history, the sessions' usefulness, or a learner's journal")
    feeds = export.add_subparsers(dest="feed", required=True, metavar="WHAT")
    evaluation = feeds.add_parser("evaluation", help="one CSV row per supervisor: sessions, self-ratings, goals' status, check-ins, feedback")
    evaluation.add_argument("-o", "--output", required=True, help="CSV file to write")
    evaluation.set_defaults(run=cmd_export_evaluation)
    xapi = feeds.add_parser("xapi", help="one xAPI 1.0.3 statement per event and per feedback given, as JSON Lines")
    xapi.add_argument("-o", "--output", required=True, help="JSON Lines file to write")
    xapi.add_argument("--base-url", required=True, help="the server's public address, e.g. https://companion.example.org (names accounts and activities)")
    xapi.set_defaults(run=cmd_export_xapi)
    journal = feeds.add_parser("journal", help="one learner's shared reflections (all with --include-private) and goals, as HTML or Markdown")
    journal.add_argument("--learner", required=True, help="the learner's username")
    journal.add_argument("-o", "--output", help="file to write (default journal-LEARNER.html; .md gives Markdown)")
    journal.add_argument("--format", choices=["html", "markdown"], help="html or markdown (default: from the file name)")
    journal.add_argument("--include-private", action="store_true", help="also the reflections the learner kept private (default: shared ones only)")
    journal.set_defaults(run=cmd_export_journal)
    goals = feeds.add_parser("goals", help="the goal history: one CSV row per goal check-in, with its feedback")
    goals.add_argument("-o", "--output", required=True, help="CSV file to write")
    goals.set_defaults(run=cmd_export_goals)
    sessions = feeds.add_parser("sessions", help="per session: how useful learners found it, and their suggestions")
    sessions.add_argument("-o", "--output", required=True, help="CSV file to write")
    sessions.add_argument("--with-names", action="store_true", help="name who gave each answer (default: counts and suggestions without names)")
    sessions.set_defaults(run=cmd_export_sessions)

    remind = commands.add_parser("remind", help="email supervisors who have not started or have stalled, and facilitators what waits for feedback")
    remind.add_argument("--base-url", required=True, help="the server's public address, e.g. https://companion.example.org (the links in the messages)")
    remind.add_argument("--send", action="store_true", help="send them (default: only show what would be sent)")
    remind.add_argument("--facilitator-email", action="append", metavar="NAME=ADDRESS", help="a facilitator's address when the roster has none (repeatable)")
    remind.add_argument("--lines", type=int, default=4, help="lines of each message shown without --send (default 4)")
    remind.set_defaults(run=cmd_remind)

    upgrade = commands.add_parser("upgrade", help="create or upgrade the database schema")
    upgrade.set_defaults(run=cmd_upgrade)

    backup = commands.add_parser("backup", help="copy the SQLite store to a file, consistently, while the server runs (PostgreSQL: prints the pg_dump command)")
    backup.add_argument("-o", "--output", required=True, help="the backup file to write, e.g. backups/companion-2025-01-31.db")
    backup.add_argument("--force", action="store_true", help="replace the file if it exists (default: refuse)")
    backup.set_defaults(run=cmd_backup)

    restore = commands.add_parser("restore", help="replace the SQLite store with a backup, upgrading its schema; stop the server first")
    restore.add_argument("file", help="a file written by 'companion backup'")
    restore.add_argument("--force", action="store_true", help="replace a store that already holds learners or work (default: refuse)")
    restore.set_defaults(run=cmd_restore)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
