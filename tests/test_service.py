"""The payment service: transitions, exactly-once crediting, money checks, refunds."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select

from billcore.db import db, is_sqlite
from billcore.models import Account, LedgerEntry, Payment, PaymentEvent, Status
from billcore.payments import service
from billcore.payments.adjustments import adjust_balance
from billcore.testing.fixtures import run_together
from tests import factories

ALL = [s.value for s in Status]

# (action, start status) -> expected: "changed", "already" or "illegal"
TRANSITIONS = {
    "inpay": {"new": "changed", "inpay": "already", "paid": "illegal", "cancelled": "illegal",
              "fraud": "illegal", "pending_return": "illegal", "returned": "illegal"},
    "paid": {"new": "changed", "inpay": "changed", "paid": "already", "cancelled": "changed",
             "fraud": "illegal", "pending_return": "already", "returned": "already"},
    "cancelled": {"new": "changed", "inpay": "changed", "paid": "illegal", "cancelled": "already",
                  "fraud": "illegal", "pending_return": "illegal", "returned": "illegal"},
    "fraud": {"new": "changed", "inpay": "changed", "paid": "illegal", "cancelled": "changed",
              "fraud": "already", "pending_return": "illegal", "returned": "illegal"},
}


def _force_status(payment_id: int, status: str) -> None:
    db.session.get(Payment, payment_id).status = status
    db.session.commit()


def _act(action: str, payment: Payment) -> service.Outcome:
    if action == "inpay":
        return service.set_in_pay(payment.id, source="test")
    if action == "paid":
        return service.set_paid(payment.id, amount=payment.total, currency=payment.currency, source="test")
    if action == "cancelled":
        return service.set_cancelled(payment.id, source="test", reason="test")
    return service.set_fraud(payment.id, source="test", reason="test")


def _balance(account_id: int) -> Decimal:
    db.session.expire_all()
    return db.session.get(Account, account_id).balance


def _ledger_sum(account_id: int) -> Decimal:
    return db.session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                             .where(LedgerEntry.account_id == account_id))


@pytest.mark.parametrize("action,start", [(a, s) for a in TRANSITIONS for s in ALL])
def test_transition_table(app, action, start):
    p = factories.payment(status_inpay=False)
    _force_status(p.id, start)
    events_before = db.session.scalar(select(func.count()).select_from(PaymentEvent))
    expected = TRANSITIONS[action][start]
    if expected == "illegal":
        with pytest.raises(service.IllegalTransition):
            _act(action, p)
        db.session.expire_all()
        assert db.session.get(Payment, p.id).status == start
        assert db.session.scalar(select(func.count()).select_from(PaymentEvent)) == events_before
        return
    outcome = _act(action, p)
    assert outcome.result == expected
    db.session.expire_all()
    assert db.session.get(Payment, p.id).status == (action if expected == "changed" else start)


def test_set_paid_twice_credits_once(app):
    p = factories.payment("250.00")
    first = service.set_paid(p.id, amount=Decimal("250.00"), currency="RUB", source="test", answer="OK")
    second = service.set_paid(p.id, amount=Decimal("250.000000"), currency="RUB", source="test", answer="OK")
    assert (first.result, second.result) == ("changed", "already")
    assert _balance(p.account_id) == Decimal("250.00")
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 1
    events = db.session.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == p.id)
                                .order_by(PaymentEvent.id)).all()
    assert [e.kind for e in events] == ["created", "redirect", "notification", "notification"]
    assert events[-1].answer == "OK" and events[-1].status_to is None


@pytest.mark.parametrize("amount,currency", [("249.99", "RUB"), ("250.01", "RUB"), ("250.00", "USD"),
                                             ("250.001", "RUB"), ("0", "RUB")])
def test_mismatch_is_fraud_and_credits_nothing(app, amount, currency):
    p = factories.payment("250.00")
    outcome = service.set_paid(p.id, amount=Decimal(amount), currency=currency, source="test")
    assert outcome.result == "fraud" and outcome.status == "fraud"
    assert _balance(p.account_id) == Decimal("0.00")
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 0
    # a later genuine notification does not pay a fraud payment by itself; an admin can
    with pytest.raises(service.IllegalTransition):
        service.set_paid(p.id, amount=Decimal("250.00"), currency="RUB", source="test")
    assert service.set_paid(p.id, amount=Decimal("250.00"), currency="RUB", source="admin", manual=True).changed
    assert _balance(p.account_id) == Decimal("250.00")


def test_float_amount_refused(app):
    p = factories.payment("10.00")
    with pytest.raises(TypeError):
        service.set_paid(p.id, amount=10.0, currency="RUB", source="test")


def test_commission_is_charged_on_top(app):
    p = factories.payment("100.00", commission_amount=Decimal("5.00"), commission_percent=Decimal("2.5"))
    assert (p.amount, p.commission, p.total) == (Decimal("100.00"), Decimal("7.50"), Decimal("107.50"))
    service.set_paid(p.id, amount=Decimal("107.50"), currency="RUB", source="test")
    assert _balance(p.account_id) == Decimal("100.00")


@pytest.mark.parametrize("fields,amount,message", [
    ({"active": False}, "10", "disabled"),
    ({"min_amount": Decimal("50")}, "49.99", "minimum"),
    ({"max_amount": Decimal("50")}, "50.01", "maximum"),
    ({}, "-1", "positive"),
    ({}, "1.001", "decimals"),
    ({"currency": "USD"}, "10", "takes USD"),
])
def test_create_payment_refusals(app, fields, amount, message):
    user = factories.client()
    pm = factories.method(**fields)
    with pytest.raises(service.PaymentCreateError, match=message):
        service.create_payment(user.account_id, pm.id, amount)
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 0


def test_unknown_payment(app):
    with pytest.raises(service.PaymentNotFound):
        service.set_paid(999, amount=Decimal("1"), currency="RUB", source="test")


def test_refunds_partial_then_full(app):
    p = factories.payment("100.00")
    service.set_paid(p.id, amount=Decimal("100.00"), currency="RUB", source="test")
    with pytest.raises(service.RefundError, match="At most 100.00"):
        service.request_refund(p.id, Decimal("100.01"), source="admin")
    r1 = service.request_refund(p.id, Decimal("30.00"), source="admin", reason="partial")
    assert _balance(p.account_id) == Decimal("70.00")
    # only one refund at a time: the payment is pending_return
    with pytest.raises(service.RefundError, match="“Refund pending”"):
        service.request_refund(p.id, Decimal("1.00"), source="admin")
    assert service.finish_refund(r1.id, source="gateway").status == "paid"
    assert service.finish_refund(r1.id, source="gateway").already
    r2 = service.request_refund(p.id, Decimal("70.00"), source="admin")
    assert service.finish_refund(r2.id, source="gateway").status == "returned"
    assert _balance(p.account_id) == Decimal("0.00") == _ledger_sum(p.account_id)
    with pytest.raises(service.RefundError):
        service.request_refund(p.id, Decimal("0.01"), source="admin")


def test_failed_refund_gives_money_back(app):
    p = factories.payment("40.00")
    service.set_paid(p.id, amount=Decimal("40.00"), currency="RUB", source="test")
    r = service.request_refund(p.id, Decimal("40.00"), source="admin")
    assert _balance(p.account_id) == Decimal("0.00")
    assert service.fail_refund(r.id, source="gateway", info="refused").status == "paid"
    assert _balance(p.account_id) == Decimal("40.00") == _ledger_sum(p.account_id)
    db.session.expire_all()
    assert db.session.get(Payment, p.id).refundable == Decimal("40.00")


def test_refund_needs_allow_refund(app):
    p = factories.payment("40.00", allow_refund=False)
    service.set_paid(p.id, amount=Decimal("40.00"), currency="RUB", source="test")
    with pytest.raises(service.RefundError, match="not allowed"):
        service.request_refund(p.id, Decimal("1.00"), source="admin")


def test_events_never_keep_secrets(app):
    p = factories.payment("10.00")
    service.set_paid(p.id, amount=Decimal("10.00"), currency="RUB", source="test",
                     data={"password2": "Secret123", "OutSum": "10.00", "nested": {"secret": "x"}})
    event = db.session.scalars(select(PaymentEvent).order_by(PaymentEvent.id.desc())).first()
    assert event.data == {"password2": "***", "OutSum": "10.00", "nested": {"secret": "***"}}


def test_broadcast_after_commit(app):
    seen = []

    class Listener:
        from billcore import hookimpl

        @staticmethod
        @hookimpl
        def billcore_payment_changed(payment_id, old_status, new_status, event_kind):
            # the change is visible to a fresh query: the hook runs after the commit
            with db.engine.connect() as conn:
                status = conn.scalar(select(Payment.status).where(Payment.id == payment_id))
            seen.append((old_status, new_status, status))

    registry = app.extensions["billcore.modules"]
    registry.pm.register(Listener, name="listener")
    p = factories.payment("10.00")
    service.set_paid(p.id, amount=Decimal("10.00"), currency="RUB", source="test")
    service.set_paid(p.id, amount=Decimal("10.00"), currency="RUB", source="test")
    assert seen == [("new", "inpay", "inpay"), ("inpay", "paid", "paid")]


@pytest.mark.parametrize("threads", [16])
def test_parallel_set_paid_credits_once(app, threads):
    """16 threads, each on its own connection, credit the same payment at once: one ledger entry."""
    p = factories.payment("123.45")
    results = run_together(app, [lambda: service.set_paid(p.id, amount=Decimal("123.45"), currency="RUB",
                                                          source="t").result] * threads)
    assert sorted(results) == ["already"] * (threads - 1) + ["changed"]
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 1
    assert _balance(p.account_id) == Decimal("123.45") == _ledger_sum(p.account_id)


def test_parallel_credits_of_one_account_add_up(app):
    """Different payments of the same account credited at once: the balance is the exact sum."""
    user = factories.client()
    pm = factories.method()
    payments = [service.create_payment(user.account_id, pm.id, Decimal("0.10")) for _ in range(10)]
    outcomes = run_together(app, [lambda pid=x.id: service.set_paid(pid, amount=Decimal("0.10"), currency="RUB",
                                                                     source="t").result for x in payments])
    assert outcomes == ["changed"] * len(payments)
    assert _balance(user.account_id) == Decimal("1.00") == _ledger_sum(user.account_id)


@pytest.mark.parametrize("write", ["credit", "correction", "refund"])
def test_a_credit_does_not_wait_for_a_new_payment_of_the_same_account(app, write):
    """A transaction that is creating a payment for an account (an automatic payment's claim) holds the
    KEY SHARE lock its foreign key takes on the account until it commits: a credit of another payment of
    that account, an admin's correction or a refund's debit goes ahead meanwhile (their FOR NO KEY
    UPDATE does not conflict with it; FOR UPDATE would wait)."""
    if is_sqlite(db.engine):
        pytest.skip("row locks exist on PostgreSQL only (SQLite's transaction holds the whole database)")
    p = factories.payment("5.00")
    if write == "refund":  # paid (5.00) before; the refund takes 2.00 back
        service.set_paid(p.id, amount=Decimal("5.00"), currency="RUB", source="test")
    done = threading.Event()

    def credit() -> None:
        try:
            with app.app_context():
                if write == "credit":
                    service.set_paid(p.id, amount=Decimal("5.00"), currency="RUB", source="test")
                elif write == "correction":
                    adjust_balance(p.account_id, Decimal("5.00"), reason="goodwill", source="test", actor="admin")
                else:
                    service.request_refund(p.id, Decimal("2.00"), source="test")
                db.session.remove()
        finally:
            done.set()

    creating = db.engine.connect()
    creating.execute(insert(Payment).values(
        account_id=p.account_id, paymethod_id=p.paymethod_id, amount=Decimal("1.00"), commission=Decimal("0.00"),
        total=Decimal("1.00"), currency="RUB", status="new", refunded_amount=Decimal("0.00"), gateway_data={},
        created_at=p.created_at, updated_at=p.created_at))  # not committed: the account's KEY SHARE is held
    thread = threading.Thread(target=credit, daemon=True)
    try:
        thread.start()
        went_ahead = done.wait(10)
    finally:
        creating.rollback()
        creating.close()
        thread.join(30)
    assert went_ahead
    expected = Decimal("3.00") if write == "refund" else Decimal("5.00")
    assert _balance(p.account_id) == expected == _ledger_sum(p.account_id)


def test_database_forbids_second_credit_entry(app):
    """Belt and braces: even code that bypasses the service cannot write a second credit entry."""
    from sqlalchemy.exc import IntegrityError

    p = factories.payment("5.00")
    service.set_paid(p.id, amount=Decimal("5.00"), currency="RUB", source="test")
    db.session.add(LedgerEntry(account_id=p.account_id, payment_id=p.id, kind="payment",
                               amount=Decimal("5.00"), balance_after=Decimal("10.00")))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


@pytest.mark.parametrize("amount", ["1e30", "99999999999999999999999999999999", "1000000000000.00"])
def test_huge_amounts_are_refused_cleanly(app, amount):
    user = factories.client()
    pm = factories.method()
    with pytest.raises(service.PaymentCreateError, match="too large"):
        service.create_payment(user.account_id, pm.id, amount)


def test_amount_plus_commission_must_fit(app):
    user = factories.client()
    pm = factories.method(commission_percent=Decimal("50"))
    with pytest.raises(service.PaymentCreateError, match="too large"):
        service.create_payment(user.account_id, pm.id, "999999999999.99")


def _event_count(payment_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(PaymentEvent).where(PaymentEvent.payment_id == payment_id))


def test_a_write_refused_by_the_database_rolls_the_whole_credit_back(app):
    """If the database refuses one of a credit's writes (here: a stray credit entry already exists for the
    payment, so the ledger's unique index refuses the second), the caller gets SQLAlchemy's IntegrityError
    and nothing of the credit remains: status, balance, events. On PostgreSQL the writes are one
    statement (billcore.prepared.execute_together), so the whole statement fails."""
    from sqlalchemy.exc import IntegrityError

    p = factories.payment("7.00")
    db.session.add(LedgerEntry(account_id=p.account_id, payment_id=p.id, kind="payment",
                               amount=Decimal("0.01"), balance_after=Decimal("0.01")))
    db.session.commit()
    events = _event_count(p.id)
    before = _balance(p.account_id)
    status = db.session.get(Payment, p.id).status
    with pytest.raises(IntegrityError):
        service.set_paid(p.id, amount=Decimal("7.00"), currency="RUB", source="test")
    db.session.expire_all()
    assert db.session.get(Payment, p.id).status == status == "inpay"
    assert _balance(p.account_id) == before
    assert _event_count(p.id) == events
    # the connection went back to the pool in a usable state: the next credit works
    other = service.create_payment(p.account_id, p.paymethod_id, Decimal("3.00"))
    assert service.set_paid(other.id, amount=Decimal("3.00"), currency="RUB", source="test").changed
    assert _balance(p.account_id) == before + Decimal("3.00")


class _Refused(Exception):
    pass


def test_verify_sees_the_method_and_its_secrets_under_the_lock(app):
    """set_paid(verify=...) hands the gateway's check the payment and its method's full settings, read in
    the credit's own transaction; returning normally lets the credit go on."""
    from billcore.crypto import encrypt_json

    p = factories.payment("12.00", settings={"merchant": "m-1"},
                          secrets_encrypted=encrypt_json({"secret": "verify-secret-1"}))
    seen = []
    outcome = service.set_paid(p.id, amount=Decimal("12.00"), currency="RUB", source="test",
                               verify=seen.append)
    assert outcome.changed and outcome.status == "paid"
    [found] = seen
    assert (found.payment_id, found.status, found.total, found.currency) == (p.id, "inpay", Decimal("12.00"), "RUB")
    assert (found.module, found.active, found.account_id, found.paymethod_id) == ("pmcoretest", True, p.account_id,
                                                                                  p.paymethod_id)
    assert found.settings == {"merchant": "m-1", "secret": "verify-secret-1"}


@pytest.mark.parametrize("start", ["inpay", "paid"])
def test_verify_refusing_changes_and_records_nothing(app, start):
    """A refusal raised by verify reaches the caller and rolls the transaction back: no status change, no
    credit, and no event (not even the 'already paid' one a genuine repeat would record)."""
    p = factories.payment("9.00")
    if start == "paid":
        service.set_paid(p.id, amount=Decimal("9.00"), currency="RUB", source="test")
    events, before = _event_count(p.id), _balance(p.account_id)

    def refuse(found):
        raise _Refused(f"bad signature for {found.payment_id}")

    with pytest.raises(_Refused, match=f"bad signature for {p.id}"):
        service.set_paid(p.id, amount=Decimal("9.00"), currency="RUB", source="test", verify=refuse)
    db.session.expire_all()
    assert db.session.get(Payment, p.id).status == start
    assert _balance(p.account_id) == before and _event_count(p.id) == events
    with pytest.raises(_Refused):
        service.set_cancelled(p.id, source="test", reason="gateway failure", verify=refuse)
    assert _event_count(p.id) == events
    # the lock was released: the next call goes through
    assert service.set_paid(p.id, amount=Decimal("9.00"), currency="RUB", source="test").status == "paid"


def test_verify_of_an_unknown_payment_is_not_called(app):
    called = []
    with pytest.raises(service.PaymentNotFound):
        service.set_paid(987654321, amount=Decimal("1.00"), currency="RUB", source="test", verify=called.append)
    assert called == []
