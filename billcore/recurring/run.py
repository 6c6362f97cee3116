"""``recurring run``: charge every due profile's period exactly once, in three steps per charge.

1. **The claim**, one short transaction under the profile's lock (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL; SQLite's write lock): :func:`billcore.recurring.decisions.decide_claim` says what to do
   with the profile; for a charge the ``(profile, period)`` row is inserted (its unique constraint makes
   a second charge of one period impossible, even from two hosts) or updated, the child payment is created
   through the payment service in the same transaction (:func:`~billcore.payments.service.create_payment_in`,
   with the period in its gateway data) and linked to the period, and the profile is leased (not due for
   :data:`~billcore.recurring.base.LEASE`, so no other host picks it up meanwhile).
2. **The module's call**, with nothing held: no transaction, no connection, no lock.
3. **The booking**, one transaction under the profile's lock again: the payment service books the
   module's answer on the child (``inpay``, ``paid``, ``cancelled``, or an event when the module failed)
   and the period and profile get their outcome, committed together. The booking of an accepted charge
   (the usual answer: the money comes later, by notification) does not wait for the disk on PostgreSQL;
   lost in a crash of the database's machine, it is the interrupted run described next.

An interrupted run resumes without charging twice. Interrupted after step 1: the period is claimed with a
``new`` child; once the lease is over a run charges that same child again (same payment id, the
gateway's idempotency key: claimed + new is a retry of a kept child). Interrupted during or after step 2,
before step 3 committed: the same, unless the gateway's notification settled the child meanwhile
(claimed + inpay: wait; claimed + paid or cancelled: reconcile the period from the child). After step 3
nothing is left to do. A child cancelled here or flagged ``fraud`` while its outcome was unknown is never
replaced (:func:`billcore.recurring.periods.held_error`).
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import commit_without_waiting_for_the_disk, db
from ..gateway_pool import run_each, workers_for
from ..models import Account, Payment, PaymentMethod, RecurringCharge, RecurringProfile, Status, utcnow
from ..paymethods import full_settings
from ..paymodule import ChargeResult
from ..payments import service
from ..payments.service import write_transaction
from ..plugins import get_registry
from ..prepared import PreparedLookup, PreparedWrite
from ..states import ChargeState
from .base import (ABANDONED, ACCEPTED, ACTIVE, CLAIMED, COUNTED, FAILED, FIXED, FLAGGED, LEASE, PAID, PAID_CHILD,
                   SOURCE, SUSPENDED, THRESHOLD, UNKNOWN, UNSETTLED, charge_total, lock_profile)
from .decisions import CHARGES, ChildKind, ClaimAction, PendingAction, classify_child, decide_claim, decide_pending
from .errors import TEXT, Err, set_error, text_error
from .periods import book_failed, book_paid, held_error, hold, reconcile
from .schedule import aware, check_interval, fixed_period, month_start, next_fixed_due, next_month_start

log = logging.getLogger(__name__)


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
    payment_id: int | None  # the child to charge (made by the claim, or left ``new`` by an earlier run)
    # as the claim read them (detached; the module gets them attached to the thread's session)
    child: Payment | None = field(default=None, repr=False)
    parent: Payment | None = field(default=None, repr=False)
    method: PaymentMethod | None = field(default=None, repr=False)


Charge = tuple[int, str, int | None, str]  # (profile id, period, payment id, outcome) of a charge tried


@dataclass
class RunResult:
    """What one :func:`run_due` did: ``(profile id, period, payment id, outcome)`` per charge tried
    (in ``charges``, or handed to ``on_charge`` as it happens, see :func:`run_due`), and the count per
    outcome."""

    charges: list[Charge] = field(default_factory=list)
    suspended: list[int] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (profile id, what went wrong)
    outcomes: Counter[str] = field(default_factory=Counter)
    on_charge: Callable[[Charge], None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, charge: Charge) -> None:
        """Count a charge tried, and keep it (or hand it to ``on_charge``). Called from the pool's threads."""
        with self._lock:
            self.outcomes[charge[3]] += 1
            if self.on_charge is None:
                self.charges.append(charge)
            else:
                self.on_charge(charge)

    @property
    def total(self) -> int:
        """How many charges were tried."""
        return sum(self.outcomes.values())

    def count(self, outcome: str) -> int:
        """How many charges ended with ``outcome`` (paid, accepted, failed)."""
        return self.outcomes[outcome]


# --- step 1: the claim ----------------------------------------------------------------------------------

_PROFILES, _CHARGES = RecurringProfile.__table__, RecurringCharge.__table__

# What the claim reads of a profile's periods, in one statement, for three facts at once: the latest
# unsettled period, whether the period to claim exists, and this month's children (monthly maximum).
_PERIOD_ROWS = (
    select(_CHARGES.c.id, _CHARGES.c.period, _CHARGES.c.state, _CHARGES.c.charged_at,
           Payment.__table__.c.total, Payment.__table__.c.status)
    .select_from(_CHARGES.outerjoin(Payment.__table__, Payment.__table__.c.id == _CHARGES.c.payment_id))
    .where(_CHARGES.c.profile_id == bindparam("profile_id"),
           or_(_CHARGES.c.state.in_([state.value for state in UNSETTLED]), _CHARGES.c.period == bindparam("period"),
               and_(_CHARGES.c.charged_at >= bindparam("month_start"),
                    _CHARGES.c.charged_at < bindparam("next_month_start"))))
)


_LEASE_PROFILE = PreparedWrite(update(_PROFILES).where(_PROFILES.c.id == bindparam("profile_id")).values(
    next_charge_at=bindparam("next_charge_at"), updated_at=bindparam("updated_at"), sequence=bindparam("sequence")))


def _lock_claimed_profile(session: Session, profile_id: int) -> Any:
    """The profile locked for the claim (``FOR UPDATE SKIP LOCKED``: None while another host holds it),
    with its account, method and parent payment read in the same statement: ``(profile, account, method,
    parent)``. While the caller keeps them, the payment service and the module find them in the session
    without a query of their own (the session holds its objects only weakly)."""
    query = (select(RecurringProfile, Account, PaymentMethod, Payment)
             .join(Account, Account.id == RecurringProfile.account_id)
             .join(PaymentMethod, PaymentMethod.id == RecurringProfile.paymethod_id)
             .join(Payment, Payment.id == RecurringProfile.parent_payment_id)
             .where(RecurringProfile.id == profile_id)
             .with_for_update(of=RecurringProfile, skip_locked=True))
    return session.execute(query).first()


class _ProfileFacts:
    """The :class:`~billcore.recurring.decisions.ClaimFacts` of a locked profile, each read from the
    claim's session on first use (the table asks only for the facts its rows get to)."""

    def __init__(self, session: Session, locked: Any, now: datetime):
        """``locked``: what :func:`_lock_claimed_profile` read (None: the profile is locked elsewhere)."""
        self.session, self.now = session, now
        self.profile: RecurringProfile | None = None
        if locked is not None:
            self.profile, self.account, self.method, self.parent = locked

    @cached_property
    def due(self) -> bool:
        """The profile is active and due (None: another host holds its lock)."""
        profile = self.profile
        return profile is not None and profile.status == ACTIVE and profile.next_charge_at is not None \
            and aware(profile.next_charge_at) <= self.now

    @cached_property
    def _periods(self) -> list[Any]:
        """The profile's periods that the period facts look at (see :data:`_PERIOD_ROWS`)."""
        return list(self.session.execute(_PERIOD_ROWS, {
            "profile_id": self.profile.id, "period": self.period, "month_start": month_start(self.now),
            "next_month_start": next_month_start(self.now)}))

    @cached_property
    def pending_charge(self) -> RecurringCharge | None:
        """The profile's latest unsettled period."""
        unsettled = [row.id for row in self._periods if row.state in UNSETTLED]
        return self.session.get(RecurringCharge, max(unsettled)) if unsettled else None

    @cached_property
    def old_child(self) -> Payment | None:
        """The unsettled period's child, if it has one."""
        charge = self.pending_charge
        return self.session.get(Payment, charge.payment_id) if charge is not None and charge.payment_id else None

    @cached_property
    def pending(self) -> PendingAction:
        """:func:`~billcore.recurring.decisions.decide_pending` of the latest unsettled period."""
        charge, child = self.pending_charge, self.old_child
        return decide_pending(charge.state if charge is not None else None,
                              child.status if child is not None else None)

    @cached_property
    def period(self) -> str:
        """The key of the next period: the charge date's month (fixed) or the next sequence (threshold)."""
        if self.profile.rule == FIXED:
            return fixed_period(self.profile.next_charge_at)
        return f"t{(self.profile.sequence or 0) + 1}"

    @cached_property
    def period_done(self) -> bool:
        """Fixed rule: the next period exists already. A threshold period's key is always new."""
        if self.profile.rule != FIXED:
            return False
        return any(row.period == self.period for row in self._periods)

    @cached_property
    def held(self) -> Err | None:
        """Why the retried period's settled child must never be replaced (None: it may be)."""
        child = self.old_child
        return held_error(self.session, child) if child is not None and child.status != Status.NEW.value else None

    @cached_property
    def child(self) -> ChildKind:
        """What the retried period's child allows."""
        child = self.old_child
        return classify_child(child.status if child is not None else None, self.held is not None)

    @cached_property
    def topped_up(self) -> bool:
        """Threshold rule: the balance is at or above the threshold."""
        return self.profile.rule == THRESHOLD and self.account.balance >= (self.profile.threshold or Decimal("0"))

    @cached_property
    def next_total(self) -> Decimal:
        """What the next child costs the customer (amount and commission)."""
        return charge_total(self.method, self.profile.amount, self.account.currency)

    @cached_property
    def month_total(self) -> Decimal:
        """What the profile's children charged (or are charging) the customer this calendar month: the
        totals of the children in a :data:`~billcore.recurring.base.COUNTED` status whose period was
        charged (last attempted) this month."""
        start, end = month_start(self.now), next_month_start(self.now)
        return sum((row.total for row in self._periods
                    if row.status in COUNTED and row.charged_at is not None and start <= aware(row.charged_at) < end),
                   Decimal("0"))

    @cached_property
    def over_max(self) -> bool:
        """One more child would take this calendar month's children over the monthly maximum."""
        return self.month_total + self.next_total > self.profile.monthly_max


def _claim(profile_id: int, now: datetime, result: RunResult) -> Ticket | None:
    """Lock a due profile, decide what to do (:func:`~billcore.recurring.decisions.decide_claim`) and do
    it; for a charge, claim the period and create its child in this one transaction. Returns the
    :class:`Ticket` to charge, or None when there is nothing to charge now."""
    try:
        with write_transaction() as session:
            facts = _ProfileFacts(session, _lock_claimed_profile(session, profile_id), now)
            action = decide_claim(facts)
            if action == ClaimAction.SKIP:
                return None  # another host has it, or it is no longer due
            return _apply_claim(session, facts, action, now, result)
    except IntegrityError:
        log.info("recurring profile %s: period already claimed elsewhere", profile_id)
        return None


def _apply_claim(session: Session, facts: _ProfileFacts, action: ClaimAction, now: datetime,
                 result: RunResult) -> Ticket | None:
    """Carry out ``action`` on the locked profile in the claim's transaction."""
    profile, pending = facts.profile, facts.pending_charge
    if action == ClaimAction.WAIT:
        profile.next_charge_at = now + check_interval()
        return None
    if action == ClaimAction.RECONCILE:
        outcome = reconcile(session, profile, pending, facts.old_child, now)
        result.add((profile.id, pending.period, pending.payment_id, outcome))
        if profile.status == SUSPENDED:
            result.suspended.append(profile.id)
        return None
    if facts.pending == PendingAction.FAIL_AND_RETRY:
        pending.state = FAILED  # accepted without a child: whatever happens next, it is a failed period
    if action == ClaimAction.NEXT_MONTH:  # this month was charged already: go on to the next one
        profile.next_charge_at = next_fixed_due(profile.charge_day or 1, profile.next_charge_at)
        return None
    if action == ClaimAction.CHECK_LATER:
        profile.next_charge_at = now + check_interval()
        return None
    if action == ClaimAction.HOLD:
        # a failed period whose child was cancelled here, not by the gateway, or flagged fraud
        hold(profile, pending, now, facts.held)
        result.add((profile.id, pending.period, facts.old_child.id, UNKNOWN))
        result.suspended.append(profile.id)
        return None
    if action == ClaimAction.ABANDON:  # topped up meanwhile (by hand): the failed top-up is no longer needed
        pending.state, pending.updated_at = ABANDONED, now
        profile.failures, profile.updated_at = 0, now
        set_error(profile, None)
        profile.next_charge_at = now + check_interval()
        return None
    if action == ClaimAction.MONTHLY_MAX:
        set_error(profile, ("monthly_max", {"max": str(profile.monthly_max), "currency": facts.account.currency}))
        profile.next_charge_at = next_month_start(now)
        profile.updated_at = now
        return None
    if action not in CHARGES:
        raise ValueError(f"no applier for {action!r}")
    return _claim_charge(session, facts, action, now, result)


def _claim_charge(session: Session, facts: _ProfileFacts, action: ClaimAction, now: datetime,
                  result: RunResult) -> Ticket | None:
    """Claim the period (a new one, or the pending one again) with its child, made here through the payment
    service unless the same child is charged again, and lease the profile. A child the payment service
    refuses to create is booked as a failed charge of the period in the same transaction (None is
    returned)."""
    profile = facts.profile
    period = facts.period if action == ClaimAction.CHARGE_NEW_PERIOD else facts.pending_charge.period
    child, error = facts.old_child if action == ClaimAction.CHARGE_SAME_CHILD else None, None
    if child is None:
        # made first, so the period is written once, with its child (a concurrent claim of the same
        # period still fails below, on the unique constraint, and rolls the child back with it)
        try:
            child = service.create_payment_in(
                session, profile.account_id, profile.paymethod_id, profile.amount, source=SOURCE,
                description=_("Automatic payment %(period)s", period=period)[:255], check_limits=True,
                gateway_data={"recurring_profile_id": profile.id, "recurring_period": period,
                              "recurring_parent_id": profile.parent_payment_id})
        except service.PaymentCreateError as exc:
            error = _creation_error(exc)
    if action == ClaimAction.CHARGE_NEW_PERIOD and child is not None:
        return _claim_new_period(session, facts, period, child, now)
    if action == ClaimAction.CHARGE_NEW_PERIOD:
        charge = RecurringCharge(profile_id=profile.id, period=period, attempts=0, created_at=now)
        session.add(charge)
        if profile.rule == THRESHOLD:
            profile.sequence = (profile.sequence or 0) + 1
    else:
        charge = facts.pending_charge
    charge.state, charge.attempts, charge.updated_at = CLAIMED, (charge.attempts or 0) + 1, now
    if action != ClaimAction.CHARGE_SAME_CHILD:
        charge.payment_id = child.id if child is not None else None  # a refused child stays cancelled
        charge.charged_at = now
    profile.next_charge_at, profile.updated_at = now + LEASE, now
    session.flush()  # a concurrent claim of the same period fails here, on the unique constraint
    if child is None:  # the payment service refused to create it (``error`` says why)
        if book_failed(profile, charge, now, error or ("refused", {})):
            result.suspended.append(profile.id)
        result.add((profile.id, charge.period, None, FAILED))
        return None
    return Ticket(profile.id, charge.id, charge.period, profile.amount, profile.account_id, profile.paymethod_id,
                  profile.parent_payment_id, child.id, child=child, parent=facts.parent, method=facts.method)


def _claim_new_period(session: Session, facts: _ProfileFacts, period: str, child: Payment, now: datetime) -> Ticket:
    """The usual claim: write the new period with its child and lease the profile, as two statements on
    the claim's connection (the profile loaded in the session is not used after the claim, so it is not
    updated through it). A concurrent claim of the same period fails on the unique constraint here."""
    profile = facts.profile
    conn = session.connection()
    charge_id = conn.execute(insert(_CHARGES).returning(_CHARGES.c.id), {
        "profile_id": profile.id, "period": period, "payment_id": child.id, "state": CLAIMED.value, "attempts": 1,
        "charged_at": now, "created_at": now, "updated_at": now}).scalar_one()
    sequence = (profile.sequence or 0) + 1 if profile.rule == THRESHOLD else profile.sequence
    _LEASE_PROFILE.execute(conn, {"profile_id": profile.id, "next_charge_at": now + LEASE, "updated_at": now,
                                  "sequence": sequence})
    return Ticket(profile.id, charge_id, period, profile.amount, profile.account_id, profile.paymethod_id,
                  profile.parent_payment_id, child.id, child=child, parent=facts.parent, method=facts.method)


def _creation_error(exc: service.PaymentCreateError) -> Err:
    """Why the payment service refused to create the child, as the error code and parameters it gives
    (its message is already in the cron's language, so it is kept only when there is no code)."""
    return (exc.code, dict(exc.params)) if exc.code != TEXT else (TEXT, {"info": str(exc)})


def _link(ticket: Ticket, payment_id: int) -> None:
    """Link ``payment_id`` to the ticket's period as its child (tests set up old runs' states with it)."""
    with write_transaction() as session:
        charge = session.get(RecurringCharge, ticket.charge_id)
        charge.payment_id = payment_id


# --- step 2: the module's call --------------------------------------------------------------------------

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


def _charge_objects(ticket: Ticket) -> tuple[PaymentMethod, Payment, Payment]:
    """The method, child and parent for the module, attached to this thread's session without a query
    (as the claim read them; an attribute the module reads beyond them loads as it always did)."""
    if ticket.child is None or ticket.parent is None or ticket.method is None:  # a ticket made by hand
        db.session.expire_all()
        return (db.session.get(PaymentMethod, ticket.paymethod_id), db.session.get(Payment, ticket.payment_id),
                db.session.get(Payment, ticket.parent_payment_id))
    return (db.session.merge(ticket.method, load=False), db.session.merge(ticket.child, load=False),
            db.session.merge(ticket.parent, load=False))


def charge_ticket(ticket: Ticket, now: datetime, result: RunResult) -> str:
    """Ask the module to charge the claimed period's child (nothing held meanwhile), then book its answer
    on the child, the period and the profile in one transaction. Returns ``paid``, ``accepted``,
    ``failed`` or ``unknown`` (the child was flagged ``fraud``: the period is held and the profile
    suspended for an admin's check)."""
    method, child, parent = _charge_objects(ticket)
    asked = (child.total, child.currency)  # what the module was asked to charge
    answer = _ask_module(method, child, parent)
    outcome = _book_answer(ticket, method.module, asked, answer, now, result)
    db.session.expire_all()  # the caller's session sees the booked child when it looks again
    result.add((ticket.profile_id, ticket.period, ticket.payment_id, outcome))
    return outcome


# --- step 3: the booking --------------------------------------------------------------------------------

# The booking's lock on the profile (taken before the service locks the child, as the claim does) and
# the writes of an accepted charge, compiled once and run on the DBAPI cursor (billcore.prepared).
_LOCK_PROFILE_STATUS = PreparedLookup(select(_PROFILES.c.status).where(_PROFILES.c.id == bindparam("profile_id"))
                                      .with_for_update())
_ACCEPT_CHARGE = PreparedWrite(update(_CHARGES).where(_CHARGES.c.id == bindparam("charge_id"))
                               .values(state=bindparam("state"), updated_at=bindparam("updated_at")))
_RECHECK_PROFILE = PreparedWrite(update(_PROFILES).where(_PROFILES.c.id == bindparam("profile_id"))
                                 .values(next_charge_at=bindparam("next_charge_at")))

def _book_answer(ticket: Ticket, module: str, asked: tuple[Decimal, str], answer: ChargeResult, now: datetime,
                 result: RunResult) -> str:
    """Book the module's ``answer`` on the child (through the payment service), the period and the
    profile, in one transaction under the profile's lock (taken first, as the claim does; the service then
    locks the child, and for a credit the account last, just before the commit)."""
    child_id = ticket.payment_id
    with write_transaction() as session:
        conn = session.connection()
        status = _LOCK_PROFILE_STATUS.one_or_none(conn, {"profile_id": ticket.profile_id})
        data = {"state": answer.state, "info": answer.info, **(answer.data or {})}
        outcome = _apply_answer(session, module, child_id, asked, answer, data)
        if outcome == ACCEPTED and status is not None:
            # the usual answer of a gateway that settles later by notification: two statements on the
            # locked rows instead of loading the profile and period into the session
            _ACCEPT_CHARGE.execute(conn, {"charge_id": ticket.charge_id, "state": ACCEPTED.value, "updated_at": now})
            if status.status == ACTIVE:
                _RECHECK_PROFILE.execute(conn, {"profile_id": ticket.profile_id,
                                                "next_charge_at": now + check_interval()})
            # moves no money: lost in a crash, it is a run that died before the booking (module doc)
            commit_without_waiting_for_the_disk(conn)
            return outcome
        profile = lock_profile(session, ticket.profile_id, skip_locked=False)  # held already: a plain read
        charge = session.get(RecurringCharge, ticket.charge_id)
        suspension = "suspended after failed charges"
        suspended = False
        if outcome == FLAGGED:  # charged another amount: a new child could charge the customer twice
            suspended = hold(profile, charge, now, ("fraud_check", {"id": child_id}))
            suspension = "suspended: the charge needs an admin's check (payment flagged fraud)"
            outcome = UNKNOWN
        elif outcome == "error":
            # unknown whether the gateway charged: the failure counts, but the period stays claimed, so its
            # child is never seen as a settled failure (cleanup and the client leave it alone) and the
            # same child is charged again, with the same id
            suspended = book_failed(profile, charge, now, ("module_error", {"info": answer.info}))
            charge.state = CLAIMED
            outcome = FAILED
        elif outcome == PAID:
            book_paid(profile, charge, now)
        elif outcome == ACCEPTED:  # a profile that vanished meanwhile (the usual case returned above)
            charge.state, charge.updated_at = ACCEPTED, now
            if profile is not None and profile.status == ACTIVE:
                profile.next_charge_at = now + check_interval()  # then the outcome is booked
        else:
            error = ("unsupported", {}) if answer is NO_ANSWER else text_error(answer.info, ("refused", {}))
            suspended = book_failed(profile, charge, now, error)
        if suspended:
            result.suspended.append(profile.id)
            service.record_event_in(session, child_id, kind=SOURCE, source=SOURCE, data={"profile_id": profile.id},
                                    outcome=f"automatic payment {profile.id} {suspension}")
    return outcome


def _apply_answer(session: Session, module: str, child_id: int, asked: tuple[Decimal, str], answer: ChargeResult,
                  data: dict[str, Any]) -> str:
    """Book the module's answer on the child through the payment service, in the booking's ``session``;
    returns paid/accepted/failed/error, or fraud (:data:`~billcore.recurring.base.FLAGGED`) when the
    service flagged the child for another amount or currency. ``asked``: the child's total and currency,
    taken as what was paid when the module does not say."""
    try:
        if answer.state == ChargeState.PAID:
            amount = Decimal(str((answer.data or {}).get("amount") or asked[0]))
            currency = str((answer.data or {}).get("currency") or asked[1])
            outcome = service.set_paid_in(session, child_id, amount=amount, currency=currency, source=module,
                                          kind=SOURCE, data=data, external_id=answer.external_id,
                                          info=answer.info or None)
            return FLAGGED if outcome.result == Status.FRAUD else PAID
        if answer.state == ChargeState.ACCEPTED:
            service.set_in_pay_in(session, child_id, source=module, kind=SOURCE, data=data,
                                  external_id=answer.external_id, info=answer.info or None)
            return ACCEPTED
        if answer.state == ChargeState.ERROR:
            service.record_event_in(session, child_id, kind=SOURCE, source=SOURCE, data=data,
                                    outcome=f"charge failed in the module: {answer.info}")
            return "error"
        service.set_cancelled_in(session, child_id, source=module, kind=SOURCE, data=data,
                                 reason=(answer.info or "charge refused")[:500])
        return FAILED
    except service.IllegalTransition as exc:
        # a notification settled the child before the module answered (a fast gateway): its status rules
        # (read under the child's lock by the refused change, which wrote nothing)
        if exc.current in PAID_CHILD:
            return PAID
        if exc.current == Status.INPAY.value:
            return ACCEPTED
        if exc.current == Status.FRAUD.value:
            return FLAGGED
        return FAILED


# --- the run --------------------------------------------------------------------------------------------

# Due profiles are read in batches of this many (oldest due first), so a run of any size holds one
# batch of ids at a time.
DUE_BATCH = 1000


def due_profile_ids(now: datetime, limit: int = 500) -> list[int]:
    """Ids of active profiles due at ``now``, oldest due first."""
    return [profile_id for batch in _due_batches(now, limit) for profile_id, _module in batch]


def _due_batches(now: datetime, limit: int) -> Iterator[list[tuple[int, str]]]:
    """``(profile id, module key)`` of active profiles due at ``now``, oldest due first, at most ``limit``
    in all, in batches of :data:`DUE_BATCH` read one after another (keyset: each batch starts after the last one's
    ``(next_charge_at, id)``, so a profile another host holds is not read again)."""
    after: tuple[datetime, int] | None = None
    size = DUE_BATCH
    while limit > 0:
        query = (select(RecurringProfile.id, PaymentMethod.module, RecurringProfile.next_charge_at)
                 .join(PaymentMethod, PaymentMethod.id == RecurringProfile.paymethod_id)
                 .where(RecurringProfile.status == ACTIVE, RecurringProfile.next_charge_at <= now)
                 .order_by(RecurringProfile.next_charge_at, RecurringProfile.id).limit(min(size, limit)))
        if after is not None:
            query = query.where(or_(RecurringProfile.next_charge_at > after[0],
                                    and_(RecurringProfile.next_charge_at == after[0], RecurringProfile.id > after[1])))
        rows = db.session.execute(query).all()
        db.session.commit()  # end the read snapshot before the claims
        if not rows:
            return
        yield [(row[0], row[1]) for row in rows]
        limit -= len(rows)
        after = (rows[-1][2], rows[-1][0])


def run_due(now: datetime | None = None, limit: int = 500,
            on_charge: Callable[[Charge], None] | None = None) -> RunResult:
    """Charge every due profile once (the cron job). Safe to run on several hosts at once.

    The profiles of each module are charged concurrently by that module's pool of threads
    (:func:`billcore.gateway_pool.workers_for`); each claim and each booking is one short transaction,
    and the gateway is asked with nothing locked (the claim's lease keeps other hosts off the profile).
    The due profiles are read in batches (:data:`DUE_BATCH`), oldest due first. With ``on_charge``, each
    charge tried is handed to it as it happens (from the pool's threads, one at a time) instead of being
    kept in the result's ``charges``: a run of any size then holds only counts.
    """
    now = aware(now or utcnow())
    result = RunResult(on_charge=on_charge)

    def charge(profile_id: int) -> None:
        ticket = _claim(profile_id, now, result)
        if ticket is not None:
            charge_ticket(ticket, now, result)

    def failed(profile_id: int, exc: Exception) -> None:
        # one profile's trouble (a database hiccup) must not stop the others
        log.error("recurring profile %s could not be processed", profile_id,
                  exc_info=(type(exc), exc, exc.__traceback__))
        result.errors.append((profile_id, f"{type(exc).__name__}: {exc}"[:300]))

    for batch in _due_batches(now, limit):
        by_module: dict[str, list[int]] = {}
        for profile_id, module in batch:
            by_module.setdefault(module, []).append(profile_id)
        for module, profile_ids in by_module.items():
            run_each(profile_ids, charge, workers_for(module), failed)
    return result
