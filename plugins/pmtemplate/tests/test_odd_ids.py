"""Huge, negative, non-ASCII and otherwise odd ids in the gateway-facing routes get a clean 4xx (never a
500 or 503), and change nothing."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmtemplate.signing import signed

from .helpers import SECRET, fresh, make_payment, notification


def _signed_with_id(payment_id: int, odd: str) -> dict[str, str]:
    """A genuine, signed notification whose ``payment_id`` is ``odd``."""
    return signed({**notification(payment_id, secret=""), "payment_id": odd}, SECRET)

ODD_IDS = ["99999999999999999999999", str(2**31), str(2**63), "-1", "0", "²", "٣", "1e3", "0x10", " ", "",
           "1\n2", "1.0", "\x00", "१"]


@pytest.mark.parametrize("odd", ODD_IDS)
def test_notification_with_an_odd_payment_id_is_400(app, client_user, odd):
    _, payment = make_payment(client_user)
    resp = app.test_client().post("/mancgi/tplresult", data=_signed_with_id(payment.id, odd))
    assert resp.status_code == 400 and resp.data != b"OK"
    assert fresh(payment.id).status == "new"


@pytest.mark.parametrize("route", ["/mancgi/tplsuccess", "/mancgi/tplfail"])
@pytest.mark.parametrize("odd", ODD_IDS)
def test_return_pages_with_an_odd_id_redirect_home(app, route, odd):
    resp = app.test_client().get(route, query_string={"elid": odd})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/")


@pytest.mark.parametrize("odd", ODD_IDS)
def test_redirect_script_with_an_odd_id_is_404(app, client_client, odd):
    assert client_client.get("/mancgi/tplpayment", query_string={"elid": odd}).status_code == 404


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(odd=st.one_of(st.integers(min_value=2**31), st.integers(max_value=0)).map(str)
       | st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=6))
def test_any_out_of_range_or_unicode_id_is_refused(app, client_user, odd):
    assert app.test_client().post("/mancgi/tplresult", data=_signed_with_id(1, odd)).status_code == 400
    assert app.test_client().get("/mancgi/tplsuccess", query_string={"elid": odd}).status_code == 302
