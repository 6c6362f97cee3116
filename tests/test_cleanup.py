"""``flask --app billcore payments cleanup``: expired unpaid payments are cancelled once, safely in parallel."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy.exc import OperationalError

from billcore.accounts import create_client
from billcore.cli.payments import cancel_expired_payments
from billcore.db import db
from billcore.models import Payment, PaymentEvent, utcnow
from billcore.payments import service
from billcore.testing.fixtures import run_together
from tests.conftest import CLIENT, add_paymethod
from tests.test_checkout import app_config, capp  # noqa: F401  (the app with the fake module, on each backend)


def _aged(account_id: int, method_id: int, days: float, status: str = "new") -> int:
    p = service.create_payment(account_id, method_id, Decimal("100"))
    if status in ("inpay", "paid"):
        service.set_in_pay(p.id, source="test")
    if status == "paid":
        service.set_paid(p.id, amount=Decimal("100.00"), currency="RUB", source="test")
    with db.engine.begin() as conn:
        conn.execute(Payment.__table__.update().where(Payment.id == p.id)
                     .values(created_at=utcnow() - timedelta(days=days)))
    return p.id


def _status(payment_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Payment, payment_id).status


def test_cleanup_cancels_only_expired_new_payments(capp):  # noqa: F811
    user = create_client(*CLIENT, currency="RUB")
    three = add_paymethod("pmfakepay", delete_after_days=3)
    forever = add_paymethod("pmfakepay", delete_after_days=None)
    old_new = _aged(user.account_id, three.id, 3.1)
    young_new = _aged(user.account_id, three.id, 2.9)
    old_inpay = _aged(user.account_id, three.id, 10, "inpay")
    old_paid = _aged(user.account_id, three.id, 10, "paid")
    no_period = _aged(user.account_id, forever.id, 400)

    runner = capp.test_cli_runner()
    dry = runner.invoke(args=["payments", "cleanup", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "1 payment(s) would be cancelled" in dry.output
    assert _status(old_new) == "new"

    result = runner.invoke(args=["payments", "cleanup", "-v"])
    assert result.exit_code == 0, result.output
    assert f"payment {old_new} cancelled" in result.output
    assert "1 payment(s) cancelled" in result.output
    assert {pid: _status(pid) for pid in (old_new, young_new, old_inpay, old_paid, no_period)} == {
        old_new: "cancelled", young_new: "new", old_inpay: "inpay", old_paid: "paid", no_period: "new"}
    event = db.session.query(PaymentEvent).filter_by(payment_id=old_new, status_to="cancelled").one()
    assert (event.source, event.kind, event.data) == ("cleanup", "cleanup", {"delete_after_days": 3})

    again = runner.invoke(args=["payments", "cleanup"])
    assert "0 payment(s) cancelled" in again.output


def test_cleanup_on_two_hosts_at_once_cancels_each_payment_once(capp):  # noqa: F811
    user = create_client(*CLIENT, currency="RUB")
    method = add_paymethod("pmfakepay", delete_after_days=1)
    ids = [_aged(user.account_id, method.id, 2) for _ in range(30)]
    results = run_together(capp, [lambda: cancel_expired_payments(batch=7)] * 2)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(r.cancelled for r in results) == len(ids)
    assert all(_status(pid) == "cancelled" for pid in ids)
    for pid in ids:
        assert db.session.query(PaymentEvent).filter_by(payment_id=pid, status_to="cancelled").count() == 1


def test_cleanup_goes_on_after_an_unexpected_error_on_one_payment(capp, monkeypatch):  # noqa: F811
    user = create_client(*CLIENT, currency="RUB")
    method = add_paymethod("pmfakepay", delete_after_days=1)
    ids = [_aged(user.account_id, method.id, 2) for _ in range(5)]
    broken = ids[1]
    real = service.set_cancelled

    def set_cancelled(payment_id, **change):
        if payment_id == broken:  # e.g. PostgreSQL's lock_timeout while a notification holds the row
            raise OperationalError("UPDATE payments ...", {}, Exception("canceling statement due to lock timeout"))
        return real(payment_id, **change)

    monkeypatch.setattr(service, "set_cancelled", set_cancelled)
    result = capp.test_cli_runner().invoke(args=["payments", "cleanup"])
    assert result.exit_code == 0, result.output
    assert "4 payment(s) cancelled, 0 already cancelled, 0 skipped (changed meanwhile), 1 failed" in result.output
    assert {pid: _status(pid) for pid in ids} == {pid: "new" if pid == broken else "cancelled" for pid in ids}

    monkeypatch.setattr(service, "set_cancelled", real)
    assert cancel_expired_payments().cancelled == 1  # the next run takes it
    assert _status(broken) == "cancelled"
