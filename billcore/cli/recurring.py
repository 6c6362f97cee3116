"""``flask --app billcore recurring ...``: the auto-payments cron job and a listing."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import click
from flask.cli import AppGroup
from sqlalchemy import select

from .. import recurring
from ..db import db
from ..models import RecurringProfile
from ..states import ProfileStatus

recurring_cli = AppGroup("recurring", help="Recurring payments (auto top-ups).")


def _parse_now(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected an ISO 8601 date and time, e.g. 2026-12-01T00:00:00+00:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@recurring_cli.command("run")
@click.option("--now", "now_text", default=None, help="Pretend it is this moment (ISO 8601; UTC if no zone).")
@click.option("--limit", default=500, show_default=True, help="At most this many profiles per run.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def run_command(now_text: str | None, limit: int, as_json: bool) -> None:
    """Charge the due auto-payments (cron, e.g. every 10 minutes; safe on several hosts at once)."""
    now = _parse_now(now_text)
    # Each charge is printed as it happens rather than kept until the end: a run of any --limit holds
    # only counts (the JSON is written as it goes, with the same shape as a document built at the end).
    if as_json:
        click.echo('{\n  "charges": [', nl=False)
        first = [True]

        def print_json(charge: recurring.Charge) -> None:
            click.echo(("\n" if first[0] else ",\n") + "    " + json.dumps(_charge_row(charge)), nl=False)
            first[0] = False

        result = recurring.run_due(now, limit=limit, on_charge=print_json)
        click.echo(("" if first[0] else "\n  ") + "],")
        click.echo('  "suspended": ' + json.dumps(result.suspended) + ",")
        click.echo('  "errors": ' + json.dumps([{"profile_id": p, "error": e} for p, e in result.errors]))
        click.echo("}")
        if result.errors:
            raise SystemExit(1)
        return

    def print_line(charge: recurring.Charge) -> None:
        row = _charge_row(charge)
        click.echo(f"profile {row['profile_id']} period {row['period']}: payment {row['payment_id']} {row['outcome']}")

    result = recurring.run_due(now, limit=limit, on_charge=print_line)
    for profile_id in result.suspended:
        click.echo(f"profile {profile_id} suspended")
    for profile_id, error in result.errors:
        click.echo(f"profile {profile_id} ERROR: {error}", err=True)
    click.echo(f"{result.total} charge(s): {result.count('paid')} paid, {result.count('accepted')} accepted, "
               f"{result.count('failed')} failed")
    if result.errors:
        raise SystemExit(1)  # cron mails the operator


def _charge_row(charge: recurring.Charge) -> dict[str, object]:
    profile_id, period, payment_id, outcome = charge
    return {"profile_id": profile_id, "period": period, "payment_id": payment_id, "outcome": str(outcome)}


@recurring_cli.command("list")
@click.option("--status", type=click.Choice([s.value for s in ProfileStatus]), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(status: str | None, as_json: bool) -> None:
    """List the auto-payment profiles."""
    query = select(RecurringProfile).order_by(RecurringProfile.id)
    if status:
        query = query.where(RecurringProfile.status == status)
    rows = [{"id": p.id, "account_id": p.account_id, "paymethod_id": p.paymethod_id,
             "parent_payment_id": p.parent_payment_id, "rule": p.rule, "amount": str(p.amount),
             "threshold": str(p.threshold) if p.threshold is not None else None, "monthly_max": str(p.monthly_max),
             "status": p.status, "failures": p.failures, "last_error": p.last_error,
             "next_charge_at": p.next_charge_at.isoformat() if p.next_charge_at else None}
            for p in db.session.execute(query).scalars()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        rule = f"fixed {r['amount']}/month" if r["rule"] == "fixed" else f"below {r['threshold']} +{r['amount']}"
        click.echo(f"#{r['id']} account {r['account_id']} method {r['paymethod_id']} {rule} max {r['monthly_max']} "
                   f"{r['status']} failures {r['failures']} next {r['next_charge_at'] or '-'}")
