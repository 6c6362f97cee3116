"""Robokassa protocol: Signatures (§2.2 - §2.5).

Part of :mod:`pmrobokassa.protocol` (a pure layer: no Flask, no database, no network).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping


from .hashing import hash_hex, signatures_match


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
