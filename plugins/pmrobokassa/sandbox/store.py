"""The sandbox gateway's own records: a small SQLite file (WAL) in the app's instance folder.

Not billcore's database on purpose: the sandbox stands for a remote gateway, so its state must not
share tables or transactions with the billing it serves. Not process memory either: several worker
processes (and the delivery threads) must see the same operations. Each thread keeps a connection of
its own to the file, so the store is safe to use from any thread.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import current_app

STORE_FILE = "pmrobokassa-sandbox.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkouts (
    token TEXT PRIMARY KEY,
    shop TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    shop TEXT NOT NULL,
    inv_id TEXT NOT NULL,
    op_key TEXT NOT NULL UNIQUE,
    state INTEGER NOT NULL,
    out_sum TEXT NOT NULL,
    fee TEXT NOT NULL DEFAULT '0.00',
    inc_curr_label TEXT NOT NULL DEFAULT '',
    payment_method TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    is_test INTEGER NOT NULL DEFAULT 0,
    shp TEXT NOT NULL DEFAULT '{}',
    culture TEXT NOT NULL DEFAULT '',
    fault TEXT NOT NULL DEFAULT 'normal',
    parent_inv_id TEXT,
    created_at TEXT NOT NULL,
    state_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS operations_shop_inv ON operations (shop, inv_id);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_id INTEGER NOT NULL,
    chain TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    url TEXT NOT NULL,
    at TEXT NOT NULL,
    status INTEGER,
    answer TEXT NOT NULL DEFAULT '',
    accepted INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS attempts_operation ON attempts (operation_id);
CREATE TABLE IF NOT EXISTS refunds (
    request_id TEXT PRIMARY KEY,
    operation_id INTEGER NOT NULL,
    amount TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    finish_at REAL NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'finished',
    polls INTEGER NOT NULL DEFAULT 0
);
"""


def now_iso() -> str:
    """The current UTC time as Robokassa writes dates (ISO 8601 with an offset)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Operation:
    """One payment operation of the sandbox gateway (what OpStateExt reports)."""

    id: int
    shop: str
    inv_id: str
    op_key: str
    state: int
    out_sum: Decimal
    fee: Decimal
    inc_curr_label: str
    payment_method: str
    email: str
    description: str
    is_test: bool
    shp: dict[str, str]
    culture: str
    fault: str
    parent_inv_id: str | None
    created_at: str
    state_at: str


def _operation(row: sqlite3.Row) -> Operation:
    return Operation(
        id=row["id"], shop=row["shop"], inv_id=row["inv_id"], op_key=row["op_key"], state=row["state"],
        out_sum=Decimal(row["out_sum"]), fee=Decimal(row["fee"]), inc_curr_label=row["inc_curr_label"],
        payment_method=row["payment_method"], email=row["email"], description=row["description"],
        is_test=bool(row["is_test"]), shp=json.loads(row["shp"]), culture=row["culture"],
        fault=row["fault"], parent_inv_id=row["parent_inv_id"], created_at=row["created_at"],
        state_at=row["state_at"],
    )


class SandboxStore:
    """Access to the sandbox's SQLite file at ``path``; cheap to create, safe across threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()  # this thread's connection and how deeply it is in use
        with self.connect() as conn:
            # WAL lets the delivery threads and other workers read while one writes.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's autocommit connection; use ``BEGIN IMMEDIATE`` for read-modify-write sequences.

        The connection is opened on a thread's first call and kept for its next ones: opening one and
        reading the schema again took about half a millisecond a call, half of what answering OpStateExt
        costs. A block inside another shares its connection and transaction (so it cannot begin one of
        its own). A transaction the block left open (an exception before its COMMIT) is rolled back when
        the outermost block ends, as closing the connection did.
        """
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():  # never a connection inherited through a fork
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            local.conn, local.depth, local.pid = conn, 0, os.getpid()
        local.depth += 1
        try:
            yield conn
        finally:
            local.depth -= 1
            if local.depth == 0 and conn.in_transaction:
                conn.rollback()

    def close(self) -> None:
        """Close this thread's connection (the others close when their threads end); not inside a block."""
        if getattr(self._local, "depth", 0):
            raise RuntimeError("the sandbox store's connection is in use by this thread")
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()

    # --- checkouts: a payment page shown but not yet paid or cancelled ---

    def add_checkout(self, shop: str, params: dict[str, Any]) -> str:
        """Remember a validated payment request; returns the token the payment page carries."""
        token = uuid.uuid4().hex
        with self.connect() as conn:
            conn.execute("INSERT INTO checkouts (token, shop, params, created_at) VALUES (?, ?, ?, ?)",
                         (token, shop, json.dumps(params), now_iso()))
        return token

    def take_checkout(self, token: str) -> tuple[str, dict[str, Any]] | None:
        """Mark the checkout used and return ``(shop, params)``; None when unknown or already used
        (so a double click on Pay makes one operation)."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT shop, params, used FROM checkouts WHERE token = ?", (token,)).fetchone()
            if row is None or row["used"]:
                conn.execute("ROLLBACK")
                return None
            conn.execute("UPDATE checkouts SET used = 1 WHERE token = ?", (token,))
            conn.execute("COMMIT")
        return row["shop"], json.loads(row["params"])

    def get_checkout(self, token: str) -> tuple[str, dict[str, Any], bool] | None:
        """``(shop, params, used)`` of a checkout, or None."""
        with self.connect() as conn:
            row = conn.execute("SELECT shop, params, used FROM checkouts WHERE token = ?", (token,)).fetchone()
        return None if row is None else (row["shop"], json.loads(row["params"]), bool(row["used"]))

    # --- operations ---

    def next_inv_id(self, shop: str) -> str:
        """An InvId for a request that came without one (Robokassa assigns it itself, §1.2)."""
        with self.connect() as conn:
            rows = conn.execute("SELECT inv_id FROM operations WHERE shop = ?", (shop,)).fetchall()
        numbers = [int(r["inv_id"]) for r in rows if r["inv_id"].isdigit()]
        return str(max(numbers, default=1_000_000) + 1)

    def add_operation(self, *, shop: str, inv_id: str, state: int, out_sum: Decimal, fee: Decimal,
                      inc_curr_label: str, payment_method: str, email: str, description: str,
                      is_test: bool, shp: dict[str, str], culture: str, fault: str,
                      parent_inv_id: str | None = None) -> Operation:
        """Record a new operation with a fresh ``OpKey`` and return it."""
        # Real OpKeys look like "0005F891-8CCD-434B-8455-816AFFFDBF37-0VOisWikFF" (docs/robokassa.md §2.6).
        op_key = f"{str(uuid.uuid4()).upper()}-{uuid.uuid4().hex[:10]}"
        stamp = now_iso()
        with self.connect() as conn:
            cur = conn.execute(
                "INSERT INTO operations (shop, inv_id, op_key, state, out_sum, fee, inc_curr_label,"
                " payment_method, email, description, is_test, shp, culture, fault, parent_inv_id,"
                " created_at, state_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (shop, inv_id, op_key, state, str(out_sum), str(fee), inc_curr_label, payment_method,
                 email, description, int(is_test), json.dumps(shp), culture, fault, parent_inv_id,
                 stamp, stamp))
            op_id = cur.lastrowid
        return self.operation(op_id)

    def operation(self, op_id: int) -> Operation | None:
        """One operation by its row id."""
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM operations WHERE id = ?", (op_id,)).fetchone()
        return None if row is None else _operation(row)

    def operation_by_key(self, op_key: str) -> Operation | None:
        """One operation by its ``OpKey``."""
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM operations WHERE op_key = ?", (op_key,)).fetchone()
        return None if row is None else _operation(row)

    def find_operations(self, shop: str, inv_id: str) -> list[Operation]:
        """The operations of a shop with this InvId, oldest first."""
        with self.connect() as conn:
            rows = conn.execute("SELECT * FROM operations WHERE shop = ? AND inv_id = ? ORDER BY id",
                                (shop, inv_id)).fetchall()
        return [_operation(r) for r in rows]

    def recent_operations(self, limit: int = 100) -> list[Operation]:
        """The latest operations, newest first."""
        with self.connect() as conn:
            rows = conn.execute("SELECT * FROM operations ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [_operation(r) for r in rows]

    def set_state(self, op_id: int, state: int) -> None:
        """Change an operation's state code (and its state date)."""
        with self.connect() as conn:
            conn.execute("UPDATE operations SET state = ?, state_at = ? WHERE id = ?", (state, now_iso(), op_id))

    # --- notification attempts ---

    def add_attempt(self, operation_id: int, *, chain: str, attempt: int, url: str, status: int | None,
                    answer: str, accepted: bool, note: str = "") -> None:
        """Record one ResultURL delivery attempt and the shop's answer."""
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO attempts (operation_id, chain, attempt, url, at, status, answer, accepted, note)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (operation_id, chain, attempt, url, now_iso(), status, answer[:500], int(accepted), note))

    def attempts(self, operation_id: int | None = None) -> list[dict[str, Any]]:
        """Delivery attempts (of one operation, or all), oldest first."""
        with self.connect() as conn:
            if operation_id is None:
                rows = conn.execute("SELECT * FROM attempts ORDER BY id").fetchall()
            else:
                rows = conn.execute("SELECT * FROM attempts WHERE operation_id = ? ORDER BY id",
                                    (operation_id,)).fetchall()
        return [dict(r) for r in rows]

    # --- refunds ---

    def add_refund(self, operation: Operation, amount: Decimal | None, finish_after: float,
                   outcome: str = "finished") -> tuple[str | None, str | None]:
        """Register a refund of ``amount`` (None = everything left) atomically.

        Returns ``(request_id, None)`` or ``(None, error message)`` when the operation has less left
        than asked (Robokassa's ``NotEnoughOperationFunds``).
        """
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            remaining = self._remaining(conn, operation)
            wanted = remaining if amount is None else amount
            if wanted <= 0 or wanted > remaining:
                conn.execute("ROLLBACK")
                return None, "NotEnoughOperationFunds"
            request_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO refunds (request_id, operation_id, amount, label, created_at, finish_at, outcome)"
                " VALUES (?, ?, ?, 'processing', ?, ?, ?)",
                (request_id, operation.id, str(wanted), now_iso(), time.time() + finish_after, outcome))
            conn.execute("COMMIT")
        return request_id, None

    @staticmethod
    def _remaining(conn: sqlite3.Connection, operation: Operation) -> Decimal:
        rows = conn.execute("SELECT amount FROM refunds WHERE operation_id = ? AND label != 'canceled'",
                            (operation.id,)).fetchall()
        return operation.out_sum - sum((Decimal(r["amount"]) for r in rows), Decimal("0"))

    def refundable(self, operation: Operation) -> Decimal:
        """What is left to refund of ``operation`` (its amount less every refund not cancelled)."""
        with self.connect() as conn:
            return self._remaining(conn, operation)

    def refund_state(self, request_id: str) -> dict[str, Any] | None:
        """The refund's row, moving ``processing`` on to its outcome once it is due.

        A refund is "processing" when created; the first GetState still says so unless its delay has
        passed, and the one after that settles it, so a client following the refund sees both labels.
        """
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT * FROM refunds WHERE request_id = ?", (request_id,)).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                return None
            data = dict(row)
            if data["label"] == "processing" and (data["polls"] > 0 or data["finish_at"] <= time.time()):
                data["label"] = data["outcome"]
            data["polls"] += 1
            conn.execute("UPDATE refunds SET label = ?, polls = ? WHERE request_id = ?",
                         (data["label"], data["polls"], request_id))
            conn.execute("COMMIT")
        return data

    def refunds(self, operation_id: int | None = None) -> list[dict[str, Any]]:
        """Refund requests (of one operation, or all), oldest first."""
        with self.connect() as conn:
            if operation_id is None:
                rows = conn.execute("SELECT * FROM refunds ORDER BY created_at").fetchall()
            else:
                rows = conn.execute("SELECT * FROM refunds WHERE operation_id = ? ORDER BY created_at",
                                    (operation_id,)).fetchall()
        return [dict(r) for r in rows]


def get_store() -> SandboxStore:
    """The current app's sandbox store (``PMROBOKASSA_SANDBOX_DB`` or a file in the instance folder)."""
    path = current_app.config.get("PMROBOKASSA_SANDBOX_DB") or str(Path(current_app.instance_path) / STORE_FILE)
    stores = current_app.extensions.setdefault("pmrobokassa.sandbox.stores", {})
    if path not in stores:
        stores[path] = SandboxStore(path)
    return stores[path]
