"""Refunds through a payment's gateway: book the request, ask the module, book its answer.

Used by the admin's refund action and by cron commands that follow pending refunds. The balance is
debited when the refund is requested (:func:`service.request_refund`) and credited back if the gateway
refuses it (:func:`service.fail_refund`); the module's hooks never change state themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..db import db
from ..models import Payment, PaymentMethod, Refund
from ..paymethods import full_settings
from ..paymodule import FEATURE_REFUND, RefundResult
from ..plugins import get_registry
from . import service
from .polling import failure_text


@dataclass(frozen=True)
class RefundOutcome:
    """What happened to a refund: ``finished``, ``failed``, ``pending`` (the gateway is still working on
    it) or ``error`` (the gateway could not be asked; the refund stays requested and can be followed)."""

    refund_id: int
    state: str
    info: str = ""


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
        raise service.RefundError("refunds are not available for this payment method")
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
    recorded in the payment's history and reported as ``error``.
    """
    db.session.expire_all()
    refund = db.session.get(Refund, refund_id)
    if refund is None:
        raise service.PaymentNotFound(f"no refund {refund_id}")
    if refund.status != "requested":
        return RefundOutcome(refund.id, refund.status)
    payment = db.session.get(Payment, refund.payment_id)
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
