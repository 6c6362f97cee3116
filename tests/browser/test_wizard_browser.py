"""The add wizard walked in a real browser as an admin would, with a screenshot of every step."""
from __future__ import annotations

import pytest

from billcore.models import PaymentMethod, PaymethodDraft
from billcore.paymethods import full_settings
from tests.browser.conftest import log_in
from tests.browser.ui import screenshot
from tests.conftest import ADMIN

pytestmark = pytest.mark.browser

SECRET = "browser-secret-9f3k"


def _press(page, value: str) -> None:
    """Press the wizard's Next or Back and wait until the next step has loaded: a checkbox ticked while the
    step's stylesheet was still on its way was once clicked where the unstyled page had put it, and the
    click missed it."""
    page.click(f"button[value={value}]")
    page.wait_for_load_state()


@pytest.mark.live_server_config(EXTRA_MODULES={"pmfake": "tests.fake_module"})
def test_admin_adds_a_payment_method_through_the_wizard(live_server, page, artifacts):
    log_in(page, live_server, *ADMIN)
    page.goto(f"{live_server.url}/admin/paymethods")
    screenshot(page, artifacts / "0-list-empty.png")
    page.click("text=Add a payment method")

    # Step 1: one card per module; choose the fake gateway.
    card = page.locator(".module-card[data-module=pmfake]")
    assert "Refunds" in card.inner_text() and "Bank cards" in card.inner_text()
    screenshot(page, artifacts / "1-module.png")
    card.locator("button[name=module]").click()

    # Step 2: a module error shown next to its field, the secret not sent back.
    page.fill("#shop_id", "bad-shop")
    page.fill("#secret", SECRET)
    page.select_option("#hash_algorithm", "md5")
    _press(page, "next")
    assert "The gateway does not know this shop." in page.inner_text(".has-error")
    assert page.input_value("#secret") == ""
    assert SECRET not in page.content()
    screenshot(page, artifacts / "2-integration-error.png")
    page.fill("#shop_id", "shop-42")
    page.check("#test_mode")
    screenshot(page, artifacts / "2-integration.png")
    _press(page, "next")  # the secret is kept in the draft: blank means keep

    # Step 3: Back keeps step 2's values, Next returns here.
    assert page.locator("#name").is_visible()
    page.fill("#name", "Cards")
    _press(page, "back")
    assert page.input_value("#shop_id") == "shop-42"
    assert page.is_checked("#test_mode")
    _press(page, "next")
    assert page.input_value("#name") == "Cards"
    page.fill("#name_ru", "Карты")
    page.select_option("#currency", "RUB")
    page.fill("#min_amount", "10.001")
    _press(page, "next")
    assert "at most 2 decimals" in page.inner_text(".has-error")
    screenshot(page, artifacts / "3-settings-error.png")
    page.fill("#min_amount", "10")
    page.fill("#commission_percent", "2.5")
    screenshot(page, artifacts / "3-settings.png")
    _press(page, "next")

    # The method's page: gateway-side instructions with copy buttons and the module's warning.
    setup = page.locator("#gateway-setup")
    setup.wait_for()
    assert page.locator(f"button[data-copy='{live_server.url}/mancgi/pmfake/result']").count() == 1
    assert "Test mode is on" in setup.inner_text()
    assert "plain http" in setup.inner_text()  # the core's own warning about this installation
    page.locator(f"button[data-copy='{live_server.url}/mancgi/pmfake/result']").click()
    screenshot(page, artifacts / "4-created.png")
    assert SECRET not in page.content()
    assert all(SECRET not in c["value"] for c in page.context.cookies())

    with live_server.app_context():
        method = PaymentMethod.query.one()
        assert (method.name, method.name_ru, method.currency, str(method.min_amount)) == ("Cards", "Карты", "RUB", "10.00")
        assert full_settings(method)["secret"] == SECRET
        assert PaymethodDraft.query.count() == 0

    page.goto(f"{live_server.url}/admin/paymethods")
    assert "Cards" in page.inner_text("#paymethods")
    screenshot(page, artifacts / "5-list.png")

    # The same pages in Russian, switched with the header's language button.
    page.click("header button:has-text('Русский')")
    page.wait_for_load_state()
    assert page.get_attribute("html", "lang") == "ru"
    assert "Карты" in page.inner_text("#paymethods")
    screenshot(page, artifacts / "6-list-ru.png")
    page.goto(f"{live_server.url}/admin/paymethods/new")
    assert page.get_attribute("html", "lang") == "ru"
    screenshot(page, artifacts / "7-module-ru.png")
