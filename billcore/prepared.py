"""Fixed statements of the notification path run straight on the DBAPI cursor, compiled once by SQLAlchemy.

A credit runs the same locking SELECT and four writes on every notification. Through
``Connection.execute`` each statement costs about 25 µs of Python (statement cache lookup, execution
context, events, result setup) on top of the database's own work, which for these single-row statements
is less than that (bench/notify.py). The classes here have SQLAlchemy compile their Core statement once
per dialect (and, for writes, per set of parameter names), keep the bind processors of the parameters'
types and the result processors of the selected columns, so JSON, dates and Decimals travel exactly as
SQLAlchemy converts them, and then execute on the connection's own DBAPI cursor, inside the connection's
transaction. Errors are SQLAlchemy's: a driver error is raised as the matching ``DBAPIError`` (with the
engine's ``hide_parameters``; a lost connection is invalidated, as SQLAlchemy would), a value a type
cannot convert as ``StatementError``, so callers catch ``SQLAlchemyError`` as before.

Whatever observes statements goes through ``Connection.execute`` instead, so it sees every statement as
before: listeners of the engine's ``before_execute``, ``after_execute``, ``before_cursor_execute``,
``after_cursor_execute`` or ``handle_error`` events (instrumentation, a test injecting a failure) and SQL
logging (``echo``, the ``sqlalchemy.engine`` logger at INFO).

:class:`PreparedWrite` takes writes without a result only: no RETURNING, and no column filled by a
Python-side default or ``onupdate`` that the parameters do not give (SQLAlchemy computes those in its own
execution; this path would not), which it refuses with ``ValueError`` before anything is sent.

Compiled forms are cached on the dialect object, so they go when its engine goes.
"""
from __future__ import annotations

import logging
import re
from contextlib import suppress
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, StatementError
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import Update, UpdateBase

_CACHE_ATTRIBUTE = "_billcore_prepared"


def _cache(dialect: Dialect) -> dict[Any, Any]:
    """This dialect's compiled forms (kept on the dialect: no global cache outliving an engine)."""
    cache = dialect.__dict__.get(_CACHE_ATTRIBUTE)
    if cache is None:
        cache = dialect.__dict__[_CACHE_ATTRIBUTE] = {}
    return cache


@dataclass(frozen=True)
class _Binding:
    """How one compiled statement's parameters reach the driver."""

    sql: str
    names: tuple[str, ...]  # bind names, in the order of a positional driver's placeholders
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool
    construct: Callable[[Mapping[str, Any]], dict[str, Any]]

    @classmethod
    def of(cls, compiled: Any, dialect: Dialect) -> _Binding:  # a SQLCompiler: positiontup, binds
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


_OBSERVING_EVENTS = ("before_execute", "after_execute", "before_cursor_execute", "after_cursor_execute")


def _observed(conn: Connection) -> bool:
    """True when something watches this connection's statements (event listeners or SQL logging): then
    they must go through ``Connection.execute`` to be seen."""
    dispatch = conn.dispatch
    return any(getattr(dispatch, name) for name in _OBSERVING_EVENTS) or \
        bool(conn.dialect.dispatch.handle_error) or conn.engine.logger.isEnabledFor(logging.INFO)


def _run(conn: Connection, binding: _Binding, params: Mapping[str, Any], use: Callable[[Any], Any]) -> Any:
    """Execute on a fresh DBAPI cursor, hand it to ``use``, close it; errors as SQLAlchemy raises them."""
    dialect = conn.dialect
    try:
        arguments = binding.arguments(params)
    except Exception as exc:  # a value its column type cannot convert: as SQLAlchemy reports it
        raise _statement_error(exc, binding.sql, params) from exc
    cursor = conn.connection.cursor()
    try:
        cursor.execute(binding.sql, arguments)
        return use(cursor)
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
        error = DBAPIError.instance(binding.sql, arguments, exc, dialect.loaded_dbapi.Error,
                                    hide_parameters=conn.engine.hide_parameters, connection_invalidated=lost,
                                    dialect=dialect)
        if lost:  # never hand a dead connection back to the pool
            conn.invalidate(error)
        raise error from exc
    except Exception as exc:  # the driver could not adapt a value (psycopg serialises JSON here)
        raise _statement_error(exc, binding.sql, params) from exc
    finally:
        with suppress(Exception):  # the cursor of a connection just lost may refuse to close
            cursor.close()


def _statement_error(exc: Exception, sql: str, params: Mapping[str, Any]) -> StatementError:
    return StatementError(f"({type(exc).__name__}) {exc}", sql, dict(params), exc)


class PreparedWrite:
    """A Core INSERT or UPDATE executed on the DBAPI cursor with SQLAlchemy's compilation and types."""

    def __init__(self, statement: UpdateBase):
        self.statement = statement

    def _binding(self, dialect: Dialect, keys: frozenset[str]) -> _Binding:
        cache = _cache(dialect)
        binding = cache.get((self, keys))
        if binding is None:
            binding = cache[(self, keys)] = self._compile(dialect, keys)
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
        if _observed(conn):
            return conn.execute(self.statement, params).rowcount
        return self._execute(conn, params)

    def _execute(self, conn: Connection, params: Mapping[str, Any]) -> int:
        return _run(conn, self._binding(conn.dialect, frozenset(params)), params, lambda cursor: cursor.rowcount)


Writes = Sequence[tuple[PreparedWrite, Mapping[str, Any]]]
# psycopg's named placeholder after a run of '%': an odd run is a placeholder ('%%' is an escaped '%')
_PLACEHOLDER = re.compile(r"(%+)\((\w+)\)s")


def _renamed(sql: str, prefix: str) -> str:
    """``sql`` with every placeholder ``%(name)s`` renamed ``%(<prefix>name)s``."""
    def rename(match: re.Match[str]) -> str:
        percents, name = match.group(1), match.group(2)
        if len(percents) % 2 == 0:
            return match.group(0)
        return f"{percents[:-1]}%({prefix}{name})s"
    return _PLACEHOLDER.sub(rename, sql)


def execute_together(conn: Connection, writes: Writes) -> None:
    """Run several writes whose results nobody reads, in the connection's transaction.

    On PostgreSQL they are sent as one statement, each write a data-modifying CTE (``WITH w0 AS (UPDATE
    ...), w1 AS (INSERT ...) SELECT 1``): one round trip and one execution instead of one each
    (bench/notify.py). PostgreSQL runs every such CTE to completion, all on the same snapshot, so the
    writes must not depend on one another's effects; two UPDATEs of one table (which could touch the same
    row, and then only one would count) are refused with ``ValueError``. An error in any write fails the
    statement, and the caller's transaction rolls back. Elsewhere (SQLite has no such CTEs) and when
    statements are observed they run one by one.
    """
    dialect = conn.dialect
    key = ("together",) + tuple((write, frozenset(params)) for write, params in writes)
    cache = _cache(dialect)
    combined = cache.get(key)
    if combined is None:  # checked on every database, so a mistake shows in SQLite's tests too
        updated = [write.statement.table for write, _ in writes if isinstance(write.statement, Update)]
        if len(updated) != len(set(updated)):
            raise ValueError("two UPDATEs of one table cannot run together (only one would count on a row)")
        combined = cache[key] = _combine(dialect, key[1:]) if _combinable(dialect, writes) else "one by one"
    if _observed(conn):
        for write, params in writes:
            conn.execute(write.statement, params)
    elif combined == "one by one":
        for write, params in writes:
            write._execute(conn, params)
    else:
        _run(conn, combined, {"writes": [params for _, params in writes]}, lambda cursor: None)


def _combinable(dialect: Dialect, writes: Writes) -> bool:
    return len(writes) > 1 and dialect.name == "postgresql" and dialect.paramstyle == "pyformat"


def _combine(dialect: Dialect, writes: tuple[tuple[PreparedWrite, frozenset[str]], ...]) -> _Binding:
    parts = [write._binding(dialect, keys) for write, keys in writes]
    sql = "WITH " + ", ".join(f"w{i} AS ({_renamed(part.sql, f'w{i}_')})" for i, part in enumerate(parts)) + \
        " SELECT 1"
    names = tuple(f"w{i}_{name}" for i, part in enumerate(parts) for name in part.names)
    processors = tuple(process for part in parts for process in part.processors)
    return _Binding(sql, names, processors, False, _PrefixedParameters(parts).construct)


@dataclass(frozen=True)
class _PrefixedParameters:
    """The parameters of several bindings, each name prefixed by its write's place (``w0_``, ``w1_``)."""

    parts: list[_Binding]

    def construct(self, params: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for i, (part, own) in enumerate(zip(self.parts, params["writes"])):
            values.update((f"w{i}_{name}", value) for name, value in part.construct(own).items())
        return values


class PreparedLookup:
    """A Core SELECT of at most one row (a lookup by key, e.g. with FOR UPDATE), executed on the DBAPI
    cursor; the row comes back as a named tuple of the selected columns' keys, each value converted by
    its column type's result processor as SQLAlchemy would."""

    def __init__(self, statement: Select):
        self.statement = statement
        self._row: Any = namedtuple("LookupRow", list(statement.selected_columns.keys()))  # type: ignore[misc]

    def _read(self, dialect: Dialect, cursor: Any) -> Any:
        raw = cursor.fetchone()
        if raw is None:
            return None
        if cursor.fetchone() is not None:
            raise MultipleResultsFound("Multiple rows were found when one or none was required")
        cache = _cache(dialect)
        processors = cache.get((self, "results"))
        if processors is None:  # they depend on the driver's type codes, known at the first result
            processors = cache[(self, "results")] = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, description[1])
                for column, description in zip(self.statement.selected_columns, cursor.description))
        return self._row._make(value if process is None else process(value)
                               for value, process in zip(raw, processors))

    def one_or_none(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The row for ``params`` (None when there is none)."""
        if _observed(conn):
            found = conn.execute(self.statement, params).one_or_none()
            return None if found is None else self._row._make(found)
        dialect = conn.dialect
        cache = _cache(dialect)
        binding = cache.get((self, "binding"))
        if binding is None:
            binding = cache[(self, "binding")] = _Binding.of(self.statement.compile(dialect=dialect), dialect)
        return _run(conn, binding, params, lambda cursor: self._read(dialect, cursor))
