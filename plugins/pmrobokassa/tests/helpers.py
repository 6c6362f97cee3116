"""Helpers of the Robokassa module's tests: signed callbacks and quick reads of committed rows."""
from __future__ import annotations

from billcore.db import db
from billcore.models import LedgerEntry, Payment, PaymentEvent
from pmrobokassa import protocol

LOGIN, P1, P2, P3 = "demo", "password_1", "password_2", "password_3"
SETTINGS = {"client": "existing", "identifier": LOGIN, "password1": P1, "password2": P2, "password3": P3,
            "hash_algorithm": "md5", "payment_method": "", "url": protocol.STANDARD_PAYMENT_URL,
            "test_mode": False, "receipt_enabled": False}


def result_params(payment_id: int, out_sum: str = "100.000000", *, password: str = P2, algorithm: str = "md5",
                  shp: dict | None = None, upper: bool = True, **extra) -> dict:
    """A ResultURL notification as Robokassa sends it, signed with ``password``."""
    signature = protocol.result_signature(algorithm, out_sum, str(payment_id), password, shp)
    params = {"OutSum": out_sum, "InvId": str(payment_id), "SignatureValue": signature.upper() if upper else signature,
              "Fee": "3.900000", "EMail": "payer@example.com", "PaymentMethod": "BankCard",
              "IncCurrLabel": "BankCardPSR", **(shp or {})}
    params.update(extra)
    return params


def success_params(payment_id: int, out_sum: str = "100.000000", *, password: str = P1, **extra) -> dict:
    """A SuccessURL return signed with ``password``."""
    signature = protocol.success_signature("md5", out_sum, str(payment_id), password)
    return {"OutSum": out_sum, "InvId": str(payment_id), "SignatureValue": signature, "Culture": "ru", **extra}


def reload(payment_id: int) -> Payment:
    """The payment as committed now."""
    db.session.expire_all()
    return db.session.get(Payment, payment_id)


def ledger_count(payment_id: int) -> int:
    """How many ledger entries a payment has."""
    db.session.expire_all()
    return db.session.query(LedgerEntry).filter_by(payment_id=payment_id, kind="payment").count()


def events(payment_id: int | None, source: str) -> list[PaymentEvent]:
    """The payment's events from ``source``."""
    db.session.expire_all()
    return db.session.query(PaymentEvent).filter_by(payment_id=payment_id, source=source).order_by(PaymentEvent.id).all()
