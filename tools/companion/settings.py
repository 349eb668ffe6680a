"""Course-wide settings: ``course/course.toml`` read into one typed object.

Everything else (the Voila configuration, nbgrader's configuration, the Canvas
package, the dashboard) is generated from this object, so a setting is written
once. Where the data lives comes from the environment:

- ``COMPANION_COURSE_DIR``: the repository root (default: the nearest folder
  above the working directory that has ``course/course.toml``)
- ``COMPANION_HOME``: the data home (default: ``<root>/reflections``)
- ``COMPANION_DB_URL``: any SQLAlchemy database URL (default: SQLite in the
  data home)
- ``COMPANION_SERVICE_URL``: under JupyterHub, the companion hub service that
  learners' pages save through (:mod:`companion.hub`); they then never see the
  database URL

Example::

    >>> from companion.settings import load_settings
    >>> settings = load_settings()
    >>> [s.id for s in settings.sessions]
    ['s1', 's2', 's3', 's4', 's5', 's6']
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import SettingsError
from .identity import valid_username

COURSE_FILE = Path("course") / "course.toml"
# Kernels are forked from a warm process where Linux can watch a process through a pidfd; else started anew.
KERNEL_START = "fork" if hasattr(os, "pidfd_open") else "process"
ID_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Competency:
    id: str
    name: str
    description: str
    indicators: tuple[str, ...]


@dataclass(frozen=True)
class Session:
    id: str
    number: int
    title: str
    notebook: str  # relative to the course root
    summary: str
    prepare: str
    preheated_kernels: int | None = None  # this page's own pool of ready kernels; None: [server] preheated_kernels

    @property
    def page(self) -> str:
        """The session page's file name on the server (the released notebook)."""
        return Path(self.notebook).name


@dataclass(frozen=True)
class ServerSettings:
    frame_ancestors: tuple[str, ...]
    preheated_kernels: int
    link_days: int
    https: bool  # learners reach the pages over HTTPS, so cookies may be third-party (SameSite=None; Secure)
    facilitators: tuple[str, ...] = ()  # usernames who may open the facilitator dashboard (see companion.dashboard)
    # Limits on kernels (see companion.admission and companion.kernels); 0 means no limit.
    closed_page_seconds: int = 120  # a closed page's kernel stops after this long
    pause_idle_seconds: int = 1800  # an open page untouched this long is paused (its kernel stopped)
    pages_per_learner: int = 6
    max_pages: int = 150  # open pages on the whole server; each holds about 120 MiB
    requests_per_minute: int = 120  # page requests per address (a whole office may share one)
    behind_proxy: bool = False  # a proxy forwards the requests: count addresses by its X-Forwarded-For
    kernel_start: str = KERNEL_START  # "fork": forked from a warm, pre-imported process (companion.forking); "process"


@dataclass(frozen=True)
class EmailSettings:
    """Where ``companion remind`` sends mail ([email] in course.toml).

    The login is never in the course file: it comes from the environment,
    ``COMPANION_SMTP_USER`` and ``COMPANION_SMTP_PASSWORD`` (none: no login)."""

    host: str = ""  # empty: no mail server yet; `companion remind` says what to set
    port: int = 587
    sender: str = ""
    starttls: bool = True
    quiet_days: int = 7  # never write to the same person about the same thing within this many days


@dataclass(frozen=True)
class CoachingSettings:
    """What the pages tell learners about who receives their goals ([coaching] in course.toml)."""

    # Whether the agency's evaluation system receives the goals set here. The seeds do not say it
    # does, so by default the pages say goals stay in this series' record.
    goals_in_evaluation_record: bool = False


@dataclass(frozen=True)
class Settings:
    root: Path
    home: Path
    db_url: str
    course_id: str
    title: str
    organization: str
    end: str
    description: str
    competencies: tuple[Competency, ...]
    sessions: tuple[Session, ...]
    server: ServerSettings
    email: EmailSettings = EmailSettings()
    coaching: CoachingSettings = CoachingSettings()
    # Under JupyterHub: the companion hub service's address (COMPANION_SERVICE_URL), through which
    # learners' pages reach the store, and the hub group whose members open the dashboard.
    service_url: str = ""
    facilitator_group: str = "companion-facilitators"

    def session(self, session_id: str) -> Session:
        for session in self.sessions:
            if session.id == session_id:
                return session
        known = ", ".join(s.id for s in self.sessions)
        raise SettingsError(f"No session '{session_id}' in {COURSE_FILE}; known sessions: {known}.")

    def competency(self, competency_id: str) -> Competency:
        for competency in self.competencies:
            if competency.id == competency_id:
                return competency
        known = ", ".join(c.id for c in self.competencies)
        raise SettingsError(
            f"No competency '{competency_id}' in {COURSE_FILE}; known competencies: {known}."
        )


def find_root(start: Path | None = None) -> Path:
    """The course root: ``COMPANION_COURSE_DIR`` or the nearest folder with course/course.toml."""
    if os.environ.get("COMPANION_COURSE_DIR"):
        root = Path(os.environ["COMPANION_COURSE_DIR"]).resolve()
        if not (root / COURSE_FILE).is_file():
            raise SettingsError(
                f"COMPANION_COURSE_DIR is {root}, but {root / COURSE_FILE} does not exist. "
                "Point it at the repository that holds course/course.toml."
            )
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / COURSE_FILE).is_file():
            return folder
    raise SettingsError(
        f"No {COURSE_FILE} in {here} or any folder above it. Run the command inside the "
        "course repository, or set COMPANION_COURSE_DIR to it."
    )


def load_settings(root: Path | str | None = None) -> Settings:
    """Read course/course.toml under ``root`` (or the course root found from here)."""
    root = Path(root).resolve() if root else find_root()
    path = root / COURSE_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path} does not exist. Create it, or run inside the course repository.")
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path} is not valid TOML: {error}. Fix that line and try again.")

    def need(table: dict, key: str, kind: type, where: str):
        value = table.get(key)
        if not isinstance(value, kind):
            raise SettingsError(
                f"{path}: {where} needs '{key}' ({kind.__name__}); fix the course file and try again."
            )
        return value

    course = need(data, "course", dict, "the file")
    competencies = []
    for n, item in enumerate(need(data, "competencies", list, "the file"), 1):
        where = f"competency {n}"
        competency = Competency(
            id=need(item, "id", str, where),
            name=need(item, "name", str, where),
            description=need(item, "description", str, where).strip(),
            indicators=tuple(need(item, "indicators", list, where)),
        )
        if not ID_PATTERN.match(competency.id):
            raise SettingsError(f"{path}: {where} has id '{competency.id}'; use lowercase words and dashes.")
        competencies.append(competency)
    sessions = []
    for n, item in enumerate(need(data, "sessions", list, "the file"), 1):
        where = f"session {n}"
        sessions.append(
            Session(
                id=need(item, "id", str, where),
                number=need(item, "number", int, where),
                title=need(item, "title", str, where),
                notebook=need(item, "notebook", str, where),
                summary=item.get("summary", ""),
                prepare=item.get("prepare", ""),
                preheated_kernels=_pool(item, where, path),
            )
        )
    ids = [s.id for s in sessions]
    if len(set(ids)) != len(ids):
        raise SettingsError(f"{path}: session ids repeat ({', '.join(ids)}); each must be unique.")
    server = data.get("server", {})
    if not isinstance(server.get("https", False), bool):
        raise SettingsError(f"{path}: [server] https is {server['https']!r}; write true or false, without quotes.")
    if server.get("kernel_start", KERNEL_START) not in ("process", "fork"):
        raise SettingsError(f'{path}: [server] kernel_start is {server["kernel_start"]!r}; write "fork" (the default on Linux) or "process".')
    facilitators = server.get("facilitators", [])
    if not isinstance(facilitators, list) or not all(isinstance(f, str) and valid_username(f) for f in facilitators):
        raise SettingsError(
            f"{path}: [server] facilitators is {facilitators!r}; write a list of usernames, e.g. [\"lee\", \"kim\"]."
        )
    email, coaching = _email(data.get("email", {}), path), _coaching(data.get("coaching", {}), path)
    home = Path(os.environ.get("COMPANION_HOME") or root / "reflections").resolve()
    return Settings(
        root=root,
        home=home,
        db_url=os.environ.get("COMPANION_DB_URL") or f"sqlite:///{home / 'companion.db'}",
        course_id=need(course, "id", str, "[course]"),
        title=need(course, "title", str, "[course]"),
        organization=course.get("organization", ""),
        end=course.get("end", ""),
        description=course.get("description", "").strip(),
        competencies=tuple(competencies),
        sessions=tuple(sessions),
        server=ServerSettings(
            frame_ancestors=tuple(server.get("frame_ancestors", [])),
            preheated_kernels=int(server.get("preheated_kernels", 1)),
            link_days=int(server.get("link_days", 120)),
            https=server.get("https", False),
            facilitators=tuple(facilitators),
            behind_proxy=_typed(server, "behind_proxy", bool, False, "[server]", path),
            kernel_start=server.get("kernel_start", KERNEL_START),
            **_limits(server, path),
        ),
        email=email,
        coaching=coaching,
        service_url=os.environ.get("COMPANION_SERVICE_URL", ""),
        facilitator_group=_typed(data.get("hub", {}), "facilitator_group", str, "companion-facilitators", "[hub]", path),
    )


def _typed(table: dict, key: str, kind: type, default, where: str, path: Path):
    value = table.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        example = {bool: "true or false, without quotes", int: "a whole number", str: "text in quotes"}[kind]
        raise SettingsError(f"{path}: {where} {key} is {value!r}; write {example}.")
    return value


def _pool(session: dict, where: str, path: Path) -> int | None:
    """A session's own ``preheated_kernels`` (None when it has none): a whole number, 0 or more."""
    if "preheated_kernels" not in session:
        return None
    count = _typed(session, "preheated_kernels", int, 0, where, path)
    if count < 0:
        raise SettingsError(f"{path}: {where} preheated_kernels is {count}; write 0 (start kernels as pages open) or more.")
    return count


LIMITS = ("closed_page_seconds", "pause_idle_seconds", "pages_per_learner", "max_pages", "requests_per_minute")


def _limits(server: dict, path: Path) -> dict[str, int]:
    """[server]'s limits on kernels and requests: whole numbers, 0 or more (0: no limit)."""
    defaults = ServerSettings((), 1, 120, False)
    limits = {key: _typed(server, key, int, getattr(defaults, key), "[server]", path) for key in LIMITS}
    for key, value in limits.items():
        if value < 0:
            raise SettingsError(f"{path}: [server] {key} is {value}; write 0 (no limit) or more.")
    if not 10 <= limits["closed_page_seconds"] <= 86400:
        raise SettingsError(
            f"{path}: [server] closed_page_seconds is {limits['closed_page_seconds']}; write 10 to 86400 "
            "(a closed page's kernel must stop some time)."
        )
    return limits


def _email(table: dict, path: Path) -> EmailSettings:
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: [email] must be a table of settings (host, port, sender, starttls, quiet_days).")
    defaults = EmailSettings()
    settings = EmailSettings(
        host=_typed(table, "host", str, defaults.host, "[email]", path),
        port=_typed(table, "port", int, defaults.port, "[email]", path),
        sender=_typed(table, "sender", str, defaults.sender, "[email]", path),
        starttls=_typed(table, "starttls", bool, defaults.starttls, "[email]", path),
        quiet_days=_typed(table, "quiet_days", int, defaults.quiet_days, "[email]", path),
    )
    if not 0 < settings.port < 65536 or settings.quiet_days < 0:
        raise SettingsError(f"{path}: [email] port must be 1 to 65535 and quiet_days 0 or more.")
    return settings


def _coaching(table: dict, path: Path) -> CoachingSettings:
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: [coaching] must be a table of settings (goals_in_evaluation_record).")
    return CoachingSettings(goals_in_evaluation_record=_typed(table, "goals_in_evaluation_record", bool, False, "[coaching]", path))
