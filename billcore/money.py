"""Currencies, rounding to their minor unit and the commission arithmetic. Money is always Decimal."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from flask_babel import gettext as _

# ISO 4217 codes billcore accepts, with their minor unit (digits after the decimal point).
CURRENCIES: dict[str, int] = {"RUB": 2, "USD": 2, "EUR": 2, "KZT": 2, "BYN": 2, "UAH": 2}

# The largest amount accepted anywhere. Numeric(18, 2) holds 16 integer digits; staying far below leaves
# room for a commission on top and keeps every value exact where SQLite stores it as a double.
MAX_AMOUNT = Decimal("999999999999.99")


class MoneyError(ValueError):
    """An amount or a currency that billcore cannot accept."""


def check_currency(code: str) -> str:
    """Return ``code`` upper-cased if billcore supports it, else raise :class:`MoneyError`."""
    code = (code or "").strip().upper()
    if code not in CURRENCIES:
        raise MoneyError(_("Unsupported currency %(code)s.", code=code))
    return code


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of ``currency`` as a Decimal exponent, e.g. ``Decimal('0.01')``."""
    return Decimal(1).scaleb(-CURRENCIES[check_currency(currency)])


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round ``amount`` to the currency's minor unit, halves away from zero (the commercial rule)."""
    return Decimal(amount).quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


def parse_amount(text: str | Decimal, currency: str) -> Decimal:
    """Parse a user- or gateway-given amount exactly; more precision than the currency has is refused."""
    if isinstance(text, float):
        raise MoneyError("amounts must not be floats")
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise MoneyError(_("Not an amount: %(text)s.", text=str(text)[:40])) from None
    if not value.is_finite():
        raise MoneyError(_("Not an amount: %(text)s.", text=str(text)[:40]))
    # checked before quantizing: quantize raises InvalidOperation past 28 significant digits
    if abs(value) > MAX_AMOUNT:
        raise MoneyError(_("%(text)s is too large.", text=str(text)[:40]))
    if value != quantize(value, currency):
        raise MoneyError(_("%(text)s has more decimals than %(currency)s allows.", text=str(text)[:40],
                           currency=currency))
    return quantize(value, currency)


def commission(amount: Decimal, currency: str, fixed: Decimal, percent: Decimal) -> Decimal:
    """The commission charged on top of ``amount``: ``fixed + amount * percent / 100``, rounded once
    to the minor unit (half up) so that the client never pays a fraction of a kopeck."""
    return quantize(Decimal(fixed) + Decimal(amount) * Decimal(percent) / Decimal(100), currency)


def format_amount(amount: Decimal, currency: str) -> str:
    """Amount with exactly the currency's decimals, e.g. ``'100.00'``; used in JSON and gateway forms."""
    return f"{quantize(amount, currency):.{CURRENCIES[currency]}f}"
