"""Outbound webhooks: the outbox in the change's transaction, signed deliveries (verified by the receiver
with standardwebhooks), retries with backoff, disabling a failing endpoint, SSRF guard, a killed job."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest

from billcore import webhooks
from billcore.db import db
from billcore.models import Account, Delivery, OutboxEvent, WebhookEndpoint, utcnow
from billcore.payments import service
from billcore.payments.adjustments import adjust_balance
from tests import fake_checkout_module as fake
from tests.conftest import add_paymethod
from tests.webhook_receiver import Receiver

FAKE = {"pmfakepay": "tests.fake_checkout_module"}


@pytest.fixture
def app_config():
    return {"EXTRA_MODULES": FAKE, "WEBHOOK_ALLOWED_HOSTS": ["127.0.0.1"], "WEBHOOK_RETRY_BASE_SECONDS": 1,
            "WEBHOOK_TIMEOUT_SECONDS": 5, "MAIL_ENABLED": False}


def _activity():
    """A credit, a refund, a cancel and a manual adjustment: six outbox events."""
    fake.reset()
    account = Account(name="Customer", currency="RUB", balance=Decimal("0.00"))
    db.session.add(account)
    db.session.commit()
    method = add_paymethod("pmfakepay", name="Card")
    paid = service.create_payment(account.id, method.id, "100.00", source="test")
    service.set_paid(paid.id, amount=Decimal("100.00"), currency="RUB", source="test")
    refund = service.request_refund(paid.id, "30.00", source="test")
    service.finish_refund(refund.id, source="test")
    other = service.create_payment(account.id, method.id, "5.00", source="test")
    service.set_cancelled(other.id, source="test", reason="changed mind")
    adjust_balance(account.id, Decimal("7.50"), reason="bonus", source="test")
    return account


def _events() -> list[OutboxEvent]:
    db.session.rollback()
    return list(db.session.query(OutboxEvent).order_by(OutboxEvent.id))


def _run_until_quiet(now, rounds=12):
    """Run the job with the clock moving past every backoff until nothing is waiting."""
    for _ in range(rounds):
        webhooks.deliver(now=now)
        db.session.rollback()
        if not db.session.query(Delivery).filter_by(state="pending").count():
            return now
        now += timedelta(hours=1)
    return now


def test_events_are_written_with_their_change_and_only_then(app):
    account = _activity()
    types = [e.type for e in _events()]
    assert types == ["payment.paid", "refund.requested", "refund.finished", "payment.cancelled", "account.adjusted"]
    paid = _events()[0].payload
    assert paid["amount"] == "100.00" and paid["status"] == "paid" and paid["account_id"] == account.id

    def refuse(context):
        raise RuntimeError("bad signature")

    method = add_paymethod("pmfakepay", name="Second")
    payment = service.create_payment(account.id, method.id, "10.00", source="test")
    with pytest.raises(RuntimeError):
        service.set_paid(payment.id, amount=Decimal("10.00"), currency="RUB", source="test", verify=refuse)
    with pytest.raises(service.IllegalTransition):
        service.set_cancelled(_events()[0].payload["payment_id"], source="test", reason="too late")
    assert len(_events()) == 5  # a refused change wrote no event


def test_receiver_failing_twice_then_recovering_gets_every_event_by_id(app):
    with Receiver(fail_first=2) as receiver:
        endpoint, secret = webhooks.create_endpoint(receiver.url, list(webhooks.EVENT_TYPES))
        receiver.secret = secret
        _activity()
        _run_until_quiet(utcnow())
        expected = {f"evt_{e.id}" for e in _events()}
        assert receiver.ids() == expected and len(expected) == 5
        assert receiver.bad_signatures == 0
        assert receiver.requests == len(receiver.received) + 2
        types = {data["type"] for _, data in receiver.received}
        assert "payment.paid" in types and "account.adjusted" in types
        paid = next(data for _, data in receiver.received if data["type"] == "payment.paid")
        assert paid["data"]["amount"] == "100.00"
    db.session.rollback()
    rows = db.session.query(Delivery).order_by(Delivery.id).all()
    assert {(d.state, d.last_status) for d in rows} == {("delivered", 200)}
    assert [d.attempts for d in rows] == [2, 2, 1, 1, 1]  # the first run's first two answers were 500s
    assert db.session.get(WebhookEndpoint, endpoint.id).active is True


def test_backoff_is_exponential_and_a_retry_waits_for_it(app):
    app.config["WEBHOOK_RETRY_BASE_SECONDS"] = 30
    assert [webhooks.retry_delay(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert webhooks.retry_delay(30) == timedelta(days=1)
    with Receiver(fail_first=1) as receiver:
        _, receiver.secret = webhooks.create_endpoint(receiver.url, ["account.adjusted"])
        account = Account(name="A", currency="RUB", balance=Decimal("0"))
        db.session.add(account)
        db.session.commit()
        adjust_balance(account.id, Decimal("1.00"), reason="r", source="test")
        now = utcnow()
        webhooks.deliver(now=now)
        webhooks.deliver(now=now + timedelta(seconds=29))
        assert receiver.requests == 1  # not yet due
        webhooks.deliver(now=now + timedelta(seconds=31))
        assert receiver.requests == 2 and len(receiver.received) == 1


def test_an_endpoint_that_keeps_failing_is_disabled_and_the_admin_told(app, admin_client):
    app.config["WEBHOOK_MAX_ATTEMPTS"] = 3
    with Receiver(fail_first=1000) as receiver:
        endpoint, receiver.secret = webhooks.create_endpoint(receiver.url, list(webhooks.EVENT_TYPES))
        _activity()
        _run_until_quiet(utcnow(), rounds=4)
        db.session.rollback()
        assert db.session.get(WebhookEndpoint, endpoint.id).active is False
        page = admin_client.get("/admin/").get_data(as_text=True)
        assert 'data-testid="webhooks-disabled"' in page
        assert "kept failing" in admin_client.get("/admin/webhooks").get_data(as_text=True)
        deliveries = admin_client.get(f"/admin/deliveries?endpoint_id={endpoint.id}").get_data(as_text=True)
        assert "HTTP 500" in deliveries and "not yet" in deliveries
        states = sorted(d.state for d in db.session.query(Delivery))
        assert states == ["failed"] + ["pending"] * 4  # the other events wait for the endpoint to work again
        assert receiver.requests == 5 + 5 + 1  # two runs of five, then the third stopped at the first give-up
        receiver.fail_first = 0
        assert admin_client.post(f"/admin/webhooks/{endpoint.id}/enable").status_code == 302
        given_up = db.session.query(Delivery).filter_by(state="failed").one()
        assert admin_client.post(f"/admin/deliveries/{given_up.id}/resend").status_code == 302
        _run_until_quiet(utcnow())
        assert receiver.ids() == {f"evt_{e.id}" for e in _events()}


def test_private_addresses_are_refused_unless_allowed(app):
    app.config["WEBHOOK_ALLOWED_HOSTS"] = []
    with Receiver() as receiver:
        _, receiver.secret = webhooks.create_endpoint(receiver.url, ["account.adjusted"])
        account = Account(name="A", currency="RUB", balance=Decimal("0"))
        db.session.add(account)
        db.session.commit()
        adjust_balance(account.id, Decimal("1.00"), reason="r", source="test")
        webhooks.deliver()
        assert receiver.requests == 0
        db.session.rollback()
        delivery = db.session.query(Delivery).one()
        assert delivery.state == "pending" and "not a public address" in delivery.last_answer
    for url in ("http://10.0.0.1/x", "http://169.254.169.254/latest", "http://[::1]/x", "http://localhost/x",
                "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/",
                # IPv6 that carries 127.0.0.1 through a translator or tunnel: NAT64, 6to4, Teredo
                "http://[64:ff9b::7f00:1]/x", "http://[2002:7f00:1::]/x", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x"):
        assert webhooks.address_refusal(url) is not None, url
    assert webhooks.address_refusal("http://93.184.215.14/") is None
    assert webhooks.address_refusal("http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/") is None  # public IPv6
    with pytest.raises(webhooks.WebhookError):
        webhooks.create_endpoint("ftp://example.com/", ["payment.paid"])
    with pytest.raises(webhooks.WebhookError):
        webhooks.create_endpoint("https://user:pw@example.com/", ["payment.paid"])
    with pytest.raises(webhooks.WebhookError):
        webhooks.create_endpoint("https://example.com/", ["no.such.event"])


def test_the_secret_is_encrypted_at_rest(app):
    endpoint, secret = webhooks.create_endpoint("https://example.com/hook", ["payment.paid"])
    assert secret.startswith("whsec_") and secret not in endpoint.secret_encrypted
    assert webhooks.endpoint_secret(endpoint) == secret


def test_a_killed_delivery_job_loses_nothing(app, tmp_path):
    with Receiver() as receiver:
        _, receiver.secret = webhooks.create_endpoint(receiver.url, list(webhooks.EVENT_TYPES))
        _activity()
        receiver.hang.set()
        env = {**os.environ, "BILLCORE_INSTANCE_PATH": app.instance_path,
               "BILLCORE_DATABASE_URL": app.config["DATABASE_URL"], "BILLCORE_EXTRA_MODULES": '{}',
               "BILLCORE_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]', "BILLCORE_MAIL_ENABLED": "false",
               "BILLCORE_WEBHOOK_LEASE_SECONDS": "60"}
        job = subprocess.Popen([sys.executable, "-m", "flask", "--app", "billcore", "webhooks", "deliver"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert receiver.hanging.wait(60), job.stderr.read() if job.poll() is not None else "job silent"
            job.send_signal(signal.SIGKILL)  # while it waits for the receiver's answer
            job.wait(10)
        finally:
            if job.poll() is None:
                job.kill()
        receiver.release()
        db.session.rollback()
        # the killed run's deliveries are leased; once the lease is over the next run sends them all
        leased = {f"evt_{d.event_id}" for d in db.session.query(Delivery).filter(Delivery.attempts == 1)}
        assert leased
        webhooks.deliver(now=utcnow() + timedelta(seconds=30))
        # still leased: no second sender meanwhile (only the request the killed run had sent may have arrived)
        assert len([msg_id for msg_id, _ in receiver.received if msg_id in leased]) <= 1
        _run_until_quiet(utcnow() + timedelta(seconds=61))
        assert receiver.ids() == {f"evt_{e.id}" for e in _events()}
        assert receiver.bad_signatures == 0


def test_two_hosts_running_the_job_at_once_send_each_delivery_once(app):
    from billcore.testing.fixtures import run_together

    with Receiver() as receiver:
        _, receiver.secret = webhooks.create_endpoint(receiver.url, list(webhooks.EVENT_TYPES))
        _activity()
        db.session.remove()
        results = run_together(app, [webhooks.deliver, webhooks.deliver, webhooks.deliver])
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert sum(r.dispatched for r in results) == 5  # each event fanned out by one run only
        assert sum(r.delivered for r in results) == 5
        assert sorted(msg_id for msg_id, _ in receiver.received) == sorted(f"evt_{e.id}" for e in _events())


class StallingReceiver:
    """A receiver that answers the status line and headers, part of the body, then goes silent."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.stop = threading.Event()
        self.requests = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.requests += 1
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
            self.stop.wait(5)  # the rest never comes
            conn.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self._thread.join(5)
        self.sock.close()


def test_a_receiver_stalling_mid_body_is_a_failed_attempt_and_the_run_goes_on(app):
    app.config["WEBHOOK_TIMEOUT_SECONDS"] = 0.5
    with StallingReceiver() as stalling, Receiver() as receiver:
        stalled, _ = webhooks.create_endpoint(stalling.url, ["account.adjusted"])
        _, receiver.secret = webhooks.create_endpoint(receiver.url, ["account.adjusted"])
        account = Account(name="A", currency="RUB", balance=Decimal("0"))
        db.session.add(account)
        db.session.commit()
        adjust_balance(account.id, Decimal("1.00"), reason="r", source="test")
        result = webhooks.deliver()
        assert stalling.requests == 1 and len(receiver.received) == 1
        assert (result.delivered, result.retried) == (1, 1)
    db.session.rollback()
    booked = db.session.query(Delivery).filter_by(endpoint_id=stalled.id).one()
    assert booked.state == "pending" and booked.attempts == 1 and "ReadTimeout" in booked.last_answer
    assert booked.next_attempt_at > utcnow()  # the backoff, not the lease


def test_any_fault_of_one_delivery_is_its_failed_attempt(app, monkeypatch):
    original = webhooks._send_webhook

    def broken_for_one(item, now):
        if item.url.endswith("/broken"):
            raise KeyError("secret")
        return original(item, now)

    monkeypatch.setattr(webhooks, "_send_webhook", broken_for_one)
    with Receiver() as receiver:
        broken, _ = webhooks.create_endpoint(receiver.url.replace("/hook", "/broken"), ["account.adjusted"])
        _, receiver.secret = webhooks.create_endpoint(receiver.url, ["account.adjusted"])
        account = Account(name="A", currency="RUB", balance=Decimal("0"))
        db.session.add(account)
        db.session.commit()
        adjust_balance(account.id, Decimal("1.00"), reason="r", source="test")
        result = webhooks.deliver()
        assert len(receiver.received) == 1 and (result.delivered, result.retried) == (1, 1)
    db.session.rollback()
    booked = db.session.query(Delivery).filter_by(endpoint_id=broken.id).one()
    assert booked.state == "pending" and booked.attempts == 1 and booked.last_answer.startswith("KeyError")


def test_resend_starts_a_fresh_series_of_attempts(app):
    app.config["WEBHOOK_MAX_ATTEMPTS"] = 2
    with Receiver(fail_first=1000) as receiver:
        endpoint, receiver.secret = webhooks.create_endpoint(receiver.url, ["account.adjusted"])
        account = Account(name="A", currency="RUB", balance=Decimal("0"))
        db.session.add(account)
        db.session.commit()
        adjust_balance(account.id, Decimal("1.00"), reason="r", source="test")
        now = _run_until_quiet(utcnow(), rounds=3)
        db.session.rollback()
        given_up = db.session.query(Delivery).one()
        assert (given_up.state, given_up.attempts) == ("failed", 2)
        webhooks.set_endpoint_active(db.session.get(WebhookEndpoint, endpoint.id), True)
        assert webhooks.resend(given_up.id).attempts == 0
        webhooks.deliver(now=now + timedelta(hours=1))  # fails once more: retried later, not given up at once
        db.session.rollback()
        again = db.session.get(Delivery, given_up.id)
        assert (again.state, again.attempts) == ("pending", 1)


def test_deliveries_are_leased_only_as_many_as_can_be_sent_within_the_lease(app, monkeypatch):
    from sqlalchemy import func, select

    app.config.update(WEBHOOK_LEASE_SECONDS=20, WEBHOOK_TIMEOUT_SECONDS=5)
    assert webhooks.claim_chunk(100) == 2 and webhooks.claim_chunk(1) == 1
    app.config.update(WEBHOOK_LEASE_SECONDS=300, WEBHOOK_TIMEOUT_SECONDS=10)
    assert webhooks.claim_chunk(100) == 15
    app.config.update(WEBHOOK_LEASE_SECONDS=2, WEBHOOK_TIMEOUT_SECONDS=5)  # a lease shorter than one send
    assert webhooks.claim_chunk(100) == 1
    leased_while_sending = []
    original = webhooks._send_webhook

    def watching(item, now):
        with db.engine.connect() as conn:
            leased_while_sending.append(conn.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.state == "pending", Delivery.attempts > 0)))
        return original(item, now)

    monkeypatch.setattr(webhooks, "_send_webhook", watching)
    with Receiver() as receiver:
        _, receiver.secret = webhooks.create_endpoint(receiver.url, list(webhooks.EVENT_TYPES))
        _activity()
        assert webhooks.deliver().delivered == 5
    assert leased_while_sending == [1, 1, 1, 1, 1]  # never more leased than can be sent in time
