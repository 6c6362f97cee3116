"""The module's routes: the fake gateway's page, the notification and the return pages.

BILLmanager calls its gateway scripts ``/mancgi/<name>``; billcore keeps the habit so admins recognise
them. Paths carry no prefix: the gateway is given absolute URLs (see ``billcore_gateway_setup``). The
customer's way to the gateway is the core's (its payment door calls ``billcore_start_payment``, see
:func:`start_action`), so the module serves only what the gateway and the returning browser call:

* ``/fakegw/pay``                   the fake gateway's payment page (stands in for the real gateway;
                                    development and testing only, see :func:`fake_gateway_enabled`)
* ``/mancgi/tplresult``             the gateway's signed server-to-server notification
                                    (:func:`.notification.handle_notification`)
* ``/mancgi/tplsuccess?elid=<id>``  the browser's return after paying (unsigned: changes nothing)
* ``/mancgi/tplfail?elid=<id>``     the browser's return after a failure (unsigned: changes nothing)
"""
from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from billcore.gateway import (Customer, Payment, PaymentMethod, StartAction, StartRefused, development_mode,
                              file_logger, format_amount, full_settings, gateway_return, public_url, return_url,
                              rollback, row_id, session)

from . import gateway
from .forms import as_bool
from .notification import KEY, handle_notification
from .signing import signed, verify

RETURN_FIELDS = ("elid",)  # what the gateway puts on the return URLs


def start_action(payment: Payment, settings: dict[str, Any], customer: Customer) -> StartAction:
    """The gateway's payment page for ``payment``: a signed GET (the fake gateway's when no URL is set)."""
    gateway_url = str(settings.get("gateway_url") or "").rstrip("/")
    if not gateway_url and f"{KEY}.fakegw_pay" not in current_app.view_functions:
        # No gateway URL and no fake gateway (a production install): there is nowhere to send the client.
        file_logger("tplpayment").error("payment %s: no gateway URL and the fake gateway is off", payment.id)
        raise StartRefused(_("This payment method is not configured yet. Please choose another one."))
    params = {
        "merchant_id": settings.get("merchant_id", ""),
        "payment_id": str(payment.id),
        "amount": format_amount(payment.total, payment.currency),
        "currency": payment.currency,
        "description": payment.description or _("Payment %(id)s", id=payment.id),
        "test": "1" if as_bool(settings.get("test_mode")) else "0",
        "result_url": public_url("/mancgi/tplresult"),
        "success_url": public_url(f"/mancgi/tplsuccess?elid={payment.id}"),
        "fail_url": public_url(f"/mancgi/tplfail?elid={payment.id}"),
        "return_url": public_url(return_url(payment.id, "pending")),
    }
    # Blank gateway URL: the fake gateway inside this billcore (a relative URL keeps the same host).
    target = (gateway_url + "/fakegw/pay") if gateway_url else url_for(f"{KEY}.fakegw_pay")
    file_logger("tplpayment").info("payment %s: sent to the gateway (%s %s) for user %s", payment.id,
                                   params["amount"], payment.currency, customer.user_id)
    return StartAction(url=target + "?" + urlencode(signed(params, str(settings.get("secret") or ""))))


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
    # End the request's read transaction first: the service writes through its own session. The
    # notification goes through the real view (the core's checks included), as it would over HTTP.
    rollback()
    with current_app.test_request_context("/mancgi/tplresult", method="POST", data=params,
                                          environ_base={"REMOTE_ADDR": "127.0.0.1"}):
        response = handle_notification()
    body, status = response.get_data(as_text=True), response.status_code
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
# Back in billcore: the browser's return pages (the notification is .notification.handle_notification).
# ---------------------------------------------------------------------------------------------------

tplsuccess = gateway_return(KEY, source="pmtemplate tplsuccess", id_field="elid", outcome="success",
                            fields=RETURN_FIELDS, log_file="tplsuccess")
tplfail = gateway_return(KEY, source="pmtemplate tplfail", id_field="elid", outcome="fail", fields=RETURN_FIELDS,
                         log_file="tplfail")


def fake_gateway_enabled(app: Flask) -> bool:
    """True when ``app`` may serve the fake gateway's page: in development and testing only (debug,
    ``TESTING`` or ``DEV_MODULES``), the same switch that lets development-only modules load. A production
    install that names this module in ``PAYMENT_MODULES`` never serves a page that fakes a payment."""
    return development_mode(app)


def register(app: Flask) -> list[Blueprint]:
    """The module's blueprint (made per app). billcore exempts the notification and the return views from
    CSRF (they are made by ``gateway_callback``/``gateway_return``). The fake gateway's page is only added
    by :func:`fake_gateway_enabled`."""
    bp = Blueprint(KEY, __name__, template_folder="templates")
    # endpoints named after the scripts (pmtemplate.tplresult ...), as BILLmanager's admins know them
    bp.add_url_rule("/mancgi/tplresult", "tplresult", view_func=handle_notification, methods=["POST"])
    bp.add_url_rule("/mancgi/tplsuccess", "tplsuccess", view_func=tplsuccess)
    bp.add_url_rule("/mancgi/tplfail", "tplfail", view_func=tplfail)
    if fake_gateway_enabled(app):
        bp.add_url_rule("/fakegw/pay", view_func=fakegw_pay, methods=["GET", "POST"])
        csrf = app.extensions.get("csrf")
        if csrf is not None:
            csrf.exempt(fakegw_pay)  # the fake gateway is "another site": its form is protected by the signature
    return [bp]
