"""Robokassa protocol: Errors.

Part of :mod:`pmrobokassa.protocol` (a pure layer: no Flask, no database, no network).
"""
from __future__ import annotations




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
