"""The Skeleton gateway payment module for billcore: a redirect gateway on billcore's payment door.

billcore checks a payment, marks it ``inpay`` and runs the callbacks' common work; this module says only
what is this gateway's own. Each ``TODO(gateway)`` marks a place for the real gateway's recipe.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask
from flask_babel import gettext as _

from billcore.gateway import (Customer, GatewaySetup, ModuleInfo, Payment, SetupItem, StartAction, format_amount,
                              hookimpl, public_url)

from .callbacks import FAIL, KEY, OK, RESULT, SUCCESS, blueprint, sign
from .forms import IntegrationForm, validate_settings

GATEWAY_URL = "https://pay.example.com/pay"  # TODO(gateway): its payment page (its sandbox's while testing)


@hookimpl
def billcore_module_info() -> ModuleInfo:
    """Describe the module: the wizard shows it; ``secret_fields`` are stored encrypted and never shown."""
    return ModuleInfo(
        key=KEY,
        title="Skeleton gateway",
        description="A redirect gateway: the customer pays on the gateway's page.",
        version="0.1.0",
        currencies=("RUB",),  # TODO(gateway): the currencies the gateway takes
        secret_fields=("secret",),
        development_only=True,  # loaded only in development: TODO(gateway): drop once the recipes are real
        api_version="3.0",  # the billcore.gateway API this module is written for
        success_answer=OK,  # what the gateway must hear for an accepted notification (see callbacks.py)
    )


@hookimpl
def billcore_blueprints(app: Flask) -> list[Blueprint]:
    """The notification and the return pages (billcore exempts exactly these from CSRF)."""
    return [blueprint()]


@hookimpl
def billcore_integration_form(paymethod: Any) -> type[IntegrationForm]:
    """The form the admin fills in to connect a payment method to the gateway."""
    return IntegrationForm


@hookimpl
def billcore_validate_integration(settings: dict[str, Any], currency: str | None) -> dict[str, list[str]]:
    """Field errors of the settings as they would be stored (secrets included); empty when valid."""
    return validate_settings(settings)


@hookimpl
def billcore_gateway_setup(paymethod: Any, settings: dict[str, Any], base_url: str) -> GatewaySetup:
    """What the admin copies into the gateway's cabinet (billcore adds its own warnings, e.g. plain http)."""
    base = base_url.rstrip("/")
    return GatewaySetup(items=(
        SetupItem(_("Notification URL"), base + RESULT),
        SetupItem(_("Notification method"), "POST", copy=False),
        SetupItem(_("Success URL"), base + SUCCESS),
        SetupItem(_("Fail URL"), base + FAIL),
    ))


@hookimpl
def billcore_start_payment(payment: Payment, settings: dict[str, Any], customer: Customer) -> StartAction:
    """The gateway's request for ``payment`` (checked by billcore, marked ``inpay`` after this answers): a
    signed form the browser POSTs (for a GET: ``StartAction(url + "?" + urlencode(fields))``). Sign with the
    secret, never send it; raise ``StartRefused(message)`` when the method cannot be used now."""
    # TODO(gateway): the gateway's field names and the ones its signature covers.
    fields = {
        "merchant_id": str(settings.get("merchant_id") or ""),
        "order_id": str(payment.id),
        "amount": format_amount(payment.total, payment.currency),  # "100.00": the currency's decimals
        "currency": payment.currency,
        "email": customer.email,
        "language": customer.language,
        "result_url": public_url(RESULT),
        "success_url": public_url(f"{SUCCESS}?order_id={payment.id}"),
        "fail_url": public_url(f"{FAIL}?order_id={payment.id}"),
    }
    fields["signature"] = sign(fields, str(settings.get("secret") or ""))
    return StartAction(GATEWAY_URL, method="POST", fields=tuple(fields.items()))
