"""The start through the core's payment door and the three callbacks over the Flask test client, on SQLite
and PostgreSQL."""
from __future__ import annotations

import re
from decimal import Decimal
from html import unescape
from urllib.parse import unquote

import pytest
from flask import g
from sqlalchemy.exc import OperationalError

from billcore.db import db
from billcore.models import Account, PaymentMethod
from billcore.payments import service
from pmrobokassa import protocol
from pmrobokassa import views as rk_views
from billcore.testing.fixtures import CLIENT, OTHER_CLIENT, add_paymethod, login

from .helpers import LOGIN, P1, P2, P3, SETTINGS, events, ledger_count, reload, result_params, success_params

INPUT_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def form_fields(html: str) -> dict[str, str]:
    """The hidden fields of the redirect form (the page's own CSRF token, in its header's forms, is left
    out: it is never sent to Robokassa, and its signature carries the second it was made)."""
    return {name: unescape(value) for name, value in INPUT_RE.findall(html) if name != "csrf_token"}


def balance(account_id: int) -> Decimal:
    db.session.expire_all()
    return db.session.get(Account, account_id).balance


def set_settings(method: PaymentMethod, **changes) -> None:
    from billcore.paymethods import store_settings
    from billcore.plugins import get_registry

    m = db.session.get(PaymentMethod, method.id)
    store_settings(m, get_registry().info("pmrobokassa"), {**SETTINGS, **changes})
    db.session.commit()


# --------------------------------------------------------------------------------------------------
# The start: the core's payment door posts Robokassa's signed form
# --------------------------------------------------------------------------------------------------


def pay(client, payment_id: int | str, **kwargs):
    """The payment page's Pay button (``POST /payments/<id>/pay``): the core's door, which calls the
    module's start hook. CSRF is off in these tests; test_hardening.py checks it on."""
    return client.post(f"/payments/{payment_id}/pay", **kwargs)


def test_redirect_form_fields_and_signature(app, client_client, payment):
    response = pay(client_client, payment.id)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'action="{protocol.STANDARD_PAYMENT_URL}"' in html and "data-autosubmit" in html
    assert 'method="post"' in html and "<script>" not in html  # no inline script (CSP)
    fields = form_fields(html)
    assert list(fields) == ["MerchantLogin", "OutSum", "InvId", "Description", "SignatureValue", "Culture",
                            "Encoding", "Email"]  # in payform's order, and no CSRF token for Robokassa
    assert fields["MerchantLogin"] == LOGIN
    assert fields["OutSum"] == "100.00"
    assert fields["InvId"] == str(payment.id)
    assert fields["Encoding"] == "utf-8"
    assert fields["Email"] == CLIENT[0]
    assert fields["Culture"] in ("en", "ru")
    assert 0 < len(fields["Description"]) <= 100
    assert "IsTest" not in fields and "Receipt" not in fields and "IncCurrLabel" not in fields
    expected = protocol.init_signature("md5", merchant_login=LOGIN, out_sum="100.00", inv_id=str(payment.id),
                                       password1=P1)
    assert fields["SignatureValue"] == expected
    to_robokassa = html[html.index("data-autosubmit"):]
    assert "csrf_token" not in to_robokassa[:to_robokassa.index("</form>")]  # billcore's token stays here
    assert reload(payment.id).status == "inpay"
    assert P1 not in html and P2 not in html and P3 not in html
    # the start is the inpay event, with the request's fields (signatures only, never a password)
    [started] = [e for e in events(payment.id, "checkout") if e.status_to == "inpay"]
    assert started.data["url"] == protocol.STANDARD_PAYMENT_URL and started.data["InvId"] == str(payment.id)
    assert not {P1, P2, P3} & {str(v) for v in started.data.values()}
    # A second visit (the client pays an inpay payment again) gives the same form.
    again = pay(client_client, payment.id)
    assert again.status_code == 200 and form_fields(again.get_data(as_text=True)) == fields
    assert reload(payment.id).status == "inpay"


def test_redirect_culture_follows_the_clients_language(app, client_client, client_user, payment):
    client_user.language = "ru"
    db.session.commit()
    fields = form_fields(pay(client_client, payment.id).get_data(as_text=True))
    assert fields["Culture"] == "ru"


def test_redirect_total_with_commission_test_mode_label_and_receipt(app, client_client, client_user):
    method = add_paymethod("pmrobokassa", {**SETTINGS, "hash_algorithm": "sha256", "test_mode": True,
                                           "payment_method": "BankCardPSR", "receipt_enabled": True,
                                           "receipt_sno": "usn_income", "receipt_tax": "none",
                                           "receipt_payment_method": "full_payment",
                                           "receipt_payment_object": "service", "receipt_item_name": "Hosting"},
                           commission_percent=Decimal("3.5"))
    p = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    assert p.total == Decimal("103.50")
    fields = form_fields(pay(client_client, p.id).get_data(as_text=True))
    assert fields["OutSum"] == "103.50" and fields["IsTest"] == "1" and fields["IncCurrLabel"] == "BankCardPSR"
    receipt = fields["Receipt"]
    assert receipt.startswith("%7B")  # URL-encoded once, as signed
    decoded = unquote(receipt)
    assert decoded == ('{"sno":"usn_income","items":[{"name":"Hosting","quantity":1,"sum":103.5,'
                       '"payment_method":"full_payment","payment_object":"service","tax":"none"}]}')
    expected = protocol.init_signature("sha256", merchant_login=LOGIN, out_sum="103.50", inv_id=str(p.id),
                                       password1=P1, receipt=receipt)
    assert fields["SignatureValue"] == expected


def test_recurring_parent_sends_recurring_without_inc_curr_label(app, client_client, client_user):
    method = add_paymethod("pmrobokassa", {**SETTINGS, "payment_method": "BankCardPSR"}, recurring=True)
    p = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    service.set_gateway_data(p.id, recurring=True)
    fields = form_fields(pay(client_client, p.id).get_data(as_text=True))
    assert fields["Recurring"] == "true"
    assert "IncCurrLabel" not in fields  # Robokassa refuses the two together (docs/robokassa.md §7.1)


def forget_user() -> None:
    """The app fixture keeps one app context (and so one ``g``) for every request of a test; Flask-Login
    caches the user in ``g``, so switch users only after forgetting it."""
    g.pop("_login_user", None)


def _refused_start(client, payment_id: int, message: str) -> None:
    """The door refused: back to the payment's page with ``message``, no form for Robokassa."""
    response = pay(client, payment_id)
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/payments/{payment_id}")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert message in unescape(page) and "MerchantLogin" not in page


def test_redirect_refusals(app, client_client, client_user, other_client_user, method, payment):
    other = app.test_client()
    forget_user()
    login(other, *OTHER_CLIENT)
    assert pay(other, payment.id).status_code == 404  # someone else's payment: as if it did not exist
    forget_user()
    assert pay(client_client, 999999).status_code == 404
    assert pay(client_client, "abc").status_code == 404
    forget_user()
    anonymous = pay(app.test_client(), payment.id)
    forget_user()
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert reload(payment.id).status == "new"
    m = db.session.get(PaymentMethod, method.id)
    m.active = False
    db.session.commit()
    _refused_start(client_client, payment.id, "This payment method is no longer available")
    assert reload(payment.id).status == "new"
    m.active = True
    db.session.commit()
    service.set_paid(payment.id, amount=Decimal("100.00"), currency="RUB", source="test")
    _refused_start(client_client, payment.id, "This payment can no longer be paid")
    assert reload(payment.id).status == "paid" and ledger_count(payment.id) == 1


def test_a_method_without_identifier_or_password1_refuses_to_start(app, client_client, client_user, method, payment):
    from pathlib import Path

    no_password = add_paymethod("pmrobokassa", {**SETTINGS, "password1": ""})  # a new method: nothing kept
    unsigned = service.create_payment(client_user.account_id, no_password.id, Decimal("100.00"))
    set_settings(method, identifier="")
    for p in (payment, unsigned):
        _refused_start(client_client, p.id, "This payment method is not configured yet")
        assert reload(p.id).status == "new"
        assert not [e for e in events(p.id, "checkout") if e.status_to == "inpay"]
    log = (Path(app.config["LOG_DIR"]) / "rkpayment.log").read_text()
    for p in (payment, unsigned):
        assert f'payment={p.id} outcome="refused: payment method not configured"' in log


# --------------------------------------------------------------------------------------------------
# /mancgi/rkresult
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("out_sum,upper,http_method", [
    ("100.000000", True, "post"), ("100.00", False, "get"), ("100.000000", False, "get"), ("100.00", True, "post"),
])
def test_result_credits_once(app, client_user, payment, out_sum, upper, http_method):
    service.set_in_pay(payment.id, source="test")
    c = app.test_client()
    params = result_params(payment.id, out_sum, upper=upper)
    send = (lambda: c.post("/mancgi/rkresult", data=params)) if http_method == "post" else \
        (lambda: c.get("/mancgi/rkresult", query_string=params))
    for _ in range(3):  # Robokassa repeats: every repeat gets the same OK
        response = send()
        assert response.status_code == 200
        assert response.get_data(as_text=True) == f"OK{payment.id}"
        assert response.mimetype == "text/plain"
    p = reload(payment.id)
    assert p.status == "paid"
    assert ledger_count(payment.id) == 1
    assert balance(client_user.account_id) == Decimal("100.00")
    assert p.gateway_data["inc_curr_label"] == "BankCardPSR" and p.gateway_data["fee"] == "3.900000"
    recorded = events(payment.id, "rkresult")
    assert len(recorded) == 3 and recorded[0].status_to == "paid" and recorded[0].answer == f"OK{payment.id}"


def test_result_late_notification_credits_cancelled_payment(app, client_user, payment):
    service.set_cancelled(payment.id, source="test", reason="client gave up")
    response = app.test_client().post("/mancgi/rkresult", data=result_params(payment.id))
    assert response.get_data(as_text=True) == f"OK{payment.id}"  # money that arrives is never lost
    assert reload(payment.id).status == "paid" and balance(client_user.account_id) == Decimal("100.00")


def test_result_with_shp_params(app, payment):
    shp = {"Shp_login": "Vasya", "Shp_item": "1"}
    c = app.test_client()
    assert c.post("/mancgi/rkresult", data=result_params(payment.id, shp=shp)).get_data(as_text=True) == \
        f"OK{payment.id}"
    assert reload(payment.id).status == "paid"


def test_result_shp_params_are_signed(app, payment):
    params = result_params(payment.id, shp={"Shp_item": "1"})
    params["Shp_item"] = "2"  # tampered custom parameter
    response = app.test_client().post("/mancgi/rkresult", data=params)
    assert response.status_code == 400 and response.get_data(as_text=True) == "bad signature"
    assert reload(payment.id).status == "new"


@pytest.mark.parametrize("algorithm", protocol.HASH_ALGORITHMS)
def test_result_every_algorithm(app, client_user, algorithm):
    method = add_paymethod("pmrobokassa", {**SETTINGS, "hash_algorithm": algorithm})
    p = service.create_payment(client_user.account_id, method.id, Decimal("100.00"))
    c = app.test_client()
    wrong = "sha1" if algorithm != "sha1" else "md5"
    assert c.post("/mancgi/rkresult", data=result_params(p.id, algorithm=wrong)).status_code == 400
    assert reload(p.id).status == "new"
    response = c.post("/mancgi/rkresult", data=result_params(p.id, algorithm=algorithm))
    assert response.get_data(as_text=True) == f"OK{p.id}"


def _mutations(pid: int):
    good = result_params(pid)
    yield "missing OutSum", {k: v for k, v in good.items() if k != "OutSum"}, 400, "missing field OutSum"
    # the core reads InvId (billcore's payment id) before the module sees anything
    yield "missing InvId", {k: v for k, v in good.items() if k != "InvId"}, 400, "bad request"
    yield "missing SignatureValue", {k: v for k, v in good.items() if k != "SignatureValue"}, 400, \
        "missing field SignatureValue"
    yield "malformed OutSum", {**good, "OutSum": "100,000000"}, 400, "malformed field OutSum"
    yield "negative OutSum", {**good, "OutSum": "-100.00"}, 400, "malformed field OutSum"
    yield "malformed InvId", {**good, "InvId": "12abc"}, 400, "bad request"
    yield "unknown payment", result_params(pid + 1000), 404, "unknown payment"
    yield "wrong password", result_params(pid, password=P1), 400, "bad signature"
    yield "wrong algorithm", result_params(pid, algorithm="sha256"), 400, "bad signature"
    yield "tampered amount", {**good, "OutSum": "1.000000"}, 400, "bad signature"
    yield "empty signature", {**good, "SignatureValue": ""}, 400, "missing field SignatureValue"


def test_result_failures_change_nothing(app, client_user, payment):
    service.set_in_pay(payment.id, source="test")
    c = app.test_client()
    for name, params, status, text in _mutations(payment.id):
        response = c.post("/mancgi/rkresult", data=params)
        assert (name, response.status_code, response.get_data(as_text=True)) == (name, status, text)
        assert response.mimetype == "text/plain"
        assert not response.get_data(as_text=True).startswith("OK")
        assert reload(payment.id).status == "inpay", name
    assert balance(client_user.account_id) == Decimal("0.00")
    assert ledger_count(payment.id) == 0
    rejected = events(payment.id, "rkresult")
    assert len(rejected) >= 8 and all(e.outcome.startswith("rejected") for e in rejected)
    assert events(None, "rkresult")  # the unknown payment is recorded without a payment


def test_result_test_payment_never_credits_live_method(app, client_user, payment):
    response = app.test_client().post("/mancgi/rkresult", data=result_params(payment.id, IsTest="1"))
    assert response.status_code == 400 and "live mode" in response.get_data(as_text=True)
    assert reload(payment.id).status == "new"
    test_method = add_paymethod("pmrobokassa", {**SETTINGS, "test_mode": True})
    p = service.create_payment(client_user.account_id, test_method.id, Decimal("100.00"))
    ok = app.test_client().post("/mancgi/rkresult", data=result_params(p.id, IsTest="1"))
    assert ok.get_data(as_text=True) == f"OK{p.id}" and reload(p.id).status == "paid"


def test_result_unexpected_error_is_not_ok(app, payment, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(rk_views, "set_paid", broken)  # the name the view calls
    response = app.test_client().post("/mancgi/rkresult", data=result_params(payment.id))
    assert response.status_code == 500 and not response.get_data(as_text=True).startswith("OK")
    assert reload(payment.id).status == "new"


@pytest.mark.parametrize("path", ["/mancgi/rkresult", "/mancgi/rksuccess"])
def test_callback_inv_id_beyond_any_payment_id_is_unknown_not_a_database_error(app, payment, path):
    """Robokassa's InvId may be larger than an INTEGER key: such a payment cannot exist here (found by
    the fuzz test on PostgreSQL, which refused the lookup with 'integer out of range'). The notification
    answers 404; the payer's signed return gets the invalid-link page, as for any id it cannot check."""
    params = {**result_params(payment.id), "InvId": "3000000000"}
    response = app.test_client().post(path, data=params)
    if path.endswith("rkresult"):
        assert (response.status_code, response.get_data(as_text=True)) == (404, "unknown payment")
    else:
        assert response.status_code == 400 and "not valid" in response.get_data(as_text=True)
    assert reload(payment.id).status == "new" and ledger_count(payment.id) == 0


def test_a_start_of_an_id_beyond_any_payment_id_is_not_found(client_client, payment):
    assert pay(client_client, 3000000000).status_code == 404


def test_result_payment_of_another_module(app, client_user):
    """Another module's payment is answered like an unknown one (the caller learns nothing of which module
    a payment has), and the refusal is recorded without touching that payment."""
    other = add_paymethod("pmtemplate", {"secret": "template-secret-1"})
    p = service.create_payment(client_user.account_id, other.id, Decimal("100.00"))
    response = app.test_client().post("/mancgi/rkresult", data=result_params(p.id))
    assert (response.status_code, response.get_data(as_text=True)) == (404, "unknown payment")
    assert reload(p.id).status == "new" and ledger_count(p.id) == 0
    assert not events(p.id, "rkresult") and events(None, "rkresult")


def test_result_wrong_amount_with_valid_signature_is_fraud(app, client_user, payment):
    c = app.test_client()
    response = c.post("/mancgi/rkresult", data=result_params(payment.id, "1.000000"))
    assert response.status_code == 400 and not response.get_data(as_text=True).startswith("OK")
    assert "amount mismatch" in response.get_data(as_text=True)
    assert reload(payment.id).status == "fraud"
    assert balance(client_user.account_id) == Decimal("0.00")
    repeat = c.post("/mancgi/rkresult", data=result_params(payment.id, "1.000000"))
    assert repeat.status_code == 409 and not repeat.get_data(as_text=True).startswith("OK")
    genuine = c.post("/mancgi/rkresult", data=result_params(payment.id))  # an admin must decide
    assert genuine.status_code == 409 and reload(payment.id).status == "fraud"


def test_result_credits_payment_of_disabled_method(app, client_user, method, payment):
    service.set_in_pay(payment.id, source="test")
    m = db.session.get(PaymentMethod, method.id)
    m.active = False
    db.session.commit()
    response = app.test_client().post("/mancgi/rkresult", data=result_params(payment.id))
    assert response.get_data(as_text=True) == f"OK{payment.id}"
    assert reload(payment.id).status == "paid" and balance(client_user.account_id) == Decimal("100.00")


def test_result_database_failure_answers_503(app, client_user, payment, monkeypatch):
    def broken(*args, **kwargs):
        raise OperationalError("UPDATE payments", {}, Exception("server closed the connection"))

    monkeypatch.setattr(rk_views, "set_paid", broken)  # the name the view calls
    response = app.test_client().post("/mancgi/rkresult", data=result_params(payment.id))
    assert response.status_code == 503 and not response.get_data(as_text=True).startswith("OK")
    monkeypatch.undo()
    assert reload(payment.id).status == "new" and ledger_count(payment.id) == 0
    # Robokassa's retry then succeeds.
    assert app.test_client().post("/mancgi/rkresult", data=result_params(payment.id)).status_code == 200
    assert reload(payment.id).status == "paid"


def test_result_database_unreachable_before_the_lock_answers_503(app, payment, monkeypatch):
    def unreachable():
        raise OperationalError("BEGIN", {}, Exception("could not connect"))

    # the payment is first read in the service's transaction: the failure is on taking its connection
    monkeypatch.setattr(service, "write_connection", unreachable)
    response = app.test_client().post("/mancgi/rkresult", data=result_params(payment.id))
    assert response.status_code == 503 and not response.get_data(as_text=True).startswith("OK")
    monkeypatch.undo()
    assert reload(payment.id).status == "new" and ledger_count(payment.id) == 0


def test_result_ip_allow_list(app, payment):
    app.config["PMROBOKASSA_CHECK_IP"] = True
    c = app.test_client()
    response = c.post("/mancgi/rkresult", data=result_params(payment.id))
    assert response.status_code == 403 and reload(payment.id).status == "new"
    # Without a configured proxy the forwarded header is ignored.
    forged = c.post("/mancgi/rkresult", data=result_params(payment.id),
                    headers={"X-Forwarded-For": "185.59.216.65"})
    assert forged.status_code == 403
    app.config["TRUSTED_PROXIES"] = 1
    spoofed = c.post("/mancgi/rkresult", data=result_params(payment.id),
                     headers={"X-Forwarded-For": "185.59.216.65, 10.0.0.9"})
    assert spoofed.status_code == 403  # the proxy saw 10.0.0.9; the first entry is the caller's claim
    ok = c.post("/mancgi/rkresult", data=result_params(payment.id), headers={"X-Forwarded-For": "185.59.217.65"})
    assert ok.status_code == 200 and reload(payment.id).status == "paid"


def test_result_allow_list_comes_after_the_id_and_before_the_signature(app, client_user, payment):
    """The core reads the id and loads the payment before it applies the allow-list (the list may depend
    on the payment's method): a caller from elsewhere gets 400 for a malformed InvId and 404 for an unknown
    one, like any caller; for a real payment 403, before its signature or fields are looked at. Nothing
    changes and every refusal is recorded (bounded) either way."""
    app.config["PMROBOKASSA_CHECK_IP"] = True
    c = app.test_client()
    answers = [c.post("/mancgi/rkresult", data=params) for params in (
        {**result_params(payment.id), "InvId": "12abc"}, result_params(payment.id + 1000),
        result_params(payment.id, password="forged"), {"InvId": str(payment.id)})]
    assert [(r.status_code, r.get_data(as_text=True)) for r in answers] == [
        (400, "bad request"), (404, "unknown payment"), (403, "forbidden"), (403, "forbidden")]
    assert reload(payment.id).status == "new" and ledger_count(payment.id) == 0
    assert [e.outcome for e in events(payment.id, "rkresult")] == [
        "rejected: address 127.0.0.1 is not one the gateway calls from"] * 2
    # the check on with an empty list accepts nobody (it does not turn the check off)
    app.config["PMROBOKASSA_ALLOWED_IPS"] = []
    assert c.post("/mancgi/rkresult", data=result_params(payment.id),
                  environ_base={"REMOTE_ADDR": "185.59.216.65"}).status_code == 403
    app.config["PMROBOKASSA_ALLOWED_IPS"] = ["185.59.216.0/24"]
    ok = c.post("/mancgi/rkresult", data=result_params(payment.id), environ_base={"REMOTE_ADDR": "185.59.216.65"})
    assert ok.get_data(as_text=True) == f"OK{payment.id}" and reload(payment.id).status == "paid"


def test_callbacks_work_with_csrf_enabled(tmp_path):
    from billcore.accounts import create_client
    from billcore.testing.fixtures import make_app

    app = make_app(tmp_path, f"sqlite:///{tmp_path / 'csrf.sqlite'}", WTF_CSRF_ENABLED=True)
    with app.app_context():
        user = create_client("csrf@test.example", "csrf-pass-1", currency="RUB")
        m = add_paymethod("pmrobokassa", dict(SETTINGS))
        p = service.create_payment(user.account_id, m.id, Decimal("100.00"))
        c = app.test_client()
        assert c.post("/mancgi/rkresult", data=result_params(p.id)).get_data(as_text=True) == f"OK{p.id}"
        assert c.post("/mancgi/rksuccess", data=success_params(p.id)).status_code == 302
        assert c.post("/mancgi/rkfail", data={"InvId": str(p.id), "OutSum": "100.00"}).status_code == 302
        db.session.remove()


# --------------------------------------------------------------------------------------------------
# /mancgi/rksuccess and /mancgi/rkfail
# --------------------------------------------------------------------------------------------------


def test_success_redirects_to_payment_page_without_crediting(app, client_client, payment):
    service.set_in_pay(payment.id, source="test")
    response = client_client.post("/mancgi/rksuccess", data=success_params(payment.id))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/payments/{payment.id}/return/success")
    assert reload(payment.id).status == "inpay"
    assert events(payment.id, "rksuccess")[-1].outcome.startswith("success return")
    get = client_client.get("/mancgi/rksuccess", query_string=success_params(payment.id, "100.00"))
    assert get.status_code == 302


def test_success_bad_signature_is_an_error_page(app, client_client, payment):
    for params in (success_params(payment.id, password=P2), {**success_params(payment.id), "OutSum": "1.00"},
                   {k: v for k, v in success_params(payment.id).items() if k != "SignatureValue"}):
        response = client_client.post("/mancgi/rksuccess", data=params)
        assert response.status_code == 400
        assert "not valid" in response.get_data(as_text=True)
    assert reload(payment.id).status == "new"
    assert [e.outcome for e in events(payment.id, "rksuccess")] == ["rejected: bad signature"] * 3


def _without_csrf_tokens(page: bytes) -> bytes:
    """The page with its forms' CSRF tokens blanked: a token carries the second it was signed in, so two
    renderings of one page a second apart differ there and nowhere else."""
    return re.sub(rb'(name="csrf_token" value=")[^"]*', rb"\1", page)


def test_success_for_no_robokassa_payment_answers_as_a_bad_signature(app, client_client, client_user, payment):
    """An unknown id, or another module's payment, cannot be checked (there is no Password #1 to check it
    with): it gets the very page a bad signature for a real payment gets, so a signed return never tells
    which payments exist; nothing changes and the return is recorded without a payment."""
    other = add_paymethod("pmtemplate", {"secret": "template-secret-1"})
    foreign = service.create_payment(client_user.account_id, other.id, Decimal("100.00"))
    forged = success_params(payment.id)
    forged["SignatureValue"] = "0" * len(forged["SignatureValue"])
    reference = client_client.post("/mancgi/rksuccess", data=forged)
    assert reference.status_code == 400
    for inv_id in (payment.id + 500, foreign.id):
        response = client_client.post("/mancgi/rksuccess", data=success_params(inv_id))
        assert (response.status_code, _without_csrf_tokens(response.get_data())) == \
            (reference.status_code, _without_csrf_tokens(reference.get_data()))
    assert reload(foreign.id).status == "new" and not events(foreign.id, "rksuccess")
    assert len(events(None, "rksuccess")) == 2


def test_fail_changes_nothing(app, client_client, payment):
    service.set_in_pay(payment.id, source="test")
    response = client_client.post("/mancgi/rkfail", data={"InvId": str(payment.id), "OutSum": "100.00",
                                                          "Culture": "ru"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/payments/{payment.id}/return/fail")
    assert reload(payment.id).status == "inpay"
    assert "nothing changed" in events(payment.id, "rkfail")[-1].outcome
    # unsigned: the same answer whatever the id (nothing tells a caller which payments exist)
    assert client_client.get("/mancgi/rkfail").headers["Location"].endswith("/dashboard")
    assert client_client.get("/mancgi/rkfail?InvId=99999").headers["Location"].endswith("/payments/99999/return/fail")


# --------------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------------


def test_five_logs_written_without_passwords(app, client_client, payment):
    from pathlib import Path

    from billcore.plugins import get_registry

    pay(client_client, payment.id)
    c = app.test_client()
    c.post("/mancgi/rkresult", data=result_params(payment.id, password=P1))  # rejected
    c.post("/mancgi/rkresult", data=result_params(payment.id))
    client_client.post("/mancgi/rksuccess", data=success_params(payment.id))
    client_client.post("/mancgi/rkfail", data={"InvId": str(payment.id)})
    get_registry().call("pmrobokassa", "billcore_validate_integration",
                        settings={**SETTINGS, "password2": "short"}, currency="RUB")
    log_dir = Path(app.config["LOG_DIR"])
    for stem in ("pmrobokassa", "rkpayment", "rkresult", "rksuccess", "rkfail"):
        text = (log_dir / f"{stem}.log").read_text()
        for secret in (P1, P2, P3, "short"):
            assert secret not in text, (stem, secret)
        if stem != "pmrobokassa":
            assert f"payment={payment.id}" in text, stem
    result_log = (log_dir / "rkresult.log").read_text()
    assert "bad signature" in result_log and "credited" in result_log
    assert "settings refused" in (log_dir / "pmrobokassa.log").read_text()
