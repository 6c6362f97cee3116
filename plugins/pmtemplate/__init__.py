"""The template payment module: a complete, working example to copy for every new gateway.

It talks to a fake gateway that lives inside billcore (see :mod:`.views` and :mod:`.gateway`) so the whole
pattern runs without a network: integration form with a secret, validation, gateway-side instructions,
redirect script, signed notification -> payment service, return pages, status check, refund, recurring
charges and its own log files. ``flask --app billcore module new pmNAME`` copies this package under a new
name; then replace the fake gateway with calls to the real one.

Every hook of :mod:`billcore.hookspecs` is implemented below, each with a note on when billcore calls it
and what belongs there. billcore calls the per-module hooks on this module only, so they leave out the
``module`` argument and need no check of the key. Everything from billcore comes from :mod:`billcore.gateway`.
"""
from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click
from flask import Blueprint, Flask
from flask.cli import AppGroup
from flask_babel import gettext as _

from billcore.gateway import (FEATURE_CHECKPAY, FEATURE_RECURRING, FEATURE_REFUND, FEATURE_TEST_MODE, ChargeResult,
                              ChargeState, Customer, GatewaySetup, GatewayState, GatewayStatus, ModuleInfo, RefundResult,
                              RefundState, SetupItem, StartAction, hookimpl, session)

from . import gateway
from .forms import IntegrationForm, validate_settings

if TYPE_CHECKING:  # pragma: no cover
    from flask_wtf import FlaskForm

    from billcore.gateway import Payment, PaymentMethod, Refund

KEY = "pmtemplate"
VERSION = "0.1.0"


# --- describing the module -------------------------------------------------------------------------

@hookimpl
def billcore_module_info() -> ModuleInfo:
    """Describe the module.

    When: once per app, while billcore loads the module; a missing or invalid answer keeps it unloaded.
    What: the key (must equal the entry-point name), the title and description the wizard shows, the
    features you implement (billcore only offers those), the currencies the gateway takes (empty = any)
    and the integration-form fields that are secrets (stored encrypted, never shown again).
    ``development_only=True`` keeps the template out of production unless ``PAYMENT_MODULES`` names it:
    drop it in a real module. ``api_version`` is the ``billcore.gateway.API_VERSION`` the module was
    written for: a billcore whose API is incompatible refuses to load it, with the reason.
    """
    return ModuleInfo(
        key=KEY,
        title="Template gateway",
        description="A fake gateway inside billcore: the starting point for new payment modules.",
        version=VERSION,
        features=frozenset({FEATURE_CHECKPAY, FEATURE_REFUND, FEATURE_RECURRING, FEATURE_TEST_MODE}),
        categories=("card",),
        currencies=(),
        secret_fields=("secret",),
        registration_url=None,
        development_only=True,
        api_version="3.0",  # the billcore.gateway API this module is written for: keep it
        success_answer="OK",  # the notification answer the gateway expects (the suite checks it)
    )


# --- wiring into the app ---------------------------------------------------------------------------

@hookimpl
def billcore_blueprints(app: Flask) -> list[Blueprint]:
    """Register the routes.

    When: once per app at creation. What: your blueprints (redirect script, notification, return pages,
    templates). Exempt exactly the views the gateway calls from CSRF, nothing else.
    """
    from .views import register

    return register(app)


@hookimpl
def billcore_register_commands(cli: click.Group) -> None:
    """Add ``flask --app billcore pmtemplate ...`` commands.

    When: once per app at creation. What: tools for operators of this gateway (here: list the fake
    gateway's operations). Most modules need none: leave it out.
    """
    group = AppGroup(KEY, help="The template module's fake gateway.")

    @group.command("ops")
    @click.option("--limit", default=20, show_default=True, help="How many operations to show.")
    def ops(limit: int) -> None:
        """List the fake gateway's latest operations."""
        for op in gateway.operations(limit):
            click.echo(f"{op['op_id']}  payment {op['payment_id']}  {op['amount']} {op['currency']}  {op['state']}")

    cli.add_command(group)


# --- the integration settings (wizard step 2) ------------------------------------------------------

@hookimpl
def billcore_integration_form(paymethod: PaymentMethod | None) -> type[FlaskForm] | None:
    """The integration form class (BILLmanager's ``pmtune``).

    When: the wizard's step 2 and the edit page (shown and submitted), and ``paymethod add --set``.
    What: a FlaskForm class whose field names are the settings keys. ``paymethod`` is None while adding;
    build the class at call time if a field needs data from the gateway (say, a list of shops).
    """
    return IntegrationForm


@hookimpl
def billcore_validate_integration(settings: dict[str, Any], currency: str | None) -> dict[str, list[str]] | None:
    """Check the settings beyond the form (BILLmanager's ``pmvalidate``).

    When: after the form validated, with the settings as they would be stored (secrets included).
    What: ``{field: [errors]}``; empty means valid. A real module may also ask the gateway whether the
    credentials work (with a short timeout). Never put a secret into a message or a log.
    """
    return validate_settings(settings, currency)


@hookimpl
def billcore_gateway_setup(paymethod: PaymentMethod, settings: dict[str, Any], base_url: str) -> GatewaySetup | None:
    """What the admin copies into the gateway's own cabinet, and warnings about this installation.

    When: the wizard's last page and the payment method's page. What: absolute callback URLs built from
    ``base_url``, the HTTP method and signature recipe, and warnings of this gateway's own (an unusual
    port); billcore adds its own about the installation (plain http, no public address).
    """
    base = (base_url or "").rstrip("/")
    items = (
        SetupItem(_("Notification URL"), f"{base}/mancgi/tplresult"),
        SetupItem(_("Notification method"), "POST", copy=False),
        SetupItem(_("Signature"), _("HMAC-SHA256 of the fields as one compact JSON object with sorted names, "
                                    "keyed with the shared secret"), copy=False),
        SetupItem(_("Success URL"), f"{base}/mancgi/tplsuccess"),
        SetupItem(_("Fail URL"), f"{base}/mancgi/tplfail"),
    )
    # billcore itself warns about a missing public address and plain http on the method's page; only what
    # is this gateway's own concern is said here
    warnings = []
    parts = urlsplit(base)
    if parts.port not in (None, 80, 443):
        warnings.append(_("The billing listens on port %(port)s: many gateways only call ports 80 and 443.",
                          port=parts.port))
    notes = [_("Leave the gateway URL blank to use the fake gateway built into billcore.")]
    if settings.get("test_mode"):
        notes.append(_("Test mode is on: no real money moves."))
    return GatewaySetup(items=items, warnings=tuple(warnings), notes=tuple(notes))


# --- paying ----------------------------------------------------------------------------------------

@hookimpl
def billcore_start_payment(payment: Payment, settings: dict[str, Any], customer: Customer) -> StartAction | None:
    """The gateway's request that starts ``payment`` (BILLmanager's ``redirect``).

    When: the customer confirmed a payment or pays an open one again; billcore has checked the payment is
    theirs, open and its method active, and marks it ``inpay`` after this answers. What: the gateway's
    payment page (here a signed GET; for gateways that take a POST form, ``method="POST"`` and
    ``fields``). Raise ``StartRefused`` with a message for the customer when the method cannot be used.
    """
    from .views import start_action

    return start_action(payment, settings, customer)


@hookimpl
def billcore_check_payment(payment: Payment, paymethod: PaymentMethod, settings: dict[str, Any]) -> GatewayStatus | None:
    """Ask the gateway about one payment (BILLmanager's ``checkpay``).

    When: ``flask --app billcore payments check`` (cron) for ``inpay`` payments, and the admin's "check
    status now". What: what the gateway says, as a GatewayStatus; never change the payment here: the core
    applies the answer through the payment service, checking amount and currency.
    """
    op = gateway.find_operation(str(settings.get("merchant_id") or ""), payment.id)
    if op is None:
        return GatewayStatus(GatewayState.PENDING, info="the gateway has no operation for this payment")
    if op["state"] == gateway.PAID:
        return GatewayStatus(GatewayState.PAID, amount=Decimal(op["amount"]), currency=op["currency"],
                             external_id=op["op_id"], data={"op_id": op["op_id"]})
    if op["state"] == gateway.FAILED:
        return GatewayStatus(GatewayState.CANCELLED, external_id=op["op_id"], info="the gateway reports a failure")
    return GatewayStatus(GatewayState.PENDING, external_id=op["op_id"], info="the client has not paid yet")


# --- refunds ---------------------------------------------------------------------------------------

@hookimpl
def billcore_refund(payment: Payment, paymethod: PaymentMethod, settings: dict[str, Any],
                    refund: Refund) -> RefundResult | None:
    """Ask the gateway to return ``refund.amount``.

    When: after the core recorded the refund (payment ``pending_return``, balance debited). What: the
    gateway's answer: ``finished``, ``pending`` (keep its id: the refund-status hook follows it) or
    ``failed`` with the reason. Raise for a temporary failure (network): the core retries later.
    """
    result = gateway.refund(str(settings.get("merchant_id") or ""), payment.id, Decimal(refund.amount))
    return RefundResult(result["state"], external_id=result["refund_id"], info=result["info"],
                        data={"op_id": result["op_id"]})


@hookimpl
def billcore_refund_status(payment: Payment, paymethod: PaymentMethod, settings: dict[str, Any],
                           refund: Refund) -> RefundResult | None:
    """Follow a refund the gateway accepted as ``pending``.

    When: ``payments check`` and the admin's payment page, for refunds still ``requested``. What: the
    gateway's current state of the refund (found by ``refund.external_id``).
    """
    found = gateway.find_refund(refund.external_id or "")
    if found is None:
        return RefundResult(RefundState.PENDING, external_id=refund.external_id, info="unknown at the gateway")
    return RefundResult(found["state"], external_id=found["refund_id"], info=found["info"])


# --- recurring charges -----------------------------------------------------------------------------

@hookimpl
def billcore_recurring_charge(payment: Payment, parent: Payment, paymethod: PaymentMethod,
                              settings: dict[str, Any]) -> ChargeResult | None:
    """Charge ``payment`` against the stored ``parent`` payment (a saved card, a subscription).

    When: ``flask --app billcore recurring run``. What: ``paid`` (settled now), ``accepted`` (the result
    comes by notification or status check) or ``failed``. Charging the same child twice must not charge
    twice: use the payment id as the gateway's idempotency key.
    """
    op = gateway.charge(str(settings.get("merchant_id") or ""), parent.id, payment.id,
                        str(payment.total), payment.currency)
    state = ChargeState.PAID if op["state"] == gateway.PAID else ChargeState.FAILED
    return ChargeResult(state, external_id=op["op_id"],
                        info="" if state == ChargeState.PAID else "the parent payment is not paid at the gateway",
                        data={"amount": op["amount"], "currency": op["currency"]})


# --- reacting to changes, demo data ----------------------------------------------------------------

@hookimpl
def billcore_payment_changed(payment_id: int, old_status: str, new_status: str, event_kind: str) -> None:
    """React to any payment's status change (a broadcast to every module).

    When: after every committed status change, for every payment of every module. What: side effects only
    (a receipt, a message); the change is committed already. Check the payment is yours first.
    """
    from sqlalchemy import select

    from billcore.gateway import Payment, PaymentMethod, file_logger

    module = session().execute(select(PaymentMethod.module).join(Payment, Payment.paymethod_id == PaymentMethod.id)
                                .where(Payment.id == payment_id)).scalar_one_or_none()
    if module == KEY:
        file_logger(KEY).info("payment %s: %s -> %s (%s)", payment_id, old_status, new_status, event_kind)


@hookimpl
def billcore_demo(app: Flask) -> None:
    """Add demo payment methods for ``flask --app billcore demo`` (idempotently).

    When: the demo command, with an app context, after the demo users exist. What: a ready-to-use method
    talking to your gateway's sandbox. The template adds none: Robokassa's sandbox is the demo's method,
    and a fake-gateway method is one wizard run away in a development install.
    """
    return None
