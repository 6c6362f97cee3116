"""The admin's accounts: a list with balances (keyset paging) and an account's page with its ledger and payments."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import HiddenField, RadioField, StringField
from wtforms.validators import DataRequired, InputRequired, Length

from ..auth import admin_required
from ..db import db
from ..models import Account, LedgerEntry, Payment, User
from ..payments.adjustments import MAX_REASON, AdjustmentError, adjust_balance
from . import bp, once
from .. import filters
from ..args import MAX_ID, row_id

ON_ACCOUNT_PAGE = 50  # latest ledger entries and payments shown; the payments list has the rest


@bp.route("/accounts")
@admin_required
def accounts():
    """Accounts, newest first, with currency, balance and users; ``?q=`` finds by name or e-mail."""
    size = int(current_app.config.get("ADMIN_PAGE_SIZE") or 50)
    before = request.args.get("before", type=row_id)
    try:
        q = filters.text(request.args.get("q"))
    except filters.BadFilter:
        abort(400)
    query = select(Account)
    if q:
        like = f"%{q.lower()}%"
        emails = select(User.account_id).where(func.lower(User.email).like(like))
        query = query.where((func.lower(Account.name).like(like)) | Account.id.in_(emails)
                            | (Account.id == int(q) if q.isascii() and q.isdigit() and int(q) <= MAX_ID else False))
    if before:
        query = query.where(Account.id < before)
    rows = db.session.execute(query.order_by(Account.id.desc()).limit(size + 1)).scalars().all()
    next_before = rows[size - 1].id if len(rows) > size else None
    rows = rows[:size]
    users: dict[int, list[str]] = {}
    if rows:
        for account_id, email in db.session.execute(
                select(User.account_id, User.email).where(User.account_id.in_([a.id for a in rows]))):
            users.setdefault(account_id, []).append(email)
    return render_template("admin/accounts/list.html", accounts=rows, users=users, before=before,
                           next_before=next_before, q=q)


class AdjustForm(FlaskForm):
    """A manual correction of the balance: credit or debit, the amount and the reason (kept in the ledger)."""

    direction = RadioField(_l("Correction"), choices=[("credit", _l("Credit (add to the balance)")),
                                                     ("debit", _l("Debit (take from the balance)"))],
                           default="credit", validators=[InputRequired()])
    amount = StringField(_l("Amount"), validators=[DataRequired(_l("Enter the amount.")), Length(max=32)],
                         render_kw={"inputmode": "decimal", "autocomplete": "off"})
    reason = StringField(_l("Reason"), validators=[DataRequired(_l("Say why: the reason is kept in the ledger.")),
                                                   Length(max=MAX_REASON)])
    # a one-time token (see admin.once): the same form sent twice corrects the balance once
    once = HiddenField(validators=[Length(max=once.MAX_TOKEN)])


@bp.route("/accounts/<int:account_id>", methods=["GET", "POST"])
@admin_required
def account(account_id: int):
    """An account: balance, users, the latest ledger entries and payments; POST corrects the balance."""
    item = db.session.get(Account, account_id)
    if item is None:
        abort(404)
    form = AdjustForm()
    status = 200
    if form.validate_on_submit() and once.used(form.once.data):
        flash(_("This correction was already made; the balance was not changed again."), "info")
        return redirect(once.used(form.once.data))
    if form.is_submitted() and not form.once.data:
        form.amount.errors.append(_("The form expired; please submit it again."))
        status = 400
    elif form.validate_on_submit():
        try:
            value = Decimal(form.amount.data.replace(",", ".").replace(" ", "").replace("\u00a0", ""))
            if value <= 0:
                raise InvalidOperation
        except InvalidOperation:
            form.amount.errors.append(_("Enter a positive amount like 100 or 100.50."))
        else:
            try:
                done = adjust_balance(item.id, value if form.direction.data == "credit" else -value,
                                      reason=form.reason.data, source="admin", actor=current_user.email)
            except AdjustmentError as exc:
                form.amount.errors.append(str(exc))
            else:
                from ..templating import money

                once.remember(form.once.data, url_for(".account", account_id=item.id))
                flash(_("The balance was corrected by %(amount)s; it is now %(balance)s.",
                        amount=money(done.amount, done.currency), balance=money(done.balance_after, done.currency)),
                      "success")
                return redirect(url_for(".account", account_id=item.id))
        status = 400
    elif request.method == "POST":
        status = 400
    form.once.data = once.new_token()  # every form shown can be sent once
    db.session.expire_all()
    item = db.session.get(Account, account_id)
    users = db.session.execute(select(User).where(User.account_id == item.id).order_by(User.id)).scalars().all()
    ledger = db.session.execute(select(LedgerEntry).where(LedgerEntry.account_id == item.id)
                                .order_by(LedgerEntry.id.desc()).limit(ON_ACCOUNT_PAGE)).scalars().all()
    payments = db.session.execute(select(Payment).where(Payment.account_id == item.id)
                                  .order_by(Payment.id.desc()).limit(ON_ACCOUNT_PAGE)).scalars().all()
    return render_template("admin/accounts/detail.html", account=item, users=users, ledger=ledger,
                           payments=payments, limit=ON_ACCOUNT_PAGE, form=form,
                           action_form=ActionForm()), status


class ActionForm(FlaskForm):
    """A POST button with a CSRF token."""


@bp.route("/users/<id:user_id>/active", methods=["POST"])
@admin_required
def user_active(user_id: int):
    """Activate or deactivate a client user (``active=1`` or ``0``); deactivating ends every session of
    the user at once, on every browser."""
    from ..accounts import set_active

    user = db.session.get(User, user_id)
    if user is None or user.account_id is None:  # admins are managed from the command line
        abort(404)
    if not ActionForm().validate_on_submit() or request.form.get("active") not in ("0", "1"):
        abort(400)
    active = request.form["active"] == "1"
    set_active(user, active)
    flash(_("%(email)s can log in again.", email=user.email) if active else
          _("%(email)s is deactivated and logged out everywhere.", email=user.email), "success")
    return redirect(url_for(".account", account_id=user.account_id))
