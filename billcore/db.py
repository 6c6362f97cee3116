"""The database handle, the declarative base and SQLite's connection settings."""
from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase

from .write_priority import Waiting, give_way, in_background, waiting_file

# Named constraints so Alembic migrations can alter them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every billcore table."""

    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)
log = logging.getLogger(__name__)


class _RequestConnection:
    """The connection of a :func:`request_connection` block: checked out on first use; ``writing`` while a
    write transaction of the payment service runs on it."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.writing = False


_REQUEST_CONNECTION: ContextVar[_RequestConnection | None] = ContextVar("billcore_request_connection",
                                                                        default=None)


@contextmanager
def request_connection() -> Iterator[None]:
    """One pooled connection for the block (a gateway callback): the first look at the payment
    (:func:`billcore.paymethods.callback_context`) and the payment service's write transactions made in it
    share it instead of checking out one each, so a notification costs one pool checkout (on PostgreSQL
    one pre-ping round trip) instead of two.

    The connection is checked out on first use and returned to the pool when the block ends, also on an
    exception (an open transaction is rolled back then). A block inside another uses the outer one's.
    """
    if _REQUEST_CONNECTION.get() is not None:
        yield
        return
    shared = _RequestConnection()
    token = _REQUEST_CONNECTION.set(shared)
    try:
        yield
    finally:
        _REQUEST_CONNECTION.reset(token)
        if shared.conn is not None:
            shared.conn.close()


def shared_connection() -> Connection | None:
    """The connection of the current :func:`request_connection` block (checked out now if it was not yet);
    None outside such a block, or while a write transaction runs on it (a status change made from inside
    it, e.g. by a hook, takes a connection of its own as it would outside the block)."""
    shared = _REQUEST_CONNECTION.get()
    if shared is None or shared.writing:
        return None
    if shared.conn is None:
        shared.conn = db.engine.connect()
    return shared.conn


@contextmanager
def writing_on_shared_connection() -> Iterator[Connection | None]:
    """The current block's shared connection, marked as holding a write transaction for the duration (see
    :func:`shared_connection`); None when there is none to use."""
    conn = shared_connection()
    if conn is None:
        yield None
        return
    shared = _REQUEST_CONNECTION.get()
    assert shared is not None
    shared.writing = True
    try:
        yield conn
    finally:
        shared.writing = False


def init_app(app: Flask) -> None:
    """Bind the database to ``app`` and configure SQLite connections (WAL, busy timeout, foreign keys)."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    ping_when_idle = url.startswith("postgresql") and not options.get("pool_pre_ping")
    # A batch job's gateway thread holds one connection per item (its claim's, which the item's writes
    # use too) and, for a moment, its session's for a read: keep one per thread and a few for those
    # reads, so a thread seldom waits for a connection (and never opens and closes one per item). Not
    # two per thread: forty threads would then keep 80 of PostgreSQL's 100 connections open.
    if "poolclass" not in options:  # NullPool, StaticPool... take no pool_size
        options.setdefault("pool_size", max(5, _most_gateway_workers(app) + 8))
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    db.init_app(app)
    if url.startswith("sqlite"):
        with app.app_context():
            _configure_sqlite(db.engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
            checkpoint_every_commits(db.engine, app.config["SQLITE_CHECKPOINT_EVERY"])
    elif url.startswith("postgresql"):
        with app.app_context():
            postgres_timeouts(db.engine, app.config["POSTGRES_LOCK_TIMEOUT_MS"],
                              app.config["POSTGRES_STATEMENT_TIMEOUT_MS"])
            if ping_when_idle:
                ping_idle_connections(db.engine, float(app.config["POSTGRES_PING_AFTER_IDLE_SECONDS"]))


def ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Test a pooled connection of ``engine`` before use when it sat in the pool longer than
    ``idle_seconds``; one the server closed meanwhile (a restart, an idle timeout) is replaced, unseen.

    SQLAlchemy's ``pool_pre_ping`` tests every connection on every checkout: a round trip for each
    notification and three for each payment a batch job polls, about 6 % of the job's CPU, to guard
    against what happens to a connection left unused. A connection in steady use is not tested. One the
    server closed after a shorter pause (a restart between two requests a second apart), or while it was
    in use, fails that one request or item: a gateway gets billcore's 503 and sends its notification
    again, a batch job logs the item and goes on, and the pool then replaces every connection opened
    before the failure (SQLAlchemy invalidates the pool on a disconnect).
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return  # just opened, or back in use after a moment
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # the pool discards this connection and checks out another (SQLAlchemy's PoolEvents.checkout)
            raise DisconnectionError(f"idle connection closed by the server: {type(exc).__name__}") from exc


def postgres_timeouts(engine: Engine, lock_timeout_ms: int, statement_timeout_ms: int) -> None:
    """Give every PostgreSQL connection of ``engine`` a ``lock_timeout`` and a ``statement_timeout``.

    Without them a request waits for a row lock as long as its holder keeps it, and the WSGI server
    kills the worker first (an HTML 500 from gunicorn instead of billcore's 503 that a gateway retries).
    Set per connection (once, when it is opened) rather than in the URL, which keeps its own options.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # outside any transaction, so a later rollback keeps them
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
            cursor.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
        dbapi_connection.autocommit = autocommit


def _most_gateway_workers(app: Flask) -> int:
    from .gateway_pool import DEFAULT_WORKERS, MAX_WORKERS

    values = [app.config.get("GATEWAY_WORKERS_DEFAULT", DEFAULT_WORKERS),
              *(app.config.get("GATEWAY_WORKERS") or {}).values()]
    try:
        return min(MAX_WORKERS, max(int(v) for v in values))
    except (TypeError, ValueError):
        return DEFAULT_WORKERS  # a bad value is refused with a clear error when a job starts


# On SQLite one write transaction at a time holds the database's write lock, and a writer waiting for it
# polls every millisecond or less (_begin_immediate): with a batch job's 40 gateway threads that polling
# cost more CPU than their work, and starved the web workers' notifications of the lock and the CPU. The
# payment service's write transactions of one process take turns on this lock instead (a thread waiting
# on it costs nothing), so at most one thread per process polls. Reentrant: a status change made from a
# hook inside another runs in the same thread.
_SQLITE_WRITE_TURN = threading.RLock()
# The moment this thread's wait for the write lock must end (its turn and then BEGIN IMMEDIATE share one
# busy timeout, so a caller still gets billcore's 503 well before the worker is killed).
_WRITE_DEADLINE = threading.local()


@contextmanager
def sqlite_write_turn(engine: Engine | None = None) -> Iterator[None]:
    """Wait for this process's turn to open a write transaction on SQLite, held for the block (no-op on
    other databases, where writers lock only their own rows). Waiting for the turn and then for SQLite's
    lock take at most ``SQLITE_BUSY_TIMEOUT_MS`` together; past it, SQLAlchemy's OperationalError
    ("database is locked") is raised, as a busy SQLite would. A batch job's transaction then first lets
    the requests that wait for SQLite's lock go (:mod:`billcore.write_priority`)."""
    engine = engine or db.engine
    if not is_sqlite(engine):
        yield
        return
    outermost = getattr(_WRITE_DEADLINE, "at", None) is None
    if outermost:
        _WRITE_DEADLINE.at = time.monotonic() + current_app.config.get("SQLITE_BUSY_TIMEOUT_MS", 10000) / 1000
    try:
        if not _SQLITE_WRITE_TURN.acquire(timeout=max(0.0, _WRITE_DEADLINE.at - time.monotonic())):
            raise OperationalError("waiting for this process's turn to write", None,
                                   sqlite3.OperationalError("database is locked"))
        try:
            if outermost and in_background():  # a batch job's transaction lets a waiting request go
                # first (not a nested one: its outer transaction holds the lock the request waits for)
                give_way(waiting_file(engine), _WRITE_DEADLINE.at)
            yield
        finally:
            _SQLITE_WRITE_TURN.release()
    finally:
        if outermost:
            _WRITE_DEADLINE.at = None


def commit_without_waiting_for_the_disk(conn: Connection) -> None:
    """PostgreSQL: the commit of ``conn``'s current transaction does not wait for its WAL to reach the disk
    (``synchronous_commit`` off for this transaction alone; it is still seen by everyone at once). Elsewhere
    nothing changes. Only for what a crash of the database's machine may lose (the last fraction of a
    second) because the next run of a job does it again: an accepted charge's booking, a poll's answer that
    changed nothing. Money that moves always waits for the disk. A later commit that does wait writes the
    WAL before it too (the WAL is written in order), so nothing that depends on it is kept without it.
    Each commit that waits for the disk holds up the commits behind it, the notifications' among them
    (``bench/batch.py``)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


def is_sqlite(engine: Engine) -> bool:
    """True when ``engine`` talks to SQLite."""
    return engine.dialect.name == "sqlite"


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    # pysqlite's own transaction handling issues BEGIN lazily and never BEGIN IMMEDIATE; taking it over
    # lets the payment service start write transactions that hold the write lock from the first
    # statement, so two processes never both read a payment as unpaid.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every SQLite test
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        options = connection.get_execution_options()
        if options.get("billcore_write"):
            _begin_immediate(connection, busy_timeout_ms)
        elif not options.get("billcore_single_read"):
            connection.exec_driver_sql("BEGIN")
        # else: one SELECT in autocommit is already consistent; an explicit BEGIN would only cost a
        # statement on every notification (bench/notify.py)


# SQLite's own automatic checkpoint runs in the committing connection once the WAL holds N pages, and runs
# again after every later commit for as long as the WAL cannot start over, which needs a moment with no
# reader in it: under steady writes from several workers that moment hardly comes, and every commit paid
# a checkpoint and its two fdatasync calls (bench/notify.py: 2,015 of them for 4,380 notifications).
# billcore checkpoints every SQLITE_CHECKPOINT_EVERY commits of a process instead, once the connection is
# back in the pool; SQLite's own stays on as a safety net at this many pages (40 MB).
SQLITE_AUTOCHECKPOINT_PAGES = 10000


def checkpoint_every_commits(engine: Engine, every: int) -> None:
    """Checkpoint ``engine``'s SQLite WAL (PASSIVE: never waits, never blocks a writer) after every
    ``every`` commits made through it in this process, when the committing connection returns to the
    pool; SQLite's own automatic checkpoint is moved up to ``SQLITE_AUTOCHECKPOINT_PAGES``."""
    if every < 1:
        raise ValueError("SQLITE_CHECKPOINT_EVERY must be at least 1")
    commits = [0]

    @event.listens_for(engine, "connect")
    def _autocheckpoint(dbapi_connection, _record):  # pragma: no cover - exercised by every SQLite test
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")

    @event.listens_for(engine, "commit")
    def _count(connection):  # before the commit: only note that this connection's turn has come
        commits[0] += 1
        if commits[0] >= every:
            commits[0] = 0
            connection.connection.info["billcore_checkpoint"] = True

    @event.listens_for(engine, "checkin")
    def _checkpoint(dbapi_connection, record):
        if dbapi_connection is None or not record.info.pop("billcore_checkpoint", False):
            return
        try:
            dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:  # a checkpoint is housekeeping: the next one catches up
            log.warning("SQLite checkpoint failed", exc_info=True)


def _begin_immediate(connection, busy_timeout_ms: int) -> None:
    """``BEGIN IMMEDIATE``, retried with sleeps of a few milliseconds while another connection writes.

    SQLite's own busy handler sleeps 1, 2, 5 ... then 100 ms between attempts, so under a burst of
    notifications from several workers a waiter sleeps long after the lock was freed (measured by
    bench/notify.py: 36 notifications/s with 4 workers). Short polls (0.2 ms growing to at most 1 ms: a
    credit holds the lock for well under a millisecond) keep the lock in use. After
    ``busy_timeout_ms`` the last attempt fails with SQLAlchemy's OperationalError, as before. While a
    request waits it says so, and a batch job's next transaction lets it go first
    (:mod:`billcore.write_priority`).
    """
    raw = connection.connection.driver_connection
    deadline = time.monotonic() + busy_timeout_ms / 1000
    turn_deadline = getattr(_WRITE_DEADLINE, "at", None)
    if turn_deadline is not None:  # what is left of the budget after waiting for this process's turn
        deadline = min(deadline, turn_deadline)
    delay = 0.0002
    waiting = Waiting(waiting_file(connection.engine))  # a batch job about to begin lets this one go first
    raw.execute("PRAGMA busy_timeout=0")
    try:
        while time.monotonic() < deadline:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    break  # not contention: let the attempt below raise it the usual way
            waiting.say_so()
            time.sleep(min(delay * random.uniform(0.5, 1.5), max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.001)
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        waiting.done()
        raw.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
