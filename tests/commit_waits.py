"""Which commits wait for the disk: each commit's ``synchronous_commit`` and the tables it wrote, on
PostgreSQL as deployed (the test database skips the disk for speed, see billcore.testing)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine

Commit = tuple[str, tuple[str, ...]]  # (the setting it committed with, the tables it wrote, in order)


@contextmanager
def commits_of(engine: Engine, tables: tuple[str, ...]) -> Iterator[list[Commit]]:
    """Record every commit made through ``engine`` in the block, with the setting in force at it (where
    ``SET LOCAL`` takes effect) and which of ``tables`` its transaction inserted into or updated."""
    commits: list[Commit] = []
    writes = {table: re.compile(rf"\b(INSERT INTO|UPDATE) {table}\b") for table in tables}

    def as_deployed(dbapi_connection, record, proxy):
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        dbapi_connection.execute("SET synchronous_commit TO on")
        dbapi_connection.autocommit = autocommit

    def begun(conn):
        conn.info["billcore_test_writes"] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        flat = " ".join(statement.split())
        conn.info.setdefault("billcore_test_writes", []).extend(
            table for table, pattern in writes.items() if pattern.search(flat))

    def committing(conn):
        setting = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
        commits.append((setting, tuple(conn.info.pop("billcore_test_writes", []))))

    listeners = [("checkout", as_deployed), ("begin", begun), ("before_cursor_execute", seen),
                 ("commit", committing)]
    for name, listener in listeners:
        event.listen(engine, name, listener)
    try:
        yield commits
    finally:
        for name, listener in listeners:
            event.remove(engine, name, listener)
