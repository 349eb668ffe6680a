"""Rosters: a malformed file is refused whole with every bad line and why; a re-import updates
people and never loses their work. The ``companion roster import`` tests need cli.py's wiring."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from companion.cli import main
from companion.errors import RosterError
from companion.roster import parse_roster, read_roster
from companion.store import LearnerRow, open_store

GOOD = """username,name,email,cohort,department,employee_id
ana,Ana Reyes,ana@psesd.example.org,Winter 2021,Teaching and Learning,E100
ben,Ben Cho,ben@psesd.example.org,Winter 2021,Early Learning,E101
"""

BAD = """username,name,email,cohort,department
ana,Ana Reyes,ana@psesd.example.org,Winter 2021,HR
bad name,Someone,some@psesd.example.org,Winter 2021,HR
cy,Cy,not-an-email,Winter 2021,HR
ana,Ana Again,ana2@psesd.example.org,Winter 2021,HR
dee,Dee,dee@psesd.example.org,Winter 2021
"""


def write(tmp_path, text, name="roster.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_malformed_roster_names_every_bad_line_and_why(tmp_path):
    with pytest.raises(RosterError) as caught:
        read_roster(write(tmp_path, BAD))
    message = str(caught.value)
    assert "Line 3 of roster.csv: username 'bad name' is not usable" in message
    assert "Line 4 of roster.csv: email 'not-an-email' is not an address" in message
    assert "Line 5 of roster.csv: username 'ana' already appears on line 2" in message
    assert "Line 6 of roster.csv: 4 fields, but the header has 5" in message
    assert message.rstrip().endswith("Nothing was imported; fix roster.csv and run the command again.")


@pytest.mark.parametrize(
    "text, message",
    [("", "is empty"), ("name,email\nAna,a@x.org\n", "the header lacks username, cohort, department"), ("username,name,email,cohort,department\n", "has a header but no people")],
    ids=["empty", "no username column", "no people"],
)
def test_a_roster_without_people_or_columns_says_what_it_needs(text, message):
    with pytest.raises(RosterError, match=message):
        parse_roster(text)


def test_a_spreadsheet_export_with_a_byte_order_mark_and_extra_columns_reads(tmp_path):
    people = read_roster(write(tmp_path, "\ufeff" + GOOD.replace("\n", "\r\n")))
    assert [p["username"] for p in people] == ["ana", "ben"]
    assert people[0]["extra"] == {"employee_id": "E100"}


def test_a_reimport_updates_people_and_keeps_their_work(course, tmp_path):
    store = open_store(course.db_url)
    store.save("ana", "s1", "s1-why", "responded", {"text": "Written before the roster."}, done=True, shared=True)
    store.add_feedback("ana", "s1-why", "lee", "Thank you.")
    assert store.upsert_learners(read_roster(write(tmp_path, GOOD))) == (1, 1)
    assert store.learner("ana").cohort == "Winter 2021"
    moved = GOOD.replace("Winter 2021,Teaching and Learning", "Spring 2022,Human Resources")
    assert store.upsert_learners(read_roster(write(tmp_path, moved))) == (0, 2)
    ana = store.learner("ana")
    assert (ana.cohort, ana.department) == ("Spring 2022", "Human Resources")
    assert store.response("ana", "s1-why").value == {"text": "Written before the roster."}
    assert store.response("ana", "s1-why").shared is True
    assert [f.text for f in store.feedback("ana", "s1-why")] == ["Thank you."]
    assert len(store.events("ana")) == 1
    with store.session() as db:
        assert db.scalar(select(LearnerRow.extra).where(LearnerRow.username == "ben")) == {"employee_id": "E101"}


# The command (needs `companion roster import` wired in cli.py) ------------------------------


def test_the_import_command_adds_then_updates(course, tmp_path, capsys):
    path = write(tmp_path, GOOD)
    assert main(["roster", "import", str(path)]) == 0
    assert "2 added, 0 updated" in capsys.readouterr().out
    assert main(["roster", "import", str(path)]) == 0
    assert "0 added, 2 updated" in capsys.readouterr().out
    assert open_store(course.db_url).learner("ben").name == "Ben Cho"


def test_the_import_command_refuses_a_malformed_file_whole(course, tmp_path, capsys):
    assert main(["roster", "import", str(write(tmp_path, BAD))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Line 3 of roster.csv")
    assert err.count("Line ") == 4 and "Traceback" not in err
    assert open_store(course.db_url).learners() == [], "nothing was imported, not even the good lines"


def test_the_import_command_names_a_missing_file(course, tmp_path, capsys):
    assert main(["roster", "import", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "row, message",
    [
        ("bea,Bea\x00,bea@example.org,North,HR", "line 3 holds a NUL character"),
        ("bea," + "x" * 140_000 + ",bea@example.org,North,HR", "Line 3 of roster.csv cannot be read as CSV (field larger than field limit"),
        ('bea,"Bea,bea@example.org,North,HR\ncy,' + "y" * 140_000, "cannot be read as CSV"),
    ],
    ids=["nul", "huge-field", "runaway-quote"],
)
def test_a_roster_with_a_nul_or_a_huge_field_is_one_message_exit_2_and_imports_nothing(course, tmp_path, capsys, row, message):
    roster = tmp_path / "roster.csv"
    roster.write_text("username,name,email,cohort,department\nana,Ana,ana@example.org,North,HR\n" + row + "\n", encoding="utf-8")
    assert main(["roster", "import", str(roster)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Nothing was imported" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert open_store(course.db_url).learners() == []
