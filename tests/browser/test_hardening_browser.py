"""The pages the hardening added, in a real browser (CSRF on), at 1366 px and 390 px, in English and
Russian: the checkout reaching the gateway through billcore's payment door by an auto-submitted POST, the
payment page's Pay button (the only other way a payment is started: a link starts nothing), the login
page refusing a guesser (429), a payment needing the admin's attention, and the admin deactivating a
client (whose open session ends). The door's own pages (the payment page with its Pay form, a refusal, the
auto-submitting page) are audited by axe-core and must fit the viewport.

The payment module is the tests' fake one (``tests/fake_checkout_module.py``): its "gateway" is answered
by the browser context itself, so the browser never leaves 127.0.0.1.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from billcore.accounts import find_user
from billcore.db import db
from billcore.models import Payment
from billcore.payments import service
from tests import fake_checkout_module as fake
from tests.browser.conftest import log_in
from tests.browser.ui import WIDTHS, check_page, new_page, screenshot, set_language
from tests.conftest import ADMIN, CLIENT, add_paymethod

pytestmark = [pytest.mark.browser,
              pytest.mark.live_server_config(EXTRA_MODULES={fake.KEY: "tests.fake_checkout_module"})]

SIZES = {"wide": {"width": 1366, "height": 900}, "narrow": {"width": 390, "height": 844}}
LOCALES = {"en": "en-US", "ru": "ru-RU"}


@pytest.fixture(autouse=True)
def _fresh_fake():
    """The fake module answers with a POST form to its gateway unless a test asks otherwise."""
    fake.reset()
    fake.MODE["start"] = "post"
    yield
    fake.reset()


def _card(server) -> int:
    """A method of the fake module (its secret never reaches a page)."""
    with server.app_context():
        method = add_paymethod(fake.KEY, {"secret": "browser-s3cr3t"}, name="Card")
        method_id = method.id
        db.session.remove()
    return method_id


def _context(browser, size: str, language: str):
    context = browser.new_context(viewport=SIZES[size], locale=LOCALES[language])
    context.set_default_timeout(10_000)
    # the "gateway": answered here, so the form's target is seen without leaving 127.0.0.1
    context.route(f"{fake.GATEWAY}/**", lambda route: route.fulfill(status=200, content_type="text/html",
                                                                   body="<h1>gateway</h1>"))
    return context


def _status(server, payment_id: int) -> str:
    with server.app_context():
        status = db.session.get(Payment, payment_id).status
        db.session.remove()
    return status


def test_checkout_reaches_the_gateway_by_an_auto_submitted_post(live_server, browser, artifacts):
    method_id = _card(live_server)
    context = _context(browser, "wide", "en")
    page = context.new_page()
    posted = []
    page.on("request", lambda request: posted.append((request.method, request.url, request.post_data))
            if request.url.startswith(fake.GATEWAY) else None)
    log_in(page, live_server, *CLIENT)
    page.goto(f"{live_server.url}/payments/new?paymethod={method_id}&amount=150")
    page.click("[data-testid=continue]")
    page.click("[data-testid=confirm-pay]")
    page.wait_for_url(f"{fake.GATEWAY}/form")
    with live_server.app_context():
        payment = db.session.query(Payment).order_by(Payment.id.desc()).first()
        payment_id = payment.id
        db.session.remove()
    assert _status(live_server, payment_id) == "inpay"
    (method, url, body) = posted[-1]
    assert (method, url) == ("POST", f"{fake.GATEWAY}/form")
    assert f"order={payment_id}" in body and "csrf_token" not in body  # the session's token stays here
    context.close()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LOCALES)
def test_the_pay_button_starts_a_payment_and_a_page_view_changes_nothing(live_server, browser, artifacts, size,
                                                                          language):
    fake.MODE["start"] = "get"
    method_id = _card(live_server)
    with live_server.app_context():
        payment = service.create_payment(find_user(CLIENT[0]).account_id, method_id, Decimal("250.00"))
        payment_id = payment.id
        db.session.remove()
    context = _context(browser, size, language)
    page = context.new_page()
    log_in(page, live_server, *CLIENT)
    page.goto(f"{live_server.url}/payments/{payment_id}")
    screenshot(page, artifacts / f"pay-{size}-{language}.png")
    assert _status(live_server, payment_id) == "new"  # opening the page changed nothing
    page.click("[data-testid=pay-again]")
    page.wait_for_url(f"{fake.GATEWAY}/pay?order={payment_id}")
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
    screenshot(page, artifacts / f"login-429-{size}-{language}.png")
    log_in(page, live_server, *CLIENT)  # the right password waits too
    assert "/login" in page.url
    context.close()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LOCALES)
def test_the_admin_sees_a_payment_needing_attention_and_deactivates_a_client(live_server, browser, artifacts,
                                                                              size, language):
    method_id = _card(live_server)
    with live_server.app_context():
        client = find_user(CLIENT[0])
        account_id = client.account_id
        payment = service.create_payment(account_id, method_id, Decimal("423.74"))
        payment_id = payment.id
        service.set_paid(payment_id, amount=Decimal("423.74"), currency="RUB", source="notification")
        service.set_paid(payment_id, amount=Decimal("41.00"), currency="RUB", source="notification")
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
    screenshot(page, artifacts / f"attention-{size}-{language}.png")

    page.goto(f"{live_server.url}/admin/accounts/{account_id}")
    button = {"en": "Deactivate and end all sessions", "ru": "Отключить и завершить все сеансы"}[language]
    page.click(f"button >> text={button}")
    page.wait_for_load_state()
    assert {"en": "deactivated", "ru": "отключён"}[language] in page.inner_text("[data-testid=users]")
    screenshot(page, artifacts / f"deactivated-{size}-{language}.png")

    payer.goto(f"{live_server.url}/dashboard")  # the client's open session has ended
    assert "/login" in payer.url
    payer_context.close()
    context.close()


# what the payment door's pages say, per language
DOOR_TEXT = {
    "en": {"going": "Going to the payment system", "continue": "Continue to payment",
           "unavailable": "The payment system is not available at the moment. Please try again later."},
    "ru": {"going": "Переход в платёжную систему", "continue": "Перейти к оплате",
           "unavailable": "Платёжная система сейчас недоступна. Попробуйте позже."},
}
# Holds back the auto-submission (form.submit() from billcore.js) so the page that makes it can be audited;
# a click on its button still submits the form, as it does for a customer without script.
HOLD_AUTOSUBMIT = ("window.__held = []; HTMLFormElement.prototype.submit = function () {"
                   " window.__held.push(this.getAttribute('action')); };")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", LOCALES)
def test_the_payment_door_s_pages_pass_the_audit(live_server, browser, artifacts, size, language):
    """The payment page with its Pay form, the door's refusal on it and the auto-submitting page that posts
    to the gateway: audited by axe-core, no wider than the viewport, in the customer's language."""
    text = DOOR_TEXT[language]
    method_id = _card(live_server)
    set_language(live_server, CLIENT[0], language)
    with live_server.app_context():
        payment = service.create_payment(find_user(CLIENT[0]).account_id, method_id, Decimal("250.00"))
        payment_id = payment.id
        db.session.remove()
    context, page = new_page(browser, WIDTHS["desktop" if size == "wide" else "phone"], language)
    try:
        context.route(f"{fake.GATEWAY}/**", lambda route: route.fulfill(status=200, content_type="text/html",
                                                                       body="<h1>gateway</h1>"))
        context.add_init_script(HOLD_AUTOSUBMIT)
        log_in(page, live_server, *CLIENT)
        page.goto(f"{live_server.url}/payments/{payment_id}")
        assert page.is_visible("[data-testid=pay-again]")
        check_page(page, artifacts, "0-payment-with-pay")

        # the module fails: back on the payment's page with the door's message, nothing started
        fake.MODE["start"] = "error"
        page.click("[data-testid=pay-again]")
        page.wait_for_url(f"{live_server.url}/payments/{payment_id}")
        assert text["unavailable"] in page.inner_text("body")
        assert _status(live_server, payment_id) == "new"
        check_page(page, artifacts, "1-door-refused")

        # the gateway wants a POST: the auto-submitting page, held here for the audit
        fake.MODE["start"] = "post"
        page.click("[data-testid=pay-again]")
        page.wait_for_selector("form[data-autosubmit]")
        assert page.inner_text("h1") == text["going"]
        # it does try to go on its own (billcore.js runs once the page is parsed: wait for that, not a time)
        page.wait_for_function("window.__held && window.__held.length > 0")
        assert page.evaluate("window.__held") == [f"{fake.GATEWAY}/form"]
        assert _status(live_server, payment_id) == "inpay"
        check_page(page, artifacts, "2-redirect")
        page.click(f"form[data-autosubmit] button >> text={text['continue']}")
        page.wait_for_url(f"{fake.GATEWAY}/form")
    finally:
        context.close()
