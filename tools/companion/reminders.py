"""Reminders by email: a nudge to supervisors who have not started or have stalled, a digest to each facilitator.

Who gets what (:func:`plan`):

- **Supervisors** with an email in the roster who have not started any session,
  or who have stalled, by the dashboard's own rule and cutoff
  (:func:`companion.dashboard.figures`: started, not finished, no activity for
  ``STALLED_DAYS``). Each gets a short message naming their next session, with
  their personal signed link to it (:func:`companion.identity.personal_link`,
  as ``companion links`` makes links). Facilitators are not sent these.
- **Facilitators** (``[server] facilitators``) get, when anything waits for
  feedback (:meth:`Store.waiting_for_feedback`), a digest: how many items, the
  oldest with how long each has waited, and their link to the dashboard. It names
  activities only: no reflection text and no learner's name goes into a mail.
  A facilitator's address is the one given with ``--facilitator-email
  NAME=ADDRESS``, else their email in the roster.

Each message has a topic (``not-started``, ``stalled:<session id>``,
``digest``); nobody is written to twice about the same topic within
``[email] quiet_days`` (:meth:`Store.reminders_sent`). :func:`send` delivers
through the SMTP server of ``[email]`` in course/course.toml over one
connection, STARTTLS when ``starttls`` (implicit TLS on port 465), with the login
from ``COMPANION_SMTP_USER`` / ``COMPANION_SMTP_PASSWORD`` when set, and records
each message only after the server accepted it.

Example::

    >>> from companion.reminders import plan
    >>> planned = plan(store, catalog, "https://companion.example.org")
    >>> [(m.recipient, m.topic) for m in planned.messages]
    [('ana@example.org', 'not-started'), ('lee@example.org', 'digest')]
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Callable, Mapping

from .canvas import check_base_url
from .catalog import Catalog
from .errors import ReminderError
from .identity import personal_link, server_secret
from .paths import session_path
from .roster import EMAIL
from .store import Store, Waiting

OLDEST_LISTED = 5  # waiting items named in a facilitator's digest (the count covers all)
TIMEOUT_SECONDS = 30
USER_ENV, PASSWORD_ENV = "COMPANION_SMTP_USER", "COMPANION_SMTP_PASSWORD"


@dataclass(frozen=True)
class Message:
    """One reminder: to whom (the address, and the name to greet), about what (``topic``), and its text."""

    recipient: str
    name: str
    topic: str
    subject: str
    body: str


@dataclass(frozen=True)
class Plan:
    """What a run would send, and who it leaves out and why."""

    messages: tuple[Message, ...]
    quiet: tuple[Message, ...]  # already written to about the same topic within quiet_days
    quiet_days: int
    no_email: tuple[str, ...] = ()  # supervisors to remind who have no email in the roster (usernames)
    facilitators_without_email: tuple[str, ...] = ()
    waiting_without_facilitators: int = 0  # items waiting for feedback when [server] facilitators is empty

    def notes(self, settings) -> list[str]:
        """Who was left out and what to do about it, and a missing mail server, as lines for the person running it."""
        notes = [
            f"no email for facilitator {name}: add them to the roster or pass --facilitator-email {name}=ADDRESS."
            for name in self.facilitators_without_email
        ]
        if self.no_email:
            names = ", ".join(self.no_email[:10]) + (" …" if len(self.no_email) > 10 else "")
            notes.append(f"{len(self.no_email)} supervisor(s) due a reminder have no email in the roster: {names}.")
        if self.waiting_without_facilitators:
            notes.append(
                f"{self.waiting_without_facilitators} item(s) wait for feedback, but [server] facilitators in course/course.toml "
                "is empty, so no digest was prepared; add the facilitators' usernames there."
            )
        if not settings.email.host.strip():
            notes.append("no mail server yet: set host, port and sender under [email] in course/course.toml before --send.")
        return notes


@dataclass
class Outcome:
    """What :func:`send` did: the messages the server accepted, and the ones it refused with its reason."""

    sent: list[Message] = field(default_factory=list)
    refused: list[tuple[Message, str]] = field(default_factory=list)


def _address(text: str | None) -> str:
    """An email address (the roster's own test of one), or "" when there is none or it is not one."""
    text = (text or "").strip()
    return text if EMAIL.fullmatch(text) else ""


def _one_line(text: str) -> str:
    return " ".join(str(text or "").split())


def _waited(since: datetime, now: datetime) -> str:
    hours = max(0.0, (now - since).total_seconds() / 3600)
    if hours < 1:
        return "less than an hour"
    if hours < 48:
        return f"{int(hours)} hour{'s' if int(hours) != 1 else ''}"
    return f"{int(hours // 24)} days"


def _activity_name(catalog: Catalog, item: Waiting) -> str:
    """'Session 1, "Your why" (shared reflection)': the activity's title only, never what was written."""
    kind = "shared reflection" if item.kind == "reflection" else "goal check-in"
    activity = catalog.find(item.activity_id)
    if activity is None:  # an activity no notebook declares any more
        return f"{item.activity_id} ({kind})"
    number = catalog.settings.session(activity.session_id).number
    return f'Session {number}, "{activity.title}" ({kind})'


def learner_message(catalog: Catalog, learner, topic: str, session, link: str) -> Message:
    """The nudge to a supervisor who has not started (``not-started``) or has stalled (``stalled:<id>``)."""
    settings = catalog.settings
    name = _one_line(learner.name) or learner.username
    where = f'Session {session.number}, "{session.title}"'
    if topic == "not-started":
        subject = f"{_one_line(settings.title)}: your first session is ready"
        opening = f"{where}, is ready whenever you are. You can work through it at your own pace; it saves as you go."
    else:
        subject = f"{_one_line(settings.title)}: pick up where you left off"
        opening = f"Everything you have done in {settings.title} is saved. Your next session is {where}."
    body = (
        f"Hello {name},\n\n{opening}\n\nOpen it with your personal link:\n{link}\n\n"
        "The link is yours alone: it opens your own workbook, so please do not forward it.\n"
        "If you are stuck or short of time, your facilitator is glad to help.\n"
    )
    return Message(_address(learner.email), name, topic, subject, body)


def digest_message(catalog: Catalog, name: str, address: str, waiting: list[Waiting], link: str, now: datetime) -> Message:
    """A facilitator's digest of what waits for feedback: the count, the oldest items and how long each waited."""
    reflections = sum(1 for w in waiting if w.kind == "reflection")
    check_ins = len(waiting) - reflections
    parts = [f"{n} {what}{'s' if n != 1 else ''}" for n, what in ((reflections, "shared reflection"), (check_ins, "goal check-in")) if n]
    count = len(waiting)
    subject = f"{count} item{'s' if count != 1 else ''} wait{'s' if count == 1 else ''} for your feedback"
    lines = [f"- {_activity_name(catalog, w)}: waiting {_waited(w.since, now)}" for w in waiting[:OLDEST_LISTED]]
    if count > OLDEST_LISTED:
        lines.append(f"- and {count - OLDEST_LISTED} more")
    body = (
        f"Hello {name},\n\n{' and '.join(parts)} from {'supervisors are' if count != 1 else 'a supervisor is'} waiting for your feedback. "
        "The oldest:\n\n" + "\n".join(lines) + "\n\n"
        f"Open the facilitator dashboard to read them and reply:\n{link}\n\n"
        "Keep this link private: it opens every shared reflection.\n"
    )
    return Message(address, name, "digest", subject, body)


def plan(
    store: Store, catalog: Catalog, base_url: str, now: datetime | None = None, facilitator_emails: Mapping[str, str] | None = None
) -> Plan:
    """Every reminder due now, and the ones held back by the quiet period (nothing is sent or recorded here)."""
    from .dashboard import facilitator_link, figures

    settings = catalog.settings
    base_url = check_base_url(base_url)
    now = now or datetime.now(timezone.utc)
    facilitators = settings.server.facilitators
    unknown = sorted(set(facilitator_emails or {}) - set(facilitators))
    if unknown:
        raise ReminderError(
            f"--facilitator-email names {', '.join(unknown)}, who {'is' if len(unknown) == 1 else 'are'} not on [server] facilitators "
            "in course/course.toml; add them there or correct the name. Nothing was sent."
        )
    people = {learner.username: learner for learner in store.learners()}
    numbers = figures(store, catalog, now=now, listed=None)
    secret, days = server_secret(settings.home), settings.server.link_days
    sessions = {s.number: s for s in settings.sessions}
    due: list[Message] = []
    no_email: list[str] = []
    for topic_of, stragglers in ((lambda s: "not-started", numbers.not_started), (lambda s: f"stalled:{s.id}", numbers.stalled)):
        for person in stragglers:
            learner = people.get(person.username)
            session = sessions.get(person.at_session)
            if learner is None or session is None or person.username in facilitators:
                continue
            if not _address(learner.email):
                no_email.append(person.username)
                continue
            link = personal_link(base_url, session_path(session), person.username, secret, days)
            due.append(learner_message(catalog, learner, topic_of(session), session, link))
    missing: list[str] = []
    waiting = store.waiting_for_feedback()
    if waiting:
        for name in facilitators:
            address = _address((facilitator_emails or {}).get(name) or (people[name].email if name in people else ""))
            if not address:
                missing.append(name)
                continue
            greeting = _one_line(people[name].name) if name in people else ""
            link = facilitator_link(settings, base_url, name, days)
            due.append(digest_message(catalog, greeting or name, address, waiting, link, now))
    sent = store.reminders_sent(now - timedelta(days=settings.email.quiet_days))
    messages, quiet, seen = [], [], set()
    for message in due:
        key = (message.recipient.lower(), message.topic)
        if key in seen:
            continue  # two roster rows with one address: one message
        seen.add(key)
        (quiet if key in sent else messages).append(message)
    unassigned = 0 if facilitators else len(waiting)
    return Plan(tuple(messages), tuple(quiet), settings.email.quiet_days, tuple(no_email), tuple(missing), unassigned)


def facilitator_addresses(given: list[str]) -> dict[str, str]:
    """``--facilitator-email NAME=ADDRESS`` options as {name: address}; :class:`ReminderError` for a malformed one."""
    addresses = {}
    for item in given:
        name, _, address = item.partition("=")
        if not name.strip() or not _address(address):
            raise ReminderError(f"--facilitator-email {item!r} is not NAME=ADDRESS, e.g. --facilitator-email lee=lee@example.org.")
        addresses[name.strip()] = _address(address)
    return addresses


def preview(message: Message, lines: int = 4) -> str:
    """What a dry run shows of a message: recipient, subject and its first ``lines`` lines."""
    shown = "".join(f"  | {line}\n" for line in message.body.splitlines()[:lines])
    return f"To: {message.name} <{message.recipient}>\nSubject: {message.subject}\n{shown}"


def _email(message: Message, sender: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = formataddr((message.name, message.recipient))
    mail["Subject"] = message.subject
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip(">") or None)
    mail.set_content(message.body)
    return mail


def _connect(host: str, port: int, starttls: bool) -> smtplib.SMTP:
    """One connection to the mail server, encrypted when the settings ask, logged in when the environment says who."""
    where = f"{host}:{port}"
    user, password = os.environ.get(USER_ENV, ""), os.environ.get(PASSWORD_ENV)
    if user and password is None:
        raise ReminderError(f"{USER_ENV} is set but {PASSWORD_ENV} is not; set both (or neither). Nothing was sent.")
    try:
        if port == 465:
            smtp = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT_SECONDS, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(host, port, timeout=TIMEOUT_SECONDS)
    except (OSError, smtplib.SMTPException) as error:
        reason = "it did not answer in time" if isinstance(error, socket.timeout) else (getattr(error, "strerror", None) or str(error) or type(error).__name__)
        raise ReminderError(
            f"Could not reach the mail server at {where} ({reason}). Check host and port under [email] in course/course.toml "
            "and that this machine may connect to it. Nothing was sent."
        ) from None
    try:
        smtp.ehlo()
        if starttls and port != 465:
            if not smtp.has_extn("starttls"):
                raise ReminderError(
                    f"The mail server at {where} does not offer STARTTLS, and [email] starttls is true in course/course.toml. "
                    "Use the server's submission port (often 587), or set starttls = false only for a server on a trusted network. Nothing was sent."
                )
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if user:
            smtp.login(user, password)
    except smtplib.SMTPAuthenticationError:
        smtp.close()
        raise ReminderError(
            f"The mail server at {where} refused the login. Check {USER_ENV} and {PASSWORD_ENV}. Nothing was sent."
        ) from None
    except smtplib.SMTPNotSupportedError:
        smtp.close()
        raise ReminderError(
            f"The mail server at {where} does not accept a login here; unset {USER_ENV} if it needs none, "
            "or turn on starttls under [email] in course/course.toml. Nothing was sent."
        ) from None
    except ReminderError:
        smtp.close()
        raise
    except (OSError, smtplib.SMTPException, ssl.SSLError) as error:
        smtp.close()
        raise ReminderError(f"The mail server at {where} ended the conversation ({error}). Nothing was sent.") from None
    return smtp


def send(store: Store, settings, messages: tuple[Message, ...], progress: Callable[[Message, str | None], None] | None = None) -> Outcome:
    """Send ``messages`` over one connection; record each one the server accepted, and only those.

    ``progress(message, refusal)`` is called after each: ``refusal`` None when it was accepted."""
    email = settings.email
    if not email.host.strip():
        raise ReminderError(
            'No mail server is set: add host (and port, sender) under [email] in course/course.toml, e.g. host = "smtp.example.org". '
            "Nothing was sent."
        )
    if "@" not in email.sender:
        raise ReminderError(
            'No sender is set: add sender under [email] in course/course.toml, e.g. sender = "Leadership Series <series@example.org>". '
            "Nothing was sent."
        )
    outcome = Outcome()
    if not messages:
        return outcome
    try:
        mails = [_email(message, email.sender.strip()) for message in messages]
    except ValueError as error:
        raise ReminderError(f"A message could not be written ({error}); check [email] sender in course/course.toml. Nothing was sent.") from None
    smtp = _connect(email.host.strip(), email.port, email.starttls)
    try:
        for message, mail in zip(messages, mails):
            try:
                refused = smtp.send_message(mail)
            except smtplib.SMTPRecipientsRefused as error:
                refused = error.recipients
            except smtplib.SMTPDataError as error:
                refused = {message.recipient: (error.smtp_code, error.smtp_error)}
            except smtplib.SMTPSenderRefused as error:
                raise ReminderError(
                    f"The mail server at {email.host}:{email.port} refused the sender {email.sender} ({_said(error.smtp_error)}). "
                    f"{len(outcome.sent)} messages were sent and recorded before that; fix [email] sender in course/course.toml and run again."
                ) from None
            except (OSError, smtplib.SMTPException) as error:
                raise ReminderError(
                    f"The connection to the mail server at {email.host}:{email.port} failed ({error}). {len(outcome.sent)} messages "
                    "were sent and recorded before that; run again to send the rest."
                ) from None
            if refused:
                code, said = next(iter(refused.values()))
                outcome.refused.append((message, f"{code} {_said(said)}"))
                if progress:
                    progress(message, f"{code} {_said(said)}")
                continue
            store.record_reminder(message.recipient.lower(), message.topic, message.subject)
            outcome.sent.append(message)
            if progress:
                progress(message, None)
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()
    return outcome


def _said(text) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
