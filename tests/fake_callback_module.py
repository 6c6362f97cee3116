"""A tiny payment module whose gateway views are made by the core (loaded with ``EXTRA_MODULES``), for
tests/test_callbacks.py.

``/cb/result`` is a notification made with ``gateway_callback``: it is signed with ``sign`` (the secret
followed by the payment id: a test's stand-in for a real signature) and pays the payment, or does what
``MODE["handler"]`` says (``bug``: raise, ``database``: a database error, ``not_an_answer``: return a
string). ``/cb/success`` and ``/cb/signed`` are return views made with ``gateway_return`` (the second
checks the same signature); ``/cb/ordinary`` is an ordinary POST view of the same blueprint, which keeps
its CSRF protection. The method's ``networks`` setting is the notification's address allow-list.
"""
from __future__ import annotations

import hmac
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from flask import Blueprint
from sqlalchemy.exc import OperationalError

from billcore.gateway import (Answer, CallbackRequest, ModuleInfo, Refuse, StartAction, gateway_callback,
                              gateway_return, hookimpl, set_paid)

KEY = "pmcallback"
SOURCE = "pmcallback result"
FIELDS = ("order", "amount", "sign")
MODE: dict[str, str] = {}


def reset() -> None:
    """Forget what a previous test configured."""
    MODE.clear()


def signature(secret: str, order: str) -> str:
    """The test's stand-in for a gateway signature."""
    return f"{secret}:{order}"


def _verified(params: Mapping[str, str], settings: Mapping[str, Any]) -> bool:
    expected = signature(str(settings.get("secret") or ""), params.get("order", ""))
    return bool(settings.get("secret")) and hmac.compare_digest(params.get("sign", ""), expected)


def _networks(settings: Mapping[str, Any]) -> list[str] | None:
    return settings.get("networks") or None


@gateway_callback(KEY, source=SOURCE, id_field="order", fields=FIELDS, allowed_addresses=_networks,
                  log_file="cbresult")
def result(call: CallbackRequest) -> Answer:
    """Pay the payment when the notification is signed, or misbehave as the test asks."""
    mode = MODE.get("handler")
    if mode == "bug":
        raise ZeroDivisionError("a bug in the module")
    if mode == "database":
        raise OperationalError("UPDATE", {}, Exception("database is locked"))
    if not _verified(call.params, call.payment.settings):
        raise Refuse("bad signature")
    outcome = set_paid(call.payment.payment_id, amount=Decimal(call.params.get("amount", "0")), currency="RUB",
                       source=SOURCE, data=dict(call.params), answer="OK")
    if mode == "not_an_answer":
        return "OK"  # type: ignore[return-value]  # the mistake under test
    return Answer(f"OK{call.payment.payment_id}" if outcome.status == "paid" else "not paid",
                  200 if outcome.status == "paid" else 400)


success = gateway_return(KEY, source="pmcallback success", id_field="order", outcome="success", fields=FIELDS,
                         log_file="cbsuccess")
signed_success = gateway_return(KEY, source="pmcallback signed", id_field="order", outcome="success",
                                fields=FIELDS, verify=_verified, log_file="cbsigned")


def ordinary() -> str:
    """An ordinary view of the module's blueprint: not made by the core, so it keeps CSRF."""
    return "ordinary"


@hookimpl
def billcore_module_info() -> ModuleInfo:
    """Describe the fake module."""
    return ModuleInfo(key=KEY, title="Fake callbacks", secret_fields=("secret",), development_only=True,
                      api_version="3.0", success_answer="OK{payment_id}")


@hookimpl
def billcore_blueprints(app):
    """The notification, the two return views and the ordinary view."""
    bp = Blueprint(KEY, __name__)
    bp.add_url_rule("/cb/result", view_func=result, methods=["POST"])
    bp.add_url_rule("/cb/success", view_func=success)
    bp.add_url_rule("/cb/signed", view_func=signed_success)
    bp.add_url_rule("/cb/ordinary", view_func=ordinary, methods=["POST"])
    return [bp]


@hookimpl
def billcore_start_payment(payment, settings, customer) -> StartAction:
    """A made-up gateway page."""
    return StartAction(url=f"https://gateway.invalid/cb?order={payment.id}")
