"""The sandbox gateway's pages and web services (see the package docstring)."""
from __future__ import annotations

import base64
import binascii
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from contextlib import nullcontext
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

from flask import (Blueprint, Response, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_babel import force_locale
from flask_babel import gettext as _

from .. import protocol
from . import SANDBOX_PREFIX, latency
from .delivery import FAULT_MODES, resend, settings_from_config, six_decimals, start_delivery
from .shops import Shop, configured_shops, find_shop
from .store import Operation, get_store, now_iso

# The templates live in the module's own folder (templates/pmrobokassa/sandbox/), which the wheel ships.
bp = Blueprint("rksandbox", __name__, url_prefix=SANDBOX_PREFIX,
               template_folder=str(Path(__file__).resolve().parent.parent / "templates"))

MAX_DESCRIPTION = 100
MAX_INV_ID = 9223372036854775807
_CENT = Decimal("0.01")
XML_TYPE = "text/xml; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"


# The web services the latency knob slows down (view function -> endpoint name of latency.ENDPOINTS).
_SLOWED = {"op_state_ext": "OpStateExt", "get_currencies": "GetCurrencies", "recurring": "Recurring",
           "refund_create": "Refund/Create", "refund_get_state": "Refund/GetState"}


@bp.before_request
def _latency():
    """Answer as slowly as ``PMROBOKASSA_SANDBOX_LATENCY`` says (see :mod:`.latency`)."""
    name = _SLOWED.get((request.endpoint or "").rpartition(".")[2])
    setting = current_app.config.get("PMROBOKASSA_SANDBOX_LATENCY")
    if name is None or not setting:
        return None
    knob = latency.for_endpoint(setting, name)
    if knob is not None and knob.wait():
        return Response("Gateway Timeout", status=504, content_type="text/plain; charset=utf-8")
    return None


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _params() -> dict[str, str]:
    """The request's fields from the query string and the form (form wins), first value of each."""
    values = request.args.to_dict(flat=True)
    values.update(request.form.to_dict(flat=True))
    return values


def _culture_context(culture: str | None):
    """Render in the language the shop asked for (``Culture``), like the real payment page."""
    if culture in current_app.config.get("LANGUAGES", ["en", "ru"]):
        return force_locale(culture)
    return nullcontext()


def _error_page(code: int, title: str, reasons: list[str] | None = None, hints: list[str] | None = None,
                status: int = 400) -> tuple[str, int]:
    return render_template("pmrobokassa/sandbox/error.html", code=code, title=title, reasons=reasons or [],
                           hints=hints or []), status


def _fault_default() -> str:
    mode = str(current_app.config.get("PMROBOKASSA_SANDBOX_FAULT") or "normal")
    return mode if mode in FAULT_MODES else "normal"


def _fault_labels() -> list[tuple[str, str]]:
    return [
        ("normal", _("Normal: notify the shop, retry until it answers OK")),
        ("twice", _("Duplicate: notify twice")),
        ("parallel", _("Parallel: several identical notifications at the same moment")),
        ("late", _("Late: notify only after the buyer is back at the shop")),
        ("bad_signature", _("Bad signature: one notification with a wrong signature, then nothing")),
        ("none", _("Lost: never notify (status polling must settle the payment)")),
    ]


def _currency_groups() -> tuple[protocol.CurrencyGroup, ...]:
    return protocol.BUILTIN_CURRENCIES


def _payment_method_of(label: str) -> str:
    """The ``PaymentMethod`` group (``BankCard``, ``EMoney``...) of an ``IncCurrLabel``."""
    for group in _currency_groups():
        for item in group.items:
            if item.label == label:
                return group.code
    return "BankCard"


def _known_label(label: str | None) -> bool:
    return any(item.label == label for group in _currency_groups() for item in group.items)


def _fee(amount: Decimal) -> Decimal:
    percent = Decimal(str(current_app.config.get("PMROBOKASSA_SANDBOX_FEE_PERCENT", "3.9")))
    return (amount * percent / 100).quantize(_CENT)


def _send_browser(url: str, method: str, fields: Mapping[str, str]) -> Response | str:
    """Send the buyer's browser to the shop: a redirect (GET) or an auto-submitted form (POST)."""
    if method == "GET":
        separator = "&" if "?" in url else "?"
        return redirect(f"{url}{separator}{urlencode(list(fields.items()))}")
    return render_template("pmrobokassa/sandbox/redirect.html", url=url, fields=list(fields.items()))


def _plain_number(text: str, maximum: int) -> bool:
    """True for ASCII digits only (``²`` and other Unicode digits are refused) from 1 to ``maximum``."""
    return text.isascii() and text.isdigit() and len(text) <= len(str(maximum)) and 0 < int(text) <= maximum


def _receipt_items(data: Any) -> list[dict[str, Any]] | None:
    """The items of a decoded ``Receipt``: a JSON object whose ``items`` (if any) are a list of objects;
    None for any other shape (the payment page answers error 30 then)."""
    if not isinstance(data, dict):
        return None
    items = data.get("items") or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        return None
    return items


def _receipt_tax_problem(items: list[dict[str, Any]], key: str = "tax") -> str | None:
    """Why the gateway would refuse these receipt lines' VAT rates, or None: every line needs one of
    the rates the fiscal service knows (22 % and 22/122 since 2026, the older ones still accepted)."""
    for item in items:
        tax = item.get(key)
        if tax not in protocol.TAX_CHOICES:
            return _("Receipt line %(name)s has the VAT rate %(tax)s; allowed: %(choices)s.",
                     name=str(item.get("name") or item.get("Name") or "—")[:60], tax=str(tax)[:20],
                     choices=", ".join(protocol.TAX_CHOICES))
    return None


def _signature_diagnosis(shop: Shop, received: str, build) -> list[str]:
    """Sandbox-only hints about a wrong signature (the real gateway says less)."""
    hints = []
    for algorithm in protocol.HASH_ALGORITHMS:
        if algorithm == shop.hash_algorithm:
            continue
        try:
            candidate = build(algorithm)
        except ValueError:  # the request cannot be signed at all (bad *Url2 pair...): no hint
            continue
        if protocol.signatures_match(candidate, received):
            hints.append(_("The signature was computed with %(used)s, but this shop is set to %(expected)s.",
                           used=algorithm.upper(), expected=shop.hash_algorithm.upper()))
    return hints


# ------------------------------------------------------------------------------------------------
# payment page
# ------------------------------------------------------------------------------------------------


@bp.route("/Merchant/Index.aspx", methods=["GET", "POST"])
def payment_page():
    """``Merchant/Index.aspx``: check the payment request (docs/robokassa.md §1) and show the payment page."""
    params = _params()
    with _culture_context(params.get("Culture")):
        return _payment_page(params)


def _payment_page(params: dict[str, str]):
    login = params.get("MerchantLogin") or params.get("MrchLogin") or ""
    shop = find_shop(login)
    if shop is None:
        return _error_page(26, _("Shop not found"), [_("There is no shop with the identifier (MerchantLogin) %(login)s.",
                                                         login=login or "—")])
    is_test = params.get("IsTest", "").strip().lower() in ("1", "true")
    out_sum = params.get("OutSum", "")
    try:
        amount = protocol.parse_amount(out_sum, "OutSum")
    except protocol.MalformedField:
        amount = None
    if amount is None or amount <= 0:
        return _error_page(31, _("Wrong amount"), [_("OutSum must be a positive amount with a dot, got %(value)s.",
                                                     value=out_sum or "—")])
    inv_id = params.get("InvId") or params.get("InvoiceID") or ""
    if inv_id and not _plain_number(inv_id, MAX_INV_ID):
        return _error_page(30, _("Wrong invoice parameter"), [_("InvId must be a whole number from 1 to %(max)s.",
                                                                max=MAX_INV_ID)])
    description = params.get("Description") or params.get("Desc") or params.get("InvDesc") or ""
    if len(description) > MAX_DESCRIPTION:
        return _error_page(30, _("Wrong invoice parameter"),
                           [_("Description is %(length)s characters long; at most %(max)s are allowed.",
                              length=len(description), max=MAX_DESCRIPTION)])
    receipt = params.get("Receipt") or None
    receipt_items: list[dict[str, Any]] = []
    if receipt:
        try:
            data = json.loads(unquote(receipt))
        except (ValueError, RecursionError):
            return _error_page(30, _("Wrong invoice parameter"), [_("Receipt is not valid URL-encoded JSON.")])
        receipt_items = _receipt_items(data)
        if receipt_items is None:
            return _error_page(30, _("Wrong invoice parameter"),
                               [_("Receipt must be a JSON object whose items are a list of objects.")])
        problem = _receipt_tax_problem(receipt_items)
        if problem:
            return _error_page(30, _("Wrong invoice parameter"), [problem])
    shp = protocol.extract_shp(params)

    def build(algorithm: str) -> str:
        return protocol.init_signature(
            algorithm, merchant_login=login, out_sum=out_sum, inv_id=inv_id or None,
            password1=shop.pass1(is_test), out_sum_currency=params.get("OutSumCurrency") or None,
            user_ip=params.get("UserIp") or None, receipt=receipt,
            step_by_step=params.get("StepByStep", "").lower() == "true",
            result_url2=params.get("ResultUrl2") or None, success_url2=params.get("SuccessUrl2") or None,
            success_url2_method=params.get("SuccessUrl2Method") or None,
            fail_url2=params.get("FailUrl2") or None, fail_url2_method=params.get("FailUrl2Method") or None,
            token=params.get("Token") or None, shp=shp)

    received = params.get("SignatureValue", "")
    try:
        valid = protocol.signatures_match(build(shop.hash_algorithm), received)
    except ValueError:
        valid = False
    if not valid:
        reasons = [_("the shop identifier (MerchantLogin) is wrong;"),
                   _("password #1 is wrong;"),
                   _("Shp_ parameters are missing from the signed string or not in alphabetical order;"),
                   _("live passwords were used with IsTest=1, or test passwords without it.")]
        hints = _signature_diagnosis(shop, received, build) if received else []
        return _error_page(29, _("Wrong SignatureValue"), reasons, hints)
    if inv_id and not is_test and any(op.state == protocol.STATE_PAID
                                      for op in get_store().find_operations(shop.login, inv_id)):
        return _error_page(40, _("Invoice already paid"), [_("Invoice %(inv)s has already been paid.", inv=inv_id)])

    label = params.get("IncCurrLabel") or ""
    checkout = {"out_sum": out_sum, "inv_id": inv_id, "description": description,
                "email": params.get("Email") or "", "inc_curr_label": label, "is_test": is_test, "shp": shp,
                "culture": params.get("Culture") or "", "recurring": params.get("Recurring", "").lower() == "true"}
    token = get_store().add_checkout(shop.login, checkout)
    return render_template("pmrobokassa/sandbox/pay.html", shop=shop, amount=amount, checkout=checkout, token=token,
                           groups=_currency_groups(), selected=label if _known_label(label) else "BankCardPSR",
                           faults=_fault_labels(), fault=_fault_default(), receipt_items=receipt_items)


@bp.route("/Merchant/Pay", methods=["POST"])
def pay():
    """The payment page's Pay / Cancel: record the operation, notify the shop, send the buyer back."""
    store = get_store()
    token = request.form.get("token", "")
    pending = store.get_checkout(token)
    culture = pending[1].get("culture") if pending else None
    with _culture_context(culture):
        taken = store.take_checkout(token)
        if taken is None:
            return _error_page(41, _("This payment page has expired or was already used."), status=409)
        login, checkout = taken
        shop = find_shop(login)
        if shop is None:
            return _error_page(26, _("Shop not found"))
        inv_id = checkout["inv_id"] if checkout["inv_id"] not in ("", "0") else store.next_inv_id(shop.login)
        amount = protocol.parse_amount(checkout["out_sum"], "OutSum")
        label = request.form.get("IncCurrLabel") or checkout["inc_curr_label"] or "BankCardPSR"
        if not _known_label(label):
            label = "BankCardPSR"
        fault = request.form.get("fault") or _fault_default()
        if fault not in FAULT_MODES:
            fault = "normal"
        cancelled = request.form.get("action") == "cancel"
        op = store.add_operation(
            shop=shop.login, inv_id=inv_id, state=protocol.STATE_CANCELLED if cancelled else protocol.STATE_PAID,
            out_sum=amount, fee=Decimal("0.00") if cancelled else _fee(amount), inc_curr_label=label,
            payment_method=_payment_method_of(label), email=request.form.get("email") or checkout["email"],
            description=checkout["description"], is_test=bool(checkout["is_test"]), shp=checkout["shp"],
            culture=checkout["culture"], fault=fault)
        back = {"OutSum": checkout["out_sum"], "InvId": inv_id}
        if cancelled:
            # FailURL carries no signature (docs/robokassa.md §4.2).
            if checkout["culture"]:
                back["Culture"] = checkout["culture"]
            back.update(checkout["shp"])
            return _send_browser(shop.fail_url, shop.fail_method, back)
        start_delivery(store, shop, op, fault, settings_from_config())
        out_sum = six_decimals(amount)
        back = {"OutSum": out_sum, "InvId": inv_id,
                "SignatureValue": protocol.success_signature(shop.hash_algorithm, out_sum, inv_id,
                                                             shop.pass1(op.is_test), op.shp).upper()}
        if checkout["culture"]:
            back["Culture"] = checkout["culture"]
        if op.is_test:
            back["IsTest"] = "1"
        back.update(op.shp)
        return _send_browser(shop.success_url, shop.success_method, back)


# ------------------------------------------------------------------------------------------------
# XML web service (§6)
# ------------------------------------------------------------------------------------------------


def _xml(text: str, status: int = 200) -> Response:
    return Response(text, status=status, content_type=XML_TYPE)


@bp.route("/Merchant/WebService/Service.asmx/OpStateExt", methods=["GET", "POST"])
def op_state_ext():
    """``OpStateExt``: the state of the shop's operation with ``InvoiceID`` (§6.1), signed with Password #2."""
    params = _params()
    shop = find_shop(params.get("MerchantLogin"))
    if shop is None:
        return _xml(protocol.build_opstate_xml(protocol.OpState(protocol.RESULT_SHOP_NOT_FOUND,
                                                                "Shop not found or not active")))
    inv_id = params.get("InvoiceID") or params.get("InvId") or ""
    received = params.get("Signature") or params.get("SignatureValue") or ""
    valid = any(
        protocol.signatures_match(protocol.opstate_signature(shop.hash_algorithm, shop.login, inv_id, password),
                                  received)
        for password in {shop.pass2(False), shop.pass2(True)})
    if not inv_id or not valid:
        return _xml(protocol.build_opstate_xml(protocol.OpState(protocol.RESULT_BAD_SIGNATURE, "Invalid signature")))
    operations = get_store().find_operations(shop.login, inv_id)
    if not operations:
        return _xml(protocol.build_opstate_xml(protocol.OpState(protocol.RESULT_NO_OPERATION,
                                                                "No operation with this InvoiceID")))
    # A paid operation wins over a later cancelled attempt of the same invoice.
    op = next((o for o in reversed(operations) if o.state == protocol.STATE_PAID), operations[-1])
    state = protocol.OpState(
        result_code=protocol.RESULT_OK, state_code=op.state, state_date=op.state_at, request_date=now_iso(),
        op_key=op.op_key, out_sum=op.out_sum, inc_sum=op.out_sum, inc_curr_label=op.inc_curr_label,
        payment_method=op.payment_method, user_fields=dict(op.shp))
    return _xml(protocol.build_opstate_xml(state))


@bp.route("/Merchant/WebService/Service.asmx/GetCurrencies", methods=["GET", "POST"])
def get_currencies():
    """``GetCurrencies``: the payment options of the shop (§6.2); unsigned."""
    params = _params()
    if find_shop(params.get("MerchantLogin")) is None:
        root = ET.Element("CurrenciesList", {"xmlns": protocol.AUTH_XML_NAMESPACE})
        result = ET.SubElement(root, "Result")
        ET.SubElement(result, "Code").text = str(protocol.RESULT_SHOP_NOT_FOUND)
        ET.SubElement(result, "Description").text = "Shop not found or not active"
        return _xml('<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode"))
    return _xml(protocol.build_currencies_xml(_currency_groups()))


# ------------------------------------------------------------------------------------------------
# recurring (§7.1)
# ------------------------------------------------------------------------------------------------


def _text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, content_type="text/plain; charset=utf-8")


# What PMROBOKASSA_SANDBOX_RECURRING may say: "refuse" (the bank refuses the charge, state 10) or
# "odd-answer" (the charge is made, but the answer is an HTML page with 200 instead of OK<InvoiceID>, as a
# proxy or an outage page would give: the shop must not take it for a refusal).
RECURRING_MODES = ("", "refuse", "odd-answer")


def _recurring_mode() -> str:
    mode = str(current_app.config.get("PMROBOKASSA_SANDBOX_RECURRING") or "").lower()
    return mode if mode in RECURRING_MODES else ""


@bp.route("/Merchant/Recurring", methods=["POST"])
def recurring():
    """A child charge against a paid parent: answers ``OK<InvoiceID>`` ("created", not "paid") and later
    notifies the ResultURL. With ``IsTest=1`` it is checked with the test pair and charges a test parent,
    without it with the live pair, like every other request (so a test-mode child sent without ``IsTest``
    gets error 29). ``PMROBOKASSA_SANDBOX_RECURRING`` chooses a fault (:data:`RECURRING_MODES`)."""
    params = _params()
    shop = find_shop(params.get("MerchantLogin"))
    if shop is None:
        return _text("ERROR: shop not found (26)", 400)
    is_test = params.get("IsTest", "").strip().lower() in ("1", "true")
    inv_id, parent_id, out_sum = params.get("InvoiceID", ""), params.get("PreviousInvoiceID", ""), params.get("OutSum", "")
    if not _plain_number(inv_id, MAX_INV_ID) or not parent_id:
        return _text("ERROR: bad recurring parameters (35)", 400)
    receipt = params.get("Receipt") or None
    if receipt:
        try:
            items = _receipt_items(json.loads(unquote(receipt)))
        except (ValueError, RecursionError):
            items = None
        if items is None or _receipt_tax_problem(items):
            return _text("ERROR: bad receipt (30)", 400)
    try:
        amount = protocol.parse_amount(out_sum, "OutSum")
        expected = protocol.recurring_signature(shop.hash_algorithm, merchant_login=shop.login, out_sum=out_sum,
                                                inv_id=inv_id, password1=shop.pass1(is_test), receipt=receipt)
    except ValueError:
        return _text("ERROR: bad amount (31)", 400)
    if amount <= 0:
        return _text("ERROR: bad amount (31)", 400)
    if not protocol.signatures_match(expected, params.get("SignatureValue", "")):
        return _text("ERROR: wrong signature (29)", 400)
    store = get_store()
    parent = next((o for o in store.find_operations(shop.login, parent_id)
                   if o.state == protocol.STATE_PAID and o.is_test == is_test), None)
    if parent is None:
        return _text("ERROR: no paid parent operation (35)", 400)
    mode = _recurring_mode()
    refused = mode == "refuse"
    op = store.add_operation(
        shop=shop.login, inv_id=inv_id, state=protocol.STATE_CANCELLED if refused else protocol.STATE_PAID,
        out_sum=amount, fee=_fee(amount), inc_curr_label=parent.inc_curr_label,
        payment_method=parent.payment_method, email=parent.email, description=params.get("Description", ""),
        is_test=is_test, shp=protocol.extract_shp(params), culture=parent.culture,
        fault="none" if refused else _fault_default(), parent_inv_id=parent_id)
    if not refused:
        start_delivery(store, shop, op, op.fault, settings_from_config())
    if mode == "odd-answer":
        return Response("<html><body>Service temporarily unavailable</body></html>", status=200,
                        content_type="text/html; charset=utf-8")
    return _text(protocol.result_answer(inv_id))


# ------------------------------------------------------------------------------------------------
# Refund API (§8)
# ------------------------------------------------------------------------------------------------


def _json(body: str, status: int = 200) -> Response:
    return Response(body, status=status, content_type=JSON_TYPE)


def _refund_failure(message: str, status: int = 200) -> Response:
    return _json(protocol.build_refund_create_answer(False, message=message), status)


def _unverified_op_key(token: str) -> str | None:
    """The ``OpKey`` claimed by a JWT before checking it: it tells which shop's Password #3 verifies it."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    value = payload.get("OpKey") if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None


MAX_REFUND_BODY = 64 * 1024


def _refund_token() -> str | None:
    """The JWT of a Refund/Create request, or None when the request is not in the one form known to work
    with the real service: ``Content-Type: application/json`` and the token as a JSON string (``"eyJ…"``),
    as Robokassa's official CMS plugins and its published API description send it. A raw token
    (``application/jwt``, ``text/plain``) is refused, so the shop's client cannot drift to another form."""
    if request.mimetype != "application/json" or (request.content_length or 0) > MAX_REFUND_BODY:
        return None
    try:
        token = json.loads(request.get_data(as_text=True))
    except ValueError:
        return None
    return token.strip() if isinstance(token, str) else None


def _refund_items_problem(payload: Mapping[str, Any], amount: Decimal | None, op: Operation) -> str | None:
    """Why the refund receipt (``InvoiceItems``) would be refused, or None: a list of lines with a name,
    a known VAT rate, a positive quantity and cost, adding up to the refunded amount."""
    items = payload.get("InvoiceItems")
    if items is None:
        return None
    if not isinstance(items, list) or not items or not all(isinstance(item, dict) for item in items):
        return "InvalidInvoiceItems"
    if _receipt_tax_problem(items, key="Tax"):
        return "InvalidInvoiceItemsTax"
    total = Decimal("0")
    for item in items:
        cost, quantity = item.get("Cost"), item.get("Quantity", 1)
        if not isinstance(item.get("Name"), str) or not item["Name"].strip():
            return "InvalidInvoiceItems"
        if isinstance(cost, (bool, float)) or isinstance(quantity, (bool, float)):
            return "InvalidInvoiceItems"
        try:
            cost, quantity = Decimal(str(cost)), Decimal(str(quantity))
        except InvalidOperation:
            return "InvalidInvoiceItems"
        if not cost.is_finite() or not quantity.is_finite() or cost <= 0 or quantity <= 0:
            return "InvalidInvoiceItems"
        total += cost * quantity
    expected = amount if amount is not None else get_store().refundable(op)
    return None if total == expected else "InvoiceItemsSumMismatch"


@bp.route("/RefundService/Refund/Create", methods=["POST"])
def refund_create():
    """``Refund/Create``: body is a JWT signed with the shop's Password #3 (HS256/384/512), sent as a
    JSON string (:func:`_refund_token`); optional ``InvoiceItems`` must add up to the refunded amount."""
    token = _refund_token()
    if token is None:
        return _refund_failure("InvalidRequest: send the JWT as a JSON string with Content-Type application/json",
                               400)
    op_key = _unverified_op_key(token)
    if op_key is None:
        return _refund_failure("InvalidToken", 400)
    store = get_store()
    op = store.operation_by_key(op_key)
    shop = find_shop(op.shop) if op else None
    if op is None or shop is None:
        return _refund_failure("OperationNotFound")
    if not shop.password3:
        return _refund_failure("RefundNotAllowed", 403)
    try:
        payload = protocol.verify_refund_jwt(token, shop.password3)
    except protocol.ProtocolError:
        return _refund_failure("InvalidToken", 401)
    if op.state != protocol.STATE_PAID:
        return _refund_failure("OperationNotPaid")
    amount = payload.get("RefundSum")
    if amount is not None:
        try:
            amount = Decimal(str(amount)) if not isinstance(amount, (bool, float)) else None
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite() or amount <= 0 or amount.quantize(_CENT) != amount:
            return _refund_failure("InvalidRefundSum", 400)
    items_problem = _refund_items_problem(payload, amount, op)
    if items_problem:
        return _refund_failure(items_problem, 400)
    delay = float(current_app.config.get("PMROBOKASSA_SANDBOX_REFUND_SECONDS", 2))
    outcome = "canceled" if str(current_app.config.get("PMROBOKASSA_SANDBOX_REFUND") or "") == "cancel" else "finished"
    request_id, error = store.add_refund(op, amount, delay, outcome)
    if request_id is None:
        return _refund_failure(error or "NotEnoughOperationFunds")
    return _json(protocol.build_refund_create_answer(True, request_id=request_id))


@bp.route("/RefundService/Refund/GetState", methods=["GET", "POST"])
def refund_get_state():
    """``Refund/GetState?id=``: ``processing`` at first, then ``finished`` (or ``canceled``)."""
    row = get_store().refund_state(request.values.get("id", ""))
    if row is None:
        return _json(protocol.build_refund_state_answer(protocol.RefundState(None, None, None)))
    return _json(protocol.build_refund_state_answer(
        protocol.RefundState(row["request_id"], Decimal(row["amount"]), row["label"])))


# ------------------------------------------------------------------------------------------------
# the sandbox's own pages
# ------------------------------------------------------------------------------------------------


@bp.route("/")
def index():
    """Operations, notification attempts with the shop's answers, and refunds."""
    store = get_store()
    operations = store.recent_operations()
    attempts: dict[int, list[dict[str, Any]]] = {}
    for attempt in store.attempts():
        attempts.setdefault(attempt["operation_id"], []).append(attempt)
    refunds: dict[int, list[dict[str, Any]]] = {}
    for refund in store.refunds():
        refunds.setdefault(refund["operation_id"], []).append(refund)
    return render_template("pmrobokassa/sandbox/index.html", operations=operations, attempts=attempts,
                           refunds=refunds, shops=configured_shops(), fault=_fault_default())


@bp.route("/operations/<int:op_id>/resend", methods=["POST"])
def resend_notification(op_id: int):
    """Send a paid operation's notification once more (a repeat must change nothing at the shop)."""
    store = get_store()
    op: Operation | None = store.operation(op_id) if 0 < op_id <= MAX_INV_ID else None
    shop = find_shop(op.shop) if op else None
    if op is None or shop is None or op.state != protocol.STATE_PAID:
        flash(_("Only a paid operation's notification can be sent again."), "error")
    else:
        resend(store, shop, op, settings_from_config())
        flash(_("The notification of invoice %(inv)s is being sent again.", inv=op.inv_id), "info")
    return redirect(url_for("rksandbox.index"))

