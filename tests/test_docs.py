"""The README, CI and packaging say what the code does."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from companion.cli import parser
from conftest import REPO

README = (REPO / "README.md").read_text()


def fenced_commands(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```\n(.*?)```", text, re.S) if "\n" not in block.strip()]


def test_the_first_screen_gives_the_two_commands():
    first_screen = "\n".join(README.splitlines()[:25])
    assert fenced_commands(first_screen) == [
        "pip install -e . && companion serve",
        "bash tools/setup-tests.sh && python -m pytest",
    ]


def test_ci_runs_exactly_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == fenced_commands(README)[1]
    assert "apt-get install" in "\n".join(ci) and "chromium" in "\n".join(ci)


def subcommands() -> set[str]:
    actions = [a for a in parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(actions[0].choices)


def test_every_command_is_documented_and_every_documented_command_exists():
    documented = set(re.findall(r"`companion ([a-z-]+)", README))
    assert documented == subcommands()


def test_the_help_lists_every_command():
    help_text = parser().format_help()
    for name in subcommands():
        assert name in help_text


def names(requirements) -> set[str]:
    return {re.split(r"[<>=!\[ ]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_environment_yml_has_the_same_dependencies_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = names(project["dependencies"]) | names(project["optional-dependencies"]["test"])
    listed = set()
    text = (REPO / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        match = re.match(r"^\s+- ([A-Za-z][A-Za-z0-9_.-]*)", line)
        if match and match.group(1) not in ("python", "pip", "pip:"):
            listed |= names([match.group(1)])
    assert listed == wanted


def test_public_notebook_functions_have_docstrings_with_examples():
    import companion.activities as activities

    for name in activities.__all__:
        doc = getattr(activities, name).__doc__ or ""
        assert "Example" in doc or ">>>" in doc or "::" in doc, f"{name} needs a docstring with an example"


def test_the_performance_section_gives_the_benchmark_command_and_its_table():
    section = README.split("## Performance", 1)[1]
    assert "python tests/bench/run.py -o bench-results.md" in fenced_commands(section)
    assert "| # | Figure | Companion | Peer | Target | Met? |" in section
    assert "BENCH-TABLE" not in section, "the table of a real run, not the placeholder"
    shown = subprocess.run([sys.executable, "tests/bench/run.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert shown.returncode == 0 and "--quick" in shown.stdout


def test_the_addresses_in_the_readme_are_the_ones_the_commands_give(tmp_path, monkeypatch):
    from companion import canvas, identity, server
    from companion.dashboard import facilitator_link
    from companion.settings import load_settings

    settings = load_settings(REPO)
    base = "https://companion.example.org"
    # The Canvas table's page form, and its example.
    example = re.search(r"`page` \| `https://server/session/<n>`, e\.g\. `([^`]+)`", README)
    assert example, "the Canvas table gives the page form and an example"
    assert example.group(1) == canvas.session_url(settings.session("s2"), base)
    # A learner's personal link, as `companion links` makes it.
    assert "`https://server/?learner=<token>`" in README
    link = identity.personal_link(base, server.HOME_PAGE, "ana", b"k" * 32, 1)
    assert link.startswith(f"{base}/?learner=")
    # The facilitator's link, as `companion dashboard` prints it.
    monkeypatch.setenv("COMPANION_HOME", str(tmp_path))
    printed = re.search(r"It prints `(https://companion\.example\.org/[^`?]*)\?facilitator=<key>`", README)
    assert printed, "the facilitator section shows the dashboard's address"
    assert facilitator_link(load_settings(REPO), base, "lee").startswith(printed.group(1) + "?facilitator=")
    # The README no longer sends anyone to the old addresses of the home page or the dashboard.
    old = [line for line in README.splitlines() if "voila/render/home.ipynb" in line or "voila/render/dashboard.ipynb" in line]
    assert old == []


def test_the_backup_section_gives_commands_the_cli_accepts_and_a_schedule():
    import shlex

    section = README.split("## Backup and restore", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"companion (?:backup|restore) [^`&\n]*", section)
    assert any(c.startswith("companion backup -o backups/companion-$(date") for c in commands), "a nightly backup with a dated name"
    assert any(c.startswith("companion restore ") and "--force" in c for c in commands)
    for command in commands:
        parser().parse_args(shlex.split(re.sub(r"\$\([^)]*\)", "DATE", command))[1:])  # exits (and fails the test) on an option the command does not have
    cron = [line for line in fenced_commands(section) if line.startswith("15 2 * * * ")]
    assert len(cron) == 2 and all("-mtime +30 -delete" in line and "\\%F" in line for line in cron), "SQLite and PostgreSQL, dated and pruned"
    assert "pg_dump --format=custom" in section and "pg_restore --clean --if-exists --no-owner" in section
