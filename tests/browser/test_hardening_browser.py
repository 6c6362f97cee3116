"""The pages the hardening added, in a real browser (CSRF on), at 1366 px and 390 px, in English and
Russian: the checkout reaching Robokassa's payment page by POST through the core's payment door, a link to
a payment's page showing only its Pay button, the login page refusing a guesser (429), a payment needing
the admin's attention, and the admin deactivating a client (whose open session ends)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from billcore.accounts import find_user
from billcore.db import db
from billcore.models import Payment
from billcore.payments import service
from tests.browser.conftest import log_in
from tests.conftest import ADMIN, CLIENT, add_paymethod

pytestmark = pytest.mark.browser

SIZES = {"wide": {"width": 1366, "height": 900}, "narrow": {"width": 390, "height": 844}}
LOCALES = {"en": "en-US", "ru": "ru-RU"}


def _robokassa(server) -> int:
    """A Robokassa method whose payment page is a local URL (the browser never reaches a real gateway)."""
    with server.app_context():
        method = add_paymethod("pmrobokassa", {
            "client": "existing", "identifier": "shop", "password1": "browser-pass-1", "password2": "browser-pass-2",
            "password3": "", "hash_algorithm": "md5", "payment_method": "", "test_mode": True,
            "receipt_enabled": False, "url": f"{server.url}/gateway/Merchant/Index.aspx"}, name="Robokassa")
        method_id = method.id
        db.session.remove()
    return method_id


def _context(browser, size: str, language: str):
    context = browser.new_context(viewport=SIZES[size], locale=LOCALES[language])
    context.set_default_timeout(10_000)
    # the "gateway": answered here, so the redirect form's target is seen without leaving 127.0.0.1
    context.route("**/gateway/**", lambda route: route.fulfill(status=200, content_type="text/html",
                                                                body="<h1>gateway</h1>"))
    return context


def _status(server, payment_id: int) -> str:
    with server.app_context():
        status = db.session.get(Payment, payment_id).status
        db.session.remove()
    return status


def test_checkout_reaches_robokassa_by_post(live_server, browser, artifacts):
    method_id = _robokassa(live_server)
    context = _context(browser, "wide", "en")
    page = context.new_page()
    log_in(page, live_server, *CLIENT)
    page.goto(f"{live_server.url}/payments/new?paymethod={method_id}&amount=150")
    page.click("[data-testid=continue]")
    page.click("[data-testid=confirm-pay]")
    page.wait_for_url("**/gateway/Merchant/Index.aspx")
    with live_server.app_context():
        payment = db.session.query(Payment).order_by(Payment.id.desc()).first()
        payment_id = payment.id
        db.session.remove()
    assert _status(live_server, payment_id) == "inpay"
    context.close()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LOCALES)
def test_a_link_to_a_payment_shows_its_pay_button(live_server, browser, artifacts, size, language):
    """A link (from an e-mail, a bookmark) reaches the payment's page, which changes nothing: only its Pay
    button (a POST with the session's CSRF token) sends the payment to Robokassa. The redirect script
    that links used to reach is gone."""
    method_id = _robokassa(live_server)
    with live_server.app_context():
        payment = service.create_payment(find_user(CLIENT[0]).account_id, method_id, Decimal("250.00"))
        payment_id = payment.id
        db.session.remove()
    context = _context(browser, size, language)
    page = context.new_page()
    log_in(page, live_server, *CLIENT)
    assert page.goto(f"{live_server.url}/mancgi/rkpayment?elid={payment_id}").status == 404
    page.goto(f"{live_server.url}/payments/{payment_id}")
    button = page.locator("[data-testid=pay-again]")
    assert button.inner_text() == {"en": "Pay", "ru": "Оплатить"}[language]
    page.screenshot(path=artifacts / f"pay-button-{size}-{language}.png", full_page=True)
    assert _status(live_server, payment_id) == "new"  # the link changed nothing
    button.click()
    page.wait_for_url("**/gateway/Merchant/Index.aspx")
    assert _status(live_server, payment_id) == "inpay"
    context.close()


@pytest.mark.live_server_config(LOGIN_LIMIT_PER_ACCOUNT="2 per minute")
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LOCALES)
def test_the_login_page_refuses_a_guesser(live_server, browser, artifacts, size, language):
    context = _context(browser, size, language)
    page = context.new_page()
    for _ in range(3):
        log_in(page, live_server, CLIENT[0], "a-wrong-password")
    message = {"en": "Too many failed login attempts", "ru": "Слишком много неудачных попыток входа"}[language]
    assert message in page.inner_text("body")
    page.screenshot(path=artifacts / f"login-429-{size}-{language}.png", full_page=True)
    log_in(page, live_server, *CLIENT)  # the right password waits too
    assert "/login" in page.url
    context.close()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LOCALES)
def test_the_admin_sees_a_payment_needing_attention_and_deactivates_a_client(live_server, browser, artifacts,
                                                                              size, language):
    method_id = _robokassa(live_server)
    with live_server.app_context():
        client = find_user(CLIENT[0])
        account_id = client.account_id
        payment = service.create_payment(account_id, method_id, Decimal("423.74"))
        payment_id = payment.id
        service.set_paid(payment_id, amount=Decimal("423.74"), currency="RUB", source="rkresult")
        service.set_paid(payment_id, amount=Decimal("41.00"), currency="RUB", source="rkresult")
        db.session.remove()
    payer_context = _context(browser, size, language)
    payer = payer_context.new_page()
    log_in(payer, live_server, *CLIENT)
    assert payer.url.endswith("/dashboard")

    context = _context(browser, size, language)
    page = context.new_page()
    log_in(page, live_server, *ADMIN)
    page.goto(f"{live_server.url}/admin/payments/{payment_id}")
    banner = page.inner_text("[data-testid=attention]")
    assert {"en": "Needs attention", "ru": "Требует внимания"}[language] in banner
    page.screenshot(path=artifacts / f"attention-{size}-{language}.png", full_page=True)

    page.goto(f"{live_server.url}/admin/accounts/{account_id}")
    button = {"en": "Deactivate and end all sessions", "ru": "Отключить и завершить все сеансы"}[language]
    page.click(f"button >> text={button}")
    page.wait_for_load_state()
    assert {"en": "deactivated", "ru": "отключён"}[language] in page.inner_text("[data-testid=users]")
    page.screenshot(path=artifacts / f"deactivated-{size}-{language}.png", full_page=True)

    payer.goto(f"{live_server.url}/dashboard")  # the client's open session has ended
    assert "/login" in payer.url
    payer_context.close()
    context.close()
