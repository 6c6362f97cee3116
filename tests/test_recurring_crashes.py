"""``recurring run`` interrupted at each step of a charge (claim and child; the module's call; the booking)
resumes without charging twice: a crash is simulated by raising from the step, or just after it."""
from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import OperationalError

from billcore import recurring
from billcore.db import db, is_sqlite
from billcore.models import LedgerEntry, Payment, PaymentEvent, RecurringCharge
from billcore.payments import service
from tests import fake_recurring_module as fake
from tests.commit_waits import commits_of
from tests.test_recurring import T0, app_config, balance, children, paid_parent, profile_of  # noqa: F401

AFTER_LEASE = T0 + recurring.LEASE + timedelta(seconds=1)


class Crash(Exception):
    """The process dies here (nothing after this point runs)."""


def threshold_profile(user):
    _, parent = paid_parent(user)
    return recurring.create_profile(parent.id, account_id=user.account_id, rule="threshold", amount="50",
                                    threshold="100", monthly_max="500", now=T0)


def periods(profile_id: int) -> list[tuple[str, str, int | None]]:
    db.session.commit()  # a fresh snapshot
    return [(c.period, c.state, c.payment_id) for c in db.session.execute(
        select(RecurringCharge).where(RecurringCharge.profile_id == profile_id).order_by(RecurringCharge.id)).scalars()]


def test_crash_inside_the_claim_leaves_nothing(app, client_user, monkeypatch):
    """The child is made in the claim's transaction: dying before its commit leaves neither the period
    nor a child, and the profile is still due."""
    p = threshold_profile(client_user)
    real = service.create_payment_in

    def create_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise Crash()

    monkeypatch.setattr(service, "create_payment_in", create_then_die)
    result = recurring.run_due(T0)
    assert [e[0] for e in result.errors] == [p.id] and fake.CHARGES == []
    assert periods(p.id) == [] and children(p.id) == []
    monkeypatch.undo()
    assert recurring.run_due(T0).charges[0][3] == "paid"  # still due: charged now, once
    assert [k.status for k in children(p.id)] == ["paid"] and balance(client_user.account_id) == Decimal("60.00")


def test_crash_after_the_claim_charges_the_same_child_once_the_lease_is_over(app, client_user, monkeypatch):
    """Claimed and the child made, then the run dies before asking the module: the child stays ``new``
    and held, nobody picks the profile up during the lease, then that same child is charged."""
    p = threshold_profile(client_user)

    def die(*args, **kwargs):
        raise Crash()

    monkeypatch.setattr(recurring.run, "charge_ticket", die)
    assert [e[0] for e in recurring.run_due(T0).errors] == [p.id]
    (child,) = children(p.id)
    assert child.status == "new" and recurring.is_held_child(child.id)
    assert periods(p.id) == [("t1", "claimed", child.id)] and fake.CHARGES == []
    assert child.gateway_data == {"recurring_profile_id": p.id, "recurring_period": "t1",
                                  "recurring_parent_id": p.parent_payment_id}
    monkeypatch.undo()
    assert recurring.run_due(T0 + timedelta(minutes=5)).charges == []  # leased
    assert recurring.run_due(AFTER_LEASE).charges == [(p.id, "t1", child.id, "paid")]
    assert fake.CHARGES == [child.id] and [k.id for k in children(p.id)] == [child.id]
    assert balance(client_user.account_id) == Decimal("60.00")


def test_crash_after_the_module_charged_asks_again_with_the_same_child(app, client_user, monkeypatch):
    """The gateway charged, the run died before booking its answer: the next run asks again about the
    same payment id (the gateway's idempotency key) and the money is credited once."""
    p = threshold_profile(client_user)

    def die(*args, **kwargs):
        raise Crash()

    monkeypatch.setattr(recurring.run, "_book_answer", die)
    assert [e[0] for e in recurring.run_due(T0).errors] == [p.id]
    (child,) = children(p.id)
    assert child.status == "new" and periods(p.id) == [("t1", "claimed", child.id)]
    assert balance(client_user.account_id) == Decimal("10.00")
    monkeypatch.undo()
    assert recurring.run_due(AFTER_LEASE).charges == [(p.id, "t1", child.id, "paid")]
    assert fake.CHARGES == [child.id, child.id] and [k.status for k in children(p.id)] == ["paid"]
    assert balance(client_user.account_id) == Decimal("60.00") and profile_of(p.id).failures == 0


def test_crash_after_the_module_charged_then_the_notification_is_reconciled(app, client_user, monkeypatch):
    """As above, but the gateway's notification credits the child meanwhile: the next run books the
    period paid from it without asking the gateway again."""
    p = threshold_profile(client_user)

    def die(*args, **kwargs):
        raise Crash()

    monkeypatch.setattr(recurring.run, "_book_answer", die)
    recurring.run_due(T0)
    monkeypatch.undo()
    (child,) = children(p.id)
    service.set_paid(child.id, amount=child.total, currency="RUB", source="notification")
    assert recurring.run_due(AFTER_LEASE).charges == [(p.id, "t1", child.id, "paid")]
    assert fake.CHARGES == [child.id] and periods(p.id) == [("t1", "paid", child.id)]
    assert balance(client_user.account_id) == Decimal("60.00")


@pytest.mark.parametrize("mode", ["paid", "accepted", "failed"])
def test_crash_inside_the_booking_rolls_back_the_child_with_the_period(app, client_user, monkeypatch, mode):
    """The child's change and the period's outcome are one transaction: a crash after the payment service
    booked the answer but before the period's outcome leaves neither (no credit without its period)."""
    app.config["FAKEREC_MODE"] = mode
    p = threshold_profile(client_user)

    def die(*args, **kwargs):
        raise Crash()

    for name in ("book_paid", "book_failed"):
        monkeypatch.setattr(recurring.run, name, die)
    real_accepted = recurring.run.check_interval
    monkeypatch.setattr(recurring.run, "check_interval", die if mode == "accepted" else real_accepted)
    assert [e[0] for e in recurring.run_due(T0).errors] == [p.id]
    (child,) = children(p.id)
    assert child.status == "new" and periods(p.id) == [("t1", "claimed", child.id)]
    assert balance(client_user.account_id) == Decimal("10.00")
    assert db.session.execute(select(PaymentEvent.kind).where(PaymentEvent.payment_id == child.id)).scalars().all() \
        == ["created"]
    monkeypatch.undo()
    app.config["FAKEREC_MODE"] = "paid"
    assert recurring.run_due(AFTER_LEASE).charges == [(p.id, "t1", child.id, "paid")]
    assert fake.CHARGES == [child.id, child.id] and balance(client_user.account_id) == Decimal("60.00")


def test_a_refused_child_is_booked_failed_in_the_claim(app, client_user):
    """The payment service refuses to create the child (the method was disabled): the claim books the
    failure itself, with no child and nothing asked."""
    method, parent = paid_parent(client_user)
    p = recurring.create_profile(parent.id, account_id=client_user.account_id, rule="threshold", amount="50",
                                 threshold="100", monthly_max="500", now=T0)
    db.session.get(type(method), method.id).active = False
    db.session.commit()
    result = recurring.run_due(T0)
    assert result.charges == [(p.id, "t1", None, "failed")] and fake.CHARGES == []
    assert periods(p.id) == [("t1", "failed", None)] and children(p.id) == []
    assert (profile_of(p.id).failures, profile_of(p.id).last_error_code) == (1, "method_disabled")


def test_a_status_change_joins_only_a_write_transaction(app, client_user):
    method, parent = paid_parent(client_user)
    child = service.create_payment(client_user.account_id, method.id, Decimal("5.00"))
    with pytest.raises(ValueError, match="write_transaction"):
        service.set_in_pay_in(db.session(), child.id, source="test")
    db.session.rollback()
    with pytest.raises(Crash), service.write_transaction() as session:
        service.set_in_pay_in(session, child.id, source="test")
        raise Crash()
    assert db.session.get(Payment, child.id).status == "new"  # rolled back with the caller's transaction
    with service.write_transaction() as session:
        assert service.set_in_pay_in(session, child.id, source="test").changed
    db.session.commit()
    assert db.session.get(Payment, child.id).status == "inpay"


def test_a_charge_locks_the_account_last_just_before_its_commit(app, client_user):
    """The booking of a paid charge writes the child, the period and the profile first and the account's
    balance and ledger entry last: a notification for the same account waits only for that tail and the
    commit, not for the whole booking."""
    p = threshold_profile(client_user)
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()))

    def committed(conn):
        statements.append("COMMIT")

    event.listen(db.engine, "before_cursor_execute", seen)
    event.listen(db.engine, "commit", committed)
    try:
        (charge,) = recurring.run_due(T0).charges
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
        event.remove(db.engine, "commit", committed)
    assert (charge[0], charge[3]) == (p.id, "paid") and balance(client_user.account_id) == Decimal("60.00")
    paid = next(i for i, s in enumerate(statements) if s.startswith("UPDATE payments SET status") and
                "recurring_charges" not in s)
    booking = statements[paid:statements.index("COMMIT", paid) + 1]
    touches_account = [i for i, s in enumerate(booking) if re.search(r"\b(accounts|ledger_entries)\b", s)]
    assert [booking[i].split()[0] for i in touches_account] == ["SELECT", "UPDATE", "INSERT"], booking
    assert touches_account == list(range(len(booking) - 4, len(booking) - 1)), booking  # then COMMIT
    assert any("recurring_profiles" in s for s in booking[:touches_account[0]]), booking


def test_a_status_change_joined_to_a_transaction_leaves_the_account_unlocked_until_its_end(app, client_user):
    """In a joined write_transaction the child is locked at once, its account only as the transaction
    ends; the credit is then made once, with its ledger entry."""
    if is_sqlite(db.engine):
        pytest.skip("row locks exist on PostgreSQL only (SQLite's transaction holds the whole database)")
    method, parent = paid_parent(client_user)
    child = service.create_payment(client_user.account_id, method.id, Decimal("5.00"))
    account_id = client_user.account_id

    def free(table: str, row_id: int) -> bool:
        with db.engine.connect() as other:
            try:
                other.execute(text(f"SELECT id FROM {table} WHERE id = :id FOR UPDATE NOWAIT"), {"id": row_id})
                return True
            except OperationalError:
                return False
            finally:
                other.rollback()

    with service.write_transaction() as session:
        assert service.set_paid_in(session, child.id, amount=Decimal("5.00"), currency="RUB", source="test").changed
        locked_now = (free("payments", child.id), free("accounts", account_id))
    assert locked_now == (False, True)
    assert balance(account_id) == Decimal("15.00")
    assert db.session.execute(select(LedgerEntry.amount).where(LedgerEntry.payment_id == child.id)).scalars().all() \
        == [Decimal("5.00")]


@pytest.mark.parametrize("mode", ["accepted", "paid"])
def test_only_an_accepted_charges_booking_commits_without_waiting_for_the_disk(app, client_user, mode):
    """PostgreSQL: the claim, and a booking that moves money, wait for their WAL on the disk; the booking of
    an accepted charge does not (lost in a crash, it is a run that died before the booking: the test of
    that case above). Checked at each commit, where the setting takes effect."""
    if is_sqlite(db.engine):
        pytest.skip("synchronous_commit is PostgreSQL's (SQLite's WAL commits do not sync in billcore)")
    app.config["FAKEREC_MODE"] = mode
    p = threshold_profile(client_user)
    with commits_of(db.engine, ("recurring_charges", "payments")) as commits:
        (charge,) = recurring.run_due(T0).charges
        with db.engine.connect() as conn:  # the setting was the transaction's own: the next one waits again
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    assert charge[:1] + charge[3:] == (p.id, mode)
    writing = [(setting, writes) for setting, writes in commits if writes]
    claim, booking = writing  # the claim makes the child and its period; the booking settles them
    assert claim[0] == "on" and "payments" in claim[1] and "recurring_charges" in claim[1]
    assert booking[0] == ("off" if mode == "accepted" else "on"), commits
    assert "recurring_charges" in booking[1] and "payments" in booking[1], commits
