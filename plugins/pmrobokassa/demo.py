"""The demo's Robokassa payment method, pointing at the local sandbox (``flask --app billcore demo``).

Idempotent: running the demo again updates the same method (found by its identifier ``demo-shop``)
instead of adding another, so a changed ``BASE_URL`` is picked up.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import click
from flask import Flask

from billcore.gateway import PaymentMethod, module_info, session, store_settings

from .sandbox import SANDBOX_PREFIX, sandbox_enabled
from .sandbox.shops import DEFAULT_SHOP

KEY = "pmrobokassa"
DEFAULT_BASE_URL = "http://127.0.0.1:5000"
DEMO_NAME = "Robokassa (sandbox)"
DEMO_NAME_RU = "Робокасса (песочница)"


def demo_settings(base_url: str) -> dict[str, Any]:
    """The integration settings of the demo method: the sandbox's default shop, test mode, refunds."""
    return {
        "client": "existing",
        "identifier": DEFAULT_SHOP["login"],
        "password1": DEFAULT_SHOP["password1"],
        "password2": DEFAULT_SHOP["password2"],
        "password3": DEFAULT_SHOP["password3"],
        "hash_algorithm": DEFAULT_SHOP["hash_algorithm"],
        "payment_method": "",  # the payer chooses on the sandbox's page
        "url": f"{base_url}{SANDBOX_PREFIX}/Merchant/Index.aspx",
        "test_mode": True,
        "receipt_enabled": False,
    }


def _find_demo_method() -> PaymentMethod | None:
    for method in PaymentMethod.query.filter_by(module=KEY).order_by(PaymentMethod.id).all():
        if (method.settings or {}).get("identifier") == DEFAULT_SHOP["login"]:
            return method
    return None


def create_demo_method(app: Flask) -> PaymentMethod | None:
    """Create or update the demo Robokassa method pointing at the sandbox, active only while the sandbox
    is enabled; returns it (None when the module is not loaded)."""
    info = module_info(KEY)
    if info is None:
        return None
    base_url = str(app.config.get("BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    method = _find_demo_method()
    if method is None:
        method = PaymentMethod(module=KEY, name=DEMO_NAME, name_ru=DEMO_NAME_RU, currency="RUB",
                               commission_amount=Decimal("0"), commission_percent=Decimal("0"),
                               min_amount=Decimal("10"), max_amount=Decimal("100000"), sort_order=10,
                               description="Pay in the local Robokassa sandbox: no real money moves.",
                               description_ru="Оплата в локальной песочнице Робокассы: настоящие деньги не списываются.",
                               settings={})
        session().add(method)
    # Its passwords are public (they are in this file): active only while the sandbox stands in for
    # Robokassa, never as a method anyone could "pay" with forged notifications.
    method.active = sandbox_enabled(app)
    method.allow_refund = True
    store_settings(method, info, demo_settings(base_url))
    session().commit()
    if not sandbox_enabled(app):
        click.echo("Note: the Robokassa sandbox is off, so the demo payment method is left disabled; run "
                   "`flask demo` with BILLCORE_PMROBOKASSA_SANDBOX=true to enable it.")
    click.echo(f"Robokassa demo method #{method.id} -> {method.settings.get('url')}")
    return method
