"""Rosters: the CSV file of supervisors a facilitator brings.

Columns: ``username, name, email, cohort, department``; more columns are kept
as extra fields. A malformed file is refused whole, with every bad line and
why, so a half-imported cohort never happens.

Example::

    >>> from companion.roster import parse_roster
    >>> people = parse_roster("username,name,email,cohort,department\\nana,Ana R,ana@x.org,Winter,HR\\n")
    >>> people[0]["cohort"]
    'Winter'
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from .errors import RosterError
from .identity import valid_username

COLUMNS = ("username", "name", "email", "cohort", "department")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_FIELD = 200


def parse_roster(text: str, label: str = "roster.csv") -> list[dict]:
    """Validate roster CSV text; every problem at once in one :class:`RosterError`."""
    text = text.lstrip("\ufeff")
    if "\x00" in text:
        lines = [str(n) for n, line in enumerate(text.splitlines(), 1) if "\x00" in line]
        raise RosterError(
            f"{label}: line {', '.join(lines[:10])} holds a NUL character, which is not text; the file may be a "
            "spreadsheet saved in another format. Save it as 'CSV UTF-8' and try again. Nothing was imported."
        )
    reader = csv.reader(io.StringIO(text))
    try:
        rows = list(reader)
    except csv.Error as error:
        raise RosterError(
            f"Line {reader.line_num} of {label} cannot be read as CSV ({error}); a roster field holds at most "
            f"{MAX_FIELD} characters, so look for a stray quote mark that runs on. Nothing was imported."
        )
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise RosterError(f"{label} is empty; it needs a header line: {', '.join(COLUMNS)}.")
    header = [cell.strip().lower() for cell in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise RosterError(
            f"{label}: the header lacks {', '.join(missing)}. The first line must name the columns "
            f"{', '.join(COLUMNS)} (more columns are kept). Nothing was imported."
        )
    people, problems, seen = [], [], {}
    for number, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(f"Line {number} of {label}: {len(row)} fields, but the header has {len(header)}")
            continue
        record = {key: value.strip() for key, value in zip(header, row)}
        username = record["username"]
        if not valid_username(username):
            problems.append(f"Line {number} of {label}: username '{username[:40]}' is not usable (letters, digits, '.', '_', '@', '-'; at most 64)")
        elif username in seen:
            problems.append(f"Line {number} of {label}: username '{username}' already appears on line {seen[username]}")
        else:
            seen[username] = number
        if record["email"] and not EMAIL.match(record["email"]):
            problems.append(f"Line {number} of {label}: email '{record['email'][:60]}' is not an address")
        long_fields = [key for key, value in record.items() if len(value) > MAX_FIELD]
        if long_fields:
            problems.append(f"Line {number} of {label}: {', '.join(long_fields)} longer than {MAX_FIELD} characters")
        people.append(
            {
                **{c: record[c] for c in COLUMNS},
                "extra": {k: v for k, v in record.items() if k not in COLUMNS},
            }
        )
    if problems:
        raise RosterError("\n".join(problems) + f"\nNothing was imported; fix {label} and run the command again.")
    if not people:
        raise RosterError(f"{label} has a header but no people; add one line per supervisor.")
    return people


def read_roster(path: Path | str) -> list[dict]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RosterError(f"{path} does not exist; give the path of the roster CSV file.")
    except UnicodeDecodeError:
        raise RosterError(f"{path} is not UTF-8 text; save it from your spreadsheet as 'CSV UTF-8' and try again.")
    return parse_roster(text, path.name)
