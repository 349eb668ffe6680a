"""Work over parts of the learners at once, in forked processes (companion.parts): results in order,
every error brought back with what it says, and no process left behind."""

from __future__ import annotations

import os
import signal

import pytest

from companion.errors import ExportError, StoreUnavailable
from companion.parts import in_parts, split


class Forks:
    """The processes a test forked: ``pids``; ``reaped()``: every one has ended and been waited for."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def reaped(self) -> bool:
        for pid in self.pids:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            return False
        return bool(self.pids)


@pytest.fixture
def forks(monkeypatch) -> Forks:
    forks, fork = Forks(), os.fork

    def recorded() -> int:
        pid = fork()
        if pid:
            forks.pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", recorded)
    return forks


def test_learners_are_cut_into_parts_of_about_as_many_each_by_id():
    assert split([7, 3, 9, 1, 5, 11], 2) == [(1, 7), (7, 12)]
    assert split([4, 1000, 1001, 1002], 2) == [(4, 1001), (1001, 1003)], "by how many learners, not by the ids' spread"
    assert split([5], 4) == [(5, 6)], "never more parts than learners"
    assert split([], 3) == [(0, 1)], "one empty part for an empty roster"
    parts = split(list(range(1, 100_001)), 3)
    assert parts[0][0] == 1 and parts[-1][1] == 100_001
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:])), "no learner falls between two parts"


def test_each_part_runs_in_its_own_process_and_the_results_come_back_in_order(forks):
    parts = split(list(range(1, 31)), 3)
    results = in_parts(lambda part: (part, os.getpid()), parts)
    assert [part for part, _ in results] == parts
    pids = [pid for _, pid in results]
    assert pids[-1] == os.getpid(), "the last part runs here"
    assert len(set(pids)) == 3
    assert forks.reaped()


def failing_in_the_first_part(fail):
    """Work that calls ``fail()`` for the first part of learners 1 to 30 (one another process works out)."""
    def work(part):
        if part[0] == 1:
            fail()
        return part

    return work


def test_what_stops_a_part_in_another_process_is_raised_here_with_its_message(forks):
    def unreachable():
        raise StoreUnavailable("The database could not be reached just now; nothing was changed. Try again in a minute.")

    with pytest.raises(StoreUnavailable, match="could not be reached just now"):
        in_parts(failing_in_the_first_part(unreachable), split(list(range(1, 31)), 3))
    assert forks.reaped()


def test_an_unexpected_error_in_another_process_names_the_learners_it_was_reading(forks):
    def unexpected():
        raise ValueError("a value the export did not expect")

    with pytest.raises(ExportError, match=r"Learners 1 to 10 could not be read: ValueError: a value the export did not expect\. Nothing was written"):
        in_parts(failing_in_the_first_part(unexpected), split(list(range(1, 31)), 3))
    assert forks.reaped()


def test_a_process_killed_before_it_finished_is_reported_not_waited_for_forever(forks):
    with pytest.raises(ExportError, match="was stopped by signal 9 before it finished. Nothing was written; try again"):
        in_parts(failing_in_the_first_part(lambda: os.kill(os.getpid(), signal.SIGKILL)), split(list(range(1, 31)), 3))
    assert forks.reaped()


def test_an_error_in_this_processs_part_stops_the_others_and_is_raised(forks):
    def work(part):
        if part[0] == 21:
            raise StoreUnavailable("The database could not be reached just now; nothing was changed.")
        signal.pause()  # the other parts would wait for ever: they must be stopped, not waited for

    with pytest.raises(StoreUnavailable, match="could not be reached just now"):
        in_parts(work, split(list(range(1, 31)), 3))
    assert forks.reaped()


def test_the_child_hook_runs_in_each_other_process_only():
    seen = []
    results = in_parts(lambda part: list(seen), split(list(range(1, 31)), 3), in_child=lambda: seen.append("forked"))
    assert results == [["forked"], ["forked"], []]
