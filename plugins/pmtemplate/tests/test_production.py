"""pmtemplate loaded on a production install (``PAYMENT_MODULES`` names it, no debug, no testing): the
fake gateway's page does not exist there, and a method without a gateway URL is refused cleanly by the
module's start hook (billcore's payment door then leaves the payment ``new``)."""
from __future__ import annotations

import pytest

from .helpers import fresh, make_payment


@pytest.fixture
def app_config():
    """Production: neither TESTING nor debug nor DEV_MODULES; the allow-list names the template."""
    return {"TESTING": False, "DEV_MODULES": False, "PAYMENT_MODULES": ["pmtemplate"]}


def test_fake_gateway_page_is_not_served_in_production(app):
    assert not app.testing and not app.debug
    assert "pmtemplate" in app.extensions["billcore.modules"].modules
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert {"/mancgi/tplresult", "/mancgi/tplsuccess", "/mancgi/tplfail"} <= rules
    assert "/mancgi/tplpayment" not in rules  # the way to the gateway is billcore's payment door
    assert not any(rule.startswith("/fakegw") for rule in rules), rules
    client = app.test_client()
    assert client.get("/fakegw/pay").status_code == 404
    assert client.post("/fakegw/pay", data={"action": "pay"}).status_code == 404


def test_starting_without_a_gateway_url_does_not_fake_a_gateway(app, client_client, client_user):
    _, payment = make_payment(client_user)  # gateway_url is blank: only the fake gateway could take it
    resp = client_client.post(f"/payments/{payment.id}/pay")
    assert resp.status_code == 302 and resp.headers["Location"] == f"/payments/{payment.id}"
    page = client_client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "not configured yet" in page  # the module's StartRefused message, shown by billcore
    assert fresh(payment.id).status == "new"  # never sent anywhere, so not "inpay"


@pytest.mark.parametrize("config", [{"TESTING": True}, {"DEV_MODULES": True}, {"DEBUG": True}])
def test_fake_gateway_page_exists_in_development(tmp_path, config):
    from billcore.testing.fixtures import make_app

    settings = {"TESTING": False, "DEV_MODULES": False, "PAYMENT_MODULES": None, **config}
    dev = make_app(tmp_path, f"sqlite:///{tmp_path / 'dev.sqlite'}", **settings)
    rules = {rule.rule: rule.endpoint for rule in dev.url_map.iter_rules()}
    assert rules.get("/fakegw/pay") == "pmtemplate.fakegw_pay"
