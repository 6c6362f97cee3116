"""Robokassa protocol: Amounts.

Part of :mod:`pmrobokassa.protocol` (a pure layer: no Flask, no database, no network).
"""
from __future__ import annotations

import re
from decimal import Decimal


from .errors import MalformedField


_AMOUNT_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_AMOUNT_MAX_LEN = 20
_CENT = Decimal("0.01")


def parse_amount(text: object, field_name: str = "amount") -> Decimal:
    """Parse an amount exactly as Robokassa writes it (``"100"``, ``"100.00"``, ``"100.000000"``).

    Strict on purpose: only ASCII digits with an optional dot and decimals, at most 20 characters.
    Commas, signs, exponents, ``NaN``/``Infinity``, spaces and empty strings raise
    :class:`MalformedField` naming ``field_name``, because a lenient parser here is how a forged or
    garbled notification turns into a wrong credit.
    """
    if not isinstance(text, str):
        raise MalformedField(f"{field_name}: expected a decimal string, got {type(text).__name__}")
    if not text:
        raise MalformedField(f"{field_name}: empty amount")
    if len(text) > _AMOUNT_MAX_LEN:
        raise MalformedField(f"{field_name}: amount longer than {_AMOUNT_MAX_LEN} characters")
    if not _AMOUNT_RE.fullmatch(text):
        raise MalformedField(
            f"{field_name}: {text[:_AMOUNT_MAX_LEN]!r} is not a plain decimal amount (digits, optional dot)"
        )
    return Decimal(text)


def _require_decimal(value: object, what: str) -> Decimal:
    # Money must never travel as float: 0.1 + 0.2 style errors are exactly what billing cannot afford.
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"{what} must be a Decimal (or int), not {type(value).__name__}")
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError(f"{what} must be a finite number, got {amount}")
    return amount


def _two_places(value: object, what: str) -> Decimal:
    amount = _require_decimal(value, what)
    if amount < 0:
        raise ValueError(f"{what} must not be negative, got {amount}")
    rounded = amount.quantize(_CENT)
    if rounded != amount:
        # Rounding money silently would make the signed/sent amount differ from the one billed.
        raise ValueError(f"{what} has more than two decimal places: {amount}")
    return rounded


def format_out_sum(amount: Decimal) -> str:
    """Format an amount for ``OutSum``: two decimals with a dot, e.g. ``Decimal("100") -> "100.00"``.

    Raises ``TypeError`` for floats and ``ValueError`` for negative or non-finite amounts, or amounts
    that are not a whole number of kopecks.
    """
    return format(_two_places(amount, "OutSum"), "f")
