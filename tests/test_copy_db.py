"""`leadbot copy-db TARGET_URL`: a team's data moved from the embedded SQLite file to another
database (SQLite always; PostgreSQL when LEADBOT_TEST_DATABASE_URL is set), through the real
CLI, and the app then run on the copy. And each refusal, in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Engine,
    Pool,
    create_engine,
    event,
    func,
    insert,
    make_url,
    select,
    text,
    update,
)

from bot import cli, copydb, db
from bot.clock import FakeClock
from bot.slack_emulator import SlackEmulator
from models import (
    CLAIMED,
    NEW,
    SENT,
    JobRun,
    Lead,
    LeadEvent,
    OutboxItem,
    ProcessedEvent,
    UTCDateTime,
    make_engine,
)
from tests.conftest import (
    LEADS_CHANNEL,
    MARKETER,
    PG_URL_VAR,
    REP_A,
    REP_B,
    Bot,
    _worker,
    start_bot,
)
from tests.test_outcomes import choose, claim, click_card

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get(PG_URL_VAR)
needs_pg = pytest.mark.skipif(not PG, reason=f"needs {PG_URL_VAR}")

# NULLs (no phone, no company), text from several scripts, an emoji, a newline in the notes.
LEADS = [
    "Jane Doe, jane@acme.example, Acme Corp, +1 415 555 0100, hot, #SaaStr2026, wants a demo",
    "Zoë Ångström, zoe@örebro.example, cold, #Nordic, notes: läuft — 🚀\nsecond line",
    "李雷, +86 10 5555 0199, title: 总监, #SaaStr2026",
    "Raj Patel, raj@globex.example, Globex, title: CTO, territory: EMEA",
]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite file to copy: the source is SQLite whatever the suite runs on."""
    path = tmp_path_factory.mktemp("copydb") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    engine.dispose()
    return path


def empty_sqlite(template: Path, path: Path) -> str:
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a folder without .env, with DATABASE_URL unset: each test sets what it needs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path


@pytest.fixture
def source(sqlite_template: Path, cwd: Path, slack: SlackEmulator, clock: FakeClock) -> str:
    """A SQLite database a team has used: leads submitted over signed HTTP, claimed, with
    outcomes, their cards and DMs delivered through the outbox, an Events API event, a digest
    (a job run). The bot is stopped, as copy-db asks."""
    url = empty_sqlite(sqlite_template, cwd / "leadbot.db")
    bot = start_bot(url, slack, clock)
    try:
        for text_ in LEADS:
            assert bot.submit(text_).status == 200
        jane, zoe, li, _raj = bot.leads()
        claim(bot, jane.id, REP_A)
        choose(bot, REP_A, bot.lead(jane.id), "qualified")
        claim(bot, li.id, REP_B)
        claim(bot, zoe.id, REP_A)
        click_card(bot, REP_A, bot.lead(zoe.id), "lead_release")  # back to new, with history
        bot.sim.event({"type": "app_home_opened", "user": REP_A, "tab": "home"}, event_id="Ev0KEEP")
        bot.settle()
        bot.clock.set(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
        assert bot.run_job("digest").startswith("sent")
    finally:
        bot.stop()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_pg)])
def target(request: pytest.FixtureRequest, cwd: Path) -> Iterator[str]:
    """A URL for a database that does not exist yet (SQLite), or exists empty (PostgreSQL:
    created for this test on the test server, and dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{cwd / 'moved.db'}"
        return
    yield from _pg_database()


@pytest.fixture
def pg_target() -> Iterator[str]:
    yield from _pg_database()


def _pg_database() -> Iterator[str]:
    assert PG
    name = f"leadbot_copy_{_worker()}"
    url = db.fresh_pg_database(PG, name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        db.fresh_pg_database(PG, name, drop=True)


def copy_db(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    source_url: str,
    target_url: str,
) -> tuple[int, str, str]:
    """`leadbot copy-db TARGET_URL` with DATABASE_URL=source_url: (exit code, stdout, stderr)."""
    monkeypatch.setenv("DATABASE_URL", source_url)
    capsys.readouterr()
    code = cli.main(["copy-db", target_url])
    out, err = capsys.readouterr()
    return code, out, err


def refused(result: tuple[int, str, str]) -> str:
    """The one line a refusal prints, without its `leadbot: `."""
    code, _out, err = result
    assert code == 2, err
    assert err.startswith("leadbot: ") and err.count("\n") == 1, err
    return err.removeprefix("leadbot: ").rstrip("\n")


def dump(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in primary-key order (text by code point, whatever the
    database's collation), read through the models' column types."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: sorted(
                    (r._asdict() for r in conn.execute(select(t))),
                    key=lambda r, t=t: tuple(r[c.name] for c in t.primary_key.columns),
                )
                for t in copydb.tables()
            }
    finally:
        engine.dispose()


def counts(url: str) -> dict[str, int]:
    return {name: len(rows) for name, rows in dump(url).items()}


def seconds(out: str) -> str:
    return out.rsplit(" in ", 1)[1].split("s ")[0]


def verified(out: str) -> str:
    return out.split("reads back as the source holds it (", 1)[1].split("s)")[0]


def report(bot: Bot, args: str = "report") -> Any:
    r = bot.sim.slash_command(args, user_id=MARKETER, channel_id="C0EVENTS01")
    bot.settle()
    assert r.status == 200, r.body
    return r.json()


# --- the copy ---------------------------------------------------------------------------------


def test_tables_come_from_the_models_parents_first() -> None:
    names = [t.name for t in copydb.tables()]
    assert set(names) == {"leads", "lead_events", "job_runs", "outbox", "processed_events"}
    assert names.index("leads") < names.index("lead_events")
    assert names.index("leads") < names.index("outbox")


def test_copy_keeps_every_row_and_the_app_runs_on_the_copy(
    source: str,
    target: str,
    slack: SlackEmulator,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = dump(source)
    assert all(before.values()), {k: len(v) for k, v in before.items()}  # every table has rows
    # The report as the team saw it on SQLite (the bot only reads: the source is unchanged).
    old = start_bot(source, slack, clock)
    try:
        reports = [report(old), report(old, "report #SaaStr2026 90")]
    finally:
        old.stop()
    assert dump(source) == before

    code, out, err = copy_db(capsys, monkeypatch, source, target)
    assert code == 0, err
    assert err == ""
    for name, rows in before.items():
        assert f"  {name} " in out and f" {len(rows):,}\n" in out.split(f"  {name} ")[1][:40]
    assert f"copied {sum(map(len, before.values())):,} rows in 5 tables" in out
    if target.startswith("sqlite"):
        assert "schema migrated from empty to" in out
    else:  # planned from statistics from the first request on
        assert "analysed the copy for PostgreSQL's planner" in out
        with create_engine(target).connect() as conn:
            analysed = conn.execute(
                text("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")
            ).scalars()
            assert {t.name for t in copydb.tables()} <= set(analysed)

    # Every row, every column: ids, aware UTC timestamps, unicode, NULLs.
    after = dump(target)
    assert after == before
    zoe = next(r for r in after["leads"] if r["name"] == "Zoë Ångström")
    assert zoe["phone"] is None and zoe["company"] is None and "🚀\nsecond line" in zoe["notes"]
    assert zoe["submitted_at"].tzinfo is not None
    assert (
        zoe["submitted_at"]
        == next(r for r in before["leads"] if r["id"] == zoe["id"])["submitted_at"]
    )

    # The app on the copy: the same report, a claim on a copied card, new ids after the old.
    bot = start_bot(target, slack, clock)
    try:
        assert [report(bot), report(bot, "report #SaaStr2026 90")] == reports
        assert zoe["status"] == NEW
        claim(bot, zoe["id"], REP_B)
        claimed = bot.lead(zoe["id"])
        assert (claimed.status, claimed.owner_id) == (CLAIMED, REP_B)
        card = slack.message(LEADS_CHANNEL, claimed.card_ts or "")
        assert card is not None and REP_B in str(card.blocks)  # the copied card was updated

        top = {
            t: max((r["id"] for r in rows), default=0)
            for t, rows in before.items()
            if t != "processed_events"
        }
        assert bot.submit("Ada Lovelace, ada@engines.example, hot").status == 200
        new = bot.leads()[-1]
        assert new.name == "Ada Lovelace" and new.id == top["leads"] + 1
        with bot.services.sessions() as s:
            assert (
                s.scalar(select(func.min(LeadEvent.id)).where(LeadEvent.lead_id == new.id))
                > (top["lead_events"])
            )
            assert (
                s.scalar(select(func.min(OutboxItem.id)).where(OutboxItem.lead_id == new.id))
                > (top["outbox"])
            )
            seen = s.scalar(select(func.count()).select_from(ProcessedEvent))
        assert bot.lead(new.id).card_ts  # its card went out
        # Slack's retry of an event handled before the move is still recognised as one.
        bot.sim.event(
            {"type": "app_home_opened", "user": REP_A, "tab": "home"},
            event_id="Ev0KEEP",
            retry_num=1,
        )
        bot.settle()
        with bot.services.sessions() as s:
            assert s.scalar(select(func.count()).select_from(ProcessedEvent)) == seen
        # The digest knows it already went out today.
        assert bot.run_job("digest").startswith("already sent")
    finally:
        bot.stop()


def test_a_copy_that_fails_leaves_the_target_without_a_row(
    source: str, target: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row the target refuses (an event of a lead that is gone: SQLite kept it with its
    foreign keys off) fails the copy after other rows were written: none of them is kept, and
    the message carries no row's values."""
    engine = make_engine(source)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.execute(
            insert(LeadEvent).values(
                lead_id=999,
                at=datetime(2026, 1, 1, tzinfo=UTC),
                actor=REP_A,
                kind="claimed",
                detail="secret@example.com",
            )
        )
    engine.dispose()
    message = refused(copy_db(capsys, monkeypatch, source, target))
    assert message.startswith("copy failed at lead_events (")
    assert "IntegrityError" in message or "ForeignKeyViolation" in message
    assert message.endswith("TARGET_URL holds none of it, only the schema")
    assert "secret" not in message and "999" not in message
    assert set(counts(target).values()) == {0}
    # Repaired, the same command goes through.
    engine = make_engine(source)
    with engine.begin() as conn:
        conn.execute(LeadEvent.__table__.delete().where(LeadEvent.lead_id == 999))
    engine.dispose()
    code, _, err = copy_db(capsys, monkeypatch, source, target)
    assert code == 0, err
    assert dump(target) == dump(source)


def test_the_console_command_copies_in_one_process(source: str, cwd: Path) -> None:
    """As an operator runs it: `leadbot copy-db`, DATABASE_URL from .env, nothing on stderr."""
    (cwd / ".env").write_text(f"DATABASE_URL={source}\n")
    target = f"sqlite:///{cwd / 'copy.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "copy-db", target],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = counts(source)
    assert result.stdout.splitlines() == [
        f"copying {source} to {target}",
        f"TARGET_URL: schema migrated from empty to {db.HEAD}",
        *(f"  {name:<16} {n:>12,}" for name, n in rows.items()),
        f"verified: every row reads back as the source holds it ({verified(result.stdout)}s)",
        f"copied {sum(rows.values())} rows in 5 tables in {seconds(result.stdout)}s "
        "— point DATABASE_URL at it and start leadbot",
    ]
    assert dump(target) == dump(source)


def test_ctrl_c_during_the_copy_keeps_nothing_and_an_older_empty_target_is_migrated(
    source: str, sqlite_template: Path, cwd: Path
) -> None:
    from bot.cli import StartupError
    from bot.settings import Settings

    target = cwd / "old.db"
    engine = make_engine(f"sqlite:///{target}")
    db.upgrade(engine, "0003")  # a database an older leadbot made, still empty
    engine.dispose()
    said: list[str] = []

    def interrupt_after_leads(line: str) -> None:
        said.append(line)
        if line.startswith("  leads "):
            raise KeyboardInterrupt

    settings = Settings(database_url=source)
    with pytest.raises(StartupError) as e:
        copydb.copy_database(settings, f"sqlite:///{target}", say=interrupt_after_leads)
    assert str(e.value) == "copy interrupted; TARGET_URL holds none of it, only the schema"
    assert f"TARGET_URL: schema migrated from 0003 to {db.HEAD}" in said
    assert set(counts(f"sqlite:///{target}").values()) == {0}
    copied = copydb.copy_database(settings, f"sqlite:///{target}", say=said.append)
    assert copied.counts == counts(source) and copied.migrated_from is None
    assert dump(f"sqlite:///{target}") == dump(source)


# --- verifying what was copied ---------------------------------------------------------------

BIG = 2**31 - 1  # the highest id PostgreSQL's integer holds
# Control characters (no NUL: PostgreSQL refuses it), a line separator, a zero-width joiner and
# a byte-order mark, emoji made of several code points, the highest code point.
ODD = "\x01\x07\x1b[31m\t\r\x7f\u2028\u200d\ufeff 👩‍👩‍👧‍👦 🏳️‍🌈 \U0010ffff"
# Event ids that "C" and an ICU/glibc collation sort differently ('B' < 'a' by code point).
EVENT_IDS = ["Ev0a", "Ev0B", "ev0_", "Ev0Ä", "Ev0😀", "Ev0 "]
# Timestamps with microseconds, in the hour Europe's clocks skip.
ODD_AT = datetime(2026, 3, 29, 1, 30, 59, 999_999, tzinfo=UTC)
LEAD_AT = ODD_AT - timedelta(microseconds=1)  # the unusual lead's, and only its
EMAIL = "ø@xn--rebro-jua.example"


def add_unusual_rows(url: str) -> None:
    """Rows at the edges of what the columns hold, written through the models' types."""
    engine = make_engine(url)
    payload = {"text": ODD, "blocks": [{"type": "section", "z": 1, "a": [1.5, None, True]}]}
    with engine.begin() as conn:
        conn.execute(
            insert(Lead).values(
                id=BIG,
                team_id="T0LEADBOT",
                name="Ødegaard " + ODD,
                email=EMAIL,
                company="",  # empty, not NULL
                priority="hot",
                notes="long " * 40_000 + ODD,
                submitted_by=MARKETER,
                submitted_at=LEAD_AT,
                claimed_at=datetime(1970, 1, 1, tzinfo=UTC),
                claim_due_at=datetime(2199, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
                version=BIG,
                duplicate_of_id=-1,
            )
        )
        conn.execute(
            insert(LeadEvent).values(
                id=BIG,
                lead_id=BIG,
                at=ODD_AT + timedelta(microseconds=1),
                actor=MARKETER,
                kind="submitted",
                detail=json.dumps(payload, ensure_ascii=False),
            )
        )
        conn.execute(
            insert(OutboxItem).values(
                id=BIG,
                lead_id=BIG,
                kind="message",
                channel=REP_A,
                payload=json.dumps(payload, ensure_ascii=False, indent=1),
                status=SENT,
                attempts=0,
                next_attempt_at=ODD_AT,
                created_at=ODD_AT,
                sent_at=ODD_AT,
            )
        )
        conn.execute(insert(JobRun).values(job="digest", due_on=date(2024, 2, 29), at=ODD_AT))
        conn.execute(insert(ProcessedEvent), [{"event_id": e, "at": ODD_AT} for e in EVENT_IDS])
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_pg)])
def sorting_target(request: pytest.FixtureRequest, cwd: Path) -> Iterator[str]:
    """As `target`, but the PostgreSQL database sorts text by an ICU collation, as databases
    made with an en_US locale do, not by code point as SQLite (and the test server) does."""
    if request.param == "sqlite":
        yield f"sqlite:///{cwd / 'moved.db'}"
        return
    assert PG
    name = f"leadbot_copy_icu_{_worker()}"
    url = db.fresh_pg_database(PG, name, drop=True).set(database=name)
    admin = make_engine(make_url(PG).set(drivername="postgresql+psycopg"))
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(
                f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
                "ICU_LOCALE 'en-US'"
            )
    finally:
        admin.dispose()
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        db.fresh_pg_database(PG, name, drop=True)


def test_unusual_values_are_copied_and_verified(
    source: str,
    sorting_target: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_unusual_rows(source)
    before = dump(source)
    code, out, err = copy_db(capsys, monkeypatch, source, sorting_target)
    assert code == 0, err
    assert "\nverified: every row reads back as the source holds it (" in out
    assert dump(sorting_target) == before
    lead = next(r for r in before["leads"] if r["id"] == BIG)
    assert lead["name"].endswith(ODD) and lead["submitted_at"] == LEAD_AT and lead["company"] == ""


def write_late(monkeypatch: pytest.MonkeyPatch, victim: datetime) -> None:
    """From now on, the timestamp type writes `victim` a microsecond late: a conversion bug,
    on every backend (COPY and INSERT both convert through the column's type)."""
    write = UTCDateTime.process_bind_param

    def process_bind_param(self: UTCDateTime, value: datetime | None, dialect: Any) -> Any:
        if value == victim:
            value += timedelta(microseconds=1)
        return write(self, value, dialect)

    monkeypatch.setattr(UTCDateTime, "process_bind_param", process_bind_param)


def send_garbled(request: pytest.FixtureRequest, target: str, victim: str) -> None:
    """Until the test ends, what goes to the database `target` has the last character of the
    text `victim` changed on the way, past the column types: a driver or encoding bug. SQLite:
    in the SQL parameters (a cursor event); PostgreSQL: as psycopg writes it, COPY included (a
    text dumper on the target's connections)."""
    name = make_url(target).database

    def garbled(value: Any) -> Any:
        return value[:-1] + "?" if value == victim else value

    if target.startswith("sqlite"):

        def before(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> Any:
            if conn.engine.url.database != name:
                return sql, params
            if many:
                return sql, [tuple(map(garbled, row)) for row in params]
            return sql, tuple(map(garbled, params))

        event.listen(Engine, "before_cursor_execute", before, retval=True)
        request.addfinalizer(lambda: event.remove(Engine, "before_cursor_execute", before))
        return

    import psycopg
    from psycopg.types.string import StrDumper

    class Garbling(StrDumper):
        def dump(self, obj: str) -> Any:
            return super().dump(garbled(obj))

    def connected(dbapi_connection: Any, record: Any) -> None:
        if (
            isinstance(dbapi_connection, psycopg.Connection)
            and dbapi_connection.info.dbname == name
        ):
            dbapi_connection.adapters.register_dumper(str, Garbling)

    event.listen(Pool, "connect", connected)
    request.addfinalizer(lambda: event.remove(Pool, "connect", connected))


@pytest.mark.parametrize(
    "column",
    ["submitted_at", "email"],
    ids=["a timestamp written a microsecond late", "an email garbled by the driver"],
)
def test_a_value_written_wrongly_is_named_and_nothing_is_kept(
    source: str,
    target: str,
    column: str,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The counts match, so only reading the rows back sees it. The message names the table,
    the row's id and the column, never a value."""
    add_unusual_rows(source)
    if column == "submitted_at":
        write_late(monkeypatch, LEAD_AT)
    else:
        send_garbled(request, target, EMAIL)
    message = refused(copy_db(capsys, monkeypatch, source, target))
    assert message == (
        "TARGET_URL: the copy does not read back as the source holds it, first at leads "
        f"id={BIG}, column {column}; nothing was kept"
    )
    assert "@" not in message and "rebro" not in message
    assert set(counts(target).values()) == {0}


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target_url", "expected"),
    [
        ("leadbot.db", "TARGET_URL: 'leadbot.db' is not a database URL — expected sqlite:///"),
        ("", "TARGET_URL: '' is not a database URL"),
        ("mysql://u@h/leads", "TARGET_URL: 'mysql' is not supported — use sqlite:///… or post"),
        ("postgresql+asyncpg://h/db", "TARGET_URL: the driver 'postgresql+asyncpg' is not supp"),
        ("postgresql://u:pw@h/", "TARGET_URL: 'postgresql://u:***@h/' names no database"),
        ("sqlite://", "TARGET_URL: 'sqlite://' is a SQLite database in memory"),
        ("postgresql://u:pw@h:port/db", "TARGET_URL: 'postgresql://u:***@h:port/db' is not a "),
    ],
)
def test_a_target_url_that_is_no_database_url_is_named(
    source: str,
    target_url: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = refused(copy_db(capsys, monkeypatch, source, target_url))
    assert message.startswith(expected), message
    assert "pw" not in message


def test_the_source_itself_is_refused_as_a_target(
    source: str, cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = dump(source)
    (cwd / "sub").mkdir()
    for same in ("sqlite:///leadbot.db", f"sqlite:///{cwd}/sub/../leadbot.db"):
        message = refused(copy_db(capsys, monkeypatch, source, same))
        assert message == (
            f"TARGET_URL: {same!r} is the database DATABASE_URL names — give the new, empty "
            "database to copy into"
        )
    assert dump(source) == before


@needs_pg
def test_the_same_postgresql_database_by_another_host_name_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cwd: Path
) -> None:
    assert PG
    from sqlalchemy import make_url

    url = make_url(PG)
    other = url.set(host="localhost" if url.host != "localhost" else "127.0.0.1")
    message = refused(copy_db(capsys, monkeypatch, PG, other.render_as_string(hide_password=False)))
    assert "is the database DATABASE_URL names" in message


def test_a_target_that_holds_data_is_never_touched(
    source: str, cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    full = cwd / "other.db"
    shutil.copy(cwd / "leadbot.db", full)
    engine = make_engine(f"sqlite:///{full}")
    with engine.begin() as conn:  # a different team's data: the copy must not merge into it
        conn.execute(update(Lead).values(name="Other team"))
    engine.dispose()
    before = full.read_bytes()
    rows = counts(source)
    message = refused(copy_db(capsys, monkeypatch, source, f"sqlite:///{full}"))
    held = ", ".join(f"{n} {name}" for name, n in rows.items())
    assert message == (
        f"TARGET_URL: 'sqlite:///{full}' already holds {held} — copy-db copies only into a "
        "database without leadbot's data: it never merges or overwrites (create a new, empty "
        "database)"
    )
    assert rows["leads"] == 4 and "4 leads" in held
    assert full.read_bytes() == before


def test_a_target_with_only_a_processed_event_is_not_empty(
    source: str,
    target: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any row in any of leadbot's tables counts, not only leads; a target at an older schema
    is checked before it is migrated, and left as it was."""
    engine = make_engine(target)
    db.upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO processed_events (event_id, at) VALUES ('Ev1', :at)"),
            {"at": datetime(2026, 1, 1)},
        )
    message = refused(copy_db(capsys, monkeypatch, source, target))
    assert "already holds 1 processed_events — copy-db copies only into" in message
    assert db.current_revision(engine) == "0002"
    engine.dispose()


def test_an_empty_or_missing_source_is_named(
    sqlite_template: Path,
    cwd: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = f"sqlite:///{cwd / 'copy.db'}"
    message = refused(copy_db(capsys, monkeypatch, "sqlite:///leadbot.db", target))
    assert message == (
        f"DATABASE_URL: there is no database at {str(cwd / 'leadbot.db')!r} — run copy-db where "
        "leadbot runs (with its .env), or set DATABASE_URL to the database to copy"
    )
    assert not (cwd / "leadbot.db").exists()  # not created empty on the way
    empty = empty_sqlite(sqlite_template, cwd / "empty.db")
    message = refused(copy_db(capsys, monkeypatch, empty, target))
    assert message == (
        "DATABASE_URL: the database holds no rows, so there is nothing to copy — set "
        f"DATABASE_URL to the database leadbot has been using (now {empty!r})"
    )
    assert not (cwd / "copy.db").exists()


def test_a_sqlite_target_in_a_missing_folder_or_a_folder_is_named(
    source: str, cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    message = refused(copy_db(capsys, monkeypatch, source, "sqlite:///no/such/leadbot.db"))
    assert message == (
        f"TARGET_URL: the folder {str(cwd / 'no' / 'such')!r} does not exist — create it first, "
        "or name a file in a folder that does"
    )
    assert not (cwd / "no").exists()
    (cwd / "dir.db").mkdir()
    message = refused(copy_db(capsys, monkeypatch, source, "sqlite:///dir.db"))
    assert message == "TARGET_URL: 'sqlite:///dir.db' is a folder — name a file in it"
    (cwd / "notes.db").write_text("not a database")
    message = refused(copy_db(capsys, monkeypatch, source, "sqlite:///notes.db"))
    assert message == "TARGET_URL: cannot use the database (DatabaseError: file is not a database)"
    assert (cwd / "notes.db").read_text() == "not a database"


def test_an_unreachable_target_is_named(
    source: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    message = refused(
        copy_db(capsys, monkeypatch, source, "postgresql://nobody:pw@127.0.0.1:9/none")
    )
    assert message.startswith("TARGET_URL: cannot use the database (OperationalError: ")
    assert "pw" not in message


@needs_pg
def test_a_postgresql_target_that_does_not_exist_says_to_create_it(
    source: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert PG
    from sqlalchemy import make_url

    missing = make_url(PG).set(database=f"leadbot_nothere_{_worker()}")
    message = refused(
        copy_db(capsys, monkeypatch, source, missing.render_as_string(hide_password=False))
    )
    assert message.startswith("TARGET_URL: cannot use the database (OperationalError: ")
    assert message.endswith(f"— create it first (createdb {missing.database}), empty")


def test_schemas_must_be_known_and_the_source_current(
    source: str,
    sqlite_template: Path,
    cwd: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """copy-db never migrates the source (it only reads it); it migrates the target, unless a
    newer leadbot made its schema."""
    newer = empty_sqlite(sqlite_template, cwd / "newer.db")
    engine = make_engine(newer)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    message = refused(copy_db(capsys, monkeypatch, source, newer))
    assert message == (
        "TARGET_URL: the schema is at 9999, which this leadbot does not know — it was migrated "
        "by a newer leadbot; run that version (or restore a backup)"
    )
    old = cwd / "old.db"
    engine = make_engine(f"sqlite:///{old}")
    db.upgrade(engine, "0005")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO processed_events (event_id, at) VALUES ('Ev1', '2026-01-01')")
        )
    engine.dispose()
    message = refused(copy_db(capsys, monkeypatch, f"sqlite:///{old}", f"sqlite:///{cwd}/t.db"))
    assert message == (
        f"DATABASE_URL: the schema is out of date (at 0005, needs {db.HEAD}) — run "
        "`leadbot migrate` first"
    )
    engine = make_engine(f"sqlite:///{old}")
    assert db.current_revision(engine) == "0005"
    engine.dispose()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or sys.maxsize <= 2**32,
    reason="another process's hold on a SQLite file is read on 64-bit Linux only",
)
def test_a_source_another_process_has_open_is_refused(
    source: str, cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leadbot still serving would write after the snapshot: what it wrote would be lost."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute('PRAGMA journal_mode=WAL'); c.execute('SELECT count(*) FROM leads'); "
            "print('open', flush=True); sys.stdin.read()",
            str(cwd / "leadbot.db"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        message = refused(copy_db(capsys, monkeypatch, source, f"sqlite:///{cwd}/copy.db"))
        assert message == (
            f"DATABASE_URL: leadbot.db is open in another process (pid {holder.pid}) — stop "
            "`leadbot serve`/`socket` and any `leadbot jobs` first: what they wrote after the "
            "copy would not be in it"
        )
    finally:
        holder.communicate("", timeout=10)
    code, _, err = copy_db(capsys, monkeypatch, source, f"sqlite:///{cwd}/copy.db")
    assert code == 0, err


@needs_pg
def test_text_postgresql_would_refuse_is_named_by_column_before_copying(
    source: str,
    pg_target: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = pg_target  # SQLite takes any text
    engine = make_engine(source)
    with engine.begin() as conn:  # SQLite does not enforce lengths, and keeps NULs
        conn.execute(update(Lead).where(Lead.id == 1).values(company="x" * 201))
        conn.execute(update(Lead).where(Lead.id == 2).values(notes="a\x00b"))
    engine.dispose()
    message = refused(copy_db(capsys, monkeypatch, source, target))
    assert message == (
        "TARGET_URL: PostgreSQL would refuse values the source holds — leads.company: 1 row "
        "longer than 200 characters; leads.notes: 1 row holding a NUL character; correct them "
        "in DATABASE_URL first"
    )
    assert set(counts(target).values()) == {0}


@needs_pg
def test_postgresql_copies_back_to_sqlite(
    bot: Bot,
    cwd: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other way works too (PostgreSQL timestamps with a time zone into SQLite's naive
    UTC): for a test copy of production, say."""
    for text_ in LEADS[:2]:
        bot.submit(text_)
    claim(bot, bot.leads()[0].id, REP_A)
    bot.stop()
    target = f"sqlite:///{cwd / 'back.db'}"
    code, _, err = copy_db(capsys, monkeypatch, database_url, target)
    assert code == 0, err
    assert dump(target) == dump(database_url)
