"""How billcore's conformance suite talks to this module: what the module is, not how to test it.

TODO(gateway): once the recipe in callbacks.py is the real gateway's, build the notifications the way the
gateway does (its field names, its signature), ideally checked against an example from its documentation.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from billcore.gateway import ConformanceAdapter, Notification
from pmskeleton.callbacks import RESULT, sign


class SkeletonAdapter(ConformanceAdapter):
    """Valid, invalid and a second merchant's settings; genuine, forged and unsigned notifications."""

    module = "pmskeleton"
    currency = "RUB"
    amount = "100.00"

    def valid_settings(self) -> dict[str, Any]:
        """What the admin enters in the integration form (secrets included)."""
        return {"merchant_id": "shop-1", "secret": "conformance-secret-1"}

    def other_merchant_settings(self) -> list[dict[str, Any]]:
        """Other merchants' valid settings, one sharing shop-1's secret (only the merchant check can tell
        it apart): their notifications must never pay this merchant's payments."""
        return [{"merchant_id": "shop-2", "secret": "conformance-secret-2"},
                {"merchant_id": "shop-3", "secret": "conformance-secret-1"}]

    def invalid_settings(self) -> list[dict[str, Any]]:
        """Each refused by the form or the validation: no merchant, a bad one, no secret, a short one."""
        good = self.valid_settings()
        return [{**good, "merchant_id": ""}, {**good, "merchant_id": "bad id!"}, {**good, "secret": ""},
                {**good, "secret": "short"}]

    def params(self, payment: Any, settings: dict[str, Any], amount: Decimal | None = None) -> dict[str, str]:
        """The notification's fields for ``payment`` paid (``amount``, default in full), unsigned."""
        paid = payment.total if amount is None else amount
        return {"merchant_id": settings["merchant_id"], "order_id": str(payment.id), "amount": f"{paid:.2f}",
                "currency": payment.currency, "status": "paid", "operation_id": f"op-{payment.id}"}

    def genuine_notification(self, payment: Any, settings: dict[str, Any], amount: Decimal | None = None) -> Notification:
        """Signed with the merchant's secret."""
        params = self.params(payment, settings, amount)
        return Notification(RESULT, data={**params, "signature": sign(params, settings["secret"])})

    def forged_notification(self, payment: Any, settings: dict[str, Any]) -> Notification:
        """Signed with a secret that is not the merchant's."""
        params = self.params(payment, settings)
        return Notification(RESULT, data={**params, "signature": sign(params, "not-the-secret-1")})

    def unsigned_notification(self, payment: Any, settings: dict[str, Any]) -> Notification:
        """No signature at all."""
        return Notification(RESULT, data=self.params(payment, settings))
