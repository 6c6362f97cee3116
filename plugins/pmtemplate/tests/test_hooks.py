"""The module's descriptive hooks: info, integration form, validation, gateway setup, start."""
from __future__ import annotations

from werkzeug.datastructures import MultiDict

from billcore import hookspecs
from billcore.paymodule import StartAction

import pmtemplate

from .helpers import SETTINGS, make_payment


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
    assert len(plain.warnings) == 2


def test_start_payment(app, client_user):
    method, payment = make_payment(client_user)
    action = _call(app, "billcore_start_payment", payment=payment, paymethod=method)
    assert action == StartAction(url=f"/mancgi/tplpayment?elid={payment.id}")


def test_ops_command(app, client_client, client_user):
    _, payment = make_payment(client_user)
    client_client.get(f"/mancgi/tplpayment?elid={payment.id}")
    location = client_client.get(f"/mancgi/tplpayment?elid={payment.id}").headers["Location"]
    client_client.get(location)
    result = app.test_cli_runner().invoke(args=["pmtemplate", "ops"])
    assert result.exit_code == 0 and f"payment {payment.id}" in result.output
