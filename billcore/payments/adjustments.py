"""Manual credits and debits of an account (an operator's correction, a provider's panel through the API).

One transaction through the payment service: the account is locked, the balance changed and the ledger
entry (kind ``adjustment``, the reason as its note) and the outbox event written together.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from flask_babel import gettext as _

from .. import outbox
from ..models import Account
from ..money import MoneyError, parse_amount
from . import service

MAX_REASON = 500
BLANK = " \t\r\n"  # what a reason may not consist of only (the API's schema says the same)


class AdjustmentError(service.PaymentError):
    """An adjustment that cannot be made (amount, reason, account); nothing was changed."""


@dataclass(frozen=True)
class Adjustment:
    """What an adjustment did: the account, the signed amount and the balance afterwards."""

    account_id: int
    amount: Decimal
    balance: Decimal
    currency: str


def adjust_balance(account_id: int, amount: Decimal, *, reason: str, source: str) -> Adjustment:
    """Add ``amount`` to the account's balance (negative: a debit), with a reason kept in the ledger.

    Refused with :class:`AdjustmentError` (and nothing written) for an unknown account, a zero amount,
    more decimals than the currency has, a missing reason, or a debit below a zero balance.
    """
    if isinstance(amount, float):
        raise TypeError("amount must be a Decimal, never a float")
    reason = (reason or "").strip(BLANK)
    if not reason:
        raise AdjustmentError(_("Say why: the reason is kept in the account's ledger."))
    if len(reason) > MAX_REASON:
        raise AdjustmentError(_("The reason is too long."))
    with service.write_transaction() as session:
        account = session.get(Account, account_id, with_for_update=True)
        if account is None:
            raise AdjustmentError(_("No such account."))
        try:
            value = parse_amount(amount, account.currency)
        except MoneyError as exc:
            raise AdjustmentError(str(exc)) from None
        if value == 0:
            raise AdjustmentError(_("The amount must not be zero."))
        if account.balance + value < 0:
            raise AdjustmentError(_("The balance is %(balance)s %(currency)s: it cannot go below zero.",
                                    balance=account.balance, currency=account.currency))
        balance = service._credit(session, account.id, value, kind="adjustment", payment_id=None,
                                  note=f"{source}: {reason}"[:255])
        outbox.record(session, "account.adjusted", {
            "account_id": account.id, "amount": outbox.money(value), "balance": outbox.money(balance),
            "currency": account.currency, "reason": reason, "source": source})
        return Adjustment(account.id, value, balance, account.currency)
