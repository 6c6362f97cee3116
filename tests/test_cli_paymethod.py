"""``flask --app billcore paymethod ...``: add (validated exactly as the wizard), list, enable, disable."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import select

from billcore.accounts import create_admin, create_client
from billcore.cli.paymethod import parse_bool
from billcore.db import db
from billcore.models import PaymentMethod
from billcore.paymethods import full_settings
from billcore.payments import service
from billcore.plugins import get_registry
from tests.conftest import ADMIN, CLIENT, add_paymethod, login
from tests.test_admin_paymethods import STEP2, STEP3, walk

SECRET = "cli-secret-value-1"
BASE = ["paymethod", "add", "pmfake", "--name", "Cards", "--currency", "RUB"]
GOOD = BASE + ["--set", "shop_id=shop-1", "--secret", "secret"]


@pytest.fixture
def app_config():
    """Load the fake module beside the real ones."""
    return {"EXTRA_MODULES": {"pmfake": "tests.fake_module"}}


@pytest.fixture
def fapp(app):
    """The app with the fake module loaded, on each configured backend."""
    return app


@pytest.fixture
def run(fapp):
    """Invoke a ``flask`` command; returns the click Result."""
    runner = fapp.test_cli_runner()  # ``result.output`` holds stdout and stderr, as a terminal shows them

    def invoke(args, input=f"{SECRET}\n"):  # a secret is read from standard input, never from args
        result = runner.invoke(args=args, input=input)
        db.session.expire_all()
        return result

    return invoke


def methods() -> list[PaymentMethod]:
    db.session.expire_all()
    return list(db.session.scalars(select(PaymentMethod).order_by(PaymentMethod.id)))


def test_add_prints_the_id_and_stores_the_method(run):
    result = run(GOOD + ["--min-amount", "10", "--max-amount", "100.50", "--commission-amount", "1.2",
                         "--commission-percent", "2.5", "--set", "hash_algorithm=md5", "--set", "test_mode=yes",
                         "--name-ru", "Карты", "--allow-refund", "--recurring"])
    assert result.exit_code == 0, result.output
    [m] = methods()
    assert result.output.strip() == str(m.id)
    assert (m.module, m.name, m.name_ru, m.currency, m.active) == ("pmfake", "Cards", "Карты", "RUB", True)
    assert (m.min_amount, m.max_amount, m.commission_amount, m.commission_percent) == (
        Decimal("10.00"), Decimal("100.50"), Decimal("1.20"), Decimal("2.5"))
    assert m.allow_refund is True and m.recurring is False  # the module has no recurring payments
    assert m.settings == {"shop_id": "shop-1", "hash_algorithm": "md5", "test_mode": True}
    assert full_settings(m)["secret"] == SECRET and SECRET not in (m.secrets_encrypted or "")
    assert SECRET not in result.output


def test_inactive_and_defaults(run):
    assert run(GOOD + ["--inactive"]).exit_code == 0
    [m] = methods()
    assert m.active is False and m.settings["test_mode"] is False and m.settings["hash_algorithm"] == "sha256"
    assert (m.min_amount, m.max_amount, m.commission_amount, m.commission_percent) == (None, None, 0, 0)


@pytest.mark.parametrize("word, value", [("1", True), ("0", False), ("true", True), ("False", False),
                                         ("yes", True), ("no", False), ("y", True), ("n", False),
                                         ("on", True), ("OFF", False)])
def test_boolean_words(run, word, value):
    assert run(GOOD + ["--set", f"test_mode={word}"]).exit_code == 0
    assert methods()[0].settings["test_mode"] is value


def test_parse_bool_refuses_other_words():
    with pytest.raises(ValueError):
        parse_bool("maybe")


@pytest.mark.parametrize("args, message", [
    (GOOD + ["--set", "test_mode=maybe"], "--set test_mode: expected 1/0"),
    (GOOD + ["--set", "colour=red"], "--set colour: unknown setting"),
    (GOOD + ["--set", "novalue"], "expected KEY=VALUE"),
    (BASE + ["--secret", "secret"], "--set shop_id: This field is required."),
    (BASE + ["--set", "shop_id=shop-1"], "--set secret: This field is required."),
    (BASE + ["--set", "shop_id=bad-shop", "--secret", "secret"], "shop_id: The gateway does not know this shop."),
    (GOOD + ["--min-amount", "1.001"], "--min_amount: Not a valid amount in RUB (at most 2 decimals)."),
    (GOOD + ["--commission-amount", "-1"], "--commission_amount: Must not be negative."),
    (GOOD + ["--min-amount", "10", "--max-amount", "5"], "--max_amount: The maximum must not be less"),
    (["paymethod", "add", "pmfake", "--name", "X", "--currency", "EUR", "--set", "shop_id=a",
      "--secret", "secret"], "--currency: Fake gateway accepts only these currencies: RUB, USD."),
    (["paymethod", "add", "pmfake", "--name", "X", "--currency", "USD", "--set", "shop_id=a",
      "--secret", "secret", "--set", "test_mode=1"], "test_mode: USD payments cannot be tested."),
    (["paymethod", "add", "pmfake", "--name", " ", "--currency", "RUB", "--set", "shop_id=a",
      "--secret", "secret"], "--name: This field is required."),
])
def test_add_refused_with_field_errors(run, args, message):
    result = run(args)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert methods() == []


def test_add_unknown_module(run):
    result = run(["paymethod", "add", "nope", "--name", "X", "--currency", "RUB"])
    assert result.exit_code != 0 and "no payment module 'nope'" in result.output
    assert methods() == []


def test_cli_and_wizard_give_the_same_stored_method(run, fapp):
    create_admin(*ADMIN)
    web = fapp.test_client()
    login(web, *ADMIN)
    wizard_id = walk(web, STEP2, STEP3)
    result = run(["paymethod", "add", "pmfake", "--name", STEP3["name"], "--name-ru", STEP3["name_ru"],
                  "--currency", STEP3["currency"], "--min-amount", STEP3["min_amount"],
                  "--max-amount", STEP3["max_amount"], "--commission-amount", STEP3["commission_amount"],
                  "--commission-percent", STEP3["commission_percent"],
                  "--delete-after-days", STEP3["delete_after_days"], "--sort-order", STEP3["sort_order"],
                  "--allow-refund", "--description", STEP3["description"],
                  "--description-ru", STEP3["description_ru"], "--comment", STEP3["comment"],
                  "--set", f"shop_id={STEP2['shop_id']}", "--secret", "secret",
                  "--set", f"hash_algorithm={STEP2['hash_algorithm']}", "--set", "test_mode=on"],
                 input=f"{STEP2['secret']}\n")
    assert result.exit_code == 0, result.output
    cli_id = int(result.output.strip())
    by_id = {m.id: m for m in methods()}
    wizard, cli = by_id[wizard_id], by_id[cli_id]
    skip = {"id", "created_at", "updated_at", "secrets_encrypted"}
    columns = [c.key for c in PaymentMethod.__table__.columns if c.key not in skip]
    assert len(columns) > 15
    assert {c: getattr(wizard, c) for c in columns} == {c: getattr(cli, c) for c in columns}
    assert full_settings(wizard) == full_settings(cli)


def test_list_and_json_never_show_secrets(run):
    a = add_paymethod("pmfake", {"shop_id": "a", "secret": SECRET}, name="Alpha", sort_order=2,
                      min_amount=Decimal("5"))
    add_paymethod("pmfake", {"shop_id": "b"}, name="Beta", sort_order=1, active=False)
    user = create_client(*CLIENT, currency="RUB")
    service.create_payment(user.account_id, a.id, Decimal("100"), source="test", actor="test")
    text = run(["paymethod", "list"])
    assert text.exit_code == 0
    lines = text.output.strip().splitlines()
    assert "Beta" in lines[0] and "disabled" in lines[0] and "Alpha" in lines[1] and "payments 1" in lines[1]
    result = run(["paymethod", "list", "--json"])
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["Beta", "Alpha"]
    assert rows[1]["min_amount"] == "5.00" and rows[1]["payments"] == 1 and rows[0]["active"] is False
    assert SECRET not in result.output + text.output


def test_enable_disable(run):
    m = add_paymethod("pmfake", {}, name="Alpha")
    method_id = m.id
    assert run(["paymethod", "disable", str(method_id)]).exit_code == 0
    assert methods()[0].active is False
    assert run(["paymethod", "enable", str(method_id)]).exit_code == 0
    assert methods()[0].active is True
    result = run(["paymethod", "disable", "999"])
    assert result.exit_code != 0 and "no payment method 999" in result.output


def test_add_pmtemplate(run):
    form_cls = get_registry().call("pmtemplate", "billcore_integration_form", paymethod=None)
    if form_cls is None or not hasattr(form_cls, "merchant_id"):
        pytest.skip("pmtemplate has no integration form yet")
    result = run(["paymethod", "add", "pmtemplate", "--name", "Tmpl", "--currency", "RUB",
                  "--set", "merchant_id=shop-1", "--secret", "secret", "--set", "test_mode=0"],
                 input="tmpl-secret-123\n")
    assert result.exit_code == 0, result.output
    [m] = methods()
    assert m.settings["merchant_id"] == "shop-1" and m.settings["test_mode"] is False
    assert full_settings(m)["secret"] == "tmpl-secret-123"
    result = run(["paymethod", "add", "pmtemplate", "--name", "Tmpl", "--currency", "RUB",
                  "--set", "merchant_id=shop-1", "--set", "test_mode=0"])
    assert result.exit_code != 0 and "secret" in result.output


def test_a_checkbox_ticked_by_default_must_be_given(run):
    """pmtemplate's test mode is ticked in the wizard: a script that does not say is refused, never silently
    on (or off); a box not ticked by default and not given is off, as a browser posts it."""
    form_cls = get_registry().call("pmtemplate", "billcore_integration_form", paymethod=None)
    assert form_cls.test_mode.kwargs["default"] is True  # the premise: ticked in the wizard
    add = ["paymethod", "add", "pmtemplate", "--name", "Tmpl", "--currency", "RUB", "--set", "merchant_id=shop-1",
           "--secret", "secret"]
    result = run(add, input="tmpl-secret-123\n")
    assert result.exit_code != 0
    assert "--set test_mode: ticked by default in the wizard: give --set test_mode=yes or --set test_mode=no" \
        in result.output
    assert methods() == []
    assert run(add + ["--set", "test_mode=yes"], input="tmpl-secret-123\n").exit_code == 0
    assert methods()[0].settings["test_mode"] is True
    assert run(GOOD).exit_code == 0  # pmfake's test mode: not ticked by default, not given, off
    assert methods()[1].settings["test_mode"] is False


def test_a_secret_on_the_command_line_is_refused_and_nothing_is_stored(run):
    result = run(BASE + ["--set", "shop_id=shop-1", "--set", f"secret={SECRET}"])
    assert result.exit_code != 0 and "--secret secret" in result.output
    assert methods() == []


def test_a_secret_from_the_environment(run, monkeypatch):
    monkeypatch.setenv("BILLCORE_SECRET_SECRET", "env-secret-value-2")
    assert run(GOOD, input="").exit_code == 0
    [m] = methods()
    assert full_settings(m)["secret"] == "env-secret-value-2"


def test_secret_names_that_are_no_secrets_are_refused(run):
    result = run(BASE + ["--set", "secret=x", "--secret", "shop_id"])
    assert result.exit_code != 0 and "not a secret setting" in result.output
