"""Fixed statements of the notification path run straight on the DBAPI cursor, compiled once by SQLAlchemy.

A credit runs the same locking SELECT and four writes on every notification. Through
``Connection.execute`` each statement costs about 25 µs of Python (statement cache lookup, execution
context, events, result setup) on top of the database's own work, which for these single-row statements
is less than that (bench/notify.py). The classes here have SQLAlchemy compile their Core statement once
per dialect (and, for writes, per set of parameter names), keep the bind processors of the parameters'
types and the result processors of the selected columns, so JSON, dates and Decimals travel exactly as
SQLAlchemy converts them, and then execute on the connection's own DBAPI cursor, inside whatever
transaction (or psycopg pipeline) the connection is in. Driver errors are raised as SQLAlchemy's
exceptions, so callers catch ``SQLAlchemyError`` as before.

When anything listens to the engine's ``before_cursor_execute`` or ``after_cursor_execute`` events (an
instrumentation library, a test injecting a failure), the statement goes through ``Connection.execute``
instead, so those listeners see every statement as before.

:class:`PreparedWrite` takes writes without a result only: no RETURNING, and no column filled by a
Python-side default or ``onupdate`` that the parameters do not give (SQLAlchemy computes those in its own
execution; this path would not), which it refuses with ``ValueError`` before anything is sent.
"""
from __future__ import annotations

import re
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.sql.dml import UpdateBase


@dataclass(frozen=True)
class _Binding:
    """How one compiled statement's parameters reach the driver."""

    sql: str
    names: tuple[str, ...]  # bind names, in the order of a positional driver's placeholders
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool
    construct: Callable[[Mapping[str, Any]], dict[str, Any]]

    @classmethod
    def of(cls, compiled: Compiled, dialect: Dialect) -> _Binding:
        names = tuple(compiled.positiontup) if compiled.positional else tuple(compiled.binds)
        processors = tuple(compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                           for name in names)
        return cls(compiled.string, names, processors, bool(compiled.positional), compiled.construct_params)

    def arguments(self, params: Mapping[str, Any]) -> Any:
        """The driver's parameters for ``params``: a tuple for a positional driver, else a dict."""
        values = self.construct(params)
        converted = [values[name] if process is None else process(values[name])
                     for name, process in zip(self.names, self.processors)]
        return tuple(converted) if self.positional else dict(zip(self.names, converted))


def _watched(conn: Connection) -> bool:
    return bool(conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute)


def _run(conn: Connection, binding: _Binding, params: Mapping[str, Any], use: Callable[[Any], Any]) -> Any:
    """Execute on a fresh DBAPI cursor, hand it to ``use``, close it; driver errors as SQLAlchemy's."""
    dialect = conn.dialect
    arguments = binding.arguments(params)
    cursor = conn.connection.cursor()
    try:
        cursor.execute(binding.sql, arguments)
        return use(cursor)
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(binding.sql, arguments, exc, dialect.loaded_dbapi.Error,
                                  dialect=dialect) from exc
    finally:
        cursor.close()


class PreparedWrite:
    """A Core INSERT or UPDATE executed on the DBAPI cursor with SQLAlchemy's compilation and types."""

    def __init__(self, statement: UpdateBase):
        self.statement = statement
        self._cache: weakref.WeakKeyDictionary[Dialect, dict[frozenset[str], _Binding]] = \
            weakref.WeakKeyDictionary()

    def _binding(self, dialect: Dialect, keys: frozenset[str]) -> _Binding:
        per_dialect = self._cache.setdefault(dialect, {})
        binding = per_dialect.get(keys)
        if binding is None:
            binding = per_dialect[keys] = self._compile(dialect, keys)
        return binding

    def _compile(self, dialect: Dialect, keys: frozenset[str]) -> _Binding:
        compiled = self.statement.compile(dialect=dialect, column_keys=sorted(keys))
        # Python-side defaults are computed by SQLAlchemy's execution, which this path skips (server-side
        # defaults are the database's and need nothing from here)
        if compiled.insert_prefetch or compiled.update_prefetch or compiled.effective_returning:
            raise ValueError(f"not a plain write for {sorted(keys)}: columns filled by defaults or "
                             f"returned ({compiled.string})")
        return _Binding.of(compiled, dialect)

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run the statement with ``params`` on ``conn``'s DBAPI connection; returns the rows changed."""
        if _watched(conn):
            return conn.execute(self.statement, params).rowcount
        return self._execute(conn, params)

    def _execute(self, conn: Connection, params: Mapping[str, Any]) -> int:
        return _run(conn, self._binding(conn.dialect, frozenset(params)), params, lambda cursor: cursor.rowcount)


Writes = Sequence[tuple[PreparedWrite, Mapping[str, Any]]]
_PLACEHOLDER = re.compile(r"(?<!%)%\((\w+)\)s")  # psycopg's named placeholder, not an escaped '%%('
_TOGETHER: weakref.WeakKeyDictionary[Dialect, dict[tuple, _Binding]] = weakref.WeakKeyDictionary()


def execute_together(conn: Connection, writes: Writes) -> None:
    """Run several writes whose results nobody reads, in the connection's transaction.

    On PostgreSQL they are sent as one statement, each write a data-modifying CTE (``WITH w0 AS (UPDATE
    ...), w1 AS (INSERT ...) SELECT 1``): one round trip and one execution instead of one each
    (bench/notify.py). PostgreSQL runs every such CTE to completion, all on the same snapshot, so the
    writes must not depend on one another's effects (a credit's writes touch different rows). An error
    in any of them fails the statement, and the caller's transaction rolls back. Elsewhere (SQLite has no
    such CTEs) and when statements are being watched they run one by one.
    """
    dialect = conn.dialect
    if _watched(conn):
        for write, params in writes:
            conn.execute(write.statement, params)
        return
    if len(writes) < 2 or dialect.name != "postgresql" or dialect.paramstyle != "pyformat":
        for write, params in writes:
            write._execute(conn, params)
        return
    key = tuple((write, frozenset(params)) for write, params in writes)
    per_dialect = _TOGETHER.setdefault(dialect, {})
    combined = per_dialect.get(key)
    if combined is None:
        parts = [write._binding(dialect, keys) for write, keys in key]
        sql = "WITH " + ", ".join(
            f"w{i} AS ({_PLACEHOLDER.sub(lambda m, i=i: f'%(w{i}_{m.group(1)})s', part.sql)})"
            for i, part in enumerate(parts)) + " SELECT 1"
        names = tuple(f"w{i}_{name}" for i, part in enumerate(parts) for name in part.names)
        processors = tuple(process for part in parts for process in part.processors)
        combined = per_dialect[key] = _Binding(sql, names, processors, False, _Together(parts).construct)
    _run(conn, combined, {"writes": [params for _, params in writes]}, lambda cursor: None)


@dataclass(frozen=True)
class _Together:
    """The parameters of several bindings, each name prefixed by its write's place (``w0_``, ``w1_``)."""

    parts: list[_Binding]

    def construct(self, params: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for i, (part, own) in enumerate(zip(self.parts, params["writes"])):
            values.update((f"w{i}_{name}", value) for name, value in part.construct(own).items())
        return values


class PreparedRow:
    """A Core SELECT of at most one row (a lookup by key, e.g. with FOR UPDATE), executed on the DBAPI
    cursor; the row comes back as a named tuple of the selected columns' keys, each value converted by
    its column type's result processor as SQLAlchemy would."""

    def __init__(self, statement: Select):
        self.statement = statement
        self._row = namedtuple("PreparedRow", list(statement.selected_columns.keys()))  # type: ignore[misc]
        self._bindings: weakref.WeakKeyDictionary[Dialect, _Binding] = weakref.WeakKeyDictionary()
        # the processors depend on the driver's type codes, so they are made at the first result
        self._processors: weakref.WeakKeyDictionary[Dialect, tuple] = weakref.WeakKeyDictionary()

    def _read(self, dialect: Dialect, cursor: Any) -> Any:
        raw = cursor.fetchone()
        if raw is None:
            return None
        if cursor.fetchone() is not None:
            raise ValueError(f"more than one row from {self.statement}")
        processors = self._processors.get(dialect)
        if processors is None:
            processors = self._processors[dialect] = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, description[1])
                for column, description in zip(self.statement.selected_columns, cursor.description))
        return self._row._make(value if process is None else process(value)
                               for value, process in zip(raw, processors))

    def one_or_none(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The row for ``params`` (None when there is none)."""
        if _watched(conn):
            found = conn.execute(self.statement, params).one_or_none()
            return None if found is None else self._row._make(found)
        dialect = conn.dialect
        binding = self._bindings.get(dialect)
        if binding is None:
            binding = self._bindings[dialect] = _Binding.of(self.statement.compile(dialect=dialect), dialect)
        return _run(conn, binding, params, lambda cursor: self._read(dialect, cursor))
