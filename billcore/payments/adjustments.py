"""Manual corrections of a balance (an administrator's credit or debit with a reason).

Part of the payment service: the change is made by :func:`billcore.payments.service`'s own helpers, in
one write transaction that locks the account, writes the balance and the ledger entry (kind
``adjustment``, the reason as its note), records a history event (kind ``adjustment``, no payment,
the account and the amounts in its data) and the outbox event ``account.adjusted`` (webhooks). The admin
pages and the JSON API both call :func:`adjust_balance`.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from flask_babel import gettext as _
from sqlalchemy import select

from .. import outbox
from ..models import Account, LedgerEntry
from ..money import MAX_AMOUNT, quantize
from . import service

KIND = "adjustment"
MAX_REASON = 255  # the ledger entry's note


class AdjustmentError(service.PaymentError):
    """A correction that was refused (nothing was changed); the message is for the person who asked."""


@dataclass(frozen=True)
class Adjustment:
    """A correction made: its ledger entry, the signed amount, the balance after it and the currency."""

    ledger_entry_id: int
    account_id: int
    amount: Decimal
    balance_after: Decimal
    currency: str

    @property
    def balance(self) -> Decimal:
        """The balance after the correction (the JSON API's name for it)."""
        return self.balance_after


def adjust_balance(account_id: int, amount: Decimal, *, reason: str, source: str,
                   actor: str | None = None) -> Adjustment:
    """Credit (``amount`` > 0) or debit (``amount`` < 0) an account by hand, with a required reason.

    ``source`` says where the correction came from (``admin``, ``api``...), ``actor`` who made it.
    Returns an :class:`Adjustment`: the new ledger entry's id, the amount as booked (rounded to the
    currency, which must not change it), the balance after the correction and the account's currency.
    Raises :class:`AdjustmentError` (nothing changed) for an unknown account, a zero, malformed or too
    large amount, an amount finer than the currency's minor unit, a missing or too long reason, or a
    debit larger than the balance.
    """
    reason = (reason or "").strip()
    if not reason:
        raise AdjustmentError(_("Give the reason for the correction."))
    if len(reason) > MAX_REASON:
        raise AdjustmentError(_("The reason is too long (at most %(n)s characters).", n=MAX_REASON))
    try:
        value = Decimal(amount) if not isinstance(amount, float) else None
    except (InvalidOperation, TypeError, ValueError):
        value = None
    if value is None or not value.is_finite() or abs(value) > MAX_AMOUNT:
        raise AdjustmentError(_("Enter an amount like 100 or -100.50."))
    if value == 0:
        raise AdjustmentError(_("The amount of a correction cannot be zero."))
    with service.write_transaction() as session:
        # FOR NO KEY UPDATE, as every credit locks an account (see payments.service)
        account = session.execute(select(Account).where(Account.id == account_id)
                                  .with_for_update(key_share=True)).scalar_one_or_none()
        if account is None:
            raise AdjustmentError(_("There is no account %(id)s.", id=account_id))
        if quantize(value, account.currency) != value:
            raise AdjustmentError(_("%(currency)s has at most %(digits)s decimals.", currency=account.currency,
                                    digits=-quantize(Decimal(1), account.currency).as_tuple().exponent))
        value = quantize(value, account.currency)
        if value < 0 and account.balance + value < 0:
            raise AdjustmentError(_("The balance is %(balance)s %(currency)s: a debit cannot take more than that.",
                                    balance=account.balance, currency=account.currency))
        balance = service._credit(session, account.id, value, kind=KIND, payment_id=None, note=reason)
        entry_id = session.execute(select(LedgerEntry.id).where(LedgerEntry.account_id == account.id)
                                   .order_by(LedgerEntry.id.desc()).limit(1)).scalar_one()
        service._event(session, None, kind=KIND, source=source[:64], actor=actor,
                       outcome=f"balance of account {account.id} corrected by {value} {account.currency}",
                       data={"account_id": account.id, "amount": str(value), "balance_after": str(balance),
                             "ledger_entry_id": entry_id, "reason": reason}, secrets=[])
        outbox.record(session, "account.adjusted", {
            "account_id": account.id, "amount": outbox.money(value), "balance": outbox.money(balance),
            "currency": account.currency, "reason": reason, "source": source[:64]})
        currency = account.currency
    return Adjustment(ledger_entry_id=entry_id, account_id=account_id, amount=value, balance_after=balance,
                      currency=currency)
