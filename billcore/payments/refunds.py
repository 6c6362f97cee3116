"""Refunds through a payment's gateway: book the request, ask the module, book its answer.

Used by the admin's refund action and by cron commands that follow pending refunds. The balance is
debited when the refund is requested (:func:`service.request_refund`) and credited back if the gateway
refuses it (:func:`service.fail_refund`); the module's hooks never change state themselves.

A refund that stays ``requested`` longer than ``REFUND_ATTENTION_HOURS`` (the gateway never gave an id to
follow it by, or keeps answering "processing") is flagged for an admin once in the payment's history and
reported as ``attention`` by every later follow; the admin then settles it by hand
(:func:`settle_by_hand`) after looking at the gateway's own records. A refund the gateway gave no id
for may be settled by hand sooner, but only ``REFUND_SETTLE_GRACE_MINUTES`` after it was requested: its
gateway call may still be under way until then, and settling it as failed while the gateway goes on to
accept it would refund the amount twice. A gateway answer that arrives for a refund already settled is
recorded in the history and logged as an error for an admin, never applied.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select

from ..db import db
from ..gateway_pool import release_read_transaction
from ..models import Payment, PaymentEvent, PaymentMethod, Refund, utcnow
from ..paymethods import full_settings
from ..paymodule import FEATURE_REFUND, RefundResult
from ..states import RefundState, RefundStatus
from ..plugins import get_registry
from . import service
from .polling import failure_text


@dataclass(frozen=True)
class RefundOutcome:
    """What happened to a refund: ``finished``, ``failed``, ``pending`` (the gateway is still working on
    it), ``error`` (the gateway could not be asked; the refund stays requested and can be followed) or
    ``attention`` (still requested after ``REFUND_ATTENTION_HOURS``: an admin must settle it by hand)."""

    refund_id: int
    state: str
    info: str = ""


log = logging.getLogger(__name__)

ATTENTION = "attention"
DEFAULT_ATTENTION_HOURS = 24
DEFAULT_SETTLE_GRACE_MINUTES = 15
SETTLED = (RefundState.FINISHED, RefundState.FAILED)


def attention_after() -> timedelta:
    """How long a refund may stay ``requested`` before it is flagged for an admin.

    The ``REFUND_ATTENTION_HOURS`` setting (hours, default 24).
    """
    hours = current_app.config.get("REFUND_ATTENTION_HOURS")
    return timedelta(hours=float(hours if hours is not None else DEFAULT_ATTENTION_HOURS))


def is_overdue(refund: Refund, now: datetime | None = None) -> bool:
    """True when ``refund`` is still ``requested`` after :func:`attention_after`."""
    return refund.status == RefundStatus.REQUESTED and refund.created_at <= (now or utcnow()) - attention_after()


def settle_grace() -> timedelta:
    """How long after it was requested a refund without a gateway id may be settled by hand.

    The ``REFUND_SETTLE_GRACE_MINUTES`` setting (minutes, default 15): longer than any gateway call
    (its Refund/Create request may still be under way until then).
    """
    minutes = current_app.config.get("REFUND_SETTLE_GRACE_MINUTES")
    return timedelta(minutes=float(minutes if minutes is not None else DEFAULT_SETTLE_GRACE_MINUTES))


def settleable_at(refund: Refund) -> datetime:
    """When an admin may settle ``refund`` by hand: :func:`settle_grace` after it was requested when the
    gateway gave no id to follow it by, and in any case once it is overdue (:func:`attention_after`)."""
    wait = attention_after() if refund.external_id else min(settle_grace(), attention_after())
    return refund.created_at + wait


def is_stuck(refund: Refund, now: datetime | None = None) -> bool:
    """True when following cannot be trusted to settle ``refund``: it is still ``requested`` and either
    the gateway gave no id to follow it by (and :func:`settle_grace` has passed, so its request is no
    longer under way) or it is overdue (:func:`is_overdue`). An admin may settle such a refund by hand."""
    return refund.status == RefundStatus.REQUESTED and (now or utcnow()) >= settleable_at(refund)


def settle_waits(refund: Refund, now: datetime | None = None) -> bool:
    """True for a ``requested`` refund without a gateway id that is still within :func:`settle_grace`:
    its gateway call may still be under way, so it cannot be settled by hand yet."""
    return refund.status == RefundStatus.REQUESTED and not refund.external_id and not is_stuck(refund, now)


def can_refund(paymethod: PaymentMethod | None) -> bool:
    """True when the method allows refunds and its module is loaded and supports them."""
    return bool(paymethod is not None and paymethod.allow_refund
                and get_registry().has_feature(paymethod.module, FEATURE_REFUND))


def _book(refund_id: int, result: RefundResult, source: str, actor: str | None) -> RefundOutcome:
    """Book the gateway's answer about a refund through the service.

    An answer about a refund already settled (an admin settled it by hand meanwhile) is never applied:
    it is recorded and logged for an admin (:func:`_late_answer`). A ``pending`` answer is recorded only
    when it says something new (:func:`_pending_changed`), not on every follow.
    """
    data = dict(result.data or {})
    data.setdefault("state", result.state)
    data.setdefault("refund_id", refund_id)
    db.session.expire_all()
    refund = db.session.get(Refund, refund_id)
    if refund is not None and refund.status in SETTLED:
        return _late_answer(refund, result, data, source, actor)
    # the service reads the refund again under its own lock: the session's read transaction (and its
    # connection, a second one beside a batch job's claim) is not kept while it writes
    release_read_transaction()
    if result.state == RefundState.FINISHED:
        outcome = service.finish_refund(refund_id, source=source, external_id=result.external_id, data=data,
                                        info=result.info or None, actor=actor)
    elif result.state == RefundState.FAILED:
        outcome = service.fail_refund(refund_id, source=source, data=data,
                                      info=result.info or f"refund {refund_id} refused by the gateway", actor=actor)
    else:
        outcome = None
        if result.external_id and (refund is None or refund.external_id != result.external_id):
            service.set_refund_external_id(refund_id, result.external_id)
        text = (f"refund {refund_id} pending at the gateway" + (f": {result.info}" if result.info else ""))[:255]
        db.session.expire_all()
        refund = db.session.get(Refund, refund_id)
        if refund is not None and refund.status in SETTLED:  # settled while the id was being stored
            return _late_answer(refund, result, data, source, actor)
        if refund is None or _pending_changed(refund, text):
            release_read_transaction()
            service.record_event(refund.payment_id if refund else None, kind="refund", source=source, actor=actor,
                                 data=data, outcome=text)
    if outcome is not None and not outcome.changed:  # settled by someone else between our read and now
        db.session.expire_all()
        refund = db.session.get(Refund, refund_id)
        if refund is not None:
            return _late_answer(refund, result, data, source, actor)
    db.session.expire_all()
    return RefundOutcome(refund_id, result.state if result.state in SETTLED else "pending", result.info)


def _refund_events(payment_id: int, refund_id: int):
    """The refund events of ``payment_id`` about refund ``refund_id`` (by their outcome text, whose
    ``refund <id> `` prefix every refund event of the core has), newest first."""
    return (select(PaymentEvent).where(PaymentEvent.payment_id == payment_id, PaymentEvent.kind == "refund",
                                       PaymentEvent.outcome.like(f"refund {int(refund_id)} %"))
            .order_by(PaymentEvent.id.desc()))


def _pending_changed(refund: Refund, text: str) -> bool:
    """False when the latest event about ``refund`` (its attention flag aside) already says ``text``."""
    last = db.session.execute(
        _refund_events(refund.payment_id, refund.id).with_only_columns(PaymentEvent.outcome)
        .where(PaymentEvent.outcome.not_like(f"{_flag_prefix(refund.id)}%")).limit(1)).scalar_one_or_none()
    return last != text


def _late_answer(refund: Refund, result: RefundResult, data: dict, source: str,
                 actor: str | None) -> RefundOutcome:
    """The gateway answered about a refund already settled (by hand, most likely): nothing is changed,
    but the answer goes into the history and the log for an admin, who must reconcile it with the gateway
    (an accepted refund settled failed by hand means the amount was returned twice)."""
    agrees = result.state == refund.status
    outcome = (f"refund {refund.id} already {refund.status}, but the gateway answered {result.state}"
               + (f" (id {result.external_id})" if result.external_id else "")
               + ("" if agrees else ": check the gateway and the balance by hand")
               + (f": {result.info}" if result.info else ""))[:255]
    service.record_event(refund.payment_id, kind="refund", source=source, actor=actor,
                         data={**data, "late_answer": True, "settled": refund.status,
                               "external_id": result.external_id}, outcome=outcome)
    log.log(logging.WARNING if agrees else logging.ERROR,
            "refund %s of payment %s is already %s, but the gateway answered %s%s: %s", refund.id,
            refund.payment_id, refund.status, result.state,
            f" with id {result.external_id}" if result.external_id else "",
            "consistent, nothing to do" if agrees else "an admin must reconcile it with the gateway")
    db.session.expire_all()
    return RefundOutcome(refund.id, refund.status, outcome)


def refund_payment(payment_id: int, amount: Decimal | str, actor: str | None, reason: str | None,
                   *, source: str = "admin") -> RefundOutcome:
    """Refund ``amount`` of a paid payment through its gateway.

    Raises :class:`service.RefundError` (nothing changed) when the method does not allow refunds, its
    module cannot make them, or the amount is not positive or above what is refundable.
    """
    db.session.expire_all()
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        raise service.PaymentNotFound(f"no payment {payment_id}")
    method = db.session.get(PaymentMethod, payment.paymethod_id)
    if not can_refund(method):
        raise service.RefundError(_("Refunds are not available for this payment method."))
    refund = service.request_refund(payment_id, amount, source=source, reason=reason, actor=actor)
    db.session.expire_all()
    payment = db.session.get(Payment, payment_id)
    refund = db.session.get(Refund, refund.id)
    try:
        result = get_registry().call(method.module, "billcore_refund", payment=payment, paymethod=method,
                                     settings=full_settings(method), refund=refund)
    except Exception as exc:  # temporary failure: the refund stays requested (money held), follow it later
        service.record_event(payment_id, kind="refund", source=source, actor=actor, data={"refund_id": refund.id},
                             outcome=f"refund {refund.id} request failed: {failure_text(exc, method)}"[:255])
        db.session.expire_all()
        return RefundOutcome(refund.id, "error", failure_text(exc, method))
    if not isinstance(result, RefundResult):
        service.record_event(payment_id, kind="refund", source=source, actor=actor, data={"refund_id": refund.id},
                             outcome=f"refund {refund.id}: the module gave no answer")
        db.session.expire_all()
        return RefundOutcome(refund.id, "error", "no answer")
    return _book(refund.id, result, source, actor)


def follow_refund(refund_id: int, *, source: str = "admin", actor: str | None = None) -> RefundOutcome:
    """Ask the gateway about a refund still ``requested`` and book the answer.

    A refund already finished or failed is reported as it is, without asking. Gateway failures are
    recorded in the payment's history and reported as ``error``. A refund still unsettled after
    :func:`attention_after` is reported as ``attention`` (and flagged once in the history) instead of
    ``pending`` or ``error``.
    """
    db.session.expire_all()
    refund = db.session.get(Refund, refund_id)
    if refund is None:
        raise service.PaymentNotFound(f"no refund {refund_id}")
    if refund.status != RefundStatus.REQUESTED:
        return RefundOutcome(refund.id, refund.status)
    overdue = is_overdue(refund)
    payment = db.session.get(Payment, refund.payment_id)
    outcome = _ask_gateway(refund, payment, source, actor)
    if overdue and outcome.state in ("pending", "error"):
        return _flag_for_admin(refund.id, payment.id, source, actor, outcome.info)
    return outcome


def _ask_gateway(refund: Refund, payment: Payment, source: str, actor: str | None) -> RefundOutcome:
    method = db.session.get(PaymentMethod, payment.paymethod_id)
    if method is None or not get_registry().has_feature(method.module, FEATURE_REFUND):
        return RefundOutcome(refund.id, "error", "the module cannot follow refunds")
    settings = full_settings(method)
    release_read_transaction()  # no connection or snapshot held while the gateway answers
    try:
        result = get_registry().call(method.module, "billcore_refund_status", payment=payment, paymethod=method,
                                     settings=settings, refund=refund)
    except Exception as exc:
        service.record_event(payment.id, kind="refund", source=source, actor=actor, data={"refund_id": refund.id},
                             outcome=f"refund {refund.id} status check failed: {failure_text(exc, method)}"[:255])
        db.session.expire_all()
        return RefundOutcome(refund.id, "error", failure_text(exc, method))
    if not isinstance(result, RefundResult):
        return RefundOutcome(refund.id, "error", "no answer")
    return _book(refund.id, result, source, actor)


def _flag_prefix(refund_id: int) -> str:
    return f"refund {int(refund_id)} still not settled"


def _flagged(payment_id: int, refund_id: int) -> bool:
    """True when the refund's attention flag is already in the payment's history (one targeted query)."""
    rows = db.session.execute(
        _refund_events(payment_id, refund_id).with_only_columns(PaymentEvent.data)
        .where(PaymentEvent.outcome.like(f"{_flag_prefix(refund_id)}%"))).scalars()
    return any((data or {}).get("attention") and (data or {}).get("refund_id") == refund_id for data in rows)


def _flag_for_admin(refund_id: int, payment_id: int, source: str, actor: str | None, info: str) -> RefundOutcome:
    """Record once in the payment's history that the refund needs an admin; report ``attention``."""
    if not _flagged(payment_id, refund_id):
        hours = attention_after().total_seconds() / 3600
        service.record_event(payment_id, kind="refund", source=source, actor=actor,
                             data={"refund_id": refund_id, "attention": True},
                             outcome=f"{_flag_prefix(refund_id)} after {hours:g} hours: needs an admin "
                                     "(check the gateway, then mark it failed or done by hand)")
        log.warning("refund %s of payment %s still requested after %g hours: flagged for an admin",
                    refund_id, payment_id, hours)
    db.session.expire_all()
    return RefundOutcome(refund_id, ATTENTION, info)


def settle_by_hand(refund_id: int, *, done: bool, reason: str, actor: str,
                   source: str = "admin") -> service.Outcome:
    """An admin settles a stuck refund (:func:`is_stuck`) after checking the gateway's own records.

    A refund without a gateway id only once :func:`settle_grace` has passed since it was requested (its
    gateway call may still be under way before that).

    ``done`` books it finished (the gateway returned the money); otherwise failed, and the amount goes
    back to the balance, both through the payment service with ``reason`` in the history. A refund that
    is already settled is reported as ``already``. Raises :class:`service.RefundError` for a refund that
    following can still settle, and, before marking failed a refund the gateway has an id for, when the
    gateway (asked once more) reports it under way or made (then it is booked finished);
    :class:`service.PaymentNotFound` for an unknown id.
    """
    db.session.expire_all()
    refund = db.session.get(Refund, refund_id)
    if refund is None:
        raise service.PaymentNotFound(f"no refund {refund_id}")
    if settle_waits(refund):
        minutes = settle_grace().total_seconds() / 60
        raise service.RefundError(_("Refund %(id)s was requested less than %(minutes)s minutes ago and its "
                                    "gateway request may still be under way: it can be settled by hand once "
                                    "that time has passed.", id=refund.id, minutes=f"{minutes:g}"))
    if refund.status == RefundStatus.REQUESTED and not is_stuck(refund):
        raise service.RefundError(_("Refund %(id)s is still being followed at the gateway; it can be settled "
                                    "by hand once it is overdue.", id=refund.id))
    if not done and refund.status == RefundStatus.REQUESTED and refund.external_id:
        # Putting the amount back while the gateway may still pay it out would refund twice: ask it once
        # more. Only when it cannot be asked does the admin's own check of its records decide.
        answer = _ask_gateway(refund, db.session.get(Payment, refund.payment_id), source, actor)
        if answer.state == RefundState.PENDING:
            raise service.RefundError(_("The gateway still reports refund %(id)s as under way: marking it "
                                        "failed now could refund the money twice.", id=refund.id))
        if answer.state == RefundState.FINISHED:
            raise service.RefundError(_("The gateway reports refund %(id)s as made: it was booked as "
                                        "finished, not failed.", id=refund.id))
    final = RefundStatus.FINISHED if done else RefundStatus.FAILED
    data = {"refund_id": refund.id, "state": final, "manual": True, "reason": reason}
    info = f"refund {refund.id} marked {final} by hand: {reason}"[:255]
    if done:
        outcome = service.finish_refund(refund.id, source=source, data=data, info=info, actor=actor)
    else:
        outcome = service.fail_refund(refund.id, source=source, data=data, info=info, actor=actor)
    db.session.expire_all()
    return outcome
