"""The Robokassa sandbox (gateway emulator) through the Flask test client: the payment page and its
errors, Pay/Cancel and the browser's return, the XML web service, recurring charges and the Refund API.

Notification delivery over real HTTP is in ``test_sandbox_live.py``.
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest

from pmrobokassa import protocol
from pmrobokassa.sandbox import delivery
from pmrobokassa.sandbox.shops import find_shop
from pmrobokassa.sandbox.store import get_store
from tests.conftest import make_app

pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is")

PREFIX = "/sandbox/robokassa"
LOGIN, P1, P2, P3 = "demo", "password_1", "password_2", "password_3"
# Port 9 (discard) is closed: deliveries fail at once, so these tests never wait on a shop.
SHOP = {"login": LOGIN, "password1": P1, "password2": P2, "password3": P3, "hash_algorithm": "md5",
        "result_url": "http://127.0.0.1:9/mancgi/rkresult"}


@pytest.fixture
def sb_app(tmp_path):
    """An app with the sandbox on and one shop ``demo`` with the docs/robokassa.md §2.6 passwords."""
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'test.sqlite'}", PMROBOKASSA_SANDBOX=True,
                   PMROBOKASSA_SANDBOX_SHOPS=[dict(SHOP), dict(SHOP, login="getshop", success_method="GET",
                                                               fail_method="GET", hash_algorithm="sha256")],
                   PMROBOKASSA_SANDBOX_RETRY_DELAYS=[0], PMROBOKASSA_SANDBOX_REFUND_SECONDS=60)
    with app.app_context():
        yield app
    delivery.join_deliveries(10)


@pytest.fixture
def gw(sb_app):
    """A test client of the sandbox app."""
    return sb_app.test_client()


def init_fields(out_sum="100.00", inv_id="12", *, login=LOGIN, password=P1, algorithm="md5", shp=None,
                receipt=None, **extra):
    """A payment request as a shop sends it to Index.aspx, signed per §2.2."""
    signature = protocol.init_signature(algorithm, merchant_login=login, out_sum=out_sum, inv_id=inv_id or None,
                                        password1=password, receipt=receipt, shp=shp)
    fields = {"MerchantLogin": login, "OutSum": out_sum, "InvId": inv_id, "Description": "Account top-up",
              "SignatureValue": signature, "Culture": "en", **(shp or {})}
    if receipt:
        fields["Receipt"] = receipt
    fields.update(extra)
    return fields


def open_page(gw, **kwargs):
    """POST a payment request; returns (response, html)."""
    response = gw.post(f"{PREFIX}/Merchant/Index.aspx", data=init_fields(**kwargs))
    return response, response.get_data(as_text=True)


def token_of(html: str) -> str:
    return re.search(r'name="token" value="([0-9a-f]+)"', html).group(1)


def form_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def pay(gw, token, action="pay", fault="none", label="BankCardPSR", **extra):
    return gw.post(f"{PREFIX}/Merchant/Pay", data={"token": token, "action": action, "fault": fault,
                                                    "IncCurrLabel": label, **extra})


def paid_operation(gw, inv_id="12", out_sum="100.00", **kwargs):
    """Pay invoice ``inv_id`` in the sandbox (no notification) and return the stored operation."""
    _, html = open_page(gw, out_sum=out_sum, inv_id=inv_id, **kwargs)
    assert pay(gw, token_of(html)).status_code == 200
    return get_store().find_operations(LOGIN, inv_id)[-1]


def opstate(gw, inv_id="12", password=P2, login=LOGIN):
    signature = protocol.opstate_signature("md5", login, inv_id, password)
    response = gw.get(f"{PREFIX}/Merchant/WebService/Service.asmx/OpStateExt",
                      query_string={"MerchantLogin": login, "InvoiceID": inv_id, "Signature": signature})
    assert response.status_code == 200 and response.content_type.startswith("text/xml")
    return protocol.parse_opstate(response.data)


# --- off by default -----------------------------------------------------------------------------


def test_sandbox_is_off_unless_configured(tmp_path):
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'off.sqlite'}")
    assert app.test_client().get(f"{PREFIX}/").status_code == 404
    assert app.test_client().post(f"{PREFIX}/Merchant/Index.aspx", data=init_fields()).status_code == 404


def test_env_style_string_turns_it_on(tmp_path):
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'on.sqlite'}", PMROBOKASSA_SANDBOX="yes")
    assert app.test_client().get(f"{PREFIX}/").status_code == 200


# --- payment page and its errors (§1.3) --------------------------------------------------------


def test_valid_request_shows_the_payment_page(gw):
    response, html = open_page(gw, shp={"Shp_item": "1", "Shp_login": "Vasya"}, Description="VPS for May")
    assert response.status_code == 200
    assert 'id="rk-shop">demo<' in html
    assert "100.00" in html and "VPS for May" in html
    for group in protocol.BUILTIN_CURRENCIES:  # the payment options of GetCurrencies
        assert group.description in html
        for item in group.items:
            assert f'value="{item.label}"' in html
    assert 'name="action" value="pay"' in html and 'name="action" value="cancel"' in html
    for mode in delivery.FAULT_MODES:
        assert f'<option value="{mode}"' in html


def test_get_request_and_preselected_label_work_too(gw):
    fields = init_fields(IncCurrLabel="SBPPSR", IsTest="1")
    response = gw.get(f"{PREFIX}/Merchant/Index.aspx", query_string=fields)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'value="SBPPSR" checked' in html
    assert "IsTest=1" in html


def test_unknown_shop_is_error_26(gw):
    response, html = open_page(gw, login="nobody")
    assert response.status_code == 400 and 'data-error-code="26"' in html
    response = gw.post(f"{PREFIX}/Merchant/Index.aspx", data={"OutSum": "1.00"})
    assert 'data-error-code="26"' in response.get_data(as_text=True)


@pytest.mark.parametrize("kwargs", [
    {"password": "wrong_pass_1"},
    {"out_sum": "100.00", "SignatureValue": "0" * 32},
    {"SignatureValue": ""},
    {"OutSum": "100.0"},  # signed "100.00", sent "100.0": the literal string counts
    {"shp": {"Shp_b": "2", "Shp_a": "1"}, "Shp_a": "9"},  # a Shp value changed after signing
    {"Shp_extra": "1"},  # an Shp parameter left out of the signature
    {"password": P2},  # Password #2 instead of #1
])
def test_wrong_signature_is_error_29_with_the_reasons(gw, kwargs):
    response, html = open_page(gw, **kwargs)
    assert response.status_code == 400 and 'data-error-code="29"' in html
    assert "Shp_" in html and "IsTest=1" in html and "password #1" in html.lower()
    assert not get_store().recent_operations()


def test_error_29_hints_at_the_algorithm_actually_used(gw):
    _, html = open_page(gw, algorithm="sha256")
    assert 'data-error-code="29"' in html and "SHA256" in html and "MD5" in html


def test_shp_and_receipt_are_part_of_the_signature(gw):
    receipt = protocol.encode_receipt(protocol.build_receipt(
        items=[protocol.ReceiptItem("Hosting", Decimal("100.00"), "none")], sno="usn_income"))
    response, html = open_page(gw, receipt=receipt, shp={"Shp_login": "Vasya", "Shp_item": "1"})
    assert response.status_code == 200 and "Hosting" in html
    # The same receipt without being signed is refused.
    fields = init_fields()
    fields["Receipt"] = receipt
    assert 'data-error-code="29"' in gw.post(f"{PREFIX}/Merchant/Index.aspx", data=fields).get_data(as_text=True)


@pytest.mark.parametrize("out_sum", ["0", "0.00", "-5.00", "abc", "1,50", ""])
def test_bad_amount_is_error_31(gw, out_sum):
    response, html = open_page(gw, out_sum=out_sum) if out_sum else open_page(gw, OutSum="")
    assert response.status_code == 400 and 'data-error-code="31"' in html


def test_description_longer_than_100_characters_is_refused(gw):
    response, html = open_page(gw, Description="x" * 101)
    assert response.status_code == 400 and 'data-error-code="30"' in html
    assert open_page(gw, Description="x" * 100)[0].status_code == 200


def test_language_follows_culture(gw):
    _, html = open_page(gw, Culture="ru", login="nobody")
    assert '<html lang="ru">' in html


# --- Pay and Cancel ------------------------------------------------------------------------------


def test_pay_records_the_operation_and_returns_the_buyer_signed_with_password_1(gw):
    _, html = open_page(gw, shp={"Shp_item": "1"})
    response = pay(gw, token_of(html), label="SBPPSR", email="payer@example.com")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "data-autosubmit" in page
    assert 'action="https://billing.example.com/mancgi/rksuccess"' in page
    fields = form_fields(page)
    assert fields["OutSum"] == "100.000000" and fields["InvId"] == "12" and fields["Shp_item"] == "1"
    assert fields["SignatureValue"] == fields["SignatureValue"].upper()
    assert protocol.verify_success_params(fields, algorithm="md5", password1=P1)
    [op] = get_store().find_operations(LOGIN, "12")
    assert op.state == 100 and op.inc_curr_label == "SBPPSR" and op.payment_method == "BankCard"
    assert op.out_sum == Decimal("100.00") and op.shp == {"Shp_item": "1"} and op.email == "payer@example.com"
    assert re.fullmatch(r"[0-9A-F-]{36}-[0-9a-f]{10}", op.op_key)


def test_a_page_pays_once_even_when_pay_is_clicked_twice(gw):
    _, html = open_page(gw)
    token = token_of(html)
    assert pay(gw, token).status_code == 200
    assert pay(gw, token).status_code == 409
    assert len(get_store().find_operations(LOGIN, "12")) == 1


def test_cancel_sends_the_buyer_to_the_fail_url_unsigned(gw):
    _, html = open_page(gw, shp={"Shp_item": "1"})
    page = pay(gw, token_of(html), action="cancel").get_data(as_text=True)
    assert 'action="https://billing.example.com/mancgi/rkfail"' in page
    fields = form_fields(page)
    assert fields == {"OutSum": "100.00", "InvId": "12", "Culture": "en", "Shp_item": "1"}
    [op] = get_store().find_operations(LOGIN, "12")
    assert op.state == 10
    assert not get_store().attempts(op.id)


def test_get_method_shops_get_redirects(gw):
    fields = init_fields(login="getshop", algorithm="sha256")
    html = gw.post(f"{PREFIX}/Merchant/Index.aspx", data=fields).get_data(as_text=True)
    response = pay(gw, token_of(html))
    assert response.status_code == 302
    url = urlsplit(response.headers["Location"])
    assert url.path == "/mancgi/rksuccess"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert protocol.verify_success_params(query, algorithm="sha256", password1=P1)


def test_a_paid_invoice_is_error_40_but_test_payments_may_repeat(gw):
    paid_operation(gw)
    response, html = open_page(gw)
    assert 'data-error-code="40"' in html
    assert open_page(gw, IsTest="1")[0].status_code == 200


def test_missing_inv_id_is_assigned_by_the_gateway(gw):
    _, html = open_page(gw, inv_id="")
    fields = form_fields(pay(gw, token_of(html)).get_data(as_text=True))
    assert fields["InvId"].isdigit() and protocol.verify_success_params(fields, algorithm="md5", password1=P1)


def test_notification_fields_follow_section_3(sb_app, gw):
    op = paid_operation(gw, shp={"Shp_item": "1"}, IsTest="1")
    shop = find_shop(LOGIN)
    fields = delivery.notification_fields(shop, op)
    assert fields["OutSum"] == "100.000000" and fields["InvId"] == "12" and fields["IsTest"] == "1"
    assert "EMail" not in fields  # absent in test mode (§3)
    assert fields["IncCurrLabel"] == "BankCardPSR" and fields["PaymentMethod"] == "BankCard"
    assert Decimal(fields["Fee"]) == Decimal("3.90") and fields["Shp_item"] == "1"
    assert fields["SignatureValue"] == protocol.result_signature("md5", "100.000000", "12", P2,
                                                                 {"Shp_item": "1"}).upper()
    assert protocol.verify_result_params(fields, algorithm="md5", password2=P2)
    bad = delivery.notification_fields(shop, op, bad_signature=True)
    assert not protocol.verify_result_params(bad, algorithm="md5", password2=P2)


def test_index_says_when_a_notification_is_withheld_on_purpose(gw):
    paid_operation(gw)  # fault "none"
    assert "fault mode: none" in gw.get(f"{PREFIX}/").get_data(as_text=True)


def test_test_payments_use_the_test_password_pair(sb_app, gw):
    sb_app.config["PMROBOKASSA_SANDBOX_SHOPS"] = [dict(SHOP, test_password1="test_pass_1", test_password2="test_pass_2")]
    assert open_page(gw, password="test_pass_1", IsTest="1")[0].status_code == 200
    # Live passwords with IsTest=1, or test passwords without it: error 29 (§1.3).
    assert 'data-error-code="29"' in open_page(gw, IsTest="1")[1]
    assert 'data-error-code="29"' in open_page(gw, password="test_pass_1")[1]
    _, html = open_page(gw, password="test_pass_1", IsTest="1")
    fields = form_fields(pay(gw, token_of(html)).get_data(as_text=True))
    assert fields["IsTest"] == "1"
    assert protocol.verify_success_params(fields, algorithm="md5", password1="test_pass_1")
    [op] = get_store().find_operations(LOGIN, "12")
    note = delivery.notification_fields(find_shop(LOGIN), op)
    assert protocol.verify_result_params(note, algorithm="md5", password2="test_pass_2")
    assert opstate(gw, password="test_pass_2").is_paid


def test_failed_deliveries_are_recorded_with_their_answer(sb_app, gw):
    _, html = open_page(gw)
    pay(gw, token_of(html), fault="normal")
    assert delivery.join_deliveries(10)
    [op] = get_store().find_operations(LOGIN, "12")
    [attempt] = get_store().attempts(op.id)  # the schedule is [0]: one attempt
    assert attempt["status"] is None and "Connection" in attempt["answer"] and not attempt["accepted"]
    assert "ConnectionError" in gw.get(f"{PREFIX}/").get_data(as_text=True)


# --- XML web service (§6) ------------------------------------------------------------------------


def test_opstateext_codes(gw):
    assert opstate(gw).result_code == 3  # nothing paid yet
    op = paid_operation(gw, shp={"Shp_item": "1"})
    state = opstate(gw)
    assert state.result_code == 0 and state.is_paid and state.op_key == op.op_key
    assert state.out_sum == Decimal("100") and state.inc_curr_label == "BankCardPSR"
    assert state.payment_method == "BankCard" and state.user_fields == {"Shp_item": "1"}
    assert opstate(gw, password=P1).result_code == 1
    assert opstate(gw, login="nobody").result_code == 2


def test_opstateext_reports_a_cancelled_operation(gw):
    _, html = open_page(gw, inv_id="13")
    pay(gw, token_of(html), action="cancel")
    state = opstate(gw, "13")
    assert state.result_code == 0 and state.state_code == 10


def test_getcurrencies_parses_back(gw):
    response = gw.post(f"{PREFIX}/Merchant/WebService/Service.asmx/GetCurrencies",
                       data={"MerchantLogin": LOGIN, "Language": "en"})
    assert protocol.parse_currencies(response.data) == list(protocol.BUILTIN_CURRENCIES)
    response = gw.get(f"{PREFIX}/Merchant/WebService/Service.asmx/GetCurrencies?MerchantLogin=nobody")
    with pytest.raises(protocol.GatewayError) as info:
        protocol.parse_currencies(response.data)
    assert info.value.code == 2


# --- Refund API (§8) ----------------------------------------------------------------------------


def refund(gw, token, **kwargs):
    """POST Refund/Create as the real service takes it: the JWT as a JSON string, application/json."""
    response = gw.post(f"{PREFIX}/RefundService/Refund/Create", data=json.dumps(token),
                       content_type="application/json", **kwargs)
    return response, protocol.parse_refund_create_answer(response.data)


def state_of(gw, request_id):
    response = gw.get(f"{PREFIX}/RefundService/Refund/GetState", query_string={"id": request_id})
    return protocol.parse_refund_state_answer(response.data)


def test_refund_partial_then_rest_then_nothing_left(gw):
    op = paid_operation(gw)
    _, answer = refund(gw, protocol.make_refund_jwt(P3, op_key=op.op_key, refund_sum=Decimal("30.00")))
    assert answer.success and answer.request_id
    first = state_of(gw, answer.request_id)
    assert (first.label, first.amount) == ("processing", Decimal("30"))
    assert state_of(gw, answer.request_id).label == "finished"
    # 70.01 is more than what is left.
    _, answer2 = refund(gw, protocol.make_refund_jwt(P3, op_key=op.op_key, refund_sum=Decimal("70.01"),
                                                     algorithm="HS512"))
    assert not answer2.success and answer2.message == "NotEnoughOperationFunds"
    _, rest = refund(gw, protocol.make_refund_jwt(P3, op_key=op.op_key))  # no RefundSum: everything left
    assert rest.success and state_of(gw, rest.request_id).amount == Decimal("70")
    _, none_left = refund(gw, protocol.make_refund_jwt(P3, op_key=op.op_key, refund_sum=Decimal("0.01")))
    assert not none_left.success


def test_refund_jwt_must_be_signed_with_password_3(gw):
    op = paid_operation(gw)
    response, answer = refund(gw, protocol.make_refund_jwt(P2, op_key=op.op_key, refund_sum=Decimal("1.00")))
    assert response.status_code == 401 and not answer.success and answer.message == "InvalidToken"
    response, answer = refund(gw, "not-a-jwt")
    assert response.status_code == 400 and not answer.success
    token = protocol.make_refund_jwt(P3, op_key=op.op_key, refund_sum=Decimal("1.00"))
    # Only the form Robokassa's official plugin sends is taken: a raw token, or a JSON string under
    # another content type, is refused before anything else is looked at.
    for body, content_type in ((token, "application/jwt"), (token, "text/plain"),
                               (json.dumps(token), "text/plain"), (json.dumps({"token": token}), "application/json")):
        response = gw.post(f"{PREFIX}/RefundService/Refund/Create", data=body, content_type=content_type)
        answer = protocol.parse_refund_create_answer(response.data)
        assert response.status_code == 400 and not answer.success and "JSON string" in answer.message
    assert refund(gw, token)[1].success
    assert not get_store().refunds(op.id)[1:]  # only the valid one was registered


def _items(cost: str, tax: str = "vat22", **extra) -> list[protocol.RefundItem]:
    return [protocol.RefundItem(name="Hosting", cost=Decimal(cost), tax=tax, payment_method="full_payment",
                                payment_object="service", **extra)]


def test_refund_receipt_lines_must_add_up_and_use_known_rates(gw):
    op = paid_operation(gw)
    jwt = protocol.make_refund_jwt
    response, answer = refund(gw, jwt(P3, op_key=op.op_key, refund_sum=Decimal("30.00"),
                                      invoice_items=_items("29.99")))
    assert response.status_code == 400 and answer.message == "InvoiceItemsSumMismatch"
    # a full refund's receipt must cover what is left of the operation
    response, answer = refund(gw, jwt(P3, op_key=op.op_key, invoice_items=_items("30.00")))
    assert response.status_code == 400 and answer.message == "InvoiceItemsSumMismatch"
    for tax in ("vat22", "vat122", "vat20"):  # 22 % since 2026; 20 % still taken for older operations
        _, answer = refund(gw, jwt(P3, op_key=op.op_key, refund_sum=Decimal("10.00"), invoice_items=_items("10.00", tax)))
        assert answer.success, tax
    _, answer = refund(gw, jwt(P3, op_key=op.op_key, invoice_items=_items("70.00")))
    assert answer.success  # the rest, 70.00, with its receipt
    assert [r["amount"] for r in get_store().refunds(op.id)] == ["10.00", "10.00", "10.00", "70.00"]


def test_refund_of_unknown_or_unpaid_operation_is_refused(gw):
    _, answer = refund(gw, protocol.make_refund_jwt(P3, op_key="NOPE-1"))
    assert not answer.success and answer.message == "OperationNotFound"
    _, html = open_page(gw, inv_id="14")
    pay(gw, token_of(html), action="cancel")
    op = get_store().find_operations(LOGIN, "14")[0]
    _, answer = refund(gw, protocol.make_refund_jwt(P3, op_key=op.op_key))
    assert not answer.success and answer.message == "OperationNotPaid"


def test_getstate_of_unknown_request(gw):
    state = state_of(gw, "00000000-0000-0000-0000-000000000000")
    assert state.request_id is None and "invalid" in state.message


# --- recurring (§7.1) ----------------------------------------------------------------------------


def recurring(gw, inv_id="20", parent="12", out_sum="50.00", password=P1, login=LOGIN, receipt=None, **extra):
    signature = protocol.recurring_signature("md5", merchant_login=login, out_sum=out_sum, inv_id=inv_id,
                                             password1=password, receipt=receipt)
    data = {"MerchantLogin": login, "InvoiceID": inv_id, "PreviousInvoiceID": parent, "OutSum": out_sum,
            "Description": "Renewal", "SignatureValue": signature, **extra}
    if receipt:
        data["Receipt"] = receipt
    return gw.post(f"{PREFIX}/Merchant/Recurring", data=data)


def test_recurring_child_charge(sb_app, gw):
    assert recurring(gw).status_code == 400  # no paid parent yet
    paid_operation(gw)
    assert recurring(gw, password="wrong_pass_1").status_code == 400
    response = recurring(gw)
    assert response.status_code == 200 and response.get_data(as_text=True) == "OK20"
    [child] = get_store().find_operations(LOGIN, "20")
    assert child.state == 100 and child.parent_inv_id == "12" and child.out_sum == Decimal("50.00")
    assert opstate(gw, "20").is_paid
    sb_app.config["PMROBOKASSA_SANDBOX_RECURRING"] = "refuse"
    assert recurring(gw, inv_id="21").get_data(as_text=True) == "OK21"  # created, then refused
    assert opstate(gw, "21").state_code == 10
    sb_app.config["PMROBOKASSA_SANDBOX_RECURRING"] = "odd-answer"
    response = recurring(gw, inv_id="22")
    assert response.status_code == 200 and response.mimetype == "text/html" and "OK22" not in response.get_data(as_text=True)
    assert opstate(gw, "22").is_paid  # charged all the same


def _receipt(tax: str) -> str:
    return protocol.encode_receipt(protocol.build_receipt(
        items=[protocol.ReceiptItem("Hosting", Decimal("50.00"), tax, payment_method="full_payment",
                                    payment_object="service")], sno="osn"))


@pytest.mark.parametrize("tax", ["vat22", "vat122"])
def test_the_22_percent_rates_are_taken_in_a_signed_receipt(sb_app, gw, tax):
    response, html = open_page(gw, out_sum="50.00", receipt=_receipt(tax))
    assert response.status_code == 200 and "data-error-code" not in html
    paid_operation(gw)
    response = recurring(gw, receipt=_receipt(tax))
    assert response.get_data(as_text=True) == "OK20"


def test_an_unknown_vat_rate_is_refused(sb_app, gw):
    bad = protocol.encode_receipt('{"items":[{"name":"Hosting","quantity":1,"sum":50,"tax":"vat18"}]}')
    response, html = open_page(gw, out_sum="50.00", receipt=bad)
    assert response.status_code == 400 and 'data-error-code="30"' in html and "vat18" in html
    paid_operation(gw)
    assert recurring(gw, receipt=bad).status_code == 400


def test_a_test_mode_child_must_say_is_test(tmp_path):
    shop = dict(SHOP, test_password1="test_pass_1", test_password2="test_pass_2")
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'test.sqlite'}", PMROBOKASSA_SANDBOX=True,
                   PMROBOKASSA_SANDBOX_SHOPS=[shop], PMROBOKASSA_SANDBOX_RETRY_DELAYS=[0])
    with app.app_context():
        gw = app.test_client()
        _, html = open_page(gw, password="test_pass_1", IsTest="1")  # a test parent, paid
        back = pay(gw, token_of(html))
        assert back.status_code == 200
        # signed with the test pair but sent as live: error 29, as Robokassa answers it
        response = recurring(gw, password="test_pass_1")
        assert response.status_code == 400 and "(29)" in response.get_data(as_text=True)
        response = recurring(gw, password="test_pass_1", IsTest="1")
        assert response.get_data(as_text=True) == "OK20"
        [child] = get_store().find_operations(LOGIN, "20")
        assert child.is_test and child.state == 100
    delivery.join_deliveries(10)


# --- the sandbox's pages --------------------------------------------------------------------------


def test_index_lists_operations_and_csrf_does_not_apply(tmp_path):
    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'csrf.sqlite'}", PMROBOKASSA_SANDBOX=True,
                   WTF_CSRF_ENABLED=True, PMROBOKASSA_SANDBOX_SHOPS=[SHOP], PMROBOKASSA_SANDBOX_RETRY_DELAYS=[0])
    client = app.test_client()
    html = client.post(f"{PREFIX}/Merchant/Index.aspx", data=init_fields()).get_data(as_text=True)
    assert pay(client, token_of(html)).status_code == 200  # no csrf_token: the gateway is exempt
    with app.app_context():
        [op] = get_store().find_operations(LOGIN, "12")
    page = client.get(f"{PREFIX}/").get_data(as_text=True)
    assert f'id="rk-op-{op.id}"' in page and op.op_key in page and "demo" in page
    assert client.post(f"{PREFIX}/operations/{op.id}/resend").status_code == 302
    delivery.join_deliveries(10)
    with app.app_context():
        assert [a["chain"] for a in get_store().attempts(op.id)] == ["manual"]


# --- the demo's payment method ------------------------------------------------------------------


def test_demo_method_points_at_the_sandbox_and_is_created_once(sb_app):
    from billcore.models import PaymentMethod
    from billcore.paymethods import full_settings
    from billcore.plugins import get_registry
    from pmrobokassa.demo import create_demo_method
    from pmrobokassa.sandbox.shops import DEFAULT_SHOP

    sb_app.config["BASE_URL"] = "http://127.0.0.1:5000"
    first = create_demo_method(sb_app)
    sb_app.config["BASE_URL"] = "http://127.0.0.1:8080"
    second = create_demo_method(sb_app)
    assert first.id == second.id and PaymentMethod.query.filter_by(module="pmrobokassa").count() == 1
    method = PaymentMethod.query.one()
    settings = full_settings(method)
    assert method.active and method.allow_refund and method.currency == "RUB"
    assert settings["url"] == "http://127.0.0.1:8080/sandbox/robokassa/Merchant/Index.aspx"
    assert settings["test_mode"] is True and settings["identifier"] == DEFAULT_SHOP["login"]
    for name in ("password1", "password2", "password3"):
        assert settings[name] == DEFAULT_SHOP[name] and name not in (method.settings or {})
    # The module's own validation accepts it, so the admin can edit and save it unchanged.
    assert get_registry().call("pmrobokassa", "billcore_validate_integration", settings=settings,
                               currency="RUB") == {}


def test_demo_method_stays_disabled_without_the_sandbox(tmp_path):
    """Its passwords are public: with the sandbox off nobody can pay through it."""
    from billcore.db import db
    from billcore.models import PaymentMethod
    from pmrobokassa.demo import create_demo_method

    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'off.sqlite'}", PMROBOKASSA_SANDBOX=False)
    with app.app_context():
        method = create_demo_method(app)
        assert method is not None and not db.session.get(PaymentMethod, method.id).active


# --- the store under several workers ------------------------------------------------------------


def test_store_is_shared_by_workers_and_a_checkout_is_taken_once(tmp_path):
    import threading

    from pmrobokassa.sandbox.store import SandboxStore

    path = tmp_path / "shared.sqlite"
    worker_a, worker_b = SandboxStore(path), SandboxStore(path)  # two processes' views of one file
    token = worker_a.add_checkout("demo", {"out_sum": "1.00"})
    results = []
    threads = [threading.Thread(target=lambda: results.append(worker_b.take_checkout(token))) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r is not None for r in results) == 1
    op = worker_b.add_operation(shop="demo", inv_id="7", state=100, out_sum=Decimal("10.00"), fee=Decimal("0.39"),
                                inc_curr_label="BankCardPSR", payment_method="BankCard", email="", description="",
                                is_test=True, shp={}, culture="", fault="normal")
    assert worker_a.operation_by_key(op.op_key) == op
    # Concurrent refunds never exceed the operation's amount.
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(worker_a.add_refund(op, Decimal("3.00"), 0)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(request_id is not None for request_id, _ in answers) == 3


def test_store_keeps_a_connection_per_thread_and_rolls_back_what_a_failed_block_left_open(tmp_path, monkeypatch):
    import threading

    from pmrobokassa.sandbox.store import SandboxStore

    store = SandboxStore(tmp_path / "kept.sqlite")
    with store.connect() as first:
        with store.connect() as nested:
            assert nested is first  # a nested block shares the thread's connection (and its transaction)
    with store.connect() as again:
        assert again is first  # kept between calls
    others = []
    thread = threading.Thread(target=lambda: others.append(store.find_operations("demo", "1") == [] and
                                                           store._local.conn))
    thread.start()
    thread.join()
    assert others and others[0] is not first  # each thread has its own
    # a block that fails between BEGIN and COMMIT leaves nothing written and no transaction open
    with pytest.raises(RuntimeError):
        with store.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO checkouts (token, shop, params, created_at) VALUES ('t', 'demo', '{}', 'now')")
            raise RuntimeError("the block fails before its COMMIT")
    assert not first.in_transaction
    assert store.get_checkout("t") is None
    # and another connection can take the write lock at once (nothing holds it)
    assert SandboxStore(tmp_path / "kept.sqlite").add_checkout("demo", {"out_sum": "1.00"})
    with store.connect():
        with pytest.raises(RuntimeError):
            store.close()  # not while this thread is using it
    store.close()
    with store.connect() as reopened:
        assert reopened is not first
    # a process forked from this one opens its own (SQLite forbids using a connection across a fork)
    import os
    monkeypatch.setattr(os, "getpid", lambda: -1)
    with store.connect() as in_the_child:
        assert in_the_child is not reopened
