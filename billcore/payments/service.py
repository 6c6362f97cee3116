"""The payment service: the only code that changes a payment's status or an account's balance.

Every function runs in its own short transaction that first locks the payment (``SELECT ... FOR
UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite, which takes the database's write lock), checks
the status it may start from, and commits the status change, the event and the ledger entry together.
A repeat of a change already made is a no-op reported as ``already``; a change that the payment's
status does not allow raises :class:`IllegalTransition` and changes nothing. After a commit the
``billcore_payment_changed`` hook is broadcast.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import current_app, g, has_app_context, has_request_context
from flask_babel import gettext as _
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..crypto import scrub
from ..db import commit_without_waiting_for_the_disk, db, is_sqlite, sqlite_write_turn, writing_on_shared_connection
from ..models import Account, LedgerEntry, Payment, PaymentEvent, PaymentMethod, Refund, Status, utcnow
from ..states import RefundStatus
from ..write_priority import batch_write_slot
from .. import outbox
from ..money import MAX_AMOUNT, MoneyError, check_currency, commission, parse_amount, quantize
from ..paymethods import CallbackContext, context_of_row, decrypted_secrets
from ..prepared import PreparedLookup, PreparedWrite, execute_together

NEW, INPAY, PAID = Status.NEW.value, Status.INPAY.value, Status.PAID.value
CANCELLED, FRAUD = Status.CANCELLED.value, Status.FRAUD.value
PENDING_RETURN, RETURNED = Status.PENDING_RETURN.value, Status.RETURNED.value

# target status -> statuses it may be reached from. A cancelled payment may still be paid: money that
# arrives late is credited, never lost. A fraud payment is paid only by an admin (``manual=True``).
ALLOWED_FROM: dict[str, frozenset[str]] = {
    INPAY: frozenset({NEW}),
    PAID: frozenset({NEW, INPAY, CANCELLED}),
    CANCELLED: frozenset({NEW, INPAY}),
    FRAUD: frozenset({NEW, INPAY, CANCELLED}),
}
# the kind of event an admin must look at (shown on the payment's page)
ATTENTION = "attention"

# statuses in which a repeat of the change is "already done" rather than illegal
ALREADY: dict[str, frozenset[str]] = {
    INPAY: frozenset({INPAY}),
    PAID: frozenset({PAID, PENDING_RETURN, RETURNED}),
    CANCELLED: frozenset({CANCELLED}),
    FRAUD: frozenset({FRAUD}),
}


class PaymentError(Exception):
    """Base class of the service's refusals."""


class PaymentNotFound(PaymentError):
    """No payment (or refund) with that id."""


class IllegalTransition(PaymentError):
    """The payment's status does not allow the requested change; nothing was changed."""

    def __init__(self, payment_id: int, current: str, target: str):
        super().__init__(f"payment {payment_id} is {current}: cannot become {target}")
        self.payment_id, self.current, self.target = payment_id, current, target


class RefundError(PaymentError):
    """A refund that cannot be made (amount, status or method settings); nothing was changed."""


class PaymentCreateError(PaymentError):
    """A payment that cannot be created (method, amount or currency); nothing was created.

    The message is translated for the person who asked; ``code`` and ``params`` say the same for code
    that stores the reason and shows it later in someone else's language (automatic payments).
    """

    def __init__(self, message: str, code: str = "text", **params: Any):
        super().__init__(message)
        self.code, self.params = code, params


@dataclass(frozen=True)
class Outcome:
    """The result of a service call: the payment's status afterwards and whether it changed.

    ``result`` is ``changed``, ``already`` (the payment was already in the target state) or ``fraud``
    (the gateway's amount or currency did not match; the payment was flagged, nothing credited).
    """

    payment_id: int
    status: str
    result: str
    message: str = ""

    @property
    def changed(self) -> bool:
        """True when this call changed the payment."""
        return self.result != "already"

    @property
    def already(self) -> bool:
        """True when the payment was already in the target state."""
        return self.result == "already"


Answer = str | Callable[[Outcome], str] | None
# A gateway's check of a notification, run under the payment's lock before anything else (see set_paid)
Verifier = Callable[[CallbackContext], None]


# Session.info key of a write_transaction's session: the broadcasts of the status changes made in it
# (set_paid_in and the others), sent once it committed.
_AFTER_COMMIT = "billcore_after_commit"
# Session.info key of a write_transaction's session: the credits of the payments paid in it, written last,
# just before the commit (see _write_credits_last).
_CREDITS_LAST = "billcore_credits_last"
# The caller's write_transaction session that the status change being made joins (set_paid_in and the
# others set it around the call; the public functions' signatures stay as modules know them).
_JOINED: ContextVar[Session | None] = ContextVar("billcore_joined_write_transaction", default=None)


@contextmanager
def write_transaction() -> Iterator[Session]:
    """A session whose transaction holds the write lock from its first statement (see module doc).

    Status changes may join it (:func:`set_paid_in`, :func:`set_in_pay_in`, :func:`set_cancelled_in`,
    :func:`record_event_in`, :func:`create_payment_in`): they are then committed with the caller's own
    writes, and their ``billcore_payment_changed`` broadcasts follow the commit.
    """
    try:
        with Session(db.engine, expire_on_commit=False) as session:
            session.info[_AFTER_COMMIT] = []
            session.info[_CREDITS_LAST] = []
            # both held until the commit, not while the broadcasts run (a module's hook may call out)
            with batch_write_slot(), sqlite_write_turn():
                session.connection(execution_options={"billcore_write": True})
                try:
                    yield session
                    _write_credits_last(session)
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
            mark_committed()
            for outcome, old, kind in session.info.pop(_AFTER_COMMIT):
                _broadcast(outcome, old, kind)
    finally:
        # also after a refusal: the caller usually looks at the payment again to see why
        _end_request_snapshot()


def _write_credits_last(session: Session) -> None:
    """Credit the accounts of the payments paid in ``session`` (set_paid_in), after everything else the
    transaction writes, so that the account's lock is the last one taken and is held only until the
    commit right after.

    An account is what a notification for any of its payments locks too. Credited in the middle of a
    longer transaction (an automatic payment's booking, then its profile and period in the ORM), the
    account stayed locked through the rest of it; in a batch job of many threads a thread may wait
    many milliseconds for the GIL between two statements, and a notification for the same account waited
    with it. Accounts are locked in id order, and after every other row, as in every other writer.
    """
    credits = session.info[_CREDITS_LAST]
    if not credits:
        return
    session.flush()  # the ORM's pending writes first
    conn = session.connection()
    for credit in sorted(credits, key=lambda c: c["account_id"]):
        _credit(conn, **credit)
    credits.clear()


def _joined(session: Session) -> Connection:
    """The connection of a caller's :func:`write_transaction` that a status change joins."""
    if _AFTER_COMMIT not in session.info:
        raise ValueError("a status change joins only a session of payments.service.write_transaction()")
    return session.connection()


@contextmanager
def _joining(session: Session) -> Iterator[None]:
    """Make the service's changes called inside this block in ``session`` (see :func:`set_paid_in`)."""
    _joined(session)
    token = _JOINED.set(session)
    try:
        yield
    finally:
        _JOINED.reset(token)


def set_paid_in(session: Session, payment_id: int, **change: Any) -> Outcome:
    """:func:`set_paid` in the caller's :func:`write_transaction` ``session``: committed with the caller's
    own writes (an automatic payment's period booked with its child), broadcast after that commit. A
    refusal raises as :func:`set_paid` does and writes nothing; the caller's transaction goes on or not.

    The payment changes at once; its account is locked and credited only as the transaction ends, after
    the caller's own writes (see :func:`_write_credits_last`), so the balance read inside the block is
    still the one before the credit."""
    with _joining(session):
        return set_paid(payment_id, **change)


def set_in_pay_in(session: Session, payment_id: int, **change: Any) -> Outcome:
    """:func:`set_in_pay` in the caller's :func:`write_transaction` ``session`` (as :func:`set_paid_in`)."""
    with _joining(session):
        return set_in_pay(payment_id, **change)


def set_cancelled_in(session: Session, payment_id: int, **change: Any) -> Outcome:
    """:func:`set_cancelled` in the caller's :func:`write_transaction` ``session`` (as :func:`set_paid_in`)."""
    with _joining(session):
        return set_cancelled(payment_id, **change)


def record_event_in(session: Session, payment_id: int | None, **event: Any) -> None:
    """:func:`record_event` in the caller's :func:`write_transaction` ``session``."""
    with _joining(session):
        record_event(payment_id, **event)


@contextmanager
def write_connection() -> Iterator[Connection]:
    """Like :func:`write_transaction`, a Core connection in a transaction that holds the write lock.

    Used by the status changes, which run on every notification: a few Core statements cost a fraction
    of the ORM's unit of work (bench/notify.py). Inside :func:`billcore.db.request_connection` (a gateway
    callback) the transaction runs on the block's connection, after the callback's first look at the
    payment, instead of on a connection of its own.
    """
    try:
        with batch_write_slot(), sqlite_write_turn(), writing_on_shared_connection() as shared:
            if shared is None:
                with db.engine.connect() as conn:
                    conn.execution_options(billcore_write=True)
                    with conn.begin():
                        yield conn
            else:  # a gateway callback's connection (billcore.db.request_connection): no second checkout
                shared.execution_options(billcore_write=True, billcore_single_read=False)
                if shared.in_transaction() and is_sqlite(shared.engine):
                    # never continue a SQLite transaction that did not begin IMMEDIATE (the first look's
                    # read ran in autocommit and took no lock): end it, and BEGIN IMMEDIATE below
                    shared.rollback()
                # On PostgreSQL the transaction the first look began goes on (READ COMMITTED: the
                # locking SELECT reads the latest committed row): no second BEGIN.
                with shared.get_transaction() or shared.begin():
                    yield shared
        mark_committed()
    finally:
        _end_request_snapshot()


COMMITTED_FLAG = "billcore_write_committed"


def mark_committed() -> None:
    """Note on the request that a write was committed: an error after it must not look like "nothing
    changed" (the API then keeps the Idempotency-Key's answer instead of freeing the key for a retry)."""
    if has_request_context():
        setattr(g, COMMITTED_FLAG, True)


def committed_in_request() -> bool:
    """True when a write was committed during the current request."""
    return bool(has_request_context() and g.get(COMMITTED_FLAG))


def _end_request_snapshot() -> None:
    """Let the caller's request session see what was just committed.

    On SQLite (WAL) and PostgreSQL (repeatable read) a transaction that has read keeps its snapshot; a
    request session that only read is closed here so its next query starts fresh. One with pending
    changes of its own is left alone.
    """
    if not has_app_context() or not db.session.registry.has():
        return  # no request session yet: nothing to refresh (and none is made just to look at it)
    session = db.session()  # the scoped session's current Session
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        session.rollback()


def _connection(session: Session | Connection) -> Connection:
    return session.connection() if isinstance(session, Session) else session


def _lock_payment(session: Session, payment_id: int) -> Payment:
    payment = session.execute(
        select(Payment).where(Payment.id == payment_id).with_for_update(key_share=True)
    ).scalar_one_or_none()
    if payment is None:
        raise PaymentNotFound(f"no payment {payment_id}")
    return payment


_PAYMENTS, _ACCOUNTS = Payment.__table__, Account.__table__
_LEDGER, _EVENTS, _METHODS = LedgerEntry.__table__, PaymentEvent.__table__, PaymentMethod.__table__

# What a status change reads of the payment, under its lock, with its method's module, settings and
# encrypted secrets (for a gateway's ``verify`` and to scrub the event's data) in the same statement; a
# change to paid also locks and reads the account (payment first, then account: the order every other
# writer takes too), unless it joins a longer transaction, which credits the account last
# (_write_credits_last).
#
# Payments and accounts are locked ``FOR NO KEY UPDATE`` on PostgreSQL (key_share=True), the lock an
# UPDATE of their other columns takes anyway: it excludes every other writer of the row as FOR UPDATE
# does, but not the KEY SHARE lock that inserting a row referencing it takes (a new payment of the
# account, an event of the payment). With FOR UPDATE a notification waited for any transaction that
# was creating a payment for the same account (an automatic payment's claim) until it committed.
_PAYMENT_ROW_COLUMNS = (_PAYMENTS.c.id, _PAYMENTS.c.status, _PAYMENTS.c.account_id, _PAYMENTS.c.paymethod_id,
                        _PAYMENTS.c.amount, _PAYMENTS.c.total, _PAYMENTS.c.currency, _PAYMENTS.c.gateway_data,
                        _METHODS.c.module, _METHODS.c.active, _METHODS.c.settings, _METHODS.c.secrets_encrypted)
_PAYMENT_WITH_METHOD = _PAYMENTS.join(_METHODS, _METHODS.c.id == _PAYMENTS.c.paymethod_id)
_LOCK_PAYMENT_ROW = PreparedLookup(
    select(*_PAYMENT_ROW_COLUMNS).select_from(_PAYMENT_WITH_METHOD)
    .where(_PAYMENTS.c.id == bindparam("payment_id")).with_for_update(of=_PAYMENTS, key_share=True)
)
_LOCK_PAYMENT_AND_ACCOUNT_ROW = PreparedLookup(
    select(*_PAYMENT_ROW_COLUMNS, _ACCOUNTS.c.balance, _ACCOUNTS.c.currency.label("account_currency"))
    .select_from(_PAYMENT_WITH_METHOD.join(_ACCOUNTS, _ACCOUNTS.c.id == _PAYMENTS.c.account_id))
    .where(_PAYMENTS.c.id == bindparam("payment_id")).with_for_update(of=[_PAYMENTS, _ACCOUNTS], key_share=True)
)
# Built once, each value given as a parameter: the lookup and the writes of every status change run on
# the DBAPI cursor, compiled once per dialect (billcore.prepared: a fraction of Connection.execute's
# cost per statement); _LOCK_ACCOUNT (refunds, and the credits written last) goes through Connection.execute.
_UPDATE_PAYMENT = PreparedWrite(update(_PAYMENTS).where(_PAYMENTS.c.id == bindparam("b_payment_id")))
_LOCK_ACCOUNT = (select(_ACCOUNTS.c.balance, _ACCOUNTS.c.currency)
                 .where(_ACCOUNTS.c.id == bindparam("b_account_id")).with_for_update(key_share=True))
_UPDATE_BALANCE = PreparedWrite(update(_ACCOUNTS).where(_ACCOUNTS.c.id == bindparam("b_account_id"))
                                .values(balance=bindparam("b_balance")))
# inline(): the new ids are not fetched back (no RETURNING on PostgreSQL): nothing needs them
_INSERT_LEDGER, _INSERT_EVENT = PreparedWrite(insert(_LEDGER).inline()), PreparedWrite(insert(_EVENTS).inline())
_METHOD_TOKEN = select(_METHODS.c.secrets_encrypted).where(_METHODS.c.id == bindparam("b_paymethod_id"))
# what an event recorded without a status change needs of its payment (every poll that finds nothing new)
_PAYMENT_METHOD_ROW = PreparedLookup(select(_PAYMENTS.c.id, _PAYMENTS.c.paymethod_id, _METHODS.c.secrets_encrypted)
                                     .select_from(_PAYMENT_WITH_METHOD)
                                     .where(_PAYMENTS.c.id == bindparam("b_payment_id")))


def _secret_values_of(token: str | None) -> list[str]:
    """The secret values in a method's encrypted column (decryption cached, remembered for log masking)."""
    return [str(v) for v in decrypted_secrets(token).values() if v]


def _method_secret_values(conn: Connection, paymethod_id: int) -> list[str]:
    """The payment method's secret values, to scrub event data (cf. ``paymethods.secret_values``).

    Only the encrypted column is read and its decryption is cached: every notification records an
    event, and loading and decrypting the whole method each time showed in bench/notify.py's profile.
    """
    token = conn.execute(_METHOD_TOKEN, {"b_paymethod_id": paymethod_id}).scalar_one_or_none()
    return _secret_values_of(token)


def _event(session: Session | Connection, payment: Any, *, kind: str, source: str, outcome: str,
           data: Mapping[str, Any] | None, answer: str | None = None, actor: str | None = None,
           status_from: str | None = None, status_to: str | None = None,
           secrets: list[str] | None = None) -> None:
    """Insert a payment event; ``payment`` is a Payment or a row with ``id`` and ``paymethod_id``
    (or None). Its data is scrubbed of the method's secrets (``secrets`` when the caller has them)."""
    conn = _connection(session)
    if secrets is None:
        secrets = _method_secret_values(conn, payment.paymethod_id) if payment is not None else []
    _INSERT_EVENT.execute(conn, _event_values(payment, kind=kind, source=source, outcome=outcome, data=data,
                                              answer=answer, actor=actor, status_from=status_from,
                                              status_to=status_to, secrets=secrets))


def _event_values(payment: Any, *, kind: str, source: str, outcome: str, data: Mapping[str, Any] | None,
                  answer: str | None, actor: str | None, status_from: str | None, status_to: str | None,
                  secrets: list[str]) -> dict[str, Any]:
    """The row of an event (see :func:`_event`), for ``_INSERT_EVENT``."""
    return {"payment_id": payment.id if payment is not None else None,
            "kind": kind, "source": source, "outcome": outcome[:255], "answer": answer, "actor": actor,
            "status_from": status_from, "status_to": status_to,
            "data": scrub(dict(data or {}), secrets), "created_at": utcnow()}


def _answer_text(answer: Answer, outcome: Outcome) -> str | None:
    return answer(outcome) if callable(answer) else answer


def _broadcast(outcome: Outcome, old_status: str, kind: str) -> None:
    if not outcome.changed or not has_app_context():
        return
    registry = current_app.extensions.get("billcore.modules")
    if registry is not None:
        registry.broadcast("billcore_payment_changed", payment_id=outcome.payment_id,
                           old_status=old_status, new_status=outcome.status, event_kind=kind)
        _end_request_snapshot()  # a listener may have read through the request session


def _credit(session: Session | Connection, account_id: int, amount: Decimal, *, kind: str,
            payment_id: int | None, refund_id: int | None = None, note: str | None = None) -> Decimal:
    """Add ``amount`` (negative: debit) to the account under its lock and write the ledger entry;
    returns the balance afterwards. The sum is made in Decimal, never in the database's arithmetic."""
    conn = _connection(session)
    balance, currency = conn.execute(_LOCK_ACCOUNT, {"b_account_id": account_id}).one()
    balance, writes = _credit_writes(account_id, amount, kind=kind, payment_id=payment_id, refund_id=refund_id,
                                     note=note, locked=(balance, currency))
    execute_together(conn, writes)
    return balance


def _credit_writes(account_id: int, amount: Decimal, *, kind: str, payment_id: int | None,
                   refund_id: int | None, note: str | None,
                   locked: tuple[Decimal, str]) -> tuple[Decimal, list[tuple[PreparedWrite, dict[str, Any]]]]:
    """The balance after adding ``amount`` to ``locked`` (the account's balance and currency, read under
    its lock in this transaction), and the two writes that record it: the balance and the ledger entry."""
    balance, currency = locked
    balance = quantize(balance + amount, currency)
    return balance, [
        (_UPDATE_BALANCE, {"b_account_id": account_id, "b_balance": balance}),
        (_INSERT_LEDGER, {"account_id": account_id, "payment_id": payment_id, "refund_id": refund_id,
                          "kind": kind, "amount": amount, "balance_after": balance, "note": note,
                          "created_at": utcnow()}),
    ]


def _transition(payment_id: int, target: str, **change: Any) -> Outcome:
    """Move a payment to ``target`` under its lock (see :func:`_transition_on`), in a transaction of its
    own, or in the caller's session joined by :func:`set_paid_in` and the others (broadcast after its
    commit)."""
    session = _JOINED.get()
    if session is not None:
        outcome, old = _transition_on(session.connection(), payment_id, target,
                                      credit_later=session.info[_CREDITS_LAST], **change)
        session.info[_AFTER_COMMIT].append((outcome, old, change["kind"]))
        return outcome
    with write_connection() as conn:
        outcome, old = _transition_on(conn, payment_id, target, **change)
    _broadcast(outcome, old, change["kind"])
    return outcome


def _transition_on(conn: Connection, payment_id: int, target: str, *, kind: str, source: str, data,
                   info: str | None, answer: Answer, actor: str | None, external_id: str | None = None,
                   extra_allowed: frozenset[str] = frozenset(),
                   check: Callable[[Any], str | None] | None = None,
                   gateway_data: Mapping[str, Any] | None = None,
                   verify: Verifier | None = None,
                   credit_later: list[dict[str, Any]] | None = None) -> tuple[Outcome, str]:
    """Move a payment to ``target`` under its lock; ``check`` may divert the change to ``fraud`` by
    returning the reason (used by :func:`set_paid` for amount and currency mismatches); ``verify`` may
    refuse the whole call by raising (see :func:`set_paid`). Returns the outcome and the old status.

    On ``conn``, in its transaction, with billcore.prepared's statements: lock and read the payment (with
    its method's settings and, for a credit, the account), then update it, credit the account when paid
    and insert the event (on PostgreSQL as one statement). The caller commits and broadcasts. With
    ``credit_later`` (a joined write_transaction's list), the account is neither locked nor credited
    here: the credit is added to the list, for :func:`_write_credits_last` to write before the commit.
    """
    lock_account = target == PAID and credit_later is None
    payment = (_LOCK_PAYMENT_AND_ACCOUNT_ROW if lock_account else _LOCK_PAYMENT_ROW).one_or_none(
        conn, {"payment_id": payment_id})
    if payment is None:
        raise PaymentNotFound(f"no payment {payment_id}")
    if verify is not None:
        verify(context_of_row(payment))  # raising rolls back: nothing written, nothing recorded
    secrets = _secret_values_of(payment.secrets_encrypted)
    old = payment.status
    if old in ALREADY[target]:
        outcome = Outcome(payment.id, old, "already", f"payment {payment.id} is already {old}")
        # A repeat that disagrees with the payment (a signed notification of another amount for a
        # paid payment) changes nothing either, but is recorded for an admin to look at.
        disagrees = check(payment) if check is not None and old == target else None
        _event(conn, payment, kind=ATTENTION if disagrees else kind, source=source,
               outcome=f"{outcome.message}; repeat disagrees, {disagrees}" if disagrees else outcome.message,
               data=data, answer=_answer_text(answer, outcome), actor=actor, secrets=secrets)
        return outcome, old
    if old not in ALLOWED_FROM[target] | extra_allowed:
        raise IllegalTransition(payment.id, old, target)
    mismatch = check(payment) if check is not None else None
    if mismatch is not None:
        if old not in ALLOWED_FROM[FRAUD]:
            raise IllegalTransition(payment.id, old, FRAUD)
        target, result, info = FRAUD, Status.FRAUD.value, mismatch
    else:
        result = "changed"
    now = utcnow()
    values: dict[str, Any] = {"b_payment_id": payment.id, "status": target, "updated_at": now}
    if external_id:
        values["external_id"] = external_id[:128]
    if info:
        values["info"] = info
    if gateway_data:
        values["gateway_data"] = {**(payment.gateway_data or {}), **gateway_data}
    if target == PAID:
        values["paid_at"] = now
    outcome = Outcome(payment.id, target, result, info or f"{old} -> {target}")
    writes: list[tuple[PreparedWrite, dict[str, Any]]] = [(_UPDATE_PAYMENT, values)]
    credit: dict[str, Any] | None = None
    if target == PAID:
        credit = {"account_id": payment.account_id, "amount": payment.amount, "kind": "payment",
                  "payment_id": payment.id, "note": f"payment {payment.id}"}
        if credit_later is None:
            writes += _credit_writes(**credit, refund_id=None, locked=(payment.balance, payment.account_currency))[1]
    writes.append((_INSERT_EVENT, _event_values(
        payment, kind=kind, source=source, outcome=outcome.message, data=data,
        answer=_answer_text(answer, outcome), actor=actor, status_from=old, status_to=target,
        secrets=secrets)))
    # the outbox event, in the same statement on PostgreSQL: it exists exactly when the change does
    writes.append(outbox.outbox_write(outbox.PAYMENT_TYPES[target], outbox.payment_payload(
        payment, previous=old, status=target, kind=kind)))
    execute_together(conn, writes)  # on PostgreSQL one statement, one round trip
    if credit is not None and credit_later is not None:
        # queued only once the payment's change is written: a caller that caught a failure of these writes
        # and went on must not commit a credit without its paid payment
        credit_later.append(credit)
    return outcome, old


def create_payment(account_id: int, paymethod_id: int, amount: Decimal | str, *, source: str = "checkout",
                   actor: str | None = None, description: str | None = None,
                   check_limits: bool = True) -> Payment:
    """Create a ``new`` payment of ``amount`` (to be credited) through a method, adding its commission.

    Refused with :class:`PaymentCreateError` when the method is inactive, in another currency than the
    account, or ``amount`` is outside the method's minimum and maximum.
    """
    with write_transaction() as session:
        return create_payment_in(session, account_id, paymethod_id, amount, source=source, actor=actor,
                                 description=description, check_limits=check_limits)


def create_payment_in(session: Session, account_id: int, paymethod_id: int, amount: Decimal | str, *,
                      source: str = "checkout", actor: str | None = None, description: str | None = None,
                      check_limits: bool = True, gateway_data: Mapping[str, Any] | None = None) -> Payment:
    """:func:`create_payment` in the caller's :func:`write_transaction` ``session``, committed with the
    caller's own writes (an automatic payment's child with the period it charges): the payment, flushed
    so it has its id, and its ``created`` event. ``gateway_data`` is stored with it (never secrets).

    Creation touches no balance and no ledger. On a refusal (:class:`PaymentCreateError`) nothing was
    added to the session, so the caller may go on and record why.
    """
    _joined(session)
    account = session.get(Account, account_id)
    method = session.get(PaymentMethod, paymethod_id)
    if account is None or method is None:
        raise PaymentCreateError(_("Unknown account or payment method."))
    if not method.active:
        raise PaymentCreateError(_("This payment method is disabled."), "method_disabled")
    if method.currency != account.currency:
        raise PaymentCreateError(_("This payment method takes %(method)s; the account is in %(account)s.",
                                 method=method.currency, account=account.currency),
                                 "currency", method=method.currency, account=account.currency)
    try:
        value = parse_amount(amount, account.currency)
    except MoneyError as exc:
        raise PaymentCreateError(str(exc)) from None
    if value <= 0:
        raise PaymentCreateError(_("The amount must be positive."))
    if check_limits and method.min_amount is not None and value < method.min_amount:
        raise PaymentCreateError(_("The minimum amount is %(amount)s %(currency)s.", amount=method.min_amount,
                                 currency=method.currency),
                                 "min_amount", amount=str(method.min_amount), currency=method.currency)
    if check_limits and method.max_amount is not None and value > method.max_amount:
        raise PaymentCreateError(_("The maximum amount is %(amount)s %(currency)s.", amount=method.max_amount,
                                 currency=method.currency),
                                 "max_amount", amount=str(method.max_amount), currency=method.currency)
    fee = commission(value, account.currency, method.commission_amount or Decimal(0),
                     method.commission_percent or Decimal(0))
    if value + fee > MAX_AMOUNT:
        raise PaymentCreateError(_("The amount is too large."), "too_large")
    payment = Payment(account_id=account.id, paymethod_id=method.id, amount=value, commission=fee,
                      total=value + fee, currency=account.currency, status=NEW,
                      description=description, refunded_amount=Decimal("0.00"),
                      **({"gateway_data": dict(gateway_data)} if gateway_data else {}))
    session.add(payment)
    session.flush()
    # the method is loaded already: its secrets (to scrub the event) without another query
    _event(session, payment, kind="created", source=source, actor=actor, status_to=NEW,
           outcome=f"created: {value} + {fee} commission = {value + fee} {account.currency}", data={},
           secrets=_secret_values_of(method.secrets_encrypted))
    return payment


def set_in_pay(payment_id: int, *, source: str, data: Mapping[str, Any] | None = None, info: str | None = None,
               external_id: str | None = None, actor: str | None = None, kind: str = "redirect") -> Outcome:
    """Mark a ``new`` payment as sent to the gateway (``inpay``); ``already`` when it is ``inpay``."""
    return _transition(payment_id, INPAY, kind=kind, source=source, data=data, info=info, answer=None,
                       actor=actor, external_id=external_id)


def set_paid(payment_id: int, *, amount: Decimal, currency: str, source: str,
             data: Mapping[str, Any] | None = None, info: str | None = None, external_id: str | None = None,
             answer: Answer = None, actor: str | None = None, kind: str = "notification",
             manual: bool = False, gateway_data: Mapping[str, Any] | None = None,
             verify: Verifier | None = None) -> Outcome:
    """Credit a payment once: ``amount`` and ``currency`` are what the gateway says it received.

    They must equal the payment's ``total`` and ``currency`` exactly (``amount`` compared as a Decimal at
    the currency's minor unit); otherwise the payment is flagged ``fraud`` and nothing is credited.
    A repeat finds the payment already paid and reports ``already``. ``manual`` lets an admin pay a
    ``fraud`` payment. ``answer`` (text or a function of the outcome) is recorded as the reply given.
    ``gateway_data`` is merged into the payment's gateway data in the same transaction when the payment
    changes (as :func:`set_gateway_data` would, without a second transaction per notification).

    ``verify``, when given, is called with the payment's :class:`~billcore.paymethods.CallbackContext`
    (its method's module and full settings) under the payment's lock, before anything else is looked at:
    a notification handler checks the signature there and raises its own exception to refuse. The call
    then rolls back and the exception reaches the caller, with nothing written (record the refusal with
    :func:`record_event`). One transaction per notification instead of a read before the service's; keep
    ``verify`` to checks in memory (no network), since it holds the lock (on SQLite, the database's write
    lock: a forged notification takes it too, once to be checked and once to record the refusal).
    """
    if isinstance(amount, float):
        raise TypeError("amount must be a Decimal, never a float")

    def check(payment: Payment) -> str | None:
        try:
            got_currency = check_currency(currency)
        except Exception:
            got_currency = str(currency)[:8]
        if got_currency != payment.currency:
            return f"currency mismatch: gateway {got_currency}, payment {payment.currency}"
        if Decimal(amount) != quantize(Decimal(amount), payment.currency) or \
                quantize(Decimal(amount), payment.currency) != payment.total:
            return f"amount mismatch: gateway {amount}, payment {payment.total} {payment.currency}"
        return None

    return _transition(payment_id, PAID, kind=kind, source=source, data=data, info=info, answer=answer,
                       actor=actor, external_id=external_id,
                       extra_allowed=frozenset({FRAUD}) if manual else frozenset(), check=check,
                       gateway_data=gateway_data, verify=verify)


def set_cancelled(payment_id: int, *, source: str, reason: str, data: Mapping[str, Any] | None = None,
                  answer: Answer = None, actor: str | None = None, kind: str = "notification",
                  verify: Verifier | None = None) -> Outcome:
    """Cancel a ``new`` or ``inpay`` payment; a paid one is never undone (:class:`IllegalTransition`).
    ``verify`` is as in :func:`set_paid`."""
    return _transition(payment_id, CANCELLED, kind=kind, source=source, data=data, info=reason,
                       answer=answer, actor=actor, verify=verify)


def set_fraud(payment_id: int, *, source: str, reason: str, data: Mapping[str, Any] | None = None,
              answer: Answer = None, actor: str | None = None, kind: str = "notification") -> Outcome:
    """Flag an unpaid payment for an admin's attention (BILLmanager's *fraud*); nothing is credited."""
    return _transition(payment_id, FRAUD, kind=kind, source=source, data=data, info=reason, answer=answer,
                       actor=actor)


def record_event(payment_id: int | None, *, kind: str, source: str, outcome: str,
                 data: Mapping[str, Any] | None = None, answer: str | None = None,
                 actor: str | None = None, wait_for_disk: bool = True) -> None:
    """Record something that happened without changing the payment (a rejected notification, a return
    page, a poll that found nothing new). ``payment_id`` may be None when the payment is unknown.
    ``wait_for_disk=False`` (PostgreSQL): its commit does not wait for the disk, which keeps it from
    holding up the commits behind it; only for an event whose loss in a crash of the database's machine
    nothing depends on, such as a poll's answer that changed nothing. Ignored when the event joins a
    caller's transaction."""
    session = _JOINED.get()
    if session is not None:  # record_event_in: in the caller's transaction
        _record_event_on(session.connection(), payment_id, kind=kind, source=source, outcome=outcome, data=data,
                         answer=answer, actor=actor)
        return
    with write_connection() as conn:
        if not wait_for_disk:
            commit_without_waiting_for_the_disk(conn)
        _record_event_on(conn, payment_id, kind=kind, source=source, outcome=outcome, data=data, answer=answer,
                         actor=actor)


def _record_event_on(conn: Connection, payment_id: int | None, **event: Any) -> None:
    payment = _PAYMENT_METHOD_ROW.one_or_none(conn, {"b_payment_id": payment_id}) if payment_id is not None else None
    _event(conn, payment, secrets=_secret_values_of(payment.secrets_encrypted) if payment is not None else [],
           **event)


def request_refund(payment_id: int, amount: Decimal | str, *, source: str, reason: str | None = None,
                   actor: str | None = None) -> Refund:
    """Start a refund of ``amount`` (at most what was credited and not yet refunded) of a paid payment.

    The payment becomes ``pending_return`` and the amount is debited from the balance at once (so it
    cannot be spent meanwhile); :func:`finish_refund` or :func:`fail_refund` settles it.
    """
    with write_transaction() as session:
        payment = _lock_payment(session, payment_id)
        method = session.get(PaymentMethod, payment.paymethod_id)
        if payment.status != PAID:
            from ..templating import status_label  # the status by its translated name, never its code

            raise RefundError(_("Payment %(id)s is “%(status)s”: only a paid payment can be refunded.", id=payment.id,
                                status=status_label(payment.status)))
        if not method.allow_refund:
            raise RefundError(_("Refunds are not allowed for this payment method."))
        try:
            value = parse_amount(amount, payment.currency)
        except MoneyError as exc:
            raise RefundError(str(exc)) from None
        if value <= 0:
            raise RefundError(_("The refund amount must be positive."))
        if value > payment.refundable:
            raise RefundError(_("At most %(amount)s %(currency)s can be refunded.", amount=payment.refundable,
                                currency=payment.currency))
        refund = Refund(payment_id=payment.id, amount=value, status=RefundStatus.REQUESTED, reason=reason, actor=actor)
        session.add(refund)
        session.flush()
        payment.refunded_amount = payment.refunded_amount + value
        payment.status = PENDING_RETURN
        payment.updated_at = utcnow()
        _credit(session, payment.account_id, -value, kind="refund", payment_id=payment.id, refund_id=refund.id,
                note=f"refund {refund.id} of payment {payment.id}")
        _event(session, payment, kind="refund", source=source, actor=actor, status_from=PAID,
               status_to=PENDING_RETURN, outcome=f"refund {refund.id} of {value} {payment.currency} requested",
               data={"refund_id": refund.id, "amount": str(value), "reason": reason or ""})
        outbox.record(session, "refund.requested", outbox.payment_payload(
            payment, previous=PAID, status=PENDING_RETURN, kind="refund", refund_id=refund.id,
            refund_amount=str(value)))
    _broadcast(Outcome(payment_id, PENDING_RETURN, "changed"), PAID, "refund")
    return refund


def _settle_refund(refund_id: int, *, succeeded: bool, source: str, external_id: str | None,
                   data: Mapping[str, Any] | None, info: str | None, actor: str | None) -> Outcome:
    with write_transaction() as session:
        refund = session.get(Refund, refund_id)
        if refund is None:
            raise PaymentNotFound(f"no refund {refund_id}")
        payment = _lock_payment(session, refund.payment_id)
        session.refresh(refund, with_for_update=True)
        final = RefundStatus.FINISHED if succeeded else RefundStatus.FAILED
        if refund.status in (RefundStatus.FINISHED, RefundStatus.FAILED):
            outcome = Outcome(payment.id, payment.status, "already", f"refund {refund.id} is already {refund.status}")
            _event(session, payment, kind="refund", source=source, outcome=outcome.message, data=data, actor=actor)
            return outcome
        old = payment.status
        refund.status = final
        refund.updated_at = utcnow()
        if external_id:
            refund.external_id = external_id[:128]
        if not succeeded:
            payment.refunded_amount = payment.refunded_amount - refund.amount
            _credit(session, payment.account_id, refund.amount, kind="refund_reversal", payment_id=payment.id,
                    refund_id=refund.id, note=f"refund {refund.id} failed")
        new = RETURNED if payment.refunded_amount >= payment.amount else PAID
        payment.status = new
        payment.updated_at = utcnow()
        outcome = Outcome(payment.id, new, "changed",
                          info or f"refund {refund.id} {final}")
        _event(session, payment, kind="refund", source=source, outcome=outcome.message, data=data, actor=actor,
               status_from=old, status_to=new)
        outbox.record(session, f"refund.{final}", outbox.payment_payload(
            payment, previous=old, status=new, kind="refund", refund_id=refund.id,
            refund_amount=str(refund.amount)))
    _broadcast(outcome, old, "refund")
    return outcome


def finish_refund(refund_id: int, *, source: str, external_id: str | None = None,
                  data: Mapping[str, Any] | None = None, info: str | None = None, actor: str | None = None) -> Outcome:
    """The gateway returned the money: the payment becomes ``returned`` (all refunded) or ``paid``."""
    return _settle_refund(refund_id, succeeded=True, source=source, external_id=external_id, data=data,
                          info=info, actor=actor)


def fail_refund(refund_id: int, *, source: str, data: Mapping[str, Any] | None = None, info: str | None = None,
                actor: str | None = None) -> Outcome:
    """The gateway refused the refund: the amount goes back to the balance and the payment is ``paid``."""
    return _settle_refund(refund_id, succeeded=False, source=source, external_id=None, data=data, info=info,
                          actor=actor)


def set_refund_external_id(refund_id: int, external_id: str) -> None:
    """Remember the gateway's id of a pending refund, to follow its state later."""
    with write_transaction() as session:
        refund = session.get(Refund, refund_id)
        if refund is None:
            raise PaymentNotFound(f"no refund {refund_id}")
        refund.external_id = external_id[:128]


def set_gateway_data(payment_id: int, **values: Any) -> None:
    """Merge module-specific facts about a payment (an operation key, a receipt id) into its record.

    Not a state change: modules keep what they need to poll or refund later. Never pass secrets.
    """
    with write_transaction() as session:
        payment = _lock_payment(session, payment_id)
        merged = dict(payment.gateway_data or {})
        merged.update(values)
        payment.gateway_data = merged
