"""Robokassa protocol: Refund API (§8).

Part of :mod:`pmrobokassa.protocol` (a pure layer: no Flask, no database, no network).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import jwt

from .errors import InvalidToken, MalformedField, UnsupportedAlgorithm
from .amounts import _CENT, _require_decimal, _two_places, parse_amount
from .compact_json import _json_compact, _loads_object
from .receipt import PAYMENT_METHOD_CHOICES, PAYMENT_OBJECT_CHOICES, TAX_CHOICES, _check_choice, _item_name, _item_quantity


REFUND_JWT_ALGORITHMS: tuple[str, ...] = ("HS256", "HS384", "HS512")
REFUND_LABELS: tuple[str, ...] = ("finished", "processing", "canceled")


@dataclass(frozen=True)
class RefundItem:
    """A receipt line of a refund request (``InvoiceItems``; ``cost`` is sent as ``Cost``)."""

    name: str
    cost: Decimal
    tax: str
    quantity: int | Decimal = 1
    payment_method: str | None = None
    payment_object: str | None = None


def _refund_item_dict(item: RefundItem) -> dict[str, Any]:
    if not isinstance(item, RefundItem):
        raise TypeError(f"invoice_items must be RefundItem objects, not {type(item).__name__}")
    _check_choice(item.tax, TAX_CHOICES, "tax", required=True)
    _check_choice(item.payment_method, PAYMENT_METHOD_CHOICES, "payment_method", required=False)
    _check_choice(item.payment_object, PAYMENT_OBJECT_CHOICES, "payment_object", required=False)
    data: dict[str, Any] = {
        "Name": _item_name(item.name),
        "Quantity": _item_quantity(item.quantity).normalize(),
        "Cost": _two_places(item.cost, "refund item cost"),
        "Tax": item.tax,
    }
    if item.payment_method is not None:
        data["PaymentMethod"] = item.payment_method
    if item.payment_object is not None:
        data["PaymentObject"] = item.payment_object
    return data


def _check_jwt_algorithm(algorithm: str) -> str:
    if algorithm not in REFUND_JWT_ALGORITHMS:
        raise UnsupportedAlgorithm(
            f"refund JWT algorithm must be one of {', '.join(REFUND_JWT_ALGORITHMS)}, got {algorithm!r}"
        )
    return algorithm


def make_refund_jwt(
    password3: str,
    *,
    op_key: str,
    refund_sum: Decimal | None = None,
    invoice_items: Iterable[RefundItem] | None = None,
    algorithm: str = "HS256",
) -> str:
    """Build the JWT body of ``POST …/RefundService/Refund/Create`` (§8), signed with Password #3.

    The payload is compact JSON ``{"OpKey":…[,"RefundSum":…][,"InvoiceItems":[…]]}``; ``refund_sum``
    (only for a partial refund) is written as a JSON number exactly as given (``Decimal("1.0")`` ->
    ``1.0``) and must be positive with at most two decimals.
    """
    _check_jwt_algorithm(algorithm)
    if not isinstance(op_key, str) or not op_key:
        raise ValueError("OpKey is required for a refund")
    payload: dict[str, Any] = {"OpKey": op_key}
    if refund_sum is not None:
        amount = _require_decimal(refund_sum, "RefundSum")
        if amount <= 0 or amount.quantize(_CENT) != amount:
            raise ValueError(f"RefundSum must be positive with at most two decimals, got {amount}")
        payload["RefundSum"] = amount
    if invoice_items is not None:
        payload["InvoiceItems"] = [_refund_item_dict(item) for item in invoice_items]
    # PyJWS signs the bytes we give it, so the payload is exactly our compact, float-free JSON;
    # its default header is {"alg":…,"typ":"JWT"} with sorted keys.
    return jwt.PyJWS().encode(_json_compact(payload).encode("utf-8"), password3, algorithm=algorithm)


def verify_refund_jwt(token: str | bytes, password3: str) -> dict[str, Any]:
    """Verify a refund JWT with Password #3 and return its payload (numbers with decimals as Decimal).

    Only HS256/HS384/HS512 are accepted (``none``, RS*, MD5… are refused). Raises
    :class:`InvalidToken` for a bad signature, algorithm or structure, and
    :class:`MalformedMessage` when the payload is not a JSON object.
    """
    if isinstance(token, bytes):
        token = token.decode("ascii", "replace")
    if not isinstance(token, str):
        raise InvalidToken(f"expected a JWT string, got {type(token).__name__}")
    try:
        decoded = jwt.PyJWS().decode_complete(
            token.strip(), password3, algorithms=list(REFUND_JWT_ALGORITHMS)
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"refund JWT rejected: {exc}") from None
    return _loads_object(decoded["payload"], "refund JWT payload")


@dataclass(frozen=True)
class RefundCreateAnswer:
    """Answer of ``Refund/Create``: ``request_id`` is set when ``success`` is true."""

    success: bool
    message: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class RefundState:
    """Answer of ``Refund/GetState``: ``label`` is finished, processing or canceled; on error only
    ``message`` is set."""

    request_id: str | None
    amount: Decimal | None
    label: str | None
    message: str | None = None


def _optional_str(data: Mapping[str, Any], key: str, what: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedField(f"{what}: {key} must be a string or null")
    return value


def parse_refund_create_answer(json_text: str | bytes) -> RefundCreateAnswer:
    """Parse ``{"success":true,"message":null,"requestId":"<guid>"}`` (or the failure form) (§8)."""
    data = _loads_object(json_text, "Refund/Create answer")
    success = data.get("success")
    if not isinstance(success, bool):
        raise MalformedField("Refund/Create answer: 'success' must be true or false")
    return RefundCreateAnswer(
        success=success,
        message=_optional_str(data, "message", "Refund/Create answer"),
        request_id=_optional_str(data, "requestId", "Refund/Create answer"),
    )


def _json_amount(value: object, what: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        if not value.is_finite() or value < 0:
            raise MalformedField(f"{what}: bad amount {value}")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise MalformedField(f"{what}: negative amount {value}")
        return Decimal(value)
    if isinstance(value, str):
        return parse_amount(value, what)
    raise MalformedField(f"{what}: amount must be a number")


def parse_refund_state_answer(json_text: str | bytes) -> RefundState:
    """Parse ``{"requestId":…,"amount":1.000000,"label":"finished"}`` or ``{"message":…}`` (§8)."""
    data = _loads_object(json_text, "Refund/GetState answer")
    return RefundState(
        request_id=_optional_str(data, "requestId", "Refund/GetState answer"),
        amount=_json_amount(data.get("amount"), "Refund/GetState amount"),
        label=_optional_str(data, "label", "Refund/GetState answer"),
        message=_optional_str(data, "message", "Refund/GetState answer"),
    )


def build_refund_create_answer(
    success: bool, *, message: str | None = None, request_id: str | None = None
) -> str:
    """JSON answer of ``Refund/Create`` as the real service writes it (for the sandbox)."""
    return _json_compact({"success": bool(success), "message": message, "requestId": request_id})


def build_refund_state_answer(state: RefundState) -> str:
    """JSON answer of ``Refund/GetState`` (for the sandbox); only ``message`` when ``request_id`` is None."""
    if state.request_id is None:
        return _json_compact({"message": state.message or "Id is invalid or request id does not exist"})
    if state.label is not None and state.label not in REFUND_LABELS:
        raise ValueError(f"invalid refund label {state.label!r}; expected one of {', '.join(REFUND_LABELS)}")
    amount = None if state.amount is None else _require_decimal(state.amount, "amount").quantize(
        Decimal("0.000001"))
    return _json_compact({"requestId": state.request_id, "amount": amount, "label": state.label})
