"""Auto-payment profiles: the opt-in while paying, creating a profile from its paid parent, and
cancelling, suspending and resuming it (see :mod:`billcore.recurring`)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import db
from ..models import Payment, PaymentMethod, RecurringCharge, RecurringProfile, Status, utcnow
from ..money import MoneyError, parse_amount
from ..paymodule import FEATURE_RECURRING
from ..payments import service
from ..payments.service import write_transaction
from ..plugins import get_registry
from .base import (ABANDONED, ACCEPTED, ACTIVE, CANCELLED, CLAIMED, FIXED, LIVE, OPEN, PAID, PAID_CHILD,
                   PARENT_FLAG, RULES, SUSPENDED, THRESHOLD, UNSETTLED, charge_total, lock_profile)
from .errors import RecurringError, set_error
from .schedule import aware, next_fixed_due



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
    now = aware(now or utcnow())
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
        profile = lock_profile(session, profile_id, skip_locked=False)
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
        profile = lock_profile(session, profile_id, skip_locked=False)
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
    now = aware(now or utcnow())
    with write_transaction() as session:
        profile = lock_profile(session, profile_id, skip_locked=False)
        if profile is None:
            raise RecurringError(_("No such automatic payment."))
        if profile.status != SUSPENDED:
            raise RecurringError(_("Only a suspended automatic payment can be resumed."))
        for charge in session.execute(select(RecurringCharge).where(
                RecurringCharge.profile_id == profile.id, RecurringCharge.state.in_(UNSETTLED))).scalars():
            child = session.get(Payment, charge.payment_id) if charge.payment_id else None
            if child is not None and child.status in PAID_CHILD:
                charge.state, charge.updated_at = PAID, now  # paid late (e.g. after a cancel here)
            elif charge.state in (CLAIMED, ACCEPTED) and child is not None and child.status in OPEN:
                continue  # still being charged: booked when the gateway answers, or charged again (same id)
            else:
                charge.state, charge.updated_at = ABANDONED, now
        profile.status, profile.failures = ACTIVE, 0
        set_error(profile, None)
        profile.next_charge_at = now
        if profile.rule == FIXED:
            profile.charge_day = profile.charge_day or now.day
        profile.actor, profile.updated_at = actor or profile.actor, now
    db.session.expire_all()
    return db.session.get(RecurringProfile, profile_id)
