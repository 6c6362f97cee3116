"""Robokassa protocol: Compact JSON with exact decimals.

Part of :mod:`pmrobokassa.protocol` (a pure layer: no Flask, no database, no network).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


from .errors import MalformedMessage


def _decimal_json(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"cannot serialise non-finite number {value}")
    if value == 0:
        value = Decimal(0)  # avoid "-0"
    return format(value, "f")  # plain notation: JSON allows exponents, but Robokassa's parsers may not


def _json_compact(value: Any) -> str:
    """Serialise to compact JSON (``separators=(",",":")``, UTF-8 kept), Decimals as JSON numbers.

    ``json.dumps`` cannot write a Decimal as a number without going through float, and floats are
    banned for money, hence this small serialiser for the handful of types our messages contain.
    """
    if isinstance(value, Decimal):
        return _decimal_json(value)
    if value is None or isinstance(value, (bool, int, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        members = (f"{json.dumps(str(k), ensure_ascii=False)}:{_json_compact(v)}" for k, v in value.items())
        return "{" + ",".join(members) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json_compact(v) for v in value) + "]"
    raise TypeError(f"cannot serialise {type(value).__name__} (floats are refused: use Decimal)")


def _loads_object(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text, parse_float=Decimal)
    except (ValueError, TypeError) as exc:
        raise MalformedMessage(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MalformedMessage(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data
