"""The companion command: one clear message and a non-zero exit for every error, never a traceback."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from urllib.parse import urlsplit

from companion.cli import main
from companion.identity import server_secret, token_from_query, verify


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


def test_links_give_each_learner_the_home_page_at_the_server_root_with_their_token(course, tmp_path, capsys):
    roster = tmp_path / "roster.csv"
    roster.write_text("username,name,email,cohort,department\nana,Ana Ruiz,ana@psesd.example,Winter,HR\nbo.lee,Bo Lee,bo@psesd.example,Winter,HR\n")
    assert main(["links", "--roster", str(roster), "--base-url", "https://companion.example.org/base/"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["username"] for r in rows] == ["ana", "bo.lee"]
    for row in rows:
        parts = urlsplit(row["link"])
        assert (parts.scheme, parts.netloc, parts.path) == ("https", "companion.example.org", "/base/"), row["link"]
        assert row["link"].startswith("https://companion.example.org/base/?learner=")
        assert verify(token_from_query(parts.query), server_secret(course.home)) == row["username"]


def test_the_dashboard_link_is_the_friendly_path(course, capsys):
    assert main(["dashboard", "--name", "lee", "--base-url", "https://companion.example.org"]) == 0
    link = capsys.readouterr().out.splitlines()[-1]
    assert link.startswith("https://companion.example.org/dashboard?facilitator=")


def test_canvas_links_give_each_session_its_number_path(course, capsys):
    assert main(["canvas", "links", "--base-url", "https://companion.example.org"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["session"], r["url"]) for r in rows] == [
        ("s1", "https://companion.example.org/session/1"),
        ("s2", "https://companion.example.org/session/2"),
    ]


def test_backup_and_restore_errors_are_one_message_without_a_traceback(course, tmp_path):
    import os

    env = {**os.environ, "COMPANION_COURSE_DIR": str(course.root), "COMPANION_HOME": str(course.home)}
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 50)
    result = run("restore", str(garbage), cwd=tmp_path, env=env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"error: {garbage} is not a companion store backup") and "Traceback" not in result.stderr
    result = run("backup", "-o", str(tmp_path / "b.db"), cwd=tmp_path, env=env)
    assert result.returncode == 2 and "There is no store at" in result.stderr and "Traceback" not in result.stderr
