"""The admin's start page: money received, payments per day by status and by method, the paid share per
method, what needs attention (each figure a link to the matching list) and the loaded payment modules."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app, render_template
from sqlalchemy import func, select

from ..auth import admin_required
from ..db import db
from ..models import Account, PaymentMethod
from ..plugins import get_registry
from ..templating import language, user_timezone
from . import bp, charts, overview


@bp.route("/")
@admin_required
def index():
    """Overview for administrators."""
    zone = user_timezone()
    lang = language()
    data = overview.build(zone, lang, int(current_app.config.get("STUCK_INPAY_HOURS") or 2))
    day_format = (lambda d: d.strftime("%d.%m")) if lang == "ru" else (lambda d: d.strftime("%m-%d"))
    from ..templating import status_label

    status_series = [charts.Series(status_label(s), charts.PALETTE[i], data.by_status[s])
                     for i, s in enumerate(overview.CHART_STATUSES)]
    method_series = [charts.Series(data.method_names.get(m, f"#{m}"), charts.PALETTE[(i + 3) % len(charts.PALETTE)], v)
                     for i, (m, v) in enumerate(sorted(data.by_method.items()))]
    from flask_babel import gettext as _

    status_chart = charts.stacked_bars(data.days, status_series, _("Payments per day by status"), day_format)
    method_chart = charts.stacked_bars(data.days, method_series, _("Paid payments per day by payment method"),
                                       day_format)
    counts = {
        "accounts": db.session.scalar(select(func.count()).select_from(Account)),
        "paymethods": db.session.scalar(select(func.count()).select_from(PaymentMethod)),
    }
    stuck_hours = int(current_app.config.get("STUCK_INPAY_HOURS") or 2)
    from ..webhooks import disabled_endpoints

    return render_template("admin/index.html", data=data, counts=counts, registry=get_registry(),
                           status_series=status_series, method_series=method_series, status_chart=status_chart,
                           method_chart=method_chart, day_format=day_format, stuck_hours=stuck_hours,
                           from_30=data.days[0].isoformat(), timedelta=timedelta,
                           disabled_endpoints=disabled_endpoints())
