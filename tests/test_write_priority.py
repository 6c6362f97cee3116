"""billcore.write_priority: on SQLite a batch job's write transaction lets a request that waits for the
write lock go first; the request says so by a shared flock on a file beside the database."""
from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import create_engine, text

from billcore import write_priority
from billcore.db import db
from billcore.gateway_pool import run_each
from billcore.testing.fixtures import make_app
from billcore.write_priority import GIVE_WAY_SECONDS, Waiting, background_writes, give_way, in_background, waiting_file


@pytest.fixture()
def sqlite_app(tmp_path):
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    with app.app_context():
        yield app


def _someone_waits(path: str) -> bool:
    """Whether a request says it waits: the file's exclusive lock cannot be had (from an open file of
    our own, as another process would look)."""
    with open(path, "ab") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def _request_waits(path: str) -> Waiting:
    """A request that says it waits, from a thread of its own (as another worker would: a thread's own
    open file, whose lock a job's look from this thread does not share)."""
    request: list[Waiting] = []

    def say_so() -> None:
        request.append(Waiting(path))
        request[0].say_so()

    thread = threading.Thread(target=say_so)
    thread.start()
    thread.join()
    assert request[0].said
    return request[0]


def test_the_waiting_file_is_beside_the_database_and_none_in_memory(tmp_path):
    assert waiting_file(create_engine(f"sqlite:///{tmp_path / 'billing.sqlite'}")) == \
        str(tmp_path / "billing.sqlite") + "-waiting"
    assert waiting_file(create_engine("sqlite://")) is None
    assert waiting_file(create_engine("sqlite:///:memory:")) is None


@pytest.fixture()
def longer_give_way(monkeypatch) -> float:
    """A give-way bound far above what a loaded test machine may take to schedule a thread, so that the
    tests tell "waited until the request was through" from "waited until the bound"."""
    monkeypatch.setattr(write_priority, "GIVE_WAY_SECONDS", 2.0)
    return 2.0


def test_a_job_gives_way_until_the_waiting_request_is_through(tmp_path, longer_give_way):
    path = str(tmp_path / "db.sqlite-waiting")
    request = _request_waits(path)
    assert _someone_waits(path)
    through: list[float] = []

    def request_through() -> None:  # the request got the lock 50 ms later
        through.append(time.monotonic())
        request.done()

    threading.Timer(0.05, request_through).start()
    with background_writes():
        waited = give_way(path, time.monotonic() + 10)
        returned = time.monotonic()
    assert through and through[0] <= returned  # the job began only once the request was through
    assert waited < longer_give_way / 2
    assert not _someone_waits(path)


def test_with_nobody_waiting_a_job_begins_at_once(tmp_path, longer_give_way):
    path = str(tmp_path / "db.sqlite-waiting")
    with background_writes():
        assert give_way(path, time.monotonic() + 10) < longer_give_way / 4


def test_a_job_gives_way_for_a_bounded_time_and_never_past_its_deadline(tmp_path, monkeypatch):
    path = str(tmp_path / "db.sqlite-waiting")
    assert GIVE_WAY_SECONDS == 0.05
    monkeypatch.setattr(write_priority, "GIVE_WAY_SECONDS", 0.3)
    request = _request_waits(path)  # and never done: a stream of requests, or a stuck one
    try:
        with background_writes():
            assert 0.3 <= give_way(path, time.monotonic() + 10) < 1.5  # the bound, not the request's end
            assert give_way(path, time.monotonic() + 0.02) < 0.2  # the transaction's own deadline first
    finally:
        request.done()


def test_only_a_batch_job_gives_way_and_it_never_says_it_waits(tmp_path):
    path = str(tmp_path / "db.sqlite-waiting")
    request = _request_waits(path)
    try:
        assert give_way(path, time.monotonic() + 10) == 0.0  # a request's writer does not wait for another
        with background_writes():
            job = Waiting(path)
            job.say_so()  # a job's writer waiting for the lock must not hold up another job's
            job.done()
            assert not job.said
    finally:
        request.done()
    assert not _someone_waits(path)


def test_a_request_killed_while_it_waits_never_holds_a_job_up(tmp_path, longer_give_way):
    path = str(tmp_path / "db.sqlite-waiting")
    script = ("import fcntl, sys, time\n"
              f"handle = open({path!r}, 'ab')\n"
              "fcntl.flock(handle.fileno(), fcntl.LOCK_SH)\n"
              "print('waiting', flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "waiting"
        assert _someone_waits(path)
    finally:
        proc.kill()
        proc.wait(10)
    with background_writes():
        assert give_way(path, time.monotonic() + 10) < longer_give_way / 4


def test_a_request_blocked_by_another_writer_says_it_waits_until_it_has_the_lock(sqlite_app, tmp_path):
    from billcore.payments.service import write_transaction

    path = waiting_file(db.engine)
    db.session.execute(text("CREATE TABLE t (x)"))
    db.session.commit()
    other = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")  # another process's
    holder = other.connect()
    holder.exec_driver_sql("BEGIN IMMEDIATE")
    written = threading.Event()

    def request() -> None:
        with sqlite_app.app_context(), write_transaction() as session:
            session.execute(text("INSERT INTO t VALUES (1)"))
        written.set()

    thread = threading.Thread(target=request)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not _someone_waits(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert _someone_waits(path)
        assert not written.is_set()
    finally:
        holder.exec_driver_sql("COMMIT")
        holder.close()
        thread.join(10)
    assert written.is_set()
    assert not _someone_waits(path)
    other.dispose()


def test_a_jobs_transaction_begins_after_the_waiting_requests(sqlite_app, tmp_path, longer_give_way):
    """The job's next transaction would have begun the moment the lock was free; it lets the request that
    waited for it go first."""
    from billcore.payments.service import write_transaction

    db.session.execute(text("CREATE TABLE t (who)"))
    db.session.commit()
    # another process's connections: they fail at once when the lock is taken (no busy timeout)
    other = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}", connect_args={"timeout": 0})
    holder = other.connect()
    holder.exec_driver_sql("BEGIN IMMEDIATE")  # the job's transaction before this one
    path = waiting_file(db.engine)
    request_waits = threading.Event()
    slow_first_try = threading.Event()

    def request() -> None:
        """A request in another process: polls for the lock, saying it waits."""
        waiting = Waiting(path)
        conn = other.connect()
        try:
            while True:
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    break
                except Exception:  # noqa: BLE001 - locked: try again, as billcore's polling does
                    waiting.say_so()
                    request_waits.set()
                    slow_first_try.wait(5)
                    time.sleep(0.002)  # it looks again a moment after the lock was freed
            waiting.done()
            conn.exec_driver_sql("INSERT INTO t VALUES ('request')")
            conn.exec_driver_sql("COMMIT")
        finally:
            conn.close()

    thread = threading.Thread(target=request)
    thread.start()
    assert request_waits.wait(5)
    holder.exec_driver_sql("COMMIT")
    holder.close()
    slow_first_try.set()
    with background_writes(), write_transaction() as session:  # the job's next one, right away
        session.execute(text("INSERT INTO t VALUES ('job')"))
    thread.join(10)
    assert [row[0] for row in db.session.execute(text("SELECT who FROM t ORDER BY rowid"))] == ["request", "job"]
    other.dispose()


def test_the_gateway_pools_items_are_a_batch_jobs_writes(sqlite_app):
    seen: list[bool] = []
    lock = threading.Lock()

    def work(_item: int) -> None:
        with lock:
            seen.append(in_background())

    for workers in (1, 4):
        seen.clear()
        run_each(range(8), work, workers, lambda item, exc: pytest.fail(f"{item}: {exc}"))
        assert seen == [True] * 8
    assert not in_background()


def test_each_thread_has_its_own_open_file_of_the_owners_only(tmp_path):
    path = str(tmp_path / "x-waiting")
    mine = write_priority._file(path)
    assert write_priority._file(path) is mine
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    other: list = []
    thread = threading.Thread(target=lambda: other.append(write_priority._file(path)))
    thread.start()
    thread.join()
    assert other[0] is not mine


def test_at_most_batch_writers_threads_of_a_job_write_at_once(sqlite_app):
    from billcore.payments.service import write_transaction

    sqlite_app.config["BATCH_WRITERS"] = 2
    db.session.execute(text("CREATE TABLE t (x)"))
    db.session.commit()
    inside, most, lock = [0], [0], threading.Lock()

    def work(item: int) -> None:
        with write_priority.batch_write_slot():  # what the payment service takes around its transactions
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with write_transaction() as session:  # nested: takes no second slot (it would wait forever)
                session.execute(text("INSERT INTO t VALUES (:x)"), {"x": item})
            with lock:
                inside[0] -= 1

    run_each(range(12), work, 6, lambda item, exc: pytest.fail(f"{item}: {exc}"))
    assert most[0] == 2
    assert db.session.execute(text("SELECT count(*) FROM t")).scalar() == 12


def test_requests_and_nested_transactions_take_no_slot(sqlite_app):
    sqlite_app.config["BATCH_WRITERS"] = 1
    through: list[str] = []

    def nested_twice() -> None:
        with sqlite_app.app_context():
            with write_priority.batch_write_slot(), write_priority.batch_write_slot():  # not a job's: none
                through.append("request")
            with background_writes(), write_priority.batch_write_slot(), write_priority.batch_write_slot():
                through.append("job")  # the inner one is nested: with one slot it would wait for itself

    thread = threading.Thread(target=nested_twice, daemon=True)  # a wait for itself fails, never hangs
    thread.start()
    thread.join(5)
    assert through == ["request", "job"]
    with background_writes(), write_priority.batch_write_slot():  # and the slot was given back
        pass


def test_batch_writers_must_be_positive(sqlite_app):
    sqlite_app.config["BATCH_WRITERS"] = 0
    with background_writes(), pytest.raises(ValueError, match="BATCH_WRITERS"):
        with write_priority.batch_write_slot():
            pass


def test_a_waiting_file_that_cannot_be_used_never_fails_a_write(sqlite_app, tmp_path, caplog):
    """The priority is a courtesy: when the file cannot be opened (another user's, a folder in its place),
    requests wait and jobs write as they did before it, and the log says so once."""
    from billcore.payments.service import write_transaction

    path = waiting_file(db.engine)
    os.mkdir(path)  # what stands there is no file
    db.session.execute(text("CREATE TABLE t (x)"))
    db.session.commit()
    request = Waiting(path)
    request.say_so()
    request.done()
    assert not request.said
    with background_writes():
        assert give_way(path, time.monotonic() + 10) == 0.0
        with write_transaction() as session:
            session.execute(text("INSERT INTO t VALUES (1)"))
    assert db.session.execute(text("SELECT count(*) FROM t")).scalar() == 1
    assert sum("cannot be used" in r.getMessage() for r in caplog.records) == 1


def test_the_waiting_file_has_the_databases_permissions(tmp_path):
    database = tmp_path / "shared.sqlite"
    database.write_bytes(b"")
    os.chmod(database, 0o660)  # shared by the web server's and cron's users through their group
    path = str(database) + "-waiting"
    write_priority._file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


def test_a_jobs_slot_is_given_back_before_the_hooks_hear_of_the_change(sqlite_app, monkeypatch):
    """A module's billcore_payment_changed may call out over the network: the job's other threads must
    not wait for it to get their slot."""
    from billcore.accounts import create_client
    from billcore.payments import service
    from tests.conftest import CLIENT, add_paymethod

    payer = create_client(*CLIENT, currency="RUB")
    method = add_paymethod("pmtemplate", {"merchant_id": "m", "secret": "s3cret-value", "gateway_url": "",
                                          "test_mode": True})
    payment = service.create_payment(payer.account_id, method.id, __import__("decimal").Decimal("10.00"))
    holding: list[bool] = []
    broadcast = service._broadcast
    monkeypatch.setattr(service, "_broadcast", lambda *args: (holding.append(getattr(
        write_priority._holding, "slot", False)), broadcast(*args)))
    with background_writes():
        with service.write_transaction() as session:
            service.set_in_pay_in(session, payment.id, source="test")
        service.set_cancelled(payment.id, source="test", reason="test")  # through write_connection
    assert holding == [False, False]


def test_a_file_system_without_locks_never_fails_a_write(tmp_path, monkeypatch, caplog):
    path = str(tmp_path / "db.sqlite-waiting")

    def no_locks(fd, operation):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(write_priority.fcntl, "flock", no_locks)
    request = Waiting(path)
    request.say_so()
    request.done()
    assert not request.said
    with background_writes():
        assert give_way(path, time.monotonic() + 10) < 1.0
    assert sum("cannot be used" in r.getMessage() for r in caplog.records) == 1
