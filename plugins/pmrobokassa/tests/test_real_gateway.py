"""What the real Robokassa expects and answers, beyond our own sandbox's reading of the protocol.

Each test pins one fact checked against Robokassa's public material (its official CMS plugin, its
published API description, independent SDKs): the exact Refund/Create request, the refund receipt, the
gateway's own words on a rejection, every shape of answer to a Recurring charge (only ``OK<InvoiceID>``
means "created"; only a clear refusal means "not charged"; anything else is unknown and waits for
OpStateExt), the 22 % VAT rates, and ``IsTest`` on a test-mode child. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import base64
import json
import socket
import threading
from decimal import Decimal
from urllib.parse import unquote

import pytest

from billcore.db import db
from billcore.models import Payment, Refund
from billcore.payments import service
from billcore.testing.fixtures import add_paymethod
from pmrobokassa import protocol

from .helpers import P3, SETTINGS, reload, result_params
from .test_operations import call

pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is")

RECEIPTS = {"receipt_enabled": True, "receipt_sno": "osn", "receipt_tax": "vat22",
            "receipt_payment_method": "full_payment", "receipt_payment_object": "service",
            "receipt_item_name": "Hosting"}


def _paid_payment(app, client_user, fake, **settings) -> Payment:
    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": fake.url, **settings})
    p = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    assert app.test_client().post("/mancgi/rkresult", data=result_params(p.id)).status_code == 200
    service.set_gateway_data(p.id, op_key="OPKEY-R")
    return p


def _refund(payment: Payment, amount: str):
    refund = service.request_refund(payment.id, Decimal(amount), source="test")
    return call("billcore_refund", payment.id, refund=db.session.get(Refund, refund.id))


# --------------------------------------------------------------------------------------------------
# Refund/Create
# --------------------------------------------------------------------------------------------------


def test_refund_create_posts_the_token_as_a_json_string(app, client_user, fake):
    p = _paid_payment(app, client_user, fake)
    result = _refund(p, "40.00")
    assert result.state == "pending" and result.external_id == "req-1"
    [(content_type, body)] = fake.refund_requests
    assert content_type == "application/json"
    assert body.startswith(b'"eyJ') and body.endswith(b'"') and b"\n" not in body
    token = json.loads(body)
    assert protocol.verify_refund_jwt(token, P3) == {"OpKey": "OPKEY-R", "RefundSum": Decimal("40.00")}
    segment = token.split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))) == {"alg": "HS256",
                                                                                       "typ": "JWT"}


def test_refund_without_receipts_sends_no_invoice_items(app, client_user, fake):
    p = _paid_payment(app, client_user, fake)
    assert _refund(p, "100.00").state == "pending"
    assert fake.refund_payloads == [{"OpKey": "OPKEY-R"}]  # the whole operation: no RefundSum either


def test_refund_with_receipts_sends_the_refund_receipt(app, client_user, fake):
    p = _paid_payment(app, client_user, fake, **RECEIPTS)
    assert _refund(p, "25.50").state == "pending"
    [payload] = fake.refund_payloads
    assert payload == {"OpKey": "OPKEY-R", "RefundSum": Decimal("25.50"), "InvoiceItems": [
        {"Name": "Hosting", "Quantity": 1, "Cost": Decimal("25.50"), "Tax": "vat22",
         "PaymentMethod": "full_payment", "PaymentObject": "service"}]}


@pytest.mark.parametrize("status, body, shown", [
    (400, '{"success":false,"message":"Signature key is not exists","requestId":null}',
     "Signature key is not exists"),
    (415, "Unsupported media type", "Unsupported media type"),
    (401, "<html><body><h1>401</h1></body></html>", None),
])
def test_a_rejected_refund_shows_the_gateways_own_words(app, client_user, fake, status, body, shown):
    p = _paid_payment(app, client_user, fake)
    fake.refund_http_error = (status, body)
    result = _refund(p, "10.00")
    assert result.state == "failed" and f"HTTP {status}" in result.info
    if shown:
        assert shown in result.info
    else:
        assert "<" not in result.info  # an error page's markup is not shown


def test_a_5xx_refund_answer_stays_unconfirmed_with_the_gateways_words(app, client_user, fake):
    p = _paid_payment(app, client_user, fake)
    fake.refund_http_error = (502, '{"message":"upstream down"}')
    result = _refund(p, "10.00")
    assert result.state == "pending" and result.data.get("unconfirmed") and "upstream down" in result.info


# --------------------------------------------------------------------------------------------------
# The answer to a Recurring charge
# --------------------------------------------------------------------------------------------------


def _charge(app, client_user, fake, **settings):
    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": fake.url, **settings})
    parent = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    child = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    result = call("billcore_recurring_charge", child.id, parent=db.session.get(Payment, parent.id))
    return child, result


def test_ok_with_the_invoice_id_is_accepted(app, client_user, fake):
    child, result = _charge(app, client_user, fake)
    assert (result.state, result.data) == ("accepted", {}) and result.info == f"OK{child.id}"


@pytest.mark.parametrize("status, body", [
    (200, "ok{id}"), (200, "OK+{id}"), (200, "OK"), (200, "OK{id}0"), (200, ""),
    (200, "<html><body>Service temporarily unavailable</body></html>"),
    (200, "ERROR: internal error"),
    (500, "Internal Server Error"), (502, ""), (408, "Request Timeout"), (409, "Conflict"),
], ids=["lowercase", "plus", "bare-ok", "other-id", "empty", "html-200", "error-text-200", "500", "502", "408",
        "409"])
def test_an_unclear_answer_is_an_unknown_outcome_never_a_failure(app, client_user, fake, status, body):
    method = add_paymethod("pmrobokassa", {**SETTINGS, "url": fake.url})
    parent = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    child = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    fake.recurring_answer = (status, body.format(id=child.id))
    result = call("billcore_recurring_charge", child.id, parent=db.session.get(Payment, parent.id))
    # "accepted" makes the child wait (inpay) for OpStateExt; "unconfirmed" tells the admin why
    assert result.state == "accepted" and result.data == {"unconfirmed": True}
    assert "not a clear yes or no" in result.info


@pytest.mark.parametrize("status, body, shown", [
    (400, "ERROR: wrong signature (29)", "wrong signature (29)"),
    (403, "", None), (404, "Not Found", "Not Found"), (422, '{"message":"bad PreviousInvoiceID"}',
                                                        "bad PreviousInvoiceID"),
])
def test_a_clear_http_refusal_fails_the_charge(app, client_user, fake, status, body, shown):
    fake.recurring_answer = (status, body)
    _, result = _charge(app, client_user, fake)
    assert result.state == "failed" and f"HTTP {status}" in result.info and not result.data
    if shown:
        assert shown in result.info


def test_a_read_timeout_is_an_unknown_outcome(app, client_user):
    # a server that takes the request and never answers: the charge may have been made
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    app.config["PMROBOKASSA_HTTP_TIMEOUT"] = 0.5
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/Merchant/Index.aspx"
        method = add_paymethod("pmrobokassa", {**SETTINGS, "url": url})
        parent = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
        child = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
        result = call("billcore_recurring_charge", child.id, parent=db.session.get(Payment, parent.id))
    finally:
        thread.join(2)
        for conn in accepted:
            conn.close()
        listener.close()
    assert result.state == "accepted" and result.data == {"unconfirmed": True} and "ReadTimeout" in result.info


def test_a_test_mode_child_says_is_test(app, client_user, fake):
    _charge(app, client_user, fake, test_mode=True)
    path, params = fake.requests[-1]
    assert path == "/Merchant/Recurring" and params["IsTest"] == "1"
    _charge(app, client_user, fake, test_mode=False)
    path, params = fake.requests[-1]
    assert path == "/Merchant/Recurring" and "IsTest" not in params


def test_a_child_with_receipts_signs_the_22_percent_receipt(app, client_user, fake):
    child, result = _charge(app, client_user, fake, **RECEIPTS)
    assert result.state == "accepted" and not result.data  # the fake checked the signature with the Receipt
    _, params = fake.requests[-1]
    assert json.loads(unquote(params["Receipt"]))["items"][0]["tax"] == "vat22"
    assert reload(child.id).status == "new"  # the hook only answers; the core books the answer
