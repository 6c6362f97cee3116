"""The admin's accounts: a list with balances (keyset paging) and an account's page with its ledger and payments."""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from sqlalchemy import func, select

from ..auth import admin_required
from ..db import db
from ..models import Account, LedgerEntry, Payment, User
from . import bp
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


@bp.route("/accounts/<int:account_id>")
@admin_required
def account(account_id: int):
    """An account: balance, users, the latest ledger entries and payments."""
    item = db.session.get(Account, account_id)
    if item is None:
        abort(404)
    users = db.session.execute(select(User).where(User.account_id == item.id).order_by(User.id)).scalars().all()
    ledger = db.session.execute(select(LedgerEntry).where(LedgerEntry.account_id == item.id)
                                .order_by(LedgerEntry.id.desc()).limit(ON_ACCOUNT_PAGE)).scalars().all()
    payments = db.session.execute(select(Payment).where(Payment.account_id == item.id)
                                  .order_by(Payment.id.desc()).limit(ON_ACCOUNT_PAGE)).scalars().all()
    return render_template("admin/accounts/detail.html", account=item, users=users, ledger=ledger,
                           payments=payments, limit=ON_ACCOUNT_PAGE, action_form=ActionForm())


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
