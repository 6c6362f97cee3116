"""Recurring payments (auto top-ups): opt-in, profiles, due dates and ``recurring run``.

A customer marks a payment as the *parent* of future charges while paying (:func:`mark_parent`: the
module sends it as such, e.g. Robokassa's ``Recurring=true``); once it is paid, a profile is created from
it (:func:`create_profile`) with a rule: ``fixed`` (an amount every month on the parent's day) or
``threshold`` (an amount whenever the balance falls below a threshold), and a monthly maximum.

``flask --app billcore recurring run`` (cron) calls :func:`run_due`. For each due profile it *claims* a
period in a short transaction that locks the profile (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's
write lock) and inserts the ``(profile, period)`` row whose unique constraint makes a second charge of the
same period impossible, even from two hosts. Then the child payment is created through the payment
service and the module is asked to charge it; its answer is booked through the service as well. A failed
charge is retried with backoff; after ``RECURRING_MAX_FAILURES`` failures the profile is suspended and the
customer sees a notice on the dashboard (:func:`notices_for_account`). A child whose outcome is unknown
(cancelled here while being charged) or that the service flagged ``fraud`` (another amount or currency
reported) is never replaced: the profile is suspended at once for an admin's check.
"""
from __future__ import annotations

import calendar
import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from .. import outbox
from ..db import db
from ..gateway_pool import release_read_transaction, run_each, workers_for
from ..models import (Account, Payment, PaymentEvent, PaymentMethod, RecurringCharge, RecurringProfile, Status,
                     utcnow)
from ..money import MoneyError, commission, parse_amount
from ..paymethods import full_settings
from ..paymodule import FEATURE_RECURRING, ChargeResult
from ..states import ChargeState, ChargeStatus, ProfileStatus
from ..payments import service
from ..payments.service import write_transaction
from ..plugins import get_registry

log = logging.getLogger(__name__)

FIXED, THRESHOLD = "fixed", "threshold"
RULES = (FIXED, THRESHOLD)
ACTIVE, SUSPENDED, CANCELLED = ProfileStatus.ACTIVE, ProfileStatus.SUSPENDED, ProfileStatus.CANCELLED
LIVE = (ACTIVE, SUSPENDED)  # at most one live profile per parent payment (uq_recurring_profiles_live_parent)
# States of a claimed period (RecurringCharge.state).
CLAIMED, ACCEPTED, PAID, FAILED, ABANDONED = (ChargeStatus.CLAIMED, ChargeStatus.ACCEPTED, ChargeStatus.PAID,
                                              ChargeStatus.FAILED, ChargeStatus.ABANDONED)
# A period still being charged: its child must not be cancelled by cleanup or the client (the gateway may
# still take the money), and it is never replaced while the outcome of its charge is unknown.
UNSETTLED = (CLAIMED, ACCEPTED, FAILED)
UNKNOWN = "unknown"  # outcome of a run that found a charge's outcome unknowable (the profile is suspended)
# What _apply_answer reports when the payment service flagged the child ``fraud`` (the gateway reported
# another amount or currency): the customer was charged something, so it is held like an unknown outcome.
FLAGGED = Status.FRAUD.value
# Event kinds of cancellations made here, not by the gateway (``payments cleanup``, the client's cancel,
# an admin's manual cancel): they say nothing about whether the gateway charged the child. Decided by the
# kind, not the source: an admin's "check now" records the gateway's own cancel with source ``admin``
# (kind ``poll``).
LOCAL_CANCEL_KINDS = ("cleanup", "client", "manual")
PARENT_FLAG = "recurring"  # Payment.gateway_data key: "send this payment as a recurring parent"
SOURCE = "recurring"

# While a period is being charged the profile is not due: another host must not pick it up meanwhile.
LEASE = timedelta(minutes=15)
DEFAULT_MAX_FAILURES = 3
DEFAULT_RETRY_HOURS = (1, 6, 24)
DEFAULT_CHECK_MINUTES = 60  # threshold rule: how often the balance is looked at; also accepted charges
# Children that count towards the monthly maximum (money taken or being taken).
# A ``fraud`` child counts too: the gateway reported charging the customer (another amount or currency).
COUNTED = (Status.NEW.value, Status.INPAY.value, Status.PAID.value, Status.PENDING_RETURN.value,
           Status.RETURNED.value, Status.FRAUD.value)
OPEN = (Status.NEW.value, Status.INPAY.value)


class RecurringError(Exception):
    """A refused opt-in, cancellation or resumption; the message is translated for the user."""


# --- dates ---------------------------------------------------------------------------------------------

def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def month_start(moment: datetime) -> datetime:
    """Midnight UTC of the first day of ``moment``'s month."""
    moment = _aware(moment).astimezone(timezone.utc)
    return datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)


def next_month_start(moment: datetime) -> datetime:
    """Midnight UTC of the first day of the month after ``moment``'s."""
    start = month_start(moment)
    return datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=timezone.utc)


def charge_date(charge_day: int, year: int, month: int) -> datetime:
    """Midnight UTC of ``charge_day`` in that month, clamped to its last day (31 -> 30 Nov, 28/29 Feb)."""
    day = min(max(int(charge_day), 1), calendar.monthrange(year, month)[1])
    return datetime(year, month, day, tzinfo=timezone.utc)


def next_fixed_due(charge_day: int, after: datetime) -> datetime:
    """The fixed rule's charge date in the month after ``after``'s month."""
    following = next_month_start(after)
    return charge_date(charge_day, following.year, following.month)


def fixed_period(due: datetime) -> str:
    """The period key of a fixed-rule charge: its month, ``2026-12``."""
    due = _aware(due).astimezone(timezone.utc)
    return f"{due.year:04d}-{due.month:02d}"


def retry_delay(failures: int) -> timedelta:
    """How long to wait after the ``failures``-th consecutive failure (the last step repeats)."""
    hours = list(current_app.config.get("RECURRING_RETRY_HOURS") or DEFAULT_RETRY_HOURS)
    return timedelta(hours=float(hours[min(max(failures, 1), len(hours)) - 1]))


def max_failures() -> int:
    """Consecutive failed charges after which a profile is suspended (``RECURRING_MAX_FAILURES``)."""
    return max(1, int(current_app.config.get("RECURRING_MAX_FAILURES") or DEFAULT_MAX_FAILURES))


def _check_interval() -> timedelta:
    return timedelta(minutes=float(current_app.config.get("RECURRING_CHECK_MINUTES") or DEFAULT_CHECK_MINUTES))


# --- opt-in --------------------------------------------------------------------------------------------

def method_refusal(method: PaymentMethod | None) -> str | None:
    """Why payments of ``method`` cannot be parents of auto-payments (None when they can)."""
    if method is None or not method.active:
        return _("This payment method is not available.")
    if not method.recurring:
        return _("This payment method does not offer automatic payments.")
    if not get_registry().has_feature(method.module, FEATURE_RECURRING):
        return _("This payment system does not support automatic payments.")
    return None


def can_mark_parent(payment: Payment) -> bool:
    """True when ``payment`` is still unpaid, its method allows auto-payments and it is not marked yet."""
    return (payment.status in OPEN and not (payment.gateway_data or {}).get(PARENT_FLAG)
            and method_refusal(db.session.get(PaymentMethod, payment.paymethod_id)) is None)


def mark_parent(payment_id: int) -> None:
    """Opt in while paying: the module sends this unpaid payment as the parent of future charges.

    Raises :class:`RecurringError` when the payment is paid already or its method does not allow it.
    """
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.status not in OPEN:
        raise RecurringError(_("Only an unpaid payment can be set up for automatic payments."))
    reason = method_refusal(db.session.get(PaymentMethod, payment.paymethod_id))
    if reason:
        raise RecurringError(reason)
    service.set_gateway_data(payment_id, **{PARENT_FLAG: True})
    db.session.expire_all()


def offer_refusal(payment: Payment) -> str | None:
    """Why a profile cannot be created from ``payment`` (None when it can)."""
    return _offer_refusal(db.session, payment)


def _offer_refusal(session: Session, payment: Payment) -> str | None:
    if payment.status != Status.PAID.value:
        return _("Only a paid payment can start automatic payments.")
    if not (payment.gateway_data or {}).get(PARENT_FLAG):
        return _("This payment was not made as the first of automatic payments.")
    reason = method_refusal(session.get(PaymentMethod, payment.paymethod_id))
    if reason:
        return reason
    live = session.execute(select(RecurringProfile.id).where(
        RecurringProfile.parent_payment_id == payment.id,
        RecurringProfile.status.in_(LIVE))).first()
    if live is not None:
        return _already_set_up()
    return None


def _already_set_up() -> str:
    return _("Automatic payments are already set up with this payment.")


def _money(value: Any, currency: str, label: str, *, required: bool = True) -> Decimal | None:
    if value is None or str(value).strip() == "":
        if required:
            raise RecurringError(_("Enter the %(field)s.", field=label))
        return None
    try:
        amount = parse_amount(value, currency)
    except MoneyError as exc:
        raise RecurringError(f"{label}: {exc}") from None
    if amount < 0:
        raise RecurringError(_("The %(field)s cannot be negative.", field=label))
    return amount


def create_profile(parent_payment_id: int, *, account_id: int, rule: str, amount: Any,
                   monthly_max: Any, threshold: Any = None, actor: str | None = None,
                   now: datetime | None = None) -> RecurringProfile:
    """Create an active auto-payment profile from a paid parent payment of ``account_id``.

    ``fixed``: ``amount`` monthly, first one month after ``now`` on the same day. ``threshold``: ``amount``
    whenever the balance is below ``threshold``, first checked at once. What the children of one calendar
    month charge the customer (amounts plus the method's commission) never exceeds ``monthly_max``.
    Raises :class:`RecurringError` with the reason otherwise.
    """
    now = _aware(now or utcnow())
    parent = db.session.get(Payment, parent_payment_id)
    if parent is None or parent.account_id != account_id:
        raise RecurringError(_("No such payment."))
    reason = offer_refusal(parent)
    if reason:
        raise RecurringError(reason)
    if rule not in RULES:
        raise RecurringError(_("Choose how to top up."))
    method = db.session.get(PaymentMethod, parent.paymethod_id)
    currency = parent.currency
    value = _money(amount, currency, _("amount"))
    cap = _money(monthly_max, currency, _("monthly maximum"))
    limit = _money(threshold, currency, _("threshold"), required=rule == THRESHOLD)
    if value <= 0:
        raise RecurringError(_("The amount must be positive."))
    if method.min_amount is not None and value < method.min_amount:
        raise RecurringError(_("The minimum amount is %(amount)s %(currency)s.", amount=method.min_amount,
                               currency=currency))
    if method.max_amount is not None and value > method.max_amount:
        raise RecurringError(_("The maximum amount is %(amount)s %(currency)s.", amount=method.max_amount,
                               currency=currency))
    if cap < value:
        raise RecurringError(_("The monthly maximum must be at least the amount."))
    total = charge_total(method, value, currency)
    if cap < total:
        raise RecurringError(_("The monthly maximum must be at least the amount with the commission "
                               "(%(total)s %(currency)s).", total=total, currency=currency))
    try:
        with write_transaction() as session:
            # Under the parent's lock (FOR UPDATE; SQLite's write lock) a concurrent opt-in with the same
            # parent waits here, then finds this profile live; the partial unique index is the backstop.
            parent = session.execute(select(Payment).where(Payment.id == parent_payment_id)
                                     .with_for_update()).scalar_one()
            reason = _offer_refusal(session, parent)
            if reason:
                raise RecurringError(reason)
            profile = RecurringProfile(
                account_id=account_id, paymethod_id=method.id, parent_payment_id=parent.id, rule=rule,
                amount=value, threshold=limit if rule == THRESHOLD else None, monthly_max=cap, status=ACTIVE,
                failures=0, sequence=0, charge_day=now.day if rule == FIXED else None,
                next_charge_at=next_fixed_due(now.day, now) if rule == FIXED else now,
                actor=actor, created_at=now, updated_at=now)
            session.add(profile)
            session.flush()
            profile_id = profile.id
    except IntegrityError:  # uq_recurring_profiles_live_parent: another live profile won the race
        raise RecurringError(_already_set_up()) from None
    db.session.expire_all()
    return db.session.get(RecurringProfile, profile_id)


def cancel_profile(profile_id: int, *, account_id: int | None = None, actor: str | None = None) -> RecurringProfile:
    """Cancel a profile for good (a client passes its ``account_id``: someone else's is "not found").

    A charge already sent to the gateway is still booked when its result arrives.
    """
    with write_transaction() as session:
        profile = _lock_profile(session, profile_id, skip_locked=False)
        if profile is None or (account_id is not None and profile.account_id != account_id):
            raise RecurringError(_("No such automatic payment."))
        if profile.status != CANCELLED:
            profile.status = CANCELLED
            profile.next_charge_at = None
            profile.actor = actor or profile.actor
            profile.updated_at = utcnow()
    db.session.expire_all()
    return db.session.get(RecurringProfile, profile_id)


def suspend_profile(profile_id: int, *, actor: str | None = None) -> RecurringProfile:
    """Suspend an active profile by hand (admin, API): nothing is charged until it is resumed. A charge
    already sent to the gateway is still booked when its result arrives."""
    with write_transaction() as session:
        profile = _lock_profile(session, profile_id, skip_locked=False)
        if profile is None:
            raise RecurringError(_("No such automatic payment."))
        if profile.status != ACTIVE:
            raise RecurringError(_("Only an active automatic payment can be suspended."))
        profile.status, profile.next_charge_at = SUSPENDED, None
        profile.actor, profile.updated_at = actor or profile.actor, utcnow()
    db.session.expire_all()
    return db.session.get(RecurringProfile, profile_id)


def resume_profile(profile_id: int, *, actor: str | None = None, now: datetime | None = None) -> RecurringProfile:
    """Reactivate a suspended profile (admin): failures reset, failed periods abandoned (a period whose
    child was paid meanwhile is booked paid; a claimed or accepted one whose child is still open is kept:
    the gateway may be working on it, or a module error left it to be charged again with the same id, so
    it stays held and the next run charges that child, never a second one), due at once."""
    now = _aware(now or utcnow())
    with write_transaction() as session:
        profile = _lock_profile(session, profile_id, skip_locked=False)
        if profile is None:
            raise RecurringError(_("No such automatic payment."))
        if profile.status != SUSPENDED:
            raise RecurringError(_("Only a suspended automatic payment can be resumed."))
        for charge in session.execute(select(RecurringCharge).where(
                RecurringCharge.profile_id == profile.id, RecurringCharge.state.in_(UNSETTLED))).scalars():
            child = session.get(Payment, charge.payment_id) if charge.payment_id else None
            if child is not None and child.status in (Status.PAID.value, Status.PENDING_RETURN.value,
                                                      Status.RETURNED.value):
                charge.state, charge.updated_at = PAID, now  # paid late (e.g. after a cancel here)
            elif charge.state in (CLAIMED, ACCEPTED) and child is not None and child.status in OPEN:
                continue  # still being charged: booked when the gateway answers, or charged again (same id)
            else:
                charge.state, charge.updated_at = ABANDONED, now
        profile.status, profile.failures = ACTIVE, 0
        _set_error(profile, None)
        profile.next_charge_at = now
        if profile.rule == FIXED:
            profile.charge_day = profile.charge_day or now.day
        profile.actor, profile.updated_at = actor or profile.actor, now
    db.session.expire_all()
    return db.session.get(RecurringProfile, profile_id)


# --- children being charged -----------------------------------------------------------------------------

def held_child_clause():
    """A WHERE clause on :class:`Payment`: the payment is the child of a period still being charged.

    ``payments cleanup`` and the client's cancel leave such children alone: the gateway may have been
    asked to charge them (its answer lost or still pending), and cancelling one would let the next
    ``recurring run`` charge a replacement for the same period.
    """
    return exists().where(RecurringCharge.payment_id == Payment.id, RecurringCharge.state.in_(UNSETTLED))


def is_held_child(payment_id: int, session: Session | None = None) -> bool:
    """True when ``payment_id`` is the child of a period still being charged (see :func:`held_child_clause`)."""
    session = session or db.session
    return session.execute(select(Payment.id).where(Payment.id == payment_id, held_child_clause())).first() \
        is not None


def _cancelled_here(session: Session, payment: Payment) -> bool:
    """True when ``payment`` was cancelled by cleanup, the client or an admin's manual cancel rather than
    by the gateway's answer (a notification, a poll, an admin's "check now"): whether the gateway charged
    it is then unknown."""
    if payment.status != Status.CANCELLED.value:
        return False
    kind = session.execute(select(PaymentEvent.kind).where(
        PaymentEvent.payment_id == payment.id, PaymentEvent.status_to == Status.CANCELLED.value)
        .order_by(PaymentEvent.id.desc()).limit(1)).scalar_one_or_none()
    return kind in LOCAL_CANCEL_KINDS


# --- errors: stored as a code with parameters, translated when shown ----------------------------------

# An error of a charge: (code, parameters). The parameters are JSON values (amounts as strings).
Err = tuple[str, dict[str, Any]]
TEXT = "text"  # a text from the gateway or the module (shown as it is): {"info": ...}


def error_text(code: str | None, params: dict[str, Any] | None) -> str:
    """An error's text in the current language (a request's, or ``force_locale``'s)."""
    p = dict(params or {})
    if code == "monthly_max":
        return _("monthly maximum of %(max)s %(currency)s reached", max=p.get("max"), currency=p.get("currency"))
    if code == "module_error":
        return _("the payment system failed: %(info)s", info=p.get("info"))
    if code == "refused":
        return _("the charge was refused")
    if code == "unsupported":
        return _("the payment system does not support automatic payments")
    if code == "payment_status":
        return _("payment %(id)s was %(status)s", id=p.get("id"), status=p.get("status"))
    if code == "unknown_outcome":
        return _("the outcome of payment %(id)s is unknown: it was cancelled while the payment system was "
                 "charging it", id=p.get("id"))
    if code == "fraud_check":
        return _("the charge of payment %(id)s needs an administrator's check: the payment system reported a "
                 "different amount or currency", id=p.get("id"))
    if code == "method_disabled":
        return _("This payment method is disabled.")
    if code == "currency":
        return _("This payment method takes %(method)s; the account is in %(account)s.", method=p.get("method"),
                 account=p.get("account"))
    if code == "min_amount":
        return _("The minimum amount is %(amount)s %(currency)s.", amount=p.get("amount"), currency=p.get("currency"))
    if code == "max_amount":
        return _("The maximum amount is %(amount)s %(currency)s.", amount=p.get("amount"), currency=p.get("currency"))
    if code == "too_large":
        return _("The amount is too large.")
    return str(p.get("info") or code or "")


def untranslated(error: Err) -> str:
    """The error's text in English (the msgids' language): kept in ``last_error`` and ``info`` for logs,
    the CLI and code that reads the text."""
    with force_locale("en"):
        return error_text(*error)


def profile_error(profile: RecurringProfile) -> str | None:
    """The profile's last error for a page, in the reader's language; a row stored before errors had codes
    shows its stored text as it is."""
    if profile.last_error_code:
        return error_text(profile.last_error_code, profile.last_error_params)
    return profile.last_error


def _set_error(profile: RecurringProfile, error: Err | None) -> str | None:
    if error is None:
        profile.last_error = profile.last_error_code = profile.last_error_params = None
        return None
    text = untranslated(error)[:1000]
    profile.last_error, profile.last_error_code, profile.last_error_params = text, error[0], dict(error[1])
    return text


def _text_error(info: str | None, otherwise: Err) -> Err:
    return (TEXT, {"info": info}) if info else otherwise


# --- notices -------------------------------------------------------------------------------------------

def notices_for_account(account_id: int) -> list[str]:
    """Texts for the client's dashboard: suspended auto-payments and failed charges awaiting a retry."""
    rows = db.session.execute(select(RecurringProfile).where(
        RecurringProfile.account_id == account_id, RecurringProfile.status.in_((ACTIVE, SUSPENDED)),
        RecurringProfile.failures > 0).order_by(RecurringProfile.id)).scalars().all()
    notices = []
    for p in rows:
        if p.status == SUSPENDED:
            notices.append(ngettext("Automatic payment #%(id)s was suspended after %(count)s failed charge "
                                    "(%(error)s). Please add funds manually or set up automatic payments again.",
                                    "Automatic payment #%(id)s was suspended after %(count)s failed charges "
                                    "(%(error)s). Please add funds manually or set up automatic payments again.",
                                    p.failures, id=p.id, count=p.failures, error=profile_error(p) or "-"))
        else:
            notices.append(_("The last charge of automatic payment #%(id)s failed (%(error)s); it will be "
                             "retried on %(when)s.", id=p.id, error=profile_error(p) or "-",
                             when=p.next_charge_at.strftime("%Y-%m-%d %H:%M UTC") if p.next_charge_at else "-"))
    return notices


# --- the run -------------------------------------------------------------------------------------------

@dataclass
class Ticket:
    """A claimed period, ready to be charged: what the claim transaction read under the profile's lock."""

    profile_id: int
    charge_id: int
    period: str
    amount: Decimal
    account_id: int
    paymethod_id: int
    parent_payment_id: int
    payment_id: int | None  # a child created by an interrupted earlier run, still ``new``


@dataclass
class RunResult:
    """What one :func:`run_due` did: ``(profile id, period, payment id, outcome)`` per charge tried."""

    charges: list[tuple[int, str, int | None, str]] = field(default_factory=list)
    suspended: list[int] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (profile id, what went wrong)

    def count(self, outcome: str) -> int:
        """How many charges ended with ``outcome`` (paid, accepted, failed)."""
        return sum(1 for c in self.charges if c[3] == outcome)


def _lock_profile(session: Session, profile_id: int, *, skip_locked: bool) -> RecurringProfile | None:
    query = select(RecurringProfile).where(RecurringProfile.id == profile_id)
    query = query.with_for_update(skip_locked=skip_locked)  # SQLite ignores it: its write lock is held
    return session.execute(query).scalar_one_or_none()


def charge_total(method: PaymentMethod, amount: Decimal, currency: str) -> Decimal:
    """What a child of ``amount`` costs the customer: the amount plus the method's commission, computed
    as :func:`billcore.payments.service.create_payment` does (the monthly maximum caps these totals)."""
    return amount + commission(amount, currency, method.commission_amount or Decimal(0),
                               method.commission_percent or Decimal(0))


def _month_total(session: Session, profile: RecurringProfile, now: datetime) -> Decimal:
    """What the profile's children charged (or are charging) the customer this calendar month."""
    amounts = session.execute(
        select(Payment.total).join(RecurringCharge, RecurringCharge.payment_id == Payment.id)
        .where(RecurringCharge.profile_id == profile.id, Payment.status.in_(COUNTED),
               RecurringCharge.charged_at >= month_start(now),
               RecurringCharge.charged_at < next_month_start(now))).scalars()
    return sum(amounts, Decimal("0"))


def _announce(profile: RecurringProfile, charge: RecurringCharge, type_: str) -> None:
    """Write an auto-payment outcome to the outbox in the transaction booking it (the profile's)."""
    outbox.record(object_session(profile), type_, {
        "profile_id": profile.id, "account_id": profile.account_id, "period": charge.period,
        "payment_id": charge.payment_id, "status": profile.status, "failures": profile.failures or 0,
        "amount": outbox.money(profile.amount), "error_code": profile.last_error_code,
        "error_params": profile.last_error_params or {}})


def _succeeded(profile: RecurringProfile, charge: RecurringCharge, now: datetime) -> None:
    _succeeded_booked(profile, charge, now)
    _announce(profile, charge, "recurring.charge_succeeded")


def _succeeded_booked(profile: RecurringProfile, charge: RecurringCharge, now: datetime) -> None:
    charge.state, charge.updated_at = PAID, now
    profile.failures, profile.updated_at = 0, now
    _set_error(profile, None)
    if profile.status == ACTIVE:
        if profile.rule == FIXED:
            year, month = (int(x) for x in charge.period.split("-"))
            profile.next_charge_at = next_fixed_due(profile.charge_day or 1, datetime(year, month, 1, tzinfo=timezone.utc))
        else:
            profile.next_charge_at = now + _check_interval()


def _failed(profile: RecurringProfile, charge: RecurringCharge, now: datetime, error: Err) -> bool:
    """Book a failed charge; True when it suspended the profile."""
    profile.failures = (profile.failures or 0) + 1
    profile.updated_at = now
    charge.state, charge.info, charge.updated_at = FAILED, _set_error(profile, error), now
    _announce(profile, charge, "recurring.charge_failed")
    if profile.status != ACTIVE:
        return False
    if profile.failures >= max_failures():
        profile.status, profile.next_charge_at = SUSPENDED, None
        _announce(profile, charge, "recurring.suspended")
        return True
    profile.next_charge_at = now + retry_delay(profile.failures)
    return False


def _reconcile(session: Session, profile: RecurringProfile, charge: RecurringCharge, now: datetime) -> str | None:
    """Settle an accepted (or interrupted) charge from its child's status; returns the outcome or None
    while the child is still open."""
    payment = session.get(Payment, charge.payment_id) if charge.payment_id else None
    if payment is None or payment.status in OPEN:
        return None
    if payment.status in (Status.PAID.value, Status.PENDING_RETURN.value, Status.RETURNED.value):
        _succeeded(profile, charge, now)
        return PAID
    held = _held_error(session, payment)
    if held is not None:
        _hold(profile, charge, now, held)
        return UNKNOWN
    _failed(profile, charge, now, _text_error(payment.info, ("payment_status", {"id": payment.id,
                                                                                "status": payment.status})))
    return FAILED


def _held_error(session: Session, payment: Payment) -> Err | None:
    """Why the period's settled-looking child must never be replaced (None when a retry may charge a new
    child): it was cancelled here while its charge's outcome was unknown (asked, no answer or still
    pending: the gateway may still take the money), or the payment service flagged it ``fraud`` because
    the gateway reported another amount or currency (the customer was charged something)."""
    if payment.status == Status.FRAUD.value:
        return ("fraud_check", {"id": payment.id})
    if _cancelled_here(session, payment):
        return ("unknown_outcome", {"id": payment.id})
    return None


def _hold(profile: RecurringProfile, charge: RecurringCharge, now: datetime, error: Err) -> bool:
    """Hold a period whose child must not be replaced (:func:`_held_error`): no replacement is ever
    charged for it. The profile is suspended with ``error`` for an admin to check the payment at the
    gateway; the charge keeps its state (a late payment of the child is still credited by the payment
    service, and resuming books the period paid). True when this suspended the profile."""
    profile.failures = (profile.failures or 0) + 1
    profile.updated_at = now
    charge.info = _set_error(profile, error)
    charge.updated_at = now
    if profile.status == ACTIVE:
        profile.status, profile.next_charge_at = SUSPENDED, None
        _announce(profile, charge, "recurring.suspended")
        return True
    return False


class PendingAction(enum.Enum):
    """What a run does with a profile's latest unsettled period (see :func:`decide_pending`)."""

    NEW_PERIOD = "new period"  # nothing unsettled: claim the next period
    WAIT = "wait"  # the gateway is working on the child: look again later (or book the outcome then)
    RECONCILE = "reconcile"  # the child was settled meanwhile: book its outcome on the period
    RETRY = "retry"  # charge the same period again (its child, if left ``new``, keeps its payment id)
    FAIL_AND_RETRY = "fail and retry"  # accepted without a child cannot happen: mark it failed, retry it


# (period state, child's payment status or None when the period has no child) -> action; ``ANY`` stands
# for every child status not listed for that period state. The first matching row decides.
ANY = "*"
PENDING_TABLE: tuple[tuple[str | None, str | None, PendingAction], ...] = (
    (None, None, PendingAction.NEW_PERIOD),
    (CLAIMED, Status.INPAY, PendingAction.WAIT),
    (CLAIMED, Status.NEW, PendingAction.RETRY),  # a child left ``new`` by an interrupted run
    (CLAIMED, None, PendingAction.RETRY),
    (CLAIMED, ANY, PendingAction.RECONCILE),
    (ACCEPTED, Status.INPAY, PendingAction.WAIT),
    (ACCEPTED, Status.NEW, PendingAction.WAIT),  # accepted: the gateway will tell
    (ACCEPTED, None, PendingAction.FAIL_AND_RETRY),
    (ACCEPTED, ANY, PendingAction.RECONCILE),
    (FAILED, ANY, PendingAction.RETRY),
    (FAILED, None, PendingAction.RETRY),
)


def decide_pending(state: str | None, child_status: str | None) -> PendingAction:
    """The action for a profile's latest unsettled period in ``state`` (None: there is none) whose child
    payment has ``child_status`` (None: no child yet). Pure: reads nothing, changes nothing."""
    for row_state, row_child, action in PENDING_TABLE:
        if row_state == state and (row_child == child_status or (row_child == ANY and child_status is not None)):
            return action
    raise ValueError(f"no rule for a {state!r} period with a {child_status!r} child")


def _claim(profile_id: int, now: datetime, result: RunResult) -> Ticket | None:
    """Lock a due profile and claim the period to charge; None when there is nothing to charge now."""
    try:
        with write_transaction() as session:
            profile = _lock_profile(session, profile_id, skip_locked=True)
            if profile is None or profile.status != ACTIVE or profile.next_charge_at is None \
                    or profile.next_charge_at > now:
                return None  # another host has it, or it is no longer due
            pending = session.execute(select(RecurringCharge).where(
                RecurringCharge.profile_id == profile.id, RecurringCharge.state.in_((CLAIMED, ACCEPTED, FAILED)))
                .order_by(RecurringCharge.id.desc())).scalars().first()
            child = session.get(Payment, pending.payment_id) if pending is not None and pending.payment_id else None
            action = decide_pending(pending.state if pending is not None else None,
                                    child.status if child is not None else None)
            if action == PendingAction.WAIT:
                profile.next_charge_at = now + _check_interval()
                return None
            if action == PendingAction.RECONCILE:
                outcome = _reconcile(session, profile, pending, now)
                result.charges.append((profile.id, pending.period, pending.payment_id, outcome))
                if profile.status == SUSPENDED:
                    result.suspended.append(profile.id)
                return None
            if action == PendingAction.FAIL_AND_RETRY:
                pending.state = FAILED
            account = session.get(Account, profile.account_id)
            if action != PendingAction.NEW_PERIOD:
                charge = pending  # retry the same period: never a second period while one is unpaid
            else:
                charge = None
                if profile.rule == FIXED:
                    period = fixed_period(profile.next_charge_at)
                    done = session.execute(select(RecurringCharge.id).where(
                        RecurringCharge.profile_id == profile.id, RecurringCharge.period == period)).first()
                    if done is not None:  # this month was charged already: go on to the next one
                        profile.next_charge_at = next_fixed_due(profile.charge_day or 1, profile.next_charge_at)
                        return None
                else:
                    if account.balance >= (profile.threshold or Decimal("0")):
                        profile.next_charge_at = now + _check_interval()
                        return None
                    period = f"t{profile.sequence + 1}"
            old_child = session.get(Payment, charge.payment_id) if charge is not None and charge.payment_id else None
            keep_child = old_child is not None and old_child.status == Status.NEW.value
            held = _held_error(session, old_child) if old_child is not None and not keep_child else None
            if held is not None:
                # a failed period whose child was cancelled here, not by the gateway, or flagged fraud:
                # never replaced
                _hold(profile, charge, now, held)
                result.charges.append((profile.id, charge.period, old_child.id, UNKNOWN))
                result.suspended.append(profile.id)
                return None
            if charge is not None and not keep_child and profile.rule == THRESHOLD \
                    and account.balance >= (profile.threshold or Decimal("0")):
                # topped up meanwhile (by hand): the failed top-up is no longer needed
                charge.state, charge.updated_at = ABANDONED, now
                profile.failures, profile.updated_at = 0, now
                _set_error(profile, None)
                profile.next_charge_at = now + _check_interval()
                return None
            method = session.get(PaymentMethod, profile.paymethod_id)
            next_total = charge_total(method, profile.amount, account.currency)
            if not keep_child and _month_total(session, profile, now) + next_total > profile.monthly_max:
                _set_error(profile, ("monthly_max", {"max": str(profile.monthly_max), "currency": account.currency}))
                profile.next_charge_at = next_month_start(now)
                profile.updated_at = now
                return None
            if charge is None:
                charge = RecurringCharge(profile_id=profile.id, period=period, state=CLAIMED, attempts=0,
                                         created_at=now)
                session.add(charge)
                if profile.rule == THRESHOLD:
                    profile.sequence = (profile.sequence or 0) + 1
            elif not keep_child:
                charge.payment_id = None  # the failed child stays cancelled; a new one is made
            charge.state, charge.attempts, charge.updated_at = CLAIMED, (charge.attempts or 0) + 1, now
            if not keep_child:
                charge.charged_at = now
            profile.next_charge_at, profile.updated_at = now + LEASE, now
            session.flush()  # a concurrent claim of the same period fails here, on the unique constraint
            return Ticket(profile.id, charge.id, charge.period, profile.amount, profile.account_id,
                          profile.paymethod_id, profile.parent_payment_id, charge.payment_id)
    except IntegrityError:
        log.info("recurring profile %s: period already claimed elsewhere", profile_id)
        return None


def _book(ticket: Ticket, now: datetime, *, ok: bool | None, error: Err | None = None, payment_id: int | None = None,
          result: RunResult, unknown: bool = False) -> None:
    """Record a charge's outcome on its period and profile: ``ok`` True (paid), None (accepted), False.

    ``unknown`` (with ``ok`` False): the module failed, so whether the gateway charged is unknown; the
    failure counts, but the period stays ``claimed`` in the same transaction, so its child is never seen
    as a settled failure (cleanup and the client leave it alone; the same child is charged again).
    """
    with write_transaction() as session:
        profile = _lock_profile(session, ticket.profile_id, skip_locked=False)
        charge = session.get(RecurringCharge, ticket.charge_id)
        if payment_id is not None:
            charge.payment_id = payment_id
        if ok is True:
            _succeeded(profile, charge, now)
        elif ok is None:
            charge.state, charge.updated_at = ACCEPTED, now
            if profile.status == ACTIVE:
                profile.next_charge_at = now + _check_interval()  # then the outcome is booked
        elif _failed(profile, charge, now, error or ("refused", {})):
            result.suspended.append(profile.id)
        if unknown and ok is False:
            charge.state = CLAIMED


def _book_held(ticket: Ticket, now: datetime, error: Err, result: RunResult) -> None:
    """Hold the period: its child must never be replaced (:func:`_hold`); the profile is suspended."""
    with write_transaction() as session:
        profile = _lock_profile(session, ticket.profile_id, skip_locked=False)
        charge = session.get(RecurringCharge, ticket.charge_id)
        if _hold(profile, charge, now, error):
            result.suspended.append(profile.id)


def _link(ticket: Ticket, payment_id: int) -> None:
    with write_transaction() as session:
        charge = session.get(RecurringCharge, ticket.charge_id)
        charge.payment_id = payment_id


def _ask_module(method: PaymentMethod, child: Payment, parent: Payment) -> ChargeResult:
    try:
        answer = get_registry().call(method.module, "billcore_recurring_charge", payment=child, parent=parent,
                                     paymethod=method, settings=full_settings(method))
    except Exception as exc:  # a module bug or an unexpected network error: the charge may have happened
        log.exception("module %s failed to charge payment %s", method.module, child.id)
        return ChargeResult(ChargeState.ERROR, info=f"{type(exc).__name__}")
    if not isinstance(answer, ChargeResult):
        return NO_ANSWER
    return answer


# What _ask_module returns when no module answered: a refusal, booked with the "unsupported" error.
NO_ANSWER = ChargeResult(ChargeState.FAILED, info="the payment system does not support automatic payments")


def _creation_error(exc: service.PaymentCreateError) -> Err:
    """Why the payment service refused to create the child, as the error code and parameters it gives
    (its message is already in the cron's language, so it is kept only when there is no code)."""
    return (exc.code, dict(exc.params)) if exc.code != TEXT else (TEXT, {"info": str(exc)})


def charge_ticket(ticket: Ticket, now: datetime, result: RunResult) -> str:
    """Create (or reuse) the claimed period's child payment, ask the module to charge it and book the
    answer through the payment service. Returns ``paid``, ``accepted``, ``failed`` or ``unknown`` (the
    child was flagged ``fraud``: the period is held and the profile suspended for an admin's check)."""
    child_id = ticket.payment_id
    if child_id is None:
        try:
            child = service.create_payment(ticket.account_id, ticket.paymethod_id, ticket.amount, source=SOURCE,
                                           description=_("Automatic payment %(period)s", period=ticket.period)[:255],
                                           check_limits=True)
        except service.PaymentCreateError as exc:
            _book(ticket, now, ok=False, error=_creation_error(exc), result=result)
            result.charges.append((ticket.profile_id, ticket.period, None, FAILED))
            return FAILED
        child_id = child.id
        _link(ticket, child_id)
        service.set_gateway_data(child_id, recurring_profile_id=ticket.profile_id, recurring_period=ticket.period,
                                 recurring_parent_id=ticket.parent_payment_id)
    db.session.expire_all()
    method = db.session.get(PaymentMethod, ticket.paymethod_id)
    parent = db.session.get(Payment, ticket.parent_payment_id)
    child = db.session.get(Payment, child_id)
    release_read_transaction()  # the profile's lock ended with the claim; hold no connection either
    answer = _ask_module(method, child, parent)
    data = {"state": answer.state, "info": answer.info, **(answer.data or {})}
    outcome = _apply_answer(method, child, answer, data)
    suspension = "suspended after failed charges"
    if outcome == FLAGGED:  # charged another amount: a new child could charge the customer twice
        _book_held(ticket, now, ("fraud_check", {"id": child_id}), result)
        suspension = "suspended: the charge needs an admin's check (payment flagged fraud)"
        outcome = UNKNOWN
    elif outcome == "error":  # unknown whether the gateway charged: keep the child, retry it with the same id
        _book(ticket, now, ok=False, error=("module_error", {"info": answer.info}), result=result, unknown=True)
        outcome = FAILED
    elif outcome == PAID:
        _book(ticket, now, ok=True, result=result)
    elif outcome == ACCEPTED:
        _book(ticket, now, ok=None, result=result)
    else:
        error = ("unsupported", {}) if answer is NO_ANSWER else _text_error(answer.info, ("refused", {}))
        _book(ticket, now, ok=False, error=error, result=result)
    if ticket.profile_id in result.suspended:
        service.record_event(child_id, kind=SOURCE, source=SOURCE, data={"profile_id": ticket.profile_id},
                             outcome=f"automatic payment {ticket.profile_id} {suspension}")
    db.session.expire_all()
    result.charges.append((ticket.profile_id, ticket.period, child_id, outcome))
    return outcome


def _apply_answer(method: PaymentMethod, child: Payment, answer: ChargeResult, data: dict[str, Any]) -> str:
    """Book the module's answer on the child through the payment service; returns paid/accepted/failed/error,
    or fraud (:data:`FLAGGED`) when the service flagged the child for another amount or currency."""
    source = method.module
    try:
        if answer.state == ChargeState.PAID:
            amount = Decimal(str((answer.data or {}).get("amount") or child.total))
            currency = str((answer.data or {}).get("currency") or child.currency)
            outcome = service.set_paid(child.id, amount=amount, currency=currency, source=source, kind=SOURCE,
                                       data=data, external_id=answer.external_id, info=answer.info or None)
            return FLAGGED if outcome.result == Status.FRAUD else PAID
        if answer.state == ChargeState.ACCEPTED:
            service.set_in_pay(child.id, source=source, kind=SOURCE, data=data, external_id=answer.external_id,
                               info=answer.info or None)
            return ACCEPTED
        if answer.state == ChargeState.ERROR:
            service.record_event(child.id, kind=SOURCE, source=SOURCE, data=data,
                                 outcome=f"charge failed in the module: {answer.info}")
            return "error"
        service.set_cancelled(child.id, source=source, kind=SOURCE, data=data,
                              reason=(answer.info or "charge refused")[:500])
        return FAILED
    except service.IllegalTransition:
        # a notification settled the child before the module answered (a fast gateway): its status rules
        db.session.expire_all()
        status = db.session.get(Payment, child.id).status
        if status in (Status.PAID.value, Status.PENDING_RETURN.value, Status.RETURNED.value):
            return PAID
        if status == Status.INPAY.value:
            return ACCEPTED
        if status == Status.FRAUD.value:
            return FLAGGED
        return FAILED


def due_profile_ids(now: datetime, limit: int = 500) -> list[int]:
    """Ids of active profiles due at ``now``, oldest due first."""
    return [profile_id for profile_id, _module in _due_profiles(now, limit)]


def _due_profiles(now: datetime, limit: int) -> list[tuple[int, str]]:
    """``(profile id, module key)`` of active profiles due at ``now``, oldest due first."""
    rows = [(row[0], row[1]) for row in db.session.execute(
        select(RecurringProfile.id, PaymentMethod.module)
        .join(PaymentMethod, PaymentMethod.id == RecurringProfile.paymethod_id)
        .where(RecurringProfile.status == ACTIVE, RecurringProfile.next_charge_at <= now)
        .order_by(RecurringProfile.next_charge_at, RecurringProfile.id).limit(limit))]
    db.session.commit()  # end the read snapshot before the claims
    return rows


def run_due(now: datetime | None = None, limit: int = 500) -> RunResult:
    """Charge every due profile once (the cron job). Safe to run on several hosts at once.

    The profiles of each module are charged concurrently by that module's pool of threads
    (:func:`billcore.gateway_pool.workers_for`); each claim is its own short transaction, and the
    gateway is asked with nothing locked (the claim's lease keeps other hosts off the profile).
    """
    now = _aware(now or utcnow())
    result = RunResult()
    by_module: dict[str, list[int]] = {}
    for profile_id, module in _due_profiles(now, limit):
        by_module.setdefault(module, []).append(profile_id)

    def charge(profile_id: int) -> None:
        ticket = _claim(profile_id, now, result)
        if ticket is not None:
            charge_ticket(ticket, now, result)

    def failed(profile_id: int, exc: Exception) -> None:
        # one profile's trouble (a database hiccup) must not stop the others
        log.error("recurring profile %s could not be processed", profile_id,
                  exc_info=(type(exc), exc, exc.__traceback__))
        result.errors.append((profile_id, f"{type(exc).__name__}: {exc}"[:300]))

    for module, profile_ids in by_module.items():
        run_each(profile_ids, charge, workers_for(module), failed)
    return result
