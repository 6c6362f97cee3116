"""Server-to-server operations: status polling (OpStateExt), refunds (Refund API), recurring charges.

These functions answer the core's hooks with what Robokassa said; they never change a payment's status
(the core applies the answer through the payment service).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from flask_babel import gettext as _
from sqlalchemy import func, select

from billcore.gateway import (ChargeResult, ChargeState, GatewaySetup, GatewayState, GatewayStatus, Payment, Refund,
                              RefundResult, RefundState, RefundStatus, SetupItem, session, set_gateway_data)

from . import gateway, protocol
from .common import CURRENCY, LOG_MODULE, algorithm, log_line
from .payform import description_for, receipt_for

CALLBACK_PATHS = {"result": "/mancgi/rkresult", "success": "/mancgi/rksuccess", "fail": "/mancgi/rkfail"}

# OpStateExt State/Code -> billcore's answer (docs/robokassa.md §6.1)
CANCELLED_STATES = {protocol.STATE_CANCELLED, protocol.STATE_RETURNED}

# HTTP answers that clearly refuse a Refund/Create or Recurring request (bad request, credentials, not
# found, method, size, type, validation, rate limit): nothing was done. Any other 4xx (408 timeout, 409
# conflict, 425, 499 client closed...) or 5xx may come after Robokassa acted on it: unconfirmed.
REJECTED_STATUSES = frozenset({400, 401, 403, 404, 405, 413, 415, 422, 429})
GATEWAY_MESSAGE_MAX = 200  # characters of the gateway's own error text shown to the admin


def gateway_message(body: str) -> str:
    """What the gateway said in an error answer, fit to show an admin: the ``message`` of a JSON answer
    (``{"success":false,"message":"Signature key is not exists"}``), else a short plain text; an HTML
    page or an empty body gives ``""``. Control characters are dropped and the length is bounded."""
    text = (body or "").strip()
    if not text:
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        message = data.get("message") or data.get("Message") or data.get("error") or ""
        text = message if isinstance(message, str) else ""
    elif isinstance(data, str):
        text = data
    elif text.startswith("<"):
        return ""  # an error page: its markup tells the admin nothing
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text[:GATEWAY_MESSAGE_MAX]


def refund_items_for(refund_row: Refund, settings: Mapping[str, Any]) -> list[protocol.RefundItem] | None:
    """The refund receipt's lines (``InvoiceItems``) when receipts are on: one line for the refunded
    amount with the method's receipt settings, as the payment's own receipt had; None when they are off."""
    if not settings.get("receipt_enabled"):
        return None
    return [protocol.RefundItem(
        name=str(settings.get("receipt_item_name") or "").strip() or _("Account top-up"),
        cost=Decimal(refund_row.amount),
        tax=str(settings.get("receipt_tax") or "none"),
        quantity=1,
        payment_method=settings.get("receipt_payment_method") or None,
        payment_object=settings.get("receipt_payment_object") or None,
    )]


def gateway_setup(settings: Mapping[str, Any], base_url: str) -> GatewaySetup:
    """What to enter in Robokassa's technical settings, and warnings about this installation."""
    base = base_url.rstrip("/")
    items = (
        SetupItem(_("Result URL"), base + CALLBACK_PATHS["result"]),
        SetupItem(_("Method of sending data to Result URL"), "POST"),
        SetupItem(_("Success URL"), base + CALLBACK_PATHS["success"]),
        SetupItem(_("Method of sending data to Success URL"), "POST"),
        SetupItem(_("Fail URL"), base + CALLBACK_PATHS["fail"]),
        SetupItem(_("Method of sending data to Fail URL"), "POST"),
        SetupItem(_("Hash calculation algorithm"), algorithm(settings).upper()),
    )
    warnings = []
    parts = urlsplit(base)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        warnings.append(_("The billing's public address (BASE_URL) is not an absolute http(s) URL: "
                          "Robokassa cannot reach it."))
    elif port is not None and port not in (80, 443):
        warnings.append(_("The billing's public address uses port %(port)s. Robokassa sends notifications "
                          "only to ports 443 and 80: payments will never be credited. Publish the billing "
                          "on port 443.", port=port))
    # plain http is the core's own warning on the method's page: not repeated here
    if parts.hostname in ("localhost", "127.0.0.1", "::1"):
        warnings.append(_("The billing's public address is a local one: Robokassa cannot reach it."))
    notes = [_("Enter Password #1 and Password #2 exactly as in Robokassa's technical settings; each has "
               "at least 8 characters with a letter and a digit, and they differ from each other.")]
    if settings.get("test_mode"):
        notes.append(_("Test mode is on: the passwords must be the test pair (Password #1 and #2 for test "
                       "payments)."))
    if settings.get("password3"):
        notes.append(_("Password #3 is set: refunds go through Robokassa's Refund API."))
    else:
        notes.append(_("Without Password #3, refunds cannot be sent to Robokassa."))
    return GatewaySetup(items=items, warnings=tuple(warnings), notes=tuple(notes))


def check_payment(payment: Payment, settings: Mapping[str, Any]) -> GatewayStatus:
    """Ask OpStateExt about ``payment``: 100 -> paid (amount in RUB, OpKey), 10/60 -> cancelled, else
    pending. Errors of any kind (network, result code, garbled answer) are pending, with the reason."""
    try:
        state = gateway.op_state(settings, payment.id)
    except (gateway.GatewayUnavailable, protocol.ProtocolError) as exc:
        log_line(LOG_MODULE, payment.id, f"status poll failed: {exc}", logging.WARNING)
        return GatewayStatus(GatewayState.PENDING, info=f"OpStateExt failed: {exc}")
    data = {"state_code": state.state_code, "result_code": state.result_code, "op_key": state.op_key,
            "inc_curr_label": state.inc_curr_label, "payment_method": state.payment_method,
            "state_date": state.state_date}
    data = {k: v for k, v in data.items() if v is not None}
    if state.result_code != protocol.RESULT_OK:
        info = f"OpStateExt result code {state.result_code}: {state.description}"
        log_line(LOG_MODULE, payment.id, f"status poll: {info}", logging.WARNING)
        return GatewayStatus(GatewayState.PENDING, info=info, data=data)
    if state.state_code == protocol.STATE_PAID:
        if state.out_sum is None:
            log_line(LOG_MODULE, payment.id, "status poll: paid but no OutSum, left pending", logging.WARNING)
            return GatewayStatus(GatewayState.PENDING, info="state 100 without OutSum", data=data)
        log_line(LOG_MODULE, payment.id, "status poll: paid", out_sum=state.out_sum, op_key=state.op_key)
        return GatewayStatus(GatewayState.PAID, amount=state.out_sum, currency=CURRENCY, external_id=state.op_key,
                             info="OpStateExt state 100", data=data)
    if state.state_code in CANCELLED_STATES:
        log_line(LOG_MODULE, payment.id, f"status poll: cancelled (state {state.state_code})")
        return GatewayStatus(GatewayState.CANCELLED, external_id=state.op_key, data=data,
                             info=f"OpStateExt state {state.state_code}")
    log_line(LOG_MODULE, payment.id, f"status poll: still open (state {state.state_code})")
    return GatewayStatus(GatewayState.PENDING, external_id=state.op_key, data=data,
                         info=f"OpStateExt state {state.state_code}")


def _op_key(payment: Payment, settings: Mapping[str, Any]) -> str | None:
    op_key = (payment.gateway_data or {}).get("op_key")
    if op_key:
        return str(op_key)
    state = gateway.op_state(settings, payment.id)  # GatewayUnavailable propagates: the refund is not sent
    if state.result_code == protocol.RESULT_OK and state.op_key:
        set_gateway_data(payment.id, op_key=state.op_key)
        return state.op_key
    return None


def _is_full_refund(payment: Payment, refund: Refund) -> bool:
    others = session().execute(
        select(func.count()).select_from(Refund).where(
            Refund.payment_id == payment.id, Refund.id != refund.id, Refund.status != RefundStatus.FAILED)
    ).scalar_one()
    return others == 0 and Decimal(refund.amount) == Decimal(payment.total)


def refund(payment: Payment, settings: Mapping[str, Any], refund_row: Refund) -> RefundResult:
    """Ask the Refund API to return ``refund_row.amount`` (RefundSum only for a partial refund).

    ``failed`` when Robokassa refused the request or certainly never got it (no OpKey, connection
    refused, name not resolved, connect timeout, certificate refused, a clear HTTP rejection from
    :data:`REJECTED_STATUSES`): nothing was refunded, the core puts the amount back on the balance.
    ``pending`` with the request id when it was accepted. ``pending`` without an id when the request may
    have reached Robokassa but no request id came back (read timeout, connection dropped, any other HTTP
    error such as 408, 409 or 5xx, a garbled answer, success without an id): the refund cannot be
    followed, so the core flags it for an admin once it is overdue.
    """
    if not settings.get("password3"):
        log_line(LOG_MODULE, payment.id, "refund refused: Password #3 is not set", refund=refund_row.id)
        return RefundResult(RefundState.FAILED, info=_("Password #3 is not set: refunds through Robokassa are off."))
    try:
        op_key = _op_key(payment, settings)
    except (gateway.GatewayUnavailable, protocol.ProtocolError) as exc:
        log_line(LOG_MODULE, payment.id, f"refund not sent: OpStateExt failed: {exc}", logging.WARNING,
                 refund=refund_row.id)
        return RefundResult(RefundState.FAILED, info=_("The refund was not sent: Robokassa could not be asked about the "
                                             "payment's operation (%(error)s).", error=str(exc)))
    if not op_key:
        log_line(LOG_MODULE, payment.id, "refund refused: no OpKey known", refund=refund_row.id)
        return RefundResult(RefundState.FAILED, info=_("Robokassa reports no operation for this payment (no OpKey)."))
    refund_sum = None if _is_full_refund(payment, refund_row) else Decimal(refund_row.amount)
    try:
        answer = gateway.refund_create(settings, payment_id=payment.id, op_key=op_key, refund_sum=refund_sum,
                                       invoice_items=refund_items_for(refund_row, settings))
    except gateway.GatewayUnavailable as exc:
        if not exc.sent:
            log_line(LOG_MODULE, payment.id, f"refund not sent: {exc}", logging.WARNING, refund=refund_row.id)
            return RefundResult(RefundState.FAILED, info=_("The refund request could not be sent to Robokassa (%(error)s); "
                                                 "nothing was refunded.", error=str(exc)))
        said = gateway_message(exc.body)
        if exc.status_code in REJECTED_STATUSES:
            log_line(LOG_MODULE, payment.id, f"refund rejected: {exc}", logging.WARNING, refund=refund_row.id,
                     message=said)
            if said:
                return RefundResult(RefundState.FAILED, info=_(
                    "Robokassa rejected the refund request (HTTP %(status)s): %(message)s",
                    status=exc.status_code, message=said))
            return RefundResult(RefundState.FAILED, info=_("Robokassa rejected the refund request (HTTP %(status)s).",
                                                 status=exc.status_code))
        return _unconfirmed(payment, refund_row, op_key, f"{exc}: {said}" if said else str(exc))
    except protocol.ProtocolError as exc:
        return _unconfirmed(payment, refund_row, op_key, f"unreadable answer: {exc}")
    if answer.success and answer.request_id:
        log_line(LOG_MODULE, payment.id, "refund accepted", refund=refund_row.id, request_id=answer.request_id)
        return RefundResult(RefundState.PENDING, external_id=answer.request_id, data={"op_key": op_key})
    if answer.success:
        return _unconfirmed(payment, refund_row, op_key, "accepted without a request id")
    log_line(LOG_MODULE, payment.id, "refund refused by Robokassa", logging.WARNING, refund=refund_row.id,
             message=answer.message)
    return RefundResult(RefundState.FAILED, info=answer.message or _("Robokassa refused the refund."))


def _unconfirmed(payment: Payment, refund_row: Refund, op_key: str, error: str) -> RefundResult:
    """The refund request may have reached Robokassa but gave no request id: pending, not followable."""
    log_line(LOG_MODULE, payment.id, f"refund unconfirmed: {error}", logging.WARNING, refund=refund_row.id)
    return RefundResult(RefundState.PENDING, data={"op_key": op_key, "unconfirmed": True}, info=_(
        "Robokassa's answer to the refund request was lost (%(error)s): the refund may have been made. Check "
        "it in Robokassa's cabinet, then mark it done or failed on the payment's page.", error=error))


def refund_status(payment: Payment, settings: Mapping[str, Any], refund_row: Refund) -> RefundResult:
    """Follow a refund: ``finished`` -> finished, ``canceled`` -> failed, anything else pending.

    A refund without Robokassa's request id cannot be asked about: it stays pending (no call is made)
    until the core flags it for an admin.
    """
    request_id = refund_row.external_id
    if not request_id:
        return RefundResult(RefundState.PENDING, info=_("Robokassa gave no request id for this refund, so it cannot be "
                                              "followed: check it in Robokassa's cabinet."))
    try:
        state = gateway.refund_state(settings, payment_id=payment.id, request_id=request_id)
    except (gateway.GatewayUnavailable, protocol.ProtocolError) as exc:
        log_line(LOG_MODULE, payment.id, f"refund status failed: {exc}", logging.WARNING, refund=refund_row.id)
        return RefundResult(RefundState.PENDING, external_id=request_id, info=str(exc))
    if state.label == "finished":
        return RefundResult(RefundState.FINISHED, external_id=request_id,
                            data={"amount": str(state.amount) if state.amount is not None else None})
    if state.label == "canceled":
        return RefundResult(RefundState.FAILED, external_id=request_id, info=_("The refund was cancelled at Robokassa."))
    return RefundResult(RefundState.PENDING, external_id=request_id, info=state.message or state.label or "")


def recurring_charge(payment: Payment, parent: Payment, settings: Mapping[str, Any]) -> ChargeResult:
    """Charge ``payment`` against the card of ``parent`` through ``/Merchant/Recurring`` (§7.1)."""
    login = str(settings["identifier"])
    out_sum = protocol.format_out_sum(payment.total)
    receipt = receipt_for(payment, settings)
    fields = {
        "MerchantLogin": login, "InvoiceID": str(payment.id), "PreviousInvoiceID": str(parent.id),
        "OutSum": out_sum, "Description": description_for(payment),
        "SignatureValue": protocol.recurring_signature(
            algorithm(settings), merchant_login=login, out_sum=out_sum, inv_id=str(payment.id),
            password1=str(settings["password1"]), receipt=receipt),
    }
    if receipt:
        fields["Receipt"] = receipt
    if settings.get("test_mode"):
        fields["IsTest"] = "1"  # signed with the test pair, so it must say so (else error 29)
    try:
        answer = gateway.recurring(settings, fields, payment_id=payment.id)
    except gateway.GatewayUnavailable as exc:
        said = gateway_message(exc.body)
        if not exc.sent:
            log_line(LOG_MODULE, payment.id, f"recurring charge not sent: {exc}", logging.WARNING)
            return ChargeResult(ChargeState.FAILED, info=_("The charge could not be sent to Robokassa (%(error)s); nothing "
                                                 "was charged.", error=str(exc)))
        if exc.status_code in REJECTED_STATUSES:
            log_line(LOG_MODULE, payment.id, f"recurring charge rejected: {exc}", logging.WARNING, message=said)
            if said:
                return ChargeResult(ChargeState.FAILED, info=_("Robokassa refused the charge (HTTP %(status)s): %(message)s",
                                                     status=exc.status_code, message=said))
            return ChargeResult(ChargeState.FAILED, info=_("Robokassa refused the charge (HTTP %(status)s).",
                                                 status=exc.status_code))
        return _charge_unknown(payment, f"{exc}: {said}" if said else str(exc))
    if answer == protocol.result_answer(payment.id):
        return ChargeResult(ChargeState.ACCEPTED, info=answer)
    return _charge_unknown(payment, _("unexpected answer %(answer)s", answer=repr(gateway_message(answer)[:100])))


def _charge_unknown(payment: Payment, error: str) -> ChargeResult:
    """A Recurring request that may have reached Robokassa without a clear answer (a read timeout, a 5xx,
    ``OK`` without the id, an HTML page): whether the card was charged is unknown. The child is booked as
    waiting (``accepted``, so ``inpay``) with the charge marked unconfirmed: OpStateExt polling then
    settles it (state 100 paid, 10/60 cancelled), and the period is never charged again with a new
    child until Robokassa says this one did not happen."""
    log_line(LOG_MODULE, payment.id, f"recurring charge unconfirmed: {error}", logging.WARNING)
    return ChargeResult(ChargeState.ACCEPTED, data={"unconfirmed": True}, info=_(
        "Robokassa's answer to the charge was not a clear yes or no (%(error)s): the charge may have been "
        "made. The payment waits for Robokassa's status.", error=error))
