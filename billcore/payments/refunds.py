"""Refunds through a payment's gateway: book the request, ask the module, book its answer.

Used by the admin's refund action and by cron commands that follow pending refunds. The balance is
debited when the refund is requested (:func:`service.request_refund`) and credited back if the gateway
refuses it (:func:`service.fail_refund`); the module's hooks never change state themselves.

A refund that stays ``requested`` longer than ``REFUND_ATTENTION_HOURS`` (the gateway never gave an id to
follow it by, or keeps answering "processing") is flagged for an admin once in the payment's history and
reported as ``attention`` by every later follow; the admin then settles it by hand
(:func:`settle_by_hand`) after looking at the gateway's own records.
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
from ..models import Payment, PaymentEvent, PaymentMethod, Refund, utcnow
from ..paymethods import full_settings
from ..paymodule import FEATURE_REFUND, RefundResult
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


def attention_after() -> timedelta:
    """How long a refund may stay ``requested`` before it is flagged for an admin.

    The ``REFUND_ATTENTION_HOURS`` setting (hours, default 24).
    """
    hours = current_app.config.get("REFUND_ATTENTION_HOURS")
    return timedelta(hours=float(hours if hours is not None else DEFAULT_ATTENTION_HOURS))


def is_overdue(refund: Refund, now: datetime | None = None) -> bool:
    """True when ``refund`` is still ``requested`` after :func:`attention_after`."""
    return refund.status == "requested" and refund.created_at <= (now or utcnow()) - attention_after()


def is_stuck(refund: Refund, now: datetime | None = None) -> bool:
    """True when following cannot be trusted to settle ``refund``: it is still ``requested`` and either
    the gateway gave no id to follow it by or it is overdue (:func:`is_overdue`). An admin may settle such
    a refund by hand."""
    return refund.status == "requested" and (not refund.external_id or is_overdue(refund, now))


def can_refund(paymethod: PaymentMethod | None) -> bool:
    """True when the method allows refunds and its module is loaded and supports them."""
    return bool(paymethod is not None and paymethod.allow_refund
                and get_registry().has_feature(paymethod.module, FEATURE_REFUND))


def _book(refund_id: int, result: RefundResult, source: str, actor: str | None) -> RefundOutcome:
    """Book the gateway's answer about a refund through the service."""
    data = dict(result.data or {})
    data.setdefault("state", result.state)
    if result.state == "finished":
        service.finish_refund(refund_id, source=source, external_id=result.external_id, data=data,
                              info=result.info or None, actor=actor)
    elif result.state == "failed":
        service.fail_refund(refund_id, source=source, data=data,
                            info=result.info or f"refund {refund_id} refused by the gateway", actor=actor)
    else:
        if result.external_id:
            service.set_refund_external_id(refund_id, result.external_id)
        refund = db.session.get(Refund, refund_id)
        service.record_event(refund.payment_id if refund else None, kind="refund", source=source, actor=actor,
                             data=data, outcome=f"refund {refund_id} pending at the gateway"
                             + (f": {result.info}" if result.info else ""))
    db.session.expire_all()
    return RefundOutcome(refund_id, result.state if result.state in ("finished", "failed") else "pending",
                         result.info)


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
    if refund.status != "requested":
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
    try:
        result = get_registry().call(method.module, "billcore_refund_status", payment=payment, paymethod=method,
                                     settings=full_settings(method), refund=refund)
    except Exception as exc:
        service.record_event(payment.id, kind="refund", source=source, actor=actor, data={"refund_id": refund.id},
                             outcome=f"refund {refund.id} status check failed: {failure_text(exc, method)}"[:255])
        db.session.expire_all()
        return RefundOutcome(refund.id, "error", failure_text(exc, method))
    if not isinstance(result, RefundResult):
        return RefundOutcome(refund.id, "error", "no answer")
    return _book(refund.id, result, source, actor)


def _flag_for_admin(refund_id: int, payment_id: int, source: str, actor: str | None, info: str) -> RefundOutcome:
    """Record once in the payment's history that the refund needs an admin; report ``attention``."""
    events = db.session.execute(select(PaymentEvent.data).where(PaymentEvent.payment_id == payment_id,
                                                                PaymentEvent.kind == "refund")).scalars()
    if not any((data or {}).get("attention") and (data or {}).get("refund_id") == refund_id for data in events):
        hours = attention_after().total_seconds() / 3600
        service.record_event(payment_id, kind="refund", source=source, actor=actor,
                             data={"refund_id": refund_id, "attention": True},
                             outcome=f"refund {refund_id} still not settled after {hours:g} hours: needs an admin "
                                     "(check the gateway, then mark it failed or done by hand)")
        log.warning("refund %s of payment %s still requested after %g hours: flagged for an admin",
                    refund_id, payment_id, hours)
    db.session.expire_all()
    return RefundOutcome(refund_id, ATTENTION, info)


def settle_by_hand(refund_id: int, *, done: bool, reason: str, actor: str,
                   source: str = "admin") -> service.Outcome:
    """An admin settles a stuck refund (:func:`is_stuck`) after checking the gateway's own records.

    ``done`` books it finished (the gateway returned the money); otherwise failed, and the amount goes
    back to the balance, both through the payment service with ``reason`` in the history. A refund that
    is already settled is reported as ``already``. Raises :class:`service.RefundError` (nothing changed)
    for a refund that following can still settle, :class:`service.PaymentNotFound` for an unknown id.
    """
    db.session.expire_all()
    refund = db.session.get(Refund, refund_id)
    if refund is None:
        raise service.PaymentNotFound(f"no refund {refund_id}")
    if refund.status == "requested" and not is_stuck(refund):
        raise service.RefundError(_("Refund %(id)s is still being followed at the gateway; it can be settled "
                                    "by hand once it is overdue.", id=refund.id))
    final = "finished" if done else "failed"
    data = {"refund_id": refund.id, "state": final, "manual": True, "reason": reason}
    info = f"refund {refund.id} marked {final} by hand: {reason}"[:255]
    if done:
        outcome = service.finish_refund(refund.id, source=source, data=data, info=info, actor=actor)
    else:
        outcome = service.fail_refund(refund.id, source=source, data=data, info=info, actor=actor)
    db.session.expire_all()
    return outcome
