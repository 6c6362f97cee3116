"""The README's two pictures, made from the running pages: the admin's overview after a month of payments
and a customer's paid payment, in Russian. Each page is audited like the others; the pictures land in
``test-artifacts/`` and, with ``BILLCORE_README_SCREENSHOTS=1`` (``make screenshots``), replace
``docs/screenshots/`` too, so the README never shows a page as it used to be."""
from __future__ import annotations

import os
import shutil
from datetime import timedelta
from decimal import Decimal

import pytest

from billcore.accounts import find_user
from billcore.db import db
from billcore.models import Payment
from billcore.payments import service
from tests.browser.conftest import REPO_ROOT, log_in
from tests.browser.ui import check_page, new_page, screenshot, set_language
from tests.conftest import ADMIN, CLIENT, add_paymethod

pytestmark = pytest.mark.browser

README_PICTURES = REPO_ROOT / "docs" / "screenshots"


def _age(payment_id: int, days: int) -> None:
    """Move a payment's times ``days`` back, as if it had been made then."""
    with db.engine.begin() as conn:
        table = Payment.__table__
        row = conn.execute(table.select().where(table.c.id == payment_id)).one()
        shift = timedelta(days=days)
        values = {"created_at": row.created_at - shift, "updated_at": row.updated_at - shift}
        if row.paid_at is not None:
            values["paid_at"] = row.paid_at - shift
        conn.execute(table.update().where(table.c.id == payment_id).values(**values))


def _month_of_payments(server) -> int:
    """A month of a client's payments through two methods (paid most days, some cancelled, one fraud
    today); returns the id of today's paid card payment."""
    with server.app_context():
        card = add_paymethod("pmtemplate", {"merchant_id": "m", "secret": "readme-secret", "gateway_url": "",
                                            "test_mode": True}, name="Test card", name_ru="Тестовая карта",
                             commission_amount=Decimal("5.00"))
        robo = add_paymethod("pmrobokassa", {"identifier": "demo", "password1": "Passw0rd-one",
                                             "password2": "Passw0rd-two"}, name="Robokassa", name_ru="Робокасса")
        account_id = find_user(CLIENT[0]).account_id
        for day in range(29, 0, -1):
            if day % 7 == 3:
                continue  # a quiet day
            method = robo if day % 3 == 0 else card
            payment = service.create_payment(account_id, method.id, Decimal(300 + 40 * (day % 9)))
            if day % 5 == 1:
                service.set_cancelled(payment.id, source="test", reason="test")
            else:
                service.set_in_pay(payment.id, source="test")
                service.set_paid(payment.id, amount=payment.total, currency="RUB", source="test")
            _age(payment.id, day)
        fraud = service.create_payment(account_id, robo.id, Decimal("70.00"))
        service.set_fraud(fraud.id, source="test", reason="amount mismatch")
        for method, amount in ((robo, "100.00"), (card, "200.00")):
            today = service.create_payment(account_id, method.id, Decimal(amount))
            service.set_in_pay(today.id, source="test")
            service.set_paid(today.id, amount=today.total, currency="RUB", source="test")
        db.session.remove()
    return today.id


def test_readme_screenshots(live_server, browser, artifacts):
    payment_id = _month_of_payments(live_server)
    pictures = {}
    for who, size in ((ADMIN, (1280, 900)), (CLIENT, (1000, 700))):
        set_language(live_server, who[0], "ru")
        context, page = new_page(browser, size[0], "ru")
        try:
            page.set_viewport_size({"width": size[0], "height": size[1]})
            log_in(page, live_server, *who)
            if who is ADMIN:
                page.goto(f"{live_server.url}/admin/")
                assert page.locator("svg.chart[role=img]").count() == 2
                name = "admin-overview"
            else:
                page.goto(f"{live_server.url}/payments/{payment_id}")
                assert page.inner_text("[data-testid=payment-status]") == "Оплачен"
                name = "customer-payment"
            check_page(page, artifacts, f"{name}-full")
            pictures[name] = artifacts / f"{name}.png"
            screenshot(page, pictures[name], full_page=False)  # the first screen only, as the README shows it
        finally:
            context.close()
    if os.environ.get("BILLCORE_README_SCREENSHOTS") == "1":
        for name, picture in pictures.items():
            shutil.copyfile(picture, README_PICTURES / f"{name}.png")
