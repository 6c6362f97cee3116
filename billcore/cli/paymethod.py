"""``flask --app billcore paymethod ...``: payment methods managed from scripts.

``paymethod add`` fills the very forms the add wizard shows (the module's integration form and the method
settings form) and validates them through :mod:`billcore.paymethods.service`, so the same settings give
the same stored method whichever way they came in.
"""
from __future__ import annotations

import json
import os
import sys

import click
from flask import current_app
from flask.cli import AppGroup
from werkzeug.datastructures import MultiDict

from ..db import db
from ..paymethods.forms import make_integration_form, make_method_form
from ..models import PaymentMethod
from ..money import format_amount
from ..paymethods.service import (
    create_paymethod,
    form_errors,
    ordered_methods,
    payment_counts,
    set_active,
    validate_integration,
    validate_method,
)
from ..plugins import get_registry

paymethod_cli = AppGroup("paymethod", help="Payment methods.")

TRUE_WORDS = frozenset({"1", "true", "yes", "y", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "off"})


def parse_bool(text: str) -> bool:
    """A command-line boolean: 1/0, true/false, yes/no, y/n, on/off (any case)."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(text)


def _fail(errors: dict[str, list[str]], prefix: str = "") -> None:
    """Print field errors to stderr and exit with status 1."""
    for name, messages in errors.items():
        for message in messages:
            click.echo(f"error: {prefix}{name + ': ' if name else ''}{message}", err=True)
    sys.exit(1)


SECRET_ENV_PREFIX = "BILLCORE_SECRET_"


def secret_env_name(name: str) -> str:
    """The environment variable a secret setting is read from (``password1`` -> ``BILLCORE_SECRET_PASSWORD1``)."""
    return SECRET_ENV_PREFIX + name.upper()


def read_secret(name: str) -> str:
    """A secret setting's value: ``$BILLCORE_SECRET_<NAME>``, else the next line of piped standard input,
    else a hidden prompt; never the command line (it would show in ``ps`` and the shell's history)."""
    value = os.environ.get(secret_env_name(name))
    if value:
        return value
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt(f"{name}", hide_input=True, confirmation_prompt=True)


def _integration_formdata(key: str, pairs: tuple[str, ...], secrets: tuple[str, ...] = ()) -> MultiDict:
    """Turn ``--set KEY=VALUE`` pairs and ``--secret KEY`` names (their values read by :func:`read_secret`)
    into the form data a browser would post for the module's form. A secret (a password field) given
    with ``--set`` is refused."""
    form = make_integration_form(key, None, formdata=None, csrf=False)
    fields = {f.name: f for f in form if f.type not in ("CSRFTokenField", "SubmitField")}
    data: MultiDict[str, str] = MultiDict()
    errors: dict[str, list[str]] = {}
    for name in secrets:
        field = fields.get(name)
        if field is None or field.type != "PasswordField":
            known = ", ".join(n for n, f in fields.items() if f.type == "PasswordField") or "none"
            errors.setdefault(name, []).append(f"not a secret setting (secrets: {known})")
            continue
        data[name] = read_secret(name)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            errors.setdefault(name or pair, []).append("expected KEY=VALUE")
            continue
        field = fields.get(name)
        if field is None:
            errors.setdefault(name, []).append(f"unknown setting (known: {', '.join(fields) or 'none'})")
            continue
        if field.type == "PasswordField":
            errors.setdefault(name, []).append(
                f"a secret: give it with --secret {name} (read from ${secret_env_name(name)}, piped standard "
                "input or a prompt), never on the command line")
            continue
        if field.type == "BooleanField":
            try:
                checked = parse_bool(value)
            except ValueError:
                errors.setdefault(name, []).append("expected 1/0, true/false, yes/no, y/n or on/off")
                continue
            if checked:  # an unchecked box is simply absent from a browser's post
                data[name] = "y"
            continue
        data.add(name, value)
    given = {pair.partition("=")[0].strip() for pair in pairs}
    for name, field in fields.items():
        # A box not mentioned is off, as in a browser's post. One the wizard shows ticked (test mode, say)
        # would then be switched off without a word, or, kept ticked, left on without one: the script says.
        if field.type == "BooleanField" and name not in given and field.data:
            errors.setdefault(name, []).append(
                f"ticked by default in the wizard: give --set {name}=yes or --set {name}=no")
    if errors:
        _fail(errors, "--set ")
    return data


@paymethod_cli.command("add")
@click.argument("module")
@click.option("--name", required=True, help="Name shown to clients (English).")
@click.option("--name-ru", default="", help="Name shown to clients (Russian).")
@click.option("--currency", required=True, help="ISO 4217 code, e.g. RUB.")
@click.option("--min-amount", default="", help="Minimum payment amount (blank: none).")
@click.option("--max-amount", default="", help="Maximum payment amount (blank: none).")
@click.option("--commission-amount", default="0", show_default=True, help="Fixed commission.")
@click.option("--commission-percent", default="0", show_default=True, help="Commission, percent.")
@click.option("--delete-after-days", default="", help="Period to delete due invoices, days.")
@click.option("--sort-order", default="", help="Sort order (default: after the others).")
@click.option("--allow-refund", is_flag=True, help="Allow refunds (modules with refunds only).")
@click.option("--recurring", is_flag=True, help="Recurring payments (modules with them only).")
@click.option("--description", default="", help="Description for clients (English).")
@click.option("--description-ru", default="", help="Description for clients (Russian).")
@click.option("--comment", default="", help="Admin comment.")
@click.option("--inactive", is_flag=True, help="Create the method disabled.")
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE",
              help="An integration setting by its form field name; repeat for each. Not for secrets. A checkbox "
                   "not given is off; one ticked by default in the wizard must be given.")
@click.option("--secret", "secrets", multiple=True, metavar="KEY",
              help=f"A secret setting (a password or key) by its form field name, read from ${SECRET_ENV_PREFIX}KEY "
                   "(upper case), else one line of piped standard input per --secret in order, else a prompt.")
def paymethod_add(module: str, name: str, name_ru: str, currency: str, min_amount: str, max_amount: str,
                  commission_amount: str, commission_percent: str, delete_after_days: str, sort_order: str,
                  allow_refund: bool, recurring: bool, description: str, description_ru: str, comment: str,
                  inactive: bool, pairs: tuple[str, ...], secrets: tuple[str, ...]) -> None:
    """Add a payment method of MODULE, validated exactly as the add wizard validates it; prints its id."""
    info = get_registry().info(module)
    if info is None:
        known = ", ".join(sorted(get_registry().modules)) or "none"
        raise click.ClickException(f"no payment module {module!r} is loaded (loaded: {known})")
    # The forms and the translations need a request context; no request is made.
    with current_app.test_request_context("/"):
        form = make_integration_form(module, None, formdata=_integration_formdata(module, pairs, secrets), csrf=False)
        settings = validate_integration(module, form, currency=currency.strip().upper())
        if settings is None:
            _fail(form_errors(form), "--set ")
        method_data = MultiDict({
            "name": name, "name_ru": name_ru, "currency": currency.strip().upper(), "min_amount": min_amount,
            "max_amount": max_amount, "commission_amount": commission_amount,
            "commission_percent": commission_percent, "delete_after_days": delete_after_days,
            "sort_order": sort_order, "description": description, "description_ru": description_ru,
            "comment": comment,
        })
        for flag, on in (("active", not inactive), ("allow_refund", allow_refund), ("recurring", recurring)):
            if on:
                method_data[flag] = "y"
        method_form = make_method_form(info, formdata=method_data, csrf=False)
        values = validate_method(method_form, info, integration_settings=settings)
        if values is None:
            _fail(form_errors(method_form), "--")
        method = create_paymethod(module, settings, values)
    click.echo(method.id)


def _row(method: PaymentMethod, counts: dict[int, int]) -> dict:
    cur = method.currency
    return {
        "id": method.id, "name": method.name, "name_ru": method.name_ru, "module": method.module,
        "currency": cur, "active": bool(method.active), "sort_order": method.sort_order,
        "min_amount": None if method.min_amount is None else format_amount(method.min_amount, cur),
        "max_amount": None if method.max_amount is None else format_amount(method.max_amount, cur),
        "commission_amount": format_amount(method.commission_amount or 0, cur),
        "commission_percent": str(method.commission_percent or 0),
        "payments": counts.get(method.id, 0),
    }


@paymethod_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def paymethod_list(as_json: bool) -> None:
    """List the payment methods in display order (never their secrets)."""
    counts = payment_counts()
    rows = [_row(m, counts) for m in ordered_methods()]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        state = "active" if row["active"] else "disabled"
        click.echo(f"{row['id']}  {row['name']}  {row['module']}  {row['currency']}  {state}  "
                   f"order {row['sort_order']}  payments {row['payments']}")


def _set_active(method_id: int, active: bool) -> None:
    method = db.session.get(PaymentMethod, method_id)
    if method is None:
        raise click.ClickException(f"no payment method {method_id}")
    set_active(method, active)
    click.echo(f"payment method {method.id} {'enabled' if active else 'disabled'}")


@paymethod_cli.command("enable")
@click.argument("method_id", type=int)
def paymethod_enable(method_id: int) -> None:
    """Let clients pay with the method."""
    _set_active(method_id, True)


@paymethod_cli.command("disable")
@click.argument("method_id", type=int)
def paymethod_disable(method_id: int) -> None:
    """Stop new payments through the method (payments in progress still complete)."""
    _set_active(method_id, False)
