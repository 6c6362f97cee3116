"""The payment door's customer side (billcore/checkout/start.py): the core checks a payment, asks the
module for the gateway's request, marks the payment ``inpay`` and sends the browser on.

Driven through the payment page's Pay button (``POST /payments/<id>/pay``), as a customer would, with
``tests/fake_checkout_module.py`` answering what each test asks of a module.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from billcore import recurring
from billcore.db import db
from billcore.models import Payment, PaymentEvent
from billcore.payments import service
from tests import fake_checkout_module as fake
from tests import fake_recurring_module as fake_rec
from tests.conftest import CLIENT, add_paymethod

SECRET = "door-s3cr3t-value"


@pytest.fixture
def app_config():
    """The fake checkout module (and a recurring one, for a held auto-payment child)."""
    fake.reset()
    return {"EXTRA_MODULES": {fake.KEY: "tests.fake_checkout_module", fake_rec.KEY: "tests.fake_recurring_module"}}


@pytest.fixture
def method(app):
    """An active RUB method of the fake module, with a secret in its settings."""
    return add_paymethod(fake.KEY, {"secret": SECRET}, name="Card", commission_amount=Decimal("5.00"))


@pytest.fixture
def payment(client_user, method):
    """A ``new`` payment of 100.00 (105.00 with the commission) of the logged-in client."""
    return service.create_payment(client_user.account_id, method.id, Decimal("100.00"))


def _status(payment_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Payment, payment_id).status


def _events(payment_id: int) -> list[PaymentEvent]:
    db.session.expire_all()
    return db.session.execute(select(PaymentEvent).where(PaymentEvent.payment_id == payment_id)
                              .order_by(PaymentEvent.id)).scalars().all()


def _refused(web, payment_id: int, message: str) -> None:
    """Pay is refused: back to the payment's page with ``message``, nothing sent anywhere."""
    response = web.post(f"/payments/{payment_id}/pay")
    assert response.status_code == 302 and response.headers["Location"] == f"/payments/{payment_id}"
    assert message in web.get(response.headers["Location"]).get_data(as_text=True)


# --- sending the browser on ------------------------------------------------------------------------


def test_a_get_start_marks_the_payment_inpay_and_redirects_to_the_gateway(client_client, client_user, payment):
    response = client_client.post(f"/payments/{payment.id}/pay")
    assert response.status_code == 302
    assert response.headers["Location"] == f"{fake.GATEWAY}/pay?order={payment.id}"
    assert _status(payment.id) == "inpay"
    (start,) = [e for e in _events(payment.id) if e.status_to == "inpay"]
    assert (start.kind, start.source, start.actor, start.status_from) == ("redirect", "checkout", CLIENT[0], "new")
    assert start.data == {"url": f"{fake.GATEWAY}/pay?order={payment.id}", "method": "GET"}
    assert fake.CALLS == [("start", payment.id)]
    (customer,) = fake.CUSTOMERS
    assert (customer.user_id, customer.email, customer.language) == (client_user.id, CLIENT[0], "en")


def test_the_customer_s_language_reaches_the_module(client_client, payment):
    client_client.post("/language/ru")
    client_client.post(f"/payments/{payment.id}/pay")
    assert [c.language for c in fake.CUSTOMERS] == ["ru"]


def test_paying_an_inpay_payment_again_sends_the_browser_again_and_changes_nothing(client_client, client_user,
                                                                                  payment):
    first = client_client.post(f"/payments/{payment.id}/pay")
    again = client_client.post(f"/payments/{payment.id}/pay")
    assert first.headers["Location"] == again.headers["Location"] == f"{fake.GATEWAY}/pay?order={payment.id}"
    assert _status(payment.id) == "inpay"
    events = _events(payment.id)
    assert [e.status_to for e in events if e.status_to] == ["new", "inpay"]  # one transition, not two
    assert events[-1].kind == "redirect" and "already inpay" in events[-1].outcome  # the second start, recorded
    assert fake.CALLS == [("start", payment.id), ("start", payment.id)]


def test_a_post_to_the_gateway_is_an_auto_submitting_form_without_the_csrf_token(app, method, client_user, payment):
    app.config["WTF_CSRF_ENABLED"] = True
    web = _logged_in_with_csrf(app)
    fake.MODE["start"] = "post"
    html = web.post(f"/payments/{payment.id}/pay", data={"csrf_token": _token(web, payment.id)}).get_data(as_text=True)
    form = _autosubmit_form(html, f"{fake.GATEWAY}/form")
    assert f'name="order" value="{payment.id}"' in form and 'name="sum" value="105.00"' in form
    assert "csrf_token" not in form  # the session's token never leaves for another site
    assert _status(payment.id) == "inpay"
    (start,) = [e for e in _events(payment.id) if e.status_to == "inpay"]
    assert start.data == {"order": str(payment.id), "sum": "105.00", "url": f"{fake.GATEWAY}/form", "method": "POST"}


def test_a_post_to_this_site_carries_the_session_s_csrf_token(app, method, client_user, payment):
    app.config["WTF_CSRF_ENABLED"] = True
    web = _logged_in_with_csrf(app)
    fake.MODE["start"] = "post_here"
    html = web.post(f"/payments/{payment.id}/pay", data={"csrf_token": _token(web, payment.id)}).get_data(as_text=True)
    form = _autosubmit_form(html, "/fakepay/form")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    # it is this session's own token: the session's next protected POST is accepted with it
    other = service.create_payment(client_user.account_id, method.id, Decimal("1.00"))
    assert web.post(f"/payments/{other.id}/cancel", data={"csrf_token": token}).status_code == 302
    assert _status(other.id) == "cancelled"
    assert web.post(f"/payments/{payment.id}/cancel", data={"csrf_token": "forged"}).status_code == 400


def test_starting_needs_the_session_s_csrf_token(app, method, client_user, payment):
    app.config["WTF_CSRF_ENABLED"] = True
    web = _logged_in_with_csrf(app)
    assert web.post(f"/payments/{payment.id}/pay").status_code == 400
    assert web.post(f"/payments/{payment.id}/pay", data={"csrf_token": "forged"}).status_code == 400
    assert _status(payment.id) == "new" and fake.CALLS == []


def _autosubmit_form(html: str, action: str) -> str:
    """The inside of the page's auto-submitting form to ``action`` (the page's other forms aside)."""
    found = re.search(rf'<form method="post" action="{re.escape(action)}" data-autosubmit>(.*?)</form>', html, re.S)
    assert found, html
    return found.group(1)


def _logged_in_with_csrf(app):
    web = app.test_client()
    page = web.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    assert web.post("/login", data={"email": CLIENT[0], "password": CLIENT[1], "csrf_token": token}).status_code == 302
    return web


def _token(web, payment_id: int) -> str:
    """The CSRF token of the payment page's forms (the Pay button's)."""
    page = web.get(f"/payments/{payment_id}").get_data(as_text=True)
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page).group(1)


# --- what is recorded ------------------------------------------------------------------------------


def test_the_recorded_request_is_bounded_and_never_holds_a_secret(app, client_client, payment):
    fake.MODE["start"] = "careless"  # a huge receipt, 200 extra fields and the secret, in the URL and a field
    response = client_client.post(f"/payments/{payment.id}/pay")
    assert response.status_code == 200 and _status(payment.id) == "inpay"
    (start,) = [e for e in _events(payment.id) if e.status_to == "inpay"]
    data = start.data
    assert SECRET not in json.dumps(data)
    assert data["method"] == "POST" and data["url"].startswith(f"{fake.GATEWAY}/form?key=") and len(data["url"]) == 500
    assert data["order"] == str(payment.id)
    limit = int(app.config["CALLBACK_FIELD_MAX"])
    assert len(data["receipt"]) == limit and "receipt" in data["_truncated"]
    fields = {k for k in data if k not in ("url", "method", "_dropped", "_truncated")}
    assert len(fields) == 50 and data["_dropped"] == 203 - 50


# --- refusals: back to the payment's page, nothing changed, nobody sent on --------------------------


@pytest.mark.parametrize("settle", ["paid", "cancelled"])
def test_a_payment_no_longer_open_is_not_sent(client_client, payment, settle):
    if settle == "paid":
        service.set_paid(payment.id, amount=Decimal("105.00"), currency="RUB", source="test")
    else:
        service.set_cancelled(payment.id, source="test", reason="test")
    _refused(client_client, payment.id, "can no longer be paid")
    assert _status(payment.id) == settle and fake.CALLS == []


def test_a_disabled_method_is_not_used(client_client, method, payment):
    method.active = False
    db.session.commit()
    _refused(client_client, payment.id, "no longer available")
    assert _status(payment.id) == "new" and fake.CALLS == []


def test_a_method_whose_module_is_not_loaded_is_not_used(client_client, method, payment):
    method.module = "pmuninstalled"  # the module was removed from the install
    db.session.commit()
    _refused(client_client, payment.id, "no longer available")
    assert _status(payment.id) == "new" and fake.CALLS == []


@pytest.mark.parametrize("mode", ["error", "none"])
def test_a_module_that_raises_or_answers_nothing_leaves_the_payment_new(client_client, payment, mode):
    fake.MODE["start"] = mode
    _refused(client_client, payment.id, "not available at the moment")
    assert _status(payment.id) == "new" and fake.CALLS == [("start", payment.id)]
    assert [e.status_to for e in _events(payment.id)] == ["new"]


def test_a_module_s_refusal_is_shown_and_leaves_the_payment_new(client_client, payment):
    fake.MODE["start"] = "refuse"
    _refused(client_client, payment.id, fake.REFUSAL)
    assert _status(payment.id) == "new"
    assert [e.status_to for e in _events(payment.id)] == ["new"]


def test_a_payment_paid_while_the_module_answered_is_not_sent(client_client, payment):
    fake.MODE["start"] = "paid_meanwhile"
    _refused(client_client, payment.id, "can no longer be paid")
    assert _status(payment.id) == "paid"


def test_someone_else_s_payment_is_404_and_not_marked(other_client_client, payment):
    assert other_client_client.post(f"/payments/{payment.id}/pay").status_code == 404
    assert other_client_client.post("/payments/2147483648/pay").status_code == 404
    assert _status(payment.id) == "new" and fake.CALLS == []


def test_a_held_auto_payment_child_is_not_paid_by_hand(app, client_client, client_user):
    """A child whose automatic charge has an unknown outcome: paying it by hand could take the money twice."""
    app.config["FAKEREC_MODE"] = "error"  # the charge's answer is lost: the child stays new and held
    method = add_paymethod(fake_rec.KEY, {}, recurring=True)
    parent = service.create_payment(client_user.account_id, method.id, Decimal("10.00"))
    recurring.mark_parent(parent.id)
    service.set_paid(parent.id, amount=Decimal("10.00"), currency="RUB", source="test")
    now = datetime(2026, 1, 31, 10, 0, tzinfo=timezone.utc)
    recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                             threshold="100", monthly_max="500", now=now)
    recurring.run_due(now)
    db.session.commit()
    child = db.session.execute(select(Payment).where(Payment.id != parent.id)).scalar_one()
    assert child.status == "new" and recurring.is_held_child(child.id)
    _refused(client_client, child.id, "cannot be paid by hand")
    assert _status(child.id) == "new"
    assert [e.status_to for e in _events(child.id) if e.status_to] == ["new"]
