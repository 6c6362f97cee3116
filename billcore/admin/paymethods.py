"""The admin's payment methods: the list with its actions, a method's page and the edit page (two tabs).

The add wizard lives in :mod:`billcore.admin.paymethod_wizard`; validation and storage in
:mod:`billcore.paymethods.service`, shared with the ``paymethod`` CLI.
"""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext

from ..auth import admin_required
from ..db import db
from ..paymethods.forms import blank_secret_fields, make_integration_form, make_method_form, setting_fields
from ..models import PaymentMethod
from ..paymethods.service import (
    PaymethodInUse,
    delete_paymethod,
    move,
    ordered_methods,
    payment_count,
    payment_counts,
    set_active,
    update_integration,
    update_method_values,
    validate_integration,
    validate_method,
)
from ..paymethods import full_settings, secret_values
from ..plugins import get_registry
from . import bp
from .paymethod_ui import feature_labels, gateway_setup, log_module_failure


def _method(method_id: int) -> PaymentMethod:
    method = db.session.get(PaymentMethod, method_id)
    if method is None:
        abort(404)
    return method


@bp.route("/paymethods")
@admin_required
def paymethods():
    """The list of payment methods with their actions."""
    return render_template("admin/paymethods/list.html", methods=ordered_methods(), counts=payment_counts(),
                           registry=get_registry())


@bp.route("/paymethods/<int:method_id>")
@admin_required
def paymethod_view(method_id: int):
    """A method's page: its settings and what to set up on the gateway's side."""
    method = _method(method_id)
    info = get_registry().info(method.module)
    setup, warnings, setup_error = gateway_setup(method)
    stored_secrets = set(full_settings(method)) - set(method.settings or {})
    labels = _setting_labels(method) if info else {}
    return render_template("admin/paymethods/view.html", method=method, info=info, setup=setup,
                           warnings=warnings, setup_error=setup_error, payments=payment_count(method.id),
                           stored_secrets=stored_secrets, features=feature_labels(),
                           percent=method.commission_percent, labels=labels,
                           value_labels=_setting_value_labels(method) if info else {})


def _setting_labels(method: PaymentMethod) -> dict[str, str]:
    """The module's labels of its integration settings, by setting name (the name when the module
    fails to build its form: the page still shows the values)."""
    try:
        form = make_integration_form(method.module, method, formdata=None, csrf=False)
    except Exception as exc:  # a module's bug must not take the method's page down
        log_module_failure(method.module, "billcore_integration_form", exc)
        return {}
    return {f.name: str(f.label.text) for f in setting_fields(form)}


def _setting_value_labels(method: PaymentMethod) -> dict[str, dict[str, str]]:
    """For settings chosen from a list (selects, radio buttons): the words of each stored value, so the
    page says "MD5" or "Full payment" instead of the stored code."""
    try:
        form = make_integration_form(method.module, method, formdata=None, csrf=False)
    except Exception:  # logged by _setting_labels; the codes are shown then
        return {}
    out: dict[str, dict[str, str]] = {}
    for f in setting_fields(form):
        choices = getattr(f, "choices", None)
        if not choices:
            continue
        pairs = {}
        for choice in choices:
            value, label = (choice[0], choice[1]) if isinstance(choice, tuple) else (choice.value, choice.label)
            pairs[str(value)] = str(label)
        out[f.name] = pairs
    return out


def _method_form_data(method: PaymentMethod) -> dict:
    return {
        "name": method.name, "name_ru": method.name_ru, "currency": method.currency,
        "min_amount": "" if method.min_amount is None else str(method.min_amount),
        "max_amount": "" if method.max_amount is None else str(method.max_amount),
        "commission_amount": str(method.commission_amount or 0),
        "commission_percent": _percent_text(method.commission_percent),
        "delete_after_days": method.delete_after_days, "active": method.active,
        "sort_order": method.sort_order, "allow_refund": method.allow_refund, "recurring": method.recurring,
        "description": method.description, "description_ru": method.description_ru, "comment": method.comment,
    }


def _percent_text(value) -> str:
    text = f"{value or 0:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@bp.route("/paymethods/<int:method_id>/edit", methods=["GET", "POST"])
@admin_required
def paymethod_edit(method_id: int):
    """Edit a method: ``?tab=integration`` (the module's form) or ``?tab=settings`` (the method settings)."""
    method = _method(method_id)
    info = get_registry().info(method.module)
    if info is None:
        flash(_("The payment module %(key)s is not loaded, so this method cannot be edited.", key=method.module),
              "error")
        return redirect(url_for("admin.paymethod_view", method_id=method.id))
    tab = request.args.get("tab", "integration")
    if tab not in ("integration", "settings"):
        abort(404)
    kept = {k: v for k, v in full_settings(method).items() if k in info.secret_fields}
    status = 200
    integration_form = method_form = None
    if tab == "integration":
        if request.method == "POST":
            integration_form = make_integration_form(method.module, method, kept_secrets=kept)
            settings = validate_integration(method.module, integration_form, kept_secrets=kept,
                                            currency=method.currency)
            if settings is not None:
                update_integration(method, settings)
                flash(_("Integration settings saved."), "success")
                return redirect(url_for("admin.paymethod_view", method_id=method.id))
            status = 400
        else:
            integration_form = make_integration_form(method.module, method, data=method.settings or {},
                                                     kept_secrets=kept)
        blank_secret_fields(integration_form, info)
    else:
        if request.method == "POST":
            method_form = make_method_form(info)
            values = validate_method(method_form, info, integration_settings=full_settings(method))
            if values is not None:
                update_method_values(method, values)
                flash(_("Payment method settings saved."), "success")
                return redirect(url_for("admin.paymethod_view", method_id=method.id))
            status = 400
        else:
            method_form = make_method_form(info, data=_method_form_data(method))
    secret_values(method)  # registers the values with the log masker before anything is logged
    return render_template("admin/paymethods/edit.html", method=method, info=info, tab=tab,
                           integration_form=integration_form, method_form=method_form), status


@bp.route("/paymethods/<int:method_id>/enable", methods=["POST"])
@admin_required
def paymethod_enable(method_id: int):
    """Let clients pay with the method again."""
    method = _method(method_id)
    set_active(method, True)
    flash(_("Payment method “%(name)s” enabled.", name=method.name), "success")
    return redirect(_back())


@bp.route("/paymethods/<int:method_id>/disable", methods=["POST"])
@admin_required
def paymethod_disable(method_id: int):
    """Stop new payments through the method; payments in progress still get their notifications."""
    method = _method(method_id)
    set_active(method, False)
    flash(_("Payment method “%(name)s” disabled: clients cannot start new payments with it. Payments "
            "already in progress are still completed.", name=method.name), "success")
    return redirect(_back())


@bp.route("/paymethods/<int:method_id>/move/<direction>", methods=["POST"])
@admin_required
def paymethod_move(method_id: int, direction: str):
    """Move the method one place up or down in the list clients see."""
    if direction not in ("up", "down"):
        abort(404)
    move(_method(method_id), -1 if direction == "up" else 1)
    return redirect(url_for("admin.paymethods"))


@bp.route("/paymethods/<int:method_id>/delete", methods=["GET", "POST"])
@admin_required
def paymethod_delete(method_id: int):
    """Confirm, then delete a method; refused (offering to disable it) while payments refer to it."""
    method = _method(method_id)
    count = payment_count(method.id)
    if request.method == "POST":
        name = method.name
        try:
            delete_paymethod(method)
        except PaymethodInUse:
            flash(ngettext("“%(name)s” cannot be deleted: %(num)s payment refers to it. Disable it instead to stop "
                           "new payments.",
                           "“%(name)s” cannot be deleted: %(num)s payments refer to it. Disable it instead to stop "
                           "new payments.", count, name=name), "error")
            return redirect(url_for("admin.paymethod_delete", method_id=method.id), code=303)
        flash(_("Payment method “%(name)s” deleted.", name=name), "success")
        return redirect(url_for("admin.paymethods"))
    return render_template("admin/paymethods/delete.html", method=method, payments=count)


def _back() -> str:
    """Back to the page the action came from (the list or the method's page), never off-site."""
    target = request.form.get("next", "")
    if target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("admin.paymethods")
