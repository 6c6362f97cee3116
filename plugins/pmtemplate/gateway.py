"""The fake gateway's own books: operations, refunds and recurring charges.

A real module asks the real gateway over HTTP here (``requests`` with a timeout). The fake gateway
keeps its records in a small SQLite file of its own in the instance folder (stdlib ``sqlite3``): not in
process memory, because several worker processes serve billcore, and not in billcore's tables, because
the gateway is "another system". Each operation is one payment at the gateway, found by
(merchant ID, billcore payment id).
"""
from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import current_app

DB_FILE = "pmtemplate_fakegw.sqlite"

# Operation states at the fake gateway.
PENDING, PAID, FAILED = "pending", "paid", "failed"

SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    op_id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    payment_id INTEGER NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    parent_op TEXT,
    test INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (merchant_id, payment_id)
);
CREATE TABLE IF NOT EXISTS refunds (
    refund_id TEXT PRIMARY KEY,
    op_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    state TEXT NOT NULL,
    info TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
"""


def db_path() -> Path:
    """Where the current app's fake gateway keeps its records."""
    return Path(current_app.instance_path) / DB_FILE


@contextmanager
def _connect() -> Iterator[sqlite3.Connection]:
    """One transaction on the gateway's file; ``BEGIN IMMEDIATE`` serialises writers across processes."""
    path = db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        conn.executescript(SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def open_operation(merchant_id: str, payment_id: int, amount: Decimal | str, currency: str,
                   description: str = "", test: bool = False) -> dict[str, Any]:
    """The operation for this payment, created ``pending`` the first time the payment page opens."""
    with _connect() as conn:
        row = conn.execute("SELECT * FROM operations WHERE merchant_id = ? AND payment_id = ?",
                           (merchant_id, payment_id)).fetchone()
        if row is None:
            op_id = "op-" + uuid.uuid4().hex[:16]
            conn.execute(
                "INSERT INTO operations (op_id, merchant_id, payment_id, amount, currency, description, state,"
                " test, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (op_id, merchant_id, payment_id, str(amount), currency, description, PENDING, int(test),
                 _now(), _now()))
            row = conn.execute("SELECT * FROM operations WHERE op_id = ?", (op_id,)).fetchone()
        return dict(row)


def set_state(op_id: str, state: str) -> dict[str, Any]:
    """Settle an operation as ``paid`` or ``failed``; a paid operation stays paid."""
    with _connect() as conn:
        conn.execute("UPDATE operations SET state = ?, updated_at = ? WHERE op_id = ? AND state != ?",
                     (state, _now(), op_id, PAID))
        return dict(conn.execute("SELECT * FROM operations WHERE op_id = ?", (op_id,)).fetchone())


def find_operation(merchant_id: str, payment_id: int) -> dict[str, Any] | None:
    """The gateway's operation for a billcore payment, or None when the gateway never saw it."""
    with _connect() as conn:
        row = conn.execute("SELECT * FROM operations WHERE merchant_id = ? AND payment_id = ?",
                           (merchant_id, payment_id)).fetchone()
        return dict(row) if row else None


def operations(limit: int = 50) -> list[dict[str, Any]]:
    """The latest operations, newest first (for the ``pmtemplate ops`` command)."""
    with _connect() as conn:
        rows = conn.execute("SELECT * FROM operations ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]


def refund(merchant_id: str, payment_id: int, amount: Decimal) -> dict[str, Any]:
    """Return ``amount`` of a paid operation: ``finished`` at once, or ``failed`` with the reason."""
    with _connect() as conn:
        op = conn.execute("SELECT * FROM operations WHERE merchant_id = ? AND payment_id = ?",
                          (merchant_id, payment_id)).fetchone()
        refund_id = "rf-" + uuid.uuid4().hex[:16]
        if op is None or op["state"] != PAID:
            state, info, op_id = FAILED, "operation not paid at the gateway", op["op_id"] if op else ""
        else:
            done = sum((Decimal(r["amount"]) for r in conn.execute(
                "SELECT amount FROM refunds WHERE op_id = ? AND state != ?", (op["op_id"], FAILED))), Decimal(0))
            op_id = op["op_id"]
            if done + amount > Decimal(op["amount"]):
                state, info = FAILED, "refund exceeds the paid amount"
            else:
                state, info = "finished", ""
        conn.execute("INSERT INTO refunds (refund_id, op_id, amount, state, info, created_at)"
                     " VALUES (?, ?, ?, ?, ?, ?)", (refund_id, op_id, str(amount), state, info, _now()))
        return {"refund_id": refund_id, "op_id": op_id, "amount": str(amount), "state": state, "info": info}


def find_refund(refund_id: str) -> dict[str, Any] | None:
    """A refund the gateway recorded, or None."""
    with _connect() as conn:
        row = conn.execute("SELECT * FROM refunds WHERE refund_id = ?", (refund_id,)).fetchone()
        return dict(row) if row else None


def charge(merchant_id: str, parent_payment_id: int, payment_id: int, amount: Decimal | str,
           currency: str) -> dict[str, Any]:
    """A recurring charge against a paid parent operation: a new operation, ``paid`` or ``failed``."""
    with _connect() as conn:
        parent = conn.execute("SELECT * FROM operations WHERE merchant_id = ? AND payment_id = ?",
                              (merchant_id, parent_payment_id)).fetchone()
        existing = conn.execute("SELECT * FROM operations WHERE merchant_id = ? AND payment_id = ?",
                                (merchant_id, payment_id)).fetchone()
        if existing is not None:  # charging the same child twice returns the first answer
            return dict(existing)
        state = PAID if parent is not None and parent["state"] == PAID else FAILED
        op_id = "op-" + uuid.uuid4().hex[:16]
        conn.execute(
            "INSERT INTO operations (op_id, merchant_id, payment_id, amount, currency, description, state,"
            " parent_op, test, created_at, updated_at) VALUES (?, ?, ?, ?, ?, '', ?, ?, 0, ?, ?)",
            (op_id, merchant_id, payment_id, str(amount), currency, state,
             parent["op_id"] if parent is not None else None, _now(), _now()))
        return dict(conn.execute("SELECT * FROM operations WHERE op_id = ?", (op_id,)).fetchone())
