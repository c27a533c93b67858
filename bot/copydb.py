"""`leadbot copy-db TARGET_URL`: every row of the database DATABASE_URL names, copied into an
empty database, typically from the embedded SQLite file to PostgreSQL when a team outgrows it.

What it promises, in the order it checks:

- it only reads the source: a source whose schema is out of date is refused (`leadbot migrate`
  first), and a SQLite file that does not exist is named, never created empty; on Linux, a
  SQLite source another process has open (a running `leadbot serve`) is refused, as what it
  wrote after the copy would be lost;
- the target must hold no rows in any of leadbot's tables: it never merges, never overwrites.
  Its schema is brought to the latest revision here (as `leadbot migrate` would), so a new,
  empty PostgreSQL database is all it needs; a newer leadbot's schema is refused;
- the tables are those the models define (`models.Base.metadata`), parents before children;
  each is read in primary-key order, in batches, from one snapshot of the source, and written
  through the same column types the app uses (timestamps stay aware UTC on both backends),
  with COPY on PostgreSQL;
- everything is written in one transaction on the target, and before it commits the row
  counts are compared, then the content: each table is read back from the target, in the same
  order and through the same column types, and its rows must be those read from the source (a
  digest of each batch of rows, made on both sides, so memory stays flat: the source's as its
  rows are copied, not by reading it twice). A value written wrongly (a type converted badly, a
  column left out) is named by table, primary key and column, never by value. A mismatch, a
  failure, or Ctrl-C leaves the target without a row (its schema stays);
- on PostgreSQL, each table's id sequence is then set past the highest copied id.

Errors are one line naming DATABASE_URL or TARGET_URL; none carries a row's values.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import marshal
import os
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    URL,
    Column,
    Connection,
    Engine,
    Row,
    Select,
    String,
    Table,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from bot import db
from bot.cli import StartupError, _migration_failure, _unusable, open_database
from bot.settings import Settings, SettingsError, _masked, database_url
from models import Base, make_engine

SOURCE = "DATABASE_URL"
TARGET = "TARGET_URL"

# Rows read and written at a time: memory stays flat however many leads there are (a lead is
# ~1-2 kB as Python objects), and each round trip carries enough rows to be worth it.
BATCH = 2_000


def tables() -> list[Table]:
    """Every table the models define, each after the tables its foreign keys point to."""
    return list(Base.metadata.sorted_tables)


@dataclass(frozen=True)
class Copied:
    counts: dict[str, int]
    seconds: float
    migrated_from: str | None  # the target's revision before, when it had to be migrated


def target_url(text_: str) -> URL:
    """TARGET_URL, checked exactly as DATABASE_URL is (psycopg 3, no in-memory SQLite, …)."""
    try:
        return database_url(text_)
    except SettingsError as e:
        message = str(e)
        if message.startswith(f"{SOURCE}: "):
            message = f"{TARGET}: " + message[len(SOURCE) + 2 :]
        raise StartupError(message) from None


def copy_database(
    settings: Settings, target_text: str, say: Callable[[str], None] = print
) -> Copied:
    """Copy everything from settings.database_url into the empty database `target_text`."""
    target = target_url(target_text)
    source = settings.sqlalchemy_url
    shown = _masked(target_text)
    if _same_database(source, target):
        raise StartupError(
            f"{TARGET}: {shown!r} is the database {SOURCE} names — give the new, empty database "
            "to copy into"
        )
    if source.get_backend_name() == "sqlite":
        _check_sqlite_source(Path(source.database or ""))
    if target.get_backend_name() == "sqlite":
        _check_sqlite_target(Path(target.database or ""), shown)

    src = open_database(settings, migrate_sqlite=False)  # read only: never migrated here
    dst: Engine | None = None
    try:
        held = _counts_or_fail(src, SOURCE)
        if not any(held.values()):
            raise StartupError(
                f"{SOURCE}: the database holds no rows, so there is nothing to copy — set "
                f"{SOURCE} to the database leadbot has been using (now "
                f"{_masked(settings.database_url)!r})"
            )
        dst = make_engine(target)
        before = _prepare_target(dst, shown)
        say(f"copying {_masked(settings.database_url)} to {shown}")
        if before != db.HEAD:
            say(f"{TARGET}: schema migrated from {before or 'empty'} to {db.HEAD}")
        started = time.monotonic()
        counts = _copy(src, dst, say)
        # Read back on a new connection: what is counted now is what was committed.
        after = _counts_or_fail(dst, TARGET)
        if after != counts:
            raise StartupError(
                f"{TARGET}: after the copy it holds {_describe(after)}, not the "
                f"{_describe(counts)} copied — did something else write to it meanwhile?"
            )
        if dst.dialect.name == "postgresql":
            _analyze(dst, say)
        return Copied(counts, time.monotonic() - started, before if before != db.HEAD else None)
    finally:
        src.dispose()
        if dst is not None:
            dst.dispose()


def _analyze(dst: Engine, say: Callable[[str], None]) -> None:
    """Statistics for the copied tables at once, so the first requests on the copy are planned
    from them (a table PostgreSQL never analysed is planned from guesses until autovacuum gets
    to it: /lead's duplicate lookup could then read the window of recent leads instead of the
    contact indexes). The copy is committed already: a failure here only says so."""
    started = time.monotonic()
    try:
        with dst.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    except SQLAlchemyError as e:
        say(f"{TARGET}: not analysed ({type(e).__name__}); autovacuum will do it")
        return
    say(f"analysed the copy for PostgreSQL's planner ({time.monotonic() - started:.1f}s)")


# --- checks before anything is written ------------------------------------------------------


def _same_database(a: URL, b: URL) -> bool:
    """The same database written two ways: a SQLite file by another path, a PostgreSQL
    database by another name of this host. (A copy between two names of one server that this
    cannot see through is still refused: the source holds rows and the target must not.)"""
    if a.get_backend_name() != b.get_backend_name():
        return False
    if a.get_backend_name() == "sqlite":
        pa, pb = Path(a.database or ""), Path(b.database or "")
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
        return os.path.realpath(pa) == os.path.realpath(pb)
    local = {None, "", "localhost", "127.0.0.1", "::1"}

    def where(u: URL) -> tuple[str | None, int, str | None]:
        host = "local" if u.host in local else u.host
        return host, u.port or 5432, u.database

    return where(a) == where(b)


def _check_sqlite_source(path: Path) -> None:
    if not path.is_file():
        raise StartupError(
            f"{SOURCE}: there is no database at {str(path.resolve())!r} — run copy-db where "
            f"leadbot runs (with its .env), or set {SOURCE} to the database to copy"
        )
    holder = sqlite_holder(path)
    if holder is not None:
        raise StartupError(
            f"{SOURCE}: {path.name} is open in another process (pid {holder}) — stop "
            "`leadbot serve`/`socket` and any `leadbot jobs` first: what they wrote after the "
            "copy would not be in it"
        )


def _check_sqlite_target(path: Path, shown: str) -> None:
    if path.is_dir():
        raise StartupError(f"{TARGET}: {shown!r} is a folder — name a file in it")
    if not path.resolve().parent.is_dir():
        raise StartupError(
            f"{TARGET}: the folder {str(path.resolve().parent)!r} does not exist — create it "
            "first, or name a file in a folder that does"
        )


# struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid (and padding).
_FLOCK = "hhqqi4x"
# Every connection to a SQLite database in WAL mode holds a shared lock on this byte of its
# "-shm" file while it is open (the DMS lock: https://www.sqlite.org/walformat.html).
_SQLITE_DMS_BYTE = 128


def sqlite_holder(path: Path) -> int | None:
    """The pid of another process that has the SQLite database `path` open, if one has and
    this platform can tell (64-bit Linux); None otherwise.

    Call it before this process opens the file itself: closing any descriptor of a file drops
    all of this process's POSIX locks on it, SQLite's included."""
    shm = Path(f"{path}-shm")
    if not sys.platform.startswith("linux") or sys.maxsize <= 2**32 or not shm.exists():
        return None
    try:
        fd = os.open(shm, os.O_RDONLY)
    except OSError:
        return None
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, _SQLITE_DMS_BYTE, 1, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    except OSError:
        return None
    finally:
        os.close(fd)
    kind, _, _, _, pid = struct.unpack(_FLOCK, answer)
    return pid if kind != fcntl.F_UNLCK and pid > 0 else None


def _counts(conn: Connection) -> dict[str, int]:
    """Rows in each of leadbot's tables that exist in the database."""
    present = set(inspect(conn).get_table_names())
    return {
        t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
        for t in tables()
        if t.name in present
    }


def _counts_or_fail(engine: Engine, setting: str) -> dict[str, int]:
    try:
        with engine.connect() as conn:
            return _counts(conn)
    except SQLAlchemyError as e:
        raise _unusable(e, setting) from None


def _describe(counts: dict[str, int]) -> str:
    held = [f"{n:,} {name}" for name, n in counts.items() if n]
    return ", ".join(held) or "no rows"


def _prepare_target(dst: Engine, shown: str) -> str | None:
    """Check the target is usable, known and empty; migrate it to the latest schema. Returns
    its revision before."""
    try:
        revision = db.current_revision(dst)  # also proves it answers
        db.check_known(revision)
        with dst.connect() as conn:
            held = _counts(conn)
    except SQLAlchemyError as e:
        problem = _unusable(e, TARGET)
        if "does not exist" in str(problem) and dst.dialect.name == "postgresql":
            raise StartupError(
                f"{problem} — create it first (createdb {dst.url.database}), empty"
            ) from None
        raise problem from None
    except db.UnknownRevision as e:
        raise StartupError(f"{TARGET}: {e}") from None
    if any(held.values()):
        raise StartupError(
            f"{TARGET}: {shown!r} already holds {_describe(held)} — copy-db copies only into "
            "a database without leadbot's data: it never merges or overwrites (create a new, "
            "empty database)"
        )
    if revision != db.HEAD:
        try:
            db.upgrade(dst)
        except Exception as e:
            cause, _ = _migration_failure(e)
            raise StartupError(f"{TARGET}: migrating its schema failed ({cause})") from None
    return revision


# --- the copy ---------------------------------------------------------------------------------


def _copy(src_engine: Engine, dst_engine: Engine, say: Callable[[str], None]) -> dict[str, int]:
    copied: dict[str, int] = {}
    digests = {t.name: _Digests(t) for t in tables()}
    at = ""  # the table being written, for the message if it fails
    try:
        with _snapshot(src_engine) as src, dst_engine.begin() as dst:
            expected = _counts(src)
            if dst.dialect.name == "postgresql" and src.dialect.name == "sqlite":
                _check_fits(src)
            width = max(len(t.name) for t in tables())
            for table in tables():
                at = f" at {table.name}"
                copied[table.name] = _copy_table(src, dst, table, digests[table.name])
                say(f"  {table.name:<{width}} {copied[table.name]:>12,}")
            at = ""
            now = _counts(dst)
            if now != expected:  # before the commit: a mismatch keeps nothing
                raise StartupError(
                    f"{TARGET}: the copy holds {_describe(now)} where the source holds "
                    f"{_describe(expected)}; nothing was kept"
                )
            # The source's digests were made during the copy; the target's are made now.
            verifying = sum(d.seconds for d in digests.values())
            started = time.monotonic()
            for table in tables():
                at = f" verifying {table.name}"
                _verify(src, dst, table, digests[table.name])
            at = ""
            verifying += time.monotonic() - started
            say(f"verified: every row reads back as the source holds it ({verifying:.1f}s)")
            if dst.dialect.name == "postgresql":
                # setval is not undone by a rollback: done last, so only a failed COMMIT can
                # leave a sequence moved on, which costs nothing but skipped ids.
                _reset_sequences(dst)
    except (SQLAlchemyError, dst_engine.dialect.loaded_dbapi.Error) as e:  # COPY: the driver's
        cause, transient = _migration_failure(e)
        then = " (try again)" if transient else ""
        raise StartupError(
            f"copy failed{at} ({cause}); {TARGET} holds none of it, only the schema{then}"
        ) from None
    except KeyboardInterrupt:
        raise StartupError(
            f"copy interrupted; {TARGET} holds none of it, only the schema"
        ) from None
    return copied


class _snapshot:
    """A connection that reads the source as of one moment, whatever writes meanwhile."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> Connection:
        if self.engine.dialect.name == "postgresql":
            self.conn = self.engine.connect().execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        else:
            self.conn = self.engine.connect()
            # Python's sqlite3 begins no transaction for SELECTs: each would read the newest
            # data. Inside one, every read sees the snapshot of its first.
            self.conn.exec_driver_sql("BEGIN")
        return self.conn

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


def _copy_table(src: Connection, dst: Connection, table: Table, digests: _Digests) -> int:
    rows = src.execution_options(yield_per=BATCH).execute(_in_order(table, src))
    batches = digests.taking(rows.partitions(BATCH))
    if dst.dialect.name == "postgresql":
        return _copy_in(dst, table, batches)
    statement = insert(table)
    n = 0
    for batch in batches:
        dst.execute(statement, [row._asdict() for row in batch])
        n += len(batch)
    return n


def _copy_in(dst: Connection, table: Table, batches: Iterable[Sequence[Row[Any]]]) -> int:
    """PostgreSQL: the rows through COPY, in the connection's transaction, each value converted
    by its column's type as an INSERT would (aware UTC timestamps). 3-4x as fast as INSERTs
    sent in batches (100,000 leads with 300,000 events: 15 s against 53 s)."""
    dialect = dst.dialect
    quote = dialect.identifier_preparer
    columns = list(table.columns)
    convert = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    sql = (
        f"COPY {quote.format_table(table)} ({', '.join(quote.format_column(c) for c in columns)})"
        " FROM STDIN"
    )
    n = 0
    driver = dst.connection.dbapi_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(sql) as copy:
        for batch in batches:
            for row in batch:
                copy.write_row([f(v) if f else v for f, v in zip(convert, row, strict=True)])
            n += len(batch)
    return n


def _check_fits(src: Connection) -> None:
    """SQLite keeps any text in any column; PostgreSQL refuses text longer than its column or
    holding a NUL character. Said before the copy, by column, without the values."""
    problems = []
    for table in tables():
        checks = []
        for column in table.columns:
            if not isinstance(column.type, String):
                continue
            if column.type.length:
                checks.append(
                    (
                        column.name,
                        f"longer than {column.type.length} characters",
                        func.length(column) > column.type.length,
                    )
                )
            checks.append(
                (column.name, "holding a NUL character", func.instr(column, func.char(0)) > 0)
            )
        if not checks:
            continue
        found = src.execute(
            select(*(func.count().filter(cond) for _, _, cond in checks)).select_from(table)
        ).one()
        for (name, what, _), n in zip(checks, found, strict=True):
            if n:
                problems.append(f"{table.name}.{name}: {n:,} row{'s' if n != 1 else ''} {what}")
    if problems:
        raise StartupError(
            f"{TARGET}: PostgreSQL would refuse values the source holds — "
            + "; ".join(problems[:5])
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
            + f"; correct them in {SOURCE} first"
        )


def _reset_sequences(dst: Connection) -> None:
    """Each id sequence (serial or identity) to the highest copied id: the next insert takes
    the one after it. A table with no rows keeps its sequence at the start."""
    for table in tables():
        column = table.autoincrement_column
        if column is None:
            continue
        sequence = dst.execute(
            text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": dst.dialect.identifier_preparer.format_table(table), "column": column.name},
        ).scalar()
        if sequence is None:
            continue
        highest = dst.execute(select(func.max(column))).scalar()
        dst.execute(
            text("SELECT setval(:sequence, :value, :called)"),
            {"sequence": sequence, "value": highest or 1, "called": highest is not None},
        )


# --- verifying the copy -----------------------------------------------------------------------


def _in_order(table: Table, conn: Connection) -> Select[Any]:
    """The table's rows in primary-key order, the same order on both backends: PostgreSQL
    sorts text by its database's collation (en_US puts 'b' before 'C'), SQLite by code point,
    as PostgreSQL's "C" collation does. Without a primary key, by every column, NULLs first as
    SQLite puts them."""
    keys = list(table.primary_key.columns)
    order: list[Any] = []
    for column in keys or table.columns:
        term: Any = column
        if isinstance(column.type, String) and conn.dialect.name == "postgresql":
            term = column.collate("C")
        order.append(term if keys else term.nulls_first())
    return select(table).order_by(*order)


# Instants are written as microseconds since this one: exact, and cheap to make.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _instant(value: datetime | None) -> int | str | None:
    # An aware datetime is the same instant in any time zone; a naive one is only its text.
    if value is None:
        return None
    return (value - _EPOCH) // _MICROSECOND if value.tzinfo is not None else value.isoformat()


def _day(value: date | None) -> int | None:
    return None if value is None else value.toordinal()


def _number(value: Decimal | None) -> str | None:
    return None if value is None else str(value.normalize())  # 1.10 (numeric(_, 2)) is 1.1


def _document(value: Any) -> str | None:
    # jsonb keeps neither key order nor spacing: the same document, written one way.
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _canonical(column: Column[Any]) -> Callable[[Any], Any] | None:
    """How a value of this column goes into the digest (None: as it is read).

    Both sides read the column through its type, so they hold the same Python types. What is
    left: marshal, which writes plain values exactly and fast, takes no datetime, date or
    Decimal; and a value may be written differently while meaning the same (an instant in
    another time zone, 1.10 and 1.1, a JSON document's key order). A float is kept as it is:
    one that came back changed (a `real` column) is a difference."""
    kind = column.type
    if isinstance(kind, JSON):
        return _document
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance  # UTCDateTime: its datetimes, aware UTC on every backend
    try:
        python_type = kind.python_type
    except NotImplementedError:
        return repr
    if python_type in (str, int, bool, float, bytes):
        return None
    if python_type is datetime:
        return _instant
    if python_type is date:
        return _day
    if python_type is Decimal:
        return _number
    return repr  # a type marshal does not take (an interval, a UUID, an enum): its repr


@dataclass
class _Digests:
    """One digest per BATCH rows of a table, in `_in_order`: made from the source's rows as
    they are copied, then compared with the target's read back. A table of a million rows
    keeps 500 digests, not its rows."""

    table: Table
    made: list[bytes] = field(default_factory=list)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.fixes = [
            (i, fix)
            for i, column in enumerate(self.table.columns)
            if (fix := _canonical(column)) is not None
        ]

    def columns(self, batch: Sequence[Row[Any]]) -> list[tuple[Any, ...]]:
        """The batch's values column by column, each made comparable: a column's values are
        converted by one map(), where row by row it took a Python loop for each row."""
        columns = list(zip(*batch, strict=True))
        for i, fix in self.fixes:
            columns[i] = tuple(map(fix, columns[i]))
        return columns

    def rows(self, batch: Sequence[Row[Any]]) -> list[tuple[Any, ...]]:
        return list(zip(*self.columns(batch), strict=True))

    def digest(self, batch: Sequence[Row[Any]]) -> bytes:
        # marshal's format 0 tags each value with its type (1, True and 1.0 differ) and has
        # no back-references, so equal values are equal bytes whatever objects hold them.
        started = time.monotonic()
        made = hashlib.blake2b(marshal.dumps(self.columns(batch), 0), digest_size=16).digest()
        self.seconds += time.monotonic() - started
        return made

    def taking(self, batches: Iterable[Sequence[Row[Any]]]) -> Iterator[Sequence[Row[Any]]]:
        """`batches`, passed through, each digested on the way."""
        for batch in batches:
            self.made.append(self.digest(batch))
            yield batch


def _verify(src: Connection, dst: Connection, table: Table, digests: _Digests) -> None:
    """The target's rows, read back in this transaction, must be those copied from the source:
    batch by batch by digest; where one differs, row by row, to name the first difference."""
    rows = dst.execution_options(yield_per=BATCH).execute(_in_order(table, dst))
    checked = 0
    try:
        for batch in rows.partitions(BATCH):
            if checked == len(digests.made) or digests.digest(batch) != digests.made[checked]:
                break
            checked += 1
        else:
            if checked == len(digests.made):
                return
    finally:
        rows.close()
    raise StartupError(_first_difference(src, dst, table, digests, checked))


def _first_difference(
    src: Connection, dst: Connection, table: Table, digests: _Digests, batch: int
) -> str:
    """The message for the first row of batch `batch` that differs: its table, primary key and
    column, never a value (it may be an email or a phone number)."""
    names = [c.name for c in table.columns]
    keys = [names.index(c.name) for c in table.primary_key.columns]

    def read(conn: Connection) -> list[tuple[Any, ...]]:
        query = _in_order(table, conn).offset(batch * BATCH).limit(BATCH)
        return digests.rows(conn.execute(query).all())

    def same(a: Any, b: Any) -> bool:  # as the digest tells them apart: 1 is not True
        return marshal.dumps(a, 0) == marshal.dumps(b, 0)

    first = batch * BATCH
    where = f"{table.name} rows {first + 1:,}-{first + BATCH:,}"  # not found again: unlikely
    pairs = itertools.zip_longest(read(src), read(dst))
    for n, (source_row, copied_row) in enumerate(pairs, start=first + 1):
        if source_row is None:
            where = f"{table.name}, a row the source does not hold"
            break
        # Ids only: a table without a primary key is named by position, not by its values.
        key = " ".join(f"{names[i]}={source_row[i]!r}" for i in keys) or f"row {n:,}"
        if copied_row is None:
            where = f"{table.name} {key}, missing from the copy"
            break
        differs = [
            name for name, a, b in zip(names, source_row, copied_row, strict=True) if not same(a, b)
        ]
        if differs:
            where = f"{table.name} {key}, column {differs[0]}"
            break
    return (
        f"{TARGET}: the copy does not read back as the source holds it, first at {where}; "
        "nothing was kept"
    )
