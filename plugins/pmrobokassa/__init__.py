"""Robokassa payment module for billcore (BILLmanager's ``pmrobokassa``).

The hooks below are thin: the protocol is in :mod:`.protocol`, the settings form in :mod:`.forms`,
the routes in :mod:`.views`, the web-service calls in :mod:`.gateway` and :mod:`.operations`.
"""
from __future__ import annotations

from typing import Any

from flask import Flask
from flask_babel import lazy_gettext as _l

from billcore.gateway import (FEATURE_CHECKPAY, FEATURE_RECEIPTS, FEATURE_RECURRING, FEATURE_REFUND,
                              FEATURE_SUBSCRIPTIONS, FEATURE_TEST_MODE, ChargeResult, Customer, GatewaySetup,
                              GatewayStatus, ModuleInfo, RefundResult, StartAction, hookimpl)

from .common import CONFIG_DEFAULTS, KEY
from .forms import REGISTRATION_URL

__version__ = "0.2.0"
SECRET_FIELDS = ("password1", "password2", "password3")


@hookimpl
def billcore_module_info() -> ModuleInfo:
    """Describe the Robokassa module."""
    return ModuleInfo(
        key=KEY,
        title="Robokassa",
        # Lazy so that the admin sees it in his language; rendered with str() in a request.
        description=_l("Payments by bank card, cash, e-wallets, mobile payments and online banking through "
                       "Robokassa, with status polling, refunds and 54-FZ receipts."),
        version=__version__,
        logo="/pmrobokassa/static/robokassa.svg",
        features=frozenset({FEATURE_CHECKPAY, FEATURE_REFUND, FEATURE_RECURRING, FEATURE_SUBSCRIPTIONS,
                            FEATURE_TEST_MODE, FEATURE_RECEIPTS}),
        categories=("Bank cards", "Cash", "E-wallets", "Mobile payments", "Online banking"),
        currencies=("RUB",),
        secret_fields=SECRET_FIELDS,
        registration_url=REGISTRATION_URL,
        api_version="3.0",  # the billcore.gateway API this module is written for
        success_answer="OK{payment_id}",  # what Robokassa must hear for an accepted ResultURL call
    )


@hookimpl
def billcore_blueprints(app: Flask):
    """The module's routes: the three gateway callbacks, made with the core's ``gateway_callback`` and
    ``gateway_return`` (billcore exempts exactly those from CSRF), and the sandbox when it is on."""
    from .views import bp

    for name, value in CONFIG_DEFAULTS.items():
        app.config.setdefault(name, value)
    from .sandbox import sandbox_blueprints  # the gateway emulator; [] unless PMROBOKASSA_SANDBOX

    return [bp, *sandbox_blueprints(app)]


@hookimpl
def billcore_integration_form(paymethod):
    """The integration settings form (wizard step 2 and edit)."""
    from .forms import build_form

    return build_form(paymethod)


@hookimpl
def billcore_validate_integration(settings: dict[str, Any], currency: str | None):
    """Password rules, RUB only, a valid payment URL, valid receipt choices."""
    from .common import LOG_MODULE, log_line
    from .forms import validate_settings

    errors = validate_settings(settings, currency)
    log_line(LOG_MODULE, None, "settings valid" if not errors else "settings refused",
             identifier=settings.get("identifier"), fields=",".join(sorted(errors)) or None)
    return errors


@hookimpl
def billcore_gateway_setup(paymethod, settings: dict[str, Any], base_url: str) -> GatewaySetup | None:
    """Result/Success/Fail URLs, POST, the hash algorithm, and warnings about the base URL."""
    from dataclasses import replace

    from flask_babel import gettext as _

    from .operations import gateway_setup

    setup = gateway_setup(settings, base_url)
    if paymethod is not None and paymethod.allow_refund and not settings.get("password3"):
        # the method promises refunds that cannot be sent: say so where the admin looks
        setup = replace(setup, warnings=setup.warnings + (_(
            "Refunds are allowed for this method, but Password #3 is not set: Robokassa's Refund API cannot "
            "be called, so refunds will fail. Set Password #3 or turn refunds off."),))
    return setup


@hookimpl
def billcore_start_payment(payment, settings: dict[str, Any], customer: Customer) -> StartAction | None:
    """The signed form the core posts to Robokassa's payment page (after its checks; it then marks the
    payment ``inpay``); ``StartRefused`` when the method lacks its identifier or Password #1."""
    from .views import start_action

    return start_action(payment, settings, customer)


@hookimpl
def billcore_check_payment(payment, paymethod, settings: dict[str, Any]) -> GatewayStatus | None:
    """OpStateExt: 100 paid, 10/60 cancelled, anything else pending."""
    from .operations import check_payment

    return check_payment(payment, settings)


@hookimpl
def billcore_refund(payment, paymethod, settings: dict[str, Any], refund) -> RefundResult | None:
    """A full or partial refund through the Refund API (needs Password #3)."""
    from .operations import refund as do_refund

    return do_refund(payment, settings, refund)


@hookimpl
def billcore_refund_status(payment, paymethod, settings: dict[str, Any], refund) -> RefundResult | None:
    """Follow a refund with Refund/GetState."""
    from .operations import refund_status

    return refund_status(payment, settings, refund)


@hookimpl
def billcore_recurring_charge(payment, parent, paymethod, settings: dict[str, Any]) -> ChargeResult | None:
    """A child charge through ``/Merchant/Recurring``."""
    from .operations import recurring_charge

    return recurring_charge(payment, parent, settings)


@hookimpl
def billcore_demo(app: Flask) -> None:
    """The demo's Robokassa method, pointing at the local sandbox (see :mod:`.demo`)."""
    from .demo import create_demo_method

    create_demo_method(app)
