"""The worked example of docs/plugins.md, examples/pmfreekassa: a FreeKassa module on the payment door.

It is loaded by the test app through ``EXTRA_MODULES`` (it is not installed), passes billcore's conformance
suite, and keeps FreeKassa's protocol: the published notification signature, the signed payment form, the
``YES`` answer, the address allow-list and the unsigned return pages. No test calls FreeKassa.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from billcore.db import db
from billcore.gateway import ConformanceAdapter, ConformanceSuite, Customer, Notification
from billcore.models import Account, LedgerEntry, Payment, PaymentEvent
from billcore.payments import service
from examples.pmfreekassa import protocol
from tests.conftest import add_paymethod

KEY = "pmfreekassa"
SETTINGS = {"merchant_id": "14963", "secret1": "secret_word_1", "secret2": "secret_word_2", "networks": "127.0.0.1"}
FREEKASSA_ADDRESS = protocol.NETWORKS[0]


@pytest.fixture
def app_config():
    """Load the example beside the in-tree modules."""
    return {"EXTRA_MODULES": {KEY: "examples.pmfreekassa"}}


def notification(payment: Payment, settings: dict[str, Any], secret2: str | None = None, **fields: str) -> dict:
    """FreeKassa's notification that ``payment`` was paid in full, signed with ``secret2`` (default: the
    settings'; ``""``: unsigned)."""
    params = {"MERCHANT_ID": settings["merchant_id"], "AMOUNT": f"{payment.total:.2f}", "intid": f"9{payment.id:06d}",
              "MERCHANT_ORDER_ID": str(payment.id), "P_EMAIL": "payer@example.com", "CUR_ID": "36", **fields}
    secret = settings["secret2"] if secret2 is None else secret2
    if secret:
        params["SIGN"] = protocol.notification_signature(params["MERCHANT_ID"], params["AMOUNT"], secret,
                                                         params["MERCHANT_ORDER_ID"])
    return params


class FreeKassaAdapter(ConformanceAdapter):
    """What the module is: its settings and FreeKassa's notifications."""

    module = KEY
    currency = "RUB"
    amount = "100.00"

    def valid_settings(self) -> dict[str, Any]:
        """The shop's settings; the suite's requests come from the test client's address."""
        return dict(SETTINGS)

    inside_address = FREEKASSA_ADDRESS

    def other_merchant_settings(self) -> list[dict[str, Any]]:
        """Other shops at FreeKassa: one with its own secret words, one sharing this shop's (then only the
        module's check of ``MERCHANT_ID`` tells them apart)."""
        return [{**SETTINGS, "merchant_id": "20001", "secret1": "other_word_1", "secret2": "other_word_2"},
                {**SETTINGS, "merchant_id": "20002"}]

    def allowlist_settings(self) -> dict[str, Any]:
        """The shop's settings with FreeKassa's own notifying address as the only one allowed."""
        return {**SETTINGS, "networks": FREEKASSA_ADDRESS}

    def invalid_settings(self) -> list[dict[str, Any]]:
        """A shop ID that is not a number, a missing secret word, an address that is none."""
        return [{**SETTINGS, "merchant_id": "shop-1"}, {**SETTINGS, "merchant_id": ""}, {**SETTINGS, "secret2": ""},
                {**SETTINGS, "secret1": ""}, {**SETTINGS, "networks": "168.119.157.136, freekassa.com"}]

    def genuine_notification(self, payment, settings, amount: Decimal | None = None) -> Notification:
        """Signed with secret word 2 (``amount``: what FreeKassa says it received, default the total)."""
        fields = {} if amount is None else {"AMOUNT": f"{amount:.2f}"}
        return Notification("/mancgi/fkresult", data=notification(payment, settings, **fields))

    def forged_notification(self, payment, settings) -> Notification:
        """Signed with secret word 1 (the form's word, which every payer's browser has seen used)."""
        return Notification("/mancgi/fkresult", data=notification(payment, settings, secret2=settings["secret1"]))

    def unsigned_notification(self, payment, settings) -> Notification:
        """No ``SIGN``."""
        return Notification("/mancgi/fkresult", data=notification(payment, settings, secret2=""))


class TestConformance(ConformanceSuite):
    """billcore's conformance suite, for the FreeKassa example."""

    adapter = FreeKassaAdapter()


# --- the protocol ----------------------------------------------------------------------------------

def test_the_notification_signature_of_a_published_example():
    """md5("14963:99:secret_word_2:ID_234"), as a published FreeKassa client library gives it."""
    assert protocol.notification_signature("14963", "99", "secret_word_2", "ID_234") == \
        "c0905625cf96d7730487a4dda69c6a09"
    params = {"MERCHANT_ID": "14963", "AMOUNT": "99", "MERCHANT_ORDER_ID": "ID_234",
              "SIGN": "C0905625CF96D7730487A4DDA69C6A09"}
    assert protocol.notification_is_signed(params, "secret_word_2")  # FreeKassa's case does not matter
    assert not protocol.notification_is_signed({**params, "AMOUNT": "99.01"}, "secret_word_2")
    assert not protocol.notification_is_signed(params, "")
    assert not protocol.notification_is_signed({**params, "SIGN": "ПОДПИСЬ"}, "secret_word_2")  # no 500 on text


def test_the_payment_form_is_a_signed_get(app, client_user):
    method = add_paymethod(KEY, dict(SETTINGS), currency="RUB")
    payment = service.create_payment(client_user.account_id, method.id, Decimal("1500.5"))
    action = app.extensions["billcore.modules"].call(
        KEY, "billcore_start_payment", payment=payment, paymethod=method, settings=dict(SETTINGS),
        customer=Customer(user_id=client_user.id, email=client_user.email, language="ru"))
    parts = urlsplit(action.url)
    assert action.method == "GET" and f"{parts.scheme}://{parts.netloc}{parts.path}" == protocol.PAY_URL
    fields = dict(parse_qsl(parts.query))
    assert fields == {"m": "14963", "oa": "1500.50", "currency": "RUB", "o": str(payment.id), "lang": "ru",
                      "em": client_user.email,
                      "s": protocol.md5_hex("14963", "1500.50", "secret_word_1", "RUB", str(payment.id))}
    assert "secret_word" not in action.url


# --- the notification ------------------------------------------------------------------------------

def _paid_setup(app, client_user, settings: dict[str, Any] | None = None):
    method = add_paymethod(KEY, dict(settings or SETTINGS), currency="RUB")
    payment = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    service.set_in_pay(payment.id, source="test")
    return db.session.get(Payment, payment.id)


def _state(payment_id: int) -> tuple[str, Decimal, int]:
    db.session.commit()  # end the read snapshot
    payment = db.session.get(Payment, payment_id)
    credits = db.session.query(LedgerEntry).filter_by(payment_id=payment_id, kind="payment").count()
    return payment.status, db.session.get(Account, payment.account_id).balance, credits


def test_only_the_listed_addresses_may_notify(app, client_user):
    settings = {**SETTINGS, "networks": ", ".join(protocol.NETWORKS)}
    payment = _paid_setup(app, client_user, settings)
    client = app.test_client()
    elsewhere = client.post("/mancgi/fkresult", data=notification(payment, settings),
                            environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert (elsewhere.status_code, elsewhere.get_data(as_text=True)) == (403, "forbidden")
    assert _state(payment.id) == ("inpay", Decimal("0.00"), 0)
    events = db.session.query(PaymentEvent).filter_by(payment_id=payment.id, source="fkresult").all()
    assert [e.outcome for e in events] == ["rejected: address 203.0.113.9 is not one the gateway calls from"]
    assert "secret_word" not in str(events[0].data)
    for _ in range(2):  # the first delivery and a repeat hear the same YES; credited once
        resp = client.post("/mancgi/fkresult", data=notification(payment, settings),
                           environ_base={"REMOTE_ADDR": FREEKASSA_ADDRESS})
        assert (resp.status_code, resp.get_data(as_text=True)) == (200, "YES")
    assert _state(payment.id) == ("paid", Decimal("100.00"), 1)


def test_a_blank_allow_list_lets_any_address_notify_signed(app, client_user):
    settings = {**SETTINGS, "networks": ""}
    payment = _paid_setup(app, client_user, settings)
    resp = app.test_client().post("/mancgi/fkresult", data=notification(payment, settings),
                                  environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert resp.get_data(as_text=True) == "YES"
    setup = app.extensions["billcore.modules"].call(KEY, "billcore_gateway_setup", paymethod=None, settings=settings,
                                                    base_url="https://billing.example.com")
    assert any("any address" in str(w) for w in setup.warnings)


@pytest.mark.parametrize("amount, expected", [("100", ("paid", "YES", 200)), ("100.0", ("paid", "YES", 200)),
                                              ("99.99", ("fraud", "amount mismatch", 400)),
                                              ("100.001", ("inpay", "bad amount", 400)),
                                              ("NaN", ("inpay", "bad amount", 400))])
def test_the_amount_is_the_payments_in_its_own_currency(app, client_user, amount, expected):
    """FreeKassa's AMOUNT as FreeKassa writes it; the payment's currency stands for the one it never sends."""
    payment = _paid_setup(app, client_user)
    resp = app.test_client().post("/mancgi/fkresult", data=notification(payment, SETTINGS, AMOUNT=amount))
    assert (_state(payment.id)[0], resp.get_data(as_text=True), resp.status_code) == expected
    again = app.test_client().post("/mancgi/fkresult", data=notification(payment, SETTINGS, AMOUNT=amount))
    assert (again.status_code, again.get_data(as_text=True)) == (resp.status_code, resp.get_data(as_text=True))


def test_another_shops_notification_is_refused(app, client_user):
    """Signed by another shop at FreeKassa (its own secret word 2): neither its word nor its shop ID pays."""
    payment = _paid_setup(app, client_user)
    other = {**SETTINGS, "merchant_id": "20001", "secret2": "other_word_2"}
    for params in (notification(payment, other), notification(payment, SETTINGS, MERCHANT_ID="20001")):
        resp = app.test_client().post("/mancgi/fkresult", data=params)
        assert resp.status_code == 400 and resp.get_data(as_text=True) != "YES"
    assert _state(payment.id) == ("inpay", Decimal("0.00"), 0)


def test_the_returns_change_nothing(app, client_user):
    payment = _paid_setup(app, client_user)
    client = app.test_client()
    for path, outcome in (("/mancgi/fksuccess", "success"), ("/mancgi/fkfail", "fail")):
        resp = client.get(path, query_string={"MERCHANT_ORDER_ID": str(payment.id), "intid": "123"})
        assert resp.status_code == 302 and resp.location.endswith(f"/payments/{payment.id}/return/{outcome}")
    assert _state(payment.id) == ("inpay", Decimal("0.00"), 0)


def test_the_settings_form_offers_freekassas_addresses(app):
    form_class = app.extensions["billcore.modules"].call(KEY, "billcore_integration_form", paymethod=None)
    with app.test_request_context():
        form = form_class(formdata=None)
        assert form.networks.data == ", ".join(protocol.NETWORKS)
        assert {field.name for field in form if field.type == "PasswordField"} == {"secret1", "secret2"}
