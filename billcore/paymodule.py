"""The value types passed between the core and payment modules (see :mod:`billcore.hookspecs`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# The state enums, here for modules (the values are the strings stored and exchanged).
from .states import (  # noqa: F401  (re-exported)
    ChargeState,
    ChargeStatus,
    GatewayState,
    InvalidState,
    ProfileStatus,
    RefundState,
    RefundStatus,
    Status,
    parse_state,
)

# Features a module may declare; the core only offers what a module declares.
FEATURE_CHECKPAY = "checkpay"  # status polling at the gateway
FEATURE_REFUND = "refund"  # refunds through the gateway
FEATURE_RECURRING = "recurring"  # charges against a stored parent payment
FEATURE_SUBSCRIPTIONS = "subscriptions"
FEATURE_TEST_MODE = "test_mode"
FEATURE_RECEIPTS = "receipts"  # fiscal receipts
FEATURES = (FEATURE_CHECKPAY, FEATURE_REFUND, FEATURE_RECURRING, FEATURE_SUBSCRIPTIONS,
            FEATURE_TEST_MODE, FEATURE_RECEIPTS)


@dataclass(frozen=True)
class ModuleInfo:
    """What a payment module says about itself (BILLmanager's ``config`` command).

    ``key`` must equal the module's entry-point name. ``secret_fields`` names the integration-form
    fields that are stored encrypted, never rendered back and never logged. ``currencies`` limits the
    currencies a payment method of this module may use (empty = any). ``logo`` is a URL path or an
    absolute URL. ``development_only`` modules are loaded only in debug/testing or when the allow-list
    names them. ``api_version`` is the :data:`billcore.gateway.API_VERSION` the module was written for
    (``None``: none declared); an incompatible module is refused at load. ``success_answer`` is the literal
    body the gateway must hear when billcore accepted a notification (and for every repeat of it), with
    ``{payment_id}`` standing for the payment's id (Robokassa: ``"OK{payment_id}"``); the conformance
    suite checks the module's real HTTP answers against it.
    """

    key: str
    title: str
    description: str = ""
    version: str = "0"
    logo: str | None = None
    features: frozenset[str] = frozenset()
    categories: tuple[str, ...] = ()
    currencies: tuple[str, ...] = ()
    secret_fields: tuple[str, ...] = ()
    registration_url: str | None = None
    development_only: bool = False
    api_version: str | None = None
    success_answer: str | None = None

    def expected_answer(self, payment_id: int) -> str | None:
        """:attr:`success_answer` for one payment (None when the module declares none)."""
        if self.success_answer is None:
            return None
        return self.success_answer.replace("{payment_id}", str(payment_id))


@dataclass(frozen=True)
class SetupItem:
    """One line of the gateway-side instructions: a label and a value the admin copies."""

    label: str
    value: str
    copy: bool = True


@dataclass(frozen=True)
class GatewaySetup:
    """What the admin must enter in the gateway's own cabinet, and warnings about this installation."""

    items: tuple[SetupItem, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StartAction:
    """The gateway's request that starts a payment: the browser goes to ``url`` by GET, or POSTs ``fields``
    to it from an auto-submitting form.

    A module's ``billcore_start_payment`` returns it; the core has already checked the payment (its owner,
    method and status) and marks it ``inpay`` before it sends the browser on. A POST to this site (a
    relative ``url``) gets the customer's CSRF token added when the page is rendered.
    """

    url: str
    method: str = "GET"
    fields: tuple[tuple[str, str], ...] = ()

    @property
    def posts_to_this_site(self) -> bool:
        """True for a POST whose target is this installation (it needs the client's CSRF token)."""
        return self.method.upper() == "POST" and self.url.startswith("/") and not self.url.startswith("//")


@dataclass(frozen=True)
class Customer:
    """Who is paying, as a start hook may tell the gateway: the user's id, e-mail and language
    (``"en"`` or ``"ru"``, the language the payment pages should use)."""

    user_id: int
    email: str
    language: str = "en"


class StartRefused(Exception):
    """Raised by ``billcore_start_payment`` when this payment cannot go to the gateway now (for example, the
    payment method lacks a setting). The message is shown to the customer: keep it short and free of
    secrets. Nothing has changed: the payment stays as it was."""


@dataclass(frozen=True)
class GatewayStatus:
    """What the gateway said about a payment when asked (``checkpay``).

    ``state`` is a :class:`GatewayState` (or its string): ``paid``, ``cancelled`` or ``pending`` (still
    open or unknown at the gateway); any other value raises :class:`InvalidState` here. For ``paid``,
    ``amount`` and ``currency`` are what the gateway received; the core checks them against the payment.
    """

    state: GatewayState
    amount: Decimal | None = None
    currency: str | None = None
    external_id: str | None = None
    info: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", parse_state(GatewayState, self.state))


@dataclass(frozen=True)
class RefundResult:
    """The gateway's answer to a refund request or a refund status query.

    ``state`` is a :class:`RefundState`: ``finished`` (money returned), ``pending`` (accepted, follow it
    with the refund-status hook) or ``failed`` (refused; ``info`` says why); any other value raises
    :class:`InvalidState` here.
    """

    state: RefundState
    external_id: str | None = None
    info: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", parse_state(RefundState, self.state))


@dataclass(frozen=True)
class ChargeResult:
    """The gateway's answer to a recurring charge, a :class:`ChargeState`: ``accepted`` (result comes
    later by notification or poll), ``paid`` (settled now), ``failed`` or ``error`` (unknown whether the
    gateway charged); any other value raises :class:`InvalidState` here."""

    state: ChargeState
    external_id: str | None = None
    info: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", parse_state(ChargeState, self.state))
