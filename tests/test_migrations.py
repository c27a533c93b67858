"""Migrations on a database that already holds leads: the schema comes out as the models say,
and on PostgreSQL the index builds leave the tables writable while they run."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command as alembic
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, column, event, insert, inspect, select, table, text
from sqlalchemy.exc import IntegrityError

from bot import db
from models import Base, UTCDateTime, make_engine
from tests.conftest import PG_URL_VAR, _worker, leads_locked
from tests.test_startup import _leadbot

LEADS = table(
    "leads",
    *(column(name) for name in ("team_id", "name", "email", "priority", "submitted_by")),
    column("submitted_at", UTCDateTime()),
    *(column(name) for name in ("status", "version", "reminders_sent")),
)
ADDED_INDEXES = (  # by migrations 0003-0010, on tables that may hold years of leads
    "ix_leads_status_follow_up",
    "ix_leads_owner_status",
    "ix_leads_submitted_funnel",
    "ix_outbox_lead_status",
    "ix_leads_email_submitted",
    "ix_leads_phone_submitted",
    "ix_outbox_pending",
    "ix_leads_request_key",
    "ix_lead_events_fell_back",
    "ix_leads_submitted_funnel2",
)


@pytest.fixture
def empty_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database without any schema yet."""
    pg = os.environ.get(PG_URL_VAR)
    if not pg:
        engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        engine.dispose()
        return
    name = f"leadbot_migrate_{_worker()}"
    engine = make_engine(db.fresh_pg_database(pg, name))
    try:
        yield engine
    finally:
        engine.dispose()
        db.fresh_pg_database(pg, name, drop=True)


CREATE_INDEX = ("CREATE INDEX", "CREATE UNIQUE INDEX")


def _lead_rows(n: int, status: str = "closed") -> list[dict[str, Any]]:
    """Leads as schema 0001 stores them (no normalised contact yet)."""
    return [
        {
            "team_id": "T1",
            "name": f"Person {i}",
            "email": f"Person{i}@Example.com",
            "priority": "warm",
            "submitted_by": "U1",
            "submitted_at": datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
            "status": status,
            "version": 1,
            "reminders_sent": 0,
        }
        for i in range(n)
    ]


def _store_leads(engine: Engine, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(insert(LEADS), _lead_rows(n))


def _pg_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has one writer at a time whatever the DDL")


def test_upgrade_of_a_database_with_leads_reaches_the_models_schema(empty_engine: Engine) -> None:
    engine = empty_engine
    db.upgrade(engine, "0002")
    _store_leads(engine, 50)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    db.upgrade(engine, "head")
    assert db.current_revision(engine) == db.HEAD
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        # 0003 filled the normalised e-mail of the leads already stored.
        emails = conn.execute(text("SELECT DISTINCT email_norm FROM leads WHERE id < 3"))
        assert sorted(emails.scalars()) == ["person0@example.com", "person1@example.com"]
    builds = [s for s in statements if s.lstrip().upper().startswith(CREATE_INDEX)]
    assert {name for name in ADDED_INDEXES if any(name in s for s in builds)} == set(ADDED_INDEXES)
    drops = [s for s in statements if s.lstrip().upper().startswith("DROP INDEX")]
    # The single-column indexes the composite ones replace, and the funnel's before 0010.
    assert len(drops) == 4
    if engine.dialect.name == "postgresql":
        # Not one build or drop that would stop writes on the table while it runs.
        assert all("CONCURRENTLY" in s for s in builds + drops), builds + drops


def test_0008_keeps_one_lead_per_request_and_goes_back_down(empty_engine: Engine) -> None:
    """The request key is unique where it is set and free where it is not (leads stored before
    it, or made otherwise); downgrading drops it and keeps the leads, and upgrading again
    reaches the models' schema."""
    engine = empty_engine
    db.upgrade(engine, "0007")
    _store_leads(engine, 3)  # older leads: no key
    db.upgrade(engine, "head")
    keyed = table("leads", *(column(c.name, c.type) for c in LEADS.c), column("request_key"))
    row = {**_lead_rows(1)[0], "request_key": "1764454084.42.abcdef"}
    with engine.begin() as conn:
        conn.execute(insert(keyed), [row, {**row, "request_key": None}])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(keyed), row)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM leads WHERE request_key IS NULL")) == 4
    with engine.connect() as conn:
        config = db.alembic_config(engine)
        config.attributes["connection"] = conn
        alembic.downgrade(config, "0007")
    assert db.current_revision(engine) == "0007"
    with engine.connect() as conn:
        assert "request_key" not in {c["name"] for c in inspect(conn).get_columns("leads")}
        assert conn.scalar(text("SELECT count(*) FROM leads")) == 5
    db.upgrade(engine, "head")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_downgrades_that_drop_lead_columns_keep_every_leads_events_and_messages(
    empty_engine: Engine,
) -> None:
    """On SQLite, Alembic's batch mode rebuilt `leads` to drop a column, and dropping the old
    table with foreign keys on deleted every lead's events and outbox items (ON DELETE
    CASCADE). Each downgrade that drops a lead column (0010, 0008, 0003, 0002) keeps them."""
    engine = empty_engine
    db.upgrade(engine, "0001")
    _store_leads(engine, 2)
    db.upgrade(engine, "head")
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    with engine.begin() as conn:
        ids = conn.execute(text("SELECT id FROM leads ORDER BY id")).scalars().all()
        for lead_id in ids:
            conn.execute(
                text(
                    "INSERT INTO lead_events (lead_id, at, actor, kind) "
                    "VALUES (:id, :at, 'U1', 'submitted')"
                ),
                {"id": lead_id, "at": at},
            )
            conn.execute(
                text(
                    "INSERT INTO outbox (lead_id, kind, status, attempts, next_attempt_at, "
                    "created_at) VALUES (:id, 'card', 'pending', 0, :at, :at)"
                ),
                {"id": lead_id, "at": at},
            )

    def held(*tables: str) -> list[int]:
        with engine.connect() as conn:
            return [conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in tables]

    for revision in ("0007", "0002"):
        with engine.connect() as conn:
            config = db.alembic_config(engine)
            config.attributes["connection"] = conn
            alembic.downgrade(config, revision)
        assert held("leads", "lead_events", "outbox") == [2, 2, 2], revision
    with engine.connect() as conn:
        config = db.alembic_config(engine)
        config.attributes["connection"] = conn
        alembic.downgrade(config, "0001")  # its outbox goes: that is 0002's own table
    assert held("leads", "lead_events") == [2, 2]


def test_0010_dates_each_lead_qualified_from_its_history(empty_engine: Engine) -> None:
    """Leads stored before 0010 get qualified_at from their events: the earliest `stage` event
    to qualified or won, whatever stage they are at now; a lead at one of them without such an
    event (older history), its stage_at. Downgrading drops it and brings the old index back."""
    engine = empty_engine
    db.upgrade(engine, "0009")
    t = [datetime(2026, 3, 1, 9, tzinfo=UTC) + timedelta(hours=k) for k in range(10)]
    # name: (stage now, stage_at, [(stage, at, extra detail)], qualified_at expected)
    leads: dict[str, tuple[str | None, datetime | None, list[Any], datetime | None]] = {
        "qualified lost": ("lost", t[3], [("contacted", t[1]), ("qualified", t[2])], t[2]),
        "qualified disqualified": ("disqualified", t[4], [("qualified", t[1])], t[1]),
        "contacted lost": ("lost", t[2], [("contacted", t[1]), ("lost", t[2])], None),
        "won outright": ("won", t[5], [("won", t[5])], t[5]),
        "qualified won": ("won", t[6], [("qualified", t[3]), ("won", t[6])], t[3]),
        # Qualified again later: the first time counts, not its stage_at.
        "requalified": ("qualified", t[8], [("qualified", t[2]), ("meeting", t[4])], t[2]),
        "older history": ("qualified", t[7], [], t[7]),
        "no outcome": (None, None, [], None),
        # The stage is read from the JSON, not from text that happens to look like it.
        "a note quoting": ("contacted", t[1], [("contacted", t[1], '"stage": "won"')], None),
    }
    staged = table(
        "leads",
        *(column(c.name, c.type) for c in LEADS.c),
        column("id"),
        column("stage"),
        column("stage_at", UTCDateTime()),
    )
    events = table(
        "lead_events",
        *(column(name) for name in ("lead_id", "actor", "kind", "detail")),
        column("at", UTCDateTime()),
    )
    ids: dict[str, int] = {}
    with engine.begin() as conn:
        for name, (stage, stage_at, *_) in leads.items():
            row = {**_lead_rows(1)[0], "name": name, "stage": stage, "stage_at": stage_at}
            ids[name] = conn.execute(insert(staged).returning(staged.c.id), row).scalar_one()
        # Events in the order they happened, and others between them (as bot.leads writes).
        rows = [
            {
                "lead_id": ids[name],
                "actor": "U1",
                "kind": "stage",
                "at": at,
                "detail": json.dumps(
                    {"stage": stage, "reason": None, **({"note": note[0]} if note else {})},
                    sort_keys=True,
                ),
            }
            for name, (_, _, history, _) in leads.items()
            for stage, at, *note in history
        ]
        rows.append({**rows[0], "kind": "claimed", "detail": json.dumps({"stage": "won"})})
        conn.execute(insert(events), sorted(rows, key=lambda r: r["at"]))
    db.upgrade(engine, "head")
    with engine.connect() as conn:
        dated = table("leads", column("name"), column("qualified_at", UTCDateTime()))
        got = {name: at for name, at in conn.execute(select(dated.c.name, dated.c.qualified_at))}
    assert got == {name: expected for name, (*_, expected) in leads.items()}

    with engine.connect() as conn:
        config = db.alembic_config(engine)
        config.attributes["connection"] = conn
        alembic.downgrade(config, "0009")
    with engine.connect() as conn:
        assert "qualified_at" not in {c["name"] for c in inspect(conn).get_columns("leads")}
        indexes = {i["name"] for i in inspect(conn).get_indexes("leads")}
        assert "ix_leads_submitted_funnel" in indexes
        assert "ix_leads_submitted_funnel2" not in indexes
    db.upgrade(engine, "head")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_0010_cut_after_its_column_was_committed_runs_again(empty_engine: Engine) -> None:
    """0010 commits its column before the backfill: a run cut during the backfill leaves the
    column and the schema at 0009, and `leadbot migrate` again must finish, not fail on it."""
    engine = empty_engine
    db.upgrade(engine, "0009")
    _store_leads(engine, 2)
    kind = "DATETIME" if engine.dialect.name == "sqlite" else "TIMESTAMP WITH TIME ZONE"
    with engine.begin() as conn:  # what the cut run left behind
        conn.execute(text(f"ALTER TABLE leads ADD COLUMN qualified_at {kind}"))
        conn.execute(text("UPDATE leads SET stage = 'won', stage_at = submitted_at"))
    db.upgrade(engine, "head")
    assert db.current_revision(engine) == db.HEAD
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM leads WHERE qualified_at IS NULL")) == 0
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_writes_go_on_while_an_index_build_waits(empty_engine: Engine) -> None:
    """A build waits for the transactions already under way on its table; meanwhile new
    leads are stored. A plain CREATE INDEX would queue for a lock that every INSERT then
    queues behind, and /lead would answer "the database is busy" for the whole build."""
    engine = empty_engine
    _pg_only(engine)
    db.upgrade(engine, "0005")
    _store_leads(engine, 10)
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            db.upgrade(engine, "head")
        except BaseException as e:  # surfaced below
            errors.append(e)

    with engine.connect() as under_way:  # a transaction that has written to leads, still open
        under_way.execute(insert(LEADS), _lead_rows(1, status="new"))
        migration = threading.Thread(target=migrate)
        migration.start()
        _wait_for_a_build_waiting(engine)
        _store_leads(engine, 1)  # lock_timeout is 2 s: this fails if the build blocks writes
        under_way.commit()
    migration.join(30)
    assert not migration.is_alive() and not errors, errors
    assert db.current_revision(engine) == db.HEAD
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM leads")) == 12


def _wait_for_a_build_waiting(engine: Engine) -> None:
    deadline = time.monotonic() + 10
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query ILIKE 'CREATE INDEX%'"
                )
            )
            conn.rollback()  # a fresh snapshot of the activity next time
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the index build never started waiting")


def test_a_build_left_invalid_is_redone_by_the_next_migrate(empty_engine: Engine) -> None:
    """A CONCURRENTLY build that failed (lock timeout, a killed deploy) leaves an INVALID index
    under its name. The next `leadbot migrate` must build it again, not take it for done."""
    engine = empty_engine
    _pg_only(engine)
    db.upgrade(engine, "0005")
    _store_leads(engine, 10)
    with engine.begin() as conn:  # what the failed build left: the index, marked invalid
        conn.execute(text("CREATE INDEX ix_leads_email_submitted ON leads (email_norm)"))
        conn.execute(
            text(
                "UPDATE pg_index SET indisvalid = false"
                " WHERE indexrelid = 'ix_leads_email_submitted'::regclass"
            )
        )
    db.upgrade(engine, "head")
    with engine.connect() as conn:
        valid = conn.execute(
            text(
                "SELECT indisvalid FROM pg_index"
                " WHERE indexrelid = 'ix_leads_email_submitted'::regclass"
            )
        ).scalar()
        assert valid is True
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert db.current_revision(engine) == db.HEAD
    with engine.connect() as conn:  # built again with its own columns
        definition = conn.scalar(
            text("SELECT pg_get_indexdef('ix_leads_email_submitted'::regclass)")
        )
        assert definition.endswith("(email_norm, submitted_at)"), definition


def test_a_failed_migrate_says_how_far_it_got_and_a_rerun_finishes(empty_engine: Engine) -> None:
    engine = empty_engine
    db.upgrade(engine, "0002")
    _store_leads(engine, 5)
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    with leads_locked(engine):  # 0003 alters leads: it waits its 2 s for the lock, then fails
        failed = _leadbot("migrate", env=env, cwd=Path.cwd())
    assert failed.returncode == 2, failed.stderr
    cause = (
        "OperationalError: database is locked"
        if engine.dialect.name == "sqlite"
        else "LockNotAvailable: canceling statement due to lock timeout"
    )
    assert failed.stderr.strip().splitlines() == [
        f"leadbot: DATABASE_URL: migration failed ({cause}); the schema is at 0002, "
        "with every migration before the failed one kept: run `leadbot migrate` again"
    ]
    assert db.current_revision(engine) == "0002"
    again = _leadbot("migrate", env=env, cwd=Path.cwd())
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"database schema migrated from 0002 to {db.HEAD}"


def test_a_schema_from_a_newer_leadbot_is_named_everywhere_not_migrated(
    empty_engine: Engine,
) -> None:
    """A database a newer leadbot migrated: `migrate` said "migration failed (CommandError) …
    run it again", PostgreSQL starts said "out of date … run `leadbot migrate` first" (a loop),
    SQLite starts ended in Alembic's traceback. Neither this migrate nor a re-run can help."""
    engine = empty_engine
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    env = {
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "LEADS_CHANNEL": "C0LEADS",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",  # never reached: the database is first
    }
    for command in (["migrate"], ["jobs", "run", "purge"], ["forget", "a@b.example"], ["serve"]):
        result = _leadbot(*command, env=env, cwd=Path.cwd())
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr == (
            "leadbot: DATABASE_URL: the schema is at 0099, which this leadbot does not know — "
            "it was migrated by a newer leadbot; run that version (or restore a backup)\n"
        ), command
    assert db.current_revision(engine) == "0099"  # left as it was


def test_a_table_in_the_way_is_named_and_a_rerun_is_not_promised(empty_engine: Engine) -> None:
    """A database that already has a `leads` table leadbot did not make: the message once hid
    the cause behind "OperationalError" and said to run `leadbot migrate` again, which fails
    the same way every time."""
    engine = empty_engine
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE leads (x integer)"))
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    cause = (
        "OperationalError: table leads already exists"
        if engine.dialect.name == "sqlite"
        else 'DuplicateTable: relation "leads" already exists'
    )
    for _ in range(2):
        failed = _leadbot("migrate", env=env, cwd=Path.cwd())
        assert failed.returncode == 2
        assert failed.stderr == (
            f"leadbot: DATABASE_URL: migration failed ({cause}); the schema is at empty, with "
            "every migration before the failed one kept: a re-run fails the same way until "
            "that is fixed\n"
        )


def test_a_failure_quoting_row_data_is_named_by_its_class_only(empty_engine: Engine) -> None:
    """The Privacy rule: lead contact details never reach messages. The driver's message is
    shown for schema trouble (above), not for errors that quote a value or a row."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.cli import _migration_failure

    engine = empty_engine
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE people (email varchar(80) UNIQUE, n integer)"))
        conn.execute(text("INSERT INTO people VALUES ('jane@acme.example', 1)"))
    failures = []
    for statement in (
        "INSERT INTO people VALUES ('jane@acme.example', 2)",  # the key, in PostgreSQL's DETAIL
        "UPDATE people SET n = CAST(email AS integer)",  # PostgreSQL quotes the value
    ):
        with engine.connect() as conn:
            try:
                conn.execute(text(statement))
            except SQLAlchemyError as e:
                failures.append(_migration_failure(e))
    assert failures  # SQLite casts 'jane@…' to 0 without complaint; its UNIQUE failure remains
    for said, transient in failures:
        assert "jane" not in said and "acme" not in said, said
        assert not transient


@pytest.mark.parametrize(
    ("revision", "indexes"),
    [
        (
            "0003",
            [
                "ix_leads_status_follow_up",
                "ix_leads_email_norm",
                "ix_leads_phone_norm",
                "ix_leads_owner_status",
            ],
        ),
        ("0008", ["ix_leads_request_key"]),
    ],
)
def test_a_migration_cut_after_its_columns_were_committed_runs_again(
    empty_engine: Engine, revision: str, indexes: list[str]
) -> None:
    """On PostgreSQL a migration's new columns are committed before its CONCURRENTLY index
    builds: a build that failed or was cut left the columns and the schema a revision behind,
    and every `leadbot migrate` after it failed on DuplicateColumn."""
    engine = empty_engine
    db.upgrade(engine, revision)
    _store_leads(engine, 2)
    before = f"{int(revision) - 1:04d}"
    with engine.connect() as conn:  # what the cut run left: columns, no indexes, the old stamp
        config = db.alembic_config(engine)
        config.attributes["connection"] = conn
        alembic.stamp(config, before)
        for name in indexes:
            conn.execute(text(f"DROP INDEX {name}"))
        conn.commit()
    assert db.current_revision(engine) == before
    db.upgrade(engine, "head")
    assert db.current_revision(engine) == db.HEAD
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM leads")) == 2
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
