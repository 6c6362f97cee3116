"""Fixed INSERTs and UPDATEs run straight on the DBAPI cursor, compiled once by SQLAlchemy.

A credit runs the same four writes on every notification. Through ``Connection.execute`` each costs
about 25 µs of Python (statement cache lookup, execution context, events, result setup) on top of the
database's own work, which for these single-row writes is less than that (bench/notify.py). A
:class:`PreparedWrite` has SQLAlchemy compile its Core statement once per dialect and set of parameter
names, keeps the bind processors of the parameters' types, so JSON, dates and Decimals reach the driver
exactly as SQLAlchemy would send them, and then executes on the connection's own DBAPI cursor, inside
whatever transaction (or psycopg pipeline) the connection is in. Driver errors are raised as SQLAlchemy's
exceptions, so callers catch ``SQLAlchemyError`` as before.

When anything listens to the engine's ``before_cursor_execute`` or ``after_cursor_execute`` events (an
instrumentation library, a test injecting a failure), the statement goes through ``Connection.execute``
instead, so those listeners see every statement as before.

Only writes without a result are accepted: no RETURNING, no column filled by a Python-side default or
``onupdate`` that the parameters do not give (SQLAlchemy would compute those; this path would not), which
:meth:`PreparedWrite.execute` refuses with ``ValueError`` before anything is sent.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # bind names, in the order of a positional driver's placeholders
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool
    construct: Callable[[Mapping[str, Any]], dict[str, Any]]


class PreparedWrite:
    """A Core INSERT or UPDATE executed on the DBAPI cursor with SQLAlchemy's compilation and types."""

    def __init__(self, statement: UpdateBase):
        self.statement = statement
        self._cache: weakref.WeakKeyDictionary[Dialect, dict[frozenset[str], _Compiled]] = \
            weakref.WeakKeyDictionary()

    def _compile(self, dialect: Dialect, keys: frozenset[str]) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=sorted(keys))
        # Python-side defaults are computed by SQLAlchemy's execution, which this path skips (server-side
        # defaults are the database's and need nothing from here)
        if compiled.insert_prefetch or compiled.update_prefetch or compiled.effective_returning:
            raise ValueError(f"not a plain write for {sorted(keys)}: columns filled by defaults or "
                             f"returned ({compiled.string})")
        names = tuple(compiled.positiontup) if compiled.positional else tuple(compiled.binds)
        processors = tuple(compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                           for name in names)
        return _Compiled(compiled.string, names, processors, bool(compiled.positional),
                         compiled.construct_params)

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run the statement with ``params`` on ``conn``'s DBAPI connection; returns the rows changed."""
        if conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute:
            return conn.execute(self.statement, params).rowcount
        dialect = conn.dialect
        per_dialect = self._cache.get(dialect)
        if per_dialect is None:
            per_dialect = self._cache[dialect] = {}
        keys = frozenset(params)
        compiled = per_dialect.get(keys)
        if compiled is None:
            compiled = per_dialect[keys] = self._compile(dialect, keys)
        values = compiled.construct(params)
        converted = [values[name] if process is None else process(values[name])
                     for name, process in zip(compiled.names, compiled.processors)]
        arguments: Any = tuple(converted) if compiled.positional else dict(zip(compiled.names, converted))
        cursor = conn.connection.cursor()
        try:
            cursor.execute(compiled.sql, arguments)
            return cursor.rowcount
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(compiled.sql, arguments, exc, dialect.loaded_dbapi.Error,
                                      dialect=dialect) from exc
        finally:
            cursor.close()
