"""The customer's flows at 1366 px and 390 px, in English and Russian: the dashboard, adding funds (errors
cleared as typed, the method preselected, automatic top-up offered), a cancel at the gateway, a second
confirmation of the same page, the waiting page, the payments list as cards on a phone. Every page is
audited by axe-core, must fit the viewport and is saved to test-artifacts/."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from billcore.accounts import find_user
from billcore.db import db
from billcore.models import Payment
from billcore.payments import service
from tests.browser.conftest import add_test_card, log_in
from tests.browser.ui import WIDTHS, check_page, new_page, set_language
from tests.conftest import CLIENT

pytestmark = pytest.mark.browser

TPL_SETTINGS = {"merchant_id": "shop-1", "secret": "panel-tpl-secret", "gateway_url": "", "test_mode": True}
NBSP = "\u00a0"
# what the pages say, per language
TEXT = {
    "en": {"zero": "0.00 RUB", "commission": "8.52 RUB", "total": "259.02 RUB", "balance": "250.50 RUB",
           "cancelled": "You cancelled the payment; nothing was charged.", "waiting": "Awaiting payment",
           "paid": "Paid", "min": "minimum amount"},
    "ru": {"zero": f"0,00{NBSP}₽", "commission": f"8,52{NBSP}₽", "total": f"259,02{NBSP}₽",
           "balance": f"250,50{NBSP}₽", "cancelled": "Вы отменили платёж, деньги не списаны.",
           "waiting": "Ожидает оплаты", "paid": "Оплачен", "min": "Минимальная сумма"},
}
VIEWS = [(w, lang) for w in WIDTHS for lang in ("en", "ru")]


def _method(server, **fields) -> int:
    return add_test_card(server, TPL_SETTINGS, **fields)


def _payments(server) -> list[tuple[int, str]]:
    with server.app_context():
        rows = db.session.execute(select(Payment.id, Payment.status).order_by(Payment.id)).all()
        db.session.remove()
    return [tuple(r) for r in rows]


def _menu(page, width: int) -> None:
    """On a phone the menu hides behind its button; on a desktop the button is not there."""
    toggle = page.locator("[data-testid=menu-toggle]")
    if WIDTHS[width] < 640:
        assert toggle.is_visible() and page.locator("nav.nav").is_hidden()
        toggle.click()
        assert page.locator("nav.nav").is_visible() and toggle.get_attribute("aria-expanded") == "true"
        toggle.click()
    else:
        assert toggle.is_hidden() and page.locator("nav.nav").is_visible()


@pytest.mark.parametrize("width,lang", VIEWS)
def test_customer_adds_funds(live_server, browser, artifacts, width, lang):
    text = TEXT[lang]
    method_id = _method(live_server)
    set_language(live_server, CLIENT[0], lang)
    context, page = new_page(browser, WIDTHS[width], lang)
    try:
        page.goto(f"{live_server.url}/login")
        check_page(page, artifacts, "0-login")
        log_in(page, live_server, *CLIENT)
        assert page.inner_text("[data-testid=balance]") == text["zero"]
        # the menu marks the current page
        assert page.locator("nav.nav a[aria-current=page]").get_attribute("href") == "/dashboard"
        _menu(page, width)
        check_page(page, artifacts, "0-dashboard")

        page.goto(f"{live_server.url}/payments/new")
        # the only method is chosen already
        assert page.is_checked(f"input[name=paymethod][value='{method_id}']")
        assert page.locator("nav.nav a[aria-current=page]").get_attribute("href") == "/payments/new"
        # an empty amount: the server's error, gone as soon as the field is edited
        page.click("[data-testid=continue]")
        expect(page.locator("[data-testid=amount-error]")).to_be_visible()
        check_page(page, artifacts, "1-add-funds-error")
        page.fill("#amount", "5")
        assert page.locator("[data-testid=amount-error]").count() == 0
        assert text["min"] in page.inner_text("#amount-live-error")
        page.fill("#amount", "250.50")
        assert page.is_hidden("#amount-live-error")
        assert page.inner_text("#live-commission") == text["commission"]
        assert page.inner_text("#live-total-value") == text["total"]
        check_page(page, artifacts, "2-add-funds")

        page.click("[data-testid=continue]")
        assert page.inner_text("[data-testid=confirm-total]") == text["total"]
        check_page(page, artifacts, "3-confirm")
        confirm_form = page.eval_on_selector("form[action='/payments/new']", "f => f.outerHTML")
        page.click("[data-testid=confirm-pay]")

        # at the gateway the customer presses "Fail" (cancels): plain words, two ways on
        page.wait_for_url("**/fakegw/pay?**")
        page.click("button[value=fail]")
        page.wait_for_selector("[data-testid=return-failed]")
        assert text["cancelled"] in page.inner_text("[data-testid=return-failed]")
        assert page.is_visible("[data-testid=try-again]") and page.is_visible("[data-testid=another-method]")
        assert page.locator("[data-testid=pay-again], [data-testid=cancel-payment]").count() == 0
        check_page(page, artifacts, "4-cancelled-at-gateway")
        [(payment_id, status)] = _payments(live_server)

        # the same confirmation sent again (Back from the gateway): the same payment, not a second one
        page.goto(f"{live_server.url}/dashboard")
        page.evaluate("html => { const d = document.createElement('div'); d.innerHTML = html;"
                      " document.body.appendChild(d); d.querySelector('form').submit(); }", confirm_form)
        page.wait_for_url(re.compile(rf"/payments/{payment_id}$"))
        assert [p for p, _ in _payments(live_server)] == [payment_id]

        # try again from the return page, and pay this time
        page.goto(f"{live_server.url}/payments/{payment_id}/return/fail")
        page.click("[data-testid=try-again]")
        page.wait_for_url("**/fakegw/pay?**")
        page.click("button[value=pay]")
        page.wait_for_url(re.compile(r"/payments/\d+(/return/success)?$"))
        assert page.inner_text("[data-testid=payment-status]") == text["paid"]
        check_page(page, artifacts, "5-paid")
        assert _payments(live_server) == [(payment_id, "paid")]

        page.goto(f"{live_server.url}/dashboard")
        assert page.inner_text("[data-testid=balance]") == text["balance"]
        page.goto(f"{live_server.url}/payments")
        if WIDTHS[width] < 640:  # the table is a stack of cards: no header row, each cell labelled
            assert page.locator("[data-testid=payments] thead").is_hidden()
            assert page.eval_on_selector("[data-testid=payments] td.date", "td => getComputedStyle(td, '::before').content") \
                != "none"
        check_page(page, artifacts, "6-payments")
        page.goto(f"{live_server.url}/payments/{payment_id}")
        check_page(page, artifacts, "7-payment")
        page.goto(f"{live_server.url}/settings")
        check_page(page, artifacts, "8-settings")
        page.goto(f"{live_server.url}/recurring")
        check_page(page, artifacts, "9-auto-payments")
        page.goto(f"{live_server.url}/payments/999999")
        check_page(page, artifacts, "10-not-found")
    finally:
        context.close()


@pytest.mark.live_server_config(RETURN_WAIT_NOTICE_SECONDS=1, SUPPORT_CONTACT="support@example.net")
@pytest.mark.parametrize("width,lang", VIEWS)
def test_waiting_for_the_gateway(live_server, browser, artifacts, width, lang):
    method_id = _method(live_server, recurring=True)
    set_language(live_server, CLIENT[0], lang)
    with live_server.app_context():
        user = find_user(CLIENT[0])
        payment = service.create_payment(user.account_id, method_id, Decimal("100.00"))
        service.set_in_pay(payment.id, source="test")
        payment_id = payment.id
        db.session.remove()
    context, page = new_page(browser, WIDTHS[width], lang)
    try:
        log_in(page, live_server, *CLIENT)
        page.goto(f"{live_server.url}/payments/{payment_id}/return/success")
        # progress, never Pay or Cancel next to "we are waiting"
        assert page.is_visible("[data-testid=return-open] .spinner")
        assert page.locator("[data-testid=pay-again], [data-testid=cancel-payment]").count() == 0
        assert page.inner_text("[data-testid=payment-status]") == TEXT[lang]["waiting"]
        first = page.inner_text("[data-testid=elapsed]")
        page.wait_for_function("t => document.querySelector('[data-testid=elapsed]').textContent !== t", arg=first)
        # after the configured time: what happens next and how to reach support
        page.wait_for_selector("[data-testid=return-slow]", state="visible", timeout=6_000)
        assert "support@example.net" in page.inner_text("[data-testid=return-slow]")
        check_page(page, artifacts, "0-waiting")

        # the payment's own page: Cancel asks first (dismissed: nothing changes)
        page.goto(f"{live_server.url}/payments/{payment_id}")
        asked = []
        page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
        page.click("[data-testid=cancel-payment]")
        assert asked and f"{payment_id}" in asked[0]
        assert _payments(live_server) == [(payment_id, "inpay")]
        check_page(page, artifacts, "1-payment-awaiting")

        # add funds offers automatic top-up for a method that can do it
        page.goto(f"{live_server.url}/payments/new")
        assert page.is_checked(f"input[name=paymethod][value='{method_id}']")  # the last one used
        assert page.is_visible("[data-testid=autopay-offer]")
    finally:
        context.close()

    with live_server.app_context():  # nothing above created a payment
        assert db.session.scalar(select(func.count()).select_from(Payment)) == 1
        db.session.remove()
