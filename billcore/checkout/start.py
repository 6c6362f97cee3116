"""The payment door's customer side: the core sends a customer's payment to its gateway.

Every module used to do this itself in a "redirect script" (check the owner, the method, the status, mark
the payment ``inpay``, build the gateway's request); now the core does the checks and the bookkeeping the
same way for every gateway, and a module's ``billcore_start_payment`` only says what the gateway's request
is (:class:`~billcore.paymodule.StartAction`): a URL to redirect to, or a form to POST.

Called from the checkout's confirming POST and the payment page's Pay button, both protected by the
session's CSRF token, for a payment the caller has already checked belongs to the logged-in customer.
"""
from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, render_template, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user

from ..crypto import scrub
from ..db import db
from ..limits import known_fields
from ..models import Payment, PaymentMethod
from ..paymethods import full_settings
from ..paymodule import Customer, StartAction, StartRefused
from ..payments import service
from ..plugins import get_registry
from ..states import Status
from .access import pay_refusal

OPEN_STATUSES = (Status.NEW, Status.INPAY)
# What the ``inpay`` event keeps of the gateway's request (it is the module's output, not the customer's,
# but a module's mistake must not grow the events table without bound either).
MAX_RECORDED_FIELDS = 50
MAX_FIELD_NAME = 64
MAX_RECORDED_URL = 500


def customer() -> Customer:
    """The logged-in customer, as a start hook sees them."""
    language = getattr(current_user, "language", None) or str(get_locale() or "en")
    return Customer(user_id=current_user.id, email=current_user.email,
                    language="ru" if language.lower().startswith("ru") else "en")


def _back(payment: Payment, message: str, category: str = "error"):
    flash(message, category)
    return redirect(url_for("checkout.payment", payment_id=payment.id))


def _recorded(action: StartAction, secrets: list[str]) -> dict[str, Any]:
    """What the ``inpay`` event keeps of the gateway's request: where it went and its fields, bounded (at
    most ``MAX_RECORDED_FIELDS`` fields with short names, each value cut to ``CALLBACK_FIELD_MAX``; a receipt
    can be long). The method's ``secrets`` are masked before anything is cut (a cut could keep half of one),
    should a module have put one in its request by mistake."""
    url = scrub(action.url, secrets)
    fields = scrub(dict(action.fields), secrets)
    names = [name for name in fields if len(name) <= MAX_FIELD_NAME][:MAX_RECORDED_FIELDS]
    kept = known_fields(fields, names, max_length=int(current_app.config.get("CALLBACK_FIELD_MAX") or 256))
    # last, so that a field called "url" or "method" cannot stand for them
    return {**kept, "url": url[:MAX_RECORDED_URL], "method": action.method.upper()[:10]}


def start_payment(payment: Payment):
    """Send the customer's browser to the gateway for ``payment`` (a response for the view to return).

    Refuses, with a message on the payment's page, a payment that is no longer open, one whose automatic
    charge is under way, a disabled method or an unloaded module. Then asks the module for the gateway's
    request (the module may refuse with :class:`StartRefused`, e.g. when the method is not configured),
    marks the payment ``inpay`` (the start is recorded as its event) and answers a redirect (GET) or an
    auto-submitting form (POST).
    """
    if payment.status not in OPEN_STATUSES:
        return _back(payment, _("This payment can no longer be paid."))
    refusal = pay_refusal(payment)
    if refusal:
        return _back(payment, refusal)
    method = db.session.get(PaymentMethod, payment.paymethod_id)
    registry = get_registry()
    if method is None or not method.active or method.module not in registry.modules:
        return _back(payment, _("This payment method is no longer available. Please cancel the payment and start "
                                "a new one."))
    settings = full_settings(method)
    info = registry.info(method.module)
    secrets = [str(settings[name]) for name in (info.secret_fields if info else ()) if settings.get(name)]
    try:
        action = registry.call(method.module, "billcore_start_payment", payment=payment, paymethod=method,
                               settings=settings, customer=customer())
    except StartRefused as exc:
        current_app.logger.info("module %s refused to start payment %s: %s", method.module, payment.id, exc)
        return _back(payment, str(exc))
    except Exception:  # a broken module must not show the customer a stack trace
        current_app.logger.exception("module %s failed to start payment %s", method.module, payment.id)
        action = None
    if not isinstance(action, StartAction):
        return _back(payment, _("The payment system is not available at the moment. Please try again later."))
    try:
        service.set_in_pay(payment.id, source="checkout", actor=current_user.email, data=_recorded(action, secrets))
    except service.IllegalTransition:  # paid or cancelled meanwhile
        db.session.expire_all()
        return _back(payment, _("This payment can no longer be paid."))
    if action.method.upper() == "POST":
        return render_template("client/redirect.html", action=action, payment=payment)
    return redirect(action.url)
