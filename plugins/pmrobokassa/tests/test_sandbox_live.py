"""The Robokassa module against the sandbox over real HTTP: billcore served by a threaded werkzeug server
on 127.0.0.1, the client's browser played by ``requests``, the sandbox delivering its notifications
to ``/mancgi/rkresult`` from its own threads. A payment is credited exactly once whatever the fault
mode, a lost or forged notification is settled by status polling, and refunds go through the
Refund API. Runs on SQLite and, when configured, PostgreSQL.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from billcore.accounts import create_client
from billcore.db import db
from billcore.models import Account, LedgerEntry, Payment, Refund
from billcore.payments import service
from billcore.payments.polling import check_payment
from billcore.testing.fixtures import FAST_SHUTDOWN
from pmrobokassa.demo import demo_settings
from pmrobokassa.sandbox import delivery
from pmrobokassa.sandbox.shops import DEFAULT_SHOP
from pmrobokassa.sandbox.store import get_store
from tests.conftest import BACKENDS, CLIENT, _database_url_for, add_paymethod, make_app

pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is")


class Forms(HTMLParser):
    """Collects the forms of a page: action, method and input fields (hidden and other)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action", ""), "method": (attrs.get("method") or "get").upper(),
                               "fields": {}, "autosubmit": "data-autosubmit" in attrs})
        elif tag == "input" and self.forms and attrs.get("name"):
            if attrs.get("type") == "radio" and "checked" not in attrs:
                return
            self.forms[-1]["fields"][attrs["name"]] = attrs.get("value") or ""


def forms_of(html: str) -> list[dict]:
    parser = Forms()
    parser.feed(html)
    return parser.forms


@dataclass
class Live:
    """The served app and its URL."""

    app: Flask
    url: str


@contextmanager
def serve(tmp_path, database_url: str, *, threaded: bool = True):
    """billcore with the sandbox on, served on a free port; BASE_URL is the server's URL."""
    server = make_server("127.0.0.1", 0, Flask("placeholder"), threaded=threaded)
    url = f"http://127.0.0.1:{server.server_port}"
    app = make_app(tmp_path, database_url, BASE_URL=url, LOG_DIR=str(tmp_path / "logs"), PMROBOKASSA_SANDBOX=True,
                   PMROBOKASSA_SANDBOX_RETRY_DELAYS=[0, 0.3, 0.6, 1.0], PMROBOKASSA_SANDBOX_LATE_SECONDS=1.5,
                   PMROBOKASSA_SANDBOX_PARALLEL=6, PMROBOKASSA_SANDBOX_REFUND_SECONDS=0)
    server.app = app
    thread = threading.Thread(target=server.serve_forever, kwargs=FAST_SHUTDOWN, daemon=True)
    thread.start()
    ctx = app.app_context()
    ctx.push()
    try:
        yield Live(app, url)
    finally:
        delivery.join_deliveries(30)
        server.shutdown()
        thread.join(10)
        server.server_close()
        db.session.remove()
        ctx.pop()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture(params=BACKENDS)
def live(request, tmp_path):
    """A threaded server (like ``flask run``) on each configured database."""
    urls = _database_url_for(request.param, tmp_path)
    with serve(tmp_path, next(urls)) as server:
        yield server
    for _ in urls:  # drop the PostgreSQL schema
        pass


@pytest.fixture
def shopper(live):
    """The client's browser (a logged-in requests session), its account id and the demo method."""
    user = create_client(*CLIENT, currency="RUB")
    account_id = user.account_id
    method = add_paymethod("pmrobokassa", demo_settings(live.url), name="Robokassa sandbox")
    session = requests.Session()
    response = session.post(f"{live.url}/login", data={"email": CLIENT[0], "password": CLIENT[1]},
                            allow_redirects=False)
    assert response.status_code == 302
    return session, account_id, method.id


def pay_in_sandbox(live, shopper, fault="normal", action="pay", amount="100.00"):
    """Create a payment and walk the browser's way: the payment's page -> Pay (the core's payment door) ->
    the sandbox's page -> Pay -> the shop's return.

    Returns ``(payment id, the final response)``.
    """
    session, account_id, method_id = shopper
    payment = service.create_payment(account_id, method_id, Decimal(amount))
    start = session.get(f"{live.url}/payments/{payment.id}")  # a link reaches the page: only a button
    [button] = [f for f in forms_of(start.text) if f["action"] == f"/payments/{payment.id}/pay"]
    page = session.post(f"{live.url}{button['action']}", data=button["fields"])
    assert page.status_code == 200
    [to_gateway] = [f for f in forms_of(page.text) if f["autosubmit"]]
    assert to_gateway["action"] == f"{live.url}/sandbox/robokassa/Merchant/Index.aspx"
    gateway_page = session.post(to_gateway["action"], data=to_gateway["fields"])
    assert gateway_page.status_code == 200, gateway_page.text
    [pay_form] = [f for f in forms_of(gateway_page.text) if "token" in f["fields"]]
    fields = dict(pay_form["fields"], fault=fault, action=action)
    back = session.post(f"{live.url}{pay_form['action']}", data=fields)
    [to_shop] = [f for f in forms_of(back.text) if f["autosubmit"]]
    final = session.post(to_shop["action"], data=to_shop["fields"])
    return payment.id, final


def fresh() -> None:
    """End the test's read transaction: the server commits in other connections, and a snapshot
    (SQLite WAL, PostgreSQL repeatable reads) would keep showing the old rows."""
    db.session.rollback()


def payment_row(payment_id: int) -> Payment:
    fresh()
    return db.session.get(Payment, payment_id)


def balance(account_id: int) -> Decimal:
    fresh()
    return db.session.get(Account, account_id).balance


def credits(payment_id: int) -> int:
    fresh()
    return db.session.query(LedgerEntry).filter_by(payment_id=payment_id, kind="payment").count()


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def attempts_of(payment_id: int) -> list[dict]:
    ops = get_store().find_operations(DEFAULT_SHOP["login"], str(payment_id))
    return [a for op in ops for a in get_store().attempts(op.id)]


def test_a_payment_is_credited_once_and_acknowledged(live, shopper):
    payment_id, final = pay_in_sandbox(live, shopper)
    assert final.status_code == 200 and f"/payments/{payment_id}" in final.url
    assert wait_for(lambda: payment_row(payment_id).status == "paid")
    assert delivery.join_deliveries(20)
    assert balance(shopper[1]) == Decimal("100.00") and credits(payment_id) == 1
    [attempt] = attempts_of(payment_id)
    assert attempt["accepted"] and attempt["answer"] == f"OK{payment_id}" and attempt["status"] == 200
    assert payment_row(payment_id).gateway_data.get("inc_curr_label") == "BankCardPSR"


@pytest.mark.parametrize("fault", ["twice", "parallel"])
def test_repeated_notifications_change_nothing(live, shopper, fault):
    payment_id, _ = pay_in_sandbox(live, shopper, fault=fault)
    assert delivery.join_deliveries(30)
    attempts = attempts_of(payment_id)
    accepted = [a for a in attempts if a["accepted"]]
    # Every delivery ends acknowledged (a repeat is answered OK again), yet the money comes once.
    assert len(accepted) == (2 if fault == "twice" else 6)
    assert {a["answer"] for a in accepted} == {f"OK{payment_id}"}
    assert payment_row(payment_id).status == "paid"
    assert balance(shopper[1]) == Decimal("100.00") and credits(payment_id) == 1


def test_a_late_notification_arrives_after_the_buyer_and_credits_once(live, shopper):
    payment_id, final = pay_in_sandbox(live, shopper, fault="late")
    assert final.status_code == 200
    # The buyer is back before the notification: the payment is still in progress, nothing credited.
    assert payment_row(payment_id).status == "inpay" and balance(shopper[1]) == Decimal("0")
    assert not attempts_of(payment_id)
    assert wait_for(lambda: payment_row(payment_id).status == "paid")
    assert delivery.join_deliveries(20)
    assert balance(shopper[1]) == Decimal("100.00") and credits(payment_id) == 1


def test_a_forged_notification_is_refused_and_polling_settles_the_payment(live, shopper):
    payment_id, _ = pay_in_sandbox(live, shopper, fault="bad_signature")
    assert delivery.join_deliveries(20)
    [attempt] = attempts_of(payment_id)
    assert not attempt["accepted"] and 400 <= attempt["status"] < 500 and "signature" in attempt["answer"]
    assert payment_row(payment_id).status == "inpay" and balance(shopper[1]) == Decimal("0")
    outcome = check_payment(payment_id, "test")
    assert outcome is not None and outcome.changed
    assert payment_row(payment_id).status == "paid" and balance(shopper[1]) == Decimal("100.00")
    check_payment(payment_id, "test")  # asking again changes nothing
    assert credits(payment_id) == 1 and balance(shopper[1]) == Decimal("100.00")


def _payments_check(live) -> None:
    """``flask --app billcore payments check`` when the command exists, else the same polling function."""
    runner = live.app.test_cli_runner()
    command = live.app.cli.get_command(None, "payments")
    if command is not None and "check" in getattr(command, "commands", {}):
        result = runner.invoke(args=["payments", "check"])
        assert result.exit_code == 0, result.output
    else:  # pragma: no cover - until the cron command lands
        for payment in Payment.query.filter_by(status="inpay").all():
            check_payment(payment.id, "cron")


def test_a_lost_notification_is_settled_by_payments_check(live, shopper):
    payment_id, final = pay_in_sandbox(live, shopper, fault="none")
    assert final.status_code == 200
    time.sleep(0.5)
    assert not attempts_of(payment_id) and payment_row(payment_id).status == "inpay"
    _payments_check(live)
    assert payment_row(payment_id).status == "paid"
    assert payment_row(payment_id).external_id or payment_row(payment_id).gateway_data.get("op_key")
    assert balance(shopper[1]) == Decimal("100.00") and credits(payment_id) == 1


def test_a_cancelled_payment_is_not_credited_and_polling_cancels_it(live, shopper):
    payment_id, final = pay_in_sandbox(live, shopper, action="cancel")
    assert final.status_code == 200
    assert payment_row(payment_id).status == "inpay"  # the unsigned FailURL changes nothing
    check_payment(payment_id, "test")
    assert payment_row(payment_id).status == "cancelled" and balance(shopper[1]) == Decimal("0")


def test_a_partial_refund_goes_through_the_refund_api(live, shopper):
    from billcore.payments.refunds import follow_refund, refund_payment

    payment_id, _ = pay_in_sandbox(live, shopper)
    assert wait_for(lambda: payment_row(payment_id).status == "paid")
    outcome = refund_payment(payment_id, Decimal("40.00"), "admin@test.example", "customer asked")
    fresh()
    refund = db.session.query(Refund).filter_by(payment_id=payment_id).one()
    if refund.status == "requested":
        follow_refund(refund.id)
    fresh()
    refund = db.session.get(Refund, refund.id)
    assert refund.status == "finished", outcome
    [op] = get_store().find_operations(DEFAULT_SHOP["login"], str(payment_id))
    [gateway_refund] = get_store().refunds(op.id)
    assert Decimal(gateway_refund["amount"]) == Decimal("40.00") and gateway_refund["label"] == "finished"
    assert refund.external_id == gateway_refund["request_id"]
    assert balance(shopper[1]) == Decimal("60.00")
    assert payment_row(payment_id).refunded_amount == Decimal("40.00")


def _charge(live, shopper, parent_id: int):
    """A child payment charged against ``parent_id`` through the module's recurring hook."""
    from billcore.paymethods import full_settings
    from billcore.plugins import get_registry
    from billcore.models import PaymentMethod

    _, account_id, method_id = shopper
    child = service.create_payment(account_id, method_id, Decimal("100.00"), source="recurring")
    fresh()
    method = db.session.get(PaymentMethod, method_id)
    result = get_registry().call("pmrobokassa", "billcore_recurring_charge", payment=db.session.get(Payment, child.id),
                                 parent=db.session.get(Payment, parent_id), paymethod=method,
                                 settings=full_settings(method))
    return child.id, result


def test_a_recurring_charge_is_accepted_then_credited_by_its_notification(live, shopper):
    parent_id, _ = pay_in_sandbox(live, shopper)
    assert wait_for(lambda: payment_row(parent_id).status == "paid")
    child_id, result = _charge(live, shopper, parent_id)
    assert result.state == "accepted"  # "OK<InvoiceID>" means created, not paid (§7.1)
    assert wait_for(lambda: payment_row(child_id).status == "paid")
    assert delivery.join_deliveries(20)
    [op] = get_store().find_operations(DEFAULT_SHOP["login"], str(child_id))
    assert op.parent_inv_id == str(parent_id)
    assert balance(shopper[1]) == Decimal("200.00") and credits(child_id) == 1


def test_a_refused_recurring_charge_is_cancelled_by_polling(live, shopper):
    parent_id, _ = pay_in_sandbox(live, shopper)
    assert wait_for(lambda: payment_row(parent_id).status == "paid")
    live.app.config["PMROBOKASSA_SANDBOX_RECURRING"] = "refuse"
    child_id, result = _charge(live, shopper, parent_id)
    assert result.state == "accepted"
    assert not attempts_of(child_id)
    check_payment(child_id, "test")
    assert payment_row(child_id).status == "cancelled"
    assert balance(shopper[1]) == Decimal("100.00")


def test_a_single_threaded_server_does_not_deadlock(tmp_path):
    """One worker, one thread (gunicorn's default): the sandbox answers the browser first and notifies
    from its own thread, so the shop's server is free to take the notification."""
    with serve(tmp_path, f"sqlite:///{tmp_path / 'single.sqlite'}", threaded=False) as server:
        user = create_client(*CLIENT, currency="RUB")
        method = add_paymethod("pmrobokassa", demo_settings(server.url))
        session = requests.Session()
        session.post(f"{server.url}/login", data={"email": CLIENT[0], "password": CLIENT[1]})
        started = time.monotonic()
        payment_id, final = pay_in_sandbox(server, (session, user.account_id, method.id))
        assert final.status_code == 200 and time.monotonic() - started < 10
        assert wait_for(lambda: payment_row(payment_id).status == "paid")
        assert delivery.join_deliveries(20)
        assert credits(payment_id) == 1 and [a["accepted"] for a in attempts_of(payment_id)] == [1]
