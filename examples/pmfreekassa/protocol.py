"""FreeKassa's SCI protocol: its addresses, field names and signature recipes. No Flask here, so the recipes
can be checked against the gateway's published examples alone (tests/test_example_freekassa.py).

* The payment form goes to ``PAY_URL`` (GET): ``m`` merchant id, ``oa`` amount, ``currency``, ``o`` order
  id, ``s`` = md5 of ``m:oa:secret1:currency:o`` (hex), and optionally ``lang`` and ``em`` (e-mail).
* The notification (POST, as configured in the merchant's cabinet) carries ``MERCHANT_ID``, ``AMOUNT``,
  ``intid`` (FreeKassa's operation id), ``MERCHANT_ORDER_ID``, ``SIGN`` = md5 of
  ``MERCHANT_ID:AMOUNT:secret2:MERCHANT_ORDER_ID``, and more that is not signed (``P_EMAIL``, ``CUR_ID`` -
  the payment system, not a currency). It names no currency. The answer to a notification is ``YES``.
* The payer comes back to the success or fail URL with ``MERCHANT_ORDER_ID``: unsigned.
"""
from __future__ import annotations

import hashlib
import hmac

PAY_URL = "https://pay.freekassa.com/"
ANSWER = "YES"
# the addresses FreeKassa notifies from, as published (the admin can change the list in the settings)
NETWORKS = ("168.119.157.136", "168.119.60.227", "178.154.197.79", "51.250.54.238")
NOTIFICATION_FIELDS = ("MERCHANT_ID", "AMOUNT", "intid", "MERCHANT_ORDER_ID", "P_EMAIL", "P_PHONE", "CUR_ID",
                       "payer_account", "commission", "SIGN")
CURRENCIES = ("RUB", "USD", "EUR", "UAH", "KZT")


def md5_hex(*parts: str) -> str:
    """The lowercase hex MD5 of ``parts`` joined with ``:`` (FreeKassa's recipe for both signatures)."""
    return hashlib.md5(":".join(parts).encode("utf-8")).hexdigest()


def form_signature(merchant_id: str, amount: str, secret1: str, currency: str, order_id: str) -> str:
    """``s`` of the payment form: md5 of ``m:oa:secret1:currency:o``."""
    return md5_hex(merchant_id, amount, secret1, currency, order_id)


def notification_signature(merchant_id: str, amount: str, secret2: str, order_id: str) -> str:
    """``SIGN`` of a notification: md5 of ``MERCHANT_ID:AMOUNT:secret2:MERCHANT_ORDER_ID``."""
    return md5_hex(merchant_id, amount, secret2, order_id)


def notification_is_signed(params: dict[str, str], secret2: str) -> bool:
    """True when ``params`` carry the ``SIGN`` of ``secret2``; compared in constant time (any case)."""
    if not secret2 or not params.get("SIGN"):
        return False
    expected = notification_signature(params.get("MERCHANT_ID", ""), params.get("AMOUNT", ""), secret2,
                                      params.get("MERCHANT_ORDER_ID", ""))
    return hmac.compare_digest(expected.encode(), params["SIGN"].lower().encode())
