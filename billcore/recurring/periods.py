"""Booking a claimed period's outcome on it and on its profile, and the children still being charged
(which cleanup, the client and the run must never cancel or replace)."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, object_session

from .. import outbox
from ..db import db
from ..models import Payment, PaymentEvent, RecurringCharge, RecurringProfile, Status
from .base import (ACTIVE, FAILED, FIXED, LOCAL_CANCEL_KINDS, OPEN, PAID, PAID_CHILD, SUSPENDED,
                   UNKNOWN, UNSETTLED)
from .errors import Err, set_error, text_error
from .schedule import check_interval, max_failures, next_fixed_due, retry_delay


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


def cancelled_here(session: Session, payment: Payment) -> bool:
    """True when ``payment`` was cancelled by cleanup, the client or an admin's manual cancel rather than
    by the gateway's answer (a notification, a poll, an admin's "check now"): whether the gateway charged
    it is then unknown."""
    if payment.status != Status.CANCELLED.value:
        return False
    kind = session.execute(select(PaymentEvent.kind).where(
        PaymentEvent.payment_id == payment.id, PaymentEvent.status_to == Status.CANCELLED.value)
        .order_by(PaymentEvent.id.desc()).limit(1)).scalar_one_or_none()
    return kind in LOCAL_CANCEL_KINDS


def held_error(session: Session, payment: Payment) -> Err | None:
    """Why the period's settled-looking child must never be replaced (None when a retry may charge a new
    child): it was cancelled here while its charge's outcome was unknown (asked, no answer or still
    pending: the gateway may still take the money), or the payment service flagged it ``fraud`` because
    the gateway reported another amount or currency (the customer was charged something)."""
    if payment.status == Status.FRAUD.value:
        return ("fraud_check", {"id": payment.id})
    if cancelled_here(session, payment):
        return ("unknown_outcome", {"id": payment.id})
    return None


def announce(profile: RecurringProfile, charge: RecurringCharge, type_: str) -> None:
    """Write an auto-payment outcome to the outbox in the transaction booking it (the profile's)."""
    outbox.record(object_session(profile), type_, {
        "profile_id": profile.id, "account_id": profile.account_id, "period": charge.period,
        "payment_id": charge.payment_id, "status": profile.status, "failures": profile.failures or 0,
        "amount": outbox.money(profile.amount), "error_code": profile.last_error_code,
        "error_params": profile.last_error_params or {}})


def book_paid(profile: RecurringProfile, charge: RecurringCharge, now: datetime) -> None:
    """Book the period paid: failures reset, the next charge scheduled, the outcome announced."""
    charge.state, charge.updated_at = PAID, now
    profile.failures, profile.updated_at = 0, now
    set_error(profile, None)
    if profile.status == ACTIVE:
        if profile.rule == FIXED:
            year, month = (int(x) for x in charge.period.split("-"))
            profile.next_charge_at = next_fixed_due(profile.charge_day or 1, datetime(year, month, 1, tzinfo=timezone.utc))
        else:
            profile.next_charge_at = now + check_interval()
    announce(profile, charge, "recurring.charge_succeeded")


def book_failed(profile: RecurringProfile, charge: RecurringCharge, now: datetime, error: Err) -> bool:
    """Book a failed charge; True when it suspended the profile."""
    profile.failures = (profile.failures or 0) + 1
    profile.updated_at = now
    charge.state, charge.info, charge.updated_at = FAILED, set_error(profile, error), now
    announce(profile, charge, "recurring.charge_failed")
    if profile.status != ACTIVE:
        return False
    if profile.failures >= max_failures():
        profile.status, profile.next_charge_at = SUSPENDED, None
        announce(profile, charge, "recurring.suspended")
        return True
    profile.next_charge_at = now + retry_delay(profile.failures)
    return False


def hold(profile: RecurringProfile, charge: RecurringCharge, now: datetime, error: Err) -> bool:
    """Hold a period whose child must not be replaced (:func:`held_error`): no replacement is ever
    charged for it. The profile is suspended with ``error`` for an admin to check the payment at the
    gateway; the charge keeps its state (a late payment of the child is still credited by the payment
    service, and resuming books the period paid). True when this suspended the profile."""
    profile.failures = (profile.failures or 0) + 1
    profile.updated_at = now
    charge.info = set_error(profile, error)
    charge.updated_at = now
    if profile.status == ACTIVE:
        profile.status, profile.next_charge_at = SUSPENDED, None
        announce(profile, charge, "recurring.suspended")
        return True
    return False


def reconcile(session: Session, profile: RecurringProfile, charge: RecurringCharge, child: Payment | None,
              now: datetime) -> str | None:
    """Settle an accepted (or interrupted) charge from its ``child``'s status; returns the outcome or None
    while the child is still open."""
    if child is None or child.status in OPEN:
        return None
    if child.status in PAID_CHILD:
        book_paid(profile, charge, now)
        return PAID
    held = held_error(session, child)
    if held is not None:
        hold(profile, charge, now, held)
        return UNKNOWN
    book_failed(profile, charge, now, text_error(child.info, ("payment_status", {"id": child.id,
                                                                                 "status": child.status})))
    return FAILED
