"""The three-step "add a payment method" wizard (docs/design.md §4).

Its state is a :class:`~billcore.models.PaymethodDraft` row on the server; only the draft's random id
travels, in the URL. Secrets typed in step 2 are kept encrypted in the draft and never rendered back.
Each step's form has Back, Next and Cancel buttons (``action`` = ``back`` / ``next`` / ``cancel``);
CSRF is checked for every POST by the app-wide CSRFProtect.
"""
from __future__ import annotations

import secrets
from datetime import timedelta

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import delete

from ..auth import admin_required
from ..crypto import decrypt_json, encrypt_json
from ..db import db
from ..paymethods.forms import allowed_currencies, blank_secret_fields, make_integration_form, make_method_form
from ..models import PaymethodDraft, utcnow
from ..paymethods.service import create_paymethod, integration_values, next_sort_order, validate_integration, validate_method
from ..paymethods import split_settings
from ..plugins import get_registry
from . import bp
from .paymethod_ui import feature_labels


def _ttl() -> timedelta:
    return timedelta(minutes=int(current_app.config.get("WIZARD_DRAFT_TTL_MINUTES") or 60))


def purge_expired_drafts() -> int:
    """Delete every expired draft (done opportunistically whenever the wizard is used)."""
    result = db.session.execute(delete(PaymethodDraft).where(PaymethodDraft.expires_at < utcnow()))
    db.session.commit()
    return result.rowcount or 0  # type: ignore[attr-defined]  # a DELETE's CursorResult


def _load_draft(draft_id: str) -> PaymethodDraft | None:
    """The current admin's live draft, its expiry pushed forward; None when missing or expired."""
    purge_expired_drafts()
    draft = db.session.get(PaymethodDraft, draft_id)
    if draft is None or draft.user_id != current_user.id:
        return None
    draft.expires_at = utcnow() + _ttl()
    return draft


def _restart():
    flash(_("This wizard has expired or does not exist any more. Please start again."), "warning")
    return redirect(url_for("admin.paymethod_new"))


def _draft_secrets(draft: PaymethodDraft) -> dict:
    return decrypt_json(draft.secrets_encrypted)


def _store_integration(draft: PaymethodDraft, settings: dict) -> None:
    """Keep step-2 values in the draft: public ones as JSON, secrets encrypted (blank keeps the old one)."""
    info = get_registry().info(draft.module)
    public, secret = split_settings(info, settings)
    kept = _draft_secrets(draft)
    kept.update(secret)
    draft.settings = public
    draft.secrets_encrypted = encrypt_json(kept)


def _modules():
    registry = get_registry()
    return sorted(registry.modules.values(), key=lambda info: info.title.lower())


@bp.route("/paymethods/new", methods=["GET", "POST"])
@admin_required
def paymethod_new():
    """Step 1: choose the payment module; choosing one creates the draft."""
    purge_expired_drafts()
    if request.method == "POST":
        if request.form.get("action") == "cancel":
            return redirect(url_for("admin.paymethods"))
        key = request.form.get("module", "")
        if get_registry().info(key) is None:
            flash(_("Choose one of the payment modules."), "error")
            return render_template("admin/paymethods/wizard_module.html", modules=_modules(), draft=None,
                                   features=feature_labels()), 400
        draft = PaymethodDraft(id=secrets.token_urlsafe(24), user_id=current_user.id, module=key, step=2,
                               settings={}, method_settings={}, expires_at=utcnow() + _ttl())
        db.session.add(draft)
        db.session.commit()
        return redirect(url_for("admin.paymethod_wizard_integration", draft_id=draft.id))
    return render_template("admin/paymethods/wizard_module.html", modules=_modules(), draft=None,
                           features=feature_labels())


@bp.route("/paymethods/new/<draft_id>/module", methods=["GET", "POST"])
@admin_required
def paymethod_wizard_module(draft_id: str):
    """Step 1 again (Back from step 2): the draft's module is preselected; choosing another one
    forgets the integration settings entered for the old one."""
    draft = _load_draft(draft_id)
    if draft is None:
        return _restart()
    if request.method == "POST":
        action = request.form.get("action")
        if action == "cancel":
            return _cancel(draft)
        key = request.form.get("module", "")
        if get_registry().info(key) is None:
            flash(_("Choose one of the payment modules."), "error")
            db.session.commit()
            return redirect(url_for("admin.paymethod_wizard_module", draft_id=draft.id))
        if key != draft.module:
            draft.module = key
            draft.settings = {}
            draft.secrets_encrypted = None
            draft.step = 2
        db.session.commit()
        return redirect(url_for("admin.paymethod_wizard_integration", draft_id=draft.id))
    db.session.commit()
    return render_template("admin/paymethods/wizard_module.html", modules=_modules(), draft=draft,
                           features=feature_labels())


@bp.route("/paymethods/new/<draft_id>/integration", methods=["GET", "POST"])
@admin_required
def paymethod_wizard_integration(draft_id: str):
    """Step 2: the module's integration form, validated by the module."""
    draft = _load_draft(draft_id)
    if draft is None:
        return _restart()
    info = get_registry().info(draft.module or "")
    if info is None:
        db.session.commit()
        flash(_("Choose one of the payment modules."), "warning")
        return redirect(url_for("admin.paymethod_wizard_module", draft_id=draft.id))
    kept = _draft_secrets(draft)
    status = 200
    if request.method == "POST":
        action = request.form.get("action", "next")
        if action == "cancel":
            return _cancel(draft)
        form = make_integration_form(draft.module, None, kept_secrets=kept)
        if action == "back":
            # Keep what was typed, unvalidated; step 3 needs a valid step 2 again.
            _store_integration(draft, integration_values(form, info, kept))
            draft.step = min(draft.step, 2)
            db.session.commit()
            return redirect(url_for("admin.paymethod_wizard_module", draft_id=draft.id))
        settings = validate_integration(draft.module, form, kept_secrets=kept, currency=None)
        if settings is not None:
            _store_integration(draft, settings)
            draft.step = 3
            db.session.commit()
            return redirect(url_for("admin.paymethod_wizard_settings", draft_id=draft.id))
        # Invalid: remember the secrets typed so far (so they need not be typed again), show errors. A
        # secret that was refused is not kept: the next submit must not pass it on as "set".
        values = integration_values(form, info, kept)
        refused = [n for n in info.secret_fields if n in form._fields and form._fields[n].errors]
        for name in refused:
            values.pop(name, None)
        _store_integration(draft, values)
        if refused:
            draft.secrets_encrypted = encrypt_json({k: v for k, v in _draft_secrets(draft).items() if k not in refused})
        draft.step = 2
        kept = _draft_secrets(draft)
        form = _with_kept_hint(draft.module, form, kept)
        status = 400
    else:
        form = make_integration_form(draft.module, None, data=draft.settings or {}, kept_secrets=kept)
    db.session.commit()
    blank_secret_fields(form, info)
    return render_template("admin/paymethods/wizard_integration.html", form=form, draft=draft, info=info), status


def _with_kept_hint(key: str, form, kept: dict):
    """After a failed submit, mark secrets now kept in the draft as "set" on the already-validated form."""
    info = get_registry().info(key)
    for name in info.secret_fields:
        field = form._fields.get(name)
        if field is not None and kept.get(name) and not field.errors:
            field.flags.required = False
            field.description = _("Set — leave blank to keep the stored value.")
    return form


@bp.route("/paymethods/new/<draft_id>/settings", methods=["GET", "POST"])
@admin_required
def paymethod_wizard_settings(draft_id: str):
    """Step 3: the method settings; Next creates the payment method."""
    draft = _load_draft(draft_id)
    if draft is None:
        return _restart()
    info = get_registry().info(draft.module or "")
    if info is None or draft.step < 3:
        db.session.commit()
        flash(_("Please complete the integration settings first."), "warning")
        if info is None:
            return redirect(url_for("admin.paymethod_wizard_module", draft_id=draft.id))
        return redirect(url_for("admin.paymethod_wizard_integration", draft_id=draft.id))
    status = 200
    if request.method == "POST":
        action = request.form.get("action", "next")
        if action == "cancel":
            return _cancel(draft)
        form = make_method_form(info)
        if action == "back":
            draft.method_settings = {f.name: f.data for f in form if f.type not in ("CSRFTokenField", "SubmitField")}
            db.session.commit()
            return redirect(url_for("admin.paymethod_wizard_integration", draft_id=draft.id))
        integration = dict(draft.settings or {})
        integration.update(_draft_secrets(draft))
        values = validate_method(form, info, integration_settings=integration)
        if values is not None:
            method = create_paymethod(draft.module, integration, values)
            db.session.delete(draft)
            db.session.commit()
            flash(_("Payment method “%(name)s” created. Now set up the gateway's side as shown below.",
                    name=method.name), "success")
            return redirect(url_for("admin.paymethod_view", method_id=method.id))
        status = 400
    else:
        data = dict(draft.method_settings or {})
        if not data:
            data = {"name": info.title, "currency": form_currency_default(info), "active": True, "commission_amount": "0",
                    "commission_percent": "0", "sort_order": next_sort_order(),
                    "allow_refund": True}
        form = make_method_form(info, data=data)
    db.session.commit()
    return render_template("admin/paymethods/wizard_settings.html", form=form, draft=draft, info=info), status


def form_currency_default(info) -> str:
    """The installation's default currency when the module accepts it, else the module's first one."""
    allowed = allowed_currencies(info)
    default = current_app.config.get("DEFAULT_CURRENCY", "RUB")
    return default if default in allowed else (allowed[0] if allowed else default)


@bp.route("/paymethods/new/<draft_id>/cancel", methods=["POST"])
@admin_required
def paymethod_wizard_cancel(draft_id: str):
    """Cancel: forget the draft (and the secrets in it)."""
    draft = _load_draft(draft_id)
    if draft is None:
        db.session.commit()
        return redirect(url_for("admin.paymethods"))
    return _cancel(draft)


def _cancel(draft: PaymethodDraft):
    if draft.user_id != current_user.id:
        abort(404)
    db.session.delete(draft)
    db.session.commit()
    flash(_("The new payment method was not created."), "info")
    return redirect(url_for("admin.paymethods"))
