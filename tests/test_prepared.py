"""billcore.prepared: writes on the DBAPI cursor store what SQLAlchemy's own execution stores."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.exc import IntegrityError

from billcore.db import db
from billcore.models import Account, PaymentEvent
from billcore.prepared import PreparedWrite
from tests import factories

EVENTS, ACCOUNTS = PaymentEvent.__table__, Account.__table__
WHEN = datetime(2026, 11, 28, 9, 30, 15, 123456, tzinfo=timezone.utc)


def _event_values(payment_id: int, outcome: str) -> dict:
    return {"payment_id": payment_id, "kind": "notification", "source": "test", "status_from": "inpay",
            "status_to": None, "outcome": outcome, "answer": "OK1", "actor": None,
            "data": {"OutSum": "10.000000", "nested": {"list": [1, "два", None]}, "empty": ""},
            "created_at": WHEN}


def _fresh() -> None:
    # end the test session's read transaction: on SQLite (WAL) it would keep its snapshot from before
    db.session.rollback()


@contextmanager
def _statements_seen() -> Iterator[list[str]]:
    """The statements a before_cursor_execute listener sees meanwhile (as instrumentation would)."""
    seen: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)


def _stored(outcome: str) -> PaymentEvent:
    _fresh()
    return db.session.scalars(select(PaymentEvent).where(PaymentEvent.outcome == outcome)).one()


def test_an_insert_stores_exactly_what_sqlalchemy_stores(app):
    p = factories.payment("10.00")
    prepared = PreparedWrite(insert(EVENTS).inline())
    with db.engine.begin() as conn:
        prepared.execute(conn, _event_values(p.id, "by the cursor"))
        conn.execute(insert(EVENTS), _event_values(p.id, "by sqlalchemy"))
    ours, theirs = _stored("by the cursor"), _stored("by sqlalchemy")
    for column in ("payment_id", "kind", "source", "status_from", "status_to", "answer", "actor", "data",
                   "created_at"):
        assert getattr(ours, column) == getattr(theirs, column), column
    assert ours.created_at == WHEN and ours.data["nested"] == {"list": [1, "два", None]}


def test_updates_with_different_parameter_names_each_set_only_their_columns(app):
    user = factories.client()
    prepared = PreparedWrite(update(ACCOUNTS).where(ACCOUNTS.c.id == bindparam("b_id")))
    with db.engine.begin() as conn:
        assert prepared.execute(conn, {"b_id": user.account_id, "balance": Decimal("12.34")}) == 1
        assert prepared.execute(conn, {"b_id": user.account_id, "currency": "USD"}) == 1
        assert prepared.execute(conn, {"b_id": 987654321, "currency": "EUR"}) == 0
    _fresh()
    account = db.session.get(Account, user.account_id)
    assert (account.balance, account.currency) == (Decimal("12.34"), "USD")


def test_a_column_left_to_a_python_default_is_refused_before_anything_is_sent(app):
    """SQLAlchemy fills ``default=`` columns in its own execution; this path would leave them empty."""
    p = factories.payment("10.00")
    values = _event_values(p.id, "without created_at")
    del values["created_at"]  # PaymentEvent.created_at has default=utcnow
    with db.engine.begin() as conn:  # the refusal is caught inside, so the transaction commits
        with pytest.raises(ValueError, match="defaults"):
            PreparedWrite(insert(EVENTS).inline()).execute(conn, values)
    _fresh()
    assert db.session.scalars(select(PaymentEvent).where(PaymentEvent.outcome == "without created_at")).all() == []


def test_a_refused_write_raises_sqlalchemys_exception_and_rolls_back(app):
    p = factories.payment("10.00")
    prepared = PreparedWrite(insert(EVENTS).inline())
    with pytest.raises(IntegrityError):
        with db.engine.begin() as conn:
            prepared.execute(conn, _event_values(p.id, "first, rolled back"))
            prepared.execute(conn, {**_event_values(p.id, "kind missing"), "kind": None})  # NOT NULL
    _fresh()
    assert db.session.scalars(select(PaymentEvent).where(PaymentEvent.outcome.like("%rolled back"))).all() == []
    with db.engine.begin() as conn:  # the pooled connection is usable again
        prepared.execute(conn, _event_values(p.id, "after the failure"))
    assert _stored("after the failure").payment_id == p.id


def test_statement_listeners_still_see_every_write(app):
    """With a before_cursor_execute listener (instrumentation, fault injection) the write takes
    SQLAlchemy's own path, so the listener sees it."""
    p = factories.payment("10.00")
    with _statements_seen() as seen, db.engine.begin() as conn:
        PreparedWrite(insert(EVENTS).inline()).execute(conn, _event_values(p.id, "watched"))
    assert any(s.startswith("INSERT INTO payment_events") for s in seen)
    assert _stored("watched").payment_id == p.id


def test_a_row_reads_exactly_what_sqlalchemy_reads(app):
    """The service's locking lookup: every column (Decimal money, JSON, booleans, text) comes back as
    SQLAlchemy's own execution gives it; no row is None."""
    from billcore.payments.service import _LOCK_PAYMENT_AND_ACCOUNT_ROW as lookup

    p = factories.payment("10.05", settings={"merchant": "m-1", "flags": [True, None]})
    with db.engine.begin() as conn:
        conn.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == p.account_id).values(balance=Decimal("1234.56")))
        ours = lookup.one_or_none(conn, {"payment_id": p.id})
        theirs = conn.execute(lookup.statement, {"payment_id": p.id}).one()
        assert lookup.one_or_none(conn, {"payment_id": 987654321}) is None
    assert ours._asdict() == theirs._asdict()
    assert (ours.total, ours.balance, ours.active) == (Decimal("10.05"), Decimal("1234.56"), True)
    assert ours.settings == {"merchant": "m-1", "flags": [True, None]}
    assert type(ours.total) is Decimal and type(ours.active) is bool


def test_a_watched_row_lookup_goes_through_sqlalchemy(app):
    from billcore.payments.service import _LOCK_PAYMENT_ROW as lookup

    p = factories.payment("10.00")
    with _statements_seen() as seen, db.engine.begin() as conn:
        row = lookup.one_or_none(conn, {"payment_id": p.id})
    assert any("FROM payments" in s for s in seen)
    assert (row.id, row.status, row.module) == (p.id, "inpay", "pmcoretest")


def test_writes_together_with_the_same_parameter_names_each_get_their_own_values(app):
    """execute_together (one statement on PostgreSQL, one by one elsewhere): two inserts whose columns
    share every name and an update, each with its own values."""
    from billcore.prepared import execute_together

    p = factories.payment("10.00")
    insert_event = PreparedWrite(insert(EVENTS).inline())
    set_balance = PreparedWrite(update(ACCOUNTS).where(ACCOUNTS.c.id == bindparam("b_id")))
    with db.engine.begin() as conn:
        execute_together(conn, [(insert_event, _event_values(p.id, "together 1")),
                                (set_balance, {"b_id": p.account_id, "balance": Decimal("77.70")}),
                                (insert_event, {**_event_values(p.id, "together 2"), "kind": "poll",
                                                "data": {"second": True}})])
    first, second = _stored("together 1"), _stored("together 2")
    assert (first.kind, first.data["OutSum"]) == ("notification", "10.000000")
    assert (second.kind, second.data) == ("poll", {"second": True})
    assert db.session.get(Account, p.account_id).balance == Decimal("77.70")


def test_writes_together_fail_and_roll_back_together(app):
    from billcore.prepared import execute_together

    p = factories.payment("10.00")
    insert_event = PreparedWrite(insert(EVENTS).inline())
    set_balance = PreparedWrite(update(ACCOUNTS).where(ACCOUNTS.c.id == bindparam("b_id")))
    with pytest.raises(IntegrityError):
        with db.engine.begin() as conn:
            execute_together(conn, [(set_balance, {"b_id": p.account_id, "balance": Decimal("5.00")}),
                                    (insert_event, {**_event_values(p.id, "refused"), "kind": None})])
    _fresh()
    assert db.session.get(Account, p.account_id).balance == Decimal("0.00")
    assert db.session.scalars(select(PaymentEvent).where(PaymentEvent.outcome == "refused")).all() == []


def test_two_updates_of_one_table_are_refused_together_on_every_database(app):
    from billcore.prepared import execute_together

    user = factories.client()
    set_balance = PreparedWrite(update(ACCOUNTS).where(ACCOUNTS.c.id == bindparam("b_id")))
    with db.engine.begin() as conn, pytest.raises(ValueError, match="two UPDATEs"):
        execute_together(conn, [(set_balance, {"b_id": user.account_id, "balance": Decimal("1.00")}),
                                (set_balance, {"b_id": user.account_id, "currency": "USD"})])
    _fresh()
    assert db.session.get(Account, user.account_id).balance == Decimal("0.00")


def test_placeholders_are_renamed_but_escaped_percent_signs_are_not():
    from billcore.prepared import _renamed

    sql = "UPDATE t SET a=%(a)s::VARCHAR, b='%%(b)s' || %%%(c)s WHERE id = %(id)s"
    assert _renamed(sql, "w1_") == "UPDATE t SET a=%(w1_a)s::VARCHAR, b='%%(b)s' || %%%(w1_c)s WHERE id = %(w1_id)s"


def test_a_value_its_type_cannot_convert_is_sqlalchemys_statement_error(app):
    from sqlalchemy.exc import SQLAlchemyError, StatementError

    p = factories.payment("10.00")
    with pytest.raises(StatementError) as raised, db.engine.begin() as conn:
        PreparedWrite(insert(EVENTS).inline()).execute(conn, {**_event_values(p.id, "bad data"),
                                                               "data": {"amount": Decimal("1.00")}})
    assert isinstance(raised.value, SQLAlchemyError) and "Decimal" in str(raised.value)


def test_a_lost_connection_is_invalidated_and_the_pool_recovers(app):
    """The driver's connection dies in the middle of a transaction: the error says so, the connection is
    not handed back to the pool, and the next transaction works."""
    from sqlalchemy.exc import DBAPIError

    p = factories.payment("10.00")
    prepared = PreparedWrite(insert(EVENTS).inline())
    with pytest.raises(DBAPIError) as raised:
        with db.engine.connect() as conn, conn.begin():
            conn.connection.driver_connection.close()  # what a server restart looks like to the client
            prepared.execute(conn, _event_values(p.id, "on a dead connection"))
    assert raised.value.connection_invalidated
    with db.engine.begin() as conn:
        prepared.execute(conn, _event_values(p.id, "after the reconnect"))
    assert _stored("after the reconnect").payment_id == p.id
