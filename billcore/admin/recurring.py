"""The admin's view of auto-payments: every profile with its periods, resume a suspended one, cancel."""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from .. import recurring
from ..auth import admin_required
from ..db import db
from ..models import RecurringCharge, RecurringProfile
from . import bp
from ..args import row_id

STATUSES = (recurring.ACTIVE, recurring.SUSPENDED, recurring.CANCELLED)


class _Button(FlaskForm):
    """A POST button with its CSRF token."""


@bp.route("/recurring", endpoint="recurring")
@admin_required
def recurring_profiles():
    """Auto-payment profiles, newest first; ``?status=`` filters, ``?before=`` pages."""
    size = int(current_app.config.get("ADMIN_PAGE_SIZE") or 50)
    status = request.args.get("status") if request.args.get("status") in STATUSES else None
    before = request.args.get("before", type=row_id)
    query = select(RecurringProfile)
    if status:
        query = query.where(RecurringProfile.status == status)
    if before:
        query = query.where(RecurringProfile.id < before)
    rows = db.session.execute(query.order_by(RecurringProfile.id.desc()).limit(size + 1)).scalars().all()
    next_before = rows[size - 1].id if len(rows) > size else None
    rows = rows[:size]
    charges: dict[int, list[RecurringCharge]] = {}
    if rows:
        for c in db.session.execute(select(RecurringCharge).where(
                RecurringCharge.profile_id.in_([p.id for p in rows])).order_by(RecurringCharge.id.desc())).scalars():
            charges.setdefault(c.profile_id, []).append(c)
    return render_template("admin/recurring/list.html", profiles=rows, charges=charges, status=status,
                           statuses=STATUSES, before=before, next_before=next_before, form=_Button())


@bp.route("/recurring/<int:profile_id>/<action>", methods=["POST"])
@admin_required
def recurring_action(profile_id: int, action: str):
    """``resume`` a suspended profile or ``cancel`` one."""
    if action not in ("resume", "cancel") or not _Button().validate_on_submit():
        abort(400)
    try:
        if action == "resume":
            recurring.resume_profile(profile_id, actor=current_user.email)
            flash(_("Automatic payment #%(id)s resumed.", id=profile_id), "success")
        else:
            recurring.cancel_profile(profile_id, actor=current_user.email)
            flash(_("Automatic payment #%(id)s cancelled.", id=profile_id), "success")
    except recurring.RecurringError as exc:
        flash(str(exc), "error")
    return redirect(url_for(".recurring"))
