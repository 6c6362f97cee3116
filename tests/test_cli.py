"""The core's ``flask --app billcore`` commands."""
from __future__ import annotations

import json
from decimal import Decimal

from billcore.cli import DEMO_ADMIN, DEMO_CLIENT
from billcore.payments import service
from tests import factories


def _invoke(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def test_create_admin_and_client(app):
    result = _invoke(app, "create-admin", "boss@test.example", input="boss-pass-1\n")
    assert result.exit_code == 0, result.output
    result = _invoke(app, "create-admin", "BOSS@test.example", input="boss-pass-2\n")
    assert result.exit_code != 0 and "already exists" in result.output
    result = _invoke(app, "create-client", "payer@test.example", "--currency", "usd", input="payer-pass-1\n")
    assert result.exit_code == 0, result.output
    shown = json.loads(_invoke(app, "account", "show", "payer@test.example", "--json").output)
    assert shown["currency"] == "USD" and shown["balance"] == "0.00" and shown["email"] == "payer@test.example"


def test_create_client_refuses_unknown_currency(app):
    result = _invoke(app, "create-client", "payer@test.example", "--currency", "XXX", input="payer-pass-1\n")
    assert result.exit_code != 0 and "Unsupported currency" in result.output


def test_account_show_unknown(app):
    result = _invoke(app, "account", "show", "nobody@test.example", "--json")
    assert result.exit_code != 0 and "no client account" in result.output


def test_payment_show(app):
    p = factories.payment("99.90")
    service.set_paid(p.id, amount=Decimal("99.90"), currency="RUB", source="test")
    shown = json.loads(_invoke(app, "payment", "show", str(p.id), "--json").output)
    assert shown["id"] == p.id and shown["status"] == "paid" and shown["amount"] == "99.90"
    assert shown["currency"] == "RUB" and shown["paymethod_id"] == p.paymethod_id
    balance = json.loads(_invoke(app, "account", "show", "payer@test.example", "--json").output)["balance"]
    assert balance == "99.90"
    assert _invoke(app, "payment", "show", "424242").exit_code != 0


def test_demo_is_idempotent(app, tmp_path):
    # ``demo`` runs the migrations first: it needs a schema stamped at their head
    from billcore.testing.fixtures import make_app

    app = make_app(tmp_path / "demo", app.config["DATABASE_URL"], stamp=True)
    first = _invoke(app, "demo")
    assert first.exit_code == 0, first.output
    assert DEMO_ADMIN[0] in first.output and DEMO_CLIENT[1] in first.output
    second = _invoke(app, "demo")
    assert second.exit_code == 0, second.output
    from sqlalchemy import func, select

    from billcore.db import db
    from billcore.models import User

    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 2
