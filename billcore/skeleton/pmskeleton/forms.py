"""The integration settings: the admin's form (field names are the settings' keys) and their validation.
A secret field is rendered empty and "blank means keep": not ``DataRequired``, checked by validation."""
from __future__ import annotations

import re
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

MERCHANT_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SECRET_MIN_LENGTH = 8


class IntegrationForm(FlaskForm):
    """The merchant's identifier and shared secret at the gateway (TODO(gateway): its credentials)."""

    merchant_id = StringField(_l("Merchant ID"), validators=[DataRequired(), Length(max=64)],
                              description=_l("Your shop's identifier at the gateway (letters, digits, '.', '_', '-')."))
    secret = PasswordField(_l("Shared secret"), validators=[Optional(), Length(min=SECRET_MIN_LENGTH, max=200)],
                           description=_l("Signs the gateway's notifications. Leave blank to keep the stored one."))


def validate_settings(settings: dict[str, Any]) -> dict[str, list[str]]:
    """Errors by field; also run for ``paymethod add --set`` values that never saw the form. Never put a
    secret's value into a message."""
    errors: dict[str, list[str]] = {}
    if not MERCHANT_ID_RE.fullmatch(str(settings.get("merchant_id") or "")):
        errors["merchant_id"] = [_("Use only letters, digits, '.', '_' and '-' (at most 64).")]
    if len(str(settings.get("secret") or "")) < SECRET_MIN_LENGTH:
        errors["secret"] = [_("The shared secret must be at least %(n)d characters long.", n=SECRET_MIN_LENGTH)]
    return errors
