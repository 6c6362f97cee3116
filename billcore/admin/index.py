"""The admin's start page: counts of payments by status and the loaded payment modules."""
from __future__ import annotations

from flask import render_template
from sqlalchemy import func, select

from ..auth import admin_required
from ..db import db
from ..models import Account, Payment, PaymentMethod
from ..plugins import get_registry
from . import bp


@bp.route("/")
@admin_required
def index():
    """Overview for administrators."""
    by_status = dict(db.session.execute(select(Payment.status, func.count()).group_by(Payment.status)).all())
    counts = {
        "accounts": db.session.scalar(select(func.count()).select_from(Account)),
        "paymethods": db.session.scalar(select(func.count()).select_from(PaymentMethod)),
    }
    from ..webhooks import disabled_endpoints

    return render_template("admin/index.html", by_status=by_status, counts=counts, registry=get_registry(),
                           disabled_endpoints=disabled_endpoints())
