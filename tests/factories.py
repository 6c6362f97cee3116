"""Rows for core tests that need no payment module."""
from __future__ import annotations

from decimal import Decimal

from billcore.accounts import create_client
from billcore.db import db
from billcore.models import PaymentMethod
from billcore.payments import service


def method(currency: str = "RUB", **fields) -> PaymentMethod:
    """An active payment method of a module key no plugin owns (the service does not care)."""
    values = dict(module="pmcoretest", name="Core test", currency=currency, active=True, allow_refund=True,
                  commission_amount=Decimal("0"), commission_percent=Decimal("0"), settings={})
    values.update(fields)
    pm = PaymentMethod(**values)
    db.session.add(pm)
    db.session.commit()
    return pm


def client(email: str = "payer@test.example", currency: str = "RUB"):
    """A client user with an account."""
    return create_client(email, "payer-pass-1", currency=currency)


def payment(amount: str = "100.00", *, status_inpay: bool = True, **method_fields):
    """A payment of a fresh client through a fresh method, moved to ``inpay`` unless told otherwise."""
    user = client()
    pm = method(**method_fields)
    p = service.create_payment(user.account_id, pm.id, Decimal(amount))
    if status_inpay:
        service.set_in_pay(p.id, source="test")
    return p
