"""Dates of auto-payments: months, the fixed rule's charge day, periods, retries and checks."""
from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone

from flask import current_app

from .base import DEFAULT_CHECK_MINUTES, DEFAULT_MAX_FAILURES, DEFAULT_RETRY_HOURS


def aware(moment: datetime) -> datetime:
    """``moment`` with a time zone: a naive one is taken as UTC (SQLite gives naive values back)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def month_start(moment: datetime) -> datetime:
    """Midnight UTC of the first day of ``moment``'s month."""
    moment = aware(moment).astimezone(timezone.utc)
    return datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)


def next_month_start(moment: datetime) -> datetime:
    """Midnight UTC of the first day of the month after ``moment``'s."""
    start = month_start(moment)
    return datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=timezone.utc)


def charge_date(charge_day: int, year: int, month: int) -> datetime:
    """Midnight UTC of ``charge_day`` in that month, clamped to its last day (31 -> 30 Nov, 28/29 Feb)."""
    day = min(max(int(charge_day), 1), calendar.monthrange(year, month)[1])
    return datetime(year, month, day, tzinfo=timezone.utc)


def next_fixed_due(charge_day: int, after: datetime) -> datetime:
    """The fixed rule's charge date in the month after ``after``'s month."""
    following = next_month_start(after)
    return charge_date(charge_day, following.year, following.month)


def fixed_period(due: datetime) -> str:
    """The period key of a fixed-rule charge: its month, ``2026-12``."""
    due = aware(due).astimezone(timezone.utc)
    return f"{due.year:04d}-{due.month:02d}"


def retry_delay(failures: int) -> timedelta:
    """How long to wait after the ``failures``-th consecutive failure (the last step repeats)."""
    hours = list(current_app.config.get("RECURRING_RETRY_HOURS") or DEFAULT_RETRY_HOURS)
    return timedelta(hours=float(hours[min(max(failures, 1), len(hours)) - 1]))


def max_failures() -> int:
    """Consecutive failed charges after which a profile is suspended (``RECURRING_MAX_FAILURES``)."""
    return max(1, int(current_app.config.get("RECURRING_MAX_FAILURES") or DEFAULT_MAX_FAILURES))


def check_interval() -> timedelta:
    """How often a threshold rule's balance (and an accepted charge's outcome) is looked at."""
    return timedelta(minutes=float(current_app.config.get("RECURRING_CHECK_MINUTES") or DEFAULT_CHECK_MINUTES))
