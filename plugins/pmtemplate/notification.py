"""The gateway's server-to-server notification (BILLmanager's ``result`` script, ``/mancgi/tplresult``).

This is the one place where a gateway's word turns into money, so it follows the core's rules strictly:

* it verifies the signature first (in constant time); unsigned or forged input changes nothing and is
  only recorded as an event;
* it never changes a payment itself: it hands amount (a ``Decimal``) and currency to the payment service,
  which compares them with the payment and credits it exactly once;
* a repeat gets the same success answer as the first delivery;
* a database failure answers 503 so the gateway retries, never the success text.

:func:`handle_notification` takes plain parameters so the view and the fake gateway's in-process delivery
share it.
"""
from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from billcore.gateway import (IllegalTransition, Outcome, Status, allow, callback_context, file_logger,
                              known_fields, record_event, rollback, row_id, set_cancelled, set_paid)

from .signing import verify

KEY = "pmtemplate"
# The notification's fields (what a refused one may leave in the database).
FIELDS = ("payment_id", "merchant_id", "state", "amount", "currency", "op_id", "test", "signature")
SOURCE = "pmtemplate tplresult"
SUCCESS_ANSWER = "OK"  # what the gateway expects when we accepted a notification (also for repeats)
FRAUD_ANSWER = "amount mismatch"


def _answer(outcome: Outcome) -> str:
    """The reply recorded with the payment event (the service calls this with its outcome)."""
    return FRAUD_ANSWER if outcome.result == "fraud" else SUCCESS_ANSWER


def handle_notification(params: Mapping[str, str]) -> tuple[str, int]:
    """Process one notification; returns ``(plain-text body, HTTP status)`` for the gateway."""
    log = file_logger("tplresult")
    data = {str(k): str(v) for k, v in params.items()}
    try:
        return _handle(data, log)
    except SQLAlchemyError as exc:  # retryable: the gateway must try again later
        rollback()
        log.error("payment %s: database error %s; answered 503", data.get("payment_id"), type(exc).__name__)
        return "temporary error, retry later", 503


def _reject(payment_id: int | None, reason: str, data: dict[str, str], answer: str, log) -> tuple[str, int]:
    """Record a refused notification (nothing changes) and answer 400. What is kept is bounded: the
    protocol's fields only, each cut short, and at most CALLBACK_REFUSED_RECORDS(_TOTAL) records in a
    window (beyond that only the log line), so that a flood cannot grow the database without bound."""
    config = current_app.config
    if allow(config["CALLBACK_REFUSED_RECORDS"], "refused", SOURCE, str(payment_id or "-")) \
            and allow(config["CALLBACK_REFUSED_RECORDS_TOTAL"], "refused", SOURCE):
        record_event(payment_id, kind="notification", source=SOURCE, outcome=f"rejected: {reason}",
                             data=known_fields(data, FIELDS, max_length=int(config["CALLBACK_FIELD_MAX"])),
                             answer=answer)
    log.warning("payment %s: rejected (%s)", payment_id if payment_id is not None else data.get("payment_id"),
                reason)
    return answer, 400


def _handle(data: dict[str, str], log) -> tuple[str, int]:
    try:  # a huge, negative or non-ASCII id never reaches the database
        payment_id = row_id(data.get("payment_id", ""))
    except ValueError:
        return _reject(None, "no payment id", data, "bad request", log)
    # The payment's few columns and its method's settings in one query (what a notification needs).
    payment = callback_context(payment_id)
    if payment is None or payment.module != KEY:
        return _reject(None, f"unknown payment {payment_id}", data, "unknown payment", log)
    settings = payment.settings
    # The signature comes first: nothing below may be trusted before it verifies.
    if not verify(data, str(settings.get("secret") or "")):
        reason = "no signature" if not data.get("signature") else "bad signature"
        return _reject(payment.payment_id, reason, data, "bad signature", log)
    if data.get("merchant_id") != settings.get("merchant_id"):
        return _reject(payment.payment_id, "another merchant", data, "bad merchant", log)
    state = data.get("state")
    if state == "paid":
        try:
            amount = Decimal(data.get("amount", ""))
        except InvalidOperation:
            return _reject(payment.payment_id, "bad amount", data, "bad amount", log)
        try:
            outcome = set_paid(payment.payment_id, amount=amount, currency=data.get("currency", ""),
                                       source=SOURCE, data=data, external_id=data.get("op_id") or None,
                                       answer=_answer)
        except IllegalTransition as exc:
            # Only a payment flagged as fraud (or by an admin) refuses to be paid: answer as the first time.
            answer = FRAUD_ANSWER if exc.current == Status.FRAUD.value else f"payment is {exc.current}"
            return _reject(payment.payment_id, str(exc), data, answer, log)
        log.info("payment %s: paid notification, %s %s, op %s -> %s (%s)", payment.payment_id, amount,
                 data.get("currency"), data.get("op_id"), outcome.status, outcome.result)
        if outcome.result == "fraud":
            return FRAUD_ANSWER, 400
        return SUCCESS_ANSWER, 200
    if state == "failed":
        try:
            outcome = set_cancelled(payment.payment_id, source=SOURCE,
                                            reason="the gateway reported a failure", data=data,
                                            answer=SUCCESS_ANSWER)
            result = f"{outcome.status} ({outcome.result})"
        except IllegalTransition as exc:  # a late failure never undoes a paid payment
            record_event(payment.payment_id, kind="notification", source=SOURCE,
                                 outcome=f"ignored: {exc}", data=data, answer=SUCCESS_ANSWER)
            result = f"ignored ({exc.current})"
        log.info("payment %s: failure notification -> %s", payment.payment_id, result)
        return SUCCESS_ANSWER, 200
    return _reject(payment.payment_id, f"unknown state {state!r}", data, "bad state", log)
