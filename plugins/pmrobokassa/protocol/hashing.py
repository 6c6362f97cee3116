"""Robokassa protocol: Hashing (§2.1).

Part of :mod:`pmrobokassa.protocol` (a pure layer: no Flask, no database, no network).
"""
from __future__ import annotations

import hashlib
import hmac

from Crypto.Hash import RIPEMD160

from .errors import UnsupportedAlgorithm

HASH_ALGORITHMS: tuple[str, ...] = ("md5", "ripemd160", "sha1", "sha256", "sha384", "sha512")


def _digest_hex(name: str, data: bytes) -> str:
    # RIPEMD-160 through pycryptodome: OpenSSL 3 moved it to the "legacy" provider, which many
    # distributions do not load (hashlib.new("ripemd160") raises there), and Robokassa shops may still
    # be configured for it. The others are in every hashlib.
    if name == "ripemd160":
        return RIPEMD160.new(data).hexdigest()
    return hashlib.new(name, data).hexdigest()


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
    return _digest_hex(name, data)


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
