"""The one public module for payment modules: everything a gateway plugin may use from billcore.

A payment module imports from here and from nowhere else in billcore (a test keeps the in-tree modules
and a freshly scaffolded one to that). Anything not named in ``__all__`` is the core's own business and
may change without notice.

What is here:

* the plugin marker :data:`hookimpl` and the API version (:data:`API_VERSION`, see
  :func:`check_api_version`);
* the value types passed between the core and a module (:class:`ModuleInfo`, :class:`StartAction`,
  :class:`GatewaySetup`, :class:`GatewayStatus`, :class:`RefundResult`, :class:`ChargeResult` ...) and
  the ``FEATURE_*`` names;
* the read-only view of the rows a hook receives (:class:`Payment`, :class:`PaymentMethod`,
  :class:`Refund`, :class:`Status`);
* the payment service calls a module may make (``set_in_pay``, ``set_paid``, ``set_cancelled``,
  ``set_fraud``, ``record_event``, ``finish_refund``, ``fail_refund``, ``set_refund_external_id``,
  ``set_gateway_data``) and their :class:`Outcome` and errors: the service is the only code that changes a
  payment's status or a balance;
* money helpers (``parse_amount``, ``format_amount``, ``quantize`` ...);
* the payment door's gateway side: :func:`gateway_callback` makes a notification view (the core parses the
  payment id, loads the payment with its settings as a :class:`CallbackRequest`, checks the address
  allow-list, records refusals bounded, answers 503 on a database failure and exempts the view from CSRF;
  the module verifies and answers an :class:`Answer` or raises :class:`Refuse`); :func:`gateway_return`
  makes the payer's return view; :func:`return_url`, :func:`public_url`; lower-level helpers
  (:func:`known_fields`, :func:`cap_body`, :func:`allow`, :func:`client_address`, :func:`row_id`) and the
  module's log file (:func:`file_logger`);
* the customer side of the door is the core's: a module's ``billcore_start_payment`` only returns the
  gateway's request (:class:`StartAction`, given the :class:`Customer`), or raises :class:`StartRefused`;
* the testing entry points, re-exported lazily from :mod:`billcore.testing` (``ConformanceSuite``,
  ``ConformanceAdapter``, ``Notification``, ``make_app``, ``add_paymethod`` ...).

See ``docs/plugins.md`` for a whole gateway written against this module.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from .args import MAX_ID, row_id
from .callbacks import (Answer, CallbackRequest, Refuse, address_in, gateway_callback, gateway_return,
                        return_url)
from .db import db as _db
from .hookspecs import hookimpl
from .limits import DROPPED, TRUNCATED, allow, cap_body, client_address, known_fields
from .logs import file_logger, quote
from .models import Payment, PaymentMethod, Refund, Status
from .money import MAX_AMOUNT, MoneyError, check_currency, format_amount, minor_unit, parse_amount, quantize
from .paymethods import CallbackContext, callback_context, full_settings, store_settings
from .paymodule import (FEATURE_CHECKPAY, FEATURE_RECEIPTS, FEATURE_RECURRING, FEATURE_REFUND,
                        FEATURE_SUBSCRIPTIONS, FEATURE_TEST_MODE, FEATURES, ChargeResult, Customer, GatewaySetup,
                        GatewayStatus, ModuleInfo, RefundResult, SetupItem, StartAction, StartRefused)
from .payments.service import (IllegalTransition, Outcome, PaymentError, PaymentNotFound, RefundError, fail_refund,
                               finish_refund, record_event, set_cancelled, set_fraud, set_gateway_data, set_in_pay,
                               set_paid, set_refund_external_id)
from .plugins import development_mode
from .states import (ChargeState, ChargeStatus, GatewayState, InvalidState, ProfileStatus, RefundState,
                     RefundStatus)

API_VERSION = "3.0"
"""The version of this module's API, ``MAJOR.MINOR``. A module declares the version it was written for in
``ModuleInfo.api_version``; it loads when the majors are equal and its minor is not newer than ours."""

# Names re-exported from billcore.testing on first use, so that importing billcore.gateway in production
# never imports the test kit (and pytest with it).
_TESTING = {
    "ConformanceSuite": "billcore.testing.conformance",
    "ConformanceAdapter": "billcore.testing.conformance",
    "Notification": "billcore.testing.conformance",
    "send": "billcore.testing.conformance",
    "make_app": "billcore.testing.fixtures",
    "add_paymethod": "billcore.testing.fixtures",
    "login": "billcore.testing.fixtures",
    "run_together": "billcore.testing.fixtures",
    "CLIENT": "billcore.testing.fixtures",
    "OTHER_CLIENT": "billcore.testing.fixtures",
    "ADMIN": "billcore.testing.fixtures",
    "BASE_URL": "billcore.testing.fixtures",
}


class ApiVersionError(ValueError):
    """A module needs a version of :mod:`billcore.gateway` this billcore does not provide."""


def _parse_version(text: str) -> tuple[int, int]:
    major, _, minor = str(text).strip().partition(".")
    if not major.isdigit() or (minor and not minor.isdigit()):
        raise ApiVersionError(f"api_version {text!r} is not MAJOR.MINOR (e.g. {API_VERSION!r})")
    return int(major), int(minor or 0)


def check_api_version(required: str | None) -> None:
    """Raise :class:`ApiVersionError` with a clear message when a module needing API version ``required``
    cannot run on this billcore. ``None`` declares no need (a module written before versions)."""
    if required is None:
        return
    need = _parse_version(required)
    have = _parse_version(API_VERSION)
    if need[0] != have[0] or need[1] > have[1]:
        raise ApiVersionError(f"the module needs billcore.gateway API {need[0]}.{need[1]}, this billcore provides "
                              f"{API_VERSION} (a module runs on the same major version, minor up to ours)")


def session() -> Any:
    """The request's database session, for reading the module's own rows (``session().get(Payment, id)``).

    Never change a payment's status, a refund's or a balance through it: the service calls do that, each
    in one transaction.
    """
    return _db.session


def rollback() -> None:
    """End the request's read snapshot, e.g. after a database error before answering 503."""
    _db.session.rollback()


def module_info(key: str) -> ModuleInfo | None:
    """The :class:`ModuleInfo` of the loaded module ``key`` in the current app, or None."""
    from .plugins import get_registry

    return get_registry().info(key)


def current_flask_app() -> Flask:
    """The running Flask app (for a module's configuration and development switch)."""
    return current_app._get_current_object()  # type: ignore[attr-defined]


def public_url(path: str = "") -> str:
    """The absolute URL of ``path`` on this installation, as the gateway must be given it: ``BASE_URL``
    when set (behind a proxy the request's own host may not be the public one), else this request's."""
    from flask import request

    base = str(current_app.config.get("BASE_URL") or request.url_root).rstrip("/")
    return base + path


def __getattr__(name: str) -> Any:
    """The testing entry points, imported from :mod:`billcore.testing` when first asked for."""
    if name in _TESTING:
        import importlib

        return getattr(importlib.import_module(_TESTING[name]), name)
    raise AttributeError(f"module 'billcore.gateway' has no attribute {name!r}")


__all__ = [
    # version
    "API_VERSION", "ApiVersionError", "check_api_version",
    # plugin marker and value types
    "hookimpl", "ModuleInfo", "SetupItem", "GatewaySetup", "StartAction", "StartRefused", "Customer", "GatewayStatus",
    "RefundResult",
    "ChargeResult", "GatewayState", "RefundState", "ChargeState", "InvalidState", "RefundStatus", "ChargeStatus",
    "ProfileStatus", "FEATURES", "FEATURE_CHECKPAY", "FEATURE_REFUND", "FEATURE_RECURRING", "FEATURE_SUBSCRIPTIONS",
    "FEATURE_TEST_MODE", "FEATURE_RECEIPTS",
    # rows a hook receives (read-only) and the payment states
    "Payment", "PaymentMethod", "Refund", "Status", "session", "rollback", "store_settings", "module_info",
    # payment service calls
    "Outcome", "PaymentError", "PaymentNotFound", "IllegalTransition", "RefundError", "set_in_pay", "set_paid",
    "set_cancelled", "set_fraud", "record_event", "finish_refund", "fail_refund", "set_refund_external_id",
    "set_gateway_data",
    # money
    "MAX_AMOUNT", "MoneyError", "check_currency", "minor_unit", "quantize", "parse_amount", "format_amount",
    # the gateway's callbacks and the payer's return
    "gateway_callback", "gateway_return", "CallbackRequest", "Answer", "Refuse", "return_url", "public_url",
    "address_in", "CallbackContext", "callback_context", "full_settings", "known_fields", "cap_body", "allow",
    "client_address", "DROPPED", "TRUNCATED", "MAX_ID", "row_id", "development_mode", "current_flask_app",
    "file_logger", "quote",
    # testing entry points (from billcore.testing)
    *_TESTING,
]
