"""Index changes that leave the table writable on PostgreSQL.

A plain CREATE INDEX holds a lock that stops every INSERT and UPDATE on the table until the
build ends: on a table of a million leads, seconds of /lead answering "the database is busy"
while `leadbot migrate` runs beside live processes. CONCURRENTLY builds without that lock. It
cannot run inside a transaction, so these run in an autocommit block (the migrations before
them are committed first, one transaction per migration). SQLite has no such lock to avoid
beyond its usual writer lock: there they are the plain operations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic import op
from sqlalchemy import Column, Connection, inspect, text

# The builds wait for transactions already under way on the table; while they wait they block
# nobody (CONCURRENTLY takes no lock that a write needs), so they may wait longer than the
# connection's usual 2 s.
LOCK_TIMEOUT = "60s"


def _online() -> bool:
    return op.get_bind().dialect.name == "postgresql"


@contextmanager
def _outside_transaction() -> Iterator[Connection]:
    """PostgreSQL: an autocommit connection with the longer lock wait, reset afterwards."""
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        bind.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
        try:
            yield bind
        finally:
            bind.execute(text("RESET lock_timeout"))


def create_index(
    name: str, table: str, columns: list[str], where: str | None = None, unique: bool = False
) -> None:
    """`where` makes it a partial index (SQLite and PostgreSQL both have them)."""
    condition = {"sqlite_where": text(where), "postgresql_where": text(where)} if where else {}
    if not _online():
        op.create_index(name, table, columns, unique=unique, **condition)
        return
    with _outside_transaction() as bind:
        # A build that failed or was killed leaves an INVALID index of that name behind,
        # which IF NOT EXISTS would take for done: drop it and build again.
        valid = bind.execute(
            text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": name},
        ).scalar()
        if valid is False:
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
        op.create_index(
            name,
            table,
            columns,
            unique=unique,
            postgresql_concurrently=True,
            if_not_exists=True,
            **condition,
        )


def drop_index(name: str, table: str) -> None:
    if not _online():
        op.drop_index(name, table_name=table)
        return
    with _outside_transaction():
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)


# SQLite's ALTER TABLE … DROP COLUMN (3.35, 2021-03).
SQLITE_DROP_COLUMN = (3, 35, 0)


def add_columns(table: str, *columns: Column[Any]) -> None:
    """Add those of `columns` that `table` does not have yet. On PostgreSQL a migration that
    adds columns and then builds an index CONCURRENTLY commits the columns before the build
    (the build's autocommit block ends the migration's transaction): a build that fails or is
    cut leaves them in place with the schema a revision behind, and a plain ADD COLUMN then
    failed every re-run on DuplicateColumn, where the README promises it picks up."""
    have = {c["name"] for c in inspect(op.get_bind()).get_columns(table)}
    missing = [c for c in columns if c.name not in have]
    if missing:
        with op.batch_alter_table(table) as batch:
            for col in missing:
                batch.add_column(col)


def drop_columns(table: str, *columns: str) -> None:
    """Drop `columns` of `table` in place (their indexes must be dropped first).

    Not Alembic's batch mode: on SQLite it rebuilds the table, and dropping the old copy with
    foreign keys on (leadbot's engine turns them on) deletes every child row first — ON DELETE
    CASCADE: a downgrade of `leads` would erase every lead's events and queued messages. SQLite
    3.35 and later drop a column where it is; an older one is refused before anything changes.
    """
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        import sqlite3

        if sqlite3.sqlite_version_info < SQLITE_DROP_COLUMN:
            raise RuntimeError(
                f"this downgrade needs SQLite 3.35 or later to keep {table}'s related rows "
                f"(this Python has SQLite {sqlite3.sqlite_version}); nothing was changed"
            )
    for name in columns:
        op.drop_column(table, name)
