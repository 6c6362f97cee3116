"""Template helpers shared by every page: money, percentages and dates in the reader's language and time
zone, the words for statuses and event kinds, and the navigation."""
from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.numbers import format_currency, format_decimal
from flask import Flask, current_app, has_request_context, request
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from .money import format_amount
from .states import RefundStatus

STATUS_LABELS = {
    "new": _l("New"),
    # what the customer waits for; "in pay" is the billing's jargon and never shown
    "inpay": _l("Awaiting payment"),
    "paid": _l("Paid"),
    "cancelled": _l("Cancelled"),
    "fraud": _l("Fraud"),
    "pending_return": _l("Refund pending"),
    "returned": _l("Refunded"),
}
REFUND_LABELS: dict[str, Any] = {RefundStatus.REQUESTED: _l("Refund requested"), RefundStatus.FINISHED: _l("Refund done"),
                 RefundStatus.FAILED: _l("Refund failed")}
# a badge's colour class for each refund state (the payment statuses have their own)
REFUND_BADGES: dict[str, str] = {RefundStatus.REQUESTED: "inpay", RefundStatus.FINISHED: "paid", RefundStatus.FAILED: "fraud"}
EVENT_LABELS = {
    "created": _l("Created"),
    "redirect": _l("Sent to the payment system"),
    "notification": _l("Notification from the payment system"),
    "return": _l("Customer came back"),
    "poll": _l("Status check at the payment system"),
    "client": _l("Customer's action"),
    "manual": _l("Administrator's action"),
    "refund": _l("Refund"),
    "refund_reversal": _l("Refund failed"),
    "cleanup": _l("Clean-up"),
    "payment": _l("Payment"),
    "adjustment": _l("Balance correction"),
}
LEDGER_LABELS = {"payment": _l("Payment"), "refund": _l("Refund"), "refund_reversal": _l("Refund failed"),
                 "adjustment": _l("Balance correction")}

# (endpoint, label): an entry shows only once a blueprint provides the endpoint.
ADMIN_NAV = [
    ("admin.paymethods", _l("Payment methods")),
    ("admin.payments", _l("Payments")),
    ("admin.accounts", _l("Accounts")),
    ("admin.recurring", _l("Auto-payments")),
    ("admin.api_tokens_page", _l("API tokens")),
    ("admin.webhooks_page", _l("Webhooks")),
]
CLIENT_NAV = [
    ("checkout.new_payment", _l("Add funds")),
    ("checkout.payments", _l("Payments")),
    ("recurring.profiles", _l("Auto-payments")),
]

CURRENCY_SIGNS = {"RUB": "₽", "USD": "$", "EUR": "€"}
NBSP = "\u00a0"


def language() -> str:
    """The page's language code (``en`` outside a request)."""
    return str(get_locale() or "en") if has_request_context() else "en"


def money(amount: Decimal | None, currency: str, lang: str | None = None) -> str:
    """An amount in its currency as the reader writes it: ``1 100,00 ₽`` in Russian (CLDR's rule, no-break
    spaces), ``1 100.00 RUB`` in English; in ``lang`` when given (outside a request, e.g. an e-mail), else
    in the page's language."""
    if amount is None:
        return "—"
    if (lang or language()) == "ru":
        return format_currency(Decimal(format_amount(amount, currency)), currency, locale="ru")
    text = format_amount(amount, currency)
    whole, _, frac = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    whole = whole.lstrip("-")
    groups: list[str] = []
    while whole:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    return f"{sign}{' '.join(groups) or '0'}{'.' + frac if frac else ''} {currency}"


def percent(value: Decimal | None) -> str:
    """A percentage as the reader writes it: ``2,5 %`` in Russian, ``2.5%`` in English."""
    value = (Decimal(value or 0)).normalize()
    text = format(value, "f")
    if language() == "ru":
        return f"{format_decimal(Decimal(text), locale='ru', format='#,##0.####')}{NBSP}%"
    return f"{text}%"


def user_timezone() -> tzinfo:
    """The reader's time zone: their own setting, else ``DEFAULT_TIMEZONE`` of the configuration."""
    name = None
    if has_request_context() and current_user and getattr(current_user, "is_authenticated", False):
        name = getattr(current_user, "timezone", None)
    for candidate in (name, current_app.config.get("DEFAULT_TIMEZONE"), "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return timezone.utc


def local_time(value: datetime) -> datetime:
    """``value`` (UTC) in the reader's time zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(user_timezone())


def datetime_text(value: datetime | None, seconds: bool = False, zone: bool = False) -> str:
    """A date and time in the reader's zone and language: ``02.12.2026 07:24`` / ``2026-12-02 07:24``;
    ``zone`` adds the zone's abbreviation (``MSK``) where the page shows one time on its own."""
    if value is None:
        return "—"
    local = local_time(value)
    clock = "%H:%M:%S" if seconds else "%H:%M"
    text = local.strftime(("%d.%m.%Y " if language() == "ru" else "%Y-%m-%d ") + clock)
    if zone:
        text += " " + (local.tzname() or "")
    return text


def status_label(status: str) -> str:
    """The translated name of a payment status."""
    return str(STATUS_LABELS.get(status, status))


def refund_label(status: str) -> str:
    """The translated name of a refund's state."""
    return str(REFUND_LABELS.get(status, status))


def event_label(kind: str) -> str:
    """The translated name of a payment event's kind."""
    return str(EVENT_LABELS.get(kind, kind))


def ledger_label(kind: str) -> str:
    """The translated name of a ledger entry's kind."""
    return str(LEDGER_LABELS.get(kind, kind))


def ledger_note(entry) -> str:
    """A ledger entry's note in the reader's language: the service writes refund notes in English
    (``refund 1 of payment 5``) for logs; a correction's note is the admin's own reason, shown as typed."""
    from flask_babel import gettext as _

    if entry.kind in ("refund", "refund_reversal") and entry.refund_id and entry.payment_id:
        return _("Refund %(refund)s of payment #%(payment)s", refund=entry.refund_id, payment=entry.payment_id)
    if entry.kind == "payment" and entry.payment_id:
        return _("Payment #%(id)s", id=entry.payment_id)
    return entry.note or ""


def init_app(app: Flask) -> None:
    """Register the filters and globals."""
    app.jinja_env.filters["money"] = money
    app.jinja_env.filters["percent"] = percent
    app.jinja_env.filters["dt"] = datetime_text
    app.jinja_env.globals.update(status_label=status_label, refund_label=refund_label, event_label=event_label,
                                 ledger_label=ledger_label, ledger_note=ledger_note,
                                 refund_badge=lambda s: REFUND_BADGES.get(s, "new"))

    def _nav(entries):
        return lambda: [(e, label) for e, label in entries if e in current_app.view_functions]

    def _current(endpoint: str) -> bool:
        # the menu entry of this page: the same blueprint and the first word of the view's name
        here = request.endpoint or ""
        return here == endpoint or (here.split(".")[0] == endpoint.split(".")[0]
                                    and here.split(".")[-1].rstrip("s").split("_")[0]
                                    == endpoint.split(".")[-1].rstrip("s").split("_")[0])

    app.jinja_env.globals["admin_nav"] = _nav(ADMIN_NAV)
    app.jinja_env.globals["client_nav"] = _nav(CLIENT_NAV)
    app.jinja_env.globals["nav_current"] = _current
