"""The errors the library raises. The ``companion`` command turns each into one
clear message and a non-zero exit; every message says what happened, to what,
and what to do next."""


class CourseError(Exception):
    """Base of every error the companion reports to a person."""


class SettingsError(CourseError):
    """course/course.toml is missing or malformed."""


class CatalogError(CourseError):
    """A session notebook does not declare its activities correctly."""


class StoreError(CourseError):
    """The database could not be reached, upgraded or written."""


class StoreUnavailable(StoreError):
    """The database could not be used just now (locked, busy, stopped, the connection lost); trying again later may work."""


class LinkError(CourseError):
    """A personal link is missing, altered or expired."""


class RosterError(CourseError):
    """A roster file is malformed; nothing was changed."""


class ReleaseError(CourseError):
    """nbgrader could not produce the learner version of a session."""


class ExportError(CourseError):
    """An export could not be written (a bad address, a missing folder, an unknown learner); nothing was written."""


class ReminderError(CourseError):
    """Reminders could not be sent (no mail server set, unreachable, a refused login); what was not sent is not recorded."""


class BackupError(StoreError):
    """A backup or restore was refused or failed (a PostgreSQL store, a file that is not a companion backup, a store that is not empty); nothing was changed."""
