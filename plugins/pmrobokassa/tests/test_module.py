"""Module description, the integration form, settings validation and the gateway-side instructions."""
from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from billcore.db import db
from billcore.models import Payment, PaymentMethod
from billcore.gateway import Customer, StartRefused
from billcore.paymodule import FEATURES
from billcore.plugins import get_registry
from pmrobokassa import protocol
from pmrobokassa.forms import build_form
from billcore.testing.fixtures import add_paymethod

from .helpers import SETTINGS


def validate(settings: dict, currency: str | None = "RUB") -> dict:
    return get_registry().call("pmrobokassa", "billcore_validate_integration", settings=settings, currency=currency)


def test_module_info(app):
    info = get_registry().info("pmrobokassa")
    assert info.title == "Robokassa" and info.currencies == ("RUB",)
    assert info.features == frozenset(FEATURES)
    assert info.categories == ("Bank cards", "Cash", "E-wallets", "Mobile payments", "Online banking")
    assert info.secret_fields == ("password1", "password2", "password3")
    assert info.registration_url == "https://partner.robokassa.ru/Reg/Register"
    logo = app.test_client().get(info.logo)
    assert logo.status_code == 200 and b"<svg" in logo.data
    assert str(info.description)


def test_form_fields_and_defaults(app):
    with app.test_request_context("/"):
        form_class = get_registry().call("pmrobokassa", "billcore_integration_form", paymethod=None)
        form = form_class(meta={"csrf": False})
    names = [f.name for f in form]
    for name in ("client", "identifier", "password1", "password2", "password3", "hash_algorithm",
                 "payment_method", "url", "test_mode", "receipt_enabled", "receipt_sno", "receipt_tax",
                 "receipt_payment_method", "receipt_payment_object", "receipt_item_name"):
        assert name in names
    assert form.client.data == "existing" and form.hash_algorithm.data == "md5"
    assert form.url.data == protocol.STANDARD_PAYMENT_URL and form.payment_method.data == ""
    assert [c.value for c in form.hash_algorithm.choices] == list(protocol.HASH_ALGORITHMS)
    assert "partner.robokassa.ru/Reg/Register" in str(form.client.description)
    html = form.payment_method()
    for group in ("Bank cards", "Cash", "E-wallets", "Mobile payments", "Online banking"):
        assert f'<optgroup label="{group}">' in html
    assert form.receipt_enabled.data is False


def test_form_checks_passwords_and_url(app):
    with app.test_request_context("/", method="POST"):
        form_class = build_form(None)
        bad = form_class(formdata=MultiDict({"client": "existing", "identifier": "demo", "password1": "short",
                                             "password2": "abcdefghij", "hash_algorithm": "md5",
                                             "url": "ftp://x/Merchant/Index.aspx"}), meta={"csrf": False})
        assert not bad.validate()
        assert "at least 8 characters" in " ".join(bad.password1.errors)
        assert "digit" in " ".join(bad.password2.errors)
        assert bad.url.errors
        good = form_class(formdata=MultiDict({"client": "existing", "identifier": "demo", "password1": "",
                                              "password2": "", "hash_algorithm": "sha512",
                                              "url": protocol.STANDARD_PAYMENT_URL, "payment_method": "BankCardPSR"}),
                          meta={"csrf": False})
        assert good.validate(), good.errors  # blank passwords: "keep"; the hook checks the merged value


def test_validation_hook(app):
    assert validate(dict(SETTINGS)) == {}
    assert "password1" in validate({**SETTINGS, "password1": ""})
    errors = validate({**SETTINGS, "password1": "abc1"})
    assert any("at least 8 characters" in e for e in errors["password1"])
    assert any("letter" in e for e in validate({**SETTINGS, "password2": "123456789"})["password2"])
    assert any("digit" in e for e in validate({**SETTINGS, "password2": "abcdefghi"})["password2"])
    same = validate({**SETTINGS, "password2": SETTINGS["password1"]})
    assert any("must be different" in e for e in same["password2"])
    usd = validate(dict(SETTINGS), currency="USD")
    assert "RUB" in usd["currency"][0]
    assert "url" in validate({**SETTINGS, "url": "https://example.com/pay"})
    assert "url" in validate({**SETTINGS, "url": "javascript:alert(1)//Merchant/Index.aspx"})
    assert validate({**SETTINGS, "url": "http://127.0.0.1:5000/sandbox/robokassa/Merchant/Index.aspx"}) == {}
    assert "hash_algorithm" in validate({**SETTINGS, "hash_algorithm": "crc32"})
    assert "receipt_tax" in validate({**SETTINGS, "receipt_enabled": True, "receipt_tax": "vat99",
                                      "receipt_item_name": "x"})
    assert validate(dict(SETTINGS), currency=None) == {}


def test_edit_keeps_stored_payment_option(app):
    method = add_paymethod("pmrobokassa", {**SETTINGS, "payment_method": "LegacyLabelR"})
    with app.test_request_context("/"):
        form_class = build_form(db.session.get(PaymentMethod, method.id))
        form = form_class(data={"payment_method": "LegacyLabelR"}, meta={"csrf": False})
        assert 'value="LegacyLabelR"' in form.payment_method()
        assert "Leave blank to keep" in str(form.password1.description)


@pytest.mark.parametrize("base,warn", [
    ("https://billing.example.com", []),
    ("https://billing.example.com:443", []),
    ("https://billing.example.com:8443", ["port 8443"]),
    ("http://billing.example.com", []),  # plain http: the core warns on the method's page, not the module
    ("http://billing.example.com:8080", ["port 8080"]),
])
def test_gateway_setup(app, base, warn):
    method = add_paymethod("pmrobokassa", {**SETTINGS, "hash_algorithm": "sha256"})
    with app.test_request_context("/"):
        setup = get_registry().call("pmrobokassa", "billcore_gateway_setup", paymethod=method,
                                    settings=dict(SETTINGS, hash_algorithm="sha256"), base_url=base + "/")
    values = [item.value for item in setup.items]
    assert values == [f"{base}/mancgi/rkresult", "POST", f"{base}/mancgi/rksuccess", "POST",
                      f"{base}/mancgi/rkfail", "POST", "SHA256"]
    assert len(setup.warnings) == len(warn)
    for expected, got in zip(warn, setup.warnings):
        assert expected in got


def _start(app, payment, settings: dict, customer: Customer):
    with app.test_request_context("/"):
        return get_registry().call("pmrobokassa", "billcore_start_payment", payment=payment,
                                   paymethod=db.session.get(PaymentMethod, payment.paymethod_id),
                                   settings=settings, customer=customer)


def test_start_payment_is_the_signed_post_to_robokassas_payment_page(app, payment):
    """The hook only builds the gateway's request: a POST to another site (so the core adds no CSRF token),
    the fields signed with Password #1, the customer's e-mail and language; it changes nothing."""
    customer = Customer(user_id=1, email="payer@example.com", language="ru")
    action = _start(app, payment, dict(SETTINGS), customer)
    assert action.url == protocol.STANDARD_PAYMENT_URL and action.method == "POST"
    assert not action.posts_to_this_site
    fields = dict(action.fields)
    assert (fields["MerchantLogin"], fields["OutSum"], fields["InvId"]) == (SETTINGS["identifier"], "100.00",
                                                                            str(payment.id))
    assert (fields["Email"], fields["Culture"]) == ("payer@example.com", "ru")
    assert fields["SignatureValue"] == protocol.init_signature(
        "md5", merchant_login=SETTINGS["identifier"], out_sum="100.00", inv_id=str(payment.id),
        password1=SETTINGS["password1"])
    assert not {SETTINGS["password1"], SETTINGS["password2"], SETTINGS["password3"]} & set(fields.values())
    assert db.session.get(Payment, payment.id).status == "new"  # the core marks it inpay, not the hook
    # every address comes from the method's URL: a sandbox's payment page stands in for Robokassa's
    sandbox = "http://127.0.0.1:5000/sandbox/robokassa/Merchant/Index.aspx"
    assert _start(app, payment, {**SETTINGS, "url": sandbox}, customer).url == sandbox
    english = dict(_start(app, payment, dict(SETTINGS), Customer(user_id=1, email="", language="en")).fields)
    assert english["Culture"] == "en" and "Email" not in english


@pytest.mark.parametrize("missing", ["identifier", "password1"])
def test_start_payment_refuses_a_method_that_is_not_configured(app, payment, missing):
    with pytest.raises(StartRefused, match="not configured"):
        _start(app, payment, {**SETTINGS, missing: ""}, Customer(user_id=1, email="payer@example.com"))
    assert db.session.get(Payment, payment.id).status == "new"
