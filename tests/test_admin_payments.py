"""The admin's payments and accounts: filters, keyset paging, history, check now, refunds, manual actions."""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from billcore.accounts import create_admin, create_client
from billcore.db import db
from billcore.models import Account, LedgerEntry, Payment, PaymentEvent, Refund
from billcore.payments import polling, refunds, service
from billcore.paymodule import GatewayStatus, RefundResult
from tests import fake_checkout_module as fake
from tests.conftest import ADMIN, CLIENT, OTHER_CLIENT, add_paymethod, login
from tests.test_checkout import app_config, capp  # noqa: F401  (the app with the fake module, on each backend)

SECRET = "s3cr3t-value"


@pytest.fixture
def admin(capp):  # noqa: F811
    """A test client logged in as the administrator."""
    create_admin(*ADMIN)
    c = capp.test_client()
    assert login(c, *ADMIN).status_code == 302
    return c


@pytest.fixture
def payer(capp):  # noqa: F811
    """A client with a RUB account."""
    return create_client(*CLIENT, currency="RUB")


@pytest.fixture
def method(capp):  # noqa: F811
    """A refundable fake method with a commission and a secret."""
    return add_paymethod("pmfakepay", {"secret": SECRET}, name="Fake card", commission_amount=Decimal("5.00"))


def _inpay(account_id: int, method_id: int, amount: str = "100.00") -> Payment:
    p = service.create_payment(account_id, method_id, Decimal(amount))
    service.set_in_pay(p.id, source="test")
    return p


def _paid(account_id: int, method_id: int, amount: str = "100.00") -> Payment:
    p = _inpay(account_id, method_id, amount)
    db.session.expire_all()
    total = db.session.get(Payment, p.id).total
    assert service.set_paid(p.id, amount=total, currency="RUB", source="test").changed
    return p


def _state(payment_id: int) -> tuple[str, Decimal, Decimal]:
    db.session.expire_all()
    p = db.session.get(Payment, payment_id)
    return p.status, p.refunded_amount, db.session.get(Account, p.account_id).balance


def _ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'href="/admin/payments/(\d+)">#', html)]


def test_list_filters(admin, payer, method):
    other = create_client(*OTHER_CLIENT, currency="RUB")
    second = add_paymethod("pmfakepay", name="Second")
    a = _paid(payer.account_id, method.id, "100.00")
    b = _inpay(payer.account_id, second.id, "250.00")
    c = _inpay(other.account_id, method.id, "999.99")
    d = service.create_payment(other.account_id, second.id, Decimal("50.00"))
    with db.engine.begin() as conn:  # d was created long ago
        conn.execute(Payment.__table__.update().where(Payment.id == d.id)
                     .values(created_at=datetime(2020, 5, 17, 12, 0, tzinfo=timezone.utc)))
    assert _ids(admin.get("/admin/payments").get_data(as_text=True)) == [d.id, c.id, b.id, a.id]
    cases = {
        "status=paid": [a.id],
        "status=inpay": [c.id, b.id],
        f"paymethod_id={second.id}": [d.id, b.id],
        f"account_id={other.account_id}": [d.id, c.id],
        f"account_id={other.account_id}&status=new": [d.id],
        "date_from=2020-05-17&date_to=2020-05-17": [d.id],
        "date_to=2020-05-16": [],
        f"date_from={(datetime.now(timezone.utc) - timedelta(days=1)).date()}": [c.id, b.id, a.id],
        "amount_min=100&amount_max=250": [b.id, a.id],
        "amount_min=999.99": [c.id],
        "status=bogus&amount_min=abc": [],  # refused: nothing shown rather than everything
        f"account_id={OTHER_CLIENT[0]}": [d.id, c.id],  # an account by its user's e-mail
        f"account_id={OTHER_CLIENT[0].split('@')[0][:4].upper()}": [d.id, c.id],  # part of one, any case
        f"account_id=%23{other.account_id}": [d.id, c.id],  # "#12"
        "account_id=nobody%40nowhere": [],
        "account_id=%25": [],  # LIKE's wildcards are plain characters
    }
    for query, expected in cases.items():
        html = admin.get(f"/admin/payments?{query}").get_data(as_text=True)
        assert _ids(html) == expected, query
    refused = admin.get("/admin/payments?amount_min=abc").get_data(as_text=True)
    assert "not understood: Amount from" in refused and _ids(refused) == []


def test_keyset_paging_keeps_filters(capp, admin, payer, method):  # noqa: F811
    capp.config["ADMIN_PAGE_SIZE"] = 3
    other = add_paymethod("pmfakepay", name="Other")
    mine = [service.create_payment(payer.account_id, method.id, Decimal("100")).id for _ in range(8)]
    for _ in range(3):
        service.create_payment(payer.account_id, other.id, Decimal("100"))
    seen, url, pages = [], f"/admin/payments?paymethod_id={method.id}", 0
    while url:
        html = admin.get(url).get_data(as_text=True)
        seen += _ids(html)
        pages += 1
        m = re.search(r'rel="next" href="([^"]+)"', html)
        url = m.group(1).replace("&amp;", "&") if m else None
        if url:
            assert f"paymethod_id={method.id}" in url and "before=" in url
    assert seen == sorted(mine, reverse=True) and pages == 3


def test_keyset_paging_with_a_date_range_follows_time_order(capp, admin, payer, method):  # noqa: F811
    capp.config["ADMIN_PAGE_SIZE"] = 3
    ids = [service.create_payment(payer.account_id, method.id, Decimal("100")).id for _ in range(9)]
    base = datetime(2025, 3, 10, 12, 0, tzinfo=timezone.utc)
    # several payments share a timestamp (ties are broken by id); one is outside the range
    times = [base, base, base + timedelta(hours=1), base + timedelta(hours=1), base + timedelta(hours=1),
             base + timedelta(days=1), base - timedelta(hours=5), base, base + timedelta(days=5)]
    with db.engine.begin() as conn:
        for pid, when in zip(ids, times):
            conn.execute(Payment.__table__.update().where(Payment.id == pid).values(created_at=when))
    expected = [pid for pid, when in sorted(zip(ids, times), key=lambda x: (x[1], x[0]), reverse=True)
                if when < base + timedelta(days=2)]
    seen, url = [], "/admin/payments?date_from=2025-03-10&date_to=2025-03-11"
    while url:
        html = admin.get(url).get_data(as_text=True)
        seen += _ids(html)
        m = re.search(r'rel="next" href="([^"]+)"', html)
        url = m.group(1).replace("&amp;", "&") if m else None
    assert seen == expected and len(seen) == 8
    # a cursor outside the range (a hand-made URL) gives an empty page, never rows outside it
    outside = ids[-1]
    html = admin.get(f"/admin/payments?date_from=2025-03-10&date_to=2025-03-11&before={outside}").get_data(as_text=True)
    assert _ids(html) == []


def test_payment_page_shows_history_with_data_less_secrets(admin, payer, method):
    p = _inpay(payer.account_id, method.id)
    service.record_event(p.id, kind="notification", source="fakegw", outcome="rejected: bad signature",
                         data={"OutSum": "105.00", "sig": "abc", "echo": f"xx{SECRET}xx"}, answer="bad sign")
    html = admin.get(f"/admin/payments/{p.id}").get_data(as_text=True)
    assert "rejected: bad signature" in html and "OutSum" in html and "bad sign" in html
    assert SECRET not in html
    # event kinds in words, the code only as an attribute
    for kind, words in (("created", "Created"), ("redirect", "Sent to the payment system"),
                        ("notification", "Notification from the payment system")):
        assert f'data-kind="{kind}">{words}</td>' in html
    assert 'data-testid="check-now"' in html and 'data-testid="mark-paid"' in html
    assert 'data-testid="refund"' not in html  # not paid yet
    assert admin.get("/admin/payments/999999").status_code == 404


def test_check_now_applies_gateway_status(admin, payer, method):
    p = _inpay(payer.account_id, method.id)
    # pending: only recorded
    admin.post(f"/admin/payments/{p.id}/check")
    assert _state(p.id)[0] == "inpay"
    assert ("check", p.id, SECRET) in fake.CALLS  # the hook got the decrypted settings
    assert db.session.query(PaymentEvent).filter_by(payment_id=p.id, kind="poll").count() == 1
    # paid with the right total: credited once
    fake.CHECK[p.id] = GatewayStatus(state="paid", amount=Decimal("105.00"), currency="RUB", external_id="G1")
    r = admin.post(f"/admin/payments/{p.id}/check", follow_redirects=True)
    assert "Status updated" in r.get_data(as_text=True)
    assert _state(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))
    assert polling.check_payment(p.id, "cron").already  # the cron may ask again: credited once
    # a paid payment is no longer offered a check, and a late "cancelled" never undoes it
    assert 'data-testid="check-now"' not in admin.get(f"/admin/payments/{p.id}").get_data(as_text=True)
    assert polling.apply_gateway_status(p.id, GatewayStatus(state="cancelled"), "cron") is None
    assert _state(p.id)[0] == "paid"
    outcome = polling.apply_gateway_status(p.id, fake.CHECK[p.id], "cron")
    assert outcome.already and _state(p.id)[2] == Decimal("100.00")



def test_a_misspelt_gateway_state_is_an_error_not_a_silent_pending(admin, payer, method):
    """A module answering "canceled" (not a GatewayState) fails at its boundary: the check is a recorded
    failure the admin sees, and the payment is not treated as still pending or cancelled."""
    p = _inpay(payer.account_id, method.id)
    fake.CHECK[p.id] = lambda: GatewayStatus(state="canceled", info="the gateway's spelling")
    with pytest.raises(polling.PollError):
        polling.check_payment(p.id, "cron")
    assert _state(p.id)[0] == "inpay"
    event = db.session.query(PaymentEvent).filter_by(payment_id=p.id, kind="poll").one()
    assert event.outcome.startswith("status check failed: InvalidState") and "'canceled'" in event.outcome
    r = admin.post(f"/admin/payments/{p.id}/check", follow_redirects=True)
    assert "could not be checked" in r.get_data(as_text=True) and _state(p.id)[0] == "inpay"

def test_check_now_wrong_amount_is_fraud_and_errors_are_recorded(admin, payer, method):
    p = _inpay(payer.account_id, method.id)
    fake.CHECK[p.id] = GatewayStatus(state="paid", amount=Decimal("1.00"), currency="RUB")
    r = admin.post(f"/admin/payments/{p.id}/check", follow_redirects=True)
    assert "marked as fraud" in r.get_data(as_text=True)
    assert _state(p.id) == ("fraud", Decimal("0.00"), Decimal("0.00"))

    q = _inpay(payer.account_id, method.id)
    fake.CHECK[q.id] = RuntimeError(f"timeout talking to gateway with key {SECRET}")
    r = admin.post(f"/admin/payments/{q.id}/check", follow_redirects=True)
    text = r.get_data(as_text=True)
    assert "could not be checked" in text and SECRET not in text
    event = db.session.query(PaymentEvent).filter_by(payment_id=q.id, kind="poll").one()
    assert "timeout" in event.outcome and SECRET not in event.outcome
    with pytest.raises(polling.PollError):
        polling.check_payment(q.id, "cron")

    fake.CHECK[q.id] = GatewayStatus(state="cancelled", info="expired at the gateway")
    assert polling.check_payment(q.id, "cron").changed
    assert _state(q.id)[0] == "cancelled"
    # the money arrived after all: a check of the cancelled payment credits it
    assert 'data-testid="check-now"' in admin.get(f"/admin/payments/{q.id}").get_data(as_text=True)
    fake.CHECK[q.id] = GatewayStatus(state="paid", amount=Decimal("105.00"), currency="RUB")
    admin.post(f"/admin/payments/{q.id}/check")
    assert _state(q.id) == ("paid", Decimal("0.00"), Decimal("100.00"))


def test_full_and_partial_refunds_bookkeeping(admin, payer, method):
    p = _paid(payer.account_id, method.id, "100.00")
    assert _state(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))
    assert 'data-testid="refund"' in admin.get(f"/admin/payments/{p.id}").get_data(as_text=True)
    # more than refundable: refused, nothing changed
    r = admin.post(f"/admin/payments/{p.id}/refund", data={"amount": "100.01"}, follow_redirects=True)
    assert "refused" in r.get_data(as_text=True)
    assert _state(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))
    # partial
    r = admin.post(f"/admin/payments/{p.id}/refund", data={"amount": "30.50", "reason": "customer asked", "confirmed": "1"},
                   follow_redirects=True)
    assert "The refund was made." in r.get_data(as_text=True)
    assert _state(p.id) == ("paid", Decimal("30.50"), Decimal("69.50"))
    refund = db.session.query(Refund).filter_by(payment_id=p.id).one()
    assert (refund.status, refund.external_id, refund.actor, refund.reason) == (
        "finished", f"R{refund.id}", ADMIN[0], "customer asked")
    # the rest
    admin.post(f"/admin/payments/{p.id}/refund", data={"amount": "69.50", "confirmed": "1"})
    assert _state(p.id) == ("returned", Decimal("100.00"), Decimal("0.00"))
    ledger = db.session.query(LedgerEntry).filter_by(account_id=payer.account_id).order_by(LedgerEntry.id).all()
    assert [(e.kind, e.amount, e.balance_after) for e in ledger] == [
        ("payment", Decimal("100.00"), Decimal("100.00")),
        ("refund", Decimal("-30.50"), Decimal("69.50")),
        ("refund", Decimal("-69.50"), Decimal("0.00")),
    ]
    html = admin.get(f"/admin/payments/{p.id}").get_data(as_text=True)
    assert 'data-testid="refunds"' in html and "-30.50 RUB" in html and 'data-testid="refund"' not in html
    account_page = admin.get(f"/admin/accounts/{payer.account_id}").get_data(as_text=True)
    assert "0.00 RUB" in account_page and "-69.50 RUB" in account_page and f"#{p.id}" in account_page


def test_failed_pending_and_unreachable_refunds(admin, payer, method):
    p = _paid(payer.account_id, method.id, "100.00")
    fake.REFUND["request"] = RefundResult(state="failed", info="card expired")
    r = admin.post(f"/admin/payments/{p.id}/refund", data={"amount": "40", "confirmed": "1"}, follow_redirects=True)
    assert "refused the refund" in r.get_data(as_text=True)
    assert _state(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))

    fake.REFUND["request"] = RefundResult(state="pending", external_id="RP-7")
    result = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN[0], "test")
    assert result.state == "pending"
    assert _state(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))
    refund = db.session.get(Refund, result.refund_id)
    assert (refund.status, refund.external_id) == ("requested", "RP-7")
    fake.REFUND["status"] = RefundResult(state="finished")
    r = admin.post(f"/admin/payments/{p.id}/refunds/{refund.id}/follow", follow_redirects=True)
    assert "finished" in r.get_data(as_text=True)
    assert _state(p.id) == ("paid", Decimal("40.00"), Decimal("60.00"))
    assert refunds.follow_refund(refund.id).state == "finished"  # settled: not asked again
    assert fake.CALLS.count(("refund_status", refund.id)) == 1

    fake.REFUND["request"] = ConnectionError("gateway down")
    result = refunds.refund_payment(p.id, Decimal("10.00"), ADMIN[0], None)
    assert result.state == "error"
    assert _state(p.id) == ("pending_return", Decimal("50.00"), Decimal("50.00"))  # money held meanwhile
    fake.REFUND["status"] = RefundResult(state="failed", info="never arrived")
    assert refunds.follow_refund(result.refund_id).state == "failed"
    assert _state(p.id) == ("paid", Decimal("40.00"), Decimal("60.00"))


def test_refund_not_offered_when_method_disallows(admin, payer, capp):  # noqa: F811
    method = add_paymethod("pmfakepay", {"secret": SECRET}, allow_refund=False)
    p = _paid(payer.account_id, method.id)
    assert 'data-testid="refund"' not in admin.get(f"/admin/payments/{p.id}").get_data(as_text=True)
    admin.post(f"/admin/payments/{p.id}/refund", data={"amount": "10", "confirmed": "1"})
    assert _state(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))
    with pytest.raises(service.RefundError):
        refunds.refund_payment(p.id, "10", ADMIN[0], None)


def test_manual_mark_paid_and_cancel_need_a_reason(admin, payer, method):
    p = _inpay(payer.account_id, method.id)
    r = admin.post(f"/admin/payments/{p.id}/mark-paid", data={"reason": ""}, follow_redirects=True)
    assert "Say why" in r.get_data(as_text=True)
    assert _state(p.id)[0] == "inpay"
    admin.post(f"/admin/payments/{p.id}/mark-paid", data={"reason": "bank transfer seen on statement"})
    assert _state(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))
    event = db.session.query(PaymentEvent).filter_by(payment_id=p.id, status_to="paid").one()
    assert (event.kind, event.source, event.actor, event.data["reason"]) == (
        "manual", "admin", ADMIN[0], "bank transfer seen on statement")
    # a fraud payment can be paid by an admin too
    f = _inpay(payer.account_id, method.id)
    service.set_fraud(f.id, source="test", reason="amount mismatch")
    admin.post(f"/admin/payments/{f.id}/mark-paid", data={"reason": "checked with the bank"})
    assert _state(f.id)[0] == "paid"

    c = _inpay(payer.account_id, method.id)
    admin.post(f"/admin/payments/{c.id}/cancel", data={"reason": ""})
    assert _state(c.id)[0] == "inpay"
    admin.post(f"/admin/payments/{c.id}/cancel", data={"reason": "client asked by phone"})
    assert _state(c.id)[0] == "cancelled"
    event = db.session.query(PaymentEvent).filter_by(payment_id=c.id, status_to="cancelled").one()
    assert (event.kind, event.actor) == ("manual", ADMIN[0])
    # a paid payment cannot be cancelled
    r = admin.post(f"/admin/payments/{p.id}/cancel", data={"reason": "oops"}, follow_redirects=True)
    assert "could not be cancelled" in r.get_data(as_text=True)
    assert _state(p.id)[0] == "paid"


def test_accounts_list_and_page(admin, payer, method):
    other = create_client(*OTHER_CLIENT, currency="USD")
    p = _paid(payer.account_id, method.id, "123.45")
    html = admin.get("/admin/accounts").get_data(as_text=True)
    assert CLIENT[0] in html and OTHER_CLIENT[0] in html and "123.45 RUB" in html and "0.00 USD" in html
    found = admin.get("/admin/accounts?q=other@").get_data(as_text=True)
    assert OTHER_CLIENT[0] in found and CLIENT[0] not in found
    page = admin.get(f"/admin/accounts/{payer.account_id}").get_data(as_text=True)
    assert "123.45 RUB" in page and f"/admin/payments/{p.id}" in page
    assert admin.get("/admin/accounts/99999").status_code == 404
    assert other.account_id


def test_clients_cannot_open_admin_pages(capp, payer, method):  # noqa: F811
    p = _paid(payer.account_id, method.id)
    c = capp.test_client()
    login(c, *CLIENT)
    for url in ("/admin/payments", f"/admin/payments/{p.id}", "/admin/accounts", f"/admin/accounts/{payer.account_id}"):
        assert c.get(url).status_code == 403, url
    assert c.post(f"/admin/payments/{p.id}/refund", data={"amount": "10", "confirmed": "1"}).status_code == 403
    assert _state(p.id)[0] == "paid"


def test_admin_pages_in_russian(admin, payer, method):
    p = _paid(payer.account_id, method.id)
    admin.post("/language/ru")
    for url, text in {"/admin/payments": "Платежи", f"/admin/payments/{p.id}": "Возврат",
                      "/admin/accounts": "Баланс", f"/admin/accounts/{payer.account_id}": "Платёж"}.items():
        r = admin.get(url)
        assert r.status_code == 200, url
        assert text in r.get_data(as_text=True), url


@pytest.mark.parametrize("query", ["before=99999999999999999999", "before=-1"])
def test_odd_query_arguments_never_fail(admin, query):
    assert admin.get(f"/admin/payments?{query}").status_code == 200
    assert admin.get(f"/admin/accounts?{query}").status_code == 200


# (an account filter that is not a number, such as "²", is a search in e-mails and names, not an error)
@pytest.mark.parametrize("query", ["account_id=%00", "account_id=a%0Ab", "paymethod_id=99999999999999999999",
                                   "paymethod_id=%C2%B2"])
def test_filters_that_cannot_be_used_are_a_400_with_the_page(admin, query):
    response = admin.get(f"/admin/payments?{query}")
    assert response.status_code == 400 and "not understood" in response.get_data(as_text=True)


# --- stuck refunds: flagged when overdue, settled by hand -------------------------------------------


def _age(refund_id: int, hours: float) -> None:
    """Pretend the refund was requested ``hours`` ago."""
    with db.engine.begin() as conn:
        conn.execute(Refund.__table__.update().where(Refund.id == refund_id)
                     .values(created_at=datetime.now(timezone.utc) - timedelta(hours=hours)))
    db.session.rollback()  # the test's session may still hold a snapshot from before the update


def _refund_status(refund_id: int) -> str:
    db.session.rollback()
    return db.session.get(Refund, refund_id).status


def _stuck_refund(payment_id: int, amount: str = "40.00", minutes: float = 20) -> int:
    """A refund whose request never got an answer: requested, no gateway id, the amount held, requested
    ``minutes`` ago (past REFUND_SETTLE_GRACE_MINUTES, 15 by default)."""
    fake.REFUND["request"] = ConnectionError("gateway down")
    result = refunds.refund_payment(payment_id, Decimal(amount), ADMIN[0], "customer asked")
    assert result.state == "error"
    fake.REFUND.pop("request")
    if minutes:
        _age(result.refund_id, minutes / 60)
    return result.refund_id


def test_overdue_refund_is_flagged_once_for_the_admin(capp, admin, payer, method):  # noqa: F811
    p = _paid(payer.account_id, method.id)
    fake.REFUND["request"] = RefundResult(state="pending", external_id="RP-1")
    refund_id = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN[0], None).refund_id
    fake.REFUND["status"] = RefundResult(state="pending", info="processing")
    assert refunds.follow_refund(refund_id).state == "pending"  # young: still simply pending
    html = admin.get(f"/admin/payments/{p.id}").get_data(as_text=True)
    assert 'data-testid="refund-attention"' not in html and 'data-testid="settle-refund"' not in html
    _age(refund_id, 25)  # REFUND_ATTENTION_HOURS defaults to 24
    assert refunds.follow_refund(refund_id, source="cron").state == refunds.ATTENTION
    fake.REFUND["status"] = ConnectionError("gateway down")
    assert refunds.follow_refund(refund_id, source="cron").state == refunds.ATTENTION  # an error too
    flags = [e for e in db.session.query(PaymentEvent).filter_by(payment_id=p.id, kind="refund")
             if e.data.get("attention")]
    assert len(flags) == 1 and "needs an admin" in flags[0].outcome  # recorded once, not every run
    assert _state(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))  # nothing settled
    html = admin.get(f"/admin/payments/{p.id}").get_data(as_text=True)
    assert 'data-testid="refund-attention"' in html and 'data-testid="settle-refund"' in html
    r = admin.post(f"/admin/payments/{p.id}/refunds/{refund_id}/follow", follow_redirects=True)
    assert "needs an admin" in r.get_data(as_text=True)
    # a shorter setting flags sooner
    capp.config["REFUND_ATTENTION_HOURS"] = 1
    fake.REFUND["request"] = RefundResult(state="pending", external_id="RP-2")
    q = _paid(payer.account_id, method.id)
    other = refunds.refund_payment(q.id, Decimal("10.00"), ADMIN[0], None).refund_id
    _age(other, 2)
    fake.REFUND["status"] = RefundResult(state="pending")
    assert refunds.follow_refund(other).state == refunds.ATTENTION


def test_stuck_refund_marked_failed_or_done_by_hand(admin, payer, method):
    p = _paid(payer.account_id, method.id)
    refund_id = _stuck_refund(p.id, "40.00")
    assert _state(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))
    html = admin.get(f"/admin/payments/{p.id}").get_data(as_text=True)
    assert 'data-testid="settle-refund"' in html  # no gateway id: it can never be followed
    url = f"/admin/payments/{p.id}/refunds/{refund_id}/settle"
    r = admin.post(url, data={"result": "failed", "reason": ""}, follow_redirects=True)
    assert "Say why" in r.get_data(as_text=True)
    assert admin.post(url, data={"result": "maybe", "reason": "x"}).status_code == 400
    assert _state(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))
    r = admin.post(url, data={"result": "failed", "reason": "not in the gateway's cabinet"}, follow_redirects=True)
    assert "marked failed" in r.get_data(as_text=True)
    assert _state(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))  # the amount is back
    assert _refund_status(refund_id) == "failed"
    event = db.session.query(PaymentEvent).filter_by(payment_id=p.id, status_to="paid", kind="refund").one()
    assert (event.source, event.actor, event.data["reason"], event.data["manual"]) == (
        "admin", ADMIN[0], "not in the gateway's cabinet", True)
    r = admin.post(url, data={"result": "finished", "reason": "again"}, follow_redirects=True)
    assert "already settled" in r.get_data(as_text=True)
    assert _state(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))

    done_id = _stuck_refund(p.id, "100.00")
    admin.post(f"/admin/payments/{p.id}/refunds/{done_id}/settle",
               data={"result": "finished", "reason": "the cabinet shows it returned"})
    assert _state(p.id) == ("returned", Decimal("100.00"), Decimal("0.00"))
    assert _refund_status(done_id) == "finished"
    assert admin.post(f"/admin/payments/{p.id}/refunds/99999/settle",
                      data={"result": "failed", "reason": "x"}).status_code == 404


def test_refund_still_followed_is_not_settled_by_hand(admin, payer, method):
    p = _paid(payer.account_id, method.id)
    fake.REFUND["request"] = RefundResult(state="pending", external_id="RP-9")
    refund_id = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN[0], None).refund_id
    r = admin.post(f"/admin/payments/{p.id}/refunds/{refund_id}/settle",
                   data={"result": "failed", "reason": "impatient"}, follow_redirects=True)
    assert "could not be settled" in r.get_data(as_text=True)
    assert _refund_status(refund_id) == "requested"
    assert _state(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))


def test_settling_a_refund_needs_an_admin_and_a_csrf_token(capp, admin, payer, method):  # noqa: F811
    p = _paid(payer.account_id, method.id)
    refund_id = _stuck_refund(p.id)
    url = f"/admin/payments/{p.id}/refunds/{refund_id}/settle"
    c = capp.test_client()
    login(c, *CLIENT)
    assert c.post(url, data={"result": "failed", "reason": "mine"}).status_code == 403
    capp.config["WTF_CSRF_ENABLED"] = True
    r = admin.post(url, data={"result": "failed", "reason": "no token"})
    assert r.status_code == 400  # CSRFProtect refuses before the view runs
    assert _refund_status(refund_id) == "requested"
    capp.config["WTF_CSRF_ENABLED"] = False
    admin.post(url, data={"result": "failed", "reason": "checked"})
    assert _refund_status(refund_id) == "failed"


def test_refund_without_an_id_is_not_settled_by_hand_during_the_grace_period(capp, admin, payer, method):  # noqa: F811
    p = _paid(payer.account_id, method.id)
    refund_id = _stuck_refund(p.id, minutes=0)  # just requested: its gateway call may still be under way
    html = admin.get(f"/admin/payments/{p.id}").get_data(as_text=True)
    assert 'data-testid="settle-refund"' not in html and 'data-testid="settle-later"' in html
    assert "15 minutes after it was requested" in html
    url = f"/admin/payments/{p.id}/refunds/{refund_id}/settle"
    r = admin.post(url, data={"result": "failed", "reason": "impatient"}, follow_redirects=True)
    assert "could not be settled" in r.get_data(as_text=True) and "may still be under way" in r.get_data(as_text=True)
    assert _refund_status(refund_id) == "requested"
    assert _state(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))
    _age(refund_id, 14 / 60)
    assert 'data-testid="settle-refund"' not in admin.get(f"/admin/payments/{p.id}").get_data(as_text=True)
    capp.config["REFUND_SETTLE_GRACE_MINUTES"] = 10  # the setting decides
    html = admin.get(f"/admin/payments/{p.id}").get_data(as_text=True)
    assert 'data-testid="settle-refund"' in html and 'data-testid="settle-later"' not in html
    admin.post(url, data={"result": "failed", "reason": "not in the gateway's cabinet"})
    assert _refund_status(refund_id) == "failed"
    assert _state(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))


class _DuringCall(dict):
    """fake.REFUND whose "request" answer runs ``during`` first: something happening while the gateway
    call is in flight."""

    def __init__(self, answer, during):
        super().__init__(request=answer)
        self.during = during

    def get(self, key, default=None):
        if key == "request":
            self.during()
        return super().get(key, default)


def test_refund_in_flight_cannot_be_failed_by_hand(admin, payer, method, monkeypatch):
    p = _paid(payer.account_id, method.id)
    refused = []

    def admin_tries_to_settle():
        refund = db.session.query(Refund).filter_by(payment_id=p.id).one()
        with pytest.raises(service.RefundError):
            refunds.settle_by_hand(refund.id, done=False, reason="looks stuck", actor=ADMIN[0])
        refused.append(refund.id)

    monkeypatch.setattr(fake, "REFUND", _DuringCall(RefundResult(state="pending", external_id="RP-7"),
                                                    admin_tries_to_settle))
    outcome = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN[0], None)
    assert refused and outcome.state == "pending"
    db.session.rollback()
    refund = db.session.get(Refund, refused[0])
    assert (refund.status, refund.external_id) == ("requested", "RP-7")  # followed by its id, refunded once
    assert _state(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))


@pytest.mark.parametrize("answer", [RefundResult(state="pending", external_id="RP-8"),
                                    RefundResult(state="finished", external_id="RP-8")], ids=["pending", "finished"])
def test_gateway_answer_after_a_settle_by_hand_is_recorded_for_the_admin(capp, payer, method, monkeypatch,  # noqa: F811
                                                                         caplog, answer):
    p = _paid(payer.account_id, method.id)
    capp.config["REFUND_SETTLE_GRACE_MINUTES"] = 0  # the call outlasted the grace period

    def admin_settles():
        refund = db.session.query(Refund).filter_by(payment_id=p.id).one()
        refunds.settle_by_hand(refund.id, done=False, reason="nothing in the cabinet", actor=ADMIN[0])

    monkeypatch.setattr(fake, "REFUND", _DuringCall(answer, admin_settles))
    with caplog.at_level(logging.ERROR, logger="billcore.payments.refunds"):
        outcome = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN[0], None)
    assert outcome.state == "failed" and "already failed, but the gateway answered" in outcome.info
    db.session.rollback()
    refund = db.session.query(Refund).filter_by(payment_id=p.id).one()
    assert (refund.status, refund.external_id) == ("failed", None)  # the late answer is not applied
    assert _state(p.id) == ("paid", Decimal("0.00"), Decimal("100.00"))
    late = [e for e in db.session.query(PaymentEvent).filter_by(payment_id=p.id, kind="refund")
            if e.data.get("late_answer")]
    assert len(late) == 1 and late[0].data["external_id"] == "RP-8" and "check the gateway" in late[0].outcome
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "already failed" in r.getMessage()]
    assert len(errors) == 1 and "RP-8" in errors[0].getMessage()


def test_pending_refund_followed_again_and_again_is_recorded_once(capp, payer, method):  # noqa: F811
    p = _paid(payer.account_id, method.id)
    refund_id = _stuck_refund(p.id, minutes=0)
    _age(refund_id, 25)
    fake.REFUND["status"] = RefundResult(state="pending", info="no id to follow")
    for _ in range(5):  # payments check every few minutes
        assert refunds.follow_refund(refund_id, source="cron").state == refunds.ATTENTION
    db.session.rollback()
    events = db.session.query(PaymentEvent).filter_by(payment_id=p.id, kind="refund").all()
    pending = [e for e in events if "pending at the gateway" in e.outcome]
    flags = [e for e in events if e.data.get("attention")]
    assert len(pending) == 1 and len(flags) == 1
    fake.REFUND["status"] = RefundResult(state="pending", info="processing")  # something new: recorded
    refunds.follow_refund(refund_id, source="cron")
    db.session.rollback()
    pending = [e for e in db.session.query(PaymentEvent).filter_by(payment_id=p.id, kind="refund")
               if "pending at the gateway" in e.outcome]
    assert [e.outcome for e in pending][-1].endswith("processing") and len(pending) == 2


# --- refusals as people read them ---------------------------------------------------------------------


def test_refusals_name_statuses_by_their_labels(admin, payer, method):
    p = _paid(payer.account_id, method.id)
    r = admin.post(f"/admin/payments/{p.id}/cancel", data={"reason": "oops"}, follow_redirects=True)
    text = r.get_data(as_text=True)
    assert f"Payment {p.id} is “Paid”: it cannot become “Cancelled”." in text
    assert "cannot become cancelled" not in text
    _stuck_refund(p.id)
    r = admin.post(f"/admin/payments/{p.id}/refund", data={"amount": "1", "confirmed": "1"}, follow_redirects=True)
    flashed = " ".join(re.findall(r'<div class="flash[^>]*>(.*?)</div>', r.get_data(as_text=True), re.S))
    assert "“Refund pending”" in flashed and "pending_return" not in flashed
    r = admin.post(f"/admin/payments/{p.id}/mark-paid", data={"reason": "again"}, follow_redirects=True)
    assert "The payment was already paid." in r.get_data(as_text=True)


def test_poll_errors_are_translated(admin, payer, method):
    q = _inpay(payer.account_id, method.id)
    fake.CHECK[q.id] = RuntimeError("timeout")
    r = admin.post(f"/admin/payments/{q.id}/check", follow_redirects=True)
    flashed = " ".join(re.findall(r'<div class="flash[^>]*>(.*?)</div>', r.get_data(as_text=True), re.S))
    # the reason is a translatable message of its own (the history keeps the English one)
    assert "The status could not be checked: the gateway call failed: RuntimeError: timeout" in flashed


def test_an_overdue_refund_the_gateway_still_handles_is_not_marked_failed(admin, payer, method):
    """Marking failed puts the amount back on the balance: if the gateway is still paying the refund out
    (or has), that would refund twice. The gateway is asked once more first."""
    p = _paid(payer.account_id, method.id)
    fake.REFUND["request"] = RefundResult(state="pending", external_id="RP-7")
    refund_id = refunds.refund_payment(p.id, Decimal("40.00"), ADMIN[0], None).refund_id
    _age(refund_id, 25)  # overdue: settleable by hand
    url = f"/admin/payments/{p.id}/refunds/{refund_id}/settle"
    fake.REFUND["status"] = RefundResult(state="pending", info="processing")
    r = admin.post(url, data={"result": "failed", "reason": "looks lost"}, follow_redirects=True)
    assert "could refund the money twice" in r.get_data(as_text=True)
    assert _refund_status(refund_id) == "requested"
    assert _state(p.id) == ("pending_return", Decimal("40.00"), Decimal("60.00"))  # still held
    fake.REFUND["status"] = RefundResult(state="finished")
    r = admin.post(url, data={"result": "failed", "reason": "looks lost"}, follow_redirects=True)
    assert "booked as finished" in r.get_data(as_text=True)
    assert _refund_status(refund_id) == "finished"
    # refunded once: 40.00 left for good, and never put back on the balance
    assert _state(p.id) == ("paid", Decimal("40.00"), Decimal("60.00"))
