"""A gateway callback takes one pooled connection (billcore.db.request_connection): the first look at the
payment, the payment service's locked transaction and a refusal's record share it, and it is back in the
pool whatever the answer. Through ``tests/fake_callback_module.py`` alone: other modules' hooks may read
through the request session, which is a connection of their own."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import event, text

from billcore import callbacks
from billcore.db import db, request_connection, shared_connection
from billcore.models import Payment
from billcore.payments import service
from tests import fake_callback_module as fake
from tests.conftest import add_paymethod

SECRET = "callback-s3cr3t"


@pytest.fixture
def app_config():
    """The fake callback module only (no other module's broadcast hook reading the payment)."""
    fake.reset()
    return {"EXTRA_MODULES": {fake.KEY: "tests.fake_callback_module"}, "PAYMENT_MODULES": [fake.KEY]}


@pytest.fixture
def payment(client_user):
    """A ``new`` payment of 100.00 of the fake module."""
    method = add_paymethod(fake.KEY, {"secret": SECRET}, name="Callbacks")
    return service.create_payment(client_user.account_id, method.id, Decimal("100.00"))


@pytest.fixture
def pool_use(app):
    """Counts the pool's checkouts and checkins while a test runs."""
    counts = {"out": 0, "back": 0}

    def checkout(*_args):
        counts["out"] += 1

    def checkin(*_args):
        counts["back"] += 1

    event.listen(db.engine, "checkout", checkout)
    event.listen(db.engine, "checkin", checkin)
    yield counts
    event.remove(db.engine, "checkout", checkout)
    event.remove(db.engine, "checkin", checkin)


def _signed(payment_id: int) -> dict[str, str]:
    return {"order": str(payment_id), "amount": "100.00", "sign": fake.signature(SECRET, str(payment_id))}


def _status(payment_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Payment, payment_id).status


def _used(app, pool_use, method: str, url: str, data=None) -> tuple[int, int, int]:
    """The answer's status, and the checkouts and checkins the request made."""
    before = dict(pool_use)
    status = app.test_client().open(url, method=method, data=data).status_code
    return status, pool_use["out"] - before["out"], pool_use["back"] - before["back"]


@pytest.mark.parametrize(("mode", "forged", "status"), [
    (None, False, 200),        # the first look, then the credit's locked transaction
    (None, True, 400),         # the first look, then the refusal's record
    ("database", False, 503),  # a database error after the first look
    ("bug", False, 500),       # a bug after the first look
])
def test_a_notification_takes_one_connection_and_returns_it(app, payment, pool_use, mode, forged, status):
    fake.MODE["handler"] = mode
    data = {**_signed(payment.id), "sign": "forged"} if forged else _signed(payment.id)
    # one checkout (on PostgreSQL one pre-ping) per notification, and back in the pool whatever the answer
    assert _used(app, pool_use, "POST", "/cb/result", data) == (status, 1, 1)
    fake.MODE["handler"] = None
    assert _used(app, pool_use, "POST", "/cb/result", _signed(payment.id)) == (200, 1, 1)
    assert _status(payment.id) == "paid"


def test_a_repeat_and_a_return_take_one_connection_each(app, payment, pool_use):
    assert app.test_client().post("/cb/result", data=_signed(payment.id)).status_code == 200
    assert _used(app, pool_use, "POST", "/cb/result", _signed(payment.id)) == (200, 1, 1)  # already paid
    assert _used(app, pool_use, "GET", f"/cb/success?order={payment.id}") == (302, 1, 1)  # looked at, recorded


def test_the_request_connection_is_not_shared_by_a_write_inside_a_write(app, payment):
    """A status change made while another runs on the shared connection (by a hook, say) takes a connection
    of its own, as it would outside the block; the block's connection is shared again afterwards and
    closed at its end."""
    assert shared_connection() is None  # outside a block every caller takes its own
    with request_connection():
        conn = shared_connection()
        assert conn is not None and shared_connection() is conn
        with request_connection():  # a block inside another uses the outer one's connection
            assert shared_connection() is conn
        with service.write_connection() as writing:
            assert writing is conn and shared_connection() is None
        assert shared_connection() is conn and not conn.in_transaction()
        assert callbacks.callback_context(payment.id).status == "new"
        service.set_in_pay(payment.id, source="test")
    assert shared_connection() is None and conn.closed
    assert _status(payment.id) == "inpay"


def test_a_refusal_inside_the_locked_transaction_rolls_back_and_the_connection_goes_on(app, payment):
    """A write refused under the lock (the module's verify) rolls back on the shared connection; what
    follows on it (the refusal's record, another change) starts afresh."""

    class Refused(Exception):
        pass

    def refuse(_found):
        raise Refused

    with request_connection():
        assert callbacks.callback_context(payment.id).status == "new"
        with pytest.raises(Refused):
            service.set_paid(payment.id, amount=Decimal("100.00"), currency="RUB", source="test", verify=refuse)
        assert not shared_connection().in_transaction()
        service.record_event(payment.id, kind="notification", source="test", outcome="refused")
        assert service.set_paid(payment.id, amount=Decimal("100.00"), currency="RUB", source="test").changed
    assert _status(payment.id) == "paid"


@pytest.mark.parametrize("observed", [False, True], ids=["prepared", "observed"])
def test_the_first_look_locks_nothing(app, payment, observed):
    """The first look (what a forged notification gets before it is refused) takes no lock: another
    connection locks the payment at once, and on SQLite takes the write lock at once; also when a listener
    watches statements (the lookup then goes through SQLAlchemy's execute)."""

    def watch(*_args):
        pass

    if observed:
        event.listen(db.engine, "before_cursor_execute", watch)
    try:
        with request_connection():
            assert callbacks.callback_context(payment.id).status == "new"
            with db.engine.connect() as other:
                raw = other.connection.driver_connection
                if db.engine.dialect.name == "sqlite":
                    raw.execute("PRAGMA busy_timeout=0")  # refused at once if the first look held a lock
                    raw.execute("BEGIN IMMEDIATE")
                    raw.execute("ROLLBACK")
                    raw.execute(f"PRAGMA busy_timeout={int(app.config['SQLITE_BUSY_TIMEOUT_MS'])}")
                else:
                    other.execute(text("SELECT id FROM payments WHERE id = :id FOR UPDATE NOWAIT"), {"id": payment.id})
                    other.rollback()
            assert service.set_paid(payment.id, amount=Decimal("100.00"), currency="RUB", source="test").changed
    finally:
        if observed:
            event.remove(db.engine, "before_cursor_execute", watch)
    assert _status(payment.id) == "paid"
