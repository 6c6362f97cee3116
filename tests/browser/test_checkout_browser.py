"""A client adds funds in a real browser through pmtemplate's fake gateway and sees the balance change;
the return page follows a payment that is still in pay until it settles, without a reload."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from billcore.accounts import find_user
from billcore.db import db
from billcore.models import Payment
from billcore.payments import service
from tests.browser.conftest import add_test_card, log_in
from tests.browser.ui import screenshot
from tests.conftest import ADMIN, CLIENT

pytestmark = pytest.mark.browser

TPL_SETTINGS = {"merchant_id": "shop-1", "secret": "browser-tpl-secret", "gateway_url": "", "test_mode": True}


def _method(server, **fields) -> int:
    return add_test_card(server, TPL_SETTINGS, **fields)


def test_client_adds_funds_through_the_fake_gateway(live_server, browser, page, artifacts):
    method_id = _method(live_server)
    log_in(page, live_server, *CLIENT)
    assert page.inner_text("[data-testid=balance]") == "0.00 RUB"
    screenshot(page, artifacts / "0-dashboard.png")

    page.click("[data-testid=add-funds]")
    # checkout.js listens from DOMContentLoaded on: typing before that would go unseen
    page.wait_for_load_state()
    page.check(f"input[name=paymethod][value='{method_id}']")
    # checkout.js: limits and the live commission as the amount is typed
    page.fill("#amount", "5")
    expect(page.locator("#amount-live-error")).to_contain_text("minimum amount")
    page.fill("#amount", "250.50")
    expect(page.locator("#amount-live-error")).to_be_hidden()
    expect(page.locator("#live-commission")).to_have_text("8.52 RUB")  # 1.00 + 3 % of 250.50 = 8.515 -> 8.52
    expect(page.locator("#live-total-value")).to_have_text("259.02 RUB")
    screenshot(page, artifacts / "1-add-funds.png")

    page.click("[data-testid=continue]")
    assert page.inner_text("[data-testid=confirm-total]") == "259.02 RUB"
    screenshot(page, artifacts / "2-confirm.png")
    page.click("[data-testid=confirm-pay]")

    page.wait_for_url("**/fakegw/pay?**")
    assert "259.02" in page.content()
    screenshot(page, artifacts / "3-gateway.png")
    page.click("button[value=pay]")

    # back in the client area: the return page (or the payment's page), showing the real status
    page.wait_for_url(re.compile(r"/payments/\d+(/return/success)?$"))
    assert page.inner_text("[data-testid=payment-status]") == "Paid"
    screenshot(page, artifacts / "4-payment-paid.png")
    page.goto(f"{live_server.url}/dashboard")
    assert page.inner_text("[data-testid=balance]") == "250.50 RUB"
    screenshot(page, artifacts / "5-dashboard-credited.png")

    # the admin follows the same payment: list, then its history
    admin_context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    try:
        admin = admin_context.new_page()
        log_in(admin, live_server, *ADMIN)
        admin.goto(f"{live_server.url}/admin/payments?status=paid")
        screenshot(admin, artifacts / "6-admin-payments.png")
        admin.click("[data-testid=admin-payments] tbody tr:first-child a")
        assert admin.inner_text("[data-testid=payment-status]") == "Paid"
        kinds = admin.eval_on_selector_all("[data-testid=events] [data-kind]", "cells => cells.map(c => c.dataset.kind)")
        for kind in ("created", "redirect", "notification", "return"):
            assert kind in kinds
        assert TPL_SETTINGS["secret"] not in admin.content()
        screenshot(admin, artifacts / "7-admin-payment.png")
    finally:
        admin_context.close()


def test_return_page_follows_the_status_until_paid(live_server, page, artifacts):
    method_id = _method(live_server)
    with live_server.app_context():
        user = find_user(CLIENT[0])
        payment = service.create_payment(user.account_id, method_id, Decimal("100.00"))
        service.set_in_pay(payment.id, source="test")
        payment_id = payment.id
        db.session.remove()
    log_in(page, live_server, *CLIENT)
    page.goto(f"{live_server.url}/payments/{payment_id}/return/success")
    assert page.is_visible("[data-testid=return-open]")
    assert page.is_hidden("[data-testid=return-paid]")
    screenshot(page, artifacts / "0-waiting.png")
    page.evaluate("window.__marker = 'no reload'")

    with live_server.app_context():  # the gateway's notification arrives while the page is open
        service.set_paid(payment_id, amount=Decimal("104.00"), currency="RUB", source="test")
        assert db.session.get(Payment, payment_id).status == "paid"
        db.session.remove()

    page.wait_for_selector("[data-testid=return-paid]", state="visible", timeout=15_000)
    assert page.is_hidden("[data-testid=return-open]")
    assert page.inner_text("[data-testid=payment-status]") == "Paid"
    assert page.inner_text("[data-balance]") == "100.00 RUB"
    assert page.evaluate("window.__marker") == "no reload"
    assert page.is_hidden("[data-testid=pay-again]")
    screenshot(page, artifacts / "1-paid.png")
