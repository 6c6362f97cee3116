"""Validating and storing payment methods: the one place the add wizard, the edit page and the
``paymethod`` CLI go through, so the same input gives the same stored method whichever way it came in."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from flask_babel import gettext as _
from flask_wtf import FlaskForm
from sqlalchemy import func, select

from ..db import db
from .forms import allowed_currencies, setting_fields
from ..models import Payment, PaymentMethod
from ..money import CURRENCIES, MoneyError, parse_amount
from . import store_settings
from ..paymodule import FEATURE_RECURRING, FEATURE_REFUND, ModuleInfo
from ..plugins import get_registry

# commission_percent is stored as Numeric(7, 4).
PERCENT_PLACES = 4


class PaymethodInUse(Exception):
    """A payment method that payments refer to cannot be deleted (it can be disabled)."""


def jsonable(value: Any) -> Any:
    """A form value as it is stored in JSON: Decimals and dates as text, the rest unchanged."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def attach_errors(form: FlaskForm, errors: Mapping[str, list[str]] | None) -> bool:
    """Put ``{field: [error]}`` next to the form's fields (unknown names go to the form's own errors).

    Returns True when there was any error.
    """
    found = False
    for name, messages in (errors or {}).items():
        messages = [str(m) for m in (messages or [])]
        if not messages:
            continue
        found = True
        field = form._fields.get(name)
        if field is not None:
            field.errors = list(field.errors or []) + messages
        else:
            form.form_errors.extend(f"{name}: {m}" if name else m for m in messages)
    return found


def form_errors(form: FlaskForm) -> dict[str, list[str]]:
    """Every error of a form by field name (form-level errors under ``""``), for the CLI and logs."""
    result: dict[str, list[str]] = {}
    for field in form:
        if field.errors:
            result[field.name] = [str(e) for e in field.errors]
    if form.form_errors:
        result[""] = [str(e) for e in form.form_errors]
    return result


def integration_values(form: FlaskForm, info: ModuleInfo, kept_secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings a submitted integration form stands for, as they would be stored.

    A secret left blank takes its kept value (from the stored method or the wizard's draft).
    """
    values = {f.name: jsonable(f.data) for f in setting_fields(form)}
    for name in info.secret_fields:
        if values.get(name) in (None, "") and kept_secrets and kept_secrets.get(name):
            values[name] = kept_secrets[name]
    return values


def validate_integration(key: str, form: FlaskForm, *, kept_secrets: Mapping[str, Any] | None = None,
                         currency: str | None = None) -> dict[str, Any] | None:
    """Validate a submitted integration form: the form's own validators, then the module's hook.

    Returns the settings to store (secrets included), or None with the errors put next to the fields.
    """
    info = get_registry().info(key)
    if info is None:
        form.form_errors.append(_("The payment module %(key)s is not loaded.", key=key))
        return None
    valid = form.validate()
    settings = integration_values(form, info, kept_secrets)
    # The module checks what was typed even when a field failed the form's own validators, so that every
    # problem shows at once (not the passwords' on the second try); a field keeps only its first reason.
    errors = dict(get_registry().call(key, "billcore_validate_integration", settings=settings, currency=currency) or {})
    errors = {name: messages for name, messages in errors.items()
              if not (name in form._fields and form._fields[name].errors)}
    if attach_errors(form, errors) or not valid:
        return None
    return settings


def _amount(form: FlaskForm, name: str, currency: str, *, required: bool = False) -> Decimal | None:
    """Parse one amount field exactly in ``currency``; a bad value puts an error on the field."""
    field = form._fields[name]
    text = (field.data or "").strip() if isinstance(field.data, str) else ("" if field.data is None else str(field.data))
    if text == "":
        return Decimal("0") if required else None
    try:
        value = parse_amount(text.replace(",", "."), currency)
    except MoneyError:
        field.errors = list(field.errors or []) + [
            _("Not a valid amount in %(currency)s (at most %(places)s decimals).",
              currency=currency, places=CURRENCIES[currency])]
        return None
    if value < 0:
        field.errors = list(field.errors or []) + [_("Must not be negative.")]
        return None
    return value


def _percent(form: FlaskForm) -> Decimal | None:
    field = form.commission_percent
    text = (field.data or "").strip().replace(",", ".") if isinstance(field.data, str) else str(field.data or "")
    if text == "":
        return Decimal("0")
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        value = None
    if value is None or not value.is_finite() or value != value.quantize(Decimal(1).scaleb(-PERCENT_PLACES)):
        field.errors = list(field.errors or []) + [
            _("Not a valid percentage (at most %(places)s decimals).", places=PERCENT_PLACES)]
        return None
    if value < 0 or value >= 100:
        field.errors = list(field.errors or []) + [_("Must be at least 0 and less than 100.")]
        return None
    return value.quantize(Decimal(1).scaleb(-PERCENT_PLACES))


def validate_method(form: FlaskForm, info: ModuleInfo, *,
                    integration_settings: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Validate a submitted method-settings form for a method of module ``info``.

    Amounts are parsed exactly in the chosen currency (no more decimals than it has, not negative,
    minimum not above maximum); a currency the module does not accept is refused. When
    ``integration_settings`` are given, the module's validation hook is asked again with the chosen
    currency. Returns the PaymentMethod column values, or None with the errors put next to the fields.
    """
    ok = form.validate()
    currency = (form.currency.data or "").strip().upper()
    if currency not in CURRENCIES:
        form.currency.errors = list(form.currency.errors or []) + [_("Choose a currency.")]
        return None
    if currency not in allowed_currencies(info):
        form.currency.errors = list(form.currency.errors or []) + [
            _("%(module)s accepts only these currencies: %(list)s.", module=info.title,
              list=", ".join(allowed_currencies(info)))]
        return None
    min_amount = _amount(form, "min_amount", currency)
    max_amount = _amount(form, "max_amount", currency)
    commission_amount = _amount(form, "commission_amount", currency, required=True)
    commission_percent = _percent(form)
    if max_amount is not None and max_amount == 0:
        form.max_amount.errors = list(form.max_amount.errors or []) + [_("Must be more than 0.")]
        ok = False
    if min_amount is not None and max_amount is not None and min_amount > max_amount:
        form.max_amount.errors = list(form.max_amount.errors or []) + [
            _("The maximum must not be less than the minimum.")]
        ok = False
    if not ok or any(f.errors for f in form):
        return None
    if integration_settings is not None:
        errors = get_registry().call(info.key, "billcore_validate_integration",
                                     settings=dict(integration_settings), currency=currency) or {}
        messages = [str(m) for msgs in errors.values() for m in (msgs or [])]
        if messages:
            form.currency.errors = list(form.currency.errors or []) + [
                _("The integration settings do not fit this currency: %(errors)s", errors="; ".join(messages))]
            return None

    def text(name: str) -> str | None:
        field = form._fields.get(name)
        value = (field.data or "").strip() if field is not None else ""
        return value or None

    return {
        "name": form.name.data.strip(),
        "name_ru": text("name_ru"),
        "currency": currency,
        "min_amount": min_amount,
        "max_amount": max_amount,
        "commission_amount": commission_amount,
        "commission_percent": commission_percent,
        "delete_after_days": form.delete_after_days.data,
        "active": bool(form.active.data),
        "sort_order": form.sort_order.data,
        "allow_refund": bool(FEATURE_REFUND in info.features and form._fields.get("allow_refund")
                             and form.allow_refund.data),
        "recurring": bool(FEATURE_RECURRING in info.features and form._fields.get("recurring")
                          and form.recurring.data),
        "description": text("description"),
        "description_ru": text("description_ru"),
        "comment": text("comment"),
    }


def next_sort_order() -> int:
    """The sort order that puts a new method after every existing one."""
    current = db.session.scalar(select(func.max(PaymentMethod.sort_order)))
    return (current or 0) + 1


def create_paymethod(key: str, settings: Mapping[str, Any], values: Mapping[str, Any]) -> PaymentMethod:
    """Store a new payment method of module ``key`` (settings and values already validated)."""
    info = get_registry().info(key)
    if info is None:
        raise LookupError(f"payment module {key} is not loaded")
    fields = dict(values)
    if fields.get("sort_order") is None:
        fields["sort_order"] = next_sort_order()
    method = PaymentMethod(module=key, settings={}, **fields)
    store_settings(method, info, dict(settings))
    db.session.add(method)
    db.session.commit()
    return method


def update_method_values(method: PaymentMethod, values: Mapping[str, Any]) -> None:
    """Store validated method settings on an existing method (sort order kept when left blank)."""
    for name, value in values.items():
        if name == "sort_order" and value is None:
            continue
        setattr(method, name, value)
    db.session.commit()


def update_integration(method: PaymentMethod, settings: Mapping[str, Any]) -> None:
    """Store validated integration settings on an existing method (a blank secret keeps its value)."""
    info = get_registry().info(method.module)
    if info is None:
        raise LookupError(f"payment module {method.module} is not loaded")
    store_settings(method, info, dict(settings))
    db.session.commit()


def payment_count(method_id: int) -> int:
    """How many payments refer to the method."""
    return db.session.scalar(select(func.count()).select_from(Payment).where(Payment.paymethod_id == method_id)) or 0


def payment_counts() -> dict[int, int]:
    """Payments per method id."""
    rows = db.session.execute(select(Payment.paymethod_id, func.count()).group_by(Payment.paymethod_id)).all()
    return dict(rows)


def set_active(method: PaymentMethod, active: bool) -> None:
    """Enable or disable a method. Disabling only stops new payments: payments already made through it
    keep their notifications and status polls, which look the method up by id whatever its state."""
    method.active = active
    db.session.commit()


def delete_paymethod(method: PaymentMethod) -> None:
    """Delete a method no payment refers to; raises :class:`PaymethodInUse` otherwise."""
    if payment_count(method.id):
        raise PaymethodInUse(method.id)
    db.session.delete(method)
    db.session.commit()


def ordered_methods() -> list[PaymentMethod]:
    """Every payment method in display order."""
    return list(db.session.scalars(select(PaymentMethod).order_by(PaymentMethod.sort_order, PaymentMethod.id)))


def move(method: PaymentMethod, direction: int) -> bool:
    """Move a method one place up (``-1``) or down (``+1``) in the list; renumbers the orders 1..n.

    Returns False when it is already first / last.
    """
    methods = ordered_methods()
    index = next(i for i, m in enumerate(methods) if m.id == method.id)
    target = index + direction
    if target < 0 or target >= len(methods):
        return False
    methods[index], methods[target] = methods[target], methods[index]
    for position, item in enumerate(methods, start=1):
        item.sort_order = position
    db.session.commit()
    return True
