"""The API's operations: accounts, payments, payment methods, auto-payment profiles."""
from __future__ import annotations

from decimal import Decimal
from urllib.parse import urljoin

from flask import current_app, g, request, url_for
from flask_smorest import Blueprint
from marshmallow import RAISE
from sqlalchemy import select

from .. import api_tokens, recurring
from ..admin.payments import PaymentFilters, payments_query
from ..db import db
from ..models import Account, Payment, PaymentEvent, PaymentMethod, RecurringProfile, Refund
from ..money import MoneyError, check_currency
from ..paymethods.service import set_active
from ..payments import refunds, service
from ..payments.adjustments import AdjustmentError, adjust_balance
from ..payments.messages import error_text
from . import idempotency
from .problems import Problem, from_http_exception, from_problem
from .schemas import (AccountPageSchema, AccountSchema, AdjustmentResultSchema, AdjustmentSchema, ListQuery,
                      OutcomeSchema, PaymentDetailSchema, PaymentPageSchema, PaymentQuery, PaymentSchema,
                      PaymethodListSchema, PaymethodSchema, ProfilePageSchema, ProfileQuery, ProfileSchema,
                      ReasonSchema, RefundRequestSchema, RefundResultSchema, TopUpResultSchema, TopUpSchema)

blp = Blueprint("api", __name__, url_prefix="/api/v1", description="billcore's JSON API")

READ_METHODS = ("GET", "HEAD", "OPTIONS")
MAX_BODY = 64 * 1024  # bytes of a request body; every request of the API is far smaller


@blp.before_request
def _authenticate():
    """A live bearer token with the scope the method needs; never a session cookie."""
    request.max_content_length = MAX_BODY  # a larger body is refused (413) before it is read
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    row = api_tokens.find_token(token.strip()) if scheme.lower() == "bearer" else None
    if row is None:
        raise Problem(401, "A valid API token is needed: Authorization: Bearer <token>.", code="unauthorized")
    needed = "read" if request.method in READ_METHODS else "write"
    if needed not in row.scope_list:
        raise Problem(403, f"This token lacks the {needed} scope.", code="scope")
    api_tokens.touch(row)
    g.api_token_id, g.api_actor = row.id, f"api:{row.name}"[:254]
    return idempotency.before_write(row.id)


@blp.after_request
def _store_answer(response):
    return idempotency.after_write(response)


@blp.teardown_request
def _free_key(error):
    idempotency.free_unanswered()


@blp.errorhandler(Problem)
def _problem(error: Problem):
    return from_problem(error)


@blp.errorhandler(422)
@blp.errorhandler(400)
def _invalid(error):
    return from_http_exception(error)


def write(view):
    """Document a write's ``Idempotency-Key`` header."""
    return blp.doc(parameters=[idempotency.PARAMETER])(view)


def refused(exc: Exception, status: int = 409, code: str = "refused") -> Problem:
    """A service refusal as a problem, in the caller's words (the service's translated message)."""
    return Problem(status, error_text(exc), code=code)


def _get(model, row_id: int):
    item = db.session.get(model, row_id)
    if item is None:
        raise Problem(404, f"No {model.__tablename__.rstrip('s').replace('_', ' ')} {row_id}.", code="not-found")
    return item


def _page(query, column, args, *, order=None):
    limit = args["limit"]
    if args.get("before"):
        query = query.where(column < args["before"])
    rows = db.session.execute(query.order_by(column.desc()).limit(limit + 1)).scalars().all()
    return {"items": rows[:limit], "next_before": rows[limit - 1].id if len(rows) > limit else None}


# --- accounts --------------------------------------------------------------------------------------------

@blp.route("/accounts", methods=["GET"])
@blp.arguments(ListQuery, location="query", unknown=RAISE)
@blp.response(200, AccountPageSchema)
def accounts_list(args):
    """Accounts, newest first (keyset paging by ``before``)."""
    return _page(select(Account), Account.id, args)


@blp.route("/accounts", methods=["POST"])
@write
@blp.arguments(AccountSchema)
@blp.response(201, AccountSchema)
def accounts_create(data):
    """Create an account in a currency, with a zero balance."""
    try:
        currency = check_currency(data["currency"])
    except MoneyError as exc:
        raise Problem(422, str(exc), code="currency") from None
    account = Account(name=data["name"].strip() or data["name"], currency=currency, balance=Decimal("0.00"))
    db.session.add(account)
    db.session.commit()
    service.mark_committed()
    return account


@blp.route("/accounts/<id:account_id>", methods=["GET"])
@blp.response(200, AccountSchema)
def accounts_show(account_id):
    """One account with its balance."""
    return _get(Account, account_id)


@blp.route("/accounts/<id:account_id>/adjustments", methods=["POST"])
@write
@blp.arguments(AdjustmentSchema)
@blp.response(201, AdjustmentResultSchema)
def accounts_adjust(data, account_id):
    """Credit (positive amount) or debit (negative) the balance by hand, with a reason."""
    _get(Account, account_id)
    try:
        done = adjust_balance(account_id, data["amount"], reason=data["reason"], source="api", actor=g.api_actor)
    except AdjustmentError as exc:
        raise refused(exc, 409, "adjustment-refused") from None
    return done


# --- payments --------------------------------------------------------------------------------------------

@blp.route("/payments", methods=["GET"])
@blp.arguments(PaymentQuery, location="query", unknown=RAISE)
@blp.response(200, PaymentPageSchema)
def payments_list(args):
    """Payments, newest first, with the admin list's filters; ``next_before`` is the next page's cursor."""
    filters = PaymentFilters(**{k: args.get(k) for k in ("status", "paymethod_id", "account_id", "date_from",
                                                           "date_to", "amount_min", "amount_max")})
    limit = args["limit"]
    rows = db.session.execute(payments_query(filters, args.get("before"), limit + 1)).all()
    return {"items": [row[0] for row in rows[:limit]],
            "next_before": rows[limit - 1][0].id if len(rows) > limit else None}


@blp.route("/payments/<id:payment_id>", methods=["GET"])
@blp.response(200, PaymentDetailSchema)
def payments_show(payment_id):
    """One payment with its events and refunds."""
    payment = _get(Payment, payment_id)
    events = db.session.execute(select(PaymentEvent).where(PaymentEvent.payment_id == payment.id)
                                .order_by(PaymentEvent.id)).scalars().all()
    refund_rows = db.session.execute(select(Refund).where(Refund.payment_id == payment.id)
                                     .order_by(Refund.id)).scalars().all()
    return {**{name: getattr(payment, name) for name in PaymentSchema().fields}, "events": events,
            "refunds": refund_rows}


@blp.route("/payments", methods=["POST"])
@write
@blp.arguments(TopUpSchema)
@blp.response(201, TopUpResultSchema)
def payments_create(data):
    """Create a top-up of an account through a payment method; ``start_url`` sends the customer to pay."""
    _get(Account, data["account_id"])
    _get(PaymentMethod, data["paymethod_id"])
    try:
        created = service.create_payment(data["account_id"], data["paymethod_id"], data["amount"], source="api",
                                         actor=g.api_actor, description=data.get("description"))
    except service.PaymentCreateError as exc:
        raise refused(exc, 409, "payment-refused") from None
    db.session.expire_all()
    base = current_app.config.get("BASE_URL") or request.host_url
    # The customer starts paying from the payment's page: its Pay button goes through the core's payment
    # door (the customer's own session and CSRF token, the checks, ``inpay``), never this request.
    return {"payment": db.session.get(Payment, created.id),
            "start_url": urljoin(base + "/", url_for("checkout.payment", payment_id=created.id)),
            "start_method": "GET", "start_fields": {}}


def _payment_or_refusal(act):
    try:
        return act()
    except service.PaymentNotFound as exc:
        raise Problem(404, str(exc), code="not-found") from None
    except service.PaymentError as exc:
        raise refused(exc) from None


@blp.route("/payments/<id:payment_id>/refunds", methods=["POST"])
@write
@blp.arguments(RefundRequestSchema)
@blp.response(201, RefundResultSchema)
def payments_refund(data, payment_id):
    """Refund all or part of a paid payment through its gateway."""
    _get(Payment, payment_id)
    result = _payment_or_refusal(lambda: refunds.refund_payment(payment_id, data["amount"], g.api_actor,
                                                                data.get("reason") or None, source="api"))
    db.session.expire_all()
    return {"refund": db.session.get(Refund, result.refund_id), "state": result.state, "info": result.info}


@blp.route("/payments/<id:payment_id>/mark-paid", methods=["POST"])
@write
@blp.arguments(ReasonSchema)
@blp.response(200, OutcomeSchema)
def payments_mark_paid(data, payment_id):
    """Credit the payment by hand (money received outside the gateway's notification), with a reason."""
    item = _get(Payment, payment_id)
    outcome = _payment_or_refusal(lambda: service.set_paid(
        item.id, amount=item.total, currency=item.currency, source="api", kind="manual", manual=True,
        actor=g.api_actor, info=data["reason"], data={"reason": data["reason"]}))
    db.session.expire_all()
    return {"payment": db.session.get(Payment, payment_id), "changed": outcome.changed}


@blp.route("/payments/<id:payment_id>/cancel", methods=["POST"])
@write
@blp.arguments(ReasonSchema)
@blp.response(200, OutcomeSchema)
def payments_cancel(data, payment_id):
    """Cancel an unpaid payment, with a reason."""
    _get(Payment, payment_id)
    outcome = _payment_or_refusal(lambda: service.set_cancelled(
        payment_id, source="api", kind="manual", reason=data["reason"], actor=g.api_actor,
        data={"reason": data["reason"]}))
    db.session.expire_all()
    return {"payment": db.session.get(Payment, payment_id), "changed": outcome.changed}


# --- payment methods -------------------------------------------------------------------------------------

@blp.route("/paymethods", methods=["GET"])
@blp.response(200, PaymethodListSchema)
def paymethods_list():
    """Every payment method (public settings only, never secrets)."""
    return {"items": db.session.execute(select(PaymentMethod).order_by(PaymentMethod.sort_order,
                                                                       PaymentMethod.id)).scalars().all()}


@blp.route("/paymethods/<id:method_id>", methods=["GET"])
@blp.response(200, PaymethodSchema)
def paymethods_show(method_id):
    """One payment method (public settings only, never secrets)."""
    return _get(PaymentMethod, method_id)


def _set_active(method_id: int, active: bool):
    method = _get(PaymentMethod, method_id)
    set_active(method, active)
    service.mark_committed()
    return method


@blp.route("/paymethods/<id:method_id>/enable", methods=["POST"])
@write
@blp.response(200, PaymethodSchema)
def paymethods_enable(method_id):
    """Offer the method to customers again."""
    return _set_active(method_id, True)


@blp.route("/paymethods/<id:method_id>/disable", methods=["POST"])
@write
@blp.response(200, PaymethodSchema)
def paymethods_disable(method_id):
    """Stop new payments through the method (existing ones keep their notifications)."""
    return _set_active(method_id, False)


# --- auto-payment profiles -------------------------------------------------------------------------------

@blp.route("/recurring-profiles", methods=["GET"])
@blp.arguments(ProfileQuery, location="query", unknown=RAISE)
@blp.response(200, ProfilePageSchema)
def profiles_list(args):
    """Auto-payment profiles, newest first; ``status`` filters."""
    query = select(RecurringProfile)
    if args.get("status"):
        query = query.where(RecurringProfile.status == args["status"])
    return _page(query, RecurringProfile.id, args)


@blp.route("/recurring-profiles/<id:profile_id>", methods=["GET"])
@blp.response(200, ProfileSchema)
def profiles_show(profile_id):
    """One auto-payment profile."""
    return _get(RecurringProfile, profile_id)


def _profile_action(act, profile_id: int):
    _get(RecurringProfile, profile_id)
    try:
        return act(profile_id, actor=g.api_actor)
    except recurring.RecurringError as exc:
        raise Problem(409, str(exc), code="refused") from None


@blp.route("/recurring-profiles/<id:profile_id>/suspend", methods=["POST"])
@write
@blp.response(200, ProfileSchema)
def profiles_suspend(profile_id):
    """Suspend an active profile: nothing is charged until it is resumed."""
    return _profile_action(recurring.suspend_profile, profile_id)


@blp.route("/recurring-profiles/<id:profile_id>/resume", methods=["POST"])
@write
@blp.response(200, ProfileSchema)
def profiles_resume(profile_id):
    """Resume a suspended profile: failures reset, due at once."""
    return _profile_action(recurring.resume_profile, profile_id)
