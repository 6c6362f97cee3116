"""billcore.db: SQLite's WAL is checkpointed every SQLITE_CHECKPOINT_EVERY commits, after the commit; the write
transactions of one process take turns."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

from billcore.db import (_SQLITE_WRITE_TURN, SQLITE_AUTOCHECKPOINT_PAGES, checkpoint_every_commits, db,
                         sqlite_write_turn)
from billcore.testing.fixtures import make_app


@pytest.fixture()
def sqlite_app(tmp_path):
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", SQLITE_CHECKPOINT_EVERY=3)
    with app.app_context():
        yield app


def _traced(statements: list[str]):
    """Record every statement the (single, pooled) SQLite connection runs from now on."""
    with db.engine.connect() as conn:
        conn.connection.driver_connection.set_trace_callback(statements.append)


def test_a_checkpoint_follows_every_nth_commit_once_the_connection_is_back(sqlite_app):
    statements: list[str] = []
    _traced(statements)
    for n in range(7):
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS t (x)"))
            conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
    checkpoints = [i for i, s in enumerate(statements) if s == "PRAGMA wal_checkpoint(PASSIVE)"]
    assert len(checkpoints) == 2  # after the 3rd and the 6th commit
    # never inside a transaction: each comes after a COMMIT
    assert all(statements[i - 1] == "COMMIT" for i in checkpoints)


def test_sqlites_own_checkpoint_is_only_a_safety_net(sqlite_app):
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == SQLITE_AUTOCHECKPOINT_PAGES


def test_the_setting_must_be_positive(sqlite_app):
    with pytest.raises(ValueError, match="SQLITE_CHECKPOINT_EVERY"):
        checkpoint_every_commits(db.engine, 0)


def test_an_engine_with_its_own_pool_class_gets_no_pool_size(tmp_path):
    """A deployment behind a connection pooler configures NullPool, which takes no pool_size: the app must
    still start (the batch jobs' pool size applies only to SQLAlchemy's default queue pool)."""
    from sqlalchemy.pool import NullPool

    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'nullpool.sqlite'}",
                   SQLALCHEMY_ENGINE_OPTIONS={"poolclass": NullPool})
    with app.app_context():
        assert isinstance(db.engine.pool, NullPool)
        assert db.session.execute(text("SELECT 1")).scalar() == 1


def test_write_transactions_of_one_process_take_turns_instead_of_polling_sqlites_lock(sqlite_app):
    from billcore.payments.service import write_connection, write_transaction

    begins: list[str] = []
    event.listen(db.engine, "begin", lambda conn: begins.append(threading.current_thread().name))
    inside, release, second_done = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with sqlite_app.app_context(), write_transaction():
            inside.set()
            release.wait(5)

    def second() -> None:
        inside.wait(5)
        with sqlite_app.app_context(), write_connection():
            second_done.set()

    threads = [threading.Thread(target=first, name="first"), threading.Thread(target=second, name="second")]
    for thread in threads:
        thread.start()
    assert inside.wait(5)
    time.sleep(0.2)
    # the second waits for its turn: it has not begun a transaction (nor polled the lock meanwhile)
    assert begins == ["first"] and not second_done.is_set()
    release.set()
    for thread in threads:
        thread.join(5)
    assert second_done.is_set() and begins == ["first", "second"]


def _turn_free_for_another_thread() -> bool:
    free: list[bool] = []

    def probe() -> None:
        got = _SQLITE_WRITE_TURN.acquire(timeout=0.5)
        if got:
            _SQLITE_WRITE_TURN.release()
        free.append(got)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(5)
    return free == [True]


def test_the_write_turn_is_reentrant_and_only_for_sqlite(sqlite_app):
    with sqlite_write_turn(), sqlite_write_turn():  # a status change made from a hook inside another
        assert not _turn_free_for_another_thread()
    assert _turn_free_for_another_thread()
    postgres = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connected
    with sqlite_write_turn(postgres):
        assert _turn_free_for_another_thread()


def test_waiting_for_the_turn_ends_with_sqlites_own_error_within_the_busy_timeout(sqlite_app):
    from sqlalchemy.exc import OperationalError

    from billcore.payments.service import write_connection, write_transaction

    sqlite_app.config["SQLITE_BUSY_TIMEOUT_MS"] = 300
    inside, release = threading.Event(), threading.Event()

    def holder() -> None:
        with sqlite_app.app_context(), write_transaction():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert inside.wait(5)
        started = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"):
            with write_connection():
                pass
        # the turn and SQLite's lock share one budget: a caller answers 503 well before a worker timeout
        assert 0.25 < time.monotonic() - started < 1.5
    finally:
        release.set()
        thread.join(5)
    with write_connection() as conn:  # the turn is free again once the holder committed
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1


@pytest.fixture
def pings(monkeypatch):
    """The pings the engine's dialect makes from now on (a list that grows)."""
    made: list[int] = []
    original = db.engine.dialect.do_ping

    def counted(dbapi_connection):
        made.append(1)
        return original(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    return made


def test_postgresql_connections_in_steady_use_are_not_pinged_and_idle_ones_are(app, pings, monkeypatch):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to lose a connection to")
    assert not db.engine.pool._pre_ping  # replaced by the idle ping
    for _ in range(5):
        with db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    assert pings == []
    clock = [time.monotonic()]
    monkeypatch.setattr("billcore.db.time.monotonic", lambda: clock[0])
    with db.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    clock[0] += app.config["POSTGRES_PING_AFTER_IDLE_SECONDS"] + 1  # it sat in the pool that long
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 2").scalar() == 2
    assert pings == [1]


def test_an_idle_postgresql_connection_the_server_closed_is_replaced_unseen(app, pings, monkeypatch):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to lose a connection to")
    db.engine.dispose()
    with db.engine.connect() as conn:
        old_pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    # the server ends that connection while it sits in the pool (a restart, an idle timeout)
    outside = create_engine(db.engine.url, poolclass=NullPool)
    with outside.connect() as other:
        assert other.exec_driver_sql(f"SELECT pg_terminate_backend({int(old_pid)})").scalar()
    outside.dispose()
    clock = [time.monotonic() + app.config["POSTGRES_PING_AFTER_IDLE_SECONDS"] + 1]
    monkeypatch.setattr("billcore.db.time.monotonic", lambda: clock[0])
    with db.engine.connect() as conn:
        new_pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    assert new_pid != old_pid and pings
