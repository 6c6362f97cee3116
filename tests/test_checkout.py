"""The client area: adding funds, the payments list and page, return pages, pay again and cancel.

Runs against ``tests/fake_checkout_module.py`` (module ``pmfakepay``) so it needs no other module; the
end-to-end test through ``pmtemplate``'s fake gateway is at the bottom.
"""
from __future__ import annotations

import re
from decimal import Decimal

import pytest

from billcore.accounts import create_client
from billcore.db import db
from billcore.models import Account, LedgerEntry, Payment, PaymentEvent
from billcore.money import commission
from billcore.payments import service
from tests import fake_checkout_module as fake
from tests.conftest import CLIENT, OTHER_CLIENT, add_paymethod, login

FAKE = {"pmfakepay": "tests.fake_checkout_module"}


@pytest.fixture
def app_config():
    """Load the fake checkout module beside the real ones."""
    return {"EXTRA_MODULES": FAKE}


@pytest.fixture
def capp(app):
    """The app on each backend with the fake checkout module loaded."""
    fake.reset()
    return app


@pytest.fixture
def client_user(capp):
    """The paying client (RUB account)."""
    return create_client(*CLIENT, currency="RUB")


@pytest.fixture
def other_user(capp):
    """Another client with its own RUB account."""
    return create_client(*OTHER_CLIENT, currency="RUB")


@pytest.fixture
def web(capp, client_user):
    """A test client logged in as the client."""
    c = capp.test_client()
    assert login(c, *CLIENT).status_code == 302
    return c


@pytest.fixture
def method(capp):
    """An active RUB method with a commission, minimum and maximum."""
    return add_paymethod("pmfakepay", {"secret": "s3cr3t-value"}, name="Fake card", name_ru="Фейковая карта",
                         description="Pay by card", commission_amount=Decimal("10.00"),
                         commission_percent=Decimal("2.5"), min_amount=Decimal("100.00"),
                         max_amount=Decimal("15000.00"))


def _balance(account_id: int) -> Decimal:
    db.session.expire_all()
    return db.session.get(Account, account_id).balance


def test_add_funds_shows_commission_then_creates_and_starts(web, client_user, method):
    page = web.get("/payments/new")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Fake card" in html and "Pay by card" in html
    assert 'data-fixed="10.00"' in html and 'data-percent="2.5"' in html and 'data-min="100.00"' in html
    assert "checkout.js" in html and "<script>" not in html

    confirm = web.post("/payments/new", data={"paymethod": method.id, "amount": "1000.10"})
    assert confirm.status_code == 200
    text = confirm.get_data(as_text=True)
    # 10.00 + 1000.10 * 2.5 % = 10.00 + 25.0025 -> 35.00 (half up at the kopeck)
    assert "35.00 RUB" in text and "1 035.10 RUB" in text
    assert db.session.query(Payment).count() == 0  # nothing created before confirming

    done = web.post("/payments/new", data={"paymethod": method.id, "amount": "1000.10", "confirm": "1", "total": "1035.10"})
    assert done.status_code == 302
    payment = db.session.query(Payment).one()
    # the core's door marked it sent and redirected straight to the gateway's page the module named
    assert done.headers["Location"] == f"https://gateway.invalid/pay?order={payment.id}"
    assert (payment.status, payment.amount, payment.commission, payment.total) == (
        "inpay", Decimal("1000.10"), Decimal("35.00"), Decimal("1035.10"))
    assert payment.account_id == client_user.account_id
    assert fake.CALLS == [("start", payment.id)]
    assert [(c.user_id, c.email, c.language) for c in fake.CUSTOMERS] == [(client_user.id, CLIENT[0], "en")]


@pytest.mark.parametrize("amount, fee", [
    ("100.00", "12.50"),    # 10 + 2.5 = 12.50 exactly
    ("100.20", "12.51"),    # 10 + 2.505 -> 12.51 (half up)
    ("100.19", "12.50"),    # 10 + 2.50475 -> 12.50
    ("101.00", "12.53"),    # 10 + 2.525 -> 12.53 (half up, not bankers' 12.52)
])
def test_commission_rounds_half_up_to_the_kopeck(web, method, amount, fee):
    assert commission(Decimal(amount), "RUB", Decimal("10.00"), Decimal("2.5")) == Decimal(fee)
    text = web.post("/payments/new", data={"paymethod": method.id, "amount": amount}).get_data(as_text=True)
    assert f"{fee} RUB" in text


def test_min_max_and_format_are_refused_with_a_clear_message(web, method):
    for amount, message in [("99.99", "The minimum amount for Fake card is 100.00 RUB."),
                            ("15000.01", "The maximum amount for Fake card is 15000.00 RUB."),
                            ("10.001", "at most 2 decimals"), ("abc", "Enter an amount like"),
                            ("0", "greater than zero"), ("-5", "greater than zero")]:
        r = web.post("/payments/new", data={"paymethod": method.id, "amount": amount, "confirm": "1"})
        assert r.status_code == 400, amount
        assert message in r.get_data(as_text=True), amount
    assert db.session.query(Payment).count() == 0
    ok = web.post("/payments/new", data={"paymethod": method.id, "amount": "15000", "confirm": "1", "total": "15385.00"})
    assert ok.status_code == 302


def test_only_active_methods_in_the_accounts_currency_are_offered(web, method):
    usd = add_paymethod("pmfakepay", name="Dollar card", currency="USD")
    off = add_paymethod("pmfakepay", name="Disabled card", active=False)
    html = web.get("/payments/new").get_data(as_text=True)
    assert "Fake card" in html and "Dollar card" not in html and "Disabled card" not in html
    for other in (usd, off):
        r = web.post("/payments/new", data={"paymethod": other.id, "amount": "200", "confirm": "1", "total": "215.00"})
        assert r.status_code == 400
    assert db.session.query(Payment).count() == 0


def test_russian_names_and_descriptions(web, method, client_user):
    web.post("/language/ru")
    html = web.get("/payments/new").get_data(as_text=True)
    assert "Фейковая карта" in html


def test_post_start_renders_autosubmit_form(web, method):
    fake.MODE["start"] = "post"
    r = web.post("/payments/new", data={"paymethod": method.id, "amount": "200", "confirm": "1", "total": "215.00"})
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert re.search(r'<form method="post" action="https://gateway.invalid/form" data-autosubmit>', html)
    assert 'name="sum" value="215.00"' in html  # 200 + 10 + 5


def test_a_commission_changed_after_confirmation_is_shown_again(web, method):
    method.commission_amount = Decimal("20.00")
    db.session.commit()
    r = web.post("/payments/new", data={"paymethod": method.id, "amount": "200", "confirm": "1", "total": "215.00"})
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    assert "The commission has changed" in text and "225.00 RUB" in text
    assert db.session.query(Payment).count() == 0
    done = web.post("/payments/new", data={"paymethod": method.id, "amount": "200", "confirm": "1", "total": "225.00"})
    assert done.status_code == 302 and db.session.query(Payment).one().total == Decimal("225.00")


def test_a_failing_module_start_keeps_the_payment_and_says_so(web, method):
    fake.MODE["start"] = "error"
    r = web.post("/payments/new", data={"paymethod": method.id, "amount": "200", "confirm": "1", "total": "215.00"})
    payment = db.session.query(Payment).one()
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/payments/{payment.id}")
    page = web.get(r.headers["Location"]).get_data(as_text=True)
    assert "not available at the moment" in page and 'data-testid="pay-again"' in page
    assert payment.status == "new"


def test_owner_flow_return_pages_status_json_and_balance(web, client_user, method):
    web.post("/payments/new", data={"paymethod": method.id, "amount": "200", "confirm": "1", "total": "215.00"})
    payment = db.session.query(Payment).one()
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "inpay"

    # the browser comes back before the notification: the page says "waiting" and polls
    page = web.get(f"/payments/{payment.id}/return/success").get_data(as_text=True)
    assert f'data-poll-url="/payments/{payment.id:d}/status.json"' in page
    assert "payment_status.js" in page
    status = web.get(f"/payments/{payment.id}/status.json").get_json()
    assert status["status"] == "inpay" and status["open"] is True

    outcome = service.set_paid(payment.id, amount=Decimal("215.00"), currency="RUB", source="test")
    assert outcome.changed
    status = web.get(f"/payments/{payment.id}/status.json").get_json()
    assert status == {"id": payment.id, "status": "paid", "status_label": "Paid", "open": False,
                      "balance": "200.00 RUB"}
    page = web.get(f"/payments/{payment.id}/return/fail").get_data(as_text=True)
    assert "data-poll-url" not in page and "balance was credited" in page
    assert _balance(client_user.account_id) == Decimal("200.00")
    assert web.get(f"/payments/{payment.id}/return/bogus").status_code == 404

    # list, page and dashboard
    assert f"#{payment.id}" in web.get("/payments").get_data(as_text=True)
    detail = web.get(f"/payments/{payment.id}").get_data(as_text=True)
    assert "215.00 RUB" in detail and "Awaiting payment" in detail and "Paid" in detail
    assert "200.00 RUB" in web.get("/dashboard").get_data(as_text=True)


def test_another_client_cannot_see_or_pay_someone_elses_payment(capp, web, client_user, other_user, method):
    payment = service.create_payment(client_user.account_id, method.id, Decimal("200"))
    other = capp.test_client()
    assert login(other, *OTHER_CLIENT).status_code == 302
    for url in (f"/payments/{payment.id}", f"/payments/{payment.id}/status.json",
                f"/payments/{payment.id}/return/success"):
        assert other.get(url).status_code == 404, url
    for url in (f"/payments/{payment.id}/pay", f"/payments/{payment.id}/cancel", "/payments/999999/pay"):
        assert other.post(url).status_code == 404, url
    assert f"#{payment.id}" not in other.get("/payments").get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "new"  # never marked as sent to the gateway
    assert fake.CALLS == []  # and the module was never asked
    anonymous = capp.test_client()
    assert anonymous.get(f"/payments/{payment.id}").status_code == 302  # to the login page


def test_pay_again_and_cancel_by_owner(web, method, client_user):
    web.post("/payments/new", data={"paymethod": method.id, "amount": "200", "confirm": "1", "total": "215.00"})
    payment = db.session.query(Payment).one()
    again = web.post(f"/payments/{payment.id}/pay")
    assert again.status_code == 302 and again.headers["Location"].endswith(f"order={payment.id}")
    assert web.post(f"/payments/{payment.id}/cancel").status_code == 302
    db.session.expire_all()
    paid = db.session.get(Payment, payment.id)
    assert paid.status == "cancelled"
    event = db.session.query(PaymentEvent).filter_by(payment_id=payment.id, status_to="cancelled").one()
    assert (event.source, event.actor) == ("client", CLIENT[0])
    # a cancelled payment can no longer be paid again or cancelled
    again = web.post(f"/payments/{payment.id}/pay", follow_redirects=True)
    assert "can no longer be paid" in again.get_data(as_text=True)
    assert fake.CALLS == [("start", payment.id), ("start", payment.id)]
    # and a paid one cannot be cancelled
    service.set_paid(payment.id, amount=Decimal("215.00"), currency="RUB", source="test")
    r = web.post(f"/payments/{payment.id}/cancel", follow_redirects=True)
    assert "can no longer be cancelled" in r.get_data(as_text=True)
    assert _balance(client_user.account_id) == Decimal("200.00")


def test_pay_again_refused_when_the_method_was_disabled(web, method, client_user):
    payment = service.create_payment(client_user.account_id, method.id, Decimal("200"))
    method.active = False
    db.session.commit()
    r = web.post(f"/payments/{payment.id}/pay", follow_redirects=True)
    assert "no longer available" in r.get_data(as_text=True)
    assert fake.CALLS == []


def test_actions_need_csrf(capp, method, client_user):
    capp.config["WTF_CSRF_ENABLED"] = True
    c = capp.test_client()
    login_page = c.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login_page).group(1)
    c.post("/login", data={"email": CLIENT[0], "password": CLIENT[1], "csrf_token": token})
    payment = service.create_payment(client_user.account_id, method.id, Decimal("200"))
    assert c.post(f"/payments/{payment.id}/cancel").status_code == 400
    assert c.post(f"/payments/{payment.id}/pay").status_code == 400  # starting a payment needs the token too
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "new"
    assert fake.CALLS == []


def test_payments_list_keyset_paging(capp, web, client_user, method):
    capp.config["CLIENT_PAGE_SIZE"] = 3
    ids = [service.create_payment(client_user.account_id, method.id, Decimal("100")).id for _ in range(7)]
    seen, url = [], "/payments"
    while url:
        html = web.get(url).get_data(as_text=True)
        seen += [int(x) for x in re.findall(r">#(\d+)</a>", html)]
        m = re.search(r'rel="next" href="([^"]+)"', html)
        url = m.group(1).replace("&amp;", "&") if m else None
    assert seen == sorted(ids, reverse=True)


# --- end to end through pmtemplate's fake gateway -------------------------------------------------

TPL_SETTINGS = {"merchant_id": "shop-1", "secret": "tpl-s3cr3t-value", "gateway_url": "", "test_mode": True}


def _split(location: str) -> tuple[str, dict[str, str]]:
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(location)
    return parts.path, dict(parse_qsl(parts.query))


def test_add_funds_end_to_end_through_pmtemplate(capp, web, client_user, other_user):
    method = add_paymethod("pmtemplate", dict(TPL_SETTINGS), name="Template gateway",
                           commission_amount=Decimal("1.00"), commission_percent=Decimal("3"))
    assert "Template gateway" in web.get("/payments/new").get_data(as_text=True)
    confirm = web.post("/payments/new", data={"paymethod": method.id, "amount": "250.50"})
    assert "8.52 RUB" in confirm.get_data(as_text=True)  # 1.00 + 7.515 -> 8.52 (half up)
    start = web.post("/payments/new", data={"paymethod": method.id, "amount": "250.50", "confirm": "1", "total": "259.02"})
    payment = db.session.query(Payment).one()
    # the core's door sends the browser straight to the (fake) gateway with the module's signed request
    path, params = _split(start.headers["Location"])
    assert path == "/fakegw/pay" and params["amount"] == "259.02" and params["payment_id"] == str(payment.id)
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "inpay"

    # only the owner may start it again
    other = capp.test_client()
    assert login(other, *OTHER_CLIENT).status_code == 302
    assert other.post(f"/payments/{payment.id}/pay").status_code == 404
    # the browser is back (pending) before any notification: the return page waits and polls
    waiting = web.get(f"/payments/{payment.id}/return/pending").get_data(as_text=True)
    assert "data-poll-url" in waiting and 'data-status="inpay"' in waiting

    paid = web.post("/fakegw/pay", data={**params, "action": "pay"})
    back = web.get(paid.headers["Location"])  # the module's success return
    assert back.status_code == 302
    assert _balance(client_user.account_id) == Decimal("250.50")
    assert web.get(f"/payments/{payment.id}/status.json").get_json()["status"] == "paid"
    done = web.get(f"/payments/{payment.id}/return/success").get_data(as_text=True)
    assert "balance was credited" in done and "data-poll-url" not in done

    # the gateway repeats its notification: nothing is credited twice
    from pmtemplate.signing import signed

    repeat = signed({"merchant_id": "shop-1", "payment_id": str(payment.id), "op_id": "op-x", "amount": "259.02",
                     "currency": "RUB", "state": "paid", "test": "1"}, TPL_SETTINGS["secret"])
    assert web.post("/mancgi/tplresult", data=repeat).status_code == 200
    assert _balance(client_user.account_id) == Decimal("250.50")
    assert db.session.query(LedgerEntry).filter_by(payment_id=payment.id).count() == 1
    kinds = [e.kind for e in db.session.query(PaymentEvent).filter_by(payment_id=payment.id).order_by(PaymentEvent.id)]
    assert kinds[:3] == ["created", "redirect", "notification"] and "return" in kinds
    history = web.get(f"/payments/{payment.id}").get_data(as_text=True)
    assert "Awaiting payment" in history and "Paid" in history
    assert "250.50 RUB" in web.get("/dashboard").get_data(as_text=True)


def test_client_pages_in_russian(capp, web, client_user, method):
    payment = service.create_payment(client_user.account_id, method.id, Decimal("200"))
    web.post("/language/ru")
    pages = {
        "/dashboard": "Пополнить баланс",
        "/payments/new": "Комиссия: 10,00\u00a0₽ + 2,5\u00a0%",  # Russian money and percent
        "/payments": "Пополнить баланс",
        f"/payments/{payment.id}": "Итого к оплате",
        f"/payments/{payment.id}/return/pending": "Ожидаем подтверждения платежа",
    }
    for url, text in pages.items():
        r = web.get(url)
        assert r.status_code == 200, url
        assert text in r.get_data(as_text=True), url
    confirm = web.post("/payments/new", data={"paymethod": method.id, "amount": "99"})
    assert "Фейковая карта" in confirm.get_data(as_text=True)
    assert web.get(f"/payments/{payment.id}/status.json").get_json()["status_label"] != "New"


def test_huge_cursor_is_ignored(web):
    assert web.get("/payments?before=99999999999999999999").status_code == 200
