"""The admin's API token and webhook pages in the browser (CSRF on), English and Russian, wide and narrow."""
from __future__ import annotations

from decimal import Decimal

from billcore import webhooks
from billcore.db import db
from billcore.models import Account
from billcore.payments.adjustments import adjust_balance
from billcore.testing.fixtures import ADMIN
from tests.browser.conftest import log_in
from tests.browser.ui import screenshot


def test_admin_makes_a_token_and_an_endpoint_and_sees_deliveries(live_server, browser, artifacts):
    for language in ("en", "ru"):
        for width in (1366, 390):
            context = browser.new_context(viewport={"width": width, "height": 900}, locale="en-US")
            try:
                page = context.new_page()
                log_in(page, live_server, *ADMIN)
                if language == "ru" and page.locator("text=Русский").count():  # kept on the user once chosen
                    page.click("text=Русский")
                    page.wait_for_load_state()
                tag = f"{language}-{width}"
                page.goto(f"{live_server.url}/admin/api-tokens")
                page.fill("input[name=name]", f"Panel {tag}")
                page.check("input[name=scopes][value=write]")
                page.click("[data-testid=create-token]")
                token = page.inner_text("[data-testid=new-token] code")
                assert token.startswith("bc_")
                screenshot(page, artifacts / f"tokens-{tag}.png")
                page.goto(f"{live_server.url}/admin/api-tokens")
                assert token not in page.content()  # shown once
                page.goto(f"{live_server.url}/admin/webhooks")
                page.fill("input[name=url]", f"http://127.0.0.1:9/{tag}")
                page.click("[data-testid=create-endpoint]")
                assert page.inner_text("[data-testid=new-secret] code").startswith("whsec_")
                screenshot(page, artifacts / f"webhooks-{tag}.png")
                with live_server.app_context():
                    account = Account(name="Customer", currency="RUB", balance=Decimal("0"))
                    db.session.add(account)
                    db.session.commit()
                    adjust_balance(account.id, Decimal("5.00"), reason="bonus", source="browser test")
                    webhooks.deliver()  # 127.0.0.1 is not allowed here: the delivery waits with the reason
                    db.session.remove()
                page.goto(f"{live_server.url}/admin/webhooks")
                page.click(f"text=http://127.0.0.1:9/{tag}")
                assert "not a public address" in page.inner_text("[data-testid=deliveries]")
                screenshot(page, artifacts / f"deliveries-{tag}.png")
                if language == "ru":
                    assert "Отправить снова" in page.content()
            finally:
                context.close()
