"""Encryption of gateway secrets at rest and their removal from anything that is logged or shown."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

MASK = "***"

# Keys whose values are never kept in events or logs, whatever module sent them.
SECRET_KEY_NAMES = frozenset({"password", "password1", "password2", "password3", "secret", "api_key",
                              "token_secret", "shared_secret", "csrf_token"})


def _fernet() -> Fernet:
    return Fernet(current_app.config["ENCRYPTION_KEY"].encode())


def encrypt_json(values: Mapping[str, Any]) -> str | None:
    """Encrypt a mapping of secrets with the installation's key; ``None`` for an empty mapping."""
    if not values:
        return None
    return _fernet().encrypt(json.dumps(dict(values), sort_keys=True).encode()).decode()


def decrypt_json(token: str | None) -> dict[str, Any]:
    """Decrypt what :func:`encrypt_json` made; a token made with another key raises ``ValueError``."""
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        raise ValueError("stored secrets cannot be decrypted with this installation's key") from None


def scrub(data: Any, secret_values: Iterable[str] = ()) -> Any:
    """A copy of ``data`` with secret keys masked and any occurrence of a secret value replaced.

    Works on nested dicts/lists of JSON-like data; other values are turned into strings.
    """
    secrets = [s for s in secret_values if s]

    def clean_str(value: str) -> str:
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def walk(value: Any, key: str | None = None) -> Any:
        if key is not None and key.lower() in SECRET_KEY_NAMES:
            return MASK
        if isinstance(value, Mapping):
            return {str(k): walk(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if value is None or isinstance(value, (bool, int)):
            return value
        return clean_str(str(value))

    return walk(data)
