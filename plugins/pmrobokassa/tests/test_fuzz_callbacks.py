"""Property-based fuzzing of Robokassa's three callbacks (``/mancgi/rkresult``, ``rksuccess``, ``rkfail``).

Random, oversized, non-UTF-8 and missing fields, by GET and POST: never a 500, never a change of the
payment or the balance without a valid Password #2 signature, never a secret in the answer.
"""
from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote_from_bytes

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billcore.db import db
from billcore.models import Account, LedgerEntry
from billcore.payments import service

from .helpers import P1, P2, P3, reload, result_params, success_params

PATHS = ("/mancgi/rkresult", "/mancgi/rksuccess", "/mancgi/rkfail")
FIELD_NAMES = ("OutSum", "InvId", "SignatureValue", "Shp_item", "shp_login", "Fee", "EMail", "IsTest",
               "IncCurrLabel", "PaymentMethod", "Culture", "out_summ", "inv_id", "crc")
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

values = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[0-9]{1,25}(\.[0-9]{0,8})?", fullmatch=True),
    st.from_regex(r"[0-9a-fA-F]{0,130}", fullmatch=True),
    st.sampled_from(["", "0", "-1", "1e3", "NaN", "Infinity", "100,00", " 100.00", "100.000000", "１００",
                     "0x10", "1" * 5000, "A" * 100_000, "\x00", "\r\nOK1", "%", "%FF"]),
)
names = st.one_of(st.sampled_from(FIELD_NAMES), st.text(min_size=1, max_size=20))


def _state(payment_id: int, account_id: int) -> tuple:
    db.session.rollback()
    db.session.expire_all()
    return (reload(payment_id).status, db.session.query(LedgerEntry).count(),
            db.session.get(Account, account_id).balance)


def _no_secret(body: bytes) -> None:
    for secret in (P1, P2, P3):
        assert secret.encode() not in body


def _check(response, before, payment_id, account_id) -> None:
    assert response.status_code < 500, response.get_data()[:300]
    _no_secret(response.get_data())
    assert _state(payment_id, account_id) == before


@FUZZ
@given(path=st.sampled_from(PATHS), method=st.sampled_from(["GET", "POST"]),
       fields=st.dictionaries(names, values, max_size=8), target_payment=st.booleans())
def test_random_fields_never_500_never_change(app, client_user, payment, path, method, fields, target_payment):
    service.set_in_pay(payment.id, source="test")
    if target_payment:  # aim at the real payment, so the signature check is what stops it
        fields = {**fields, "InvId": str(payment.id)}
    before = _state(payment.id, client_user.account_id)
    client = app.test_client()
    if method == "GET":
        response = client.get(path, query_string=fields)
    else:
        response = client.post(path, data=fields)
    _check(response, before, payment.id, client_user.account_id)


@FUZZ
@given(path=st.sampled_from(PATHS), raw=st.binary(max_size=300), as_query=st.booleans())
def test_non_utf8_bodies(app, client_user, payment, path, raw, as_query):
    """Raw bytes, URL-encoded or not, around otherwise valid-looking fields."""
    service.set_in_pay(payment.id, source="test")
    before = _state(payment.id, client_user.account_id)
    body = b"OutSum=100.000000&InvId=" + str(payment.id).encode() + b"&SignatureValue=" + raw + \
        b"&Shp_x=" + quote_from_bytes(raw).encode() + b"&" + raw
    client = app.test_client()
    if as_query:
        response = client.get(path + "?" + quote_from_bytes(body, safe="=&"))
    else:
        response = client.post(path, data=body, content_type="application/x-www-form-urlencoded")
    _check(response, before, payment.id, client_user.account_id)


@FUZZ
@given(drop=st.sets(st.sampled_from(["OutSum", "InvId", "SignatureValue"]), min_size=1),
       tamper=st.sampled_from(["none", "amount", "password", "case", "shp"]),
       extra=st.dictionaries(st.sampled_from(FIELD_NAMES[3:]), values, max_size=3))
def test_missing_or_tampered_fields_of_a_genuine_notification(app, client_user, payment, drop, tamper, extra):
    """A genuine notification with a required field missing, or a signed field altered after signing."""
    service.set_in_pay(payment.id, source="test")
    before = _state(payment.id, client_user.account_id)
    params = {**result_params(payment.id), **{k: v for k, v in extra.items() if not k.lower().startswith("shp")}}
    if tamper == "amount":
        params["OutSum"] = "1000.000000"
    elif tamper == "password":
        params = result_params(payment.id, password=P1)
    elif tamper == "shp":
        params["Shp_added"] = "1"
    elif tamper == "case":
        params["SignatureValue"] = params["SignatureValue"].lower()
    for name in drop:
        params.pop(name, None)
    response = app.test_client().post("/mancgi/rkresult", data=params)
    _check(response, before, payment.id, client_user.account_id)
    assert not response.get_data(as_text=True).startswith("OK")


@FUZZ
@given(extra=st.dictionaries(st.sampled_from(["Fee", "EMail", "IsTest", "IncCurrLabel", "PaymentMethod", "x"]),
                             values, max_size=4))
def test_success_return_never_credits_even_when_signed(app, client_user, payment, extra):
    service.set_in_pay(payment.id, source="test")
    before = _state(payment.id, client_user.account_id)
    response = app.test_client().post("/mancgi/rksuccess", data={**extra, **success_params(payment.id)})
    _check(response, before, payment.id, client_user.account_id)


def test_a_genuine_notification_still_credits(app, client_user, payment):
    """The fuzzers' assertions would hold for a route that refuses everything: this one must credit."""
    service.set_in_pay(payment.id, source="test")
    response = app.test_client().post("/mancgi/rkresult", data=result_params(payment.id))
    assert response.get_data(as_text=True) == f"OK{payment.id}"
    assert _state(payment.id, client_user.account_id) == ("paid", 1, Decimal("100.00"))
