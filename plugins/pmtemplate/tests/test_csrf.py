"""With CSRF on (as in production), only the gateway-facing views are exempt."""
from __future__ import annotations

import pytest

from billcore.testing.fixtures import CLIENT

from .helpers import fresh, make_payment, notification


@pytest.fixture
def app_config():
    """Production-like: CSRF protection on."""
    return {"WTF_CSRF_ENABLED": True}


def test_callbacks_are_exempt_and_nothing_else(app, client_user):
    _, payment = make_payment(client_user)
    c = app.test_client()
    # The notification is processed (signature checked), not refused for a missing CSRF token.
    resp = c.post("/mancgi/tplresult", data=notification(payment.id))
    assert resp.status_code == 200 and resp.data == b"OK"
    assert fresh(payment.id).status == "paid"
    # The fake gateway's own form is exempt too: it answers about the signature, not the token.
    resp = c.post("/fakegw/pay", data={"merchant_id": "shop-1", "payment_id": str(payment.id), "action": "pay"})
    assert resp.status_code == 400 and b"not signed" in resp.data
    # The payer's return views are the core's too (GET, and they change nothing).
    assert c.get(f"/mancgi/tplsuccess?elid={payment.id}").status_code == 302
    # Everything else still needs the token: the login, and billcore's payment door (the Pay button).
    resp = c.post("/login", data={"email": CLIENT[0], "password": CLIENT[1]})
    assert resp.status_code == 400
    _, unpaid = make_payment(client_user)
    assert c.post(f"/payments/{unpaid.id}/pay").status_code == 400
    assert fresh(unpaid.id).status == "new"
