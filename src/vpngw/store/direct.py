"""Prepared statements run on the DBAPI cursor: the API's hot path without SQLAlchemy's
execution layer.

SQLAlchemy's ``Connection.execute`` costs about 0.05 ms of Python per statement (execution
context, result object, events) and an ORM session as much again per transaction; a
CreateVpnConnection runs about ten statements, so that layer was a quarter of a create's
CPU (docs/benchmarks.md). Here a Core statement is compiled once per dialect, its
parameters pass through the same bind processors SQLAlchemy would apply (JSON), its rows
through the same result processors, and a DBAPI error is wrapped as SQLAlchemy wraps it
(``IntegrityError``, ``OperationalError``, ...), so callers catch the same exceptions
whichever path ran the statement. The statements stay SQLAlchemy constructs: one definition
serves this path and the Core path (:func:`rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

Processor = Callable[[Any], Any]


class NeedsSession(Exception):
    """Raised by an action running on a :class:`Direct` transaction when the request needs
    what only the ORM path does (tags, a dual-tunnel connection's rows): the caller rolls the
    transaction back and runs the action again in an ORM session."""


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positional: tuple[str, ...] | None  # the bind names in order (qmark), None for named
    binds: tuple[tuple[str, Processor | None], ...]
    fixed: dict[str, Any]  # the statement's own values (a literal ``changes + 1``)
    results: tuple[Processor | None, ...]

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        given = {**self.fixed, **values} if self.fixed else values
        processed = {
            name: (given[name] if processor is None else processor(given[name]))
            for name, processor in self.binds
        }
        if self.positional is None:
            return processed
        return tuple(processed[name] for name in self.positional)


class Prepared:
    """A Core statement and its compiled forms, one per dialect (compiled on first use).

    ``column_keys`` names the columns an ``INSERT`` without ``.values()`` takes (its
    parameters are then the column names)."""

    def __init__(self, statement: Executable, *, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = self._compile(dialect)
        return found

    def _compile(self, dialect: Dialect) -> _Compiled:
        statement: Any = self.statement
        compiled: Any = statement.compile(dialect=dialect, column_keys=self.column_keys)
        binds = tuple(
            (name, bind.type.dialect_impl(dialect).bind_processor(dialect))
            for name, bind in compiled.binds.items()
        )
        fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        # Columns whose default SQLAlchemy computes in Python (``default=""``): scalars only.
        for column in list(getattr(compiled, "insert_prefetch", ())) + list(
            getattr(compiled, "update_prefetch", ())
        ):
            default = (
                column.default if column in getattr(compiled, "insert_prefetch", ()) else column.onupdate
            )
            if default is None or not default.is_scalar:
                raise NotImplementedError(f"{column}: only scalar Python defaults run on the DBAPI cursor")
            fixed[column.key] = default.arg
        columns: Any = getattr(statement, "selected_columns", None)
        if columns is None:  # an INSERT/UPDATE/DELETE ... RETURNING
            columns = getattr(statement, "_returning", None) or ()
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        )
        positional = tuple(compiled.positiontup) if compiled.positional else None
        return _Compiled(compiled.string, positional, binds, fixed, results)


class Direct:
    """One transaction on a DBAPI connection (``Database.direct`` opens, commits and closes
    it). :meth:`execute` returns every row, processed; statements without rows return []."""

    def __init__(self, dbapi_connection: Any, dialect: Dialect, database: str = "") -> None:
        self.dbapi_connection = dbapi_connection
        self.dialect = dialect
        self.database = database  # the engine's URL: which database (caches per database)
        self._cursor = dbapi_connection.cursor()

    def execute(self, prepared: Prepared, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        compiled = prepared.compiled(self.dialect)
        parameters = compiled.parameters(values)
        cursor = self._cursor
        try:
            cursor.execute(compiled.sql, parameters)
            if cursor.description is None:
                return []
            fetched = cursor.fetchall()
        except self.dialect.loaded_dbapi.Error as error:
            raise self.wrapped(error, compiled.sql) from error
        if not any(compiled.results):
            return [tuple(row) for row in fetched]
        return [
            tuple(
                value if processor is None else processor(value)
                for value, processor in zip(row, compiled.results, strict=True)
            )
            for row in fetched
        ]

    def run(self, sql: str) -> None:
        """A statement of the transaction's own (BEGIN, COMMIT), errors wrapped as above."""
        try:
            self._cursor.execute(sql)
        except self.dialect.loaded_dbapi.Error as error:
            raise self.wrapped(error, sql) from error

    def commit(self) -> None:
        try:
            self.dbapi_connection.commit()
        except self.dialect.loaded_dbapi.Error as error:
            raise self.wrapped(error, "COMMIT") from error

    def close(self) -> None:
        try:
            self._cursor.close()
        except self.dialect.loaded_dbapi.Error:
            pass

    def wrapped(self, error: Any, sql: str) -> DBAPIError:
        """The DBAPI error as SQLAlchemy raises it (never with the parameters: they can hold a
        client's input); a lost connection is marked so that the pool drops it."""
        wrapped = DBAPIError.instance(
            sql,
            None,
            error,
            self.dialect.loaded_dbapi.Error,
            hide_parameters=True,
            dialect=self.dialect,
            ismulti=False,
        )
        assert isinstance(wrapped, DBAPIError)
        if self.dialect.is_disconnect(error, self.dbapi_connection, self._cursor):
            wrapped.connection_invalidated = True
        return wrapped


Where = Session | Connection | Direct
Tx = Session | Direct  # what an action's handler runs in


def rows(where: Where, prepared: Prepared, values: Mapping[str, Any]) -> Sequence[Any]:
    """Run ``prepared`` in the caller's transaction, whichever kind it is: its rows (tuples
    from a :class:`Direct`, ``Row`` objects from SQLAlchemy; both index alike)."""
    if isinstance(where, Direct):
        return where.execute(prepared, values)
    connection = where.connection() if isinstance(where, Session) else where
    result = connection.execute(prepared.statement, dict(values))
    return result.all() if result.returns_rows else []
