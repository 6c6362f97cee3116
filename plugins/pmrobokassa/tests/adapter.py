"""pmrobokassa's adapter for billcore's conformance suite (billcore.testing.conformance)."""
from __future__ import annotations

from typing import Any

from billcore.models import Payment
from billcore.testing.conformance import ConformanceAdapter, Notification
from pmrobokassa import protocol

from .helpers import P1, SETTINGS


class RobokassaAdapter(ConformanceAdapter):
    """Robokassa: ResultURL notifications signed with Password #2, answered ``OK<InvId>``."""

    module = "pmrobokassa"
    currency = "RUB"
    amount = "100.00"

    def valid_settings(self) -> dict[str, Any]:
        """The test shop of docs/robokassa.md §2.6 with all three passwords."""
        return dict(SETTINGS)

    def invalid_settings(self) -> list[dict[str, Any]]:
        """Each breaks one rule: identifier, password length/letters/digits, #1 = #2, URL, algorithm."""
        return [
            {**SETTINGS, "identifier": ""},
            {**SETTINGS, "password1": "pass1"},
            {**SETTINGS, "password2": "onlyletters"},
            {**SETTINGS, "password2": "1234567890"},
            {**SETTINGS, "password2": SETTINGS["password1"]},
            {**SETTINGS, "url": "https://example.com/pay"},
            {**SETTINGS, "hash_algorithm": "crc32"},
        ]

    def _params(self, payment: Payment, password: str | None) -> dict[str, str]:
        out_sum = f"{payment.total:.6f}"  # Robokassa sends six decimals
        params = {"OutSum": out_sum, "InvId": str(payment.id), "Fee": "0.000000", "PaymentMethod": "BankCard",
                  "IncCurrLabel": "BankCardPSR", "EMail": "payer@example.com"}
        if password is not None:
            params["SignatureValue"] = protocol.result_signature("md5", out_sum, str(payment.id), password).upper()
        return params

    def genuine_notification(self, payment: Payment, settings: dict[str, Any]) -> Notification:
        """ResultURL signed with Password #2."""
        return Notification("/mancgi/rkresult", data=self._params(payment, str(settings["password2"])))

    def forged_notification(self, payment: Payment, settings: dict[str, Any]) -> Notification:
        """ResultURL signed with Password #1 (the classic mix-up, and what a forger could learn)."""
        return Notification("/mancgi/rkresult", data=self._params(payment, P1))

    def unsigned_notification(self, payment: Payment, settings: dict[str, Any]) -> Notification:
        """ResultURL without SignatureValue."""
        return Notification("/mancgi/rkresult", data=self._params(payment, None))

    def success_answer(self, payment: Payment) -> str:
        """``OK<InvId>``."""
        return protocol.result_answer(payment.id)
