"""Shared bits of the module's tests: settings, a payment, a genuine notification."""
from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

from billcore.db import db
from billcore.models import Account, Payment
from billcore.payments import service
from billcore.testing.fixtures import add_paymethod

from pmtemplate import gateway
from pmtemplate.signing import signed

KEY = "pmtemplate"
SECRET = "s3cr3t-shared-value"
SETTINGS = {"merchant_id": "shop-1", "secret": SECRET, "gateway_url": "", "test_mode": True}


def make_payment(user, amount: str = "100.00", **method_fields):
    """A payment method of this module and a ``new`` payment of ``amount`` for ``user``'s account."""
    method = add_paymethod(KEY, dict(SETTINGS), **method_fields)
    payment = service.create_payment(user.account_id, method.id, Decimal(amount))
    return method, payment


def notification(payment_id: int, amount: str = "100.00", secret: str = SECRET, **overrides) -> dict[str, str]:
    """A notification as the gateway signs it (``secret=""`` leaves it unsigned)."""
    params = {"merchant_id": SETTINGS["merchant_id"], "payment_id": str(payment_id), "op_id": "op-test",
              "amount": amount, "currency": "RUB", "state": gateway.PAID, "test": "1"}
    params.update(overrides)
    return signed(params, secret) if secret else params


def fresh(payment_id: int) -> Payment:
    """The payment as the database has it now."""
    db.session.commit()  # end the read snapshot: others committed meanwhile
    return db.session.get(Payment, payment_id)


def balance(account_id: int) -> Decimal:
    """The account's balance as the database has it now."""
    db.session.commit()  # end the read snapshot: others committed meanwhile
    return db.session.get(Account, account_id).balance


def split(location: str) -> tuple[str, dict[str, str]]:
    """A redirect's path and query parameters."""
    parts = urlsplit(location)
    return parts.path, dict(parse_qsl(parts.query))
