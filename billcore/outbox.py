"""The outbox: an event row written in the same transaction as the change it reports.

Whatever changes a payment's status, a balance, a refund or an auto-payment calls :func:`outbox_write`
(or :func:`record`) inside its own transaction, so an event exists exactly when its change was
committed. ``flask --app billcore webhooks deliver`` later fans the events out to webhook endpoints and
customer e-mails (:mod:`billcore.webhooks`). Money travels as decimal strings.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from .models import OutboxEvent, utcnow
from .prepared import PreparedWrite

# Every event type, in the order the admin's form lists them.
PAYMENT_TYPES = {  # a payment's new status -> the event announcing it
    "inpay": "payment.inpay",
    "paid": "payment.paid",
    "cancelled": "payment.cancelled",
    "fraud": "payment.fraud",
}
EVENT_TYPES = (
    "payment.inpay", "payment.paid", "payment.cancelled", "payment.fraud",
    "refund.requested", "refund.finished", "refund.failed",
    "account.adjusted",
    "recurring.charge_succeeded", "recurring.charge_failed", "recurring.suspended",
)
# Events a customer is told about by e-mail (billcore.mail).
CUSTOMER_NOTICES = ("payment.paid", "refund.finished", "recurring.charge_failed", "recurring.suspended")

# inline(): the new id is not fetched back. Run with the other writes of a credit (billcore.prepared).
INSERT_OUTBOX = PreparedWrite(insert(OutboxEvent.__table__).inline())


def outbox_write(type_: str, payload: dict[str, Any]) -> tuple[PreparedWrite, dict[str, Any]]:
    """The write of one event, for :func:`billcore.prepared.execute_together` with the change's writes."""
    return INSERT_OUTBOX, {"type": type_, "payload": payload, "dispatched": False, "created_at": utcnow()}


def record(session: Session | Connection, type_: str, payload: dict[str, Any]) -> None:
    """Insert one event in ``session``'s transaction (the one making the change)."""
    conn = session.connection() if isinstance(session, Session) else session
    statement, values = outbox_write(type_, payload)
    statement.execute(conn, values)


def money(value: Decimal | None) -> str | None:
    """A Decimal as the API and the events show money: a string, never a float."""
    return None if value is None else str(value)


def payment_payload(payment: Any, *, previous: str | None, status: str, kind: str,
                    **extra: Any) -> dict[str, Any]:
    """What an event says about a payment (a Payment or a row with the same names)."""
    payload = {"payment_id": payment.id, "account_id": payment.account_id, "status": status,
               "previous_status": previous, "amount": money(payment.amount), "total": money(payment.total),
               "currency": payment.currency, "source_kind": kind}
    payload.update(extra)
    return payload
