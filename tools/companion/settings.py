"""Course-wide settings: ``course/course.toml`` read into one typed object.

Everything else (the Voila configuration, nbgrader's configuration, the Canvas
package, the dashboard) is generated from this object, so a setting is written
once. Where the data lives comes from the environment:

- ``COMPANION_COURSE_DIR``: the repository root (default: the nearest folder
  above the working directory that has ``course/course.toml``)
- ``COMPANION_HOME``: the data home (default: ``<root>/reflections``)
- ``COMPANION_DB_URL``: any SQLAlchemy database URL (default: SQLite in the
  data home)

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

    @property
    def page(self) -> str:
        """The session page's file name on the server (the released notebook)."""
        return Path(self.notebook).name


@dataclass(frozen=True)
class ServerSettings:
    frame_ancestors: tuple[str, ...]
    cull_idle_seconds: int
    preheated_kernels: int
    link_days: int
    https: bool  # learners reach the pages over HTTPS, so cookies may be third-party (SameSite=None; Secure)
    facilitators: tuple[str, ...] = ()  # usernames who may open the facilitator dashboard (see companion.dashboard)


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
            )
        )
    ids = [s.id for s in sessions]
    if len(set(ids)) != len(ids):
        raise SettingsError(f"{path}: session ids repeat ({', '.join(ids)}); each must be unique.")
    server = data.get("server", {})
    if not isinstance(server.get("https", False), bool):
        raise SettingsError(f"{path}: [server] https is {server['https']!r}; write true or false, without quotes.")
    facilitators = server.get("facilitators", [])
    if not isinstance(facilitators, list) or not all(isinstance(f, str) and valid_username(f) for f in facilitators):
        raise SettingsError(
            f"{path}: [server] facilitators is {facilitators!r}; write a list of usernames, e.g. [\"lee\", \"kim\"]."
        )
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
            cull_idle_seconds=int(server.get("cull_idle_seconds", 900)),
            preheated_kernels=int(server.get("preheated_kernels", 1)),
            link_days=int(server.get("link_days", 120)),
            https=server.get("https", False),
            facilitators=tuple(facilitators),
        ),
    )
