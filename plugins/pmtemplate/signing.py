"""Signing and checking the fake gateway's parameters with an HMAC-SHA256 of the shared secret.

Real gateways each have their own recipe (Robokassa: MD5 of ``:``-joined fields). Keep the recipe of your
gateway in one small module like this one, with no Flask in it, so it can be tested with the gateway's own
published examples.

The signed text must be *unambiguous*: two different sets of parameters must never give the same text,
or a field could be shifted into its neighbour (``a="1\\nb=2"`` and ``a="1", b="2"`` would sign alike with
plain ``name=value`` lines). The fake gateway therefore signs a canonical JSON object: every field except
the signature, names sorted, values as strings, no spaces, non-ASCII escaped. JSON quotes and escapes
every name and value, so no value can end a field early.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

SIGNATURE_FIELD = "signature"


def canonical(params: Mapping[str, str]) -> bytes:
    """The signed text: every field except the signature as one JSON object, names sorted, values as
    text, compact separators and ``\\uXXXX`` escapes (ASCII only, so any text encodes)."""
    fields = {str(name): str(value) for name, value in params.items() if name != SIGNATURE_FIELD}
    return json.dumps(fields, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def sign(params: Mapping[str, str], secret: str) -> str:
    """The hex HMAC-SHA256 of :func:`canonical` ``params`` keyed with ``secret``."""
    return hmac.new(secret.encode("utf-8", "surrogatepass"), canonical(params), hashlib.sha256).hexdigest()


def signed(params: Mapping[str, str], secret: str) -> dict[str, str]:
    """A copy of ``params`` (values turned into text) with its ``signature`` added."""
    values = {name: str(value) for name, value in params.items() if name != SIGNATURE_FIELD}
    values[SIGNATURE_FIELD] = sign(values, secret)
    return values


def verify(params: Mapping[str, str], secret: str) -> bool:
    """True when ``params`` carry a signature made with ``secret``; compared in constant time.

    A missing signature or an empty secret never verifies.
    """
    given = params.get(SIGNATURE_FIELD)
    if not given or not secret:
        return False
    expected = sign({k: v for k, v in params.items() if k != SIGNATURE_FIELD}, secret)
    return hmac.compare_digest(expected.encode("ascii"), str(given).lower().encode("ascii", "replace"))
