"""Manual balance corrections (billcore.payments.adjustments) and the account page's form: one transaction
with the ledger entry and the history event, a required reason, refusals that change nothing, and no
debit beyond the balance even when two are made at once."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billcore.db import db
from billcore.models import Account, LedgerEntry, PaymentEvent
from billcore.payments.adjustments import Adjustment, AdjustmentError, adjust_balance
from billcore.testing.fixtures import run_together
from tests.test_admin_payments import admin, payer  # noqa: F401
from tests.test_checkout import app_config, capp  # noqa: F401


def _balance(account_id: int) -> Decimal:
    db.session.rollback()  # a fresh snapshot: the writes were made on other connections
    return db.session.get(Account, account_id).balance


def _ledger_sum(account_id: int) -> Decimal:
    return db.session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                             .where(LedgerEntry.account_id == account_id))


def test_credit_and_debit_write_ledger_and_history(payer):  # noqa: F811
    done = adjust_balance(payer.account_id, Decimal("150.00"), reason="Goodwill credit", source="admin",
                          actor="boss@test.example")
    assert done == Adjustment(ledger_entry_id=done.ledger_entry_id, account_id=payer.account_id,
                              amount=Decimal("150.00"), balance_after=Decimal("150.00"), currency="RUB")
    debit = adjust_balance(payer.account_id, Decimal("-49.5"), reason="Duplicate credit", source="api")
    assert debit.balance_after == Decimal("100.50") == _balance(payer.account_id) == _ledger_sum(payer.account_id)
    entry = db.session.get(LedgerEntry, debit.ledger_entry_id)
    assert (entry.kind, entry.amount, entry.note, entry.payment_id) == ("adjustment", Decimal("-49.50"),
                                                                         "Duplicate credit", None)
    events = db.session.execute(select(PaymentEvent).where(PaymentEvent.kind == "adjustment")
                                .order_by(PaymentEvent.id)).scalars().all()
    assert [(e.source, e.actor, e.payment_id, e.data["account_id"], e.data["amount"], e.data["reason"],
             e.data["ledger_entry_id"]) for e in events] == [
        ("admin", "boss@test.example", None, payer.account_id, "150.00", "Goodwill credit", done.ledger_entry_id),
        ("api", None, None, payer.account_id, "-49.50", "Duplicate credit", debit.ledger_entry_id)]


@pytest.mark.parametrize("amount,reason,message", [
    (Decimal("0"), "x", "cannot be zero"),
    (Decimal("10"), "   ", "Give the reason"),
    (Decimal("10"), "r" * 256, "too long"),
    (Decimal("10.001"), "x", "at most 2 decimals"),
    (Decimal("NaN"), "x", "Enter an amount"),
    (Decimal("1e20"), "x", "Enter an amount"),
    (Decimal("-0.01"), "x", "cannot take more"),
])
def test_refusals_change_nothing(payer, amount, reason, message):  # noqa: F811
    with pytest.raises(AdjustmentError, match=message):
        adjust_balance(payer.account_id, amount, reason=reason, source="admin")
    assert _balance(payer.account_id) == 0 and _ledger_sum(payer.account_id) == 0
    assert db.session.scalar(select(func.count()).select_from(PaymentEvent)) == 0
    with pytest.raises(AdjustmentError, match="no account"):
        adjust_balance(10**6, Decimal("1"), reason="x", source="admin")


def test_two_debits_at_once_never_overdraw(capp, payer):  # noqa: F811
    account_id = payer.account_id  # read here: the threads must not touch this session's objects
    adjust_balance(account_id, Decimal("100"), reason="start", source="test")
    outcomes = run_together(capp, [lambda: adjust_balance(account_id, Decimal("-70"), reason="a", source="t"),
                                   lambda: adjust_balance(account_id, Decimal("-70"), reason="b", source="t")])
    assert sorted(type(o).__name__ for o in outcomes) == ["Adjustment", "AdjustmentError"]
    assert _balance(account_id) == Decimal("30.00") == _ledger_sum(account_id)


def _once(admin, url: str) -> str:
    """The one-time token of the form on the page at ``url``."""
    return re.search(r'name="once" type="hidden" value="([^"]+)"', admin.get(url).get_data(as_text=True)).group(1)


def test_account_page_form(admin, payer):  # noqa: F811
    url = f"/admin/accounts/{payer.account_id}"
    page = admin.get(url).get_data(as_text=True)
    assert "<h2>Balance</h2>" in page and 'data-testid="adjust"' in page
    # the reason is required; nothing is booked without it
    refused = admin.post(url, data={"direction": "credit", "amount": "25", "reason": ""})
    assert refused.status_code == 400 and "the reason is kept in the ledger" in refused.get_data(as_text=True)
    assert _balance(payer.account_id) == 0
    ok = admin.post(url, data={"direction": "credit", "amount": "1 025,50", "reason": "Bank transfer 17",
                               "once": _once(admin, url)})
    assert ok.status_code == 302
    page = admin.get(url).get_data(as_text=True)
    assert "corrected by 1 025.50 RUB" in page and "Bank transfer 17" in page and "Balance correction" in page
    too_much = admin.post(url, data={"direction": "debit", "amount": "2000", "reason": "oops", "once": _once(admin, url)})
    assert too_much.status_code == 400 and "cannot take more" in too_much.get_data(as_text=True)
    assert _balance(payer.account_id) == Decimal("1025.50")
    assert re.search(r'data-testid="balance">1 025.50 RUB<', admin.get(url).get_data(as_text=True))


def test_account_page_correction_sent_twice_is_made_once(admin, payer):  # noqa: F811
    url = f"/admin/accounts/{payer.account_id}"
    form = {"direction": "credit", "amount": "100", "reason": "Bank transfer 18", "once": _once(admin, url)}
    assert admin.post(url, data=form).status_code == 302
    again = admin.post(url, data=form)  # a double click, or Back and submit again
    assert again.status_code == 302 and again.headers["Location"].endswith(url)
    assert "already made" in admin.get(url).get_data(as_text=True)
    assert _balance(payer.account_id) == Decimal("100.00") == _ledger_sum(payer.account_id)
    # a form without its token acts never
    stale = admin.post(url, data={**form, "once": ""})
    assert stale.status_code == 400 and "form expired" in stale.get_data(as_text=True)
    assert _balance(payer.account_id) == Decimal("100.00")
    # a fresh form acts again
    assert admin.post(url, data={**form, "once": _once(admin, url)}).status_code == 302
    assert _balance(payer.account_id) == Decimal("200.00") == _ledger_sum(payer.account_id)
