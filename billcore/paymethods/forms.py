"""The forms of the payment-method pages: the step-3 method settings (the same for every module) and the
helpers that build a module's step-2 integration form and keep its secret fields out of the HTML."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from ..money import CURRENCIES
from ..paymodule import FEATURE_RECURRING, FEATURE_REFUND, ModuleInfo
from ..plugins import get_registry

# Field types that carry no setting (the CSRF token, buttons).
NON_SETTING_TYPES = frozenset({"CSRFTokenField", "SubmitField"})

# The FlaskForm "use the current request" marker, so callers can say "no formdata" explicitly.
AUTO = object()


def no_nul(form: Any, field: Any) -> None:
    """Refuse a NUL character: PostgreSQL cannot store one in a text column (SQLite would), so it must be
    a clear form error on both databases rather than a failed insert."""
    if field.data and "\x00" in field.data:
        raise ValidationError(_("Must not contain a NUL character."))


class EmptyIntegrationForm(FlaskForm):
    """The integration form of a module that asks for nothing."""


class MethodSettingsForm(FlaskForm):
    """Step 3 of the wizard and the edit page's "Method settings" tab: what every payment method has.

    Amounts are text fields: they are parsed with :mod:`billcore.money` once the currency is known
    (see :func:`billcore.paymethods.service.validate_method`), never through float.
    """

    name = StringField(_l("Name (English)"), validators=[DataRequired(), Length(max=200), no_nul],
                       description=_l("Shown to clients when they choose how to pay."))
    name_ru = StringField(_l("Name (Russian)"), validators=[Optional(), Length(max=200), no_nul])
    currency = SelectField(_l("Currency"), validate_choice=False)
    min_amount = StringField(_l("Minimum payment amount"), description=_l("Blank: no minimum."))
    max_amount = StringField(_l("Maximum payment amount"), description=_l("Blank: no maximum."))
    commission_amount = StringField(_l("Fixed commission"), default="0",
                                    description=_l("Charged to the client on top of the amount."))
    commission_percent = StringField(_l("Commission percentage"), default="0",
                                     description=_l("Charged to the client on top of the amount."))
    delete_after_days = IntegerField(_l("Period to delete due invoices (days)"),
                                     validators=[Optional(), NumberRange(min=1, max=3650)],
                                     description=_l("Blank: unpaid invoices are kept."))
    active = BooleanField(_l("Active (clients can pay with it)"), default=True)
    sort_order = IntegerField(_l("Sort order"), validators=[Optional(), NumberRange(min=0, max=1000000)],
                              description=_l("Lower numbers are listed first. Blank: after the others."))
    allow_refund = BooleanField(_l("Allow refunds"))
    recurring = BooleanField(_l("Recurring payments"))
    description = TextAreaField(_l("Description for clients (English)"), validators=[Optional(), Length(max=5000), no_nul])
    description_ru = TextAreaField(_l("Description for clients (Russian)"), validators=[Optional(), Length(max=5000), no_nul])
    comment = TextAreaField(_l("Comment (seen by administrators only)"), validators=[Optional(), Length(max=5000), no_nul])


def allowed_currencies(info: ModuleInfo) -> list[str]:
    """The currencies a payment method of this module may use: the module's list, or every one billcore has."""
    if info.currencies:
        return [c for c in info.currencies if c in CURRENCIES]
    return list(CURRENCIES)


def make_method_form(info: ModuleInfo, *, formdata: Any = AUTO, data: Mapping[str, Any] | None = None,
                     csrf: bool = True) -> MethodSettingsForm:
    """The method-settings form for a method of module ``info``: currency choices restricted to what the
    module accepts, refund / recurring switches only when the module declares those features."""
    kwargs: dict[str, Any] = {"data": dict(data) if data is not None else None}
    if formdata is not AUTO:
        kwargs["formdata"] = formdata
    if not csrf:
        kwargs["meta"] = {"csrf": False}
    form = MethodSettingsForm(**kwargs)
    form.currency.choices = [(c, c) for c in allowed_currencies(info)]
    if FEATURE_REFUND not in info.features:
        del form.allow_refund
    if FEATURE_RECURRING not in info.features:
        del form.recurring
    return form


def integration_form_class(key: str, paymethod: Any = None) -> type[FlaskForm]:
    """The module's step-2 form class (built by the module, possibly at call time)."""
    cls = get_registry().call(key, "billcore_integration_form", paymethod=paymethod)
    return cls or EmptyIntegrationForm


def make_integration_form(key: str, paymethod: Any = None, *, formdata: Any = AUTO,
                          data: Mapping[str, Any] | None = None, csrf: bool = True,
                          kept_secrets: Mapping[str, Any] | None = None) -> FlaskForm:
    """Build module ``key``'s integration form.

    ``data`` pre-fills it (public settings only: secrets are never passed in). Secret fields whose value is
    already stored (``kept_secrets``) become optional, lose the HTML ``required`` flag and say "set — leave
    blank to keep", because blank means "keep" for them.
    """
    cls = integration_form_class(key, paymethod)
    kwargs: dict[str, Any] = {}
    if data is not None:
        info = get_registry().info(key)
        secret = set(info.secret_fields) if info else set()
        kwargs["data"] = {k: v for k, v in data.items() if k not in secret}
    if formdata is not AUTO:
        kwargs["formdata"] = formdata
    if not csrf:
        kwargs["meta"] = {"csrf": False}
    form = cls(**kwargs)
    info = get_registry().info(key)
    for name in (info.secret_fields if info else ()):
        field = form._fields.get(name)
        if field is None:
            continue
        if kept_secrets and kept_secrets.get(name):
            field.validators = [Optional()] + [v for v in field.validators
                                               if not isinstance(v, (DataRequired, InputRequired))]
            field.flags.required = False
            field.description = _("Set — leave blank to keep the stored value.")
    return form


def blank_secret_fields(form: FlaskForm, info: ModuleInfo | None) -> None:
    """Empty the secret fields before a form is rendered, so a typed secret is never sent back."""
    for name in (info.secret_fields if info else ()):
        field = form._fields.get(name)
        if field is not None:
            field.data = None
            field.raw_data = None
            field.render_kw = dict(field.render_kw or {}, autocomplete="new-password")


def setting_fields(form: FlaskForm) -> list[Any]:
    """The form's fields that carry a setting (not the CSRF token, not buttons)."""
    return [f for f in form if f.type not in NON_SETTING_TYPES]
