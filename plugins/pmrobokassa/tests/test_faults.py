"""Fault injection on Robokassa's ResultURL: the database locked, failing or unreachable, a worker killed
in the middle of a notification, and the same notification delivered in parallel to several processes.

In every case the answer is never ``OK`` unless the payment was credited, nothing is half-written, and
the notification retried afterwards credits exactly once.
"""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from billcore import create_app
from billcore.db import db
from billcore.models import Account, LedgerEntry, PaymentEvent
from billcore.payments import service

from .helpers import ledger_count, reload, result_params

VENV_BIN = Path(sys.executable).parent
LOCK_WAIT_MS = 300


@pytest.fixture
def app_config() -> dict:
    """A short SQLite busy timeout, so a held lock turns into a failure quickly."""
    return {"SQLITE_BUSY_TIMEOUT_MS": LOCK_WAIT_MS}


@pytest.fixture
def inpay(app, client_user, payment):
    """The fixture's payment, sent to the gateway."""
    service.set_in_pay(payment.id, source="test")
    return payment


def _post(app, params: dict):
    return app.test_client().post("/mancgi/rkresult", data=params)


def _assert_untouched(payment_id: int, account_id: int) -> None:
    """Nothing of the credit was written: status, ledger, balance and events as before."""
    db.session.rollback()  # a fresh snapshot: other processes may have committed meanwhile
    assert reload(payment_id).status == "inpay"
    assert ledger_count(payment_id) == 0
    db.session.expire_all()
    assert db.session.get(Account, account_id).balance == Decimal("0.00")
    assert db.session.query(PaymentEvent).filter_by(payment_id=payment_id, status_to="paid").count() == 0


def _assert_credited_once(payment_id: int, account_id: int) -> None:
    db.session.rollback()
    assert reload(payment_id).status == "paid"
    assert ledger_count(payment_id) == 1
    db.session.expire_all()
    assert db.session.get(Account, account_id).balance == Decimal("100.00")
    assert db.session.query(PaymentEvent).filter_by(payment_id=payment_id, status_to="paid").count() == 1


# --------------------------------------------------------------------------------------------------
# The database locked, failing mid-transaction, unreachable
# --------------------------------------------------------------------------------------------------


def _hold_lock(app, payment_id: int):
    """Hold the lock a credit needs from another connection: SQLite's write lock, or the payment's row
    on PostgreSQL (whose app connections then wait at most LOCK_WAIT_MS). Returns a release function."""
    if db.engine.dialect.name == "sqlite":
        holder = sqlite3.connect(db.engine.url.database, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        return lambda: (holder.rollback(), holder.close())

    def short_lock_timeout(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {LOCK_WAIT_MS}")
        dbapi_connection.commit()

    event.listen(db.engine, "connect", short_lock_timeout)
    db.engine.dispose()  # new connections get the short lock timeout
    holder = db.engine.connect()
    holder.execute(text("SELECT id FROM payments WHERE id = :id FOR UPDATE"), {"id": payment_id})

    def release():
        holder.rollback()
        holder.close()
        event.remove(db.engine, "connect", short_lock_timeout)
        db.engine.dispose()

    return release


def test_locked_database_answers_503_then_retry_credits_once(app, client_user, inpay):
    params = result_params(inpay.id)
    release = _hold_lock(app, inpay.id)
    try:
        started = time.monotonic()
        response = _post(app, params)
        assert time.monotonic() - started < 10
    finally:
        release()
    assert response.status_code == 503
    assert not response.get_data(as_text=True).startswith("OK")
    _assert_untouched(inpay.id, client_user.account_id)
    log = Path(app.config["LOG_DIR"], "rkresult.log").read_text()
    assert f'payment={inpay.id} outcome="database failure, answered 503' in log

    retried = _post(app, params)
    assert (retried.status_code, retried.get_data(as_text=True)) == (200, f"OK{inpay.id}")
    _assert_credited_once(inpay.id, client_user.account_id)
    assert _post(app, params).get_data(as_text=True) == f"OK{inpay.id}"
    _assert_credited_once(inpay.id, client_user.account_id)


@pytest.mark.parametrize("failing", ["INSERT INTO ledger_entries", "INSERT INTO payment_events", "UPDATE payments"])
def test_failure_in_the_middle_of_the_credit_rolls_everything_back(app, client_user, inpay, failing):
    """The database fails after part of the credit was sent to it: all of it is rolled back."""
    seen = []

    def fail(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith(failing):
            seen.append(statement)
            raise OperationalError(statement, parameters, Exception("injected: server closed the connection"))

    params = result_params(inpay.id)
    event.listen(db.engine, "before_cursor_execute", fail)
    try:
        response = _post(app, params)
    finally:
        event.remove(db.engine, "before_cursor_execute", fail)
    assert seen, "the injected failure was not reached"
    assert response.status_code == 503
    _assert_untouched(inpay.id, client_user.account_id)
    assert db.session.query(LedgerEntry).count() == 0

    assert _post(app, params).get_data(as_text=True) == f"OK{inpay.id}"
    _assert_credited_once(inpay.id, client_user.account_id)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.mark.parametrize("url", [
    "postgresql://postgres@127.0.0.1:{port}/billcore",
    "sqlite:////nonexistent-billcore-dir/{port}/billcore.sqlite",
])
def test_unreachable_database_answers_503(tmp_path, url):
    unreachable = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path / "instance"),
                              "DATABASE_URL": url.format(port=_closed_port()), "BASE_URL": "https://b.example"})
    response = unreachable.test_client().post("/mancgi/rkresult", data=result_params(7))
    assert response.status_code == 503
    assert not response.get_data(as_text=True).startswith("OK")
    assert "database failure, answered 503" in (tmp_path / "instance" / "var" / "rkresult.log").read_text()


# --------------------------------------------------------------------------------------------------
# A gunicorn worker killed in the middle of a notification; parallel delivery to several workers
# --------------------------------------------------------------------------------------------------

HOOK_APP = textwrap.dedent('''
    """billcore with a test hook: when the marker file exists, the first credit's event INSERT (inside
    the service's transaction, after the payment and ledger were written) announces itself and hangs."""
    import os, time
    from pathlib import Path
    from sqlalchemy import event
    from billcore import create_app as _create_app
    from billcore.db import db

    def create_app():
        app = _create_app()
        marker, inside = Path(os.environ["HOOK_MARKER"]), Path(os.environ["HOOK_INSIDE"])

        def hang(conn, cursor, statement, parameters, context, executemany):
            if statement.startswith("INSERT INTO payment_events") and marker.exists():
                marker.unlink()
                inside.write_text(str(os.getpid()))
                time.sleep(60)

        with app.app_context():
            event.listen(db.engine, "before_cursor_execute", hang)
        return app
''')


class Gunicorn:
    """billcore (with the hook) under gunicorn on the test's database and instance folder."""

    def __init__(self, app, tmp_path: Path, workers: int):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        (tmp_path / "hookapp.py").write_text(HOOK_APP)
        self.marker, self.inside = tmp_path / "hang-once", tmp_path / "inside"
        env = {**os.environ, "BILLCORE_INSTANCE_PATH": app.instance_path,
               "BILLCORE_DATABASE_URL": app.config["DATABASE_URL"], "BILLCORE_BASE_URL": "https://b.example",
               "HOOK_MARKER": str(self.marker), "HOOK_INSIDE": str(self.inside)}
        self.log = (tmp_path / "gunicorn.log").open("wb")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
             "--timeout", "120", "--graceful-timeout", "2", "--chdir", str(tmp_path), "hookapp:create_app()"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/mancgi/rkresult"

    def __enter__(self) -> Gunicorn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "gunicorn exited"
            try:
                requests.get(self.url, timeout=30)
                return self
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError("gunicorn did not start")

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def test_worker_killed_mid_notification_then_retry_credits_once(app, client_user, inpay, tmp_path):
    params = result_params(inpay.id)
    with Gunicorn(app, tmp_path, workers=1) as server:
        server.marker.write_text("1")
        outcome: list[object] = []

        def deliver() -> None:
            try:
                outcome.append(requests.post(server.url, data=params, timeout=60).status_code)
            except requests.RequestException as exc:
                outcome.append(exc)

        delivery = threading.Thread(target=deliver)
        delivery.start()
        deadline = time.monotonic() + 30
        while not server.inside.exists():
            assert time.monotonic() < deadline, "the notification never reached the hook"
            time.sleep(0.05)
        os.kill(int(server.inside.read_text()), signal.SIGKILL)  # the worker, inside the transaction
        delivery.join(60)
        assert outcome and isinstance(outcome[0], requests.RequestException)  # no answer, so Robokassa retries
        _assert_untouched(inpay.id, client_user.account_id)

        # gunicorn starts a new worker; Robokassa's retry reaches it and is credited once.
        deadline = time.monotonic() + 30
        while True:
            try:
                retried = requests.post(server.url, data=params, timeout=30)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert (retried.status_code, retried.text) == (200, f"OK{inpay.id}")
    _assert_credited_once(inpay.id, client_user.account_id)


def test_parallel_delivery_to_several_workers_credits_once(app, client_user, inpay, tmp_path):
    """The sandbox (or Robokassa) delivering one notification many times at once, to 4 processes."""
    params = result_params(inpay.id)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()
    with Gunicorn(app, tmp_path, workers=4) as server:
        start = threading.Barrier(16)

        def deliver() -> None:
            start.wait()
            response = requests.post(server.url, data=params, timeout=60)
            with lock:
                answers.append((response.status_code, response.text))

        threads = [threading.Thread(target=deliver) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    assert answers == [(200, f"OK{inpay.id}")] * 16
    _assert_credited_once(inpay.id, client_user.account_id)
