"""Every hook a billcore payment module can implement, in one place.

A payment module is a Python module registered under the entry-point group ``billcore.paymethods``;
the entry-point name is the module key (``pmrobokassa``). It implements the hooks below with
``@billcore.gateway.hookimpl``. Hooks that the core calls for one module are called on the owning module
only (:meth:`billcore.plugins.ModuleRegistry.call`), so an implementation needs no check of the key: it
may leave the ``module`` argument out of its signature (pluggy passes only the arguments a hook names).
``settings`` arguments are the payment method's integration settings with secrets decrypted: use them,
never log them.

Plugins never change payment state themselves: they call the service functions of :mod:`billcore.gateway`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click
    from flask import Blueprint, Flask
    from flask_wtf import FlaskForm

    from .models import Payment, PaymentMethod, Refund
    from .paymodule import (ChargeResult, Customer, GatewaySetup, GatewayStatus, ModuleInfo, RefundResult,
                            StartAction)

PROJECT = "billcore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def billcore_module_info() -> ModuleInfo:
    """Describe the module: key, title, description, logo, features, categories, currencies, secret fields.

    Called once per module when the app is created; a module whose answer is missing or invalid is not
    loaded. Not ``firstresult``: every module answers for itself. Returns a :class:`ModuleInfo`.
    """
    raise NotImplementedError  # a specification: pluggy calls the modules' implementations


@hookspec
def billcore_blueprints(app: Flask) -> list[Blueprint] | None:
    """Return the module's Flask blueprints (its ``/mancgi/...`` routes, its templates and static files).

    Called once when the app is created. Make the gateway's callback views with
    :func:`billcore.gateway.gateway_callback` and :func:`~billcore.gateway.gateway_return`: billcore
    exempts exactly those from CSRF (they are signed or change nothing); every other view keeps it.
    Returns a list of blueprints or None.
    """


@hookspec
def billcore_register_commands(cli: click.Group) -> None:
    """Add the module's own ``flask --app billcore ...`` commands to ``cli``. Called once at app creation."""


@hookspec(firstresult=True)
def billcore_integration_form(module: str, paymethod: PaymentMethod | None) -> type[FlaskForm] | None:
    """Return the step-2 integration-settings form class (BILLmanager's ``pmtune``).

    Called when the wizard's step 2 or the edit page is shown and when they are submitted, and when the
    ``paymethod add`` command validates ``--set`` values. ``paymethod`` is None while adding. The class may
    be built at call time (for example to fill a select from the gateway). Fields named in
    ``ModuleInfo.secret_fields`` are treated as secrets: rendered empty, blank on submit means "keep".
    """


@hookspec(firstresult=True)
def billcore_validate_integration(module: str, settings: dict[str, Any], currency: str | None) -> dict[str, list[str]] | None:
    """Check integration settings beyond what the form validates (BILLmanager's ``pmvalidate``).

    Called after the form validated, with the settings as they would be stored (secrets included) and the
    payment method's currency when it is known. Returns ``{field: [error, ...]}`` (empty dict = valid), or
    Must not log secrets.
    """


@hookspec(firstresult=True)
def billcore_gateway_setup(module: str, paymethod: PaymentMethod, settings: dict[str, Any], base_url: str) -> GatewaySetup | None:
    """Describe what the admin must set on the gateway's side (callback URLs, method, hash) and warn about
    this installation (a port other than 80/443, plain http...). ``base_url`` is the public absolute URL.

    Called on the wizard's last page and on the payment method's page. Returns a :class:`GatewaySetup`.
    """


@hookspec(firstresult=True)
def billcore_start_payment(module: str, payment: Payment, paymethod: PaymentMethod, settings: dict[str, Any],
                           customer: Customer) -> StartAction | None:
    """Say what the gateway's request for ``payment`` is (BILLmanager's ``redirect``): a URL to send the
    customer's browser to, or a form to POST there (:class:`StartAction`).

    Called by the core's payment door when the customer confirms a payment or pays an open one again,
    after the core checked that the payment is the customer's, still open and its method active; the core
    then marks the payment ``inpay`` and sends the browser on. ``settings`` are the method's settings with
    secrets decrypted (sign with them, never put one in the request); ``customer`` is the payer (e-mail,
    language). Must not change state. Raise :class:`StartRefused` with a message for the customer when the
    payment cannot be sent now (the method is not configured): nothing changes then.
    """


@hookspec(firstresult=True)
def billcore_check_payment(module: str, payment: Payment, paymethod: PaymentMethod,
                           settings: dict[str, Any]) -> GatewayStatus | None:
    """Ask the gateway about one payment (BILLmanager's ``checkpay``); only for modules with ``checkpay``.

    Called by ``flask --app billcore payments check`` (cron) for ``inpay`` payments and by the admin's
    "check status now". Must not change state: the core applies the answer through the payment service,
    checking amount and currency. Returns a :class:`GatewayStatus`.
    """


@hookspec(firstresult=True)
def billcore_refund(module: str, payment: Payment, paymethod: PaymentMethod, settings: dict[str, Any],
                    refund: Refund) -> RefundResult | None:
    """Ask the gateway to return ``refund.amount`` of ``payment``; only for modules with ``refund``.

    Called after the core recorded the refund request (payment ``pending_return``). Must not change state:
    the core books the answer. Raise an exception for a temporary failure. Returns a
    :class:`RefundResult`.
    """


@hookspec(firstresult=True)
def billcore_refund_status(module: str, payment: Payment, paymethod: PaymentMethod, settings: dict[str, Any],
                           refund: Refund) -> RefundResult | None:
    """Follow a refund the gateway accepted as ``pending`` until it is ``finished`` or ``failed``.

    Called by ``payments check`` and on the admin's payment page. Returns a :class:`RefundResult`.
    """


@hookspec(firstresult=True)
def billcore_recurring_charge(module: str, payment: Payment, parent: Payment, paymethod: PaymentMethod,
                              settings: dict[str, Any]) -> ChargeResult | None:
    """Charge a child ``payment`` against the stored ``parent`` payment; only for modules with ``recurring``.

    Called by ``flask --app billcore recurring run``. Returns a :class:`ChargeResult`.
    """


@hookspec
def billcore_payment_changed(payment_id: int, old_status: str, new_status: str, event_kind: str) -> None:
    """Broadcast after every committed status change of a payment, to every module.

    A module that raises is logged and the others still run; the change itself is already committed.
    """


@hookspec
def billcore_demo(app: Flask) -> None:
    """Add the module's demo payment methods when ``flask --app billcore demo`` runs (idempotently).

    Called with an app context pushed, after the demo admin and client exist.
    """
