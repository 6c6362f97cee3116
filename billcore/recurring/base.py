"""What every part of auto-payments shares: rules, states, limits, and the profile's lock."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import PaymentMethod, RecurringProfile, Status
from ..money import commission
from ..states import ChargeStatus, ProfileStatus

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
# What the run reports when the payment service flagged the child ``fraud`` (the gateway reported
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
# A child in one of these was paid: its period is paid, whatever happened to the money afterwards.
PAID_CHILD = (Status.PAID.value, Status.PENDING_RETURN.value, Status.RETURNED.value)


def lock_profile(session: Session, profile_id: int, *, skip_locked: bool) -> RecurringProfile | None:
    """The profile, locked for this transaction (``FOR UPDATE``, ``SKIP LOCKED`` when asked: then None
    while another transaction holds it). SQLite ignores the clause: its write lock is held already."""
    query = select(RecurringProfile).where(RecurringProfile.id == profile_id)
    query = query.with_for_update(skip_locked=skip_locked)
    return session.execute(query).scalar_one_or_none()


def charge_total(method: PaymentMethod, amount: Decimal, currency: str) -> Decimal:
    """What a child of ``amount`` costs the customer: the amount plus the method's commission, computed
    as :func:`billcore.payments.service.create_payment` does (the monthly maximum caps these totals)."""
    return amount + commission(amount, currency, method.commission_amount or Decimal(0),
                               method.commission_percent or Decimal(0))
