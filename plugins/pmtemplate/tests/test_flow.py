"""pmtemplate end to end through its fake gateway, with the Flask test client."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from billcore.db import db
from billcore.models import PaymentEvent
from billcore.payments import service
from pmtemplate import notification as tpl_notification

from .helpers import SECRET, balance, fresh, make_payment, notification, split


def _events(payment_id):
    db.session.expire_all()
    return db.session.execute(select(PaymentEvent).where(PaymentEvent.payment_id == payment_id)
                              .order_by(PaymentEvent.id)).scalars().all()


def _to_gateway(client, payment):
    """Press Pay as the owner (billcore's payment door asks the module for the gateway's request); returns
    the fake gateway's signed params."""
    resp = client.post(f"/payments/{payment.id}/pay")
    assert resp.status_code == 302
    path, params = split(resp.headers["Location"])
    assert path == "/fakegw/pay"
    return params


def test_pay_through_fake_gateway_credits_once(app, client_client, client_user):
    method, payment = make_payment(client_user)
    params = _to_gateway(client_client, payment)
    assert fresh(payment.id).status == "inpay"
    assert params["amount"] == "100.00" and params["currency"] == "RUB" and "signature" in params
    assert SECRET not in str(params)

    page = client_client.get("/fakegw/pay", query_string=params)
    assert page.status_code == 200 and b"Leave pending" in page.data and b"100.00" in page.data

    resp = client_client.post("/fakegw/pay", data={**params, "action": "pay"})
    assert resp.status_code == 302
    path, query = split(resp.headers["Location"])
    assert path == "/mancgi/tplsuccess" and query == {"elid": str(payment.id)}
    assert fresh(payment.id).status == "paid"
    assert balance(client_user.account_id) == Decimal("100.00")

    back = client_client.get(f"{path}?elid={payment.id}")
    assert back.status_code == 302  # to the checkout's return page (or the payment page, or the dashboard)
    if "checkout.payment_return" in app.view_functions:
        assert back.headers["Location"] == f"/payments/{payment.id}/return/success"
        assert "data-poll-url" not in client_client.get(back.headers["Location"]).get_data(as_text=True)
    assert [e.kind for e in _events(payment.id)][-1] == "return"

    # The gateway repeats its notification: same answer, no second credit.
    again = client_client.post("/mancgi/tplresult", data=notification(payment.id))
    assert again.status_code == 200 and again.data == b"OK"
    assert balance(client_user.account_id) == Decimal("100.00")

    logs = Path(app.config["LOG_DIR"])
    for stem in ("tplpayment", "tplresult", "tplsuccess", "pmtemplate"):
        text = (logs / f"{stem}.log").read_text()
        assert f"payment {payment.id}" in text
        assert SECRET not in text


def test_forged_and_unsigned_notifications_change_nothing(app, client_user):
    _, payment = make_payment(client_user)
    c = app.test_client()
    for params in (notification(payment.id, secret=""),
                   notification(payment.id, secret="another-secret-1"),
                   {**notification(payment.id), "amount": "1000.00"}):  # tampered after signing
        resp = c.post("/mancgi/tplresult", data=params)
        assert resp.status_code == 400 and resp.data == b"bad signature"
    assert fresh(payment.id).status == "new"
    assert balance(client_user.account_id) == Decimal("0.00")
    rejected = [e for e in _events(payment.id) if e.outcome.startswith("rejected")]
    assert len(rejected) == 3
    unknown = c.post("/mancgi/tplresult", data=notification(999999))
    assert (unknown.status_code, unknown.data) == (404, b"unknown payment")


def test_amount_mismatch_is_fraud_and_repeats_answer_the_same(app, client_user):
    _, payment = make_payment(client_user)
    c = app.test_client()
    for _ in range(2):
        resp = c.post("/mancgi/tplresult", data=notification(payment.id, amount="10.00"))
        assert resp.status_code == 400 and resp.data == b"amount mismatch"
    assert fresh(payment.id).status == "fraud"
    assert balance(client_user.account_id) == Decimal("0.00")


def test_database_error_answers_503(app, client_user, monkeypatch):
    _, payment = make_payment(client_user)

    def broken(*args, **kwargs):
        raise OperationalError("UPDATE", {}, Exception("database is locked"))

    monkeypatch.setattr(tpl_notification, "set_paid", broken)  # the name the view calls
    resp = app.test_client().post("/mancgi/tplresult", data=notification(payment.id))
    assert resp.status_code == 503 and b"OK" not in resp.data
    assert fresh(payment.id).status == "new"


def test_only_the_owner_starts_the_payment(app, client_user, other_client_client, admin_client):
    _, payment = make_payment(client_user)
    assert other_client_client.post(f"/payments/{payment.id}/pay").status_code == 404
    assert other_client_client.post("/payments/999999/pay").status_code == 404
    assert admin_client.post(f"/payments/{payment.id}/pay").status_code == 403
    anonymous = app.test_client().post(f"/payments/{payment.id}/pay")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert fresh(payment.id).status == "new"
    assert not any(e.status_to == "inpay" for e in _events(payment.id))


def test_paid_payment_is_not_sent_again(app, client_client, client_user):
    _, payment = make_payment(client_user)
    service.set_paid(payment.id, amount=Decimal("100.00"), currency="RUB", source="test")
    resp = client_client.post(f"/payments/{payment.id}/pay")
    assert resp.status_code == 302 and resp.headers["Location"] == f"/payments/{payment.id}"
    assert fresh(payment.id).status == "paid"


def test_fake_gateway_refuses_unsigned_requests(app, client_client, client_user):
    _, payment = make_payment(client_user)
    params = _to_gateway(client_client, payment)
    params["amount"] = "1.00"
    assert client_client.get("/fakegw/pay", query_string=params).status_code == 400
    assert client_client.post("/fakegw/pay", data={**params, "action": "pay"}).status_code == 400
    assert fresh(payment.id).status == "inpay"


def test_fail_and_pending_leave_payment_to_the_status_check(app, client_client, client_user):
    registry = app.extensions["billcore.modules"]
    method, failing = make_payment(client_user)
    params = _to_gateway(client_client, failing)
    resp = client_client.post("/fakegw/pay", data={**params, "action": "fail"})
    assert split(resp.headers["Location"])[0] == "/mancgi/tplfail"
    back = client_client.get(f"/mancgi/tplfail?elid={failing.id}")
    assert back.status_code == 302
    if "checkout.payment_return" in app.view_functions:
        assert back.headers["Location"] == f"/payments/{failing.id}/return/fail"
    assert fresh(failing.id).status == "inpay"  # an unsigned return changes nothing
    status = registry.call("pmtemplate", "billcore_check_payment", payment=fresh(failing.id), paymethod=method,
                           settings={"merchant_id": "shop-1"})
    assert status.state == "cancelled"

    _, pending = make_payment(client_user)
    params = _to_gateway(client_client, pending)
    resp = client_client.post("/fakegw/pay", data={**params, "action": "pending"})
    assert resp.status_code == 302 and "/fakegw/" not in resp.headers["Location"]
    if "checkout.payment_return" in app.view_functions:
        assert resp.headers["Location"].endswith(f"/payments/{pending.id}/return/pending")
    status = registry.call("pmtemplate", "billcore_check_payment", payment=fresh(pending.id), paymethod=method,
                           settings={"merchant_id": "shop-1"})
    assert status.state == "pending"

    _, silent = make_payment(client_user, "55.50")
    params = _to_gateway(client_client, silent)
    client_client.post("/fakegw/pay", data={**params, "action": "pay_silent"})
    assert fresh(silent.id).status == "inpay"  # the notification was lost
    status = registry.call("pmtemplate", "billcore_check_payment", payment=fresh(silent.id), paymethod=method,
                           settings={"merchant_id": "shop-1"})
    assert (status.state, status.amount, status.currency) == ("paid", Decimal("55.50"), "RUB")
    assert status.external_id.startswith("op-")


def test_unknown_payment_is_pending_at_the_gateway(app, client_user):
    method, payment = make_payment(client_user)
    status = app.extensions["billcore.modules"].call(
        "pmtemplate", "billcore_check_payment", payment=payment, paymethod=method, settings={"merchant_id": "shop-1"})
    assert status.state == "pending"


@pytest.mark.parametrize("action", ["pay"])
def test_refund_and_refund_status(app, client_client, client_user, action):
    registry = app.extensions["billcore.modules"]
    method, payment = make_payment(client_user)
    params = _to_gateway(client_client, payment)
    client_client.post("/fakegw/pay", data={**params, "action": action})
    assert fresh(payment.id).status == "paid"
    settings = {"merchant_id": "shop-1", "secret": SECRET}

    refund = service.request_refund(payment.id, Decimal("60.00"), source="test")
    result = registry.call("pmtemplate", "billcore_refund", payment=fresh(payment.id), paymethod=method,
                           settings=settings, refund=refund)
    assert result.state == "finished" and result.external_id
    refund.external_id = result.external_id
    followed = registry.call("pmtemplate", "billcore_refund_status", payment=fresh(payment.id), paymethod=method,
                             settings=settings, refund=refund)
    assert followed.state == "finished"
    service.finish_refund(refund.id, source="test", external_id=result.external_id)

    too_much = service.request_refund(payment.id, Decimal("40.00"), source="test")
    too_much.amount = Decimal("50.00")  # more than the gateway still holds
    refused = registry.call("pmtemplate", "billcore_refund", payment=fresh(payment.id), paymethod=method,
                            settings=settings, refund=too_much)
    assert refused.state == "failed" and refused.info


def test_refund_of_unpaid_operation_fails(app, client_user):
    method, payment = make_payment(client_user)

    class FakeRefund:
        amount = Decimal("1.00")
        external_id = None

    result = app.extensions["billcore.modules"].call(
        "pmtemplate", "billcore_refund", payment=payment, paymethod=method, settings={"merchant_id": "shop-1"},
        refund=FakeRefund())
    assert result.state == "failed"


def test_recurring_charge(app, client_client, client_user):
    registry = app.extensions["billcore.modules"]
    method, parent = make_payment(client_user)
    _, orphan_parent = make_payment(client_user)
    client_client.post("/fakegw/pay", data={**_to_gateway(client_client, parent), "action": "pay"})
    _, child = make_payment(client_user, "30.00")
    settings = {"merchant_id": "shop-1"}
    first = registry.call("pmtemplate", "billcore_recurring_charge", payment=child, parent=fresh(parent.id),
                          paymethod=method, settings=settings)
    assert first.state == "paid" and first.data == {"amount": "30.00", "currency": "RUB"}
    again = registry.call("pmtemplate", "billcore_recurring_charge", payment=child, parent=fresh(parent.id),
                          paymethod=method, settings=settings)
    assert again.external_id == first.external_id  # charging the same child twice charges once
    _, child2 = make_payment(client_user, "30.00")
    refused = registry.call("pmtemplate", "billcore_recurring_charge", payment=child2, parent=orphan_parent,
                            paymethod=method, settings=settings)
    assert refused.state == "failed"


def test_failure_notification_cancels_but_never_undoes_paid(app, client_user):
    _, payment = make_payment(client_user)
    c = app.test_client()
    resp = c.post("/mancgi/tplresult", data=notification(payment.id, state="failed"))
    assert resp.data == b"OK" and fresh(payment.id).status == "cancelled"
    # Money that arrives late is still credited, and a late failure never undoes it.
    assert c.post("/mancgi/tplresult", data=notification(payment.id)).data == b"OK"
    assert c.post("/mancgi/tplresult", data=notification(payment.id, state="failed")).data == b"OK"
    assert fresh(payment.id).status == "paid"
