"""`companion remind` against a real SMTP server (aiosmtpd on a free port), driven through the command line.

The fixture course has five supervisors on the roster: ana has not started; ben
stalled 20 days ago (past the dashboard's 14); eve paused 10 days ago (not stalled
by the dashboard's rule); cam is active; dee has no email. lee is the facilitator,
on the roster too. Three items wait for feedback: ben's and cam's shared
reflections and cam's goal check-in. Tests that use the roster run on SQLite and
on PostgreSQL.
"""

from __future__ import annotations

import email
import email.policy
import re
import ssl
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from companion import identity
from companion.cli import main
from companion.settings import load_settings
from companion.store import open_store
from conftest import free_port, new_database

BASE = "https://companion.example.org"
SECRET_TEXT = "the words ben wrote in confidence"
ROSTER = [
    dict(username="ana", name="Ana Lopez", email="ana@example.org", cohort="Winter"),
    dict(username="ben", name="Ben Okafor", email="ben@example.org", cohort="Winter"),
    dict(username="cam", name="Cam Tran", email="cam@example.org", cohort="Winter"),
    dict(username="dee", name="Dee Marsh", email="", cohort="Winter"),
    dict(username="eve", name="Eve Ruiz", email="eve@example.org", cohort="Winter"),
    dict(username="lee", name="Lee Park", email="lee@example.org", cohort=""),
]
EVERYONE = {("ana@example.org", "not-started"), ("ben@example.org", "stalled:s1"), ("lee@example.org", "digest")}


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts and refuses the recipients it is told to."""

    def __init__(self, refuse: tuple[str, ...] = ()):
        self.refuse = refuse
        self.mails: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.mails.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content, policy=email.policy.default)))
        return "250 Message accepted"

    def to(self, address: str) -> email.message.EmailMessage:
        found = [mail for rcpt, mail in self.mails if rcpt == [address]]
        assert len(found) == 1, f"one message to {address}, got {len(found)}"
        return found[0]


def only_series_login(server, session, envelope, mechanism, auth_data):
    """Accepts the login series / right-password only."""
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"series", b"right-password")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp():
    """Start a real SMTP server on a free port: ``smtp(refuse=(...), login=True)`` returns (inbox, port)."""
    started = []

    def start(refuse=(), login=False, tls=None):
        """``tls``: an ssl.SSLContext to offer STARTTLS with (then a login is accepted only after it)."""
        inbox, port = Inbox(refuse), free_port()
        extra = dict(authenticator=only_series_login, auth_require_tls=tls is not None) if login else {}
        if tls is not None:
            extra.update(tls_context=tls, require_starttls=True)
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **extra)
        controller.start()
        started.append(controller)
        return inbox, port

    yield start
    for controller in started:
        controller.stop()


def configure(settings, port: int | None, starttls: bool = False, quiet_days: int = 7) -> None:
    """Point the course's [email] at the test server (``port`` None: no [email] at all) and make lee the facilitator."""
    path = settings.root / "course" / "course.toml"
    text = path.read_text().replace("link_days = 120\n", 'link_days = 120\nfacilitators = ["lee"]\n', 1)
    if port is not None:
        text += (
            f'\n[email]\nhost = "127.0.0.1"\nport = {port}\nsender = "Leadership Series <series@example.org>"\n'
            f"starttls = {'true' if starttls else 'false'}\nquiet_days = {quiet_days}\n"
        )
    path.write_text(text)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request, course, monkeypatch):
    """The course's database: its own SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return course.db_url
    url = new_database(request.getfixturevalue("postgres_url"))
    monkeypatch.setenv("COMPANION_DB_URL", url)
    return url


@pytest.fixture
def cohort(database):
    """The roster and the saves described at the top of this module; returns the store."""
    store = open_store(database)
    store.upsert_learners(ROSTER)
    long_ago = datetime.now(timezone.utc) - timedelta(days=20, hours=1)
    store.bulk_save([
        dict(username="ben", session_id="s1", activity_id="s1-why", verb="responded",
             value={"text": SECRET_TEXT}, done=True, shared=True, at=long_ago),
        dict(username="eve", session_id="s1", activity_id="s1-why", verb="responded",
             value={"text": SECRET_TEXT}, done=True, at=datetime.now(timezone.utc) - timedelta(days=10)),
    ])
    store.save("cam", "s1", "s1-why", "responded", {"text": SECRET_TEXT}, done=True, shared=True)
    store.save("cam", "s1", "s1-goal", "responded", {"goal": "Ask families first"}, done=True)
    store.add_check_in("cam", "s1", "s1-goal", "In progress", SECRET_TEXT)
    return store


def sent_since_a_day(store) -> set:
    return store.reminders_sent(datetime.now(timezone.utc) - timedelta(days=1))


def link_in(body: str, path: str) -> tuple[str, str]:
    match = re.search(re.escape(f"{BASE}/{path}?") + r"(learner|facilitator)=(\S+)", body)
    assert match, f"a personal link to {path} in:\n{body}"
    return match.group(1), match.group(2)


def one_error(err: str) -> str:
    assert "Traceback" not in err and err.startswith("error: ") and err.strip().count("\n") == 0, err
    return err


def test_the_right_people_get_the_right_messages(cohort, smtp, capsys):
    inbox, port = smtp()
    settings = load_settings()
    configure(settings, port)
    assert main(["remind", "--base-url", BASE, "--send"]) == 0
    out, err = capsys.readouterr()
    assert "Sent 3 messages; 0 skipped (written to within 7 days)." in out
    assert out.count("): sent") == 3 and "[3/3]" in out
    assert "dee" in err and "no email" in err  # named, not written to
    assert sorted(r for rcpt, _ in inbox.mails for r in rcpt) == ["ana@example.org", "ben@example.org", "lee@example.org"]
    secret = identity.server_secret(settings.home)

    ana = inbox.to("ana@example.org")
    assert ana["To"].addresses[0].display_name == "Ana Lopez" and ana["From"].addresses[0].addr_spec == "series@example.org"
    assert "your first session is ready" in ana["Subject"]
    body = ana.get_content()
    assert body.startswith("Hello Ana Lopez,") and 'Session 1, "A session with every kind of activity", is ready whenever you are' in body
    kind, token = link_in(body, "session/1")
    assert kind == "learner" and identity.verify(token, secret) == "ana"

    ben = inbox.to("ben@example.org")
    assert "pick up where you left off" in ben["Subject"]
    body = ben.get_content()
    assert "Everything you have done" in body and 'Your next session is Session 1, "A session with every kind of activity"' in body
    assert identity.verify(link_in(body, "session/1")[1], secret) == "ben"

    lee = inbox.to("lee@example.org")
    assert lee["Subject"] == "3 items wait for your feedback"
    body = lee.get_content()
    assert "2 shared reflections and 1 goal check-in from supervisors are waiting for your feedback" in body
    oldest = [line for line in body.splitlines() if line.startswith("- ")]
    assert oldest[0] == '- Session 1, "Your why" (shared reflection): waiting 20 days'
    assert sorted(oldest[1:]) == [
        '- Session 1, "Your Transformational Value goal" (goal check-in): waiting less than an hour',
        '- Session 1, "Your why" (shared reflection): waiting less than an hour',
    ]
    kind, token = link_in(body, "dashboard")
    assert kind == "facilitator" and identity.verify(token, secret, purpose="facilitator") == "lee"
    everything = "".join(mail.as_string() for _, mail in inbox.mails)
    assert SECRET_TEXT not in everything, "no text a learner wrote goes into a mail"
    assert "Cam" not in body and "Ben" not in body, "the digest names activities, not learners"
    assert sent_since_a_day(cohort) == EVERYONE


def test_the_dry_run_shows_the_messages_and_sends_and_records_nothing(cohort, smtp, capsys):
    inbox, port = smtp()
    configure(load_settings(), port)
    assert main(["remind", "--base-url", BASE]) == 0
    out, _ = capsys.readouterr()
    assert "To: Ana Lopez <ana@example.org>" in out and "To: Lee Park <lee@example.org>" in out
    assert "Subject: 3 items wait for your feedback" in out and "  | Hello Ben Okafor," in out
    assert "Would send 3 messages; 0 skipped (written to within 7 days). Nothing was sent: add --send to send them." in out
    assert inbox.mails == [] and sent_since_a_day(cohort) == set()


def test_a_second_send_within_the_quiet_period_sends_nothing(cohort, smtp, capsys):
    inbox, port = smtp()
    configure(load_settings(), port)
    assert main(["remind", "--base-url", BASE, "--send"]) == 0
    assert len(inbox.mails) == 3
    capsys.readouterr()
    assert main(["remind", "--base-url", BASE, "--send"]) == 0
    out, _ = capsys.readouterr()
    assert "Sent 0 messages; 3 skipped (written to within 7 days)." in out
    assert len(inbox.mails) == 3
    # A new stall is a new topic: ben finishing session 1 and stalling in session 2 would be written to again;
    # here cam's new check-in does not reopen lee's digest within the quiet period.
    cohort.add_check_in("cam", "s1", "s1-goal", "Done", "")
    assert main(["remind", "--base-url", BASE, "--send"]) == 0
    assert len(inbox.mails) == 3


def test_after_the_quiet_period_they_are_written_to_again(cohort, smtp, capsys):
    inbox, port = smtp()
    configure(load_settings(), port, quiet_days=7)
    for recipient, topic in EVERYONE:
        cohort.record_reminder(recipient, topic, "an old reminder", at=datetime.now(timezone.utc) - timedelta(days=8))
    assert main(["remind", "--base-url", BASE, "--send"]) == 0
    assert len(inbox.mails) == 3


def test_a_refused_login_is_one_message_and_nothing_is_recorded(cohort, smtp, capsys, monkeypatch):
    inbox, port = smtp(login=True)
    configure(load_settings(), port)
    monkeypatch.setenv("COMPANION_SMTP_USER", "series")
    monkeypatch.setenv("COMPANION_SMTP_PASSWORD", "wrong-password")
    assert main(["remind", "--base-url", BASE, "--send"]) == 2
    out, err = capsys.readouterr()
    assert "refused the login" in one_error(err) and "COMPANION_SMTP_USER" in err and f"127.0.0.1:{port}" in err
    assert "Sent" not in out and inbox.mails == [] and sent_since_a_day(cohort) == set()
    # The same server takes the right password: the login is really used.
    monkeypatch.setenv("COMPANION_SMTP_PASSWORD", "right-password")
    assert main(["remind", "--base-url", BASE, "--send"]) == 0
    assert len(inbox.mails) == 3 and sent_since_a_day(cohort) == EVERYONE


def test_an_unreachable_server_is_one_message_and_nothing_is_recorded(cohort, capsys):
    port = free_port()  # nothing listens there
    configure(load_settings(), port)
    assert main(["remind", "--base-url", BASE, "--send"]) == 2
    out, err = capsys.readouterr()
    assert f"Could not reach the mail server at 127.0.0.1:{port}" in one_error(err) and "[email]" in err
    assert "Sent" not in out and sent_since_a_day(cohort) == set()


def test_no_mail_server_set_names_the_setting(cohort, capsys):
    configure(load_settings(), None)
    assert main(["remind", "--base-url", BASE]) == 0  # the dry run still shows what would go
    out, err = capsys.readouterr()
    assert "Would send 3 messages" in out and "[email] in course/course.toml" in err
    assert main(["remind", "--base-url", BASE, "--send"]) == 2
    _, err = capsys.readouterr()
    assert "No mail server is set" in one_error(err) and "host" in err and "[email] in course/course.toml" in err
    assert sent_since_a_day(cohort) == set()


def test_starttls_asked_but_not_offered_is_one_message(cohort, smtp, capsys):
    inbox, port = smtp()
    configure(load_settings(), port, starttls=True)
    assert main(["remind", "--base-url", BASE, "--send"]) == 2
    _, err = capsys.readouterr()
    assert "does not offer STARTTLS" in one_error(err)
    assert inbox.mails == [] and sent_since_a_day(cohort) == set()


def test_a_refused_recipient_is_named_and_the_others_are_sent(cohort, smtp, capsys):
    inbox, port = smtp(refuse=("ben@example.org",))
    configure(load_settings(), port)
    assert main(["remind", "--base-url", BASE, "--send"]) == 1
    out, err = capsys.readouterr()
    assert "ben@example.org (stalled:s1): refused by the mail server (550" in out
    assert "refused 1 recipient(s): ben@example.org" in err and "Sent 2 messages" in out
    assert sorted(r for rcpt, _ in inbox.mails for r in rcpt) == ["ana@example.org", "lee@example.org"]
    assert sent_since_a_day(cohort) == EVERYONE - {("ben@example.org", "stalled:s1")}


def test_a_facilitator_email_can_be_given_when_the_roster_has_none(course, smtp, capsys):
    store = open_store(course.db_url)
    store.upsert_learners([r for r in ROSTER if r["username"] != "lee"])
    store.save("cam", "s1", "s1-why", "responded", {"text": SECRET_TEXT}, done=True, shared=True)
    inbox, port = smtp()
    configure(load_settings(), port)
    assert main(["remind", "--base-url", BASE]) == 0
    _, err = capsys.readouterr()
    assert "no email for facilitator lee" in err and "--facilitator-email lee=ADDRESS" in err
    assert main(["remind", "--base-url", BASE, "--send", "--facilitator-email", "lee=lee.park@example.org"]) == 0
    assert inbox.to("lee.park@example.org")["Subject"] == "1 item waits for your feedback"
    capsys.readouterr()
    assert main(["remind", "--base-url", BASE, "--facilitator-email", "kim=kim@example.org"]) == 2
    assert "kim" in one_error(capsys.readouterr().err)


def test_with_no_facilitators_listed_it_says_why_no_digest_goes(cohort, smtp, capsys):
    inbox, port = smtp()
    settings = load_settings()
    configure(settings, port)
    path = settings.root / "course" / "course.toml"
    path.write_text(path.read_text().replace('facilitators = ["lee"]\n', ""))
    assert main(["remind", "--base-url", BASE, "--send"]) == 0
    out, err = capsys.readouterr()
    assert "Sent 3 messages" in out and "3 item(s) wait for feedback, but [server] facilitators" in err
    # lee is now just a supervisor who has not started
    assert sorted(r for rcpt, _ in inbox.mails for r in rcpt) == ["ana@example.org", "ben@example.org", "lee@example.org"]
    assert "your first session is ready" in inbox.to("lee@example.org")["Subject"]


@pytest.fixture
def tls_context(tmp_path, monkeypatch):
    """A server TLS context with a self-signed certificate for 127.0.0.1, which this process trusts (SSL_CERT_FILE)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, text=True,
    )
    assert made.returncode == 0, f"openssl could not make a test certificate (apt-get install openssl): {made.stderr}"
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_starttls_and_a_login_over_it(cohort, smtp, tls_context, capsys, monkeypatch):
    inbox, port = smtp(login=True, tls=tls_context)
    configure(load_settings(), port, starttls=True)
    monkeypatch.setenv("COMPANION_SMTP_USER", "series")
    monkeypatch.setenv("COMPANION_SMTP_PASSWORD", "right-password")
    assert main(["remind", "--base-url", BASE, "--send"]) == 0
    assert "Sent 3 messages" in capsys.readouterr().out and len(inbox.mails) == 3
    assert sent_since_a_day(cohort) == EVERYONE
    # Without STARTTLS this server offers no login: one message, nothing more sent.
    path = load_settings().root / "course" / "course.toml"
    path.write_text(path.read_text().replace("starttls = true", "starttls = false").replace("quiet_days = 7", "quiet_days = 0"))
    assert main(["remind", "--base-url", BASE, "--send"]) == 2
    assert "does not accept a login here" in one_error(capsys.readouterr().err)
    assert len(inbox.mails) == 3
