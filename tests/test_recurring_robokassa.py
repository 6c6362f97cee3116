"""Recurring payments end to end against the Robokassa sandbox over real HTTP.

The customer pays once through the sandbox with ``Recurring=true`` and sets up an auto-payment;
``recurring run`` charges the child through ``/Merchant/Recurring``, which only answers "accepted"; the
sandbox's ResultURL notification credits it, and the next run books it. A refused charge is settled as
cancelled by status polling and counted as a failure. The live server, shopper and helpers are the
Robokassa module's own sandbox test kit.
"""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from urllib.parse import urljoin

import pytest

pytest.importorskip("pmrobokassa.sandbox")

from billcore import recurring  # noqa: E402
from billcore.models import RecurringProfile, utcnow  # noqa: E402
from billcore.payments import service  # noqa: E402
from billcore.payments.polling import check_payment  # noqa: E402
from pmrobokassa.sandbox import delivery  # noqa: E402
from pmrobokassa.tests.test_sandbox_live import (  # noqa: E402,F401  (live and shopper are fixtures)
    balance, credits, forms_of, fresh, live, payment_row, shopper, wait_for)

pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is")


def pay_parent(live, shopper, amount="100.00") -> int:
    """Pay through the sandbox after opting in on the payment page (the parent is sent Recurring=true)."""
    session, account_id, method_id = shopper
    payment = service.create_payment(account_id, method_id, Decimal(amount))
    page = session.get(f"{live.url}/payments/{payment.id}")
    assert 'data-testid="recurring-prepare"' in page.text
    to_gateway_page = session.post(f"{live.url}/payments/{payment.id}/recurring/prepare", allow_redirects=True)
    # billcore's payment door marks the parent inpay and answers the signed form that goes straight to the
    # gateway (no token of ours)
    [to_gateway] = [f for f in forms_of(to_gateway_page.text) if f["autosubmit"]]
    assert to_gateway["action"] == f"{live.url}/sandbox/robokassa/Merchant/Index.aspx"
    assert dict(to_gateway["fields"])["Recurring"] == "true" and "csrf_token" not in to_gateway["fields"]
    assert payment_row(payment.id).status == "inpay"
    gateway_page = session.post(urljoin(f"{live.url}/", to_gateway["action"]), data=to_gateway["fields"])
    assert gateway_page.status_code == 200, gateway_page.text
    [pay_form] = [f for f in forms_of(gateway_page.text) if "token" in f["fields"]]
    back = session.post(f"{live.url}{pay_form['action']}", data=dict(pay_form["fields"], action="pay"))
    [to_shop] = [f for f in forms_of(back.text) if f["autosubmit"]]
    session.post(to_shop["action"], data=to_shop["fields"])
    assert wait_for(lambda: payment_row(payment.id).status == "paid")
    return payment.id


def opt_in(live, shopper) -> RecurringProfile:
    """Turn recurring on for the shopper's method, pay a parent and set up a threshold auto-payment of
    50.00 (below 1000, at most 100 a month) on its page; returns the profile."""
    from billcore.db import db
    from billcore.models import PaymentMethod

    session, _, method_id = shopper
    db.session.get(PaymentMethod, method_id).recurring = True
    db.session.commit()
    parent_id = pay_parent(live, shopper)
    form = session.post(f"{live.url}/payments/{parent_id}/recurring", allow_redirects=False, data={
        "rule": "threshold", "amount": "50.00", "threshold": "1000", "monthly_max": "100"})
    assert form.status_code == 302, form.text
    fresh()
    return db.session.query(RecurringProfile).one()


def test_auto_payment_through_the_sandbox(live, shopper):
    session, account_id, method_id = shopper
    live.app.config["PMROBOKASSA_SANDBOX_RECURRING"] = ""
    from billcore.db import db

    profile = opt_in(live, shopper)
    now = utcnow()

    # the sandbox notifies a moment after answering, as Robokassa does; without the delay the notification
    # may settle the child before the answer is booked (then the run reports it "paid", also correct)
    live.app.config.update(PMROBOKASSA_SANDBOX_FAULT="late", PMROBOKASSA_SANDBOX_LATE_SECONDS=0.5)
    result = recurring.run_due(now)
    [(pid, period, child_id, outcome)] = result.charges
    assert (pid, period, outcome) == (profile.id, "t1", "accepted")  # OK<InvoiceID> only means "created"
    live.app.config["PMROBOKASSA_SANDBOX_FAULT"] = "normal"
    assert wait_for(lambda: payment_row(child_id).status == "paid")  # credited by its ResultURL
    assert delivery.join_deliveries(20)
    assert credits(child_id) == 1 and balance(account_id) == Decimal("150.00")
    assert recurring.run_due(now + timedelta(minutes=61)).charges[0] == (profile.id, "t1", child_id, "paid")

    # the bank refuses the next charge: the sandbox never notifies, polling cancels, the run counts a failure
    live.app.config["PMROBOKASSA_SANDBOX_RECURRING"] = "refuse"
    result = recurring.run_due(now + timedelta(minutes=122))
    [(_, period, refused_id, outcome)] = result.charges
    assert (period, outcome) == ("t2", "accepted")
    check_payment(refused_id, "test")
    assert payment_row(refused_id).status == "cancelled"
    result = recurring.run_due(now + timedelta(minutes=183))
    assert result.charges == [(profile.id, "t2", refused_id, "failed")]
    fresh()
    assert db.session.get(RecurringProfile, profile.id).failures == 1
    assert balance(account_id) == Decimal("150.00")


def test_an_unclear_answer_is_settled_by_the_gateway_never_charged_again(live, shopper):
    """Robokassa made the charge but the answer was an HTML page: the child waits (inpay) instead of being
    cancelled, no run charges the period again, and OpStateExt settles it paid, credited once."""
    session, account_id, method_id = shopper
    from billcore.db import db
    from billcore.models import Payment, PaymentEvent

    profile = opt_in(live, shopper)
    now = utcnow()
    # the charge goes through at the gateway, its notification is lost, and the answer is not OK<InvoiceID>
    live.app.config.update(PMROBOKASSA_SANDBOX_RECURRING="odd-answer", PMROBOKASSA_SANDBOX_FAULT="none")
    [(pid, period, child_id, outcome)] = recurring.run_due(now).charges
    assert (pid, period, outcome) == (profile.id, "t1", "accepted")
    assert payment_row(child_id).status == "inpay"
    fresh()
    [event] = db.session.query(PaymentEvent).filter_by(payment_id=child_id, kind="recurring").all()
    assert event.data.get("unconfirmed") is True and "not a clear yes or no" in event.data["info"]

    # later runs see a charge the gateway is still to settle: nothing charged again, no second child
    assert recurring.run_due(now + timedelta(minutes=61)).charges == []
    fresh()
    assert db.session.query(Payment).filter(Payment.account_id == account_id).count() == 2

    check_payment(child_id, "test")  # OpStateExt: state 100
    assert payment_row(child_id).status == "paid" and credits(child_id) == 1
    assert recurring.run_due(now + timedelta(minutes=122)).charges == [(profile.id, "t1", child_id, "paid")]
    assert balance(account_id) == Decimal("150.00")
