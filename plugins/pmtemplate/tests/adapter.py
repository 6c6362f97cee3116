"""pmtemplate's conformance adapter: how billcore's conformance suite talks to this module."""
from __future__ import annotations

from typing import Any

from billcore.testing.conformance import ConformanceAdapter, Notification

from pmtemplate.notification import SUCCESS_ANSWER
from pmtemplate.signing import signed

KEY = "pmtemplate"


class TemplateAdapter(ConformanceAdapter):
    """Valid and invalid settings, and notifications signed the way the fake gateway signs them."""

    module = KEY
    currency = "RUB"
    amount = "100.00"

    def valid_settings(self) -> dict[str, Any]:
        """Settings the admin would enter."""
        return {"merchant_id": "shop-1", "secret": "conformance-secret-1", "gateway_url": "", "test_mode": True}

    def invalid_settings(self) -> list[dict[str, Any]]:
        """A missing merchant, a short secret, no secret, a bad gateway URL."""
        good = self.valid_settings()
        return [{**good, "merchant_id": ""}, {**good, "secret": "short"}, {**good, "secret": ""},
                {**good, "gateway_url": "ftp://gateway.example.com"}, {**good, "merchant_id": "bad id!"}]

    def prepare_payment(self, client, payment, paymethod) -> None:
        """Open the redirect script as the owner, as the browser does: the payment becomes ``inpay``."""
        assert client.get(f"/mancgi/tplpayment?elid={payment.id}").status_code == 302

    def _params(self, payment) -> dict[str, str]:
        return {"merchant_id": "shop-1", "payment_id": str(payment.id), "op_id": f"op-conformance-{payment.id}",
                "amount": f"{payment.total:.2f}", "currency": payment.currency, "state": "paid", "test": "1"}

    def genuine_notification(self, payment, settings) -> Notification:
        """Signed with the shared secret."""
        return Notification("/mancgi/tplresult", data=signed(self._params(payment), settings["secret"]))

    def forged_notification(self, payment, settings) -> Notification:
        """Signed with another secret."""
        return Notification("/mancgi/tplresult", data=signed(self._params(payment), "not-the-secret-1"))

    def unsigned_notification(self, payment, settings) -> Notification:
        """No signature at all."""
        return Notification("/mancgi/tplresult", data=self._params(payment))

    def success_answer(self, payment) -> str:
        """The fake gateway expects ``OK``."""
        return SUCCESS_ANSWER
