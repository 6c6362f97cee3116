"""Errors of auto-payments: a refusal for the user, and a charge's error stored as a code with
parameters, translated when shown."""
from __future__ import annotations

from typing import Any

from flask_babel import force_locale
from flask_babel import gettext as _

from ..models import RecurringProfile


class RecurringError(Exception):
    """A refused opt-in, cancellation or resumption; the message is translated for the user."""


# An error of a charge: (code, parameters). The parameters are JSON values (amounts as strings).
Err = tuple[str, dict[str, Any]]
TEXT = "text"  # a text from the gateway or the module (shown as it is): {"info": ...}


def error_text(code: str | None, params: dict[str, Any] | None) -> str:
    """An error's text in the current language (a request's, or ``force_locale``'s)."""
    p = dict(params or {})
    if code == "monthly_max":
        return _("monthly maximum of %(max)s %(currency)s reached", max=p.get("max"), currency=p.get("currency"))
    if code == "module_error":
        return _("the payment system failed: %(info)s", info=p.get("info"))
    if code == "refused":
        return _("the charge was refused")
    if code == "unsupported":
        return _("the payment system does not support automatic payments")
    if code == "payment_status":
        return _("payment %(id)s was %(status)s", id=p.get("id"), status=p.get("status"))
    if code == "unknown_outcome":
        return _("the outcome of payment %(id)s is unknown: it was cancelled while the payment system was "
                 "charging it", id=p.get("id"))
    if code == "fraud_check":
        return _("the charge of payment %(id)s needs an administrator's check: the payment system reported a "
                 "different amount or currency", id=p.get("id"))
    if code == "method_disabled":
        return _("This payment method is disabled.")
    if code == "currency":
        return _("This payment method takes %(method)s; the account is in %(account)s.", method=p.get("method"),
                 account=p.get("account"))
    if code == "min_amount":
        return _("The minimum amount is %(amount)s %(currency)s.", amount=p.get("amount"), currency=p.get("currency"))
    if code == "max_amount":
        return _("The maximum amount is %(amount)s %(currency)s.", amount=p.get("amount"), currency=p.get("currency"))
    if code == "too_large":
        return _("The amount is too large.")
    return str(p.get("info") or code or "")


def untranslated(error: Err) -> str:
    """The error's text in English (the msgids' language): kept in ``last_error`` and ``info`` for logs,
    the CLI and code that reads the text."""
    with force_locale("en"):
        return error_text(*error)


def profile_error(profile: RecurringProfile) -> str | None:
    """The profile's last error for a page, in the reader's language; a row stored before errors had codes
    shows its stored text as it is."""
    if profile.last_error_code:
        return error_text(profile.last_error_code, profile.last_error_params)
    return profile.last_error


def set_error(profile: RecurringProfile, error: Err | None) -> str | None:
    """Store ``error`` (None: clear it) on the profile; returns its English text (None when cleared)."""
    if error is None:
        profile.last_error = profile.last_error_code = profile.last_error_params = None
        return None
    text = untranslated(error)[:1000]
    profile.last_error, profile.last_error_code, profile.last_error_params = text, error[0], dict(error[1])
    return text


def text_error(info: str | None, otherwise: Err) -> Err:
    """A gateway's or module's text as an error (shown as it is), or ``otherwise`` when there is none."""
    return (TEXT, {"info": info}) if info else otherwise
