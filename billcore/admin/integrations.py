"""The admin's integration pages: API tokens, webhook endpoints and their deliveries (with e-mails).

A new token or signing secret is shown once, in the page that answers the form: never in a redirect's
flash message (which travels in the session cookie).
"""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from .. import api_tokens, webhooks
from ..args import row_id
from ..auth import admin_required
from ..db import db
from ..models import Delivery, WebhookEndpoint
from ..outbox import EVENT_TYPES
from . import bp


class _Checkboxes(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class TokenForm(FlaskForm):
    """A new API token: a name and its scopes."""

    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=100)])
    scopes = _Checkboxes(_l("Scopes"), choices=[("read", _l("read")), ("write", _l("write (includes read)"))],
                         default=["read"], validators=[DataRequired(_l("Choose at least one scope."))])


class EndpointForm(FlaskForm):
    """A new webhook endpoint: URL, description, events."""

    url = StringField(_l("URL"), validators=[DataRequired(), Length(max=webhooks.MAX_URL)])
    description = StringField(_l("Description"), validators=[Length(max=200)])
    events = _Checkboxes(_l("Events"), choices=[(e, e) for e in EVENT_TYPES], default=list(EVENT_TYPES),
                         validators=[DataRequired(_l("Choose at least one event."))])


class ActionForm(FlaskForm):
    """A POST button with its CSRF token."""


def _tokens_page(form: TokenForm, new_token: str | None = None, status: int = 200):
    return render_template("admin/integrations/tokens.html", tokens=api_tokens.list_tokens(), form=form,
                           new_token=new_token, action_form=ActionForm()), status


@bp.route("/api-tokens", methods=["GET", "POST"])
@admin_required
def api_tokens_page():
    """API tokens: create one (shown once), see each one's scopes and last use, revoke."""
    form = TokenForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return _tokens_page(form, status=400)
        _, token = api_tokens.create_token(form.name.data, form.scopes.data, actor=current_user.email)
        return _tokens_page(TokenForm(formdata=None), new_token=token, status=201)
    return _tokens_page(form)


@bp.route("/api-tokens/<int:token_id>/revoke", methods=["POST"])
@admin_required
def api_token_revoke(token_id: int):
    """Revoke a token for good."""
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        row = api_tokens.revoke_token(token_id)
    except api_tokens.TokenError:
        abort(404)
    flash(_("Token “%(name)s” revoked.", name=row.name), "success")
    return redirect(url_for(".api_tokens_page"))


def _webhooks_page(form: EndpointForm, new_secret: str | None = None, status: int = 200):
    endpoints = db.session.execute(select(WebhookEndpoint).order_by(WebhookEndpoint.id.desc())).scalars().all()
    return render_template("admin/integrations/webhooks.html", endpoints=endpoints, form=form, new_secret=new_secret,
                           action_form=ActionForm(), disabled=webhooks.disabled_endpoints()), status


@bp.route("/webhooks", methods=["GET", "POST"])
@admin_required
def webhooks_page():
    """Webhook endpoints: register one (its signing secret shown once), enable, disable."""
    form = EndpointForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return _webhooks_page(form, status=400)
        try:
            _, secret = webhooks.create_endpoint(form.url.data, form.events.data, form.description.data)
        except webhooks.WebhookError as exc:
            form.url.errors.append(str(exc))
            return _webhooks_page(form, status=400)
        return _webhooks_page(EndpointForm(formdata=None), new_secret=secret, status=201)
    return _webhooks_page(form)


@bp.route("/webhooks/<int:endpoint_id>/<any(enable, disable):action>", methods=["POST"])
@admin_required
def webhook_toggle(endpoint_id: int, action: str):
    """Enable (waiting deliveries go out with the next run) or disable an endpoint."""
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    webhooks.set_endpoint_active(endpoint, action == "enable")
    flash(_("Endpoint enabled.") if action == "enable" else _("Endpoint disabled."), "success")
    return redirect(url_for(".webhooks_page"))


@bp.route("/deliveries")
@admin_required
def deliveries():
    """Deliveries, newest first: of one endpoint (``?endpoint_id=``), else the customer e-mails."""
    endpoint_id = request.args.get("endpoint_id", type=row_id)
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) if endpoint_id else None
    if endpoint_id and endpoint is None:
        abort(404)
    channel = webhooks.WEBHOOK if endpoint is not None else webhooks.EMAIL
    query = select(Delivery).where(Delivery.channel == channel)
    if endpoint is not None:
        query = query.where(Delivery.endpoint_id == endpoint.id)
    before = request.args.get("before", type=row_id)
    if before:
        query = query.where(Delivery.id < before)
    size = int(current_app.config.get("ADMIN_PAGE_SIZE") or 50)
    rows = db.session.execute(query.order_by(Delivery.id.desc()).limit(size + 1)).scalars().all()
    next_before = rows[size - 1].id if len(rows) > size else None
    return render_template("admin/integrations/deliveries.html", endpoint=endpoint, deliveries=rows[:size],
                           next_before=next_before, before=before, action_form=ActionForm())


@bp.route("/deliveries/<int:delivery_id>/resend", methods=["POST"])
@admin_required
def delivery_resend(delivery_id: int):
    """Send a delivery again with the next run of the job (same webhook-id)."""
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        delivery = webhooks.resend(delivery_id)
    except webhooks.WebhookError:
        abort(404)
    flash(_("Delivery %(id)s will be sent again with the next run.", id=delivery.id), "success")
    return redirect(url_for(".deliveries", endpoint_id=delivery.endpoint_id) if delivery.endpoint_id
                    else url_for(".deliveries"))
