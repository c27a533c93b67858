"""Bulk loading of leads and outbox rows, straight through the database driver.

A million rows through the ORM (or even Core with per-value type processing) would take minutes;
sqlite3's executemany and PostgreSQL's COPY take seconds. Values are written in the same storage
format SQLAlchemy uses (SQLite: naive UTC `YYYY-MM-DD HH:MM:SS.ffffff` text; PostgreSQL:
timestamptz), and `check_roundtrip` reads one row back through the ORM to prove it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Engine, Table, func, inspect, select
from sqlalchemy.orm import Session

from models import Lead, OutboxItem

_NO_VALUE = object()


def _fill(column: Column[Any]) -> Any:
    """A value for a column the bench does not know (added by a later migration)."""
    default = column.default
    if default is not None and getattr(default, "is_scalar", False):
        return default.arg  # type: ignore[attr-defined]
    if column.nullable:
        return None
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return ""
    if python_type is int or python_type is float:
        return python_type()
    if python_type is bool:
        return False
    if python_type is datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)
    return ""


def _columns(table: Table, given: Iterable[str]) -> list[Column[Any]]:
    given = set(given)
    return [
        c
        for c in table.columns
        if c.name in given or (not c.primary_key and c.server_default is None)
    ]


def _is_datetime(column: Column[Any]) -> bool:
    try:
        return column.type.python_type is datetime
    except NotImplementedError:
        return False


def _sqlite_datetime(value: datetime | None) -> str | None:
    # SQLAlchemy's SQLite storage format: naive UTC, always six digits of microseconds.
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def bulk_insert(
    engine: Engine, table: Table, rows: Iterable[dict[str, Any]], batch: int = 20_000
) -> int:
    """Insert dict rows (all with the same keys) in batches; returns the number inserted."""
    it = iter(rows)
    first = next(it, None)
    if first is None:
        return 0
    # Only the columns the database has: bench.compare loads an older revision's schema too.
    present = {c["name"] for c in inspect(engine).get_columns(table.name)}
    columns = [c for c in _columns(table, first.keys()) if c.name in present]
    names = [c.name for c in columns]
    fills = {c.name: _fill(c) for c in columns if c.name not in first}
    all_rows = itertools.chain([first], it)

    def tuples() -> Iterator[tuple[Any, ...]]:
        for row in all_rows:
            yield tuple(row[n] if n in row else fills[n] for n in names)

    count = 0
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "sqlite":
            # This loading connection only (the app's keep their settings): a big page cache
            # keeps the indexes' B-trees in memory while a million rows go in.
            cur.execute("PRAGMA cache_size=-400000")
            marks = ", ".join("?" * len(names))
            sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
            # Only datetime columns need converting; one pass over those columns per batch.
            stamps = [i for i, c in enumerate(columns) if _is_datetime(c)]
            source = tuples()
            while True:
                chunk = []
                for t in itertools.islice(source, batch):
                    values = list(t)
                    for i in stamps:
                        values[i] = _sqlite_datetime(values[i])
                    chunk.append(values)
                if not chunk:
                    break
                cur.executemany(sql, chunk)
                count += len(chunk)
            raw.commit()
        else:
            with cur.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for t in tuples():
                    copy.write_row(t)
                    count += 1
            raw.commit()
        cur.close()
    finally:
        raw.close()
    return count


def max_id(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.max(table.c.id))) or 0)


def check_roundtrip(engine: Engine, lead_id: int, expected_submitted_at: datetime) -> None:
    """Read a bulk-loaded lead back through the ORM: the storage format must be SQLAlchemy's."""
    with Session(engine) as s:
        lead = s.get(Lead, lead_id)
        assert lead is not None, f"bulk-loaded lead {lead_id} not found"
        got = lead.submitted_at
        assert abs((got - expected_submitted_at).total_seconds()) < 1e-3, (
            f"bulk-loaded datetimes read back wrong: {got!r} != {expected_submitted_at!r}"
        )


LEADS: Table = Lead.__table__  # type: ignore[assignment]
OUTBOX: Table = OutboxItem.__table__  # type: ignore[assignment]
