"""Huge, negative, non-ASCII and otherwise odd ids in the gateway-facing routes and billcore's payment door
get a clean 4xx (never a 500 or 503), and change nothing."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billcore.gateway import MAX_ID
from pmtemplate.signing import signed

from .helpers import SECRET, fresh, make_payment, notification


def _signed_with_id(payment_id: int, odd: str) -> dict[str, str]:
    """A genuine, signed notification whose ``payment_id`` is ``odd``."""
    return signed({**notification(payment_id, secret=""), "payment_id": odd}, SECRET)

# (odd id, the notification's status): not a number at all is malformed (400), a number no payment could
# have (0, past the INTEGER range) is an unknown payment (404).
ODD_IDS = {"99999999999999999999999": 400, str(2**31): 404, str(2**63): 400, "-1": 400, "0": 404, "²": 400,
           "٣": 400, "1e3": 400, "0x10": 400, " ": 400, "": 400, "1\n2": 400, "1.0": 400, "\x00": 400, "१": 400}


def _expected(odd: str) -> int:
    """The core's rule for a callback's payment id: ASCII digits (at most 18) or it is malformed."""
    text = odd.strip()
    return 404 if text.isascii() and text.isdigit() and len(text) <= 18 else 400


def test_the_table_follows_the_rule():
    assert {odd: _expected(odd) for odd in ODD_IDS} == ODD_IDS


@pytest.mark.parametrize("odd", ODD_IDS)
def test_notification_with_an_odd_payment_id_is_refused(app, client_user, odd):
    _, payment = make_payment(client_user)
    resp = app.test_client().post("/mancgi/tplresult", data=_signed_with_id(payment.id, odd))
    assert resp.status_code == ODD_IDS[odd] and resp.data != b"OK"
    assert fresh(payment.id).status == "new"


@pytest.mark.parametrize("route", ["/mancgi/tplsuccess", "/mancgi/tplfail"])
@pytest.mark.parametrize("odd", ODD_IDS)
def test_return_pages_with_an_odd_id_go_to_the_dashboard(app, route, odd):
    resp = app.test_client().get(route, query_string={"elid": odd})
    assert resp.status_code == 302 and resp.headers["Location"] == "/dashboard"


@pytest.mark.parametrize("odd", [odd for odd in ODD_IDS if odd.strip() and odd.isprintable() and "/" not in odd])
def test_starting_a_payment_with_an_odd_id_is_404(app, client_client, client_user, odd):
    _, payment = make_payment(client_user)
    assert client_client.post(f"/payments/{quote(odd)}/pay").status_code == 404
    assert fresh(payment.id).status == "new"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(odd=st.one_of(st.integers(min_value=2**31), st.integers(max_value=0)).map(str)
       | st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=6))
def test_any_out_of_range_or_unicode_id_is_refused(app, client_user, odd):
    resp = app.test_client().post("/mancgi/tplresult", data=_signed_with_id(1, odd))
    assert resp.status_code == _expected(odd) and resp.data != b"OK"
    back = app.test_client().get("/mancgi/tplsuccess", query_string={"elid": odd})
    # an id a payment could have (ASCII digits are among the "Nd" characters) goes to its return page, which
    # shows it to its owner only, whether or not it exists; anything else to the dashboard
    text = odd.strip()
    could_be = _expected(odd) == 404 and 0 < int(text) <= MAX_ID
    assert back.status_code == 302
    assert back.headers["Location"] == (f"/payments/{int(text)}/return/success" if could_be else "/dashboard")
