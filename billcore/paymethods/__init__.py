"""Reading and storing a payment method's integration settings, secrets encrypted apart."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select

from ..crypto import decrypt_json, encrypt_json
from ..db import db, shared_connection
from ..logs import remember_secrets
from ..models import Payment, PaymentMethod
from ..paymodule import ModuleInfo
from ..prepared import PreparedLookup


@lru_cache(maxsize=256)
def _decrypted(_key: str, token: str) -> tuple[tuple[str, Any], ...]:
    # Keyed by the installation's key and the stored token: a changed secret is a new token, so the
    # cache never serves an old password. Decrypting on every notification showed in bench/notify.py.
    secrets = tuple(decrypt_json(token).items())
    # masked in logs from now on; the set of known secrets only grows, so once per decryption is enough
    remember_secrets(str(v) for _, v in secrets)
    return secrets


def decrypted_secrets(token: str | None) -> dict[str, Any]:
    """The secrets in a method's ``secrets_encrypted`` column (a fresh dict; decryption is cached), and
    from now on masked in every log line."""
    if not token:
        return {}
    return dict(_decrypted(current_app.config["ENCRYPTION_KEY"], token))


def _merge(settings: dict[str, Any] | None, token: str | None) -> dict[str, Any]:
    merged = dict(settings or {})
    merged.update(decrypted_secrets(token))
    return merged


def full_settings(paymethod: PaymentMethod) -> dict[str, Any]:
    """The method's integration settings with its secrets decrypted, for the module's hooks only."""
    return _merge(paymethod.settings, paymethod.secrets_encrypted)


@dataclass(frozen=True)
class CallbackContext:
    """What a gateway callback needs to check a notification: the payment's few columns and its
    method's module and full settings (secrets decrypted). Read-only; changes go through the service."""

    payment_id: int
    status: str
    total: Decimal
    currency: str
    account_id: int
    paymethod_id: int
    module: str
    active: bool
    settings: dict[str, Any]


_CALLBACK_QUERY = (
    select(Payment.__table__.c.id, Payment.__table__.c.status, Payment.__table__.c.total,
           Payment.__table__.c.currency, Payment.__table__.c.account_id, Payment.__table__.c.paymethod_id,
           PaymentMethod.__table__.c.module, PaymentMethod.__table__.c.active,
           PaymentMethod.__table__.c.settings, PaymentMethod.__table__.c.secrets_encrypted)
    .select_from(Payment.__table__.join(PaymentMethod.__table__,
                                        PaymentMethod.__table__.c.id == Payment.__table__.c.paymethod_id))
    .where(Payment.__table__.c.id == bindparam("payment_id"))
)
_CALLBACK_LOOKUP = PreparedLookup(_CALLBACK_QUERY)


def callback_context(payment_id: int) -> CallbackContext | None:
    """The payment and its method's settings in one statement (None when there is no such payment): a
    notification's cheap first look, before the service locks anything.

    Inside :func:`billcore.db.request_connection` (a gateway callback) it reads on the block's connection,
    which the payment service's transaction then uses too; elsewhere on a connection of its own.
    """
    shared = shared_connection()
    if shared is None:
        with db.engine.connect() as conn:
            # One SELECT needs no transaction: on PostgreSQL autocommit spares a BEGIN and a ROLLBACK round
            # trip; on SQLite (whose connections already run in autocommit) the option skips billcore's BEGIN.
            conn.execution_options(**({"billcore_single_read": True} if conn.dialect.name == "sqlite"
                                      else {"isolation_level": "AUTOCOMMIT"}))
            row = conn.execute(_CALLBACK_QUERY, {"payment_id": payment_id}).one_or_none()
    else:
        # On the DBAPI cursor (billcore.prepared), as the service's locking read. On SQLite a read in
        # autocommit that takes no lock (the option keeps it so if the statement goes through SQLAlchemy);
        # the service's write transaction then begins IMMEDIATE. On PostgreSQL the read opens the
        # transaction (a plain SELECT locks no row) that the service's write transaction continues: one
        # BEGIN for both; the pool rolls it back when no write follows.
        shared.execution_options(billcore_single_read=True, billcore_write=False)
        row = _CALLBACK_LOOKUP.one_or_none(shared, {"payment_id": payment_id})
    return context_of_row(row) if row is not None else None


def context_of_row(row: Any) -> CallbackContext:
    """The :class:`CallbackContext` of a row holding the payment's columns (``id``, ``status``, ``total``,
    ``currency``, ``account_id``, ``paymethod_id``) and its method's (``module``, ``active``,
    ``settings``, ``secrets_encrypted``), as read by :func:`callback_context` or by the payment service
    under its lock."""
    return CallbackContext(payment_id=row.id, status=row.status, total=row.total, currency=row.currency,
                           account_id=row.account_id, paymethod_id=row.paymethod_id, module=row.module,
                           active=row.active, settings=_merge(row.settings, row.secrets_encrypted))


def secret_values(paymethod: PaymentMethod | None) -> list[str]:
    """The method's secret values, so they can be masked wherever text is logged or stored."""
    if paymethod is None:
        return []
    return [str(v) for v in decrypted_secrets(paymethod.secrets_encrypted).values() if v]


def split_settings(info: ModuleInfo, settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split settings into (public, secret) by the module's declared secret fields."""
    public = {k: v for k, v in settings.items() if k not in info.secret_fields}
    secret = {k: v for k, v in settings.items() if k in info.secret_fields and v not in (None, "")}
    return public, secret


def store_settings(paymethod: PaymentMethod, info: ModuleInfo, settings: dict[str, Any]) -> None:
    """Store ``settings`` on ``paymethod``: public ones as JSON, secrets encrypted.

    A secret missing or blank in ``settings`` keeps its stored value ("blank means keep").
    """
    public, secret = split_settings(info, settings)
    kept = decrypt_json(paymethod.secrets_encrypted)
    kept.update(secret)
    paymethod.settings = public
    paymethod.secrets_encrypted = encrypt_json(kept)
