"""The step-2 integration form (BILLmanager's ``pmtune``) and the extra validation (``pmvalidate``).

Field names are the keys of the payment method's settings. Fields listed in ``ModuleInfo.secret_fields``
(here ``secret``) are stored encrypted, rendered empty and "blank means keep": so a secret field must not
be ``DataRequired`` in the form; :func:`validate_settings` checks that a secret is there at all.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

SECRET_MIN_LENGTH = 8
MERCHANT_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class IntegrationForm(FlaskForm):
    """What the admin enters to connect one payment method to the (fake) gateway."""

    merchant_id = StringField(
        _l("Merchant ID"), validators=[DataRequired(), Length(max=64)],
        description=_l("Your shop's identifier at the gateway (letters, digits, '.', '_', '-')."))
    secret = PasswordField(
        _l("Shared secret"), validators=[Optional(), Length(min=SECRET_MIN_LENGTH, max=200)],
        description=_l("Signs the gateway's notifications. Leave blank to keep the stored one."))
    gateway_url = StringField(
        _l("Gateway URL"), validators=[Optional(), Length(max=255)],
        description=_l("Leave blank to use the fake gateway built into billcore."))
    test_mode = BooleanField(_l("Test mode"), default=True,
                             description=_l("Payments are marked as test payments at the gateway."))


def validate_settings(settings: dict[str, Any], currency: str | None) -> dict[str, list[str]]:
    """Field errors of ``settings`` as they would be stored (secrets included); empty when valid.

    Runs after the form validated, and also for ``paymethod add --set`` values that never saw the form,
    so it repeats the essential checks. Never put a secret's value into an error message.
    """
    from flask_babel import gettext as _

    errors: dict[str, list[str]] = {}
    merchant = str(settings.get("merchant_id") or "").strip()
    if not merchant:
        errors.setdefault("merchant_id", []).append(_("The merchant ID is required."))
    elif not MERCHANT_ID_RE.match(merchant):
        errors.setdefault("merchant_id", []).append(
            _("Use only letters, digits, '.', '_' and '-' (at most 64)."))
    secret = str(settings.get("secret") or "")
    if not secret:
        errors.setdefault("secret", []).append(_("The shared secret is required."))
    elif len(secret) < SECRET_MIN_LENGTH:
        errors.setdefault("secret", []).append(
            _("The shared secret must be at least %(n)d characters long.", n=SECRET_MIN_LENGTH))
    url = str(settings.get("gateway_url") or "").strip()
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            errors.setdefault("gateway_url", []).append(
                _("Enter an absolute http:// or https:// URL, or leave it blank."))
    if "test_mode" in settings and not isinstance(settings["test_mode"], bool) \
            and str(settings["test_mode"]).lower() not in ("0", "1", "true", "false", "yes", "no", "on", "off", ""):
        errors.setdefault("test_mode", []).append(_("Test mode is yes or no."))
    return errors


def as_bool(value: Any) -> bool:
    """A setting given as a bool or as text (``--set test_mode=yes``) as a bool."""
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in ("1", "true", "yes", "on", "y")
