"""Robokassa protocol: Fiscal receipt (§9).

Part of :mod:`pmrobokassa.protocol` (a pure layer: no Flask, no database, no network).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote


from .amounts import _require_decimal, _two_places
from .compact_json import _json_compact


SNO_CHOICES: tuple[str, ...] = ("osn", "usn_income", "usn_income_outcome", "esn", "patent")
# vat22 / vat122: the general VAT rate since 1 January 2026. vat20 / vat120 stay valid for receipts of
# operations made before then (a refund of an old payment repeats the rate of its original receipt).
TAX_CHOICES: tuple[str, ...] = (
    "none", "vat0", "vat10", "vat110", "vat22", "vat122", "vat20", "vat120", "vat5", "vat7", "vat105", "vat107",
)
PAYMENT_METHOD_CHOICES: tuple[str, ...] = (
    "full_prepayment", "prepayment", "advance", "full_payment", "partial_payment", "credit",
    "credit_payment",
)
PAYMENT_OBJECT_CHOICES: tuple[str, ...] = (
    "commodity", "excise", "job", "service", "gambling_bet", "gambling_prize", "lottery",
    "lottery_prize", "intellectual_activity", "payment", "agent_commission", "composite", "resort_fee",
    "another", "property_right", "non-operating_gain", "insurance_premium", "sales_tax",
)
RECEIPT_NAME_MAX = 128
_RECEIPT_SUM_LIMIT = Decimal(10) ** 8  # at most 8 integer digits (§9)


@dataclass(frozen=True)
class ReceiptItem:
    """One line of a 54-FZ receipt. ``sum`` is the line total after discounts (not the unit price)."""

    name: str
    sum: Decimal
    tax: str
    quantity: int | Decimal = 1
    payment_method: str | None = None
    payment_object: str | None = None


def _check_choice(value: str | None, choices: tuple[str, ...], what: str, *, required: bool) -> None:
    if value is None and not required:
        return
    if value not in choices:
        raise ValueError(f"invalid {what} {value!r}; expected one of: {', '.join(choices)}")


def _item_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("receipt item name must be a non-empty string")
    return name[:RECEIPT_NAME_MAX]  # Robokassa rejects longer names; truncating keeps the receipt valid


def _item_quantity(quantity: object) -> Decimal:
    amount = _require_decimal(quantity, "receipt item quantity")
    if amount <= 0:
        raise ValueError(f"receipt item quantity must be positive, got {amount}")
    return amount


def _item_sum(value: object) -> Decimal:
    amount = _two_places(value, "receipt item sum")
    if amount >= _RECEIPT_SUM_LIMIT:
        raise ValueError(f"receipt item sum {amount} has more than 8 integer digits")
    return amount


def _as_receipt_item(item: ReceiptItem | Mapping[str, Any]) -> ReceiptItem:
    if isinstance(item, ReceiptItem):
        return item
    if isinstance(item, Mapping):
        try:
            return ReceiptItem(**item)
        except TypeError as exc:
            raise ValueError(f"bad receipt item {dict(item)!r}: {exc}") from None
    raise TypeError(f"receipt items must be ReceiptItem or mappings, not {type(item).__name__}")


def _receipt_item_dict(item: ReceiptItem) -> dict[str, Any]:
    _check_choice(item.tax, TAX_CHOICES, "tax", required=True)
    _check_choice(item.payment_method, PAYMENT_METHOD_CHOICES, "payment_method", required=False)
    _check_choice(item.payment_object, PAYMENT_OBJECT_CHOICES, "payment_object", required=False)
    # Key order follows the documented example (§2.6 receipt vector), so equal input gives equal text.
    data: dict[str, Any] = {
        "name": _item_name(item.name),
        # normalize() drops trailing zeros: 100.00 -> 100, 250.50 -> 250.5, as in the spec's vectors.
        "quantity": _item_quantity(item.quantity).normalize(),
        "sum": _item_sum(item.sum).normalize(),
    }
    if item.payment_method is not None:
        data["payment_method"] = item.payment_method
    if item.payment_object is not None:
        data["payment_object"] = item.payment_object
    data["tax"] = item.tax
    return data


def build_receipt(*, items: Iterable[ReceiptItem | Mapping[str, Any]], sno: str | None = None) -> str:
    """Build the ``Receipt`` JSON (compact, UTF-8 kept) from receipt lines (§9).

    Items may be :class:`ReceiptItem` or mappings with the same keys. Names are cut to 128 characters;
    sums must be non-negative with at most two decimals and are written as JSON numbers without
    trailing zeros. Invalid tax/sno/payment_method/payment_object values raise ``ValueError`` naming
    the allowed choices. Pass the result through :func:`encode_receipt` before sending and signing.
    """
    _check_choice(sno, SNO_CHOICES, "sno", required=False)
    lines = [_receipt_item_dict(_as_receipt_item(item)) for item in items]
    if not lines:
        raise ValueError("a receipt needs at least one item")
    receipt: dict[str, Any] = {}
    if sno is not None:
        receipt["sno"] = sno
    receipt["items"] = lines
    return _json_compact(receipt)


def receipt_total(items: Iterable[ReceiptItem | Mapping[str, Any]]) -> Decimal:
    """Sum of the receipt lines' ``sum`` values, to compare with OutSum before sending (§9)."""
    return sum((_item_sum(_as_receipt_item(item).sum) for item in items), Decimal("0.00"))


def encode_receipt(json_text: str) -> str:
    """URL-encode receipt JSON once, as Robokassa wants it in the ``Receipt`` field and in the signature.

    We percent-encode everything except ``A-Z a-z 0-9 _ . - ~`` (spaces become ``%20``, not ``+``):
    ``%20`` means a space to every decoder, while ``+`` is only a space to form decoders. Send this text
    as the form value; a GET link encodes it a second time (``%257B…``) when the query is built.
    """
    return quote(json_text, safe="")
