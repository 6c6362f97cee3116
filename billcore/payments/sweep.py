"""``flask --app billcore payments check``: poll open payments and follow pending refunds at the gateways.

For every loaded module with ``checkpay`` the ``inpay`` payments are asked about through
:func:`polling.check_payment` (which applies the answer through the payment service), and for every
module with ``refund`` the refunds still ``requested`` with a gateway id are followed through
:func:`refunds.follow_refund`.

Safe on several hosts at once: candidate rows are selected ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
(rows being changed right now are skipped) and each payment or refund is then claimed with a
transaction-independent advisory lock for the duration of the gateway call, so two hosts never ask about
the same payment at the same time. Correctness never depends on these locks: the service re-reads each
payment under its own row lock and reports a repeat as ``already``.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import click
from flask.cli import with_appcontext
from sqlalchemy import select, text

from ..db import db, is_sqlite
from ..models import Payment, PaymentMethod, Refund
from ..paymodule import FEATURE_CHECKPAY, FEATURE_REFUND
from ..plugins import get_registry
from . import service
from .polling import PollError, check_payment
from .refunds import follow_refund

# Advisory-lock namespaces (first key of pg_try_advisory_lock(int, int)).
POLL_LOCK = 0x626370  # "bcp"
REFUND_LOCK = 0x626372  # "bcr"
SOURCE = "cron"


@dataclass
class SweepResult:
    """Counts of what one run did; ``errors`` lists "payment N: reason" lines."""

    checked: int = 0
    paid: int = 0
    cancelled: int = 0
    fraud: int = 0
    unchanged: int = 0
    skipped: int = 0
    refunds_followed: int = 0
    refunds_finished: int = 0
    refunds_failed: int = 0
    errors: list[str] = field(default_factory=list)


def modules_with(feature: str, only: Iterable[str] = ()) -> list[str]:
    """Keys of the loaded modules declaring ``feature`` (limited to ``only`` when given)."""
    registry = get_registry()
    wanted = set(only)
    return sorted(key for key in registry.modules
                  if registry.has_feature(key, feature) and (not wanted or key in wanted))


def _candidates(query, batch: int) -> list[int]:
    if not is_sqlite(db.engine):
        query = query.with_for_update(skip_locked=True)
    ids = list(db.session.execute(query.limit(batch)).scalars())
    db.session.commit()  # release the row locks at once: the service takes its own per payment
    return ids


@contextmanager
def claim(namespace: int, object_id: int) -> Iterator[bool]:
    """Hold an advisory lock on ``(namespace, object_id)`` while the body runs; yields False when another
    host holds it. SQLite serves one host, so there it always succeeds."""
    if is_sqlite(db.engine):
        yield True
        return
    key = object_id % 2_147_483_647  # the two-key form takes int4; a rare collision only skips a row
    with db.engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:ns, :key)"),
                                {"ns": namespace, "key": key}).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:ns, :key)"), {"ns": namespace, "key": key})
                conn.commit()


def poll_payments(modules: list[str], result: SweepResult, batch: int, echo=None) -> None:
    """Ask the gateways about the ``inpay`` payments of ``modules``."""
    if not modules:
        return
    after_id = 0
    while True:
        query = (select(Payment.id).join(PaymentMethod, PaymentMethod.id == Payment.paymethod_id)
                 .where(PaymentMethod.module.in_(modules), Payment.status == service.INPAY, Payment.id > after_id)
                 .order_by(Payment.id))
        ids = _candidates(query, batch)
        if not ids:
            return
        after_id = ids[-1]
        for payment_id in ids:
            with claim(POLL_LOCK, payment_id) as mine:
                if not mine:
                    result.skipped += 1
                    continue
                result.checked += 1
                try:
                    outcome = check_payment(payment_id, SOURCE)
                except (PollError, service.PaymentError) as exc:
                    result.errors.append(f"payment {payment_id}: {exc}")
                    continue
            if outcome is None or outcome.already:
                result.unchanged += 1
                continue
            counter = {"paid": "paid", "cancelled": "cancelled", "fraud": "fraud"}.get(outcome.status)
            if counter:
                setattr(result, counter, getattr(result, counter) + 1)
            if echo:
                echo(f"payment {payment_id}: {outcome.status}")


def follow_refunds(modules: list[str], result: SweepResult, batch: int, echo=None) -> None:
    """Follow the refunds still ``requested`` that a gateway accepted (they carry its id)."""
    if not modules:
        return
    after_id = 0
    while True:
        query = (select(Refund.id).join(Payment, Payment.id == Refund.payment_id)
                 .join(PaymentMethod, PaymentMethod.id == Payment.paymethod_id)
                 .where(PaymentMethod.module.in_(modules), Refund.status == "requested",
                        Refund.external_id.is_not(None), Refund.id > after_id)
                 .order_by(Refund.id))
        ids = _candidates(query, batch)
        if not ids:
            return
        after_id = ids[-1]
        for refund_id in ids:
            with claim(REFUND_LOCK, refund_id) as mine:
                if not mine:
                    result.skipped += 1
                    continue
                outcome = follow_refund(refund_id, source=SOURCE)
            result.refunds_followed += 1
            if outcome.state == "finished":
                result.refunds_finished += 1
            elif outcome.state == "failed":
                result.refunds_failed += 1
            elif outcome.state == "error":
                result.errors.append(f"refund {refund_id}: {outcome.info}")
            if echo and outcome.state in ("finished", "failed"):
                echo(f"refund {refund_id}: {outcome.state}")


def sweep(only_modules: Iterable[str] = (), batch: int = 200, echo=None) -> SweepResult:
    """Poll open payments and follow pending refunds of every module able to (or only ``only_modules``)."""
    result = SweepResult()
    poll_payments(modules_with(FEATURE_CHECKPAY, only_modules), result, batch, echo)
    follow_refunds(modules_with(FEATURE_REFUND, only_modules), result, batch, echo)
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
    click.echo(f"{result.checked} payment(s) checked: {result.paid} paid, {result.cancelled} cancelled, "
               f"{result.fraud} flagged, {result.unchanged} unchanged, {result.skipped} skipped (another host); "
               f"{result.refunds_followed} refund(s) followed: {result.refunds_finished} finished, "
               f"{result.refunds_failed} failed")
    for line in result.errors:
        click.echo(f"error: {line}", err=True)
