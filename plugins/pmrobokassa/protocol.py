"""Robokassa merchant protocol: signatures, receipts, XML and refund messages.

This module is the pure protocol layer of the ``pmrobokassa`` plugin: no Flask, no database, no
network. Everything here is a function of its arguments, so the plugin's routes, its status poller and
the local sandbox (the gateway emulator) all share one implementation of each formula and format.
Section numbers (§) refer to ``docs/robokassa.md``.

Money is always :class:`~decimal.Decimal`; floats are refused wherever an amount goes in or out.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import jwt

__all__ = [
    "AUTH_XML_NAMESPACE",
    "BUILTIN_CURRENCIES",
    "HASH_ALGORITHMS",
    "LEGACY_XML_NAMESPACE",
    "PAYMENT_METHOD_CHOICES",
    "PAYMENT_OBJECT_CHOICES",
    "RECEIPT_NAME_MAX",
    "REFUND_JWT_ALGORITHMS",
    "REFUND_LABELS",
    "SNO_CHOICES",
    "STANDARD_PAYMENT_URL",
    "TAX_CHOICES",
    "Currency",
    "CurrencyGroup",
    "Endpoints",
    "GatewayError",
    "InvalidToken",
    "MalformedField",
    "MalformedMessage",
    "OpState",
    "ProtocolError",
    "ReceiptItem",
    "RefundCreateAnswer",
    "RefundItem",
    "RefundState",
    "UnsupportedAlgorithm",
    "build_currencies_xml",
    "build_opstate_xml",
    "build_receipt",
    "build_refund_create_answer",
    "build_refund_state_answer",
    "encode_receipt",
    "endpoints_from_payment_url",
    "extract_shp",
    "format_out_sum",
    "hash_hex",
    "hold_cancel_signature",
    "hold_confirm_signature",
    "init_signature",
    "make_refund_jwt",
    "opstate_signature",
    "parse_amount",
    "parse_currencies",
    "parse_opstate",
    "parse_refund_create_answer",
    "parse_refund_state_answer",
    "receipt_total",
    "recurring_signature",
    "result_answer",
    "result_signature",
    "signatures_match",
    "success_signature",
    "verify_refund_jwt",
    "verify_result_params",
    "verify_success_params",
]


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class ProtocolError(ValueError):
    """Base class of everything this module raises about data that breaks the protocol.

    It derives from :class:`ValueError` so callers that only care about "bad input" can catch that.
    """


class UnsupportedAlgorithm(ProtocolError):
    """A hash or JWT algorithm that Robokassa does not use (or that we refuse to accept)."""


class MalformedField(ProtocolError):
    """A single field (an amount, a code, a date…) does not have the format the protocol requires."""


class MalformedMessage(ProtocolError):
    """A whole message (XML answer, JSON answer, JWT payload) cannot be parsed."""


class GatewayError(ProtocolError):
    """An XML interface answered with a non-zero ``Result/Code`` where data was expected."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"Robokassa answered with result code {code}: {description or 'no description'}")
        self.code = code
        self.description = description


class InvalidToken(ProtocolError):
    """A refund JWT whose signature, algorithm or structure does not verify."""


# --------------------------------------------------------------------------------------------------
# Hashing (§2.1)
# --------------------------------------------------------------------------------------------------

HASH_ALGORITHMS: tuple[str, ...] = ("md5", "ripemd160", "sha1", "sha256", "sha384", "sha512")


def _openssl_has_ripemd160() -> bool:
    # OpenSSL 3 moved RIPEMD-160 to the "legacy" provider, which many distributions do not load, so
    # hashlib.new("ripemd160") raises there. Robokassa shops may still be configured for it.
    try:
        hashlib.new("ripemd160")
    except ValueError:
        return False
    return True


_HASHLIB_RIPEMD160 = _openssl_has_ripemd160()

# RIPEMD-160 constants (Dobbertin, Bosselaers, Preneel 1996): message word order, rotation amounts
# and additive constants of the left and right lines.
_RMD_R = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    7, 4, 13, 1, 10, 6, 15, 3, 12, 0, 9, 5, 2, 14, 11, 8,
    3, 10, 14, 4, 9, 15, 8, 1, 2, 7, 0, 6, 13, 11, 5, 12,
    1, 9, 11, 10, 0, 8, 12, 4, 13, 3, 7, 15, 14, 5, 6, 2,
    4, 0, 5, 9, 7, 12, 2, 10, 14, 1, 3, 8, 11, 6, 15, 13,
)
_RMD_RP = (
    5, 14, 7, 0, 9, 2, 11, 4, 13, 6, 15, 8, 1, 10, 3, 12,
    6, 11, 3, 7, 0, 13, 5, 10, 14, 15, 8, 12, 4, 9, 1, 2,
    15, 5, 1, 3, 7, 14, 6, 9, 11, 8, 12, 2, 10, 0, 4, 13,
    8, 6, 4, 1, 3, 11, 15, 0, 5, 12, 2, 13, 9, 7, 10, 14,
    12, 15, 10, 4, 1, 5, 8, 7, 6, 2, 13, 14, 0, 3, 9, 11,
)
_RMD_S = (
    11, 14, 15, 12, 5, 8, 7, 9, 11, 13, 14, 15, 6, 7, 9, 8,
    7, 6, 8, 13, 11, 9, 7, 15, 7, 12, 15, 9, 11, 7, 13, 12,
    11, 13, 6, 7, 14, 9, 13, 15, 14, 8, 13, 6, 5, 12, 7, 5,
    11, 12, 14, 15, 14, 15, 9, 8, 9, 14, 5, 6, 8, 6, 5, 12,
    9, 15, 5, 11, 6, 8, 13, 12, 5, 12, 13, 14, 11, 8, 5, 6,
)
_RMD_SP = (
    8, 9, 9, 11, 13, 15, 15, 5, 7, 7, 8, 11, 14, 14, 12, 6,
    9, 13, 15, 7, 12, 8, 9, 11, 7, 7, 12, 7, 6, 15, 13, 11,
    9, 7, 15, 11, 8, 6, 6, 14, 12, 13, 5, 14, 13, 13, 7, 5,
    15, 5, 8, 11, 14, 14, 6, 14, 6, 9, 12, 9, 12, 5, 15, 8,
    8, 5, 12, 9, 12, 5, 14, 6, 8, 13, 6, 5, 15, 13, 11, 11,
)
_RMD_K = (0x00000000, 0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xA953FD4E)
_RMD_KP = (0x50A28BE6, 0x5C4DD124, 0x6D703EF3, 0x7A6D76E9, 0x00000000)
_MASK32 = 0xFFFFFFFF


def _rol32(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (32 - shift))) & _MASK32


def _rmd_f(round_no: int, x: int, y: int, z: int) -> int:
    if round_no == 0:
        return x ^ y ^ z
    if round_no == 1:
        return (x & y) | (~x & z)
    if round_no == 2:
        return (x | ~y) ^ z
    if round_no == 3:
        return (x & z) | (y & ~z)
    return x ^ (y | ~z)


def _ripemd160_pure(data: bytes) -> bytes:
    """RIPEMD-160 digest in pure Python (fallback for OpenSSL builds without it; slow but tiny inputs)."""
    h0, h1, h2, h3, h4 = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
    padding = b"\x80" + b"\x00" * ((55 - len(data)) % 64)
    message = data + padding + struct.pack("<Q", (8 * len(data)) & 0xFFFFFFFFFFFFFFFF)
    for offset in range(0, len(message), 64):
        words = struct.unpack("<16I", message[offset:offset + 64])
        al, bl, cl, dl, el = h0, h1, h2, h3, h4
        ar, br, cr, dr, er = h0, h1, h2, h3, h4
        for j in range(80):
            rnd = j >> 4
            t = _rol32((al + (_rmd_f(rnd, bl, cl, dl) & _MASK32) + words[_RMD_R[j]] + _RMD_K[rnd])
                       & _MASK32, _RMD_S[j]) + el
            al, el, dl, cl, bl = el, dl, _rol32(cl, 10), bl, t & _MASK32
            t = _rol32((ar + (_rmd_f(4 - rnd, br, cr, dr) & _MASK32) + words[_RMD_RP[j]] + _RMD_KP[rnd])
                       & _MASK32, _RMD_SP[j]) + er
            ar, er, dr, cr, br = er, dr, _rol32(cr, 10), br, t & _MASK32
        h0, h1, h2, h3, h4 = (
            (h1 + cl + dr) & _MASK32,
            (h2 + dl + er) & _MASK32,
            (h3 + el + ar) & _MASK32,
            (h4 + al + br) & _MASK32,
            (h0 + bl + cr) & _MASK32,
        )
    return struct.pack("<5I", h0, h1, h2, h3, h4)


def _normalise_algorithm(algorithm: str) -> str:
    name = algorithm.lower() if isinstance(algorithm, str) else ""
    if name not in HASH_ALGORITHMS:
        raise UnsupportedAlgorithm(
            f"unsupported hash algorithm {algorithm!r}; expected one of {', '.join(HASH_ALGORITHMS)}"
        )
    return name


def hash_hex(algorithm: str, text: str) -> str:
    """Return the lowercase hex digest of ``text`` (UTF-8) with one of :data:`HASH_ALGORITHMS`.

    The algorithm name is case-insensitive (``"MD5"`` and ``"md5"`` are the same). Raises
    :class:`UnsupportedAlgorithm` for anything else.
    """
    name = _normalise_algorithm(algorithm)
    if not isinstance(text, str):
        raise TypeError(f"text to hash must be str, not {type(text).__name__}")
    data = text.encode("utf-8")
    if name == "ripemd160" and not _HASHLIB_RIPEMD160:
        return _ripemd160_pure(data).hex()
    return hashlib.new(name, data).hexdigest()


def signatures_match(expected: str, received: object) -> bool:
    """Compare two hex signatures case-insensitively and in constant time.

    Robokassa documents uppercase hex but has been seen sending lowercase (§2.1 rule 3), so both are
    lowercased first. Anything that is not an ASCII string (None, bytes, Cyrillic garbage…) or an
    empty signature simply does not match; this function never raises.
    """
    if not isinstance(expected, str) or not isinstance(received, str) or not expected or not received:
        return False
    try:
        left = expected.lower().encode("ascii")
        right = received.lower().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(left, right)


# --------------------------------------------------------------------------------------------------
# Amounts
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Signatures (§2.2 - §2.5)
# --------------------------------------------------------------------------------------------------

_SHP_PREFIX = "shp_"
_URL2_METHODS = ("GET", "POST")


def _is_shp_name(name: str) -> bool:
    # The docs name Shp_, shp_ and SHP_ (§2.1 rule 5); comparing the prefix case-insensitively covers
    # those three and never mistakes an ordinary parameter for a custom one.
    return len(name) > len(_SHP_PREFIX) and name[: len(_SHP_PREFIX)].lower() == _SHP_PREFIX


def _shp_pieces(shp: Mapping[str, str] | None) -> list[str]:
    """``name=value`` pieces for the custom parameters, in the order Robokassa hashes them.

    The docs only say "alphabetical". The official WordPress plugin orders mixed ``shp_``/``Shp_``
    names case-insensitively, so we sort by the lowercased name (ties broken by the exact name to stay
    deterministic). With one prefix spelling, as we recommend, this equals a plain sort.
    """
    if not shp:
        return []
    for name in shp:
        if not isinstance(name, str) or not _is_shp_name(name):
            raise ValueError(f"custom parameter {name!r} must start with Shp_ (or shp_/SHP_)")
        if not isinstance(shp[name], str):
            raise TypeError(f"custom parameter {name} must have a str value, not {type(shp[name]).__name__}")
    ordered = sorted(shp.items(), key=lambda item: (item[0].lower(), item[0]))
    return [f"{name}={value}" for name, value in ordered]


def _literal(value: object, what: str) -> str:
    # Signatures hash the exact text that is sent, so we refuse Decimal/float here: str(Decimal("1E+2"))
    # would silently differ from the "100.00" in the form.
    if not isinstance(value, str):
        raise TypeError(f"{what} must be the exact string sent/received, not {type(value).__name__}")
    return value


def _inv_id_text(inv_id: str | int | None) -> str:
    if inv_id is None:
        return ""  # the slot stays, giving "login:sum::password" (§2.2)
    if isinstance(inv_id, bool) or not isinstance(inv_id, (str, int)):
        raise TypeError(f"InvId must be str, int or None, not {type(inv_id).__name__}")
    return str(inv_id)


def _url2_pair(url: str | None, method: str | None, name: str) -> list[str]:
    if not url and not method:
        return []
    if not url or not method:
        raise ValueError(f"{name} and {name}Method must be sent together")
    if method not in _URL2_METHODS:
        raise ValueError(f"{name}Method must be GET or POST (uppercase), got {method!r}")
    return [url, method]


def init_signature(
    algorithm: str,
    *,
    merchant_login: str,
    out_sum: str,
    inv_id: str | int | None,
    password1: str,
    out_sum_currency: str | None = None,
    user_ip: str | None = None,
    receipt: str | None = None,
    step_by_step: bool = False,
    result_url2: str | None = None,
    success_url2: str | None = None,
    success_url2_method: str | None = None,
    fail_url2: str | None = None,
    fail_url2_method: str | None = None,
    token: str | None = None,
    shp: Mapping[str, str] | None = None,
) -> str:
    """Signature of a payment request to ``Index.aspx`` (Password #1), per §2.2.

    ``MerchantLogin:OutSum:InvId[:OutSumCurrency][:UserIp][:Receipt][:true][:ResultUrl2]
    [:SuccessUrl2:SuccessUrl2Method][:FailUrl2:FailUrl2Method][:Token]:Password#1[:Shp_x=…]``

    Every argument is the exact text that goes into the form: ``out_sum`` as sent (``"100.00"``),
    ``receipt`` already URL-encoded (:func:`encode_receipt`), URLs raw (not URL-encoded, §2.1 rule 6).
    An optional piece is included only when it is sent, so pass ``None`` (or omit it) for fields you
    do not send, and never send an empty field. ``inv_id=None`` keeps an empty slot. ``shp`` keys
    carry their prefix (``{"Shp_item": "1"}``).
    """
    pieces = [
        _literal(merchant_login, "MerchantLogin"),
        _literal(out_sum, "OutSum"),
        _inv_id_text(inv_id),
    ]
    for value, what in ((out_sum_currency, "OutSumCurrency"), (user_ip, "UserIp"), (receipt, "Receipt")):
        if value:
            pieces.append(_literal(value, what))
    if step_by_step:
        pieces.append("true")  # StepByStep is signed as the literal "true" (§2.2, §7.2)
    if result_url2:
        pieces.append(_literal(result_url2, "ResultUrl2"))
    pieces += _url2_pair(success_url2, success_url2_method, "SuccessUrl2")
    pieces += _url2_pair(fail_url2, fail_url2_method, "FailUrl2")
    if token:
        pieces.append(_literal(token, "Token"))  # last before the password (§2.2)
    pieces.append(_literal(password1, "Password#1"))
    pieces += _shp_pieces(shp)
    return hash_hex(algorithm, ":".join(pieces))


def result_signature(
    algorithm: str, out_sum: str, inv_id: str, password2: str, shp: Mapping[str, str] | None = None
) -> str:
    """Signature Robokassa puts on a ResultURL notification: ``OutSum:InvId:Password#2[:Shp_*]`` (§2.3).

    ``out_sum`` must be the string as received (often six decimals, ``"100.000000"``), never reformatted.
    """
    pieces = [_literal(out_sum, "OutSum"), _literal(inv_id, "InvId"), _literal(password2, "Password#2")]
    return hash_hex(algorithm, ":".join(pieces + _shp_pieces(shp)))


def success_signature(
    algorithm: str, out_sum: str, inv_id: str, password1: str, shp: Mapping[str, str] | None = None
) -> str:
    """Signature on the buyer's SuccessURL return: ``OutSum:InvId:Password#1[:Shp_*]`` (§2.4)."""
    pieces = [_literal(out_sum, "OutSum"), _literal(inv_id, "InvId"), _literal(password1, "Password#1")]
    return hash_hex(algorithm, ":".join(pieces + _shp_pieces(shp)))


def opstate_signature(algorithm: str, merchant_login: str, inv_id: str | int, password2: str) -> str:
    """Signature of an OpStateExt request: ``MerchantLogin:InvoiceID:Password#2`` (§2.5, §6.1)."""
    pieces = [_literal(merchant_login, "MerchantLogin"), _inv_id_text(inv_id), _literal(password2, "Password#2")]
    return hash_hex(algorithm, ":".join(pieces))


def recurring_signature(
    algorithm: str,
    *,
    merchant_login: str,
    out_sum: str,
    inv_id: str | int,
    password1: str,
    receipt: str | None = None,
) -> str:
    """Signature of a child recurring charge to ``/Merchant/Recurring`` (§2.5, §7.1).

    ``MerchantLogin:OutSum:InvoiceID[:Receipt]:Password#1`` with the *new* InvoiceID;
    ``PreviousInvoiceID`` is deliberately not part of it.
    """
    if inv_id is None or str(inv_id) in ("", "0"):
        raise ValueError("a recurring charge needs a non-zero InvoiceID chosen by the shop")
    return init_signature(
        algorithm, merchant_login=merchant_login, out_sum=out_sum, inv_id=inv_id,
        password1=password1, receipt=receipt,
    )


def hold_confirm_signature(
    algorithm: str,
    *,
    merchant_login: str,
    out_sum: str,
    inv_id: str | int,
    password1: str,
    receipt: str | None = None,
) -> str:
    """Signature of a hold capture at ``/Merchant/Payment/Confirm`` (§2.5, §7.2).

    Same shape as the recurring one: ``MerchantLogin:OutSum:InvoiceID[:Receipt]:Password#1``.
    """
    return init_signature(
        algorithm, merchant_login=merchant_login, out_sum=out_sum, inv_id=inv_id,
        password1=password1, receipt=receipt,
    )


def hold_cancel_signature(algorithm: str, *, merchant_login: str, inv_id: str | int, password1: str) -> str:
    """Signature of a hold cancellation at ``/Merchant/Payment/Cancel``: ``MerchantLogin::InvoiceID:Password#1``."""
    return init_signature(
        algorithm, merchant_login=merchant_login, out_sum="", inv_id=inv_id, password1=password1,
    )


def extract_shp(params: Mapping[str, str]) -> dict[str, str]:
    """Return the custom ``Shp_``/``shp_``/``SHP_`` parameters of a request, names and values as received."""
    return {name: value for name, value in params.items() if isinstance(name, str) and _is_shp_name(name)}


def _verify_callback(
    params: Mapping[str, str], algorithm: str, password: str, formula: Callable[..., str]
) -> bool:
    out_sum, inv_id, received = params.get("OutSum"), params.get("InvId"), params.get("SignatureValue")
    if not isinstance(out_sum, str) or not isinstance(inv_id, str) or not isinstance(received, str):
        return False
    # Deliberately no try/except: everything taken from params is a str here, so an exception can only
    # come from our own configuration (unknown algorithm, missing password) and must not look like a
    # forged notification.
    expected = formula(algorithm, out_sum, inv_id, password, extract_shp(params))
    return signatures_match(expected, received)


def verify_result_params(params: Mapping[str, str], *, algorithm: str, password2: str) -> bool:
    """Check the signature of a ResultURL notification from its received fields (``OutSum``, ``InvId``,
    ``SignatureValue``, ``Shp_*``). Unknown fields are ignored; a missing field means "not valid".
    A misconfigured algorithm raises :class:`UnsupportedAlgorithm` instead of returning False."""
    return _verify_callback(params, algorithm, password2, result_signature)


def verify_success_params(params: Mapping[str, str], *, algorithm: str, password1: str) -> bool:
    """Check the signature of a SuccessURL return (Password #1), like :func:`verify_result_params`."""
    return _verify_callback(params, algorithm, password1, success_signature)


def result_answer(inv_id: str | int) -> str:
    """The plain-text answer that acknowledges a ResultURL notification: ``OK<InvId>`` (§3)."""
    return f"OK{_inv_id_text(inv_id)}"


# --------------------------------------------------------------------------------------------------
# Compact JSON with exact decimals
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Fiscal receipt (§9)
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# XML interfaces (§6)
# --------------------------------------------------------------------------------------------------

AUTH_XML_NAMESPACE = "http://auth.robokassa.ru/Merchant/WebService/"
LEGACY_XML_NAMESPACE = "http://merchant.roboxchange.com/WebService/"

# OpStateExt Result/Code (§6.1)
RESULT_OK = 0
RESULT_BAD_SIGNATURE = 1
RESULT_SHOP_NOT_FOUND = 2
RESULT_NO_OPERATION = 3
RESULT_DUPLICATE_OPERATIONS = 4
RESULT_INTERNAL_ERROR = 1000

# OpStateExt State/Code (§6.1)
STATE_INITIATED = 5
STATE_CANCELLED = 10
STATE_HOLD = 20
STATE_RECEIVED = 50
STATE_RETURNED = 60
STATE_SUSPENDED = 80
STATE_PAID = 100

_CODE_RE = re.compile(r"-?[0-9]{1,9}")


def _local(tag: object) -> str:
    # "{namespace}Name" -> "Name": two namespaces are seen in the wild (§6), so we match local names.
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(parent: ET.Element | None, name: str) -> ET.Element | None:
    if parent is None:
        return None
    for element in parent:
        if _local(element.tag) == name:
            return element
    return None


def _children(parent: ET.Element | None, name: str) -> list[ET.Element]:
    return [] if parent is None else [e for e in parent if _local(e.tag) == name]


def _text(parent: ET.Element | None, name: str) -> str | None:
    element = _child(parent, name)
    if element is None:
        return None
    return (element.text or "").strip()


def _int_field(text: str | None, what: str) -> int | None:
    if text is None or text == "":
        return None
    if not _CODE_RE.fullmatch(text):
        raise MalformedField(f"{what}: {text[:20]!r} is not an integer code")
    return int(text)


def _optional_amount(text: str | None, what: str) -> Decimal | None:
    return None if text is None or text == "" else parse_amount(text, what)


def _parse_xml_root(xml_text: str | bytes, expected_root: str) -> ET.Element:
    if isinstance(xml_text, bytes):
        probe = xml_text.decode("latin-1").lower()
    elif isinstance(xml_text, str):
        probe = xml_text.lower()
    else:
        raise MalformedMessage(f"{expected_root}: expected XML text, got {type(xml_text).__name__}")
    if "<!doctype" in probe or "<!entity" in probe:
        # Robokassa never sends a DTD; refusing them rules out entity-expansion tricks cheaply.
        raise MalformedMessage(f"{expected_root}: DTDs are not allowed in answers")
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise MalformedMessage(f"{expected_root}: not well-formed XML ({exc})") from None
    if _local(root.tag) != expected_root:
        raise MalformedMessage(f"expected a {expected_root} document, got {_local(root.tag)!r}")
    return root


def _parse_result(root: ET.Element) -> tuple[int, str]:
    result = _child(root, "Result")
    code = _int_field(_text(result, "Code"), "Result/Code")
    if code is None:
        raise MalformedMessage(f"{_local(root.tag)}: missing Result/Code")
    return code, _text(result, "Description") or ""


def _xml_root(name: str, namespace: str | None) -> ET.Element:
    # A literal xmlns attribute puts the whole tree in the default namespace without touching
    # ElementTree's global prefix registry (register_namespace is process-wide).
    return ET.Element(name, {"xmlns": namespace} if namespace else {})


def _sub_text(parent: ET.Element, name: str, text: str | None) -> None:
    if text is not None:
        ET.SubElement(parent, name).text = text


def _serialise_xml(root: ET.Element) -> str:
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def _result_element(root: ET.Element, code: int, description: str) -> None:
    result = ET.SubElement(root, "Result")
    _sub_text(result, "Code", str(code))
    if description:
        _sub_text(result, "Description", description)


def _xml_amount(value: Decimal | None) -> str | None:
    if value is None:
        return None
    # Robokassa writes money with six decimals ("100.000000"); the sandbox imitates that.
    return format(_require_decimal(value, "amount").quantize(Decimal("0.000001")), "f")


@dataclass(frozen=True)
class OpState:
    """The useful part of an OpStateExt answer (§6.1).

    ``result_code`` 0 means the request was answered; only then are the other fields filled.
    ``state_code`` 100 means paid (see the ``STATE_*`` constants). Dates are kept as the raw ISO
    strings Robokassa sends (they may carry seven fractional digits). ``payment_method`` is the
    ``Info/PaymentMethod/Code`` (e.g. ``BankCard``); ``user_fields`` are the echoed ``Shp_*`` values.
    """

    result_code: int
    description: str = ""
    state_code: int | None = None
    state_date: str | None = None
    request_date: str | None = None
    op_key: str | None = None
    out_sum: Decimal | None = None
    inc_sum: Decimal | None = None
    inc_curr_label: str | None = None
    payment_method: str | None = None
    user_fields: dict[str, str] = field(default_factory=dict)

    @property
    def is_paid(self) -> bool:
        """True when Robokassa reports the payment as completed and credited (state 100)."""
        return self.result_code == RESULT_OK and self.state_code == STATE_PAID


def parse_opstate(xml_text: str | bytes) -> OpState:
    """Parse an ``OperationStateResponse`` (OpStateExt answer), ignoring XML namespaces.

    Raises :class:`MalformedMessage` for unparsable XML or a missing ``Result/Code`` and
    :class:`MalformedField` for malformed codes or amounts. A non-zero result code is not an
    exception: it is returned in ``result_code`` with its description.
    """
    root = _parse_xml_root(xml_text, "OperationStateResponse")
    code, description = _parse_result(root)
    if code != RESULT_OK:
        return OpState(result_code=code, description=description)
    state, info = _child(root, "State"), _child(root, "Info")
    # PaymentMethod is a {Code, Description} element; tolerate a bare text value too.
    method = _child(info, "PaymentMethod")
    if _child(method, "Code") is not None:
        method_code = _text(method, "Code")
    else:
        method_code = _text(info, "PaymentMethod")
    user_fields: dict[str, str] = {}
    for field_element in _children(_child(root, "UserField"), "Field"):
        name = _text(field_element, "Name")
        if name:
            user_fields[name] = _text(field_element, "Value") or ""
    return OpState(
        result_code=code,
        description=description,
        state_code=_int_field(_text(state, "Code"), "State/Code"),
        state_date=_text(state, "StateDate") or None,
        request_date=_text(state, "RequestDate") or None,
        op_key=_text(info, "OpKey") or None,
        out_sum=_optional_amount(_text(info, "OutSum"), "Info/OutSum"),
        inc_sum=_optional_amount(_text(info, "IncSum"), "Info/IncSum"),
        inc_curr_label=_text(info, "IncCurrLabel") or None,
        payment_method=method_code or None,
        user_fields=user_fields,
    )


def build_opstate_xml(state: OpState, *, namespace: str | None = AUTH_XML_NAMESPACE) -> str:
    """Render ``state`` as the ``OperationStateResponse`` XML a Robokassa server answers (for the sandbox).

    With a non-zero ``result_code`` only ``Result`` is written, as the real service does (§6).
    ``parse_opstate(build_opstate_xml(s)) == s`` for every ``OpState`` this module produces.
    """
    root = _xml_root("OperationStateResponse", namespace)
    _result_element(root, state.result_code, state.description)
    if state.result_code != RESULT_OK:
        return _serialise_xml(root)
    if state.state_code is not None or state.state_date or state.request_date:
        element = ET.SubElement(root, "State")
        _sub_text(element, "Code", None if state.state_code is None else str(state.state_code))
        _sub_text(element, "RequestDate", state.request_date)
        _sub_text(element, "StateDate", state.state_date)
    info = ET.SubElement(root, "Info")
    _sub_text(info, "IncCurrLabel", state.inc_curr_label)
    _sub_text(info, "IncSum", _xml_amount(state.inc_sum))
    if state.payment_method is not None:
        _sub_text(ET.SubElement(info, "PaymentMethod"), "Code", state.payment_method)
    _sub_text(info, "OutSum", _xml_amount(state.out_sum))
    _sub_text(info, "OpKey", state.op_key)
    if state.user_fields:
        user_field = ET.SubElement(root, "UserField")
        for name, value in state.user_fields.items():
            element = ET.SubElement(user_field, "Field")
            _sub_text(element, "Name", name)
            _sub_text(element, "Value", value)
    return _serialise_xml(root)


@dataclass(frozen=True)
class Currency:
    """One payment option of GetCurrencies; ``label`` is what goes into ``IncCurrLabel``."""

    label: str
    alias: str
    name: str
    min_value: Decimal | None = None
    max_value: Decimal | None = None


@dataclass(frozen=True)
class CurrencyGroup:
    """A group of payment options (``Group@Code``, ``Group@Description``) of GetCurrencies."""

    code: str
    description: str
    items: tuple[Currency, ...] = ()


def parse_currencies(xml_text: str | bytes) -> list[CurrencyGroup]:
    """Parse a ``CurrenciesList`` (GetCurrencies answer) into groups, ignoring XML namespaces.

    Raises :class:`GatewayError` when Robokassa answered with a non-zero result code (for example
    2 = shop not found), :class:`MalformedMessage`/:class:`MalformedField` for broken answers.
    """
    root = _parse_xml_root(xml_text, "CurrenciesList")
    code, description = _parse_result(root)
    if code != RESULT_OK:
        raise GatewayError(code, description)
    groups = []
    for group in _children(_child(root, "Groups"), "Group"):
        items = tuple(
            Currency(
                label=currency.get("Label", ""),
                alias=currency.get("Alias", ""),
                name=currency.get("Name", ""),
                min_value=_optional_amount(currency.get("MinValue"), "Currency@MinValue"),
                max_value=_optional_amount(currency.get("MaxValue"), "Currency@MaxValue"),
            )
            for currency in _children(_child(group, "Items"), "Currency")
        )
        groups.append(CurrencyGroup(group.get("Code", ""), group.get("Description", ""), items))
    return groups


def build_currencies_xml(
    groups: Iterable[CurrencyGroup], *, namespace: str | None = AUTH_XML_NAMESPACE
) -> str:
    """Render groups as the ``CurrenciesList`` XML GetCurrencies answers (for the sandbox)."""
    root = _xml_root("CurrenciesList", namespace)
    _result_element(root, RESULT_OK, "")
    groups_element = ET.SubElement(root, "Groups")
    for group in groups:
        group_element = ET.SubElement(groups_element, "Group", {"Code": group.code,
                                                                "Description": group.description})
        items_element = ET.SubElement(group_element, "Items")
        for item in group.items:
            attributes = {"Label": item.label, "Alias": item.alias, "Name": item.name}
            if item.min_value is not None:
                attributes["MinValue"] = _decimal_json(_require_decimal(item.min_value, "MinValue"))
            if item.max_value is not None:
                attributes["MaxValue"] = _decimal_json(_require_decimal(item.max_value, "MaxValue"))
            ET.SubElement(items_element, "Currency", attributes)
    return _serialise_xml(root)


# A plausible offline list of Robokassa payment options (docs/design.md §7), used to fill the
# "Payment method" select when GetCurrencies cannot be asked (no network, sandbox). Labels follow the
# real naming seen in captured GetCurrencies answers; a live shop's list may differ.
BUILTIN_CURRENCIES: tuple[CurrencyGroup, ...] = (
    CurrencyGroup("BankCard", "Bank cards", (
        Currency("BankCardPSR", "BankCard", "Bank card (Visa, Mastercard, Maestro, Mir)"),
        Currency("SBPPSR", "SBP", "Faster Payments System (SBP)"),
        Currency("YandexPayPSR", "YandexPay", "Yandex Pay", max_value=Decimal("100000")),
        Currency("MirPayPSR", "MirPay", "Mir Pay"),
        Currency("SberPayPSR", "SberPay", "SberPay"),
    )),
    CurrencyGroup("Terminals", "Cash", (
        Currency("TerminalsElecsnetOceanR", "Elecsnet", "Elecsnet terminals", max_value=Decimal("15000")),
        Currency("RapidaOceanEurosetR", "Euroset", "Euroset stores", max_value=Decimal("15000")),
        Currency("RapidaOceanSvyaznoyR", "Svyaznoy", "Svyaznoy stores", max_value=Decimal("15000")),
    )),
    CurrencyGroup("EMoney", "E-wallets", (
        Currency("Qiwi40PS", "QiwiWallet", "QIWI Wallet", max_value=Decimal("15000")),
        Currency("YandexMerchantPS5R", "YandexMoney", "YooMoney", max_value=Decimal("15000")),
        Currency("WMR20PM", "WMR", "WebMoney WMR"),
    )),
    CurrencyGroup("Mobile", "Mobile payments", (
        Currency("RuRuBeelinePSR", "PhoneBeeline", "Beeline", Decimal("10"), Decimal("14354")),
        Currency("MixplatMegafonRIBR", "PhoneMegafon", "MegaFon", Decimal("10"), Decimal("15000")),
        Currency("MixplatMTSRIBR", "PhoneMTS", "MTS", Decimal("10"), Decimal("15000")),
        Currency("MixplatTele2RIBR", "PhoneTele2", "Tele2", Decimal("10"), Decimal("15000")),
    )),
    CurrencyGroup("Bank", "Online banking", (
        Currency("AlfaBankOceanR", "AlfaBank", "Alfa-Click"),
        Currency("VTB24R", "VTB24", "VTB Online"),
    )),
)


# --------------------------------------------------------------------------------------------------
# Refund API (§8)
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Endpoints (§0, §6, §7, §8)
# --------------------------------------------------------------------------------------------------

STANDARD_PAYMENT_URL = "https://auth.robokassa.ru/Merchant/Index.aspx"
_PAYMENT_PATH_SUFFIX = "/merchant/index.aspx"


@dataclass(frozen=True)
class Endpoints:
    """Every Robokassa URL the plugin calls or sends the buyer to."""

    payment_url: str
    xml_service_url: str
    recurring_url: str
    refund_create_url: str
    refund_state_url: str

    def xml_method_url(self, method: str) -> str:
        """URL of one XML interface method, e.g. ``xml_method_url("OpStateExt")``."""
        return f"{self.xml_service_url}/{method}"


def _endpoints_under(prefix: str, payment_url: str, refund_prefix: str) -> Endpoints:
    return Endpoints(
        payment_url=payment_url,
        xml_service_url=f"{prefix}/Merchant/WebService/Service.asmx",
        recurring_url=f"{prefix}/Merchant/Recurring",
        refund_create_url=f"{refund_prefix}/RefundService/Refund/Create",
        refund_state_url=f"{refund_prefix}/RefundService/Refund/GetState",
    )


def endpoints_from_payment_url(url: str) -> Endpoints:
    """Derive all endpoints from the payment page URL (the "URL" setting of the payment method).

    The standard ``https://auth.robokassa.ru/Merchant/Index.aspx`` gives Robokassa's real hosts
    (refunds live on ``services.robokassa.ru``). Any other ``<prefix>/Merchant/Index.aspx`` puts every
    endpoint under ``<prefix>``, so a local sandbox such as
    ``http://127.0.0.1:5000/sandbox/robokassa/Merchant/Index.aspx`` stands in for all of them.
    Raises ``ValueError`` for a URL that is not http(s), has no host, carries a query or fragment,
    or does not end in ``/Merchant/Index.aspx``.
    """
    if not isinstance(url, str):
        raise ValueError("payment URL must be a string")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"payment URL must be an absolute http(s) URL, got {url!r}")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(f"payment URL must not carry a query or fragment: {url!r}")
    if not parts.path.lower().endswith(_PAYMENT_PATH_SUFFIX):
        raise ValueError(f"payment URL must end in /Merchant/Index.aspx, got {url!r}")
    is_standard = (parts.scheme.lower(), parts.netloc.lower(), parts.path.lower()) == (
        "https", "auth.robokassa.ru", _PAYMENT_PATH_SUFFIX)
    if is_standard:
        # Robokassa's refund service lives on another host than the payment page (§8).
        return _endpoints_under("https://auth.robokassa.ru", STANDARD_PAYMENT_URL, "https://services.robokassa.ru")
    prefix = url[: len(url) - len(_PAYMENT_PATH_SUFFIX)]
    return _endpoints_under(prefix, url, prefix)
