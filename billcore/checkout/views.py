"""Client-area views: dashboard, adding funds, the payments list and page, return pages and status JSON.

A client only ever sees its own account's payments: every lookup goes through
:func:`billcore.checkout.access.own_payment` (shared with the recurring pages), which answers 404 (not 403)
for someone else's payment so that ids cannot be probed.
"""
from __future__ import annotations

import secrets
from decimal import Decimal

from flask import (Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, session,
                   url_for)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from ..auth import client_required
from ..db import db
from ..models import Account, Payment, PaymentEvent, PaymentMethod, utcnow
from ..states import Status
from ..money import CURRENCIES, MoneyError, commission, format_amount, parse_amount
from ..payments import service
from ..plugins import get_registry
from .access import cancel_refusal, own_payment, pay_refusal
from .forms import ActionForm, AddFundsForm
from .start import start_payment
from ..args import row_id

bp = Blueprint("checkout", __name__)
# the pages show "Cancel payment" only when the cancel view below would not refuse it
bp.add_app_template_global(cancel_refusal, "payment_cancel_refusal")
bp.add_app_template_global(pay_refusal, "payment_pay_refusal")
bp.add_app_template_global(format_amount, "format_amount")

OPEN_STATUSES = (Status.NEW, Status.INPAY)  # a payment the client may still pay or cancel
RETURN_OUTCOMES = ("success", "fail", "pending")
RECENT_ON_DASHBOARD = 5
# Confirmations remembered in the session (token -> payment id): confirming the same page again, e.g.
# after the browser's Back from the gateway, sends the customer to the payment already made.
CONFIRMED_KEY = "checkout_confirmed"
CONFIRMED_KEEP = 10


def _language() -> str:
    return str(get_locale() or "en")


def _account() -> Account:
    account = db.session.get(Account, current_user.account_id)
    if account is None:  # a client user always has one; guard anyway
        abort(403)
    return account


def _available_methods(account: Account) -> list[PaymentMethod]:
    """Active payment methods in the account's currency whose module is loaded, in the admin's order."""
    modules = get_registry().modules
    rows = db.session.execute(
        select(PaymentMethod)
        .where(PaymentMethod.active.is_(True), PaymentMethod.currency == account.currency)
        .order_by(PaymentMethod.sort_order, PaymentMethod.id)
    ).scalars()
    return [m for m in rows if m.module in modules]


@bp.route("/dashboard")
@client_required
def dashboard():
    """The client's balance and currency, the latest payments and the "Add funds" button."""
    account = _account()
    recent = db.session.execute(
        select(Payment).where(Payment.account_id == account.id).order_by(Payment.id.desc()).limit(RECENT_ON_DASHBOARD)
    ).scalars().all()
    return render_template("client/dashboard.html", account=account, recent=recent, language=_language())


@bp.route("/payments")
@client_required
def payments():
    """The account's payments, newest first, paged by id (``?before=<id>``: keyset, no OFFSET)."""
    account = _account()
    size = int(current_app.config.get("CLIENT_PAGE_SIZE") or 20)
    before = request.args.get("before", type=row_id)
    query = select(Payment).where(Payment.account_id == account.id)
    if before:
        query = query.where(Payment.id < before)
    rows = db.session.execute(query.order_by(Payment.id.desc()).limit(size + 1)).scalars().all()
    next_before = rows[size - 1].id if len(rows) > size else None
    return render_template("client/payments.html", account=account, payments=rows[:size], before=before,
                           next_before=next_before, language=_language())


@bp.route("/payments/<int:payment_id>")
@client_required
def payment(payment_id: int):
    """One payment: amounts, status, its status history and the actions still possible."""
    item = own_payment(payment_id)
    history = db.session.execute(
        select(PaymentEvent)
        .where(PaymentEvent.payment_id == item.id, PaymentEvent.status_to.is_not(None))
        .order_by(PaymentEvent.id)
    ).scalars().all()
    return render_template("client/payment.html", payment=item, history=history, action_form=ActionForm(),
                           is_open=item.status in OPEN_STATUSES, language=_language())


def _method_view(method: PaymentMethod, language: str) -> dict:
    """What the add-funds page shows about a method, and the figures ``checkout.js`` computes with."""
    cur = method.currency
    return {
        "method": method,
        "name": method.display_name(language),
        "description": method.display_description(language),
        "fixed": format_amount(method.commission_amount or Decimal(0), cur),
        "percent": format((method.commission_percent or Decimal(0)).normalize(), "f"),
        "min": format_amount(method.min_amount, cur) if method.min_amount is not None else "",
        "max": format_amount(method.max_amount, cur) if method.max_amount is not None else "",
        "digits": CURRENCIES[cur],
        "recurring": _recurring_refusal(method) is None,
        "min_value": method.min_amount, "max_value": method.max_amount,
        "fixed_value": method.commission_amount or Decimal(0), "percent_value": method.commission_percent or Decimal(0),
    }


def check_amount(text: str, method: PaymentMethod) -> tuple[Decimal | None, str | None]:
    """Parse the typed amount for ``method``: ``(amount, None)`` or ``(None, message for the client)``."""
    try:
        value = parse_amount((text or "").replace(",", ".").replace(" ", ""), method.currency)
    except MoneyError:
        return None, _("Enter an amount like 100 or 100.50 (at most %(digits)s decimals).",
                       digits=CURRENCIES[method.currency])
    if value <= 0:
        return None, _("The amount must be greater than zero.")
    if method.min_amount is not None and value < method.min_amount:
        return None, _("The minimum amount for %(method)s is %(amount)s.", method=method.display_name(_language()),
                       amount=f"{format_amount(method.min_amount, method.currency)} {method.currency}")
    if method.max_amount is not None and value > method.max_amount:
        return None, _("The maximum amount for %(method)s is %(amount)s.", method=method.display_name(_language()),
                       amount=f"{format_amount(method.max_amount, method.currency)} {method.currency}")
    return value, None


@bp.route("/payments/new", methods=["GET", "POST"])
@client_required
def new_payment():
    """Add funds: choose a method and an amount, see the commission and total, confirm, go and pay.

    The first POST shows a confirmation with the server's own figures (the live ones come from
    ``checkout.js``, which uses the same rule); the confirming POST creates the payment and starts it.
    """
    account = _account()
    language = _language()
    methods = _available_methods(account)
    views = [_method_view(m, language) for m in methods]
    form = AddFundsForm()
    form.paymethod.choices = [(m.id, m.display_name(language)) for m in methods]
    if request.method == "GET":
        wanted = request.args.get("paymethod", type=row_id)
        last_used = db.session.scalar(select(Payment.paymethod_id).where(Payment.account_id == account.id)
                                      .order_by(Payment.id.desc()).limit(1))
        if wanted in {m.id for m in methods}:
            form.paymethod.data = wanted
        elif len(methods) == 1:
            form.paymethod.data = methods[0].id
        elif last_used in {m.id for m in methods}:
            form.paymethod.data = last_used
        if request.args.get("amount"):
            form.amount.data = request.args["amount"][:32]
    status = 200
    if form.validate_on_submit():
        method = next(m for m in methods if m.id == form.paymethod.data)
        value, problem = check_amount(form.amount.data, method)
        if problem:
            form.amount.errors.append(problem)
            status = 400
        elif form.confirm.data == "1" and _already_confirmed(request.form.get("intent", "")) is not None:
            # the same confirmation again (Back from the gateway, a double click): never a second payment
            done = _already_confirmed(request.form.get("intent", ""))
            flash(_("This payment was already started; here it is."), "info")
            return redirect(url_for(".payment", payment_id=done))
        elif form.confirm.data == "1" and not _total_changed(method, value):
            try:
                created = service.create_payment(account.id, method.id, value, source="checkout",
                                                 actor=current_user.email)
            except service.PaymentCreateError as exc:
                current_app.logger.info("payment refused for account %s: %s", account.id, exc)
                flash(_("The payment could not be created. Please check the amount and try again."), "error")
                return redirect(url_for(".new_payment"))
            _remember_confirmed(request.form.get("intent", ""), created.id)
            db.session.expire_all()
            if form.autopay.data and _recurring_refusal(method) is None:
                from .. import recurring

                try:
                    recurring.mark_parent(created.id)
                except recurring.RecurringError as exc:  # the method changed meanwhile: pay without it
                    flash(str(exc), "warning")
            return start_payment(db.session.get(Payment, created.id))
        else:
            if form.confirm.data == "1":  # the method's commission changed after the client saw it
                flash(_("The commission has changed. Please check the new total."), "warning")
            fee = commission(value, method.currency, method.commission_amount or Decimal(0),
                             method.commission_percent or Decimal(0))
            form.confirm.data = "1"
            form.amount.data = format_amount(value, method.currency)
            return render_template("client/confirm.html", form=form, method=method, intent=secrets.token_urlsafe(16),
                                   method_name=method.display_name(language), amount=value, fee=fee,
                                   total=value + fee, total_text=format_amount(value + fee, method.currency),
                                   currency=method.currency)
    elif request.method == "POST":
        status = 400
    return render_template("client/new_payment.html", form=form, methods=views, account=account), status


def _already_confirmed(intent: str) -> int | None:
    """The payment made by an earlier confirmation of the page with this token, if any."""
    if not intent:
        return None
    payment_id = (session.get(CONFIRMED_KEY) or {}).get(intent[:64])
    return payment_id if isinstance(payment_id, int) else None


def _remember_confirmed(intent: str, payment_id: int) -> None:
    if not intent:
        return
    done = dict(session.get(CONFIRMED_KEY) or {})
    done[intent[:64]] = payment_id
    session[CONFIRMED_KEY] = dict(list(done.items())[-CONFIRMED_KEEP:])


def _recurring_refusal(method: PaymentMethod) -> str | None:
    """Why the method cannot start automatic top-ups (None when it can)."""
    from ..recurring import method_refusal

    return method_refusal(method)


def _total_changed(method: PaymentMethod, value: Decimal) -> bool:
    """True when the total the client confirmed (the form's ``total``) is not what it would pay now."""
    fee = commission(value, method.currency, method.commission_amount or Decimal(0),
                     method.commission_percent or Decimal(0))
    return request.form.get("total", "") != format_amount(value + fee, method.currency)


@bp.route("/payments/<int:payment_id>/pay", methods=["POST"])
@client_required
def pay_again(payment_id: int):
    """Send the browser to the gateway again for a payment that is still ``new`` or ``inpay``."""
    item = own_payment(payment_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    return start_payment(item)


@bp.route("/payments/<int:payment_id>/cancel", methods=["POST"])
@client_required
def cancel(payment_id: int):
    """Cancel an unpaid payment at the client's request."""
    item = own_payment(payment_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    refusal = cancel_refusal(item)  # the same predicate hides the button on the pages
    if refusal:
        flash(refusal, "error")
        return redirect(url_for(".payment", payment_id=item.id))
    try:
        service.set_cancelled(item.id, source="client", reason="cancelled by the client", kind="client",
                              actor=current_user.email)
        flash(_("The payment was cancelled."), "success")
    except service.IllegalTransition:
        flash(_("This payment can no longer be cancelled."), "error")
    db.session.expire_all()
    return redirect(url_for(".payment", payment_id=item.id))


@bp.route("/payments/<int:payment_id>/return/<outcome>")
@client_required
def payment_return(payment_id: int, outcome: str):
    """Where modules send the browser back from the gateway (``success``, ``fail`` or ``pending``).

    The page shows the payment's real status, never what the URL claims: the gateway's notification
    may not have arrived yet, so while the payment is open ``payment_status.js`` polls
    :func:`status_json` and switches the message without a reload.
    """
    if outcome not in RETURN_OUTCOMES:
        abort(404)
    item = own_payment(payment_id)
    waited = max(0, int((utcnow() - item.updated_at).total_seconds())) if item.status in OPEN_STATUSES else 0
    return render_template("client/return.html", payment=item, outcome=outcome, is_open=item.status in OPEN_STATUSES,
                           action_form=ActionForm(), language=_language(), waited_seconds=waited,
                           wait_notice_seconds=int(current_app.config.get("RETURN_WAIT_NOTICE_SECONDS") or 120),
                           support_contact=current_app.config.get("SUPPORT_CONTACT") or _("our support team"))


@bp.route("/payments/<int:payment_id>/status.json")
@client_required
def status_json(payment_id: int):
    """The payment's current status for the return page's poller (owner only)."""
    from ..templating import money, status_label

    item = own_payment(payment_id)
    account = db.session.get(Account, item.account_id)
    response = jsonify({
        "id": item.id,
        "status": item.status,
        "status_label": status_label(item.status),
        "open": item.status in OPEN_STATUSES,
        "balance": money(account.balance, account.currency),
    })
    response.headers["Cache-Control"] = "no-store"
    return response
