"""The gateway's server-to-server notification (BILLmanager's ``result`` script, ``/mancgi/tplresult``).

This is the one place where a gateway's word turns into money. The core's :func:`gateway_callback` does
what every gateway callback needs (bounded input, the payment id, the payment and its settings, recording
refusals, 503 on a database failure, the CSRF exemption); :func:`handle_notification` does what is this
gateway's own:

* it verifies the signature first (in constant time) and that the notification is for this merchant;
  anything else is refused with :class:`Refuse` and changes nothing;
* it never changes a payment itself: it hands amount (a ``Decimal``) and currency to the payment service,
  which compares them with the payment and credits it exactly once;
* a repeat gets the same success answer as the first delivery.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from billcore.gateway import (Answer, CallbackRequest, IllegalTransition, Outcome, Refuse, Status, file_logger,
                              gateway_callback, record_event, set_cancelled, set_paid)

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


@gateway_callback(KEY, source=SOURCE, id_field="payment_id", fields=FIELDS, log_file="tplresult")
def handle_notification(call: CallbackRequest) -> Answer:
    """Process one notification: the plain-text answer the gateway expects (``OK`` when accepted or
    repeated); :class:`Refuse` for anything not signed by this payment's merchant."""
    log = file_logger("tplresult")
    data, payment_id, settings = dict(call.params), call.payment.payment_id, call.payment.settings
    # The signature comes first: nothing below may be trusted before it verifies.
    if not verify(data, str(settings.get("secret") or "")):
        raise Refuse("no signature" if not data.get("signature") else "bad signature", answer="bad signature")
    if data.get("merchant_id") != settings.get("merchant_id"):
        raise Refuse("another merchant", answer="bad merchant")
    state = data.get("state")
    if state == "paid":
        try:
            amount = Decimal(data.get("amount", ""))
        except InvalidOperation:
            raise Refuse("bad amount") from None
        try:
            outcome = set_paid(payment_id, amount=amount, currency=data.get("currency", ""), source=SOURCE,
                               data=data, external_id=data.get("op_id") or None, answer=_answer)
        except IllegalTransition as exc:
            # Only a payment flagged as fraud (or by an admin) refuses to be paid: answer as the first time.
            raise Refuse(str(exc), answer=FRAUD_ANSWER if exc.current == Status.FRAUD.value
                         else f"payment is {exc.current}") from None
        log.info("payment %s: paid notification, %s %s, op %s -> %s (%s)", payment_id, amount,
                 data.get("currency"), data.get("op_id"), outcome.status, outcome.result)
        if outcome.result == "fraud":
            return Answer(FRAUD_ANSWER, 400)
        return Answer(SUCCESS_ANSWER)
    if state == "failed":
        try:
            outcome = set_cancelled(payment_id, source=SOURCE, reason="the gateway reported a failure", data=data,
                                    answer=SUCCESS_ANSWER)
            result = f"{outcome.status} ({outcome.result})"
        except IllegalTransition as exc:  # a late failure never undoes a paid payment
            record_event(payment_id, kind="notification", source=SOURCE, outcome=f"ignored: {exc}", data=data,
                         answer=SUCCESS_ANSWER)
            result = f"ignored ({exc.current})"
        log.info("payment %s: failure notification -> %s", payment_id, result)
        return Answer(SUCCESS_ANSWER)
    raise Refuse(f"unknown state {state!r}", answer="bad state")
