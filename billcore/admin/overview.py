"""The figures of the admin's overview: money received, payments per day by status and by method, the
share of payments paid per method, and what needs an admin. Days are the reader's (their time zone).

Only the last ``DAYS`` days are read, as (created_at, status, method) rows streamed in batches: the
counting is done in Python so that days follow the reader's time zone on every database.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal

from sqlalchemy import func, select

from ..db import db
from ..models import Payment, PaymentMethod, RecurringProfile, Refund, utcnow
from ..states import ProfileStatus, RefundStatus, Status

DAYS = 30
RECEIVED = (Status.PAID, Status.PENDING_RETURN, Status.RETURNED)  # money came in (a refund later does not undo that)
CHART_STATUSES = (Status.PAID, Status.CANCELLED, Status.FRAUD)


@dataclass
class MethodShare:
    """Of the payments a method started in the period, how many were paid."""

    method_id: int
    name: str
    started: int
    paid: int

    @property
    def percent(self) -> int:
        """The paid share, whole percent."""
        return round(100 * self.paid / self.started) if self.started else 0


@dataclass
class Overview:
    """Everything the overview page shows."""

    days: list[date]
    # window ("today", "7", "30") -> [(currency, amount, count)]
    money_in: dict[str, list[tuple[str, Decimal, int]]]
    window_start: dict[str, date]
    by_status: dict[str, list[int]]
    by_method: dict[int, list[int]]
    method_names: dict[int, str]
    shares: list[MethodShare]
    attention: dict[str, int] = field(default_factory=dict)
    stuck_before: datetime | None = None


def day_start(day: date, zone: tzinfo) -> datetime:
    """The first instant of ``day`` in ``zone``."""
    return datetime.combine(day, time.min, tzinfo=zone)


def build(zone: tzinfo, language: str, stuck_hours: int, now: datetime | None = None) -> Overview:
    """The overview's figures for a reader in ``zone`` (method names in ``language``)."""
    now = now or utcnow()
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=DAYS - 1 - i) for i in range(DAYS)]
    index = {d: i for i, d in enumerate(days)}
    since = day_start(days[0], zone)

    starts = {"today": today, "7": today - timedelta(days=6), "30": days[0]}
    money_in = {}
    for key, start in starts.items():
        rows = db.session.execute(
            select(Payment.currency, func.sum(Payment.amount), func.count())
            .where(Payment.status.in_(RECEIVED), Payment.paid_at >= day_start(start, zone))
            .group_by(Payment.currency).order_by(Payment.currency)).all()
        money_in[key] = [(c, Decimal(a or 0), n) for c, a, n in rows]

    by_status = {s: [0] * DAYS for s in CHART_STATUSES}
    by_method: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    paid: dict[int, int] = {}
    rows = db.session.execute(
        select(Payment.created_at, Payment.status, Payment.paymethod_id).where(Payment.created_at >= since)
        .execution_options(yield_per=5000))
    for created_at, status, method_id in rows:
        i = index.get(created_at.astimezone(zone).date())
        if i is None:
            continue
        group = Status.PAID.value if status in RECEIVED else status
        if group in by_status:
            by_status[Status(group)][i] += 1
        started[method_id] = started.get(method_id, 0) + 1
        if group == Status.PAID:
            paid[method_id] = paid.get(method_id, 0) + 1
            by_method.setdefault(method_id, [0] * DAYS)[i] += 1

    methods = {m.id: m.display_name(language) for m in db.session.execute(
        select(PaymentMethod).where(PaymentMethod.id.in_(set(started) | set(by_method)))).scalars()}
    shares = sorted((MethodShare(m, methods.get(m, f"#{m}"), n, paid.get(m, 0)) for m, n in started.items()),
                    key=lambda s: (-s.started, s.name))

    stuck_before = now - timedelta(hours=stuck_hours)
    count = lambda q: db.session.scalar(select(func.count()).select_from(q.subquery()))  # noqa: E731
    attention = {
        "fraud": count(select(Payment.id).where(Payment.status == Status.FRAUD)),
        "refunds": count(select(Refund.id).where(Refund.status == RefundStatus.REQUESTED)),
        "suspended": count(select(RecurringProfile.id).where(RecurringProfile.status == ProfileStatus.SUSPENDED)),
        "stuck": count(select(Payment.id).where(Payment.status == Status.INPAY, Payment.updated_at < stuck_before)),
    }
    return Overview(days=days, money_in=money_in, window_start=starts, by_status=by_status, by_method=by_method,
                    method_names=methods, shares=shares, attention=attention, stuck_before=stuck_before)
