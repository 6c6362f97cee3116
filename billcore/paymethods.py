"""Reading and storing a payment method's integration settings, secrets encrypted apart."""
from __future__ import annotations

from typing import Any

from .crypto import decrypt_json, encrypt_json
from .logs import remember_secrets
from .models import PaymentMethod
from .paymodule import ModuleInfo


def full_settings(paymethod: PaymentMethod) -> dict[str, Any]:
    """The method's integration settings with its secrets decrypted, for the module's hooks only."""
    merged = dict(paymethod.settings or {})
    secrets = decrypt_json(paymethod.secrets_encrypted)
    remember_secrets(str(v) for v in secrets.values())
    merged.update(secrets)
    return merged


def secret_values(paymethod: PaymentMethod | None) -> list[str]:
    """The method's secret values, so they can be masked wherever text is logged or stored."""
    if paymethod is None or not paymethod.secrets_encrypted:
        return []
    values = [str(v) for v in decrypt_json(paymethod.secrets_encrypted).values() if v]
    remember_secrets(values)
    return values


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
