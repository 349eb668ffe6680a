"""Writers' turns: how a save takes SQLite's write lock when dozens of processes save at once.

Under ``companion serve`` the pages' saves go to one writing process
(companion.store.writer); the turns order it with everything else that
writes (the ``companion`` command, the dashboard's feedback, and kernels
saving on their own when the writer cannot be reached).

SQLite lets one writer in at a time. Its own way of waiting (the busy timeout)
sleeps and tries again, sleeping longer the longer it has waited (1 ms, 2 ms
... 100 ms), so with 64 kernels saving, the saves that have waited longest are
the least likely to get in: most take a millisecond and a few take seconds.

Here a save tries the lock once. If it is taken, the save queues for its turn
(first come, first served), and only the save at the head of the queue tries
again, every ``POLL_SECONDS``; as soon as it is in, it passes the turn on, so
the next one is already trying while it writes. The save that tries once and
gets in keeps the lock busy (handing it down the queue alone halves the saves
a second, as each handover must wake a sleeping process); the queue keeps
the wait of the others bounded.

The queue is made of POSIX record locks on ``<database>-turns``: a ticket
counter in bytes 0-7, and one byte per ticket that its holder keeps locked
until it has had its turn. A process that dies lets the next one go at once,
and the kernel wakes only the waiter behind it. SQLite's lock still guards the
data; the turns only order the writers that use them. A save at the head of the
queue gives up after ``BUSY_SECONDS``, as the busy timeout would, so a store
locked from outside is reported as busy and the page tries again later.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import struct
import threading
import time
from contextlib import contextmanager
from typing import Iterator

POLL_SECONDS = 0.0001  # how often the save at the head of the queue tries the lock
_COUNTER = 0  # bytes 0-7: the next ticket
_FIRST = 8  # ticket t waits on byte _FIRST + (t - 1) mod _SLOTS and holds _FIRST + t mod _SLOTS
_SLOTS = 1 << 20
_log = logging.getLogger("companion.store")


class Turns:
    """The queue of writers to one SQLite database file.

    >>> turns = Turns("/srv/companion/companion.db")   # queues in /srv/companion/companion.db-turns
    >>> turns.begin(cursor, busy_seconds=60)             # cursor's connection has no busy timeout
    """

    def __init__(self, database: str):
        self.database = database
        self.path = database + "-turns"
        self._fd: int | None = None
        self._pid: int | None = None
        self._here = threading.Lock()  # record locks belong to a process: its own threads queue here first

    def begin(self, cursor: sqlite3.Cursor, busy_seconds: float) -> None:
        """BEGIN IMMEDIATE on ``cursor``: at once if the lock is free, else in turn; "database is locked" after ``busy_seconds``.

        Without a usable turns file (a read-only folder, another user's file), the save still
        tries until ``busy_seconds`` have passed, in no particular order."""
        if _begun(cursor):
            return
        fd = self._file()
        with self._turn(fd) if fd is not None else _no_turn() as pass_on:
            deadline = time.monotonic() + busy_seconds
            while not _begun(cursor):
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError("database is locked")
                time.sleep(POLL_SECONDS)
            pass_on()

    def _file(self) -> int | None:
        """This process's handle on the turns file, made beside the database (and owned by its owner) if need be."""
        if self._pid == os.getpid():  # a forked kernel opens its own
            return self._fd
        self._fd, self._pid = None, os.getpid()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # as SQLite makes its -wal and -shm
            if os.geteuid() == 0:  # root (an administrator's command) leaves the file to the database's owner, as SQLite does
                owner = os.stat(self.database)
                os.fchown(self._fd, owner.st_uid, owner.st_gid)
        except OSError as error:
            _log.warning("Saves to %s wait for the write lock in no particular order: %s could not be opened (%s).",
                         self.database, self.path, error.strerror or error)
        return self._fd

    @contextmanager
    def _turn(self, fd: int) -> Iterator:
        """Take a ticket and wait until every earlier ticket has had its turn; the block may pass the turn on early."""
        with self._here:
            fcntl.lockf(fd, fcntl.LOCK_EX, 8, _COUNTER)
            try:
                counted = os.pread(fd, 8, _COUNTER)
                ticket = struct.unpack("<Q", counted)[0] if len(counted) == 8 else 0
                os.pwrite(fd, struct.pack("<Q", ticket + 1), _COUNTER)
                mine = _FIRST + ticket % _SLOTS
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, mine)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 8, _COUNTER)
            held = True

            def pass_on() -> None:
                nonlocal held
                if held:
                    held = False
                    fcntl.lockf(fd, fcntl.LOCK_UN, 1, mine)

            try:
                before = _FIRST + (ticket - 1) % _SLOTS
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, before)  # the ticket before this one has had its turn
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, before)
                yield pass_on
            finally:
                pass_on()


@contextmanager
def _no_turn() -> Iterator:
    yield lambda: None


def _begun(cursor: sqlite3.Cursor) -> bool:
    """Whether BEGIN IMMEDIATE got the write lock (False: another writer has it)."""
    try:
        cursor.execute("BEGIN IMMEDIATE")
        return True
    except sqlite3.OperationalError as error:
        if getattr(error, "sqlite_errorcode", sqlite3.SQLITE_BUSY) != sqlite3.SQLITE_BUSY:
            raise
        return False
