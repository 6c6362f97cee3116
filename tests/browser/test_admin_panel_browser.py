"""The admin's flows at 1366 px and 390 px, in English and Russian: the overview (figures, charts with a
table, links to the filtered list), the payments list (an e-mail filter, totals, paging, CSV), a payment
with a refund confirmed first, an account's balance corrected with a reason, the payment methods and the
wizard's step 2. Every page is audited by axe-core, must fit the viewport and is saved to test-artifacts/."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from billcore.accounts import find_user
from billcore.db import db
from billcore.models import Account
from billcore.payments import service
from billcore.states import Status
from tests.browser.conftest import log_in
from tests.browser.ui import WIDTHS, check_page, new_page, set_language
from tests.conftest import ADMIN, CLIENT, add_paymethod

pytestmark = pytest.mark.browser

NBSP = "\u00a0"
TEXT = {
    "en": {"today": "300.00 RUB", "balance_after": "1 300.00 RUB", "balance_debited": "1 000.00 RUB",
           "overview": "Overview", "balance": "Balance", "password3": "Password #3 is not set"},
    "ru": {"today": f"300,00{NBSP}₽", "balance_after": f"1{NBSP}300,00{NBSP}₽",
           "balance_debited": f"1{NBSP}000,00{NBSP}₽", "overview": "Обзор", "balance": "Баланс",
           "password3": "Пароль №3 не задан"},
}
# the stored codes of the statuses: a badge shows a word instead
STATUS_CODES = {s.value for s in Status}
VIEWS = [(w, lang) for w in WIDTHS for lang in ("en", "ru")]


def _contrast(color: str, background: str) -> float:
    """WCAG's contrast ratio of two opaque CSS colours as getComputedStyle gives them (``rgb(r, g, b)``)."""
    def luminance(css: str) -> float:
        r, g, b = (int(x) / 255 for x in re.findall(r"\d+", css)[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    assert "rgba" not in background or background.endswith(", 1)"), background  # opaque, so the ratio is its own
    light, dark = sorted((luminance(color), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _data(server) -> dict:
    """Two methods, a paid, a cancelled, a fraud and an open payment of the client."""
    with server.app_context():
        card = add_paymethod("pmtemplate", {"merchant_id": "m", "secret": "admin-browser-secret", "gateway_url": "",
                                            "test_mode": True}, name="Test card", name_ru="Тестовая карта",
                             commission_percent=Decimal("2.5"), allow_refund=False)
        robo = add_paymethod("pmrobokassa", {"identifier": "demo", "password1": "Passw0rd-one",
                                             "password2": "Passw0rd-two"}, name="Robokassa", name_ru="Робокасса",
                             allow_refund=True)
        account_id = find_user(CLIENT[0]).account_id
        ids = {}
        for name, method, amount in (("paid", card, "200.00"), ("paid2", robo, "100.00"), ("cancelled", card, "50.00"),
                                     ("fraud", robo, "70.00"), ("open", card, "30.00")):
            p = service.create_payment(account_id, method.id, Decimal(amount))
            ids[name] = p.id
            if name.startswith("paid"):
                service.set_in_pay(p.id, source="test")
                service.set_paid(p.id, amount=p.total, currency="RUB", source="test")
            elif name == "cancelled":
                service.set_cancelled(p.id, source="test", reason="test")
            elif name == "fraud":
                service.set_fraud(p.id, source="test", reason="amount mismatch")
            else:
                service.set_in_pay(p.id, source="test")
        ids.update(account=account_id, card=card.id, robo=robo.id)
        db.session.remove()
    return ids


def _adjust_balance(page, amount: str, reason: str) -> None:
    """Submit the account page's balance correction (the direction chosen beforehand) and confirm it."""
    page.fill("#adjust-amount", amount)
    page.fill("#adjust-reason", reason)
    page.once("dialog", lambda d: d.accept())
    page.click("[data-testid=adjust-submit]")
    page.wait_for_selector(".flash-success")


@pytest.mark.parametrize("width,lang", VIEWS)
def test_admin_panel(live_server, browser, artifacts, width, lang):
    text = TEXT[lang]
    ids = _data(live_server)
    set_language(live_server, ADMIN[0], lang)
    context, page = new_page(browser, WIDTHS[width], lang)
    try:
        log_in(page, live_server, *ADMIN)
        page.goto(f"{live_server.url}/admin/")
        assert page.locator("nav.nav a[aria-current=page]").get_attribute("href") == "/admin/"
        assert page.inner_text("[data-testid=money-today] strong") == text["today"]
        assert page.inner_text("[data-testid=attention-fraud] strong") == "1"
        assert page.locator("svg.chart[role=img]").count() == 2
        page.click("[data-testid=chart-status] summary")  # the table alternative
        assert page.locator("[data-testid=table-status] tbody tr").count() == 30
        check_page(page, artifacts, "0-overview")
        # the icon: linked from every page, and /favicon.ico (which browsers ask for anyway) is no 404
        for href in (page.get_attribute("link[rel=icon]", "href"), "/favicon.ico"):
            answer = page.request.get(live_server.url + href)
            assert answer.ok and answer.headers["content-type"].startswith("image/svg+xml"), (href, answer.status)
        page.click("[data-testid=attention-fraud]")
        page.wait_for_url(re.compile(r"status=fraud"))
        expect(page.locator("[data-testid=admin-payments] tbody tr")).to_have_count(1)

        # the list: an e-mail in the account filter finds the client's payments; totals for the whole set
        page.goto(f"{live_server.url}/admin/payments")
        page.fill("#f-account", CLIENT[0].split("@")[0])
        page.click("[data-testid=filters] button[type=submit]")
        page.wait_for_url(re.compile(r"account_id="))
        expect(page.locator("[data-testid=admin-payments] tbody tr")).to_have_count(5)
        assert page.input_value("#f-account") == CLIENT[0].split("@")[0]
        expect(page.locator("[data-testid=totals]")).to_be_visible()
        # states as words on the badges, never the stored codes
        badges = page.locator("[data-testid=admin-payments] tbody .status").all_inner_texts()
        assert len(badges) == 5 and not {b.strip() for b in badges} & STATUS_CODES, badges
        # every badge's text against its own background: at least 4.5:1 (WCAG AA), whatever axe leaves unsure
        for label, color, background in page.eval_on_selector_all(
                "[data-testid=admin-payments] tbody .status",
                "els => els.map(e => [e.textContent.trim(), getComputedStyle(e).color,"
                " getComputedStyle(e).backgroundColor])"):
            assert _contrast(color, background) >= 4.5, (label, color, background)
        check_page(page, artifacts, "1-payments")
        # paging: two to a page, then next, next, previous and back to the first page
        live_server.app.config["ADMIN_PAGE_SIZE"] = 2
        try:
            page.reload()
            seen = [page.locator("[data-testid=admin-payments] tbody tr").count()]
            assert page.locator("[data-testid=page-first], [data-testid=page-previous]").count() == 0
            for _ in range(2):
                page.click("[data-testid=page-next]")
                page.wait_for_load_state()
                seen.append(page.locator("[data-testid=admin-payments] tbody tr").count())
            assert seen == [2, 2, 1] and page.locator("[data-testid=page-next]").count() == 0
            check_page(page, artifacts, "1-payments-last-page")
            page.click("[data-testid=page-previous]")
            page.wait_for_load_state()
            expect(page.locator("[data-testid=admin-payments] tbody tr")).to_have_count(2)
            page.click("[data-testid=page-first]")
            page.wait_for_load_state()
            assert page.locator("[data-testid=page-first]").count() == 0
            assert page.input_value("#f-account") == CLIENT[0].split("@")[0]  # the filter is kept
        finally:
            live_server.app.config["ADMIN_PAGE_SIZE"] = 50
        with page.expect_download() as download:
            page.click("[data-testid=export-csv]")
        assert download.value.suggested_filename.startswith("payments-")
        page.fill("#f-amin", "abc")
        page.click("[data-testid=filters] button[type=submit]")
        expect(page.locator("[data-testid=filter-error]")).to_be_visible()
        assert page.locator("[data-testid=admin-payments]").count() == 0  # never everything
        check_page(page, artifacts, "2-payments-refused-filter")

        # a payment: the refund asks first, with the amount and the account
        page.goto(f"{live_server.url}/admin/payments/{ids['paid2']}")
        check_page(page, artifacts, "3-payment")
        page.fill("#amount", "40")
        page.click("[data-testid=refund]")
        # the click posts the form: wait for the confirmation page (is_visible would look only once)
        expect(page.locator("[data-testid=refund-confirm]")).to_be_visible()
        assert f"#{ids['account']}" in page.inner_text("[data-testid=refund-confirm]")
        check_page(page, artifacts, "4-refund-confirm")

        # the account: a credit with its reason
        page.goto(f"{live_server.url}/admin/accounts/{ids['account']}")
        _adjust_balance(page, "1000", "Bank transfer 17")
        assert page.inner_text("[data-testid=balance]") == text["balance_after"]
        assert "Bank transfer 17" in page.inner_text("[data-testid=ledger]")
        # the balance is labelled, not a bare figure
        assert page.inner_text("section:has([data-testid=balance]) h2") == text["balance"]
        # and a debit, with its own reason
        page.check("input[name=direction][value=debit]")
        _adjust_balance(page, "300", "Domain renewal")
        assert page.inner_text("[data-testid=balance]") == text["balance_debited"]
        assert "Domain renewal" in page.inner_text("[data-testid=ledger]")
        check_page(page, artifacts, "5-account")
        with live_server.app_context():
            assert db.session.get(Account, ids["account"]).balance == Decimal("1000.00")
            db.session.remove()
        page.goto(f"{live_server.url}/admin/accounts")
        check_page(page, artifacts, "6-accounts")

        # payment methods: the list, a method's page, the wizard's step 2 with every error at once
        page.goto(f"{live_server.url}/admin/paymethods")
        check_page(page, artifacts, "7-methods")
        page.goto(f"{live_server.url}/admin/paymethods/{ids['robo']}")
        # one warning per problem (plain http among them, once), refunds allowed without Password #3 among them
        warnings = [w.strip() for w in page.locator(".warning[role=alert]").all_inner_texts()]
        assert warnings and len(warnings) == len(set(warnings)), warnings
        assert sum("http" in w for w in warnings) == 1, warnings
        assert any(text["password3"] in w for w in warnings), warnings
        check_page(page, artifacts, "8-method")
        page.goto(f"{live_server.url}/admin/paymethods/new")
        page.click(".module-card[data-module=pmrobokassa] button[name=module]")
        page.wait_for_url("**/integration")
        page.wait_for_load_state()
        assert page.is_hidden("#receipt_tax")  # receipts are off
        page.check("#receipt_enabled")
        assert page.is_visible("#receipt_tax")
        page.uncheck("#receipt_enabled")
        page.click("button[value=next]")
        # identifier and both passwords together (waited for: the click posts the form)
        expect(page.locator(".has-error").nth(2)).to_be_visible()
        check_page(page, artifacts, "9-wizard-step2")
        page.goto(f"{live_server.url}/admin/recurring")
        check_page(page, artifacts, "10-auto-payments")
    finally:
        context.close()
