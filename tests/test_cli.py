"""The companion command: one clear message and a non-zero exit for every error, never a traceback."""

from __future__ import annotations

import subprocess
import sys

from companion.cli import main


def run(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "companion.cli", *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_outside_a_course_the_command_says_where_to_run_it(tmp_path, monkeypatch):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPANION_")}
    result = run("check", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: No course/course.toml in ")
    assert "set COMPANION_COURSE_DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_course_file_names_the_problem(course, capsys):
    (course.root / "course" / "course.toml").write_text("[course\ntitle = 1\n")
    assert main(["check"]) == 2
    assert "course.toml is not valid TOML" in capsys.readouterr().err


def test_a_missing_roster_file_is_named(course, tmp_path, capsys):
    assert main(["links", "--roster", str(tmp_path / "nope.csv"), "--base-url", "https://x.org"]) == 2
    assert "nope.csv does not exist" in capsys.readouterr().err


def test_upgrade_reports_the_schema_revision(course, capsys):
    assert main(["upgrade"]) == 0
    assert capsys.readouterr().out.startswith("The database is at schema revision 000")
