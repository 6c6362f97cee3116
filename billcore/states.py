"""Every state billcore stores or receives from a payment module, as string enums.

The values are the strings stored in the database and exchanged with modules, so a member compares
equal to its string (``PaymentStatus.PAID == "paid"``) and rows written before these types existed read
the same. Result types (:mod:`billcore.paymodule`) convert their ``state`` through :func:`parse_state`
when they are built: a module answering an unknown state (``"canceled"`` for ``"cancelled"``) fails at
its boundary instead of being taken for "still pending".
"""
from __future__ import annotations

import enum
import sys
from typing import TypeVar

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # Python 3.10: the same behaviour, spelled out
    class StrEnum(str, enum.Enum):
        """A str enum whose ``str()`` and ``format()`` are the value (as 3.11's :class:`enum.StrEnum`)."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)


class Status(StrEnum):
    """A payment's status; the values are the names stored in ``payments.status`` (docs/design.md §3)."""

    NEW = "new"
    INPAY = "inpay"
    PAID = "paid"
    CANCELLED = "cancelled"
    FRAUD = "fraud"
    PENDING_RETURN = "pending_return"
    RETURNED = "returned"


class GatewayState(StrEnum):
    """What the gateway says about a payment when asked (:class:`~billcore.paymodule.GatewayStatus`)."""

    PAID = "paid"
    CANCELLED = "cancelled"
    PENDING = "pending"  # still open at the gateway, or the gateway does not know yet


class RefundState(StrEnum):
    """The gateway's answer to a refund (:class:`~billcore.paymodule.RefundResult`)."""

    FINISHED = "finished"  # the money went back
    PENDING = "pending"  # accepted; follow it with the refund-status hook
    FAILED = "failed"  # refused; ``info`` says why


class ChargeState(StrEnum):
    """The gateway's answer to a recurring charge (:class:`~billcore.paymodule.ChargeResult`)."""

    ACCEPTED = "accepted"  # the result comes later, by notification or poll
    PAID = "paid"  # settled now
    FAILED = "failed"  # refused
    ERROR = "error"  # unknown whether the gateway charged (the module raised): retried with the same id


class RefundStatus(StrEnum):
    """A refund row's status (``refunds.status``)."""

    REQUESTED = "requested"
    FINISHED = "finished"
    FAILED = "failed"


class ProfileStatus(StrEnum):
    """A recurring profile's status (``recurring_profiles.status``)."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"


class ChargeStatus(StrEnum):
    """The state of one claimed recurring period (``recurring_charges.state``)."""

    CLAIMED = "claimed"
    ACCEPTED = "accepted"
    PAID = "paid"
    FAILED = "failed"
    ABANDONED = "abandoned"


class InvalidState(ValueError):
    """A module gave a state its result type does not have."""


E = TypeVar("E", bound=StrEnum)


def parse_state(kind: type[E], value: object) -> E:
    """``value`` as a member of ``kind``; raises :class:`InvalidState` naming the allowed values otherwise."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise InvalidState(f"{kind.__name__}: {value!r} is not a state (one of {allowed})") from None
