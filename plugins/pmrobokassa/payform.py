"""The fields of the payment request sent to Robokassa's payment page (docs/robokassa.md §1.2, §2.2, §9)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_babel import gettext as _

from billcore.gateway import Payment

from . import protocol
from .common import algorithm

DESCRIPTION_MAX = 100


def description_for(payment: Payment) -> str:
    """The payment's ``Description``: its own text or "Payment N", at most 100 characters."""
    text = (payment.description or "").strip() or _("Payment %(id)s", id=payment.id)
    return " ".join(text.split())[:DESCRIPTION_MAX]


def receipt_for(payment: Payment, settings: Mapping[str, Any]) -> str | None:
    """The URL-encoded ``Receipt`` (one line for the whole total) when receipts are on, else None."""
    if not settings.get("receipt_enabled"):
        return None
    item = protocol.ReceiptItem(
        name=str(settings.get("receipt_item_name") or "").strip() or _("Account top-up"),
        sum=payment.total,
        tax=str(settings.get("receipt_tax") or "none"),
        quantity=1,
        payment_method=settings.get("receipt_payment_method") or None,
        payment_object=settings.get("receipt_payment_object") or None,
    )
    if protocol.receipt_total([item]) != payment.total:  # the receipt must add up to OutSum (§9)
        raise ValueError("receipt total differs from the payment total")
    return protocol.encode_receipt(protocol.build_receipt(items=[item], sno=settings.get("receipt_sno") or None))


def payment_fields(payment: Payment, settings: Mapping[str, Any], *, email: str | None,
                   culture: str) -> list[tuple[str, str]]:
    """The form fields, in order, that send the payer to Robokassa for ``payment``.

    ``OutSum`` is the total the client pays with two decimals and exactly that text is signed with
    Password #1 and the method's algorithm, with the ``Receipt`` when receipts are on.
    """
    login = str(settings["identifier"])
    out_sum = protocol.format_out_sum(payment.total)
    receipt = receipt_for(payment, settings)
    signature = protocol.init_signature(
        algorithm(settings), merchant_login=login, out_sum=out_sum, inv_id=str(payment.id),
        password1=str(settings["password1"]), receipt=receipt)
    fields = [("MerchantLogin", login), ("OutSum", out_sum), ("InvId", str(payment.id)),
              ("Description", description_for(payment)), ("SignatureValue", signature)]
    recurring = bool((payment.gateway_data or {}).get("recurring"))
    label = str(settings.get("payment_method") or "")
    if label and not recurring:  # Robokassa refuses IncCurrLabel together with Recurring (§7.1)
        fields.append(("IncCurrLabel", label))
    fields += [("Culture", culture if culture in ("ru", "en") else "en"), ("Encoding", "utf-8")]
    if email:
        fields.append(("Email", email))
    if receipt:
        fields.append(("Receipt", receipt))
    if recurring:
        fields.append(("Recurring", "true"))  # the parent payment of a subscription (§7.1)
    if settings.get("test_mode"):
        fields.append(("IsTest", "1"))
    return fields
