"""Template helpers shared by every page: money formatting, status labels and the navigation."""
from __future__ import annotations

from decimal import Decimal

from flask import Flask, current_app
from flask_babel import lazy_gettext as _l

from .money import format_amount

STATUS_LABELS = {
    "new": _l("New"),
    "inpay": _l("In pay"),
    "paid": _l("Paid"),
    "cancelled": _l("Cancelled"),
    "fraud": _l("Fraud"),
    "pending_return": _l("Pending return"),
    "returned": _l("Returned"),
}

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


def money(amount: Decimal | None, currency: str) -> str:
    """``1 234.50 RUB``-style text of an amount in its currency."""
    if amount is None:
        return "—"
    text = format_amount(amount, currency)
    whole, _, frac = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    whole = whole.lstrip("-")
    groups = []
    while whole:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    return f"{sign}{' '.join(groups) or '0'}{'.' + frac if frac else ''} {currency}"


def status_label(status: str) -> str:
    """The translated name of a payment status."""
    return str(STATUS_LABELS.get(status, status))


def init_app(app: Flask) -> None:
    """Register the filters and globals."""
    app.jinja_env.filters["money"] = money
    app.jinja_env.globals["status_label"] = status_label

    def _nav(entries):
        return lambda: [(e, label) for e, label in entries if e in current_app.view_functions]

    app.jinja_env.globals["admin_nav"] = _nav(ADMIN_NAV)
    app.jinja_env.globals["client_nav"] = _nav(CLIENT_NAV)
