"""The sandbox's shops: what the real gateway knows from a merchant's "technical settings".

Configured with ``PMROBOKASSA_SANDBOX_SHOPS`` (a list of dicts); when absent, one demo shop whose
Result/Success/Fail URLs point at this billcore installation: ``BASE_URL``, else the configured
``SERVER_NAME`` (with ``PREFERRED_URL_SCHEME``), else ``http://127.0.0.1:5000``. Never the request's
``Host`` header: whoever sends a request must not choose where the gateway posts its notifications.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app

# The default shop: the demo payment method (plugins/pmrobokassa/demo.py) uses the same values.
# Passwords follow Robokassa's rules (docs/robokassa.md §10): 8+ characters, a letter and a digit, all distinct.
DEFAULT_SHOP: dict[str, Any] = {
    "login": "demo-shop",
    "password1": "sandbox-pass-1",
    "password2": "sandbox-pass-2",
    "password3": "sandbox-pass-3",
    "hash_algorithm": "md5",
    "result_method": "POST",
    "success_method": "POST",
    "fail_method": "POST",
}

METHODS = ("GET", "POST")


@dataclass(frozen=True)
class Shop:
    """One merchant account of the sandbox gateway."""

    login: str
    password1: str
    password2: str
    password3: str = ""
    hash_algorithm: str = "md5"
    result_url: str = ""
    success_url: str = ""
    fail_url: str = ""
    result_method: str = "POST"
    success_method: str = "POST"
    fail_method: str = "POST"
    # Optional separate pair for IsTest=1 (docs/robokassa.md §5); empty = the main pair serves both.
    test_password1: str = ""
    test_password2: str = ""

    def pass1(self, is_test: bool) -> str:
        """Password #1 for a live or a test payment."""
        return self.test_password1 if is_test and self.test_password1 else self.password1

    def pass2(self, is_test: bool) -> str:
        """Password #2 for a live or a test payment."""
        return self.test_password2 if is_test and self.test_password2 else self.password2


DEFAULT_BASE_URL = "http://127.0.0.1:5000"  # where ``flask run`` serves (the demo assumes the same)


def _base_url() -> str:
    """This installation's address from the configuration only (see the module docstring)."""
    base = str(current_app.config.get("BASE_URL") or "").rstrip("/")
    if base:
        return base
    server_name = str(current_app.config.get("SERVER_NAME") or "").strip().strip("/")
    if server_name:
        scheme = str(current_app.config.get("PREFERRED_URL_SCHEME") or "http")
        return f"{scheme}://{server_name}"
    return DEFAULT_BASE_URL


def _shop_from(data: Mapping[str, Any]) -> Shop:
    base = _base_url()
    values = {key: data[key] for key in Shop.__dataclass_fields__ if key in data and data[key] is not None}
    values.setdefault("result_url", f"{base}/mancgi/rkresult")
    values.setdefault("success_url", f"{base}/mancgi/rksuccess")
    values.setdefault("fail_url", f"{base}/mancgi/rkfail")
    for key in ("result_method", "success_method", "fail_method"):
        values[key] = str(values.get(key, "POST")).upper()
        if values[key] not in METHODS:
            values[key] = "POST"
    values["hash_algorithm"] = str(values.get("hash_algorithm", "md5")).lower()
    return Shop(**values)


def configured_shops() -> list[Shop]:
    """Every shop of the sandbox (the configured ones, or the default demo shop)."""
    raw = current_app.config.get("PMROBOKASSA_SANDBOX_SHOPS")
    if not raw:
        return [_shop_from(DEFAULT_SHOP)]
    return [_shop_from(item) for item in raw]


def find_shop(login: str | None) -> Shop | None:
    """The shop with this ``MerchantLogin`` (exact match, as Robokassa does), or None."""
    if not login:
        return None
    for shop in configured_shops():
        if shop.login == login:
            return shop
    return None
