"""Robokassa's routes: the three gateway callbacks (BILLmanager's mancgi), made with the core's payment door.

``/mancgi/rkresult`` is the server-to-server notification that credits a payment (Password #2);
``/mancgi/rksuccess`` (Password #1) and ``/mancgi/rkfail`` (unsigned) only bring the payer back. The core
(:func:`billcore.gateway.gateway_callback`, :func:`~billcore.gateway.gateway_return`) reads the bounded
request, parses ``InvId``, loads the payment with its method's settings, applies the address allow-list,
records refusals bounded, answers 503 when the database fails and exempts these views (and only these)
from CSRF; this module does what is Robokassa's own: the fields, the signatures, ``IsTest`` and the
``OK<InvId>`` answer. Every change goes through the payment service; every request is one line in its
log file (``rkresult.log``, ``rksuccess.log``, ``rkfail.log``).

The payer reaches Robokassa through the core too: the checkout's door calls ``billcore_start_payment``
(:func:`start_action`), which only builds the signed form the core posts to Robokassa's payment page.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint
from flask_babel import gettext as _

from billcore.gateway import (Answer, CallbackContext, CallbackRequest, Customer, IllegalTransition, Payment,
                              PaymentNotFound, Refuse, StartAction, StartRefused, client_address, gateway_callback,
                              gateway_return, set_paid)

from . import protocol
from .common import (CURRENCY, KEY, LOG_FAIL, LOG_PAYMENT, LOG_RESULT, LOG_SUCCESS, algorithm, config,
                     endpoints, log_line)
from .payform import payment_fields

bp = Blueprint("pmrobokassa", __name__, template_folder="templates", static_folder="static",
               static_url_path="/pmrobokassa/static")

CALLBACK_METHODS = ["GET", "POST"]
# What Robokassa sends to ResultURL, SuccessURL and FailURL; a refused callback records only these
# (each cut to CALLBACK_FIELD_MAX characters) and the shop's own Shp_ parameters.
PROTOCOL_FIELDS = ("InvId", "OutSum", "SignatureValue", "Culture", "IsTest", "IncCurrLabel", "PaymentMethod",
                   "IncSum", "Fee", "EMail", "OpKey", "CurrLabel")
SHP_PREFIXES = ("Shp_", "shp_")


def _facts(params: Mapping[str, str]) -> dict[str, Any]:
    # What goes into a log line: the identifying fields only, never the whole request.
    return {k: params.get(k) for k in ("InvId", "OutSum", "IncCurrLabel", "PaymentMethod", "IsTest")}


def _log_to(stem: str) -> Callable[[int | None, str, int, Mapping[str, str]], None]:
    """The core's log callback for one script: the module's ``payment=<id> outcome=<text> key=value``
    line in ``<stem>.log``, with the caller's address and the identifying fields."""

    def write(payment_id: int | None, message: str, level: int, params: Mapping[str, str]) -> None:
        log_line(stem, payment_id, message, level, address=client_address(), **_facts(params))

    return write


# --------------------------------------------------------------------------------------------------
# The start: the signed form the core posts to Robokassa's payment page
# --------------------------------------------------------------------------------------------------


def start_action(payment: Payment, settings: Mapping[str, Any], customer: Customer) -> StartAction:
    """The POST to Robokassa's payment page for ``payment`` (docs/robokassa.md §1): the fields of
    :func:`.payform.payment_fields`, signed with Password #1. The core has checked the payment and marks
    it ``inpay`` once this answers; :class:`StartRefused` when the method lacks its identifier or
    Password #1 (nothing changes then)."""
    if not settings.get("identifier") or not settings.get("password1"):
        log_line(LOG_PAYMENT, payment.id, "refused: payment method not configured", logging.ERROR,
                 user=customer.user_id)
        raise StartRefused(_("This payment method is not configured yet. Please choose another one."))
    fields = payment_fields(payment, settings, email=customer.email, culture=customer.language)
    url = endpoints(settings).payment_url
    again = payment.status == "inpay"  # the customer pays an open payment again
    log_line(LOG_PAYMENT, payment.id, "sent to the gateway" + (" again" if again else ""), user=customer.user_id,
             out_sum=dict(fields)["OutSum"], url=url, test=bool(settings.get("test_mode")))
    return StartAction(url=url, method="POST", fields=tuple(fields))


# --------------------------------------------------------------------------------------------------
# /mancgi/rkresult: the notification
# --------------------------------------------------------------------------------------------------


def _allowed_addresses(settings: Mapping[str, Any]) -> list[str] | None:
    """Robokassa's notification addresses when ``PMROBOKASSA_CHECK_IP`` is on (install-wide, the same
    for every method), else None: the signature is the real control either way."""
    if not config("PMROBOKASSA_CHECK_IP"):
        return None
    # The core reads an empty list as "no check"; with the check on, an empty list must accept nobody
    # (as it always has here), so it becomes a network no caller can come from.
    return [str(entry) for entry in config("PMROBOKASSA_ALLOWED_IPS") or ()] or ["0.0.0.0/32"]


def _require(params: Mapping[str, str], *names: str) -> None:
    for name in names:
        if not params.get(name):
            raise Refuse(f"missing field {name}")


def _check(params: Mapping[str, str], found: CallbackContext) -> None:
    """The notification is Robokassa's for this payment: a Robokassa method, the signature with its
    Password #2, and no test payment for a method in live mode. Memory only (it also runs under the
    payment's lock); :class:`Refuse` otherwise."""
    if found.module != KEY:
        raise Refuse(f"payment {found.payment_id} is not a Robokassa payment", status=404, answer="unknown payment")
    settings = found.settings
    try:
        valid = protocol.verify_result_params(params, algorithm=algorithm(settings),
                                              password2=str(settings.get("password2") or ""))
    except protocol.UnsupportedAlgorithm:
        raise Refuse("the payment method's hash algorithm is misconfigured", status=500) from None
    if not valid:
        raise Refuse("bad signature")
    if params.get("IsTest", "").strip().lower() in ("1", "true") and not settings.get("test_mode"):
        # A test payment moves no money: it must never credit a method that is in live mode, even
        # when the shop's test and live passwords happen to be the same.
        raise Refuse("test payment for a payment method in live mode")


@gateway_callback(KEY, source=LOG_RESULT, id_field="InvId", fields=PROTOCOL_FIELDS, prefixes=SHP_PREFIXES,
                  allowed_addresses=_allowed_addresses, log=_log_to(LOG_RESULT))
def result(call: CallbackRequest) -> Answer:
    """Robokassa's ResultURL: verify with Password #2, credit once, answer ``OK<InvId>``."""
    params, payment_id = dict(call.params), call.payment.payment_id
    _require(params, "OutSum", "SignatureValue")
    try:
        amount = protocol.parse_amount(params["OutSum"], "OutSum")
    except protocol.MalformedField:
        raise Refuse("malformed field OutSum") from None
    # Checked first on the core's read, so a forgery is refused without taking the payment's lock; and
    # again under the lock, on the settings of the transaction that credits (they may have changed).
    _check(params, call.payment)
    ok = protocol.result_answer(payment_id)
    # kept with the credit, in its transaction, for polling and refunds later
    gateway_facts = {name: params[key] for key, name in (
        ("IncCurrLabel", "inc_curr_label"), ("PaymentMethod", "payment_method"), ("Fee", "fee"),
        ("IncSum", "inc_sum"), ("OpKey", "op_key"), ("IsTest", "is_test")) if params.get(key)}
    try:
        outcome = set_paid(
            payment_id, amount=amount, currency=CURRENCY, source=LOG_RESULT, data=params,
            gateway_data=gateway_facts, verify=lambda found: _check(params, found),
            answer=lambda o: ok if o.result != "fraud" else f"ERROR: {o.message}")
    except PaymentNotFound:
        raise Refuse(f"unknown payment {payment_id}", status=404, answer="unknown payment") from None
    except IllegalTransition as exc:
        # e.g. a payment already flagged as fraud: an admin decides, Robokassa gets no OK.
        raise Refuse(f"payment {payment_id} is {exc.current}: not credited", status=409) from None
    if outcome.result == "fraud":  # committed by the service (the payment is flagged): not a refusal
        log_line(LOG_RESULT, payment_id, f"fraud: {outcome.message}", logging.ERROR, **_facts(params))
        return Answer(f"ERROR: {outcome.message}", 400)
    log_line(LOG_RESULT, payment_id, "credited" if outcome.changed else "repeat, already credited",
             answer=ok, **_facts(params))
    return Answer(ok)


# --------------------------------------------------------------------------------------------------
# /mancgi/rksuccess and /mancgi/rkfail: the payer comes back (never credits: docs/robokassa.md §4)
# --------------------------------------------------------------------------------------------------


def _success_signed(params: Mapping[str, str], settings: Mapping[str, Any]) -> bool:
    """The SuccessURL return is signed with the method's Password #1 (a missing field: not signed)."""
    try:
        return protocol.verify_success_params(params, algorithm=algorithm(settings),
                                              password1=str(settings.get("password1") or ""))
    except protocol.UnsupportedAlgorithm:  # corrupt settings: the payer sees "not valid", the log why
        log_line(LOG_SUCCESS, params.get("InvId", "")[:20] or None, "the payment method's hash algorithm is "
                 "misconfigured", logging.ERROR)
        return False


success = gateway_return(KEY, source=LOG_SUCCESS, id_field="InvId", outcome="success", fields=PROTOCOL_FIELDS,
                         prefixes=SHP_PREFIXES, verify=_success_signed, log=_log_to(LOG_SUCCESS))
fail = gateway_return(KEY, source=LOG_FAIL, id_field="InvId", outcome="fail", fields=PROTOCOL_FIELDS,
                      prefixes=SHP_PREFIXES, log=_log_to(LOG_FAIL))

bp.add_url_rule("/mancgi/rkresult", endpoint="result", view_func=result, methods=CALLBACK_METHODS)
bp.add_url_rule("/mancgi/rksuccess", endpoint="success", view_func=success, methods=CALLBACK_METHODS)
bp.add_url_rule("/mancgi/rkfail", endpoint="fail", view_func=fail, methods=CALLBACK_METHODS)
