"""The Robokassa sandbox: a local emulator of the gateway, served by billcore itself.

Off unless ``PMROBOKASSA_SANDBOX`` is true (the demo turns it on). It answers under
``/sandbox/robokassa/`` the way ROBOKASSA.md describes auth.robokassa.ru and services.robokassa.ru:
the payment page (``Merchant/Index.aspx``), the ResultURL notification with retries and fault
injection, the Success/Fail redirects, the XML web service (``OpStateExt``, ``GetCurrencies``), child
recurring charges and the Refund API. A payment method whose URL is
``<base>/sandbox/robokassa/Merchant/Index.aspx`` then uses it for every endpoint.
"""
from __future__ import annotations

from flask import Blueprint, Flask

SANDBOX_PREFIX = "/sandbox/robokassa"


def sandbox_enabled(app: Flask) -> bool:
    """True when the app's config turns the sandbox on (``PMROBOKASSA_SANDBOX``)."""
    value = app.config.get("PMROBOKASSA_SANDBOX")
    if isinstance(value, str):  # BILLCORE_PMROBOKASSA_SANDBOX=yes and friends
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def sandbox_blueprints(app: Flask) -> list[Blueprint]:
    """The sandbox's blueprint when enabled (else nothing), exempted from billcore's CSRF protection:
    its endpoints are "the gateway", called by browsers and servers that carry no billcore token."""
    if not sandbox_enabled(app):
        return []
    from .views import bp

    csrf = app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(bp)
    return [bp]
