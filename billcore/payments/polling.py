"""Asking a gateway about a payment (``checkpay``) and applying its answer through the payment service.

Used by the admin's "check status now" and by the ``flask --app billcore payments check`` cron command.
The module's hook only reports; every change goes through :mod:`billcore.payments.service`, with the
same amount and currency checks as a notification.
"""
from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from sqlalchemy import Select, bindparam, select

from ..db import db
from ..gateway_pool import release_read_transaction
from ..models import Payment, PaymentMethod
from ..crypto import scrub
from ..paymethods import full_settings, secret_values
from ..paymodule import FEATURE_CHECKPAY, GatewayStatus
from ..states import GatewayState, Status
from ..plugins import get_registry
from . import service


def failure_text(exc: Exception, paymethod: PaymentMethod) -> str:
    """A module's exception as text for the history, with the method's secrets masked."""
    return scrub(f"{type(exc).__name__}: {exc}", secret_values(paymethod))

# statuses a poll can still settle (a cancelled payment may be paid late: money is never lost)
POLLABLE = (Status.NEW, Status.INPAY, Status.CANCELLED)


class PollError(Exception):
    """The payment could not be checked (module missing or without ``checkpay``, or the gateway failed).

    The message is translated (the caller's language; the default one in cron).
    """


def apply_gateway_status(payment_id: int, status: GatewayStatus, source: str, *, kind: str = "poll",
                         actor: str | None = None) -> service.Outcome | None:
    """Apply what the gateway said about a payment; returns the service's Outcome, None when nothing changed.

    ``paid`` credits through :func:`service.set_paid` (a wrong amount or currency flags ``fraud``),
    ``cancelled`` cancels an open payment (a paid one is never undone: the answer is only recorded),
    anything else (``pending``) is recorded as an event.
    """
    data: dict[str, Any] = dict(status.data or {})
    data.setdefault("state", status.state)
    if status.state == GatewayState.PAID:
        if status.amount is None or not status.currency:
            service.record_event(payment_id, kind=kind, source=source, actor=actor, data=data,
                                 outcome="gateway says paid but gave no amount or currency; nothing credited")
            return None
        return service.set_paid(payment_id, amount=status.amount, currency=status.currency, source=source,
                                data=data, external_id=status.external_id, info=status.info or None,
                                kind=kind, actor=actor)
    if status.state == GatewayState.CANCELLED:
        try:
            return service.set_cancelled(payment_id, source=source, reason=status.info or "cancelled at the gateway",
                                         data=data, kind=kind, actor=actor)
        except service.IllegalTransition as exc:
            service.record_event(payment_id, kind=kind, source=source, actor=actor, data=data,
                                 outcome=f"gateway says cancelled, ignored: payment is {exc.current}")
            return None
    # an answer that changes nothing: lost in a crash of the database's machine, it is a question not asked,
    # which the next run asks again, so its commit need not wait for the disk (and hold up the notifications')
    service.record_event(payment_id, kind=kind, source=source, actor=actor, data=data, wait_for_disk=False,
                         outcome=f"gateway says {status.state}" + (f": {status.info}" if status.info else ""))
    return None


def can_check(paymethod: PaymentMethod | None) -> bool:
    """True when the method's module is loaded and supports status polling."""
    return paymethod is not None and get_registry().has_feature(paymethod.module, FEATURE_CHECKPAY)


def check_query(*where: Any) -> Select:
    """The statement :func:`load_for_check` runs: a payment (the ``payment_id`` parameter) and its method,
    further limited by ``where``. A sweep builds it once and passes it for every payment it loads."""
    return (select(Payment, PaymentMethod).join(PaymentMethod, PaymentMethod.id == Payment.paymethod_id)
            .where(Payment.id == bindparam("payment_id"), *where))


def load_for_check(payment_id: int, query: Select | None = None) -> tuple[Payment, PaymentMethod] | None:
    """The payment and its method as they are now, in one statement (None when there is no such
    payment, or it does not match what ``query``, built by :func:`check_query`, further asks, e.g. "still
    in pay"). Hand the pair to :func:`check_payment` as ``loaded``."""
    db.session.expire_all()  # the service commits in its own sessions; read the current row
    statement = query if query is not None else check_query()
    row = db.session.execute(statement, {"payment_id": payment_id}).first()
    return None if row is None else (row[0], row[1])


def check_payment(payment_id: int, source: str, *, actor: str | None = None,
                  loaded: tuple[Payment, PaymentMethod] | None = None) -> service.Outcome | None:
    """Ask the payment's module about it now and apply the answer (see :func:`apply_gateway_status`).

    ``loaded``: what :func:`load_for_check` just read for ``payment_id`` (read here otherwise).
    Raises :class:`PollError` when the module cannot poll or the gateway call fails (the failure is
    recorded in the payment's history first), :class:`service.PaymentNotFound` for an unknown id.
    """
    loaded = loaded or load_for_check(payment_id)
    if loaded is None:
        raise service.PaymentNotFound(f"no payment {payment_id}")
    payment, method = loaded
    if not can_check(method):
        raise PollError(_("the module %(module)s cannot check payments", module=method.module if method else "?"))
    settings = full_settings(method)
    release_read_transaction()  # no connection or snapshot held while the gateway answers
    try:
        status = get_registry().call(method.module, "billcore_check_payment", payment=payment, paymethod=method,
                                     settings=settings)
    except Exception as exc:  # the gateway or the module failed: record it, let the caller report it
        service.record_event(payment_id, kind="poll", source=source, actor=actor,
                             outcome=f"status check failed: {failure_text(exc, method)}"[:255], data={})
        raise PollError(_("the gateway call failed: %(error)s", error=failure_text(exc, method))) from exc
    if not isinstance(status, GatewayStatus):
        service.record_event(payment_id, kind="poll", source=source, actor=actor,
                             outcome="status check gave no answer", data={})
        raise PollError(_("the module gave no answer"))
    outcome = apply_gateway_status(payment_id, status, source, actor=actor)
    db.session.expire_all()
    return outcome
