"""Status polling, refunds and recurring charges over real HTTP against a local fake of Robokassa."""
from __future__ import annotations

from decimal import Decimal

import pytest

from billcore.db import db
from billcore.models import Payment, PaymentMethod, Refund
from billcore.payments import service
from billcore.paymethods import full_settings
from billcore.plugins import get_registry
from pmrobokassa import protocol
from billcore.testing.fixtures import add_paymethod

from .helpers import SETTINGS, reload, result_params

pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is")


@pytest.fixture
def rk_method(app, fake):
    return add_paymethod("pmrobokassa", {**SETTINGS, "url": fake.url})


@pytest.fixture
def rk_payment(app, client_user, rk_method):
    p = service.create_payment(client_user.account_id, rk_method.id, Decimal("100.00"))
    service.set_in_pay(p.id, source="test")
    return p


def call(hook: str, payment_id: int, **kwargs):
    db.session.expire_all()
    payment = db.session.get(Payment, payment_id)
    method = db.session.get(PaymentMethod, payment.paymethod_id)
    return get_registry().call("pmrobokassa", hook, payment=payment, paymethod=method,
                               settings=full_settings(method), **kwargs)


def paid_state(op_key: str = "OPKEY-1", out_sum: str = "100") -> protocol.OpState:
    return protocol.OpState(result_code=0, state_code=100, op_key=op_key, out_sum=Decimal(out_sum),
                            inc_curr_label="BankCardPSR", payment_method="BankCard")


# --------------------------------------------------------------------------------------------------
# OpStateExt
# --------------------------------------------------------------------------------------------------


def test_check_payment_paid(fake, rk_payment):
    fake.states[rk_payment.id] = paid_state()
    status = call("billcore_check_payment", rk_payment.id)
    assert status.state == "paid" and status.amount == Decimal("100") and status.currency == "RUB"
    assert status.external_id == "OPKEY-1"
    path, params = fake.requests[-1]
    assert path.endswith("/OpStateExt") and params["InvoiceID"] == str(rk_payment.id)
    assert params["Signature"] == protocol.opstate_signature("md5", "demo", str(rk_payment.id), "password_2")


@pytest.mark.parametrize("code,state", [(10, "cancelled"), (60, "cancelled"), (5, "pending"), (20, "pending"),
                                        (50, "pending"), (80, "pending")])
def test_check_payment_states(fake, rk_payment, code, state):
    fake.states[rk_payment.id] = protocol.OpState(result_code=0, state_code=code, op_key="K")
    status = call("billcore_check_payment", rk_payment.id)
    assert status.state == state and str(code) in status.info


def test_check_payment_result_errors_are_pending(app, fake, rk_payment, rk_method):
    assert call("billcore_check_payment", rk_payment.id).state == "pending"  # code 3: no operation yet
    from billcore.paymethods import store_settings

    m = db.session.get(PaymentMethod, rk_method.id)
    store_settings(m, get_registry().info("pmrobokassa"), {**SETTINGS, "url": fake.url, "password2": "wrong_pass2"})
    db.session.commit()
    fake.states[rk_payment.id] = paid_state()
    status = call("billcore_check_payment", rk_payment.id)
    assert status.state == "pending" and "result code 1" in status.info


def test_check_payment_unreachable_gateway_is_pending(app, client_user):
    m = add_paymethod("pmrobokassa", {**SETTINGS, "url": "http://127.0.0.1:9/rk/Merchant/Index.aspx"})
    p = service.create_payment(client_user.account_id, m.id, Decimal("100.00"))
    status = call("billcore_check_payment", p.id)
    assert status.state == "pending" and "OpStateExt failed" in status.info


def test_polling_settles_with_amount_check(fake, rk_payment, client_user):
    polling = pytest.importorskip("billcore.payments.polling")
    fake.states[rk_payment.id] = paid_state(out_sum="100.000000")
    outcome = polling.check_payment(rk_payment.id, "test")
    assert outcome.status == "paid"
    assert reload(rk_payment.id).external_id == "OPKEY-1"
    # A second paid answer is a no-op; a wrong amount on another payment is fraud, not credit.
    p2 = service.create_payment(client_user.account_id, rk_payment.paymethod_id, Decimal("50.00"))
    fake.states[p2.id] = paid_state(out_sum="5.00")
    assert polling.check_payment(p2.id, "test").status == "fraud"


# --------------------------------------------------------------------------------------------------
# Refunds
# --------------------------------------------------------------------------------------------------


def _paid(app, payment: Payment) -> None:
    assert app.test_client().post("/mancgi/rkresult", data=result_params(payment.id)).status_code == 200


def test_full_refund_gets_opkey_and_is_followed(app, fake, rk_payment, client_user):
    _paid(app, rk_payment)
    fake.states[rk_payment.id] = paid_state("OPKEY-FULL")
    refund = service.request_refund(rk_payment.id, Decimal("100.00"), source="test")
    result = call("billcore_refund", rk_payment.id, refund=db.session.get(Refund, refund.id))
    assert result.state == "pending" and result.external_id == "req-1"
    assert fake.refund_payloads == [{"OpKey": "OPKEY-FULL"}]  # a full refund carries no RefundSum
    assert reload(rk_payment.id).gateway_data["op_key"] == "OPKEY-FULL"
    service.set_refund_external_id(refund.id, result.external_id)
    assert call("billcore_refund_status", rk_payment.id, refund=db.session.get(Refund, refund.id)).state == "pending"
    fake.refund_labels["req-1"] = "finished"
    status = call("billcore_refund_status", rk_payment.id, refund=db.session.get(Refund, refund.id))
    assert status.state == "finished"
    service.finish_refund(refund.id, source="test", external_id=status.external_id)
    assert reload(rk_payment.id).status == "returned"


def test_partial_refunds_send_refund_sum(app, fake, rk_payment):
    _paid(app, rk_payment)
    service.set_gateway_data(rk_payment.id, op_key="OPKEY-P")
    first = service.request_refund(rk_payment.id, Decimal("40.00"), source="test")
    assert call("billcore_refund", rk_payment.id, refund=db.session.get(Refund, first.id)).state == "pending"
    assert fake.refund_payloads[-1] == {"OpKey": "OPKEY-P", "RefundSum": Decimal("40.00")}
    assert not any(path.endswith("OpStateExt") for path, _ in fake.requests)  # OpKey was known
    service.set_refund_external_id(first.id, "req-1")
    fake.refund_labels["req-1"] = "canceled"
    status = call("billcore_refund_status", rk_payment.id, refund=db.session.get(Refund, first.id))
    assert status.state == "failed"


def test_refund_refusals(app, fake, client_user):
    m = add_paymethod("pmrobokassa", {**SETTINGS, "url": fake.url, "password3": ""})
    m_settings = full_settings(db.session.get(PaymentMethod, m.id))
    assert "password3" not in m_settings or not m_settings["password3"]
    p = service.create_payment(client_user.account_id, m.id, Decimal("100.00"))
    _paid(app, p)
    refund = service.request_refund(p.id, Decimal("100.00"), source="test")
    result = call("billcore_refund", p.id, refund=db.session.get(Refund, refund.id))
    assert result.state == "failed" and "Password #3" in result.info
    assert fake.refund_payloads == []


def test_refund_failure_answer(app, fake, rk_payment):
    _paid(app, rk_payment)
    service.set_gateway_data(rk_payment.id, op_key="OPKEY-F")
    fake.refund_failure = "NotEnoughOperationFunds"
    refund = service.request_refund(rk_payment.id, Decimal("10.00"), source="test")
    result = call("billcore_refund", rk_payment.id, refund=db.session.get(Refund, refund.id))
    assert result.state == "failed" and result.info == "NotEnoughOperationFunds"


def test_refund_without_operation_fails(app, fake, rk_payment):
    _paid(app, rk_payment)  # the fake knows no operation: OpStateExt answers code 3
    refund = service.request_refund(rk_payment.id, Decimal("10.00"), source="test")
    result = call("billcore_refund", rk_payment.id, refund=db.session.get(Refund, refund.id))
    assert result.state == "failed" and "OpKey" in result.info


# --------------------------------------------------------------------------------------------------
# Recurring
# --------------------------------------------------------------------------------------------------


def test_recurring_charge(app, fake, rk_payment, client_user, rk_method):
    _paid(app, rk_payment)
    child = service.create_payment(client_user.account_id, rk_method.id, Decimal("100.00"))
    db.session.expire_all()
    parent = db.session.get(Payment, rk_payment.id)
    result = call("billcore_recurring_charge", child.id, parent=parent)
    assert result.state == "accepted"
    path, params = fake.requests[-1]
    assert path == "/Merchant/Recurring"
    assert params["PreviousInvoiceID"] == str(rk_payment.id) and params["InvoiceID"] == str(child.id)
    assert params["OutSum"] == "100.00"


def test_recurring_charge_refused(app, fake, client_user):
    m = add_paymethod("pmrobokassa", {**SETTINGS, "url": fake.url, "password1": "other_pass1"})
    parent = service.create_payment(client_user.account_id, m.id, Decimal("100.00"))
    child = service.create_payment(client_user.account_id, m.id, Decimal("100.00"))
    result = call("billcore_recurring_charge", child.id, parent=db.session.get(Payment, parent.id))
    assert result.state == "failed" and "29" in result.info


def test_recurring_charge_to_a_closed_port_fails_as_never_sent(app, client_user):
    # nothing listens on port 9 of the loopback: the connection was refused, so the request never left
    # and nothing can have been charged: a clear failure (the period may be charged with a new child)
    m = add_paymethod("pmrobokassa", {**SETTINGS, "url": "http://127.0.0.1:9/Merchant/Index.aspx"})
    parent = service.create_payment(client_user.account_id, m.id, Decimal("100.00"))
    child = service.create_payment(client_user.account_id, m.id, Decimal("100.00"))
    result = call("billcore_recurring_charge", child.id, parent=db.session.get(Payment, parent.id))
    assert result.state == "failed" and "could not be sent" in result.info and not result.data


# --------------------------------------------------------------------------------------------------
# GetCurrencies in the settings form
# --------------------------------------------------------------------------------------------------


def test_payment_options_from_get_currencies_cached(app, fake, rk_method):
    from pmrobokassa.forms import build_form

    with app.test_request_context("/"):
        choices = build_form(db.session.get(PaymentMethod, rk_method.id))().payment_method.choices
        build_form(db.session.get(PaymentMethod, rk_method.id))
    labels = {c.value: c.optgroup for c in choices}
    assert labels["FakeCardPSR"] == "Bank cards" and labels["FakeMtsR"] == "Mobile payments"
    assert labels[""] is None
    assert "BankCardPSR" not in labels  # the gateway's list replaces the built-in one
    assert sum(path.endswith("GetCurrencies") for path, _ in fake.requests) == 1  # cached


def test_payment_options_fall_back_to_builtin(app, fake, rk_method):
    from pmrobokassa.forms import build_form

    fake.currencies_status = 500
    with app.test_request_context("/"):
        choices = build_form(db.session.get(PaymentMethod, rk_method.id))().payment_method.choices
    groups = {c.optgroup for c in choices if c.value}
    assert groups == {"Bank cards", "Cash", "E-wallets", "Mobile payments", "Online banking"}
    assert "BankCardPSR" in {c.value for c in choices}
