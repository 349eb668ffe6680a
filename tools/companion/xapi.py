"""The evaluation feed as xAPI 1.0.3 statements, one per stored event and per feedback given, one JSON object a line.

Each statement says who (an Agent identified by an ``account``: the
companion's public address and the username), did what (an ADL verb IRI:
``http://adlnet.gov/expapi/verbs/`` + answered, completed, experienced,
responded, shared; a verb the ADL vocabulary lacks, such as "unshared", gets an
IRI under the companion's address), to what (an Activity: the session for
"experienced" and "completed", else the activity, with the session as parent
and the course as grouping), with what result (a score for a sort or a
self-assessment, success for a question, completion), and when (UTC, to the
millisecond). A statement's id is a UUID derived from the event, so exporting
again gives the same ids and a learning record store keeps no duplicates.

Coaching adds two kinds of statement:

- **A goal check-in** (the log's ``checked-in`` events): the learner
  ``progressed`` (ADL) on the goal activity, with the status then as the
  ``goal-status`` extension (and ``completion`` true when it is Met) and the
  check-in's number as ``check-in``. The check-in's note is not sent.
- **Feedback given** (the store's feedback, after every event, oldest first):
  the facilitator, as an account on the companion (their username), ``commented``
  (ADL) on the learner's activity (the shared reflection or the goal). The
  learner is named in the context extension ``learner`` (their account), and
  ``feedback-on`` says reflection, goal or check-in (with ``check-in``'s number).
  The id is derived from the feedback's own id. **The feedback text is not
  sent**, although the facilitator wrote it: feedback on a shared reflection
  often quotes or retells what the learner wrote, and the learner shared that
  with their facilitator, not with the evaluation system. What the evaluation
  purpose needs, that feedback came and how soon, is in who, on what and when.

What learners write never leaves in the feed: no reflection text, no goal text,
no check-in note, only that it was saved, completion, scores, a goal's status
and target date.

IRIs the companion mints (``<base>`` is its public address, as for
``companion links``)::

    <base>/xapi/courses/<course id>      the course
    <base>/xapi/sessions/<session id>    a session
    <base>/xapi/activities/<activity id> an activity
    <base>/xapi/verbs/<verb>             a verb that is not in the ADL vocabulary
    <base>/xapi/extensions/<name>        competency, stage, goal-status, goal-target, check-in,
                                         learner, feedback-on

Example::

    >>> from companion.xapi import write_xapi
    >>> write_xapi(store, catalog, "statements.jsonl", "https://companion.example.org")
    12873
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timezone
from pathlib import Path
from typing import Iterator

from .catalog import Activity, Catalog
from .exports import ExportError, _write_atomically
from .store import CHECKED_IN, Event, Feedback, Learner, Store

VERSION = "1.0.3"
ADL_VERBS = "http://adlnet.gov/expapi/verbs/"
ADL_VOCABULARY = {"answered", "asked", "attempted", "attended", "commented", "completed", "experienced", "failed",
                  "imported", "interacted", "launched", "mastered", "passed", "preferred", "progressed", "registered",
                  "responded", "resumed", "scored", "shared", "suspended", "terminated", "voided"}
ACTIVITY_TYPES = {
    "course": "http://adlnet.gov/expapi/activities/course",
    "session": "http://adlnet.gov/expapi/activities/module",
    "Reflection": "http://adlnet.gov/expapi/activities/question",
    "Choice": "http://adlnet.gov/expapi/activities/question",
    "Sort": "http://adlnet.gov/expapi/activities/interaction",
    "SelfAssessment": "http://adlnet.gov/expapi/activities/assessment",
    "Goal": "http://adlnet.gov/expapi/activities/objective",
}
NAMESPACE = uuid.UUID("6c1f0d3e-5b0a-5e55-9a55-636f6d70616e")  # statement ids: uuid5(NAMESPACE, event key)
BASE_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
PLATFORM = "Supervisor Companion"
# Events whose verb in the log is not the xAPI verb sent: a goal check-in is progress reported on the goal.
SENT_AS = {CHECKED_IN: "progressed"}
COMMENTED = "commented"  # the verb of feedback given


def verb_iri(verb: str, base: str) -> str:
    return ADL_VERBS + verb if verb in ADL_VOCABULARY else f"{base}/xapi/verbs/{verb}"


def _extensions(base: str, extensions: dict) -> dict:
    return {f"{base}/xapi/extensions/{name}": value for name, value in sorted(extensions.items())}


def _timestamp(event: Event) -> str:
    return event.at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def statement_id(course_id: str, event: Event, timestamp: str | None = None) -> str:
    """The same event always gets the same id (and different events different ids)."""
    return str(uuid.uuid5(NAMESPACE, f"{course_id}/{event.username}/{event.id}/{timestamp or _timestamp(event)}"))


def _result(activity: Activity | None, event: Event, base: str) -> dict | None:
    value = event.value if isinstance(event.value, dict) else {}
    kind = activity.kind if activity else None
    result: dict = {}
    extensions: dict = {}
    if event.verb == CHECKED_IN:  # the status and the check-in's number; never its note
        status = str(value.get("status") or "")
        result["completion"] = status == "Met"
        if status:
            extensions["goal-status"] = status
        if isinstance(value.get("check_in"), int):
            extensions["check-in"] = value["check_in"]
    elif event.verb == "completed":
        result["completion"] = True
    elif kind == "Choice" and event.verb == "answered":
        result["completion"] = True
        if isinstance(value.get("correct"), bool):
            result["success"] = value["correct"]
    elif kind == "Sort" and event.verb == "answered":
        score, total = value.get("score"), value.get("total")
        result["completion"] = True
        if isinstance(score, int) and isinstance(total, int) and 0 <= score <= total and total > 0:
            result["score"] = {"raw": score, "min": 0, "max": total, "scaled": round(score / total, 4)}
    elif kind == "SelfAssessment" and event.verb == "answered":
        ratings = value.get("ratings") or []
        result["completion"] = bool(ratings) and all(isinstance(r, int) for r in ratings)
        score = value.get("score")
        if isinstance(score, (int, float)) and 1 <= score <= 4:
            result["score"] = {"raw": score, "min": 1, "max": 4, "scaled": round(score / 4, 4)}
        extensions["stage"] = value.get("stage") or activity.args.get("stage", "start")
    elif kind == "Goal":
        result["completion"] = bool(str(value.get("goal") or "").strip() and str(value.get("measure") or "").strip() and value.get("target"))
        if value.get("status"):
            extensions["goal-status"] = str(value["status"])
        if value.get("target"):
            extensions["goal-target"] = str(value["target"])
    elif kind == "Reflection" and event.verb == "responded":
        result["completion"] = bool(str(value.get("text") or "").strip())
    if activity is not None and activity.competency and (result or extensions):
        extensions["competency"] = activity.competency
    if extensions:
        result["extensions"] = _extensions(base, extensions)
    return result or None


class Objects:
    """What a statement is about (its object and context activities), made once per activity for an export."""

    def __init__(self, catalog: Catalog, base_url: str):
        self.base = base_url.rstrip("/")
        self.settings = catalog.settings
        self.activities = {a.id: a for a in catalog.all_activities()}
        self.sessions = {s.id: s for s in self.settings.sessions}
        self.course = {
            "objectType": "Activity",
            "id": f"{self.base}/xapi/courses/{self.settings.course_id}",
            "definition": {"name": {"en-US": self.settings.title}, "type": ACTIVITY_TYPES["course"]},
        }
        self._made: dict[tuple[str, str], tuple[dict, dict]] = {}

    def about(self, session_id: str, activity_id: str) -> tuple[dict, dict]:
        """``(object, contextActivities)`` of an event on ``activity_id`` in ``session_id``."""
        key = (session_id, activity_id)
        if key not in self._made:
            self._made[key] = self._make(session_id, activity_id)
        return self._made[key]

    def _make(self, session_id: str, activity_id: str) -> tuple[dict, dict]:
        session = self.sessions.get(session_id)
        session_object = {"objectType": "Activity", "id": f"{self.base}/xapi/sessions/{session_id}", "definition": {"type": ACTIVITY_TYPES["session"]}}
        if session is not None:
            session_object["definition"]["name"] = {"en-US": f"Session {session.number}: {session.title}"}
        activity = self.activities.get(activity_id)
        if activity_id == session_id or (activity is not None and activity.kind == "SessionComplete"):
            return session_object, {"grouping": [self.course]}
        target = {"objectType": "Activity", "id": f"{self.base}/xapi/activities/{activity_id}"}
        if activity is not None:
            target["definition"] = {"name": {"en-US": activity.title}, "type": ACTIVITY_TYPES.get(activity.kind, ACTIVITY_TYPES["Reflection"])}
        return target, {"parent": [session_object], "grouping": [self.course]}


def statement(event: Event, learner: Learner, objects: Objects) -> dict:
    """The xAPI statement of one stored event (``objects``: ``Objects(catalog, base_url)``)."""
    target, context_activities = objects.about(event.session_id, event.activity_id)
    actor = {"objectType": "Agent", "account": {"homePage": objects.base, "name": learner.username}}
    if learner.name.strip():
        actor["name"] = learner.name
    timestamp = _timestamp(event)
    verb = SENT_AS.get(event.verb, event.verb)
    made = {
        "id": statement_id(objects.settings.course_id, event, timestamp),
        "actor": actor,
        "verb": {"id": verb_iri(verb, objects.base), "display": {"en-US": verb}},
        "object": target,
        "context": {"platform": PLATFORM, "language": "en-US", "contextActivities": context_activities},
        "timestamp": timestamp,
        "version": VERSION,
    }
    result = _result(objects.activities.get(event.activity_id), event, objects.base)
    if result:
        made["result"] = result
    return made


def feedback_statement(item: Feedback, username: str, session_id: str, objects: Objects) -> dict:
    """The xAPI statement of one feedback item: the facilitator commented on the learner's activity (no text)."""
    target, context_activities = objects.about(session_id, item.activity_id)
    activity = objects.activities.get(item.activity_id)
    on = "check-in" if item.check_in is not None else "goal" if activity is not None and activity.kind == "Goal" else "reflection"
    extensions = {"learner": {"homePage": objects.base, "name": username}, "feedback-on": on}
    if item.check_in is not None:
        extensions["check-in"] = item.check_in
    timestamp = item.at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "id": str(uuid.uuid5(NAMESPACE, f"{objects.settings.course_id}/feedback/{item.id}/{timestamp}")),
        "actor": {"objectType": "Agent", "account": {"homePage": objects.base, "name": item.author}},
        "verb": {"id": verb_iri(COMMENTED, objects.base), "display": {"en-US": COMMENTED}},
        "object": target,
        "context": {"platform": PLATFORM, "language": "en-US", "contextActivities": context_activities,
                    "extensions": _extensions(objects.base, extensions)},
        "timestamp": timestamp,
        "version": VERSION,
    }


def _feedback_given(store: Store, objects: Objects) -> Iterator[dict]:
    """Every feedback item as a statement, oldest first (one bulk read)."""
    given: list[tuple[Feedback, str]] = [(item, username) for username, item in store.all_feedback()]
    sessions: dict[tuple[str, str], str] = {}
    for item, username in given:
        activity = objects.activities.get(item.activity_id)
        if activity is not None:
            session_id = activity.session_id
        else:  # an activity a later notebook dropped: its session is the one the learner saved it in
            if (username, item.activity_id) not in sessions:
                saved = store.response(username, item.activity_id)
                sessions[(username, item.activity_id)] = saved.session_id if saved else item.activity_id.split("-", 1)[0]
            session_id = sessions[(username, item.activity_id)]
        yield feedback_statement(item, username, session_id, objects)


def statements(store: Store, catalog: Catalog, base_url: str) -> Iterator[dict]:
    """Every stored event as a statement, in the order the events happened; then every feedback given."""
    check_base_url(base_url)
    objects = Objects(catalog, base_url)
    for event, learner in store.iter_events():
        yield statement(event, learner, objects)
    yield from _feedback_given(store, objects)


def check_base_url(base_url: str) -> None:
    if not BASE_URL.match(base_url or ""):
        raise ExportError(
            f"'{base_url}' is not the companion's public address; give it as --base-url with http:// or https://, "
            "e.g. https://companion.example.org (it names the learners' accounts and the activities)."
        )


def write_xapi(store: Store, catalog: Catalog, path: Path | str, base_url: str) -> int:
    """Write every event and every feedback given as one xAPI statement a line (JSON Lines); returns the number written."""
    check_base_url(base_url)
    count = 0

    def write(out) -> None:
        nonlocal count
        for made in statements(store, catalog, base_url):
            out.write(json.dumps(made, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1

    _write_atomically(path, write)
    return count
