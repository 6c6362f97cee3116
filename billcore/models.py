"""The data model: users, accounts, payment methods, payments, their events, refunds and the ledger."""
from __future__ import annotations

import enum
import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from flask import current_app, has_app_context
from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    TypeDecorator,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .db import db
from .states import ChargeStatus, ProfileStatus, RefundStatus, Status  # noqa: F401  (re-exported: billcore.models.Status)

Money = Numeric(18, 2, asdecimal=True)


class UTCDateTime(TypeDecorator):
    """A UTC timestamp that comes back timezone-aware from every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        if value is not None and dialect.name == "sqlite":
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (stored naive-UTC by SQLite, with zone by PostgreSQL)."""
    return datetime.now(timezone.utc)


class Role(str, enum.Enum):
    """What a user may do: manage the billing (``admin``) or pay into its own account (``client``)."""

    ADMIN = "admin"
    CLIENT = "client"


# scrypt's cost (about 50 ms a hash) is the point in production and most of the time of a test that
# creates users; the cheap method is used only by an app that is TESTING *and* asks for it.
PASSWORD_HASH = "scrypt"
CHEAP_TEST_PASSWORD_HASH = "pbkdf2:sha256:1"


def password_hash_method() -> str:
    """The hash for new passwords: scrypt, except in a ``TESTING`` app with ``TEST_CHEAP_PASSWORD_HASH``
    set (the test fixtures set it), which gets a one-round PBKDF2. Production never reads that setting
    without ``TESTING``, so a stray config value cannot weaken real passwords."""
    if has_app_context() and current_app.testing and current_app.config.get("TEST_CHEAP_PASSWORD_HASH"):
        return CHEAP_TEST_PASSWORD_HASH
    return PASSWORD_HASH


class User(UserMixin, db.Model):
    """A person who logs in: an administrator or a client user of one account."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.CLIENT.value)
    language: Mapped[str | None] = mapped_column(String(8))
    # an IANA zone name for the dates the pages show; None: the configuration's DEFAULT_TIMEZONE
    timezone: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # Part of every session's login (``<id>.<version>``): raising it ends every session of the user.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    account: Mapped[Account | None] = relationship(back_populates="users")

    def set_password(self, password: str) -> None:
        """Store a salted hash of ``password`` (scrypt; see :func:`password_hash_method`) and end the
        user's sessions made with the old one. The password policy is :func:`billcore.accounts.check_password`'s."""
        self.password_hash = generate_password_hash(password, method=password_hash_method())
        self.session_version = (self.session_version or 0) + 1

    def get_id(self) -> str:  # Flask-Login: what the session keeps
        return f"{self.id}.{self.session_version or 0}"

    def check_password(self, password: str) -> bool:
        """True when ``password`` matches the stored hash."""
        return check_password_hash(self.password_hash, password)

    @property
    def is_admin(self) -> bool:
        """True for administrators."""
        return self.role == Role.ADMIN.value

    @property
    def is_active(self) -> bool:  # Flask-Login
        return bool(self.active)


class Account(db.Model):
    """A client of the provider: one currency, one balance that always equals the sum of its ledger."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    balance: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="account")


class PaymentMethod(db.Model):
    """A payment module turned into something clients can pay with (the wizard's result).

    ``settings`` holds the module's public integration settings; the private ones (passwords, keys) live
    encrypted in ``secrets_encrypted`` and are reached through :mod:`billcore.paymethods`.
    """

    __tablename__ = "paymethods"

    id: Mapped[int] = mapped_column(primary_key=True)
    module: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    name_ru: Mapped[str | None] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    min_amount: Mapped[Decimal | None] = mapped_column(Money)
    max_amount: Mapped[Decimal | None] = mapped_column(Money)
    commission_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    commission_percent: Mapped[Decimal] = mapped_column(Numeric(7, 4), default=Decimal("0"))
    delete_after_days: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    allow_refund: Mapped[bool] = mapped_column(Boolean, default=False)
    recurring: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text)
    description_ru: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets_encrypted: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    def display_name(self, language: str | None = None) -> str:
        """The name shown to clients in ``language`` (Russian when set, English otherwise)."""
        if language == "ru" and self.name_ru:
            return self.name_ru
        return self.name

    def display_description(self, language: str | None = None) -> str:
        """The description shown to clients in ``language``."""
        if language == "ru" and self.description_ru:
            return self.description_ru
        return self.description or ""


class Payment(db.Model):
    """A client's top-up through a payment method.

    ``amount`` is what is credited to the balance; ``total`` is what the client pays at the gateway
    (``amount`` plus ``commission``). Only :mod:`billcore.payments.service` changes ``status``.
    """

    __tablename__ = "payments"
    __table_args__ = (
        Index("ix_payments_status_id", "status", "id"),
        Index("ix_payments_account_id_id", "account_id", "id"),
        Index("ix_payments_paymethod_id_id", "paymethod_id", "id"),
        Index("ix_payments_created_at_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    paymethod_id: Mapped[int] = mapped_column(ForeignKey("paymethods.id"))
    amount: Mapped[Decimal] = mapped_column(Money)
    commission: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    total: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=Status.NEW.value)
    external_id: Mapped[str | None] = mapped_column(String(128))
    refunded_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    description: Mapped[str | None] = mapped_column(String(255))
    info: Mapped[str | None] = mapped_column(Text)
    gateway_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    account: Mapped[Account] = relationship()
    paymethod: Mapped[PaymentMethod] = relationship()
    events: Mapped[list[PaymentEvent]] = relationship(
        back_populates="payment", order_by="PaymentEvent.id", viewonly=True
    )
    refunds: Mapped[list[Refund]] = relationship(order_by="Refund.id", viewonly=True)

    @property
    def refundable(self) -> Decimal:
        """How much of ``amount`` can still be refunded."""
        return self.amount - (self.refunded_amount or Decimal("0"))


class PaymentEvent(db.Model):
    """One thing that happened to a payment (append-only): a notification, a return, a poll, a status
    change or an admin's action, with its raw data less secrets, its outcome and the answer given."""

    __tablename__ = "payment_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(64))
    status_from: Mapped[str | None] = mapped_column(String(16))
    status_to: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(255))
    answer: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    payment: Mapped[Payment | None] = relationship(back_populates="events")

    @property
    def data_text(self) -> str:
        """The raw data as indented JSON, for the admin's history view."""
        return json.dumps(self.data or {}, indent=2, ensure_ascii=False, sort_keys=True)


class Refund(db.Model):
    """A refund of (part of) a paid payment: requested, then finished or failed at the gateway."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.REQUESTED.value)  # a RefundStatus
    external_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LedgerEntry(db.Model):
    """A change of an account's balance. The partial unique indexes make a second credit of the same
    payment, or a second entry for the same refund, impossible at the database level."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index(
            "uq_ledger_payment_credit",
            "payment_id",
            unique=True,
            postgresql_where=text("kind = 'payment'"),
            sqlite_where=text("kind = 'payment'"),
        ),
        Index(
            "uq_ledger_refund_kind",
            "refund_id",
            "kind",
            unique=True,
            postgresql_where=text("refund_id IS NOT NULL"),
            sqlite_where=text("refund_id IS NOT NULL"),
        ),
        Index("ix_ledger_account_id_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    kind: Mapped[str] = mapped_column(String(32))  # payment | refund | refund_reversal
    amount: Mapped[Decimal] = mapped_column(Money)
    balance_after: Mapped[Decimal] = mapped_column(Money)
    note: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PaymethodDraft(db.Model):
    """The add-wizard's state, kept on the server so no secret travels in the session cookie."""

    __tablename__ = "paymethod_drafts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    module: Mapped[str | None] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer, default=1)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets_encrypted: Mapped[str | None] = mapped_column(Text)
    method_settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RecurringProfile(db.Model):
    """A client's auto-payment: charges against a stored parent payment, by a rule.

    ``rule`` is ``fixed`` (``amount`` every month on ``charge_day``) or ``threshold`` (``amount`` whenever
    the balance is below ``threshold``). ``monthly_max`` caps what the profile's children may total in a
    calendar month. Only :mod:`billcore.recurring` changes a profile.
    """

    __tablename__ = "recurring_profiles"
    __table_args__ = (
        Index("ix_recurring_profiles_status_next", "status", "next_charge_at"),
        Index("ix_recurring_profiles_account_id_id", "account_id", "id"),
        # at most one live (active or suspended) profile per parent payment, even with concurrent opt-ins
        Index("uq_recurring_profiles_live_parent", "parent_payment_id", unique=True,
              sqlite_where=text("status IN ('active', 'suspended')"),
              postgresql_where=text("status IN ('active', 'suspended')")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    paymethod_id: Mapped[int] = mapped_column(ForeignKey("paymethods.id"))
    parent_payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    rule: Mapped[str] = mapped_column(String(16))  # fixed | threshold
    amount: Mapped[Decimal] = mapped_column(Money)
    threshold: Mapped[Decimal | None] = mapped_column(Money)
    monthly_max: Mapped[Decimal] = mapped_column(Money)
    charge_day: Mapped[int | None] = mapped_column(Integer)  # fixed rule: day of the month (clamped)
    status: Mapped[str] = mapped_column(String(16), default=ProfileStatus.ACTIVE.value)  # a ProfileStatus
    next_charge_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sequence: Mapped[int] = mapped_column(Integer, default=0)  # threshold rule: top-ups made so far
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failed charges
    # The last error, untranslated (English) for logs and the CLI; pages render it in the reader's language
    # from its code and parameters (billcore.recurring.error_text). Rows without a code show last_error.
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_code: Mapped[str | None] = mapped_column(String(32))
    last_error_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    actor: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    account: Mapped[Account] = relationship()
    paymethod: Mapped[PaymentMethod] = relationship()
    parent: Mapped[Payment] = relationship()


class RecurringCharge(db.Model):
    """One period of a profile (``2026-11`` for the fixed rule, ``t3`` for the third threshold top-up)
    and the child payment charged for it. The unique (profile, period) pair is what makes a second
    charge for the same period impossible, even from two hosts at once; a retry after a failed charge
    replaces ``payment_id`` (the failed child stays cancelled in the payments list)."""

    __tablename__ = "recurring_charges"
    __table_args__ = (
        UniqueConstraint("profile_id", "period", name="uq_recurring_charges_profile_period"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("recurring_profiles.id"))
    period: Mapped[str] = mapped_column(String(32))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=ChargeStatus.CLAIMED.value)  # a ChargeStatus
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    info: Mapped[str | None] = mapped_column(Text)
    charged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the latest attempt (monthly maximum)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    payment: Mapped[Payment | None] = relationship()


class ApiToken(db.Model):
    """A bearer token of the JSON API: shown once when made, stored as its SHA-256 only.

    ``scopes`` is ``read`` or ``read write``; ``prefix`` (the token's first characters) lets an admin
    tell tokens apart without the secret. A revoked token stays listed and never works again.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def scope_list(self) -> list[str]:
        """The scopes as a list (``["read"]`` or ``["read", "write"]``)."""
        return self.scopes.split()


class ApiIdempotency(db.Model):
    """The first answer to a write sent with an ``Idempotency-Key``, replayed for a repeat of that key
    by the same token. ``status_code`` is None while the first request is still running."""

    __tablename__ = "api_idempotency"
    __table_args__ = (
        UniqueConstraint("token_id", "key", name="uq_api_idempotency_token_key"),
        Index("ix_api_idempotency_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookEndpoint(db.Model):
    """Where an admin wants events sent: a URL, the event types, and a signing secret (encrypted)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(200))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive deliveries given up
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OutboxEvent(db.Model):
    """Something that happened, written in the same transaction as the change itself (the outbox).

    ``webhooks deliver`` fans each event out into deliveries (one per subscribed endpoint, one e-mail
    for a customer notice) and marks it dispatched in the same transaction.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_dispatched_id", "dispatched", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Delivery(db.Model):
    """One event sent one way: to a webhook endpoint (``channel`` webhook) or as an e-mail (``email``).

    ``state`` is ``pending`` (to be sent at ``next_attempt_at``), ``delivered`` or ``failed`` (given up).
    The last answer (status and the start of the body, or the error) is kept for the admin.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "channel", "endpoint_id", name="uq_deliveries_event_channel_endpoint"),
        Index("ix_deliveries_state_next", "state", "next_attempt_at"),
        Index("ix_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id"))
    channel: Mapped[str] = mapped_column(String(16))
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoints.id"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_answer: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    event: Mapped[OutboxEvent] = relationship()
    endpoint: Mapped[WebhookEndpoint | None] = relationship()
