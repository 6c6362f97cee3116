"""Bounded concurrency for the batch jobs that call gateways (``payments check``, ``recurring run``).

A gateway answers a status question in tens to hundreds of milliseconds, almost all of it waiting on the
network; asked one at a time, 10,000 payments at 200 ms take over half an hour. The jobs therefore hand
each item to a small pool of threads, one pool per payment module, so the number of calls in flight to
one gateway is bounded by that module's setting:

* ``GATEWAY_WORKERS`` - ``{module key: threads}``, e.g. ``{"pmrobokassa": 16}``;
* ``GATEWAY_WORKERS_DEFAULT`` - for modules not listed (8; 1 runs the items one by one in the caller's
  thread, as before).

Each item runs in its own app context, so it gets its own database session and connection; nothing is
shared between items but what the job's callbacks share on purpose. The items are fed lazily (at most
twice the pool size are queued), so memory stays flat however many there are. An exception from one
item is handed to ``on_error`` and the others go on.

While a pool runs, the interpreter's switch interval is raised to :data:`POOL_SWITCH_INTERVAL`: dozens of
threads that mostly wait on the network gain nothing from CPython taking the GIL from a running thread
every 5 ms, and each forced hand-over costs CPU (measured: about a tenth of a poll's).
"""
from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from flask import current_app

from .db import db
from .write_priority import background_writes

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_WORKERS = 8
MAX_WORKERS = 64  # per module and process; each thread holds a database connection per item
POOL_SWITCH_INTERVAL = 0.05  # seconds; CPython's default is 0.005

_switching = threading.Lock()
_pools_running = 0
_interval_before = 0.0


def workers_for(module: str) -> int:
    """How many gateway calls of ``module`` one process makes at once (1..:data:`MAX_WORKERS`)."""
    per_module = current_app.config.get("GATEWAY_WORKERS") or {}
    value = per_module.get(module, current_app.config.get("GATEWAY_WORKERS_DEFAULT", DEFAULT_WORKERS))
    try:
        return max(1, min(MAX_WORKERS, int(value)))
    except (TypeError, ValueError):
        raise ValueError(f"GATEWAY_WORKERS for {module!r} must be a whole number, not {value!r}") from None


def release_read_transaction() -> None:
    """End the request session's read-only transaction without expiring what it loaded.

    Called just before a gateway call: the objects already read stay usable, but no database connection
    (and no SQLite read snapshot, which would hold back WAL checkpoints) is kept for the call's duration.
    A session with changes of its own is left alone.
    """
    session = db.session()
    if not session.in_transaction() or session.new or session.dirty or session.deleted:
        return
    expire = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()  # nothing to write: only ends the transaction and returns the connection
    finally:
        session.expire_on_commit = expire


def run_each(items: Iterable[T], work: Callable[[T], None], workers: int,
             on_error: Callable[[T, Exception], None]) -> None:
    """Call ``work(item)`` for every item on at most ``workers`` threads; wait for all of them.

    ``workers == 1`` runs in the calling thread (and its app context). Otherwise each call runs in a
    fresh app context of the current app, whose session is removed afterwards. An exception from ``work``
    is passed to ``on_error(item, exc)`` after the session was rolled back; the run goes on.
    """
    if workers <= 1:
        with background_writes():
            for item in items:
                _run_one(item, work, on_error)
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    slots = threading.BoundedSemaphore(workers * 2)  # queued + running: the items are fed lazily

    def task(item: T) -> None:
        try:
            with app.app_context(), background_writes():
                try:
                    _run_one(item, work, on_error)
                finally:
                    db.session.remove()
        finally:
            slots.release()

    with _longer_switch_interval(), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gateway") as pool:
        for item in items:
            slots.acquire()
            pool.submit(task, item)


@contextmanager
def _longer_switch_interval() -> Iterator[None]:
    """Raise the interpreter's switch interval to :data:`POOL_SWITCH_INTERVAL` (never lower it) while
    the block runs; the value before the first of overlapping pools is put back when the last ends."""
    global _pools_running, _interval_before
    with _switching:
        if _pools_running == 0:
            _interval_before = sys.getswitchinterval()
            sys.setswitchinterval(max(_interval_before, POOL_SWITCH_INTERVAL))
        _pools_running += 1
    try:
        yield
    finally:
        with _switching:
            _pools_running -= 1
            if _pools_running == 0:
                sys.setswitchinterval(_interval_before)


def _run_one(item: T, work: Callable[[T], None], on_error: Callable[[T, Exception], None]) -> None:
    try:
        work(item)
    except Exception as exc:  # one broken item must not stop the others
        try:
            db.session.rollback()
            on_error(item, exc)
        except Exception:  # noqa: BLE001 - in a pool thread nobody would see it otherwise
            log.exception("gateway pool: reporting the failure of %r failed", item)
