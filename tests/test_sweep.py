"""``payments check``: one loop for payments and refunds; one broken item never stops the others."""
from __future__ import annotations

import logging
import re
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import OperationalError

from billcore.db import db, is_sqlite
from billcore.gateway import callback_context
from billcore.models import Account, LedgerEntry, Payment, PaymentEvent, Refund
from billcore.payments import refunds, service, sweep
from billcore.paymodule import GatewayStatus, RefundResult
from tests import fake_checkout_module as fake
from tests.commit_waits import commits_of
from tests.conftest import CLIENT, add_paymethod
from tests.test_checkout import app_config, capp  # noqa: F401  (the app with the fake module, on each backend)
from billcore.accounts import create_client

SECRET = "sw33p-secret-value"


def _inpay(account_id: int, method_id: int) -> int:
    p = service.create_payment(account_id, method_id, Decimal("100.00"))
    service.set_in_pay(p.id, source="test")
    return p.id


def _status(payment_id: int) -> str:
    db.session.rollback()
    return db.session.get(Payment, payment_id).status


def test_one_failing_item_does_not_stop_the_run(capp, monkeypatch, caplog):  # noqa: F811
    payer = create_client(*CLIENT, currency="RUB")
    method = add_paymethod("pmfakepay", {"secret": SECRET}, commission_amount=Decimal("5.00"))
    first, broken, last = (_inpay(payer.account_id, method.id) for _ in range(3))
    for pid in (first, broken, last):
        fake.CHECK[pid] = GatewayStatus(state="paid", amount=Decimal("105.00"), currency="RUB")
    # two refunds with a gateway id to follow; the first one's follow blows up
    paid = [_inpay(payer.account_id, method.id) for _ in range(2)]
    refund_ids = []
    for pid in paid:
        service.set_paid(pid, amount=Decimal("105.00"), currency="RUB", source="test")
        fake.REFUND["request"] = RefundResult(state="pending", external_id=f"RP-{pid}")
        refund_ids.append(refunds.refund_payment(pid, Decimal("10.00"), "admin@test.example", None).refund_id)
    fake.REFUND["status"] = RefundResult(state="finished")

    real_check, real_follow = sweep.check_payment, sweep.follow_refund

    def check(payment_id, source, **kw):
        if payment_id == broken:
            raise RuntimeError(f"bug while checking, key {SECRET}")
        return real_check(payment_id, source, **kw)

    def follow(refund_id, **kw):
        if refund_id == refund_ids[0]:
            raise KeyError("bug while following")
        return real_follow(refund_id, **kw)

    monkeypatch.setattr(sweep, "check_payment", check)
    monkeypatch.setattr(sweep, "follow_refund", follow)
    with caplog.at_level(logging.ERROR, logger="billcore.payments.sweep"):
        result = capp.test_cli_runner().invoke(args=["payments", "check", "--module", "pmfakepay"])
    assert result.exit_code == 0, result.output
    assert "3 payment(s) checked: 2 paid" in result.output
    assert "1 refund(s) followed: 1 finished" in result.output and "2 error(s)" in result.output
    assert re.search(r"2 error\(s\); took \d+\.\d s \+ \d+\.\d s\n", result.output)  # each pass's wall time
    assert f"payment {broken}: unexpected RuntimeError" in result.output
    assert f"refund {refund_ids[0]}: unexpected KeyError" in result.output
    assert (_status(first), _status(broken), _status(last)) == ("paid", "inpay", "paid")
    db.session.rollback()
    assert [db.session.get(Refund, r).status for r in refund_ids] == ["requested", "finished"]
    logged = [r for r in caplog.records if r.name == "billcore.payments.sweep"]
    assert len(logged) == 2
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in logged)
    assert f"payment {broken} failed" in text and SECRET not in text and SECRET not in result.output


def test_overdue_refund_without_a_gateway_id_is_followed_and_flagged(capp):  # noqa: F811
    payer = create_client(*CLIENT, currency="RUB")
    method = add_paymethod("pmfakepay", {"secret": SECRET})
    pid = _inpay(payer.account_id, method.id)
    service.set_paid(pid, amount=Decimal("100.00"), currency="RUB", source="test")
    fake.REFUND["request"] = ConnectionError("gateway down")
    refund_id = refunds.refund_payment(pid, Decimal("10.00"), "admin@test.example", None).refund_id
    fake.REFUND["status"] = RefundResult(state="pending")
    runner = capp.test_cli_runner()
    young = runner.invoke(args=["payments", "check"])
    assert young.exit_code == 0 and "; 0 refund(s) followed" in young.output
    capp.config["REFUND_ATTENTION_HOURS"] = 0
    output = runner.invoke(args=["payments", "check"]).output
    assert "1 refund(s) followed: 0 finished, 0 failed, 1 need an admin" in output
    db.session.rollback()
    assert db.session.get(Refund, refund_id).status == "requested"


def _another_host_could_claim(payment_id: int) -> bool:
    """Whether another connection (another host) gets the payment's claim now (given back at once)."""
    key = {"ns": sweep.POLL_LOCK, "key": sweep.lock_key(payment_id)}
    with db.engine.connect() as other:
        got = bool(other.execute(text(f"SELECT pg_try_advisory_lock({sweep.SCOPED_NAMESPACE}, :key)"), key).scalar())
        if got:
            other.execute(text(f"SELECT pg_advisory_unlock({sweep.SCOPED_NAMESPACE}, :key)"), key)
        other.commit()
    return got


def test_a_poll_books_its_answer_on_the_claims_connection(capp):  # noqa: F811
    """The claim's connection (PostgreSQL: the one holding the advisory lock) also carries the payment
    service's writes, so a poll checks out two connections (the claim's and the session's brief read)
    instead of three, and a gateway thread holds one connection during the call instead of two at peak."""
    payer = create_client(*CLIENT, currency="RUB")
    method = add_paymethod("pmfakepay", {"secret": SECRET})
    capp.config["GATEWAY_WORKERS"] = {"pmfakepay": 1}

    def checkouts_of_a_run(polls: int) -> int:
        pids = [_inpay(payer.account_id, method.id) for _ in range(polls)]
        checkouts = []
        listener = lambda *_: checkouts.append(1)  # noqa: E731
        event.listen(db.engine, "checkout", listener)
        try:
            result = sweep.sweep(["pmfakepay"])  # the payments of an earlier run were asked just now: left
        finally:
            event.remove(db.engine, "checkout", listener)
        assert (result.checked, result.unchanged, result.error_count) == (polls, polls, 0)
        assert [len(_polls(pid)) for pid in pids] == [1] * polls  # the poll written on the claim's connection
        return len(checkouts)

    # what a run costs whatever it polls (the count, the candidate queries) cancels out
    per_poll = (checkouts_of_a_run(5) - checkouts_of_a_run(2)) / 3
    assert per_poll == 2


def _polls(payment_id: int) -> list[PaymentEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == payment_id,
                                                              PaymentEvent.kind == "poll")))


@pytest.mark.parametrize("failing", ["INSERT INTO ledger_entries", "UPDATE payments"])
def test_a_credit_failing_on_the_claims_connection_is_rolled_back_whole_and_unlocked(capp, failing):  # noqa: F811
    """The claim's connection ran its lock in autocommit: the credit made on it afterwards is still one
    transaction (a failure half-way leaves nothing), and the lock is released even so."""
    payer = create_client(*CLIENT, currency="RUB")
    method = add_paymethod("pmfakepay", {"secret": SECRET})
    pid = _inpay(payer.account_id, method.id)
    fake.CHECK[pid] = GatewayStatus(state="paid", amount=Decimal("100.00"), currency="RUB")
    seen = []

    def fail(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith(failing):
            seen.append(statement)
            raise OperationalError(statement, parameters, Exception("injected: server closed the connection"))

    event.listen(db.engine, "before_cursor_execute", fail)
    try:
        result = sweep.sweep(["pmfakepay"])
    finally:
        event.remove(db.engine, "before_cursor_execute", fail)
    assert seen and result.error_count == 1
    db.session.rollback()
    assert _status(pid) == "inpay" and db.session.scalar(select(func.count(LedgerEntry.id))) == 0
    assert db.session.get(Account, payer.account_id).balance == Decimal("0.00")
    if not is_sqlite(db.engine):  # the claim was given back: another host may take it now
        assert _another_host_could_claim(pid)
    # the next run credits it, once
    assert sweep.sweep(["pmfakepay"]).paid == 1
    assert _status(pid) == "paid" and db.session.get(Account, payer.account_id).balance == Decimal("100.00")


def test_the_claim_is_held_during_the_gateway_call_and_given_back_after(capp):  # noqa: F811
    payer = create_client(*CLIENT, currency="RUB")
    method = add_paymethod("pmfakepay", {"secret": SECRET})
    pid = _inpay(payer.account_id, method.id)
    if is_sqlite(db.engine):
        pytest.skip("advisory-lock claims exist on PostgreSQL only; SQLite serves a single host")
    held = []

    def answer():  # while the gateway is being asked
        held.append(not _another_host_could_claim(pid))
        return GatewayStatus(state="pending", info="still waiting")

    fake.CHECK[pid] = answer
    assert sweep.sweep(["pmfakepay"]).checked == 1
    assert held == [True] and _another_host_could_claim(pid)


def test_a_followed_refund_is_booked_with_no_second_connection_held(capp, monkeypatch):  # noqa: F811
    """When the gateway's answer about a refund is booked, the session's read is over: the thread holds
    only its claim's connection (PostgreSQL), which the booking uses, not a second one beside it."""
    payer = create_client(*CLIENT, currency="RUB")
    method = add_paymethod("pmfakepay", {"secret": SECRET})
    pid = _inpay(payer.account_id, method.id)
    service.set_paid(pid, amount=Decimal("100.00"), currency="RUB", source="test")
    fake.REFUND["request"] = RefundResult(state="pending", external_id=f"RP-{pid}")
    refund_id = refunds.refund_payment(pid, Decimal("10.00"), "admin@test.example", None).refund_id
    fake.REFUND["status"] = RefundResult(state="finished")
    db.session.remove()
    # one gateway thread: with more, the main thread's next candidate query may hold a connection too
    capp.config["GATEWAY_WORKERS"] = {"pmfakepay": 1}
    held = []
    real_finish = service.finish_refund

    def finish(*args, **kwargs):
        held.append(db.engine.pool.checkedout())
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(service, "finish_refund", finish)
    result = sweep.sweep(["pmfakepay"])
    assert (result.refunds_followed, result.refunds_finished, result.error_count) == (1, 1, 0)
    assert held == [0 if is_sqlite(db.engine) else 1]
    db.session.rollback()
    assert db.session.get(Refund, refund_id).status == "finished"


def test_a_look_at_the_payment_after_the_last_write_does_not_keep_the_claim(capp, monkeypatch):  # noqa: F811
    """A read on the item's connection after its last write (a module's hook looking at the payment
    through ``gateway.callback_context``, which runs on the driver's cursor) leaves a transaction that
    SQLAlchemy does not know of: the claim is still given back, and the item is no error."""
    payer = create_client(*CLIENT, currency="RUB")
    method = add_paymethod("pmfakepay", {"secret": SECRET})
    pid = _inpay(payer.account_id, method.id)
    fake.CHECK[pid] = GatewayStatus(state="paid", amount=Decimal("100.00"), currency="RUB")
    looked = []
    real_check = sweep.check_payment

    def check_then_look(payment_id, source, **kwargs):
        outcome = real_check(payment_id, source, **kwargs)
        looked.append(callback_context(payment_id).status)
        return outcome

    monkeypatch.setattr(sweep, "check_payment", check_then_look)
    result = sweep.sweep(["pmfakepay"])
    assert (result.paid, result.error_count) == (1, 0), result.errors
    assert looked == ["paid"]
    if not is_sqlite(db.engine):  # another host may take the payment now
        assert _another_host_could_claim(pid)


def test_a_failed_unlock_closes_the_connection_so_the_claim_is_not_kept(capp, monkeypatch):  # noqa: F811
    """When the unlock itself fails, the claim's connection is closed instead of going back to the pool
    still holding the lock: its session's end gives the claim back."""
    payer = create_client(*CLIENT, currency="RUB")
    method = add_paymethod("pmfakepay", {"secret": SECRET})
    pid = _inpay(payer.account_id, method.id)
    if is_sqlite(db.engine):
        pytest.skip("advisory-lock claims exist on PostgreSQL only; SQLite serves a single host")
    real = sweep._outside_transaction

    def failing_unlock(conn, sql, params):
        if sql == sweep._UNLOCK:
            raise RuntimeError("injected: the unlock failed")
        return real(conn, sql, params)

    monkeypatch.setattr(sweep, "_outside_transaction", failing_unlock)
    result = sweep.sweep(["pmfakepay"])
    assert result.checked == 1 and result.error_count == 1
    assert _another_host_could_claim(pid)


def test_only_a_poll_that_changes_nothing_commits_without_waiting_for_the_disk(capp):  # noqa: F811
    """PostgreSQL: the poll's "still pending" event need not reach the disk before the next poll (lost in a
    crash, the next run asks again); a credit found by a poll always does."""
    if is_sqlite(db.engine):
        pytest.skip("synchronous_commit is PostgreSQL's (SQLite's WAL commits do not sync in billcore)")
    payer = create_client(*CLIENT, currency="RUB")
    method = add_paymethod("pmfakepay", {"secret": SECRET})
    capp.config["GATEWAY_WORKERS"] = {"pmfakepay": 1}
    pending, paid = _inpay(payer.account_id, method.id), _inpay(payer.account_id, method.id)
    fake.CHECK[paid] = GatewayStatus(state="paid", amount=Decimal("100.00"), currency="RUB", external_id="X1")
    with commits_of(db.engine, ("ledger_entries", "payment_events")) as commits:
        result = sweep.sweep(["pmfakepay"])
    assert (result.checked, result.paid, result.unchanged) == (2, 1, 1)
    writing = {writes: setting for setting, writes in commits if writes}
    assert writing == {("payment_events",): "off", ("ledger_entries", "payment_events"): "on"}, commits
    assert _status(pending) == "inpay" and _status(paid) == "paid"
