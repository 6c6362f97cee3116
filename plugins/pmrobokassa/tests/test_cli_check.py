"""``flask --app billcore payments check [--module pmrobokassa]`` against the local fake gateway."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from billcore.db import db, is_sqlite
from billcore.models import Refund
from billcore.payments import service
from billcore.payments.sweep import POLL_LOCK, SCOPED_NAMESPACE
from pmrobokassa import protocol
from billcore.testing.fixtures import add_paymethod

from .helpers import SETTINGS, reload, result_params

pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is")


def _inpay(client_user, method, amount="100.00"):
    p = service.create_payment(client_user.account_id, method.id, Decimal(amount))
    service.set_in_pay(p.id, source="test")
    return p


def test_check_settles_inpay_payments(app, fake, client_user):
    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": fake.url})
    paid, cancelled, waiting, wrong = (_inpay(client_user, method) for _ in range(4))
    untouched = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))  # still new
    fake.states[paid.id] = protocol.OpState(0, state_code=100, op_key="OK-1", out_sum=Decimal("100"))
    fake.states[cancelled.id] = protocol.OpState(0, state_code=10, op_key="OK-2")
    fake.states[waiting.id] = protocol.OpState(0, state_code=50, op_key="OK-3")
    fake.states[wrong.id] = protocol.OpState(0, state_code=100, op_key="OK-4", out_sum=Decimal("1"))
    result = app.test_cli_runner().invoke(args=["payments", "check", "--module", "pmrobokassa", "-v"])
    assert result.exit_code == 0, result.output
    assert "4 payment(s) checked: 1 paid, 1 cancelled, 1 flagged, 1 unchanged" in result.output
    assert reload(paid.id).status == "paid" and reload(paid.id).external_id == "OK-1"
    assert reload(cancelled.id).status == "cancelled"
    assert reload(waiting.id).status == "inpay"
    assert reload(wrong.id).status == "fraud"
    assert reload(untouched.id).status == "new"
    polled = [params["InvoiceID"] for path, params in fake.requests if path.endswith("OpStateExt")]
    assert sorted(polled) == sorted(str(p.id) for p in (paid, cancelled, waiting, wrong))
    # A second run at once leaves the payment it asked about a moment ago for later (a second host's cron
    # starting a little after the first must not ask again)...
    soon = app.test_cli_runner().invoke(args=["payments", "check"])
    assert "0 payment(s) checked: 0 paid" in soon.output
    assert "1 asked less than 60 s ago" in soon.output
    assert len(fake.requests) == len(polled)
    # ... and once that interval has passed, it asks only about what is still open, and changes nothing.
    app.config["CHECK_AGAIN_AFTER_SECONDS"] = 0
    again = app.test_cli_runner().invoke(args=["payments", "check"])
    assert "1 payment(s) checked: 0 paid" in again.output
    assert "asked less than" not in again.output  # with 0 nothing is left for later
    assert [params["InvoiceID"] for path, params in fake.requests[len(polled):]] == [str(waiting.id)]


def test_check_follows_pending_refunds(app, fake, client_user):
    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": fake.url})
    p = _inpay(client_user, method)
    assert app.test_client().post("/mancgi/rkresult", data=result_params(p.id)).status_code == 200
    service.set_gateway_data(p.id, op_key="OPKEY-R")
    refunds = pytest.importorskip("billcore.payments.refunds")
    outcome = refunds.refund_payment(p.id, Decimal("30.00"), actor="admin@test.example", reason="test")
    assert outcome.state == "pending"
    db.session.expire_all()
    refund = db.session.query(Refund).filter_by(payment_id=p.id).one()
    fake.refund_labels[refund.external_id] = "finished"
    result = app.test_cli_runner().invoke(args=["payments", "check", "--module", "pmrobokassa"])
    assert result.exit_code == 0 and "1 refund(s) followed: 1 finished" in result.output
    db.session.expire_all()
    assert db.session.get(Refund, refund.id).status == "finished"
    assert reload(p.id).status == "paid" and reload(p.id).refunded_amount == Decimal("30.00")


def _paid_at_the_gateway(fake, client_user):
    """An inpay payment the gateway reports paid (PostgreSQL only: the tests using it hold advisory locks)."""
    if is_sqlite(db.engine):
        pytest.skip("advisory locks exist on PostgreSQL only; SQLite serves a single host")
    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": fake.url})
    p = _inpay(client_user, method)
    fake.states[p.id] = protocol.OpState(0, state_code=100, op_key="K", out_sum=Decimal("100"))
    return p


def test_check_unknown_module(app):
    result = app.test_cli_runner().invoke(args=["payments", "check", "--module", "nosuch"])
    assert result.exit_code != 0 and "unknown payment module" in result.output


def test_check_skips_payment_claimed_by_another_host(app, fake, client_user):
    p = _paid_at_the_gateway(fake, client_user)
    with db.engine.connect() as other_host:
        other_host.execute(text(f"SELECT pg_advisory_lock({SCOPED_NAMESPACE}, :key)"), {"ns": POLL_LOCK, "key": p.id})
        result = app.test_cli_runner().invoke(args=["payments", "check"])
        assert "0 payment(s) checked" in result.output and "1 skipped" in result.output
        assert reload(p.id).status == "inpay"
        other_host.execute(text(f"SELECT pg_advisory_unlock({SCOPED_NAMESPACE}, :key)"),
                           {"ns": POLL_LOCK, "key": p.id})
        other_host.commit()
    result = app.test_cli_runner().invoke(args=["payments", "check"])
    assert "1 payment(s) checked: 1 paid" in result.output


def test_a_lock_of_another_installation_in_the_same_database_does_not_skip(app, fake, client_user):
    """Advisory locks are per database: the same payment id locked by an installation in another schema
    (or a parallel test process) is not this installation's claim."""
    p = _paid_at_the_gateway(fake, client_user)
    with db.engine.connect() as other_installation:
        # the other installation's tables live in another schema of the same database
        other_installation.execute(text("SET search_path TO public"))
        other_installation.execute(text(f"SELECT pg_advisory_lock({SCOPED_NAMESPACE}, :key)"),
                                   {"ns": POLL_LOCK, "key": p.id})
        try:
            result = app.test_cli_runner().invoke(args=["payments", "check"])
            assert "1 payment(s) checked: 1 paid" in result.output and " 0 skipped" in result.output
        finally:
            other_installation.execute(text(f"SELECT pg_advisory_unlock({SCOPED_NAMESPACE}, :key)"),
                                       {"ns": POLL_LOCK, "key": p.id})
            other_installation.commit()
