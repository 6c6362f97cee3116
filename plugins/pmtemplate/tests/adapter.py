"""pmtemplate's conformance adapter: how billcore's conformance suite talks to this module.

It signs notifications the way the fake gateway does (the module's signing recipe is the gateway's
protocol); it takes nothing else from the module: the answer the gateway must hear is the one the module
declares in its ModuleInfo, checked by the suite against the real HTTP answer.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from billcore.testing.conformance import ConformanceAdapter, Notification

from pmtemplate.signing import signed

KEY = "pmtemplate"
NOTIFICATION_PATH = "/mancgi/tplresult"
SECRET = "conformance-secret-1"


class TemplateAdapter(ConformanceAdapter):
    """Valid and invalid settings, two other merchants, and notifications signed as the gateway signs them."""

    module = KEY
    currency = "RUB"
    amount = "100.00"

    def valid_settings(self) -> dict[str, Any]:
        """Settings the admin would enter."""
        return {"merchant_id": "shop-1", "secret": SECRET, "gateway_url": "", "test_mode": True}

    def invalid_settings(self) -> list[dict[str, Any]]:
        """A missing merchant, a short secret, no secret, a bad gateway URL, a malformed merchant id."""
        good = self.valid_settings()
        return [{**good, "merchant_id": ""}, {**good, "secret": "short"}, {**good, "secret": ""},
                {**good, "gateway_url": "ftp://gateway.example.com"}, {**good, "merchant_id": "bad id!"}]

    def other_merchant_settings(self) -> list[dict[str, Any]]:
        """Shop 2 with its own secret, and shop 3 sharing shop 1's secret (the notification names the
        merchant, so only the merchant check tells shop 3's notifications from shop 1's)."""
        good = self.valid_settings()
        return [{**good, "merchant_id": "shop-2", "secret": "other-merchant-secret-2"},
                {**good, "merchant_id": "shop-3"}]

    def _params(self, payment, settings, amount: Decimal | None = None) -> dict[str, str]:
        value = payment.total if amount is None else amount
        return {"merchant_id": str(settings["merchant_id"]), "payment_id": str(payment.id),
                "op_id": f"op-conformance-{payment.id}", "amount": f"{value:.2f}", "currency": payment.currency,
                "state": "paid", "test": "1"}

    def genuine_notification(self, payment, settings, amount: Decimal | None = None) -> Notification:
        """Signed with the merchant's shared secret."""
        return Notification(NOTIFICATION_PATH, data=signed(self._params(payment, settings, amount), settings["secret"]))

    def forged_notification(self, payment, settings) -> Notification:
        """Signed with another secret."""
        return Notification(NOTIFICATION_PATH, data=signed(self._params(payment, settings), "not-the-secret-1"))

    def unsigned_notification(self, payment, settings) -> Notification:
        """No signature at all."""
        return Notification(NOTIFICATION_PATH, data=self._params(payment, settings))
