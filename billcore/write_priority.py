"""A batch job's write transactions: a few at a time, and on SQLite after the requests that wait.

**A few at a time.** The batch jobs keep dozens of gateway calls in flight (``GATEWAY_WORKERS``), one
thread each, and each thread writes what it learnt. With every thread free to write at once, dozens of
transactions were open together: the threads took the interpreter's lock from one another between two
statements, each transaction stayed open the longer for it, and on PostgreSQL dozens of backends worked
and committed at once, the notifications' beside them. At most ``BATCH_WRITERS`` (2) threads of a
process are now inside a write transaction (:func:`batch_write_slot`); the others wait for a slot holding
nothing. Measured by ``bench/batch.py`` on PostgreSQL (10,000 items, 56 threads): ``recurring run`` took
70 s and 49 s of CPU instead of 94 s and 73 s, and the notifications' p99 meanwhile fell from 23 to 8 ms.

**After the waiting requests (SQLite).** SQLite has one write lock for the whole database. A web worker
that finds it taken polls for it (:func:`billcore.db._begin_immediate`, every millisecond or less), while a
batch job's threads take their turns for it within the process (:func:`billcore.db.sqlite_write_turn`):
each of the job's transactions began the moment the one before committed. A notification then missed the
gap between two of the job's transactions again and again, and waited for several of them
(``bench/batch.py``, ``recurring run``: a tenth of the notifications waited 6 ms or more for the lock, a
hundredth 12–15 ms, while the job's own transactions held it 2 ms at the median).

So a request that has to wait says so, and a batch job looks before it begins:

* a writer outside a batch job holds a shared ``flock`` on a file beside the database
  (``<database>-waiting``) for as long as it waits for the write lock;
* a batch job's writer (inside :func:`background_writes`) first tries that file's exclusive lock without
  waiting, and while it cannot have it (a request waits) it sleeps a moment and tries again, for at most
  :data:`GIVE_WAY_SECONDS` per transaction.

The request then takes the lock at its next try; the job begins right after it. An ``flock`` belongs to
the process's open file and goes with the process, so a worker killed while it waits never holds the job
up, and the job's wait is bounded anyway: a steady stream of requests slows a job down, never stops it.
"""
from __future__ import annotations

import fcntl
import functools
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO

from flask import current_app
from sqlalchemy.engine import Engine

# How long a batch job's transaction waits at most for the requests waiting before it.
GIVE_WAY_SECONDS = 0.05
# How long it sleeps between two looks (a request's write takes about half a millisecond).
_LOOK_AGAIN_SECONDS = 0.0002

_BACKGROUND: ContextVar[bool] = ContextVar("billcore_background_writes", default=False)
_files = threading.local()  # per thread: {path: (pid, open file)}
_slots: dict[int, threading.BoundedSemaphore] = {}  # BATCH_WRITERS -> the process's slots
_slots_lock = threading.Lock()
_holding = threading.local()  # this thread holds a slot (a nested write transaction takes none)
_unusable: set[str] = set()  # waiting files that could not be opened (logged once)
log = logging.getLogger(__name__)


@contextmanager
def background_writes() -> Iterator[None]:
    """Mark the block's write transactions as a batch job's: each waits for one of the process's
    ``BATCH_WRITERS`` slots (:func:`batch_write_slot`) and, on SQLite, lets the requests that wait for the
    write lock go first. Set in each thread of a job (a context variable)."""
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


def in_background() -> bool:
    """True inside :func:`background_writes`."""
    return _BACKGROUND.get()


@contextmanager
def batch_write_slot() -> Iterator[None]:
    """Inside :func:`background_writes`, wait for one of the process's ``BATCH_WRITERS`` slots and hold it
    for the block (a write transaction); elsewhere, and in a block nested in one that holds a slot, do
    nothing. Take it before the transaction's connection, so a thread waiting for a slot holds none."""
    if not in_background() or getattr(_holding, "slot", False):
        yield
        return
    slots = _process_slots(int(current_app.config.get("BATCH_WRITERS", 2)))
    slots.acquire()
    _holding.slot = True
    try:
        yield
    finally:
        _holding.slot = False
        slots.release()


def _process_slots(count: int) -> threading.BoundedSemaphore:
    if count < 1:
        raise ValueError(f"BATCH_WRITERS must be at least 1, not {count}")
    with _slots_lock:
        return _slots.setdefault(count, threading.BoundedSemaphore(count))


def waiting_file(engine: Engine) -> str | None:
    """The file beside ``engine``'s SQLite database that waiting requests lock; None for a database in
    memory (one process: nobody else to give way to)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return _beside(database)


@functools.lru_cache(maxsize=16)
def _beside(database: str) -> str:
    # once per database and process: every write transaction asks, and realpath looks at each folder
    return os.path.realpath(database) + "-waiting"


def _file(path: str) -> IO[bytes] | None:
    """This thread's own open file of ``path``: an ``flock`` is shared by everyone using one open file,
    so two threads waiting at once must not share theirs (nor a worker its parent's, after a fork).

    Made with the database file's permissions, as SQLite makes its ``-wal`` and ``-shm`` (0600 when
    billcore made the database; group-writable when the operator shares it between the web server's and
    cron's users). None when it cannot be opened: the priority is a courtesy, and a write never fails
    for it (logged once per process)."""
    cache: dict[str, tuple[int, IO[bytes]]] = _files.__dict__.setdefault("by_path", {})
    pid = os.getpid()
    kept = cache.get(path)
    if kept is None or kept[0] != pid:
        try:
            kept = (pid, _open(path))
        except OSError as exc:
            _cannot_use(path, exc)
            return None
        cache[path] = kept  # kept open for the thread's life
    return kept[1]


def _cannot_use(path: str, exc: OSError) -> None:
    """Log once per process that ``path`` cannot be opened or locked (the writes go on without it)."""
    if path not in _unusable:
        _unusable.add(path)
        log.warning("%s cannot be used (%s): batch jobs will not give way to waiting requests", path, exc)


def _open(path: str) -> IO[bytes]:
    try:
        mode = os.stat(path.removesuffix("-waiting")).st_mode & 0o666
    except OSError:
        mode = 0o600
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        if os.fstat(fd).st_uid == os.geteuid():  # made now, or ours before: the mode the umask reduced
            os.fchmod(fd, mode)
        return os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise


class Waiting:
    """A request's writer waiting for the write lock: :meth:`say_so` after each failed try holds a shared
    lock on the database's waiting file (taken once), :meth:`done` lets it go. For a batch job's writer,
    or a database in memory, both do nothing."""

    def __init__(self, path: str | None) -> None:
        self.path = path if not in_background() else None
        self.handle: IO[bytes] | None = None
        self.said = False

    def say_so(self) -> None:
        """The last try failed: make sure a batch job about to begin sees that a request waits."""
        if self.path is None or self.said:
            return
        self.handle = self.handle or _file(self.path)
        if self.handle is None:  # the file cannot be used: the request waits as it always did
            return
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            self.said = True
        except BlockingIOError:  # a job is looking this very moment: the next failed try says so again
            pass
        except OSError as exc:  # a file system without locks: the request waits as it always did
            _cannot_use(self.path, exc)
            self.path = None

    def done(self) -> None:
        """No longer waiting (the lock was taken, or the wait given up)."""
        if self.said and self.handle is not None:
            self.said = False
            try:
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            except OSError:  # closing the file (at the thread's end) lets it go anyway
                pass


def give_way(path: str | None, deadline: float) -> float:
    """A batch job's writer, before it begins: wait while a request waits for the write lock, for at
    most :data:`GIVE_WAY_SECONDS` and never past ``deadline`` (``time.monotonic()``). Returns the seconds
    waited. Does nothing outside :func:`background_writes` or for a database in memory."""
    if path is None or not in_background():
        return 0.0
    handle = _file(path)
    if handle is None:  # the file cannot be used: begin at once, as before
        return 0.0
    started = time.monotonic()
    until = min(started + GIVE_WAY_SECONDS, deadline)
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            now = time.monotonic()
            if now >= until:
                return now - started
            time.sleep(min(_LOOK_AGAIN_SECONDS, until - now))
            continue
        except OSError as exc:  # a file system without locks: begin at once, as before
            _cannot_use(path, exc)
            return time.monotonic() - started
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return time.monotonic() - started
