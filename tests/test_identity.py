"""Who the learner is: local login, a personal signed link, or JupyterHub."""

from __future__ import annotations

import csv
import io
import time

import pytest

from companion.cli import main
from companion.errors import LinkError
from companion.identity import current, server_secret, sign, token_from_query, verify

SECRET = b"s" * 32


def test_a_signed_token_proves_its_learner_until_it_expires():
    token = sign("ana", SECRET, days=1)
    assert verify(token, SECRET) == "ana"
    with pytest.raises(LinkError, match="This link expired on"):
        verify(token, SECRET, now=time.time() + 2 * 86400)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: "ben" + t[3:],  # another learner's name
        lambda t: t.replace(t.split(".")[1], str(int(t.split(".")[1]) + 999999)),  # a later expiry
        lambda t: t[:-2],  # cut short when copied
        lambda t: "garbage",
    ],
    ids=["name", "expiry", "truncated", "garbage"],
)
def test_an_altered_token_proves_nothing(tamper):
    with pytest.raises(LinkError, match="This link is not valid"):
        verify(tamper(sign("ana", SECRET)), SECRET)


def test_a_token_signed_with_another_secret_or_purpose_proves_nothing():
    with pytest.raises(LinkError, match="not valid"):
        verify(sign("ana", b"other" * 8), SECRET)
    with pytest.raises(LinkError, match="not valid"):
        verify(sign("ana", SECRET), SECRET, purpose="facilitator")


def test_a_missing_link_says_where_to_find_the_right_one():
    with pytest.raises(LinkError, match="needs your personal link.*Canvas"):
        verify(None, SECRET)


def test_the_mode_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    monkeypatch.setenv("COMPANION_IDENTITY", "local")
    monkeypatch.setenv("COMPANION_LEARNER", "local.person")
    assert current(tmp_path).username == "local.person"
    monkeypatch.setenv("COMPANION_IDENTITY", "link")
    token = sign("linked", server_secret(tmp_path))
    assert current(tmp_path, f"learner={token}").username == "linked"
    with pytest.raises(LinkError):
        current(tmp_path, "")
    monkeypatch.setenv("JUPYTERHUB_USER", "hub-user")
    assert current(tmp_path, "").username == "hub-user"


def test_the_server_secret_is_made_once_and_kept_private(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPANION_SECRET", raising=False)
    first = server_secret(tmp_path)
    assert server_secret(tmp_path) == first and len(first) == 64
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0


def test_links_writes_a_working_personal_link_for_everyone_on_the_roster(course, tmp_path, capsys):
    roster = tmp_path / "roster.csv"
    roster.write_text("username,name,email,cohort,department\nana,Ana Ruiz,ana@psesd.example,Winter,HR\nbo.lee,Bo Lee,bo@psesd.example,Winter,Transportation\n")
    out = tmp_path / "links.csv"
    assert main(["links", "--roster", str(roster), "--base-url", "https://companion.example.org/", "-o", str(out)]) == 0
    assert "Wrote 2 personal links" in capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["username"] for r in rows] == ["ana", "bo.lee"]
    for row in rows:
        assert row["link"].startswith("https://companion.example.org/?learner="), "the friendly address of the home page"
        token = token_from_query(row["link"].split("?", 1)[1])
        assert verify(token, server_secret(course.home)) == row["username"]


def test_links_refuses_a_malformed_roster_whole_and_writes_nothing(course, tmp_path, capsys):
    roster = tmp_path / "roster.csv"
    roster.write_text("username,name,email,cohort,department\nana,Ana,ana@x.org,W,HR\nbad name,B,b@x.org,W,HR\ncy,C,not-an-email,W,HR\n")
    out = tmp_path / "links.csv"
    assert main(["links", "--roster", str(roster), "--base-url", "https://x.org", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Line 3 of roster.csv: username 'bad name' is not usable" in err
    assert "Line 4 of roster.csv: email 'not-an-email' is not an address" in err
    assert "Nothing was imported" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_pages_name_the_learner_as_the_roster_does_and_never_a_system_account_as_a_person():
    from companion.identity import Identity, display_name

    assert display_name(Identity("ana", "link"), "Ana Lopez") == "Ana Lopez"
    assert display_name(Identity("ana", "local")) == "ana"
    assert display_name(Identity("root", "local")) is None
    assert display_name(Identity("daemon", "local")) is None
    assert display_name(Identity("root", "local"), "Rita Ortiz") == "Rita Ortiz", "a roster name is a person's"
