"""billcore's commands (init, users, accounts, payments, plugins, demo ...), run as ``billcore COMMAND``
or ``flask --app billcore COMMAND``."""
from __future__ import annotations

import json
import os
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from .. import migrate
from ..accounts import UserExists, WeakPassword, create_admin, create_client, find_user
from ..db import db
from ..models import Account, Payment
from ..money import MoneyError, format_amount
from ..plugins import get_registry

DEMO_ADMIN = ("admin@example.com", "admin-demo-1")
DEMO_CLIENT = ("client@example.com", "client-demo-1")

account_cli = AppGroup("account", help="Client accounts.")
user_cli = AppGroup("user", help="Users: a new password, deactivation (both end every session of the user).")
payment_cli = AppGroup("payment", help="Single payments.")


@click.command("init")
@with_appcontext
def init_command() -> None:
    """Create or upgrade the database schema; the instance keys are created on first start."""
    revision = migrate.upgrade()
    click.echo(f"Database at revision {revision}; instance folder {current_app.instance_path}")


PASSWORD_ENV = "BILLCORE_PASSWORD"
PASSWORD_HELP = (f"The password is read from ${PASSWORD_ENV} when set, else from standard input when it is not "
                 "a terminal (one line), else asked for twice without echo; never from the command line, "
                 "where it would show in `ps` and the shell's history.")


def read_password() -> str:
    """A new password from ``$BILLCORE_PASSWORD``, piped standard input (its first line) or a hidden prompt."""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.command("create-admin", epilog=PASSWORD_HELP)
@click.argument("email")
@with_appcontext
def create_admin_command(email: str) -> None:
    """Create an administrator."""
    try:
        user = create_admin(email, read_password())
    except UserExists:
        raise click.ClickException(f"a user {email} already exists") from None
    except WeakPassword as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"admin {user.email} created (id {user.id})")


@click.command("create-client", epilog=PASSWORD_HELP)
@click.argument("email")
@click.option("--currency", default="RUB", show_default=True, help="The account's currency.")
@click.option("--name", default=None, help="The account's name (default: the e-mail).")
@with_appcontext
def create_client_command(email: str, currency: str, name: str | None) -> None:
    """Create a client user with its own account."""
    try:
        user = create_client(email, read_password(), currency=currency, name=name)
    except UserExists:
        raise click.ClickException(f"a user {email} already exists") from None
    except (MoneyError, WeakPassword) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"client {user.email} created (account {user.account_id}, {user.account.currency})")


def _user(email: str):
    user = find_user(email)
    if user is None:
        raise click.ClickException(f"no user {email}")
    return user


@user_cli.command("set-password", epilog=PASSWORD_HELP)
@click.argument("email")
def user_set_password(email: str) -> None:
    """Give a user a new password; every session of the user ends."""
    from ..accounts import change_password

    user = _user(email)
    try:
        change_password(user, read_password())
    except WeakPassword as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"new password set for {user.email}; every session of the user ended")


@user_cli.command("deactivate")
@click.argument("email")
def user_deactivate(email: str) -> None:
    """Deactivate a user: no more logins, and every session ends now."""
    from ..accounts import set_active

    set_active(_user(email), False)
    click.echo(f"{email} deactivated; every session of the user ended")


@user_cli.command("activate")
@click.argument("email")
def user_activate(email: str) -> None:
    """Let a deactivated user log in again."""
    from ..accounts import set_active

    set_active(_user(email), True)
    click.echo(f"{email} activated")


@account_cli.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def account_show(email: str, as_json: bool) -> None:
    """Show a client's account: currency and balance."""
    user = find_user(email)
    if user is None or user.account_id is None:
        raise click.ClickException(f"no client account for {email}")
    account = db.session.get(Account, user.account_id)
    data = {"email": user.email, "account_id": account.id, "name": account.name,
            "currency": account.currency, "balance": format_amount(account.balance, account.currency)}
    _print(data, as_json)


@payment_cli.command("show")
@click.argument("payment_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def payment_show(payment_id: int, as_json: bool) -> None:
    """Show one payment."""
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        raise click.ClickException(f"no payment {payment_id}")
    cur = payment.currency
    data = {"id": payment.id, "status": payment.status, "amount": format_amount(payment.amount, cur),
            "commission": format_amount(payment.commission, cur), "total": format_amount(payment.total, cur),
            "refunded_amount": format_amount(payment.refunded_amount, cur), "currency": cur,
            "paymethod_id": payment.paymethod_id, "account_id": payment.account_id,
            "external_id": payment.external_id, "created_at": payment.created_at.isoformat(),
            "paid_at": payment.paid_at.isoformat() if payment.paid_at else None}
    _print(data, as_json)


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def plugins_command(as_json: bool) -> None:
    """List every installed payment module, loaded or not: version, features and source of a loaded one;
    for one not loaded, the reason (not on the allow-list, development-only, or the error it failed with)."""
    registry = get_registry()
    rows = [{"key": key, "loaded": True, "title": info.title, "version": info.version,
             "features": sorted(info.features), "source": registry.sources.get(key), "reason": None, "error": None}
            for key, info in sorted(registry.modules.items())]
    rows += [{"key": key, "loaded": False, "title": None, "version": None, "features": [],
              "source": registry.sources.get(key), "reason": reason, "error": None}
             for key, reason in sorted(registry.skipped.items())]
    rows += [{"key": key, "loaded": False, "title": None, "version": None, "features": [],
              "source": registry.sources.get(key), "reason": f"failed to load: {error}", "error": error}
             for key, error in sorted(registry.errors.items())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"templates: {current_app.jinja_loader.searchpath[0]}")
    for row in rows:
        if row["error"]:
            click.echo(f"{row['key']}  NOT LOADED: {row['error']}  ({row['source']})")
        elif not row["loaded"]:
            click.echo(f"{row['key']}  not loaded: {row['reason']}  ({row['source']})")
        else:
            click.echo(f"{row['key']}  {row['version']}  {row['title']}  features: "
                       f"{', '.join(row['features']) or '-'}  ({row['source']})")


@click.command("demo")
@with_appcontext
def demo_command() -> None:
    """Create (once) a demo admin and a demo client, and let modules add their demo payment methods."""
    migrate.upgrade()
    for (email, password), make in ((DEMO_ADMIN, create_admin), (DEMO_CLIENT, create_client)):
        if find_user(email) is None:
            make(email, password)
    get_registry().broadcast("billcore_demo", app=current_app._get_current_object())  # type: ignore[attr-defined]
    click.echo("Demo ready. Log in at /login as:")
    click.echo(f"  admin:  {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}")
    click.echo(f"  client: {DEMO_CLIENT[0]} / {DEMO_CLIENT[1]}")


def _print(data: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            click.echo(f"{key}: {value}")


COMMANDS = [init_command, create_admin_command, create_client_command, plugins_command, demo_command,
            account_cli, payment_cli, user_cli]
from .paymethod import paymethod_cli  # noqa: E402  (payment methods: add, list, enable, disable)

COMMANDS.append(paymethod_cli)
from .payments import payments_cli  # noqa: E402  (payments: cleanup; modules add check)

COMMANDS.append(payments_cli)
from .recurring import recurring_cli  # noqa: E402  (recurring: run, list)

COMMANDS.append(recurring_cli)
from .integration import token_cli, webhooks_cli  # noqa: E402  (API tokens; webhooks deliver)

COMMANDS += [token_cli, webhooks_cli]
from ..scaffold import module_cli  # noqa: E402  (module new: a payment module from pmtemplate)

COMMANDS.append(module_cli)


def init_app(app: Flask) -> None:
    """Register the core's commands and let modules add theirs."""
    for command in COMMANDS:
        app.cli.add_command(command)
    registry = app.extensions["billcore.modules"]
    registry.broadcast("billcore_register_commands", cli=app.cli)


def main() -> None:
    """The ``billcore`` console script: every ``flask --app billcore`` command, run from any folder.

    ``flask --app billcore`` puts the current folder first on ``sys.path`` before it imports ``billcore``,
    so in a folder that holds a ``billcore/`` directory (a source checkout, a module's workspace) it imports
    that directory instead of the installed billcore; an editable install finds billcore only after the
    folders on ``sys.path``, so even an empty ``billcore/`` directory wins. This script's ``sys.path``
    starts with its own ``bin`` folder and the app is made by :func:`billcore.create_app` directly, so
    the installed billcore is the one that runs, wherever it is started.
    """
    from flask.cli import FlaskGroup

    from .. import create_app

    cli = FlaskGroup(name="billcore", create_app=lambda: create_app(),
                     help="billcore's commands (the same as `flask --app billcore ...`).")
    cli.params = [param for param in cli.params if param.name != "app"]  # the app is billcore's, always
    cli.main(prog_name="billcore")
