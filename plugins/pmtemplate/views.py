"""The module's routes: the redirect script, the fake gateway's page, the notification and return pages.

BILLmanager calls its gateway scripts ``/mancgi/<name>``; billcore keeps the habit so admins recognise
them. Paths carry no prefix: the gateway is given absolute URLs (see ``billcore_gateway_setup``).

* ``/mancgi/tplpayment?elid=<id>``  the client's browser starts here (``billcore_start_payment``)
* ``/fakegw/pay``                   the fake gateway's payment page (stands in for the real gateway;
                                    development and testing only, see :func:`fake_gateway_enabled`)
* ``/mancgi/tplresult``             the gateway's signed server-to-server notification (CSRF exempt)
* ``/mancgi/tplsuccess?elid=<id>``  the browser's return after paying (unsigned: changes nothing)
* ``/mancgi/tplfail?elid=<id>``     the browser's return after a failure (unsigned: changes nothing)
"""
from __future__ import annotations

import threading
from urllib.parse import urlencode

from flask import (Blueprint, Flask, Response, abort, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from billcore.gateway import (IllegalTransition, Payment, PaymentMethod, Status, cap_body, client_required,
                              development_mode, file_logger, format_amount, full_settings, known_fields,
                              record_event, rollback, row_id, session, set_in_pay)

from . import gateway
from .forms import as_bool
from .notification import KEY, handle_notification
from .signing import signed, verify

PAYABLE = (Status.NEW.value, Status.INPAY.value)


def base_url() -> str:
    """The public absolute URL of this installation (``BASE_URL``, else the URL of this request)."""
    return current_app.config.get("BASE_URL") or request.url_root.rstrip("/")


def payment_page(payment_id: int, outcome: str | None = None) -> str:
    """Where the client's browser goes back to: the checkout's return page for ``outcome`` (``success``,
    ``fail``, ``pending``: it shows the real status and polls while the payment is open), else the
    client's payment page, else the dashboard (whichever the installed checkout provides)."""
    views = current_app.view_functions
    if outcome and "checkout.payment_return" in views:
        return url_for("checkout.payment_return", payment_id=payment_id, outcome=outcome)
    rules = current_app.url_map._rules_by_endpoint.get("checkout.payment")  # noqa: SLF001
    if rules:
        argument = next(iter(rules[0].arguments), "payment_id")
        return url_for("checkout.payment", **{argument: payment_id})
    return url_for("checkout.dashboard")


def _own_payment(payment_id: int | None) -> Payment | None:
    """The payment when it exists and belongs to this module."""
    payment = session().get(Payment, payment_id) if payment_id else None
    if payment is None or payment.paymethod.module != KEY:
        return None
    return payment


@client_required
def tplpayment():
    """The redirect script: mark the client's payment ``inpay`` and send the browser to the gateway."""
    log = file_logger("tplpayment")
    payment_id = request.args.get("elid", type=row_id)
    payment = _own_payment(payment_id)
    # Someone else's payment looks exactly like a missing one: do not confirm it exists.
    if payment is None or payment.account_id != current_user.account_id or not payment.paymethod.active:
        log.warning("payment %s: refused to user %s (not found, not theirs or method off)",
                    payment_id, current_user.id)
        abort(404)
    if payment.status not in PAYABLE:
        log.info("payment %s: not payable (%s)", payment.id, payment.status)
        flash(_("This payment can no longer be paid."), "error")
        return redirect(payment_page(payment.id))
    method = payment.paymethod
    settings = full_settings(method)
    gateway_url = str(settings.get("gateway_url") or "").rstrip("/")
    if not gateway_url and f"{KEY}.fakegw_pay" not in current_app.view_functions:
        # No gateway URL and no fake gateway (a production install): there is nowhere to send the client.
        log.error("payment %s: method %s has no gateway URL and the fake gateway is off", payment.id, method.id)
        flash(_("This payment method is not configured yet. Please choose another one."), "error")
        return redirect(payment_page(payment.id))
    try:
        set_in_pay(payment.id, source="pmtemplate tplpayment", actor=current_user.email,
                           data={"user_id": current_user.id})
    except IllegalTransition as exc:  # paid or cancelled meanwhile
        log.info("payment %s: %s", payment.id, exc)
        return redirect(payment_page(payment.id))
    base = base_url()
    params = {
        "merchant_id": settings.get("merchant_id", ""),
        "payment_id": str(payment.id),
        "amount": format_amount(payment.total, payment.currency),
        "currency": payment.currency,
        "description": payment.description or _("Payment %(id)s", id=payment.id),
        "test": "1" if as_bool(settings.get("test_mode")) else "0",
        "result_url": f"{base}/mancgi/tplresult",
        "success_url": f"{base}/mancgi/tplsuccess?elid={payment.id}",
        "fail_url": f"{base}/mancgi/tplfail?elid={payment.id}",
        "return_url": base + payment_page(payment.id, "pending"),
    }
    # Blank gateway URL: the fake gateway inside this billcore (a relative URL keeps the same host).
    target = (gateway_url + "/fakegw/pay") if gateway_url else url_for(f"{KEY}.fakegw_pay")
    log.info("payment %s: sent to the gateway (%s %s)", payment.id, params["amount"], payment.currency)
    return redirect(target + "?" + urlencode(signed(params, str(settings.get("secret") or ""))))


# ---------------------------------------------------------------------------------------------------
# The fake gateway. Everything below stands in for the real gateway's site: a real module has none of it.
# ---------------------------------------------------------------------------------------------------

FAKEGW_ACTIONS = ("pay", "pay_silent", "fail", "pending")


def _merchant_secret(params) -> str | None:
    """The secret of the merchant that signed ``params`` (the fake gateway's merchant registry is the
    set of this module's payment methods), or None when no merchant's secret verifies them."""
    merchant = params.get("merchant_id")
    methods = session().execute(select(PaymentMethod).where(PaymentMethod.module == KEY)).scalars()
    for method in methods:
        settings = full_settings(method)
        secret = str(settings.get("secret") or "")
        if settings.get("merchant_id") == merchant and verify(params, secret):
            return secret
    return None


def deliver_notification(params: dict[str, str], url: str) -> tuple[str, int] | None:
    """Send the signed notification to billcore, as the gateway's server would.

    By default it is delivered in-process (a direct call of the notification handler): that works under
    the test client and on a single-threaded development server, which could not answer an HTTP request
    to itself while it is busy with this one. With ``PMTEMPLATE_NOTIFY_HTTP = True`` (a real, multi-worker
    server) it is POSTed to ``result_url`` with ``requests`` from a background thread; the answer is only
    logged then, and this returns None.
    """
    log = file_logger(KEY)
    if current_app.config.get("PMTEMPLATE_NOTIFY_HTTP"):
        def post() -> None:
            import requests

            session = requests.Session()
            session.trust_env = False  # the gateway calls billcore directly, not through our HTTP proxy
            try:
                resp = session.post(url, data=params, timeout=10)
                log.info("fake gateway: notification for payment %s answered %s", params["payment_id"],
                         resp.status_code)
            except requests.RequestException as exc:
                log.warning("fake gateway: notification for payment %s failed: %s", params["payment_id"],
                            type(exc).__name__)

        threading.Thread(target=post, daemon=True).start()
        return None
    # End the request's read transaction first: the service writes through its own session.
    rollback()
    body, status = handle_notification(params)
    log.info("fake gateway: notification for payment %s answered %s %s", params["payment_id"], status, body)
    return body, status


def fakegw_pay():
    """The fake gateway's payment page: GET shows Pay / Fail / Leave pending, POST acts on the choice."""
    log = file_logger(KEY)
    params = {k: v for k, v in (request.form if request.method == "POST" else request.args).items()
              if k not in ("action", "csrf_token")}
    secret = _merchant_secret(params)
    if secret is None:
        log.warning("fake gateway: request for payment %s with a bad signature", params.get("payment_id"))
        return Response(_("The payment request is not signed by a known merchant."), 400,
                        mimetype="text/plain")
    try:
        payment_id = row_id(params.get("payment_id", ""))
    except ValueError:
        abort(400)
    op = gateway.open_operation(params["merchant_id"], payment_id, params.get("amount", ""),
                                params.get("currency", ""), params.get("description", ""), params.get("test") == "1")
    if request.method == "GET":
        return render_template("pmtemplate/fakegw.html", params=params, op=op)
    action = request.form.get("action")
    if action not in FAKEGW_ACTIONS:
        abort(400)
    log.info("fake gateway: payment %s op %s: %s", params["payment_id"], op["op_id"], action)
    if action in ("pay", "pay_silent"):
        op = gateway.set_state(op["op_id"], gateway.PAID)
        if action == "pay":  # "pay_silent" loses the notification: the status check must find the money
            notification = signed({"merchant_id": op["merchant_id"], "payment_id": str(op["payment_id"]),
                                   "op_id": op["op_id"], "amount": op["amount"], "currency": op["currency"],
                                   "state": gateway.PAID, "test": str(op["test"])}, secret)
            deliver_notification(notification, params["result_url"])
        return redirect(params["success_url"])
    if action == "fail":
        gateway.set_state(op["op_id"], gateway.FAILED)
        return redirect(params["fail_url"])
    return redirect(params["return_url"])  # "pending": nothing is sent


# ---------------------------------------------------------------------------------------------------
# Back in billcore: the notification and the browser's return pages.
# ---------------------------------------------------------------------------------------------------


@cap_body("CALLBACK_MAX_CONTENT_LENGTH")  # outside input is bounded before it is parsed
def tplresult():
    """The gateway's signed notification; plain-text answer (``OK`` when accepted or repeated)."""
    body, status = handle_notification(request.form)
    return Response(body, status, mimetype="text/plain")


def _return_page(kind: str, message: str, category: str):
    """A browser's return from the gateway: unsigned, so it is recorded and changes nothing."""
    log = file_logger(f"tpl{kind}")
    payment = _own_payment(request.args.get("elid", type=row_id))
    if payment is None:
        log.warning("unknown payment %s", request.args.get("elid"))
        return redirect(url_for("main.index"))
    record_event(payment.id, kind="return", source=f"pmtemplate tpl{kind}",
                         outcome=f"client returned ({kind}); payment is {payment.status}",
                         data=known_fields(request.args, ("elid",),
                                           max_length=int(current_app.config["CALLBACK_FIELD_MAX"])))
    log.info("payment %s: client returned (%s), status %s", payment.id, kind, payment.status)
    target = payment_page(payment.id, kind)
    if "checkout.payment_return" not in current_app.view_functions:
        flash(message, category)  # the checkout's return page says it itself
    return redirect(target)


def tplsuccess():
    """Where the gateway sends the browser after paying."""
    return _return_page("success", _("Thank you! The payment will be credited as soon as the gateway "
                                     "confirms it."), "info")


def tplfail():
    """Where the gateway sends the browser when the payment failed or was abandoned."""
    return _return_page("fail", _("The payment was not completed."), "error")


def fake_gateway_enabled(app: Flask) -> bool:
    """True when ``app`` may serve the fake gateway's page: in development and testing only (debug,
    ``TESTING`` or ``DEV_MODULES``), the same switch that lets development-only modules load. A production
    install that names this module in ``PAYMENT_MODULES`` never serves a page that fakes a payment."""
    return development_mode(app)


def register(app: Flask) -> list[Blueprint]:
    """The module's blueprint (made per app), with the gateway-facing views exempt from CSRF (they are
    signed). The fake gateway's page is only added by :func:`fake_gateway_enabled`."""
    bp = Blueprint(KEY, __name__, template_folder="templates")
    bp.add_url_rule("/mancgi/tplpayment", view_func=tplpayment)
    bp.add_url_rule("/mancgi/tplresult", view_func=tplresult, methods=["POST"])
    bp.add_url_rule("/mancgi/tplsuccess", view_func=tplsuccess)
    bp.add_url_rule("/mancgi/tplfail", view_func=tplfail)
    csrf = app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(tplresult)
    if fake_gateway_enabled(app):
        bp.add_url_rule("/fakegw/pay", view_func=fakegw_pay, methods=["GET", "POST"])
        if csrf is not None:
            csrf.exempt(fakegw_pay)  # the fake gateway is "another site": its form is protected by the signature
    return [bp]
