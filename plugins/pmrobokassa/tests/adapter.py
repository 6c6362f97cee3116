"""pmrobokassa's adapter for billcore's conformance suite (billcore.testing.conformance).

Notifications are signed here from Robokassa's published recipe (ResultURL: MD5 of
``OutSum:InvId:Password#2``, uppercase hex), not with the module's own code, and the answer Robokassa must
hear is the one the module declares (``OK{payment_id}``), checked by the suite: the module is never
compared with itself. The start goes through billcore's door (the suite's default ``prepare_payment``).
"""
from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from billcore.models import Payment
from billcore.testing.conformance import ConformanceAdapter, Notification

from .helpers import P1, SETTINGS

RESULT_PATH = "/mancgi/rkresult"
ROBOKASSA_ADDRESS = "185.59.216.65"  # one of the addresses Robokassa documents for its notifications


def result_signature(out_sum: str, inv_id: str, password2: str) -> str:
    """ResultURL's SignatureValue as Robokassa sends it (MD5, uppercase hex)."""
    return hashlib.md5(f"{out_sum}:{inv_id}:{password2}".encode()).hexdigest().upper()  # noqa: S324 - the protocol's


class RobokassaAdapter(ConformanceAdapter):
    """Robokassa: ResultURL notifications signed with Password #2, from Robokassa's addresses when the
    module's address check is on."""

    module = "pmrobokassa"
    currency = "RUB"
    amount = "100.00"
    inside_address = ROBOKASSA_ADDRESS

    def valid_settings(self) -> dict[str, Any]:
        """The test shop with all three passwords."""
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

    def other_merchant_settings(self) -> list[dict[str, Any]]:
        """Another shop with its own passwords. ResultURL does not name the shop: Password #2 is the only
        thing that tells two shops' notifications apart, so there is no shop sharing it."""
        return [{**SETTINGS, "identifier": "othershop", "password1": "other_password_1",
                 "password2": "other_password_2", "password3": "other_password_3"}]

    def allowlist_settings(self) -> dict[str, Any] | None:
        """The module's address check is the app's (``PMROBOKASSA_CHECK_IP``), for every method."""
        return dict(SETTINGS)

    def allowlist_config(self) -> dict[str, Any]:
        """Turn the address check on (Robokassa's documented addresses are the default list)."""
        return {"PMROBOKASSA_CHECK_IP": True}

    def _params(self, payment: Payment, password: str | None, amount: Decimal | None = None) -> dict[str, str]:
        out_sum = f"{payment.total if amount is None else amount:.6f}"  # Robokassa sends six decimals
        params = {"OutSum": out_sum, "InvId": str(payment.id), "Fee": "0.000000", "PaymentMethod": "BankCard",
                  "IncCurrLabel": "BankCardPSR", "EMail": "payer@example.com"}
        if password is not None:
            params["SignatureValue"] = result_signature(out_sum, str(payment.id), password)
        return params

    def genuine_notification(self, payment: Payment, settings: dict[str, Any],
                             amount: Decimal | None = None) -> Notification:
        """ResultURL signed with Password #2."""
        return Notification(RESULT_PATH, data=self._params(payment, str(settings["password2"]), amount))

    def forged_notification(self, payment: Payment, settings: dict[str, Any]) -> Notification:
        """ResultURL signed with Password #1 (the classic mix-up, and what a forger could learn)."""
        return Notification(RESULT_PATH, data=self._params(payment, P1))

    def unsigned_notification(self, payment: Payment, settings: dict[str, Any]) -> Notification:
        """ResultURL without SignatureValue."""
        return Notification(RESULT_PATH, data=self._params(payment, None))
