"""``flask --app billcore payments check``: poll open payments and follow pending refunds at the gateways.

For every loaded module with ``checkpay`` the ``inpay`` payments are asked about through
:func:`polling.check_payment` (which applies the answer through the payment service), and for every
module with ``refund`` the refunds still ``requested`` are followed through :func:`refunds.follow_refund`:
those with a gateway id on every run, those without one (the gateway's answer to the request was lost)
once they are overdue, so that they are flagged for an admin (``attention``) instead of waiting forever.

Both go through one claim-and-process loop. An unexpected exception on one payment or refund is logged
(secrets masked, see :mod:`billcore.logs`), counted in ``SweepResult.errors`` and the run goes on.

Gateway calls run concurrently, one bounded pool of threads per module (:mod:`billcore.gateway_pool`,
``GATEWAY_WORKERS``); each row is processed in its own app context and session, and no row lock is
held while a gateway is being asked (the session's read transaction is ended before the call).

Safe on several hosts at once: candidate rows are selected ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
(rows being changed right now are skipped) and each payment or refund is then claimed with a
transaction-independent advisory lock for the duration of the gateway call, so two hosts never ask about
the same payment at the same time. Once a payment is claimed, it is skipped when it is no longer
``inpay`` or another host already asked about it during this run (its history has a poll since the run
started, or less than ``CHECK_AGAIN_AFTER_SECONDS`` before it: the other host's cron may have started a
moment earlier), so two hosts sweeping together share the work instead of each asking about everything.
Correctness never depends on these locks: the service re-reads each payment under its own row lock and
reports a repeat as ``already``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import click
from flask import current_app
from flask.cli import with_appcontext
from psycopg import pq
from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.engine import Connection

from ..db import db, is_sqlite, request_connection, shared_connection
from ..gateway_pool import run_each, workers_for
from ..models import Payment, PaymentEvent, PaymentMethod, Refund, utcnow
from ..paymodule import FEATURE_CHECKPAY, FEATURE_REFUND
from ..plugins import get_registry
from . import service
from .polling import PollError, check_payment, check_query, load_for_check
from .refunds import ATTENTION, attention_after, follow_refund

log = logging.getLogger(__name__)

# Advisory-lock namespaces (first key of pg_try_advisory_lock(int, int)).
POLL_LOCK = 0x626370  # "bcp"
REFUND_LOCK = 0x626372  # "bcr"
SOURCE = "cron"
# The first key as locked: advisory locks are per database, not per schema, so two installations in
# schemas of one database (or parallel test processes) would otherwise hold each other's payment ids. The
# schema goes into the namespace key: SQLAlchemy's form (the namespace as ``:ns``) and the driver's.
_SCOPED_NAMESPACE = "hashtext(current_schema() || ':' || CAST({ns} AS text))"
SCOPED_NAMESPACE = _SCOPED_NAMESPACE.format(ns=":ns")


def lock_key(object_id: int) -> int:
    """The second key of a row's claim: the two-key advisory lock takes int4, and a rare collision only
    makes a host skip a row another holds."""
    return object_id % 2_147_483_647


@dataclass
class SweepResult:
    """Counts of what one run did; ``errors`` lists "payment N: reason" lines (``error_count`` of them)."""

    checked: int = 0
    paid: int = 0
    cancelled: int = 0
    fraud: int = 0
    unchanged: int = 0
    skipped: int = 0
    # in pay, but asked about less than CHECK_AGAIN_AFTER_SECONDS ago: left for a later run
    asked_recently: int = 0
    refunds_followed: int = 0
    refunds_finished: int = 0
    refunds_failed: int = 0
    refunds_attention: int = 0
    errors: list[str] = field(default_factory=list)
    # how long each pass took (wall time): the payments polled, then the refunds followed
    payments_seconds: float = 0.0
    refunds_seconds: float = 0.0
    # the pool's threads update the counters of one result
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def error_count(self) -> int:
        """How many payments or refunds could not be processed."""
        return len(self.errors)

    def bump(self, counter: str, by: int = 1) -> None:
        """Add ``by`` to ``counter`` (safe from several threads)."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + by)

    def error(self, line: str) -> None:
        """Record one error line (safe from several threads)."""
        with self._lock:
            self.errors.append(line)


def modules_with(feature: str, only: Iterable[str] = ()) -> list[str]:
    """Keys of the loaded modules declaring ``feature`` (limited to ``only`` when given)."""
    registry = get_registry()
    wanted = set(only)
    return sorted(key for key in registry.modules
                  if registry.has_feature(key, feature) and (not wanted or key in wanted))


def locked_candidates(query):
    """``query`` (ids of the swept rows, joined to their method) locking only the swept rows, skipping
    those another host holds. Locking the joined payment-method row too would make a second host skip
    every payment of that method while the first selects, and end its pass with nothing done."""
    return query.with_for_update(skip_locked=True, of=query.selected_columns[0].table)


def _candidates(query, batch: int) -> list[int]:
    if not is_sqlite(db.engine):
        query = locked_candidates(query)
    ids = list(db.session.execute(query.limit(batch)).scalars())
    db.session.commit()  # release the row locks at once: the service takes its own per payment
    return ids


@contextmanager
def claim(namespace: int, object_id: int) -> Iterator[bool]:
    """Hold an advisory lock on ``(namespace, object_id)`` while the body runs; yields False when another
    host holds it. SQLite serves one host, so there it always succeeds.

    The lock belongs to a connection, not to a transaction, so it is taken on a connection that stays
    checked out for the body: inside :func:`billcore.db.request_connection` the block's own, which the
    payment service's writes of the body then use too (so a thread holds one connection through the
    gateway call and its writes, not two); else one of its own.
    """
    if is_sqlite(db.engine):
        yield True
        return
    shared = shared_connection()
    if shared is not None:
        with _locked(shared, namespace, object_id) as got:
            yield got
        return
    with db.engine.connect() as conn, _locked(conn, namespace, object_id) as got:
        yield got


@contextmanager
def _locked(conn: Connection, namespace: int, object_id: int) -> Iterator[bool]:
    params = {"ns": namespace, "key": lock_key(object_id)}
    got = bool(_closing_on_failure(conn, _LOCK, params))
    try:
        yield got
    finally:
        if got and not conn.invalidated:  # a connection lost meanwhile took its lock with it
            _end_transactions(conn)
            _closing_on_failure(conn, _UNLOCK, params)


def _end_transactions(conn: Connection) -> None:
    """Roll back what is still open on ``conn`` when its item is done: a transaction the body failed in
    (what it did is undone anyway), and one the driver began for a read that SQLAlchemy did not see
    (:mod:`billcore.prepared` runs on the driver's cursor, e.g. a module's hook looking at the payment
    through ``gateway.callback_context`` after the item's last write)."""
    if conn.in_transaction():
        conn.rollback()
    driver = conn.connection.driver_connection
    if driver.info.transaction_status != pq.TransactionStatus.IDLE:
        driver.rollback()


def _closing_on_failure(conn: Connection, sql: str, params: dict[str, int]) -> object:
    """:func:`_outside_transaction`, closing the connection when it fails: a connection whose lock or
    unlock failed must not go back to the pool still holding a lock (its session's end releases it)."""
    try:
        return _outside_transaction(conn, sql, params)
    except Exception:
        conn.invalidate()
        raise


_LOCK = f"SELECT pg_try_advisory_lock({_SCOPED_NAMESPACE.format(ns='%(ns)s')}, %(key)s)"
_UNLOCK = f"SELECT pg_advisory_unlock({_SCOPED_NAMESPACE.format(ns='%(ns)s')}, %(key)s)"


def _outside_transaction(conn: Connection, sql: str, params: dict[str, int]) -> object:
    """Run one statement (psycopg's placeholders) on ``conn``'s driver connection in autocommit: no BEGIN
    and COMMIT round trips around it, and no transaction left open.

    Taken below SQLAlchemy on purpose: its way there (an isolation-level change, a Transaction object
    that sends nothing, and the change undone) cost about a fifth of a poll's CPU, for two statements
    that need none of it. ``conn`` must not be inside a transaction.
    """
    driver = conn.connection.driver_connection
    driver.autocommit = True
    try:
        with driver.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
    finally:
        driver.autocommit = False
    return row[0] if row else None


@dataclass(frozen=True)
class Pass:
    """One kind of row the sweep goes through for one module: ``query(after_id)`` selects candidate ids
    in id order, ``process(id)`` handles one claimed row (and updates the result), reading it again first
    (another host may have handled it meanwhile)."""

    what: str  # "payment" or "refund", for the error lines and the log
    lock: int
    query: Callable[[int], Select]
    process: Callable[[int], None]


def _candidate_ids(job: Pass, batch: int) -> Iterator[int]:
    after_id = 0
    while True:
        ids = _candidates(job.query(after_id), batch)
        if not ids:
            return
        after_id = ids[-1]
        yield from ids


def run_pass(job: Pass, result: SweepResult, batch: int, workers: int = 1) -> None:
    """Claim and process every candidate of ``job``, ``batch`` ids per query, on ``workers`` threads.

    A row claimed by another host (or already handled by one during this run) is skipped. An exception
    while processing one row is logged, counted in ``result.errors`` and the run goes on with the others.
    """
    def work(object_id: int) -> None:
        with request_connection(), claim(job.lock, object_id) as mine:
            if not mine:
                result.bump("skipped")
                return
            job.process(object_id)

    def failed(object_id: int, exc: Exception) -> None:
        log.error("payments check: %s %s failed: %s", job.what, object_id, type(exc).__name__,
                  exc_info=(type(exc), exc, exc.__traceback__))
        result.error(f"{job.what} {object_id}: unexpected {type(exc).__name__} (see the log)")

    run_each(_candidate_ids(job, batch), work, workers, failed)


def _polled_since(started: datetime):
    """Payments whose history has a status poll of this job since ``started`` (by any host)."""
    return exists().where(PaymentEvent.payment_id == Payment.id, PaymentEvent.kind == "poll",
                          PaymentEvent.source == SOURCE, PaymentEvent.created_at >= started)


def check_again_after() -> int:
    """Seconds before `payments check` asks again about a payment it (on any host) asked about: the
    ``CHECK_AGAIN_AFTER_SECONDS`` setting, never below 0."""
    return max(0, int(current_app.config["CHECK_AGAIN_AFTER_SECONDS"]))


def _payment_pass(modules: list[str], result: SweepResult, echo=None) -> Pass:
    # polled "during this run" includes the moments before it began (CHECK_AGAIN_AFTER_SECONDS): a second
    # host starting a little later must not ask again about what the first asked before it started
    polled = _polled_since(utcnow() - timedelta(seconds=check_again_after()))
    in_pay = (PaymentMethod.module.in_(modules), Payment.status == service.INPAY)
    recent = db.session.execute(select(func.count(Payment.id)).join(PaymentMethod, PaymentMethod.id == Payment.paymethod_id)
                                .where(*in_pay, polled)).scalar_one()
    result.bump("asked_recently", recent)
    db.session.commit()  # no read transaction left open while the pass runs

    # a claimed payment is read again, still in pay and not asked about meanwhile (built once per pass)
    still_due = check_query(Payment.status == service.INPAY, ~polled)

    def query(after_id: int) -> Select:
        return (select(Payment.id).join(PaymentMethod, PaymentMethod.id == Payment.paymethod_id)
                .where(*in_pay, Payment.id > after_id, ~polled)
                .order_by(Payment.id))

    def process(payment_id: int) -> None:
        # read after the claim: a host that asked about it first has released the claim by now
        loaded = load_for_check(payment_id, query=still_due)
        if loaded is None:
            result.bump("skipped")
            return
        result.bump("checked")
        try:
            outcome = check_payment(payment_id, SOURCE, loaded=loaded)
        except (PollError, service.PaymentError) as exc:
            result.error(f"payment {payment_id}: {exc}")
            return
        if outcome is None or outcome.already:
            result.bump("unchanged")
            return
        counter = {"paid": "paid", "cancelled": "cancelled", "fraud": "fraud"}.get(outcome.status)
        if counter:
            result.bump(counter)
        if echo:
            echo(f"payment {payment_id}: {outcome.status}")

    return Pass("payment", POLL_LOCK, query, process)


def _refund_pass(modules: list[str], result: SweepResult, echo=None) -> Pass:
    cutoff = utcnow() - attention_after()

    def query(after_id: int) -> Select:
        return (select(Refund.id).join(Payment, Payment.id == Refund.payment_id)
                .join(PaymentMethod, PaymentMethod.id == Payment.paymethod_id)
                .where(PaymentMethod.module.in_(modules), Refund.status == "requested",
                       or_(Refund.external_id.is_not(None), Refund.created_at <= cutoff), Refund.id > after_id)
                .order_by(Refund.id))

    def process(refund_id: int) -> None:
        outcome = follow_refund(refund_id, source=SOURCE)
        result.bump("refunds_followed")
        if outcome.state == "finished":
            result.bump("refunds_finished")
        elif outcome.state == "failed":
            result.bump("refunds_failed")
        elif outcome.state == ATTENTION:
            result.bump("refunds_attention")
        elif outcome.state == "error":
            result.error(f"refund {refund_id}: {outcome.info}")
        if echo and outcome.state in ("finished", "failed", ATTENTION):
            echo(f"refund {refund_id}: {outcome.state}")

    return Pass("refund", REFUND_LOCK, query, process)


def poll_payments(modules: list[str], result: SweepResult, batch: int, echo=None) -> None:
    """Ask the gateways about the ``inpay`` payments of ``modules`` (each module with its own pool)."""
    for module in modules:
        run_pass(_payment_pass([module], result, echo), result, batch, workers_for(module))


def follow_refunds(modules: list[str], result: SweepResult, batch: int, echo=None) -> None:
    """Follow the ``requested`` refunds of ``modules``: those with a gateway id, and the overdue ones."""
    for module in modules:
        run_pass(_refund_pass([module], result, echo), result, batch, workers_for(module))


def sweep(only_modules: Iterable[str] = (), batch: int = 200, echo=None) -> SweepResult:
    """Poll open payments and follow pending refunds of every module able to (or only ``only_modules``)."""
    result = SweepResult()
    started = time.monotonic()
    poll_payments(modules_with(FEATURE_CHECKPAY, only_modules), result, batch, echo)
    result.payments_seconds = time.monotonic() - started
    started = time.monotonic()
    follow_refunds(modules_with(FEATURE_REFUND, only_modules), result, batch, echo)
    result.refunds_seconds = time.monotonic() - started
    db.session.expire_all()
    return result


@click.command("check")
@click.option("--module", "modules", multiple=True, metavar="KEY",
              help="Only this payment module (repeatable); default: every module with status polling.")
@click.option("--batch", default=200, show_default=True, type=click.IntRange(1, 100000),
              help="Payments selected per query.")
@click.option("--verbose", "-v", is_flag=True, help="Print every payment and refund that changed.")
@with_appcontext
def check_command(modules: tuple[str, ...], batch: int, verbose: bool) -> None:
    """Ask the gateways about in-pay payments and pending refunds, and settle what they report.

    Safe to run from cron on several hosts at once.
    """
    registry = get_registry()
    unknown = [key for key in modules if key not in registry.modules]
    if unknown:
        raise click.ClickException(f"unknown payment module(s): {', '.join(unknown)}")
    result = sweep(modules, batch=batch, echo=click.echo if verbose else None)
    interval = check_again_after()
    left = f", {result.asked_recently} asked less than {interval} s ago" if interval else ""
    click.echo(f"{result.checked} payment(s) checked: {result.paid} paid, {result.cancelled} cancelled, "
               f"{result.fraud} flagged, {result.unchanged} unchanged, {result.skipped} skipped (another host){left}; "
               f"{result.refunds_followed} refund(s) followed: {result.refunds_finished} finished, "
               f"{result.refunds_failed} failed, {result.refunds_attention} need an admin; "
               f"{result.error_count} error(s); took {result.payments_seconds:.1f} s + {result.refunds_seconds:.1f} s")
    for line in result.errors:
        click.echo(f"error: {line}", err=True)
