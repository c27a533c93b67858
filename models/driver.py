"""Hot INSERTs compiled once and run with `Connection.exec_driver_sql`.

For a statement already in its compiled cache, SQLAlchemy still builds and converts every
parameter on each execution through its general machinery: for a `/lead`'s three INSERTs (the
lead's 36 columns among them) that was about two thirds of their CPU on SQLite, more than
SQLite took to run them (measured in-process, see bench/HISTORY.md). Here the statement is
compiled once per dialect, parameter style and set of keys, each parameter's converter (the
column type's own bind processor) is looked up once, and a row becomes the driver's parameters
in one pass. The SQL is SQLAlchemy's, and execution still goes through the Connection: its
transaction, its events, its wrapping of driver errors (parameters hidden, as the engine says).

Only statements whose results need no conversion qualify (no RETURNING, or RETURNING of
columns such as integer ids that the driver already gives as Python wants them), and every
parameter must come from the row or the statement itself: a column whose default SQLAlchemy
would compute at execution time is refused when the statement is prepared, not skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import CursorResult
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import Executable

_Converter = Callable[[Any], Any] | None


class DriverStatement:
    """`statement` compiled for `dialect`, taking rows with exactly the keys `keys`."""

    def __init__(self, statement: Executable, dialect: Dialect, keys: Sequence[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        if compiled.insert_prefetch or compiled.update_prefetch:  # type: ignore[attr-defined]
            missing = compiled.insert_prefetch or compiled.update_prefetch  # type: ignore[attr-defined]
            raise ValueError(f"give these columns in every row: {[c.key for c in missing]}")
        if compiled.escaped_bind_names:  # type: ignore[attr-defined]
            raise ValueError("parameter names that need escaping are not supported")
        if compiled.post_compile_params or compiled.literal_execute_params:  # type: ignore[attr-defined]
            # Rendered into the SQL at execution (expanding lists, literal_execute): the
            # compiled string still holds placeholders for them.
            raise ValueError("parameters rendered at execution time are not supported")
        results = getattr(statement, "selected_columns", None) or (
            compiled.effective_returning or ()  # type: ignore[attr-defined]
        )
        for column in results:
            if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
                raise ValueError(f"the result column {column} would need converting")
        names = set(keys)
        # Each parameter: (True, its key in a row, converter) or (False, its value, None).
        params: dict[str, tuple[bool, Any, _Converter]] = {}
        for bind, name in compiled.bind_names.items():  # type: ignore[attr-defined]
            convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if name in names:
                params[name] = (True, name, convert)
            elif bind.required:
                raise ValueError(f"no value for parameter {name!r}")
            else:  # a value given in the statement itself (a literal in a comparison, say)
                value = bind.effective_value
                params[name] = (False, convert(value) if convert else value, None)
        self.sql: str = compiled.string
        self.keys = tuple(keys)
        positions = compiled.positiontup  # type: ignore[attr-defined]
        # A positional driver (sqlite3's qmark) takes a tuple in the order of the SQL's
        # placeholders, a name repeated where it is; a named one (psycopg) takes a dict.
        self._order = [params[n] for n in positions] if positions is not None else None
        self._named = list(params.items())

    def parameters(self, row: Mapping[str, Any]) -> Any:
        """`row` as the driver takes it."""
        if len(row) != len(self.keys):
            raise ValueError(f"a row needs exactly the keys {self.keys}, got {tuple(row)}")
        if self._order is not None:
            return tuple(
                (convert(row[v]) if convert else row[v]) if from_row else v
                for from_row, v, convert in self._order
            )
        return {
            name: (convert(row[v]) if convert else row[v]) if from_row else v
            for name, (from_row, v, convert) in self._named
        }


_PREPARED: dict[tuple[int, type, str, tuple[str, ...]], tuple[Executable, DriverStatement]] = {}
_PREPARING = threading.Lock()


def run(
    on: Connection | Session,
    statement: Executable,
    rows: Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> CursorResult[Any]:
    """Execute `statement` (built once, e.g. at module level) with one row or several alike.

    On a Session it runs on the session's connection, in its transaction."""
    conn = on.connection() if isinstance(on, Session) else on
    many = not isinstance(rows, Mapping)
    if many and not rows:
        raise ValueError("no rows to write")
    first = rows[0] if many else rows  # type: ignore[index]
    dialect = conn.dialect
    key = (id(statement), type(dialect), dialect.paramstyle, tuple(first))
    entry = _PREPARED.get(key)
    if entry is None:
        with _PREPARING:
            # The statement is kept with its compiled form, so its id cannot be reused.
            entry = _PREPARED.setdefault(
                key, (statement, DriverStatement(statement, dialect, key[3]))
            )
    prepared = entry[1]
    if many:
        return conn.exec_driver_sql(prepared.sql, [prepared.parameters(r) for r in rows])  # type: ignore[union-attr]
    return conn.exec_driver_sql(prepared.sql, prepared.parameters(first))
