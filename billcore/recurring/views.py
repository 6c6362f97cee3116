"""Client pages of recurring payments: the profiles list with cancel, the opt-in on a payment's page,
and the dashboard notice (:func:`billcore.recurring.notices_for_account`)."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import RadioField, StringField, SubmitField
from wtforms.validators import InputRequired, Length, Optional

from .. import recurring
from ..auth import client_required
from ..checkout.access import own_payment
from ..checkout.start import start_payment
from ..db import db
from ..models import Payment, RecurringCharge, RecurringProfile

bp = Blueprint("recurring", __name__)


class ButtonForm(FlaskForm):
    """An empty form: a POST button with its CSRF token."""


class ProfileForm(FlaskForm):
    """The opt-in: how to top up, how much, and the monthly maximum."""

    rule = RadioField(_l("Top up"), default=recurring.THRESHOLD, validators=[InputRequired()],
                      choices=[(recurring.THRESHOLD, _l("when the balance falls below a threshold")),
                               (recurring.FIXED, _l("by a fixed amount every month"))])
    amount = StringField(_l("Amount of each top-up"), validators=[InputRequired(), Length(max=32)],
                         render_kw={"inputmode": "decimal", "autocomplete": "off"})
    threshold = StringField(_l("Threshold (top up when the balance is below)"),
                            validators=[Optional(), Length(max=32)], render_kw={"inputmode": "decimal"})
    monthly_max = StringField(_l("Monthly maximum"), validators=[InputRequired(), Length(max=32)],
                              description=_l("Automatic payments never take more than this in a calendar month."),
                              render_kw={"inputmode": "decimal"})
    submit = SubmitField(_l("Set up automatic payments"))


@bp.app_template_global("recurring_notices")
def recurring_notices(account_id: int | None) -> list[str]:
    """Dashboard notices about the account's auto-payments (suspended, failed charges)."""
    return recurring.notices_for_account(account_id) if account_id else []


@bp.app_template_global("recurring_error")
def recurring_error(profile: RecurringProfile) -> str | None:
    """The profile's last error in the reader's language (client and admin pages)."""
    return recurring.profile_error(profile)


@bp.app_template_global("recurring_offer")
def recurring_offer(payment: Payment) -> str | None:
    """What the payment page offers: ``prepare`` (pay as the first of automatic payments), ``create``
    (set them up with this paid payment) or None."""
    try:
        if recurring.can_mark_parent(payment):
            return "prepare"
        if recurring.offer_refusal(payment) is None:
            return "create"
    except Exception:  # the offer must never break the payment page
        current_app.logger.exception("recurring offer for payment %s", payment.id)
    return None


@bp.route("/recurring")
@client_required
def profiles():
    """The client's auto-payment profiles with their charged periods."""
    rows = db.session.execute(select(RecurringProfile).where(RecurringProfile.account_id == current_user.account_id)
                              .order_by(RecurringProfile.id.desc())).scalars().all()
    charges: dict[int, list[RecurringCharge]] = {}
    if rows:
        for c in db.session.execute(select(RecurringCharge).where(
                RecurringCharge.profile_id.in_([p.id for p in rows])).order_by(RecurringCharge.id.desc())).scalars():
            charges.setdefault(c.profile_id, []).append(c)
    return render_template("client/recurring/profiles.html", profiles=rows, charges=charges, form=ButtonForm(),
                           notices=recurring.notices_for_account(current_user.account_id),
                           language=str(get_locale() or "en"))


@bp.route("/recurring/<int:profile_id>/cancel", methods=["POST"])
@client_required
def cancel(profile_id: int):
    """Cancel one of the client's auto-payments."""
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        recurring.cancel_profile(profile_id, account_id=current_user.account_id, actor=current_user.email)
    except recurring.RecurringError:
        abort(404)
    flash(_("Automatic payments were cancelled."), "success")
    return redirect(url_for(".profiles"))


@bp.route("/payments/<int:payment_id>/recurring/prepare", methods=["POST"])
@client_required
def prepare(payment_id: int):
    """Opt in while paying: mark the unpaid payment as the first of automatic payments and go pay it."""
    payment = own_payment(payment_id)
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        recurring.mark_parent(payment.id)
    except recurring.RecurringError as exc:
        flash(str(exc), "error")
        return redirect(url_for("checkout.payment", payment_id=payment.id))
    return start_payment(db.session.get(Payment, payment.id))


@bp.route("/payments/<int:payment_id>/recurring", methods=["GET", "POST"])
@client_required
def new(payment_id: int):
    """Set up automatic payments with a paid payment as their parent."""
    payment = own_payment(payment_id)
    refusal = recurring.offer_refusal(payment)
    form = ProfileForm()
    if refusal is None and form.validate_on_submit():
        try:
            profile = recurring.create_profile(
                payment.id, account_id=current_user.account_id, rule=form.rule.data, amount=form.amount.data,
                threshold=form.threshold.data, monthly_max=form.monthly_max.data, actor=current_user.email)
        except recurring.RecurringError as exc:
            form.form_errors.append(str(exc))
        else:
            flash(_("Automatic payments are set up (#%(id)s).", id=profile.id), "success")
            return redirect(url_for(".profiles"))
    status = 422 if form.is_submitted() and (form.errors or form.form_errors) else 200
    if refusal is not None:
        status = 409 if form.is_submitted() else 200
    return render_template("client/recurring/new.html", form=form, payment=payment, refusal=refusal), status
