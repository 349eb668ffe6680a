"""Work done over parts of the learners at once, one forked process per part.

The evaluation export at 100,000 learners takes 8 to 12 CPU-seconds on the
benchmark's machine, most of it Python making the database's rows into
objects and placing them in each learner's cells, which one process cannot
spread over a machine's cores: Python's lock lets one thread run its code at
a time (threads were tried, and made it slower). So the learners are cut
into parts by id (:func:`split`), and :func:`in_parts` works out each part in
a process forked for it, the last in this process, and returns their results
in order. A forked process shares
everything this one has read (the catalog, the settings) and opens its own
database connections; it sends its result back pickled, or the error that
stopped it, which :func:`in_parts` raises here.

Example::

    >>> from companion.parts import in_parts, split
    >>> split(list(range(1, 11)), 3)
    [(1, 4), (4, 7), (7, 11)]
    >>> in_parts(lambda part: sum(range(*part)), split(list(range(1, 11)), 3))
    [6, 15, 34]
"""

from __future__ import annotations

import os
import pickle
from typing import Callable, TypeVar

from .errors import CourseError, ExportError

Result = TypeVar("Result")
Part = tuple[int, int]  # learner ids from the first up to, not including, the second

MAX_PARTS = 4  # at most this many at once, so that on a larger server an export leaves cores to the learners' pages


def cores() -> int:
    """How many cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def split(learner_ids: list[int], parts: int) -> list[Part]:
    """``learner_ids`` (in any order) cut into at most ``parts`` parts of about as many learners each, by id."""
    if not learner_ids:
        return [(0, 1)]
    ordered = sorted(learner_ids)
    parts = max(1, min(parts, len(ordered)))
    firsts = [ordered[len(ordered) * n // parts] for n in range(parts)]
    ends = firsts[1:] + [ordered[-1] + 1]
    return [(first, end) for first, end in zip(firsts, ends) if first < end]


def in_parts(work: Callable[[Part], Result], parts: list[Part], in_child: Callable[[], None] = lambda: None) -> list[Result]:
    """``work(part)`` for every part, at once: each in a forked process but the last, which runs in this one.

    ``in_child`` runs first in each forked process (to let go of the database
    connections it inherited, for example). An error in any part is raised here
    once every part has finished; one that cannot be sent back, or a process
    that ended without a result, is raised as an :class:`ExportError`."""
    children = [_fork(work, part, in_child) for part in parts[:-1]]
    try:
        mine = work(parts[-1])
    except BaseException:
        for pid, _ in children:
            _stop(pid)
        raise
    finally:
        results = [_collect(pid, pipe) for pid, pipe in children]
    for kind, value in results:
        if kind == "error":
            raise value
    return [value for _, value in results] + [mine]


def _fork(work: Callable[[Part], Result], part: Part, in_child: Callable[[], None]) -> tuple[int, int]:
    """A process working out ``part``; returns its pid and the pipe its result comes back on."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        return pid, read_end
    os.close(read_end)
    status = 1
    try:
        try:
            in_child()
            outcome = ("done", work(part))
            status = 0
        except BaseException as error:
            outcome = ("error", error if isinstance(error, CourseError) else ExportError(
                f"Learners {part[0]} to {part[1] - 1} could not be read: {error.__class__.__name__}: {error}. Nothing was written."
            ))
        with os.fdopen(write_end, "wb") as pipe:
            pickle.dump(outcome, pipe, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        os._exit(status)  # no atexit handlers, no flushing of what the parent buffered


def _collect(pid: int, pipe: int) -> tuple[str, object]:
    """What the process ``pid`` sent back, once it has ended."""
    with os.fdopen(pipe, "rb") as incoming:
        try:
            outcome = pickle.load(incoming)
        except Exception:
            outcome = None
    _, status = os.waitpid(pid, 0)
    if outcome is None:
        ended = f"was stopped by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"ended with status {os.waitstatus_to_exitcode(status)}"
        outcome = ("error", ExportError(f"A process reading part of the learners {ended} before it finished. Nothing was written; try again."))
    return outcome


def _stop(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
