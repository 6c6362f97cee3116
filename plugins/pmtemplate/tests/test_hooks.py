"""The module's descriptive hooks: info, integration form, validation, gateway setup, start."""
from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from billcore import hookspecs
from billcore.paymodule import Customer, StartAction, StartRefused

import pmtemplate
from pmtemplate.signing import verify

from .helpers import SECRET, SETTINGS, fresh, make_payment, split


def _call(app, hook, **kwargs):
    return app.extensions["billcore.modules"].call("pmtemplate", hook, **kwargs)


def test_every_hook_is_implemented():
    specs = {name for name in dir(hookspecs) if name.startswith("billcore_")}
    assert specs and specs <= set(dir(pmtemplate))


def test_module_info(app):
    info = app.extensions["billcore.modules"].info("pmtemplate")
    assert info.key == "pmtemplate" and info.development_only and info.secret_fields == ("secret",)
    assert {"checkpay", "refund", "recurring", "test_mode"} <= info.features


def test_not_loaded_in_production(tmp_path):
    from billcore import create_app

    prod = create_app({"INSTANCE_PATH": str(tmp_path / "i"), "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"})
    assert "pmtemplate" not in prod.extensions["billcore.modules"].modules
    allowed = create_app({"INSTANCE_PATH": str(tmp_path / "j"), "DATABASE_URL": f"sqlite:///{tmp_path / 'q.db'}",
                          "PAYMENT_MODULES": ["pmtemplate"]})
    assert "pmtemplate" in allowed.extensions["billcore.modules"].modules


def test_integration_form(app):
    form_class = _call(app, "billcore_integration_form", paymethod=None)
    with app.test_request_context():
        good = form_class(formdata=MultiDict({"merchant_id": "shop-1", "secret": "longenough", "test_mode": "y"}))
        assert good.validate(), good.errors
        bad = form_class(formdata=MultiDict({"merchant_id": "", "secret": "short"}))
        assert not bad.validate()
        assert set(bad.errors) == {"merchant_id", "secret"}


def test_validation_hook(app):
    assert _call(app, "billcore_validate_integration", settings=dict(SETTINGS), currency="RUB") == {}
    errors = _call(app, "billcore_validate_integration", currency="RUB",
                   settings={"merchant_id": "bad id!", "secret": "short", "gateway_url": "ftp://x"})
    assert set(errors) == {"merchant_id", "secret", "gateway_url"}
    assert "short" not in str(errors)  # never echo a secret
    assert "secret" in _call(app, "billcore_validate_integration", settings={"merchant_id": "a"}, currency=None)


def test_gateway_setup(app):
    setup = _call(app, "billcore_gateway_setup", paymethod=None, settings=dict(SETTINGS),
                  base_url="https://billing.example.com")
    values = {item.value for item in setup.items}
    assert "https://billing.example.com/mancgi/tplresult" in values
    assert "https://billing.example.com/mancgi/tplsuccess" in values
    assert not setup.warnings
    plain = _call(app, "billcore_gateway_setup", paymethod=None, settings={}, base_url="http://billing.example.com:8080")
    # plain http is billcore's own warning on the method's page; the unusual port is this module's
    assert len(plain.warnings) == 1 and "8080" in plain.warnings[0]


CUSTOMER = Customer(user_id=7, email="payer@test.example", language="ru")


def test_start_payment_names_a_signed_request_and_changes_nothing(app, client_user):
    method, payment = make_payment(client_user)
    with app.test_request_context():
        action = _call(app, "billcore_start_payment", payment=payment, paymethod=method, settings=dict(SETTINGS),
                       customer=CUSTOMER)
    assert isinstance(action, StartAction) and action.method == "GET" and not action.fields
    path, params = split(action.url)
    assert path == "/fakegw/pay"  # no gateway URL: the fake gateway inside this billcore
    assert verify(params, SECRET) and SECRET not in action.url
    assert (params["payment_id"], params["amount"], params["currency"]) == (str(payment.id), "100.00", "RUB")
    base = "https://billing.example.com"
    assert params["result_url"] == f"{base}/mancgi/tplresult"
    assert params["success_url"] == f"{base}/mancgi/tplsuccess?elid={payment.id}"
    assert params["return_url"] == f"{base}/payments/{payment.id}/return/pending"
    assert fresh(payment.id).status == "new"  # billcore marks it inpay, not the hook


def test_start_payment_to_a_real_gateway_url(app, client_user):
    method, payment = make_payment(client_user)
    settings = {**SETTINGS, "gateway_url": "https://pay.example.net/"}
    with app.test_request_context():
        action = _call(app, "billcore_start_payment", payment=payment, paymethod=method, settings=settings,
                       customer=CUSTOMER)
    assert action.url.startswith("https://pay.example.net/fakegw/pay?")
    assert verify(split(action.url)[1], SECRET)


def test_start_payment_refuses_when_there_is_nowhere_to_send_the_customer(app, client_user, monkeypatch):
    method, payment = make_payment(client_user)
    monkeypatch.delitem(app.view_functions, "pmtemplate.fakegw_pay")  # as on a production install
    with app.test_request_context(), pytest.raises(StartRefused, match="not configured yet"):
        _call(app, "billcore_start_payment", payment=payment, paymethod=method, settings=dict(SETTINGS),
              customer=CUSTOMER)


def test_ops_command(app, client_client, client_user):
    _, payment = make_payment(client_user)
    to_gateway = client_client.post(f"/payments/{payment.id}/pay").headers["Location"]
    assert client_client.get(to_gateway).status_code == 200  # the fake gateway's page opens the operation
    result = app.test_cli_runner().invoke(args=["pmtemplate", "ops"])
    assert result.exit_code == 0 and f"payment {payment.id}" in result.output
