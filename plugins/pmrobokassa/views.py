"""Robokassa's routes: the redirect script and the three gateway callbacks (BILLmanager's mancgi).

``/mancgi/rkpayment`` sends the payer to the gateway; ``/mancgi/rkresult`` is the server-to-server
notification that credits a payment (Password #2); ``/mancgi/rksuccess`` (Password #1) and
``/mancgi/rkfail`` (unsigned) only bring the payer back. Every change goes through the payment service;
every request is recorded as a payment event and one line in its log file.
"""
from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from typing import Any

from flask import (Blueprint, Response, abort, current_app, redirect, render_template, request, url_for)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.routing import BuildError

from flask_wtf import FlaskForm

from billcore.gateway import (MAX_ID, CallbackContext, IllegalTransition, Payment, PaymentMethod, PaymentNotFound,
                              Status, allow, callback_context, cap_body, client_address, client_required, full_settings,
                              known_fields, record_event, rollback, session, set_in_pay, set_paid)

from . import protocol
from .common import (CURRENCY, KEY, LOG_FAIL, LOG_PAYMENT, LOG_RESULT, LOG_SUCCESS, algorithm, config,
                     endpoints, log_line)
from .payform import payment_fields

bp = Blueprint("pmrobokassa", __name__, template_folder="templates", static_folder="static",
               static_url_path="/pmrobokassa/static")

INV_ID_RE = re.compile(r"[1-9][0-9]{0,17}")
CALLBACK_METHODS = ["GET", "POST"]
# What Robokassa sends to ResultURL, SuccessURL and FailURL; a refused callback records only these
# (each cut to CALLBACK_FIELD_MAX characters) and the shop's own Shp_ parameters.
PROTOCOL_FIELDS = ("InvId", "OutSum", "SignatureValue", "Culture", "IsTest", "IncCurrLabel", "PaymentMethod",
                   "IncSum", "Fee", "EMail", "OpKey", "CurrLabel")


class Rejected(Exception):
    """A callback refused before anything changed: HTTP status, text, and the payment when known."""

    def __init__(self, status: int, message: str, payment_id: int | None = None):
        super().__init__(message)
        self.status, self.message, self.payment_id = status, message, payment_id


def _text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


def _params() -> dict[str, str]:
    """The callback's fields: the POST body, else the query string (first value of each name)."""
    source = request.form if request.method == "POST" and request.form else request.args
    return {name: source.get(name, "") for name in source.keys()}


def _address_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in config("PMROBOKASSA_ALLOWED_IPS") or ():
        try:
            if ip in ipaddress.ip_network(str(entry), strict=False):
                return True
        except ValueError:
            continue
    return False


def _inv_id(params: Mapping[str, str], payment_hint: int | None = None) -> int:
    raw = params.get("InvId")
    if raw is None or raw == "":
        raise Rejected(400, "missing field InvId", payment_hint)
    if not INV_ID_RE.fullmatch(raw):
        raise Rejected(400, "malformed field InvId", payment_hint)
    if int(raw) > MAX_ID:  # a valid Robokassa InvId, but beyond any payment id billcore can have
        raise Rejected(404, f"unknown payment {raw}", payment_hint)
    return int(raw)


def _require(params: Mapping[str, str], *names: str, payment_id: int | None = None) -> None:
    for name in names:
        if not params.get(name):
            raise Rejected(400, f"missing field {name}", payment_id)


def _load(payment_id: int) -> CallbackContext:
    """The payment and its method's settings (one query); refuses unknown payments and payments of
    other modules."""
    found = callback_context(payment_id)
    if found is None:
        raise Rejected(404, f"unknown payment {payment_id}")
    _check_module(found)
    return found


def _check_module(found: CallbackContext) -> None:
    if found.module != KEY:
        raise Rejected(400, f"payment {found.payment_id} is not a Robokassa payment", found.payment_id)


def _facts(params: Mapping[str, str]) -> dict[str, Any]:
    # What goes into a log line: the identifying fields only, never the whole request.
    return {k: params.get(k) for k in ("InvId", "OutSum", "IncCurrLabel", "PaymentMethod", "IsTest")}


def _record(payment_id: int | None, *, kind: str, source: str, outcome: str, data: Mapping[str, Any],
            answer: str | None = None) -> bool:
    """Record an event; False when that failed (database down or locked: the log line is all that
    remains, and the caller decides whether to answer 503)."""
    try:
        record_event(payment_id, kind=kind, source=source, outcome=outcome, data=data, answer=answer)
    except SQLAlchemyError:
        rollback()
        current_app.logger.exception("could not record a %s event", source)
        return False
    return True


def _record_refused(stem: str, payment_id: int | None, *, kind: str, outcome: str, params: Mapping[str, str],
                    answer: str | None = None) -> bool:
    """Record a refused callback, bounded: only the protocol's fields, each cut short, with a count of
    what was dropped; and at most ``CALLBACK_REFUSED_RECORDS`` per script and payment (or unknown payment)
    and ``CALLBACK_REFUSED_RECORDS_TOTAL`` per script in a window, so a flood of refused requests grows
    the database by a bounded amount per minute whatever ids it names. Beyond the limits the log line
    says it was not recorded. False when the database could not take the record."""
    limits = current_app.config
    if not (allow(limits["CALLBACK_REFUSED_RECORDS"], "refused", stem, str(payment_id or "-"))
            and allow(limits["CALLBACK_REFUSED_RECORDS_TOTAL"], "refused", stem)):
        log_line(stem, payment_id, "refused callback not recorded: too many in a short time", logging.WARNING)
        return True
    data = known_fields(params, PROTOCOL_FIELDS, prefixes=("Shp_", "shp_"),
                        max_length=int(current_app.config["CALLBACK_FIELD_MAX"]))
    return _record(payment_id, kind=kind, source=stem, outcome=outcome[:255], data=data, answer=answer)


def _return_url(payment_id: int, outcome: str) -> str:
    try:
        return url_for("checkout.payment_return", payment_id=payment_id, outcome=outcome)
    except BuildError:  # the checkout's return page is not there (yet): the client's dashboard
        return url_for("checkout.dashboard")


def _error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", code=status, error=message), status


# --------------------------------------------------------------------------------------------------
# /mancgi/rkpayment: the redirect script
# --------------------------------------------------------------------------------------------------


def _culture() -> str:
    language = getattr(current_user, "language", None) or str(get_locale() or "en")
    return "ru" if language.lower().startswith("ru") else "en"


class ContinueForm(FlaskForm):
    """The "continue to the payment system" button: a POST with a CSRF token."""


def _own_payment(elid: str) -> Payment:
    """The current client's payment ``elid``; 404 for anyone else's, unknown or malformed ids."""
    payment_id = int(elid) if INV_ID_RE.fullmatch(elid) and int(elid) <= MAX_ID else None
    row = session().get(Payment, payment_id) if payment_id is not None else None
    if row is None or row.account_id != current_user.account_id:
        log_line(LOG_PAYMENT, elid[:20] or None, "refused: no such payment of this client", user=current_user.id)
        abort(404)
    return row


@bp.route("/mancgi/rkpayment", methods=["GET"])
@client_required
def payment_page():
    """A link to the redirect script (from an e-mail, a bookmark): only a button that continues by POST.

    A GET changes nothing, so another site cannot start a payment by linking here.
    """
    row = _own_payment(request.args.get("elid", "")[:40])
    return render_template("pmrobokassa/continue.html", payment=row, form=ContinueForm())


@bp.route("/mancgi/rkpayment", methods=["POST"])
@client_required
def payment():
    """Mark the client's payment ``inpay`` and send the browser to Robokassa with a signed POST form.

    Reached by a POST with the session's CSRF token (the checkout's form, or the button of
    :func:`payment_page`); the global CSRF protection refuses any other.
    """
    elid = request.form.get("elid", "")[:40]
    row = _own_payment(elid)
    method = session().get(PaymentMethod, row.paymethod_id)
    if method is None or method.module != KEY:
        log_line(LOG_PAYMENT, row.id, "refused: not a Robokassa payment")
        abort(404)
    if not method.active:
        log_line(LOG_PAYMENT, row.id, "refused: payment method disabled")
        return _error_page(409, _("This payment method is disabled. Please choose another one."))
    if row.status not in (Status.NEW.value, Status.INPAY.value):
        log_line(LOG_PAYMENT, row.id, f"refused: payment is {row.status}")
        return _error_page(409, _("This payment cannot be paid any more (its status is %(status)s).",
                                  status=row.status))
    settings = full_settings(method)
    if not settings.get("identifier") or not settings.get("password1"):
        log_line(LOG_PAYMENT, row.id, "refused: payment method not configured", logging.ERROR)
        return _error_page(503, _("This payment method is not configured yet. Please choose another one."))
    fields = payment_fields(row, settings, email=current_user.email, culture=_culture())
    action = endpoints(settings).payment_url
    outcome = set_in_pay(row.id, source="rkpayment", actor=current_user.email,
                                 data={"url": action, **{k: v for k, v in fields if k != "Receipt"}})
    log_line(LOG_PAYMENT, row.id, "redirected to the gateway" + (" again" if outcome.already else ""),
             out_sum=dict(fields)["OutSum"], url=action, test=bool(settings.get("test_mode")))
    return render_template("pmrobokassa/redirect.html", action=action, fields=fields, payment=row)


# --------------------------------------------------------------------------------------------------
# /mancgi/rkresult: the notification
# --------------------------------------------------------------------------------------------------


@bp.route("/mancgi/rkresult", methods=CALLBACK_METHODS)
@cap_body("CALLBACK_MAX_CONTENT_LENGTH")
def result():
    """Robokassa's ResultURL: verify with Password #2, credit once, answer ``OK<InvId>``."""
    params = _params()
    try:
        return _result(params)
    except Rejected as exc:
        log_line(LOG_RESULT, exc.payment_id, f"rejected ({exc.status}): {exc.message}", logging.WARNING,
                 address=client_address(), **_facts(params))
        _record_refused(LOG_RESULT, exc.payment_id, kind="notification", outcome=f"rejected: {exc.message}",
                        params=params, answer=exc.message)
        return _text(exc.message, exc.status)
    except SQLAlchemyError as exc:
        # The database failed: nothing was committed; a non-OK 5xx makes Robokassa repeat later.
        rollback()
        log_line(LOG_RESULT, params.get("InvId", "")[:20] or None, f"database failure, answered 503: "
                 f"{type(exc).__name__}", logging.ERROR, **_facts(params))
        return _text("temporary failure, please retry", 503)
    except Exception as exc:  # a bug must still answer non-OK (Robokassa retries) and leave a trace
        rollback()
        current_app.logger.exception("rkresult failed")
        log_line(LOG_RESULT, params.get("InvId", "")[:20] or None, f"internal error, answered 500: "
                 f"{type(exc).__name__}", logging.ERROR, **_facts(params))
        return _text("internal error, please retry", 500)


def _result(params: dict[str, str]) -> Response:
    address = client_address()
    if config("PMROBOKASSA_CHECK_IP") and not _address_allowed(address):
        raise Rejected(403, f"address {address} is not one of Robokassa's")
    payment_id = _inv_id(params)
    _require(params, "OutSum", "SignatureValue", payment_id=payment_id)
    try:
        amount = protocol.parse_amount(params["OutSum"], "OutSum")
    except protocol.MalformedField:
        raise Rejected(400, "malformed field OutSum", payment_id) from None

    def verify(found: CallbackContext) -> None:
        # Run by the service under the payment's lock: the payment is read once, in the transaction
        # that credits it. Raising Rejected rolls it back with nothing written.
        _check_module(found)
        settings = found.settings
        try:
            valid = protocol.verify_result_params(params, algorithm=algorithm(settings),
                                                  password2=str(settings.get("password2") or ""))
        except protocol.UnsupportedAlgorithm:
            raise Rejected(500, "the payment method's hash algorithm is misconfigured", payment_id) from None
        if not valid:
            raise Rejected(400, "bad signature", payment_id)
        if params.get("IsTest", "").strip().lower() in ("1", "true") and not settings.get("test_mode"):
            # A test payment moves no money: it must never credit a method that is in live mode, even
            # when the shop's test and live passwords happen to be the same.
            raise Rejected(400, "test payment for a payment method in live mode", payment_id)

    ok = protocol.result_answer(payment_id)
    # kept with the credit, in its transaction, for polling and refunds later
    gateway_facts = {name: params[key] for key, name in (
        ("IncCurrLabel", "inc_curr_label"), ("PaymentMethod", "payment_method"), ("Fee", "fee"),
        ("IncSum", "inc_sum"), ("OpKey", "op_key"), ("IsTest", "is_test")) if params.get(key)}
    try:
        outcome = set_paid(
            payment_id, amount=amount, currency=CURRENCY, source="rkresult", data=params,
            gateway_data=gateway_facts, verify=verify,
            answer=lambda o: ok if o.result != "fraud" else f"ERROR: {o.message}")
    except PaymentNotFound:
        raise Rejected(404, f"unknown payment {payment_id}") from None
    except IllegalTransition as exc:
        # e.g. a payment already flagged as fraud: an admin decides, Robokassa gets no OK.
        message = f"payment {payment_id} is {exc.current}: not credited"
        log_line(LOG_RESULT, payment_id, f"refused (409): {message}", logging.WARNING, **_facts(params))
        _record_refused(LOG_RESULT, payment_id, kind="notification", outcome=f"refused: {message}",
                        params=params, answer=message)
        return _text(message, 409)
    if outcome.result == "fraud":
        log_line(LOG_RESULT, payment_id, f"fraud: {outcome.message}", logging.ERROR, **_facts(params))
        return _text(f"ERROR: {outcome.message}", 400)
    log_line(LOG_RESULT, payment_id, "credited" if outcome.changed else "repeat, already credited",
             answer=ok, **_facts(params))
    return _text(ok)


# --------------------------------------------------------------------------------------------------
# /mancgi/rksuccess and /mancgi/rkfail: the payer comes back
# --------------------------------------------------------------------------------------------------


@bp.route("/mancgi/rksuccess", methods=CALLBACK_METHODS)
@cap_body("CALLBACK_MAX_CONTENT_LENGTH")
def success():
    """The payer's return after paying: check Password #1's signature, then show the payment page.

    Never credits: only the notification does (docs/robokassa.md §4.1).
    """
    params = _params()
    try:
        payment_id = _inv_id(params)
        _require(params, "OutSum", "SignatureValue", payment_id=payment_id)
        found = _load(payment_id)
        status, settings = found.status, found.settings
        if not protocol.verify_success_params(params, algorithm=algorithm(settings),
                                              password1=str(settings.get("password1") or "")):
            raise Rejected(400, "bad signature", payment_id)
    except Rejected as exc:
        log_line(LOG_SUCCESS, exc.payment_id, f"rejected ({exc.status}): {exc.message}", logging.WARNING,
                 **_facts(params))
        if not _record_refused(LOG_SUCCESS, exc.payment_id, kind="return", outcome=f"rejected: {exc.message}",
                               params=params):
            return _unavailable(LOG_SUCCESS, exc.payment_id, params)
        return _error_page(exc.status, _("This return link is not valid (%(reason)s). Your payment, if "
                                         "made, will be credited when Robokassa notifies us.",
                                         reason=exc.message))
    except SQLAlchemyError:
        rollback()
        log_line(LOG_SUCCESS, None, "database failure", logging.ERROR, **_facts(params))
        return _error_page(503, _("The service is temporarily unavailable. Please try again shortly."))
    if not _record(payment_id, kind="return", source="rksuccess",
                   outcome=f"success return; payment is {status}", data=params):
        return _unavailable(LOG_SUCCESS, payment_id, params)
    log_line(LOG_SUCCESS, payment_id, f"success return, payment is {status}", **_facts(params))
    return redirect(_return_url(payment_id, "success"))


@bp.route("/mancgi/rkfail", methods=CALLBACK_METHODS)
@cap_body("CALLBACK_MAX_CONTENT_LENGTH")
def fail():
    """The payer's return after a refused or abandoned payment. Unsigned, so it changes nothing, and it
    answers the same whatever the id: the browser goes on to the checkout's return page (which shows a
    payment to its owner only), so an anonymous caller cannot learn which payments exist or whose they are.
    The return is recorded (bounded, like every unsigned input), or the answer is 503."""
    params = _params()
    raw = params.get("InvId", "")
    payment_id = int(raw) if INV_ID_RE.fullmatch(raw) and int(raw) <= MAX_ID else None
    try:
        found = callback_context(payment_id) if payment_id is not None else None
    except SQLAlchemyError:
        rollback()
        return _unavailable(LOG_FAIL, None, params)
    known = found if found is not None and found.module == KEY else None
    if known is None:
        log_line(LOG_FAIL, raw[:20] or None, "fail return for no Robokassa payment", logging.WARNING, **_facts(params))
        recorded = _record_refused(LOG_FAIL, None, kind="return", params=params,
                                   outcome="fail return (unsigned) for no Robokassa payment")
    else:
        log_line(LOG_FAIL, payment_id, f"fail return, nothing changed, payment is {known.status}", **_facts(params))
        recorded = _record_refused(LOG_FAIL, payment_id, kind="return", params=params,
                                   outcome=f"fail return (unsigned, nothing changed); payment is {known.status}")
    if not recorded:
        return _unavailable(LOG_FAIL, payment_id, params)
    return redirect(_return_url(payment_id, "fail") if payment_id is not None else url_for("checkout.dashboard"))


def _unavailable(stem: str, payment_id: int | None, params: Mapping[str, str]) -> tuple[str, int]:
    """The database could not record a return: 503, so the browser (or the payer) tries again."""
    log_line(stem, payment_id, "database failure, return not recorded, answered 503", logging.ERROR,
             **_facts(params))
    return _error_page(503, _("The service is temporarily unavailable. Please try again shortly."))


CALLBACK_VIEWS = (result, success, fail)
