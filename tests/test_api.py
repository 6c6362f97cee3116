"""The JSON API against a real server: tokens and scopes, every operation, problems, idempotency."""
from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from billcore import api_tokens
from billcore.db import db
from billcore.models import Account, LedgerEntry, OutboxEvent, PaymentEvent, RecurringProfile
from billcore.payments import service
from tests import fake_checkout_module as fake
from tests.conftest import ADMIN, add_paymethod
from tests.live import serve

FAKE = {"pmfakepay": "tests.fake_checkout_module"}


@pytest.fixture
def app_config():
    return {"EXTRA_MODULES": FAKE, "SECURE_COOKIES": False}  # the live server speaks plain HTTP


@pytest.fixture
def live(app):
    """The app served on a free port; fake module reset."""
    fake.reset()
    with serve(app) as url:
        yield url


@pytest.fixture
def tokens(app):
    """A read-only and a read-write token."""
    _, read = api_tokens.create_token("panel read", ["read"], actor="test")
    _, rw = api_tokens.create_token("panel", ["read", "write"], actor="test")
    return {"read": read, "write": rw}


def call(live, token, method, path, **kwargs):
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, live + "/api/v1" + path, headers=headers, timeout=10, **kwargs)


def assert_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"]
    return body


def _account(balance="0.00", currency="RUB"):
    db.session.rollback()  # no snapshot older than the server's writes (SQLite could not upgrade it)
    account = Account(name="Customer", currency=currency, balance=Decimal(balance))
    db.session.add(account)
    db.session.commit()
    return account


def test_openapi_document_is_3_1_and_public(live):
    spec = requests.get(live + "/api/v1/openapi.json", timeout=10).json()
    assert spec["openapi"] == "3.1.0"
    operations = {(m.upper(), p) for p, item in spec["paths"].items() for m in item if m != "parameters"}
    assert ("POST", "/api/v1/accounts/{account_id}/adjustments") in operations
    assert len(operations) == 18
    assert spec["components"]["responses"]["DEFAULT_ERROR"]["content"].keys() == {"application/problem+json"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "post":  # every write documents its Idempotency-Key
                assert "Idempotency-Key" in [p["name"] for p in operation.get("parameters", [])], path
    money = spec["components"]["schemas"]["Payment"]["properties"]["amount"]
    assert money["type"] == "string" and money["pattern"]  # money is a decimal string, never a number


def test_openapi_document_is_built_once_when_first_read_and_the_same_from_several_threads(app):
    from concurrent.futures import ThreadPoolExecutor

    from billcore.api import views

    api = app.extensions["flask-smorest"]["apis"][""]["ext_obj"]
    assert not api._spec_ready and api._built_spec is None  # creating the app did not build it
    client = app.test_client()

    def fetch(_):
        return client.get("/api/v1/openapi.json").get_data()

    with ThreadPoolExecutor(4) as pool:
        documents = set(pool.map(fetch, range(8)))
    assert len(documents) == 1
    spec = api.spec.to_dict()
    assert len(spec["paths"]) >= 10 and spec["tags"] == [{"name": "api", "description": views.blp.description}]
    assert client.get("/api/v1/openapi.json").get_data() in documents


def test_token_needed_scopes_checked_and_last_used(app, live, tokens):
    assert_problem(call(live, None, "GET", "/accounts"), 401)
    assert_problem(call(live, "bc_wrong", "GET", "/accounts"), 401)
    assert_problem(call(live, None, "GET", "/accounts", headers={"Authorization": "Basic eDp5"}), 401)
    assert call(live, tokens["read"], "GET", "/accounts").status_code == 200
    body = assert_problem(call(live, tokens["read"], "POST", "/accounts", json={"name": "x", "currency": "RUB"}), 403)
    assert "write" in body["detail"]
    db.session.rollback()  # a fresh snapshot: the server wrote meanwhile
    row = api_tokens.find_token(tokens["read"])
    assert row.last_used_at is not None
    api_tokens.revoke_token(row.id)
    assert_problem(call(live, tokens["read"], "GET", "/accounts"), 401)


def test_session_cookie_never_works_on_the_api_and_a_token_never_on_pages(app, live, admin_user, tokens):
    browser = requests.Session()
    assert browser.post(live + "/login", data={"email": ADMIN[0], "password": ADMIN[1]},
                        allow_redirects=False).status_code == 302
    assert browser.get(live + "/admin/payments", allow_redirects=False).status_code == 200
    assert_problem(browser.get(live + "/api/v1/accounts"), 401)  # the cookie is not a credential here
    page = requests.get(live + "/admin/payments", headers={"Authorization": f"Bearer {tokens['write']}"},
                        allow_redirects=False, timeout=10)
    assert page.status_code == 302 and "/login" in page.headers["Location"]


def test_accounts_create_list_show_and_adjust(app, live, tokens):
    created = call(live, tokens["write"], "POST", "/accounts", json={"name": "Acme", "currency": "RUB"})
    assert created.status_code == 201, created.text
    account = created.json()
    assert account["balance"] == "0.00" and account["currency"] == "RUB"
    assert call(live, tokens["read"], "GET", f"/accounts/{account['id']}").json()["name"] == "Acme"
    credit = call(live, tokens["write"], "POST", f"/accounts/{account['id']}/adjustments",
                  json={"amount": "150.50", "reason": "goodwill"})
    assert credit.status_code == 201, credit.text
    assert credit.json() == {"account_id": account["id"], "amount": "150.50", "balance": "150.50", "currency": "RUB"}
    debit = call(live, tokens["write"], "POST", f"/accounts/{account['id']}/adjustments",
                 json={"amount": "-50.50", "reason": "correction"})
    assert debit.json()["balance"] == "100.00"
    too_much = call(live, tokens["write"], "POST", f"/accounts/{account['id']}/adjustments",
                    json={"amount": "-100.01", "reason": "x"})
    assert assert_problem(too_much, 409)["type"] == "urn:billcore:problem:adjustment-refused"
    assert_problem(call(live, tokens["write"], "POST", f"/accounts/{account['id']}/adjustments",
                        json={"amount": "0.00", "reason": "x"}), 422)
    assert_problem(call(live, tokens["write"], "POST", f"/accounts/{account['id']}/adjustments",
                        json={"amount": "1.00", "reason": "   "}), 422)
    invalid = assert_problem(call(live, tokens["write"], "POST", f"/accounts/{account['id']}/adjustments",
                                  json={"amount": 1.5, "reason": "float"}), 422)
    assert "amount" in invalid["errors"]["json"]
    assert_problem(call(live, tokens["write"], "POST", "/accounts", json={"name": "x", "currency": "XXX"}), 422)
    db.session.rollback()  # a fresh snapshot: the server wrote meanwhile
    assert db.session.get(Account, account["id"]).balance == Decimal("100.00")
    notes = [e.note for e in db.session.query(LedgerEntry).filter_by(account_id=account["id"]).order_by(LedgerEntry.id)]
    assert notes == ["goodwill", "correction"]
    history = db.session.query(PaymentEvent).filter(PaymentEvent.payment_id.is_(None)).order_by(PaymentEvent.id).all()
    assert [(e.source, e.actor) for e in history] == [("api", "api:panel"), ("api", "api:panel")]
    page1 = call(live, tokens["read"], "GET", "/accounts", params={"limit": 1}).json()
    assert len(page1["items"]) == 1 and page1["next_before"] is None
    assert_problem(call(live, tokens["read"], "GET", "/accounts/2147483648"), 404)
    assert_problem(call(live, tokens["read"], "GET", "/accounts/999"), 404)


@pytest.mark.parametrize("mode", ["get", "post", "post_here", "error"])
def test_a_top_up_sends_the_customer_to_the_payment_page_and_never_starts_it(app, live, tokens, mode):
    """Starting a payment marks it as sent to the gateway, which only the customer's own browser session may
    do (the payment page's Pay button, with its CSRF token): whatever the module's start would be, the API
    (which has no browser session, and must set no cookie) answers with the payment's page, and neither
    asks the module nor changes the payment."""
    fake.MODE["start"] = mode
    account = _account()
    method = add_paymethod("pmfakepay", name="Card")
    created = call(live, tokens["write"], "POST", "/payments",
                   json={"account_id": account.id, "paymethod_id": method.id, "amount": "100.00"})
    assert created.status_code == 201, created.text
    assert "Set-Cookie" not in created.headers
    body = created.json()
    payment_id = body["payment"]["id"]
    assert (body["start_method"], body["start_fields"]) == ("GET", {})
    assert body["start_url"] == f"https://billing.example.com/payments/{payment_id}"
    assert body["payment"]["status"] == "new" and fake.CALLS == []
    db.session.rollback()
    assert [e.status_to for e in db.session.query(PaymentEvent).filter_by(payment_id=payment_id)] == ["new"]


def test_top_up_refund_and_filters(app, live, tokens):
    account = _account()
    method = add_paymethod("pmfakepay", name="Card", commission_amount=Decimal("5.00"))
    created = call(live, tokens["write"], "POST", "/payments",
                   json={"account_id": account.id, "paymethod_id": method.id, "amount": "100.00"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["payment"]["status"] == "new" and body["payment"]["total"] == "105.00"
    assert body["start_method"] == "GET" and body["start_url"].startswith("https://billing.example.com/")
    payment_id = body["payment"]["id"]
    # the gateway's notification credits it
    service.set_paid(payment_id, amount=Decimal("105.00"), currency="RUB", source="test")
    shown = call(live, tokens["read"], "GET", f"/payments/{payment_id}").json()
    assert shown["status"] == "paid" and [e["status_to"] for e in shown["events"]][-1] == "paid"
    refund = call(live, tokens["write"], "POST", f"/payments/{payment_id}/refunds",
                  json={"amount": "40.00", "reason": "partial"})
    assert refund.status_code == 201, refund.text
    assert refund.json()["state"] == "finished" and refund.json()["refund"]["amount"] == "40.00"
    assert call(live, tokens["read"], "GET", f"/payments/{payment_id}").json()["refunds"][0]["status"] == "finished"
    assert_problem(call(live, tokens["write"], "POST", f"/payments/{payment_id}/refunds", json={"amount": "60.01"}), 409)
    # filters and the keyset cursor
    second = call(live, tokens["write"], "POST", "/payments",
                  json={"account_id": account.id, "paymethod_id": method.id, "amount": "10.00"}).json()["payment"]
    paid = call(live, tokens["read"], "GET", "/payments", params={"status": "paid"}).json()["items"]
    assert [p["id"] for p in paid] == [payment_id]
    small = call(live, tokens["read"], "GET", "/payments", params={"amount_max": "50"}).json()["items"]
    assert [p["id"] for p in small] == [second["id"]]
    first_page = call(live, tokens["read"], "GET", "/payments", params={"limit": 1}).json()
    assert [p["id"] for p in first_page["items"]] == [second["id"]] and first_page["next_before"] == second["id"]
    next_page = call(live, tokens["read"], "GET", "/payments",
                     params={"limit": 1, "before": first_page["next_before"]}).json()
    assert [p["id"] for p in next_page["items"]] == [payment_id] and next_page["next_before"] is None
    assert_problem(call(live, tokens["read"], "GET", "/payments", params={"status": "bogus"}), 422)
    # cancel and mark paid, each with a reason
    cancelled = call(live, tokens["write"], "POST", f"/payments/{second['id']}/cancel", json={"reason": "dup"})
    assert cancelled.json()["payment"]["status"] == "cancelled" and cancelled.json()["changed"] is True
    assert_problem(call(live, tokens["write"], "POST", f"/payments/{second['id']}/cancel", json={}), 422)
    marked = call(live, tokens["write"], "POST", f"/payments/{second['id']}/mark-paid", json={"reason": "bank transfer"})
    assert marked.json()["payment"]["status"] == "paid"
    assert_problem(call(live, tokens["write"], "POST", f"/payments/{second['id']}/cancel", json={"reason": "x"}), 409)
    db.session.rollback()  # a fresh snapshot: the server wrote meanwhile
    assert db.session.get(Account, account.id).balance == Decimal("70.00")  # 100 - 40 + 10
    refund_events = db.session.query(PaymentEvent).filter(PaymentEvent.payment_id == payment_id,
                                                          PaymentEvent.kind.like("refund%")).all()
    assert refund_events and {(e.source, e.actor) for e in refund_events} == {("api", "api:panel")}
    kinds = [e.type for e in db.session.query(OutboxEvent).order_by(OutboxEvent.id)]
    assert kinds == ["payment.paid", "refund.requested", "refund.finished", "payment.cancelled", "payment.paid"]


def test_paymethods_without_secrets_enable_disable(app, live, tokens):
    method = add_paymethod("pmfakepay", {"secret": "top-secret-value"}, name="Card")
    listed = call(live, tokens["read"], "GET", "/paymethods")
    assert listed.status_code == 200 and "top-secret-value" not in listed.text
    shown = call(live, tokens["read"], "GET", f"/paymethods/{method.id}")
    assert shown.json()["active"] is True and "top-secret-value" not in shown.text
    assert call(live, tokens["write"], "POST", f"/paymethods/{method.id}/disable").json()["active"] is False
    account = _account()
    refused = call(live, tokens["write"], "POST", "/payments",
                   json={"account_id": account.id, "paymethod_id": method.id, "amount": "10.00"})
    assert assert_problem(refused, 409)["type"] == "urn:billcore:problem:payment-refused"
    assert call(live, tokens["write"], "POST", f"/paymethods/{method.id}/enable").json()["active"] is True


def test_recurring_profiles_suspend_resume(app, live, tokens):
    account = _account()
    method = add_paymethod("pmfakepay", name="Card", recurring=True)
    parent = service.create_payment(account.id, method.id, "100.00", source="test")
    profile = RecurringProfile(account_id=account.id, paymethod_id=method.id, parent_payment_id=parent.id,
                               rule="threshold", amount=Decimal("100.00"), threshold=Decimal("10.00"),
                               monthly_max=Decimal("1000.00"), status="active")
    db.session.add(profile)
    db.session.commit()
    assert [p["id"] for p in call(live, tokens["read"], "GET", "/recurring-profiles").json()["items"]] == [profile.id]
    assert call(live, tokens["read"], "GET", "/recurring-profiles", params={"status": "suspended"}).json()["items"] == []
    assert call(live, tokens["read"], "GET", f"/recurring-profiles/{profile.id}").json()["amount"] == "100.00"
    assert call(live, tokens["write"], "POST", f"/recurring-profiles/{profile.id}/suspend").json()["status"] == "suspended"
    assert_problem(call(live, tokens["write"], "POST", f"/recurring-profiles/{profile.id}/suspend"), 409)
    assert call(live, tokens["write"], "POST", f"/recurring-profiles/{profile.id}/resume").json()["status"] == "active"


def test_idempotency_key_replays_the_first_answer(app, live, tokens):
    account = _account()
    headers = {"Idempotency-Key": "adj-1"}
    first = call(live, tokens["write"], "POST", f"/accounts/{account.id}/adjustments",
                 json={"amount": "10.00", "reason": "once"}, headers=dict(headers))
    again = call(live, tokens["write"], "POST", f"/accounts/{account.id}/adjustments",
                 json={"amount": "10.00", "reason": "once"}, headers=dict(headers))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    db.session.rollback()  # a fresh snapshot: the server wrote meanwhile
    assert db.session.get(Account, account.id).balance == Decimal("10.00")
    other = call(live, tokens["write"], "POST", f"/accounts/{account.id}/adjustments",
                 json={"amount": "99.00", "reason": "other"}, headers=dict(headers))
    assert assert_problem(other, 422)["type"] == "urn:billcore:problem:idempotency-key-reused"
    # a refusal is an answer too, and is replayed
    headers = {"Idempotency-Key": "adj-2"}
    refused = call(live, tokens["write"], "POST", f"/accounts/{account.id}/adjustments",
                   json={"amount": "-50.00", "reason": "x"}, headers=dict(headers))
    assert_problem(refused, 409)
    service_credit = Decimal("100.00")
    from billcore.payments.adjustments import adjust_balance
    adjust_balance(account.id, service_credit, reason="top", source="test")
    replay = call(live, tokens["write"], "POST", f"/accounts/{account.id}/adjustments",
                  json={"amount": "-50.00", "reason": "x"}, headers=dict(headers))
    assert replay.status_code == 409 and replay.json() == refused.json()
    # keys are per token: another token's same key runs anew
    db.session.rollback()
    _, other_token = api_tokens.create_token("other panel", ["write"])
    fresh = call(live, other_token, "POST", f"/accounts/{account.id}/adjustments",
                 json={"amount": "10.00", "reason": "once"}, headers={"Idempotency-Key": "adj-1"})
    assert fresh.status_code == 201 and fresh.json()["balance"] == "120.00"
    assert_problem(call(live, tokens["write"], "POST", "/accounts", json={"name": "a", "currency": "RUB"},
                        headers={"Idempotency-Key": "x" * 256}), 400)


def test_api_has_no_csrf_and_sets_no_cookie(app, live, tokens):
    response = call(live, tokens["write"], "POST", "/accounts", json={"name": "a", "currency": "RUB"})
    assert response.status_code == 201 and "Set-Cookie" not in response.headers


def test_wrong_method_and_unknown_path_are_problems(live, tokens):
    assert_problem(call(live, tokens["read"], "DELETE", "/accounts"), 405)
    assert_problem(call(live, tokens["read"], "GET", "/nope"), 404)


def test_a_body_over_the_limit_is_refused_before_it_is_read(live, tokens):
    response = call(live, tokens["write"], "POST", "/accounts", data=b"{" + b" " * (70 * 1024) + b"}",
                    headers={"Content-Type": "application/json"})
    assert_problem(response, 413)


def test_a_server_error_frees_the_idempotency_key(app, live, tokens, monkeypatch):
    from billcore.api import views

    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: a 500 problem, not a traceback
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return original(*args, **kwargs)

    original = views.adjust_balance
    monkeypatch.setattr(views, "adjust_balance", broken)
    account = _account()
    headers = {"Idempotency-Key": "retry-me"}
    failed = call(live, tokens["write"], "POST", f"/accounts/{account.id}/adjustments",
                  json={"amount": "5.00", "reason": "r"}, headers=dict(headers))
    assert "nothing was changed" in assert_problem(failed, 500)["detail"]
    retried = call(live, tokens["write"], "POST", f"/accounts/{account.id}/adjustments",
                   json={"amount": "5.00", "reason": "r"}, headers=dict(headers))
    assert retried.status_code == 201 and retried.json()["balance"] == "5.00" and len(calls) == 2


def test_an_error_after_the_commit_keeps_the_key_so_a_retry_never_writes_twice(app, live, tokens, monkeypatch):
    from billcore.api import views
    from billcore.models import Payment

    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: a 500 problem, not a traceback
    account = _account()
    method = add_paymethod("pmfakepay", name="Card")
    # the payment is committed and its answer stored under the key: a retry gets the same payment, no
    # second one (whatever the module would do: the API never starts a payment)
    fake.MODE["start"] = "error"
    headers = {"Idempotency-Key": "pay-1"}
    body = {"account_id": account.id, "paymethod_id": method.id, "amount": "100.00"}
    first = call(live, tokens["write"], "POST", "/payments", json=body, headers=dict(headers))
    assert first.status_code == 201, first.text
    retried = call(live, tokens["write"], "POST", "/payments", json=body, headers=dict(headers))
    assert retried.status_code == 201 and retried.json() == first.json()
    assert retried.headers["Idempotent-Replayed"] == "true"
    db.session.rollback()
    assert [p.id for p in db.session.query(Payment).filter_by(account_id=account.id)] == [first.json()["payment"]["id"]]
    # an unexpected error after the adjustment was committed: the answer is kept and says so
    original = views.adjust_balance

    def commits_then_fails(*args, **kwargs):
        original(*args, **kwargs)
        raise RuntimeError("lost after the commit")

    monkeypatch.setattr(views, "adjust_balance", commits_then_fails)
    headers = {"Idempotency-Key": "adj-after-commit"}
    failed = call(live, tokens["write"], "POST", f"/accounts/{account.id}/adjustments",
                  json={"amount": "5.00", "reason": "r"}, headers=dict(headers))
    problem = assert_problem(failed, 500)
    assert problem["type"] == "urn:billcore:problem:failed-after-write" and "nothing was changed" not in problem["detail"]
    monkeypatch.setattr(views, "adjust_balance", original)
    retried = call(live, tokens["write"], "POST", f"/accounts/{account.id}/adjustments",
                   json={"amount": "5.00", "reason": "r"}, headers=dict(headers))
    assert retried.status_code == 500 and retried.json() == problem
    db.session.rollback()
    assert db.session.get(Account, account.id).balance == Decimal("5.00")


def test_payment_filters_are_bounded_and_text_with_control_characters_is_refused(app, live, tokens):
    account = _account()
    method = add_paymethod("pmfakepay", name="Card")
    for params in ({"date_to": "9999-12-31"}, {"date_from": "0001-01-01"}, {"date_from": "2026-02-30"},
                   {"amount_min": "1e3"}):
        assert "errors" in assert_problem(call(live, tokens["read"], "GET", "/payments", params=params), 422), params
    widest = call(live, tokens["read"], "GET", "/payments", params={"date_from": "1900-01-01", "date_to": "9998-12-31",
                                                                    "amount_min": "0", "amount_max": "999999999999.99"})
    assert widest.status_code == 200, widest.text
    paid = service.create_payment(account.id, method.id, "10.00", source="test")
    service.set_paid(paid.id, amount=Decimal("10.00"), currency="RUB", source="test")
    writes = [("/accounts", {"name": "bad\x00name", "currency": "RUB"}),
              (f"/accounts/{account.id}/adjustments", {"amount": "1.00", "reason": "nul\x00"}),
              (f"/accounts/{account.id}/adjustments", {"amount": "1.00", "reason": "bell\x07"}),
              ("/payments", {"account_id": account.id, "paymethod_id": method.id, "amount": "1.00",
                             "description": "a\x00b"}),
              (f"/payments/{paid.id}/refunds", {"amount": "1.00", "reason": "\x00"}),
              (f"/payments/{paid.id}/cancel", {"reason": "x\x00"})]
    for path, body in writes:
        problem = assert_problem(call(live, tokens["write"], "POST", path, json=body), 422)
        assert "control characters" in str(problem["errors"]), path
    # line breaks are fine in a reason, not in a name
    multiline = call(live, tokens["write"], "POST", f"/accounts/{account.id}/adjustments",
                     json={"amount": "1.00", "reason": "first line\nsecond line"})
    assert multiline.status_code == 201, multiline.text
    assert_problem(call(live, tokens["write"], "POST", "/accounts", json={"name": "two\nlines", "currency": "RUB"}), 422)
    db.session.rollback()
    assert db.session.get(Account, account.id).balance == Decimal("11.00")  # 10 paid + 1 adjusted, nothing else
