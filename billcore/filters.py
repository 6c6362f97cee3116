"""One parser for the filters of every list page (admin and client, pages and the API alike).

Each function reads one query-string value and returns the typed value, None for a blank one, or raises
:class:`BadFilter` (a ``ValueError``) for a value the database could not take: an amount beyond a
``NUMERIC(18, 2)`` column, a day whose next day does not exist, text with a NUL or other control
characters (PostgreSQL refuses NUL in text). A view turns BadFilter into a 400, never a 500.
"""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from .args import row_id

__all__ = ["BadFilter", "MAX_TEXT", "amount", "day", "has_control_characters", "ident", "text"]

# Money columns are NUMERIC(18, 2): at most 16 digits before the point.
MAX_AMOUNT = Decimal("9999999999999999.99")
MAX_AMOUNT_TEXT = 40
# A day whose next day exists (a "to" day is inclusive: the query uses the next day's start) and that
# every database's timestamp type can hold.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)
MAX_TEXT = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class BadFilter(ValueError):
    """A filter value that cannot be used (the list answers 400)."""


def has_control_characters(value: str) -> bool:
    """True when ``value`` holds a C0/C1 control character or a Unicode line/paragraph separator."""
    return bool(_CONTROL.search(value))


def amount(value: str | None) -> Decimal | None:
    """An amount (``12.50``, ``12,50``) within a money column's range, or None when blank."""
    value = (value or "").strip().replace(",", ".")
    if not value:
        return None
    if len(value) > MAX_AMOUNT_TEXT or not value.isascii():
        raise BadFilter("amount")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise BadFilter("amount") from None
    if not number.is_finite() or abs(number) > MAX_AMOUNT:
        raise BadFilter("amount")
    return number


def day(value: str | None) -> date | None:
    """An ISO day (``2026-12-02``) between 1900-01-01 and 9998-12-31, or None when blank."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        parsed = date.fromisoformat(value[:10]) if len(value) == 10 else None
    except ValueError:
        parsed = None
    if parsed is None or not FIRST_DAY <= parsed <= LAST_DAY:
        raise BadFilter("day")
    return parsed


def ident(value: str | None) -> int | None:
    """A row id (``12`` or ``#12``), or None when blank."""
    value = (value or "").strip().lstrip("#")
    if not value:
        return None
    try:
        return row_id(value)
    except ValueError:
        raise BadFilter("id") from None


def text(value: str | None, max_length: int = MAX_TEXT) -> str:
    """Search text, stripped and cut to ``max_length``; control characters (NUL above all) are refused."""
    value = (value or "").strip()
    if has_control_characters(value):
        raise BadFilter("text")
    return value[:max_length]
