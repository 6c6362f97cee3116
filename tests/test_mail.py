"""Customer e-mails from the outbox: a real SMTP server (aiosmtpd) receives them in each customer's
language; without a mail server they are written to files; a notice is sent once per event."""
from __future__ import annotations

import socket
from datetime import timedelta
from decimal import Decimal
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller

from billcore import webhooks
from billcore.accounts import create_client
from billcore.db import db
from billcore.models import Delivery, RecurringCharge, RecurringProfile, User, utcnow
from billcore.payments import service
from billcore.recurring import _failed
from billcore.payments.service import write_transaction
from tests import fake_checkout_module as fake
from tests.conftest import add_paymethod

FAKE = {"pmfakepay": "tests.fake_checkout_module"}
NBSP = "\u00a0"


class Inbox:
    """aiosmtpd's handler: keeps every message it is given."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


@pytest.fixture
def app_config():
    return {"EXTRA_MODULES": FAKE, "MAIL_FROM": "billing@provider.example"}


def _customers():
    """Two accounts: an English-speaking and a Russian-speaking customer."""
    fake.reset()
    english = create_client("en@test.example", "pw-english-1", language="en")
    russian = create_client("ru@test.example", "pw-russian-1", language="ru")
    method = add_paymethod("pmfakepay", name="Card")
    return english, russian, method


def _pay(user: User, method, amount="100.00"):
    payment = service.create_payment(user.account_id, method.id, amount, source="test")
    service.set_paid(payment.id, amount=Decimal(amount), currency="RUB", source="test")
    return payment


def test_smtp_server_receives_notices_in_each_customers_language(app, smtp):
    port, inbox = smtp
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port)
    english, russian, method = _customers()
    _pay(english, method)
    paid = _pay(russian, method, "250.00")
    refund = service.request_refund(paid.id, "50.00", source="test")
    service.finish_refund(refund.id, source="test")
    result = webhooks.deliver()
    assert result.delivered == 3
    by_recipient = {}
    for rcpt, message in inbox.messages:
        by_recipient.setdefault(rcpt[0], []).append(message)
    [en] = by_recipient["en@test.example"]
    assert en["Subject"] == "Payment received: 100.00 RUB" and en["From"] == "billing@provider.example"
    assert "has been credited to your account" in en.get_content()
    ru_paid, ru_refund = by_recipient["ru@test.example"]
    # money as a Russian reader writes it (no-break spaces, comma, ₽), as on the pages
    assert ru_paid["Subject"] == f"Платёж получен: 250,00{NBSP}₽"
    assert f"на 250,00{NBSP}₽ зачислен" in ru_paid.get_content()
    assert ru_refund["Subject"] == f"Возврат выполнен: 50,00{NBSP}₽"
    assert f"возврат 50,00{NBSP}₽" in ru_refund.get_content()
    # sent once: another run finds nothing to send
    assert webhooks.deliver().delivered == 0 and len(inbox.messages) == 3
    page_rows = db.session.query(Delivery).filter_by(channel="email").all()
    assert {d.state for d in page_rows} == {"delivered"}


def test_auto_payment_failed_and_suspended_notices(app, smtp):
    port, inbox = smtp
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port, RECURRING_MAX_FAILURES=1)
    english, russian, method = _customers()
    parent = _pay(russian, method)
    with write_transaction() as session:
        profile = RecurringProfile(account_id=russian.account_id, paymethod_id=method.id, parent_payment_id=parent.id,
                                   rule="threshold", amount=Decimal("100.00"), threshold=Decimal("10.00"),
                                   monthly_max=Decimal("1000.00"), status="active")
        session.add(profile)
        session.flush()
        charge = RecurringCharge(profile_id=profile.id, period="t1", state="claimed", attempts=1)
        session.add(charge)
        session.flush()
        assert _failed(profile, charge, utcnow(), ("refused", {})) is True  # suspended at the first failure
    webhooks.deliver()
    subjects = [m["Subject"] for rcpt, m in inbox.messages if rcpt == ["ru@test.example"]]
    assert subjects == [f"Платёж получен: 100,00{NBSP}₽", "Автоплатёж не прошёл", "Автоплатёж приостановлен"]
    suspended = inbox.messages[-1][1].get_content()
    assert suspended.strip() == ("Автоплатёж №1 приостановлен: в списании отказано. Пока его не возобновят, "
                                 "деньги списываться не будут.")


def test_without_a_mail_server_messages_are_files_in_the_instance_folder(app, tmp_path):
    english, russian, method = _customers()
    _pay(english, method)
    webhooks.deliver()
    files = sorted((tmp_path / "instance" / "mail").glob("*.eml"))
    assert len(files) == 1
    message = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert message["To"] == "en@test.example" and message["Subject"] == "Payment received: 100.00 RUB"
    # sent again (a crash after writing, before booking): the same file, not a second one
    delivery = db.session.query(Delivery).filter_by(channel="email").one()
    webhooks.resend(delivery.id)
    webhooks.deliver()
    assert sorted((tmp_path / "instance" / "mail").glob("*.eml")) == files


def test_an_unreachable_mail_server_is_retried(app):
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=_free_port(), WEBHOOK_RETRY_BASE_SECONDS=60)
    english, russian, method = _customers()
    _pay(english, method)
    result = webhooks.deliver()
    assert result.retried == 1
    db.session.rollback()
    delivery = db.session.query(Delivery).filter_by(channel="email").one()
    assert delivery.state == "pending" and "ConnectionRefusedError" in delivery.last_answer
    assert delivery.next_attempt_at > utcnow() + timedelta(seconds=30)
