"""``flask --app billcore token ...`` (API tokens) and ``flask --app billcore webhooks deliver`` (cron)."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from .. import api_tokens, webhooks

token_cli = AppGroup("token", help="API tokens.")
webhooks_cli = AppGroup("webhooks", help="Outbound webhooks and customer e-mails.")


@token_cli.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(api_tokens.SCOPES), default=("read",),
              show_default=True, help="read, or write (which includes read); repeat for both.")
def token_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a token and print it once (only its hash is kept)."""
    try:
        row, token = api_tokens.create_token(name, scopes, actor="cli")
    except api_tokens.TokenError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"token {row.id} ({row.scopes}) created; copy it now, it is not shown again:")
    click.echo(token)


@token_cli.command("revoke")
@click.argument("token_id", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke a token for good."""
    try:
        row = api_tokens.revoke_token(token_id)
    except api_tokens.TokenError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"token {row.id} ({row.name}) revoked")


@token_cli.command("list")
def token_list() -> None:
    """Every token: id, name, scopes, prefix, last use, revoked."""
    for row in api_tokens.list_tokens():
        used = row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "never used"
        revoked = f"  REVOKED {row.revoked_at.isoformat(timespec='seconds')}" if row.revoked_at else ""
        click.echo(f"{row.id}  {row.name}  [{row.scopes}]  {row.prefix}...  {used}{revoked}")


@webhooks_cli.command("deliver")
@click.option("--limit", type=click.IntRange(1, 10000), default=None, help="Deliveries to send in this run.")
def webhooks_deliver(limit: int | None) -> None:
    """Send the outbox's events to webhook endpoints and customers (cron; safe on several hosts at once)."""
    result = webhooks.deliver(limit=limit)
    click.echo(f"dispatched {result.dispatched} events; delivered {result.delivered}, to retry {result.retried}, "
               f"given up {result.failed}" + (f"; endpoints disabled: {result.disabled}" if result.disabled else ""))
