"""``flask --app billcore payments ...``: housekeeping of payments (and, from the modules' side, polling).

``payments_cli`` is importable so other commands (``payments check``) join the same group.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import click
from flask.cli import AppGroup
from sqlalchemy import select

from .. import recurring
from ..db import db, is_sqlite
from ..models import Payment, PaymentMethod, utcnow
from ..payments import service
from ..write_priority import background_writes

log = logging.getLogger(__name__)
payments_cli = AppGroup("payments", help="Payments: housekeeping and status polling.")

CLEANUP_REASON = "not paid within the payment method's period to delete due invoices"


@dataclass
class CleanupResult:
    """How many expired payments were cancelled, found already settled by someone else, refused, or
    failed with an unexpected error (logged)."""

    cancelled: int = 0
    already: int = 0
    skipped: int = 0
    failed: int = 0


def _expired_ids(method: PaymentMethod, now: datetime, batch: int, after_id: int) -> list[int]:
    """Ids of ``new`` payments of ``method`` created before its cut-off, in id order after ``after_id``.

    On PostgreSQL the rows are selected ``FOR UPDATE SKIP LOCKED`` and the transaction ends at once: a
    payment that another host's cleanup (or a notification) is changing right now is skipped instead
    of waited for. Correctness does not depend on it: the service re-reads each payment under its own
    lock and reports a repeat as ``already``.
    """
    cutoff = now - timedelta(days=method.delete_after_days)
    query = (select(Payment.id)
             .where(Payment.paymethod_id == method.id, Payment.status == service.NEW,
                    Payment.created_at < cutoff, Payment.id > after_id,
                    ~recurring.held_child_clause())  # an auto-payment the gateway may still be charging
             .order_by(Payment.id).limit(batch))
    if not is_sqlite(db.engine):
        query = query.with_for_update(skip_locked=True)
    ids = list(db.session.execute(query).scalars())
    db.session.commit()  # release the row locks before the service takes its own
    return ids


def cancel_expired_payments(now: datetime | None = None, batch: int = 500, dry_run: bool = False,
                            echo=None) -> CleanupResult:
    """Cancel every ``new`` payment older than its method's ``delete_after_days`` (docs/design.md §3).

    Each payment goes through :func:`service.set_cancelled` (source ``cleanup``), so the history shows
    why and two hosts running this at once never cancel a payment twice or undo a payment that got
    paid meanwhile. ``dry_run`` only counts. Methods without a period are left alone, and so are the
    children of auto-payment periods still being charged (:func:`recurring.held_child_clause`). An
    unexpected error on one payment (a lock or statement timeout, a lost connection) rolls back that
    payment's transaction alone: it is logged, counted in ``failed`` and the run goes on.
    """
    now = now or utcnow()
    result = CleanupResult()
    methods = db.session.execute(select(PaymentMethod).where(PaymentMethod.delete_after_days.is_not(None),
                                                             PaymentMethod.delete_after_days > 0)
                                 .order_by(PaymentMethod.id)).scalars().all()
    for method in methods:
        after_id = 0
        while True:
            ids = _expired_ids(method, now, batch, after_id)
            if not ids:
                break
            after_id = ids[-1]
            for payment_id in ids:
                if dry_run:
                    result.cancelled += 1
                    continue
                try:
                    with background_writes():  # a batch job's write: after a waiting request's (SQLite)
                        outcome = service.set_cancelled(payment_id, source="cleanup", kind="cleanup",
                                                        reason=CLEANUP_REASON,
                                                        data={"delete_after_days": method.delete_after_days})
                except service.PaymentError:  # paid (or otherwise moved on) since it was selected
                    result.skipped += 1
                    continue
                except Exception as exc:  # the next run retries it; the others need not wait for that
                    log.exception("payments cleanup: payment %s failed: %s", payment_id, type(exc).__name__)
                    result.failed += 1
                    continue
                if outcome.already:
                    result.already += 1
                else:
                    result.cancelled += 1
                    if echo:
                        echo(f"payment {payment_id} cancelled (method {method.id}, older than "
                             f"{method.delete_after_days} days)")
    db.session.expire_all()
    return result


@payments_cli.command("cleanup")
@click.option("--dry-run", is_flag=True, help="Only count the payments that would be cancelled.")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 100000),
              help="Payments selected per query.")
@click.option("--verbose", "-v", is_flag=True, help="Print every cancelled payment.")
def cleanup_command(dry_run: bool, batch: int, verbose: bool) -> None:
    """Cancel unpaid (``new``) payments older than their method's period to delete due invoices.

    Safe to run from cron on several hosts at once.
    """
    result = cancel_expired_payments(batch=batch, dry_run=dry_run, echo=click.echo if verbose else None)
    if dry_run:
        click.echo(f"{result.cancelled} payment(s) would be cancelled")
    else:
        click.echo(f"{result.cancelled} payment(s) cancelled, {result.already} already cancelled, "
                   f"{result.skipped} skipped (changed meanwhile), {result.failed} failed (see the log)")


# ``payments check``: status polling and refund following for every module that supports them.
from ..payments.sweep import check_command  # noqa: E402

payments_cli.add_command(check_command)
