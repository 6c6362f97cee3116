"""The gateway's callbacks: its signed notification (where its word becomes money) and the payer's return.
billcore's ``gateway_callback``/``gateway_return`` make the views; the payment service credits once."""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from flask import Blueprint

from billcore.gateway import (Answer, CallbackRequest, IllegalTransition, MoneyError, Refuse, gateway_callback,
                              gateway_return, parse_amount, record_event, set_cancelled, set_paid)

KEY = "pmskeleton"
RESULT, SUCCESS, FAIL = "/mancgi/skeletonresult", "/mancgi/skeletonsuccess", "/mancgi/skeletonfail"
SOURCE = "skeletonresult"
# TODO(gateway): the notification's fields; only these are kept of a refused one.
FIELDS = ("merchant_id", "order_id", "amount", "currency", "status", "operation_id", "signature")
# OK is ModuleInfo.success_answer: for the first delivery and every repeat. TODO(gateway): its literal.
OK, MISMATCH = "OK", "amount mismatch"


def sign(fields: Mapping[str, str], secret: str) -> str:
    """TODO(gateway): its signature recipe. Here: the hex HMAC-SHA256 (keyed with the secret) of the fields
    but the signature as one JSON object, names sorted: unambiguous, no value can spill into the next."""
    text = json.dumps({k: str(v) for k, v in fields.items() if k != "signature"}, sort_keys=True, separators=(",", ":"))
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


@gateway_callback(KEY, source=SOURCE, id_field="order_id", fields=FIELDS)
def notification(call: CallbackRequest) -> Answer:
    """Credit or cancel the notified payment; :class:`Refuse` (nothing changes, billcore records it) for
    anything not signed by this payment's merchant."""
    params, settings, payment_id = dict(call.params), call.payment.settings, call.payment.payment_id
    secret = str(settings.get("secret") or "")
    # The signature first, in constant time: nothing below may be trusted before it verifies.
    if not secret or not hmac.compare_digest(sign(params, secret).encode(), params.get("signature", "").encode()):
        raise Refuse("bad signature" if params.get("signature") else "no signature", answer="bad signature")
    if params.get("merchant_id") != settings.get("merchant_id"):
        raise Refuse("another merchant", answer="bad merchant")
    status = params.get("status", "")  # TODO(gateway): its words for paid and failed
    if status == "paid":
        try:  # a Decimal, exactly: never a float, nothing finer than the currency's minor unit
            amount = parse_amount(params.get("amount", ""), call.payment.currency)
        except MoneyError:
            raise Refuse("bad amount") from None
        try:  # the service compares amount and currency with the payment's, and credits it once
            outcome = set_paid(payment_id, amount=amount, currency=params.get("currency", ""), source=SOURCE,
                               data=params, external_id=params.get("operation_id") or None,
                               answer=lambda outcome: MISMATCH if outcome.result == "fraud" else OK)
        except IllegalTransition as exc:  # flagged as fraud before: a repeat hears the same answer
            raise Refuse(str(exc), answer=MISMATCH) from None
        return Answer(MISMATCH, 400) if outcome.result == "fraud" else Answer(OK)  # fraud: flagged, not credited
    if status == "failed":
        try:
            set_cancelled(payment_id, source=SOURCE, reason="the gateway reported a failure", data=params, answer=OK)
        except IllegalTransition as exc:  # a late failure never undoes a paid payment
            record_event(payment_id, kind="notification", source=SOURCE, outcome=f"ignored: {exc}", data=params,
                         answer=OK)
        return Answer(OK)
    raise Refuse(f"unknown status {status[:20]!r}", answer="bad status")


# The payer's browser coming back: recorded, changes nothing, sent on to billcore's return page.
success = gateway_return(KEY, source="skeletonsuccess", id_field="order_id", outcome="success", fields=("order_id",))
fail = gateway_return(KEY, source="skeletonfail", id_field="order_id", outcome="fail", fields=("order_id",))


def blueprint() -> Blueprint:
    """The module's routes (made per app); paths as the gateway is told them in the gateway setup."""
    bp = Blueprint(KEY, __name__)
    bp.add_url_rule(RESULT, view_func=notification, methods=["POST"])  # TODO(gateway): GET if it notifies so
    bp.add_url_rule(SUCCESS, view_func=success, methods=["GET", "POST"])
    bp.add_url_rule(FAIL, view_func=fail, methods=["GET", "POST"])
    return bp
