"""Fixtures: a real database (SQLite, or PostgreSQL when LEADBOT_TEST_DATABASE_URL is set), a
loopback Slack, and the app served over HTTP by its real server, reached with signed requests.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, event, select, text

from bot import db
from bot.clock import FakeClock, FakeDeliveryTime
from bot.local import LocalBot, start_local_bot
from bot.slack_emulator import SlackEmulator
from models import Lead, make_engine

# Tests never judge speed: Hypothesis's per-example deadline and its too-slow check are timings,
# and on a loaded 2-core runner they fail tests whose behaviour is right.
settings.register_profile("leadbot", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("leadbot")

PG_URL_VAR = "LEADBOT_TEST_DATABASE_URL"
SECRET = "test-signing-secret"
TEAM = "T0LEADBOT"
LEADS_CHANNEL = "C0LEADS001"
MANAGER = "U0MANAGER1"
MARKETER = "U0MARKET01"
REP_A = "U0REPAAAA1"
REP_B = "U0REPBBBB1"
START = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)  # a Thursday afternoon


def _worker() -> str:
    """This test process, for names of PostgreSQL databases: its xdist worker, and its run.
    Two suites on one server at once (two checkouts, say) would otherwise drop each other's
    databases mid-run."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:8] or str(os.getpid())
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{run}"


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database per test worker: a SQLite file to copy, or a PostgreSQL database
    (dropped when the worker is done)."""
    pg = os.environ.get(PG_URL_VAR)
    if not pg:
        path = tmp_path_factory.mktemp("db") / "template.db"
        engine = make_engine(f"sqlite:///{path}")
        db.upgrade(engine)
        engine.dispose()
        yield str(path)
        return
    name = f"leadbot_test_{_worker()}"
    url = db.fresh_pg_database(pg, name)
    engine = make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    yield url.render_as_string(hide_password=False)
    db.fresh_pg_database(pg, name, drop=True)


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> str:
    """A fresh, migrated, empty database for one test."""
    if database_template.startswith("postgresql"):
        engine = make_engine(database_template)
        with engine.begin() as conn:
            tables = "leads, lead_events, job_runs, outbox, processed_events"
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()
        return database_template
    path = tmp_path / "leadbot.db"
    shutil.copy(database_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    emulator = SlackEmulator(team_id=TEAM).start()
    yield emulator
    emulator.stop()
    # Whatever a test did, leadbot sent nothing real Slack would have refused or cut short.
    refused = [(r.method, r.error, r.messages[:3]) for r in emulator.refusals]
    assert not refused, f"leadbot sent payloads Slack would refuse: {refused}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


BASE_ENV = {
    "SLACK_SIGNING_SECRET": SECRET,
    "LEADS_CHANNEL": LEADS_CHANNEL,
    "MANAGER_IDS": MANAGER,
    "REMINDER_AFTER": "30m",
    "ESCALATE_AFTER": "2",
    "DIGEST_AT": "09:00",
    "TIMEZONE": "UTC",
    # Fast pacing: tests post many messages to one channel; pacing itself has its own test.
    "SLACK_POSTS_PER_SECOND": "200",
}


class Bot(LocalBot):
    """The running bot plus shortcuts the tests use a lot."""

    def lead(self, lead_id: int) -> Lead:
        with self.services.sessions() as s:
            lead = s.get(Lead, lead_id)
            assert lead is not None, f"lead {lead_id} not in the database"
            return lead

    def leads(self) -> list[Lead]:
        with self.services.sessions() as s:
            return list(s.scalars(select(Lead).order_by(Lead.id)))

    def submit(self, text_: str, user: str = MARKETER) -> Any:
        response = self.sim.slash_command(text_, user_id=user, channel_id="C0EVENTS01")
        self.settle()
        return response


# Link targets carry message timestamps the loopback Slack takes from the wall clock, so their
# digits change run to run; contact checks look only at what a reader sees.
_LINK_TARGET = re.compile(r"<(?:https?://|!date\^)[^|>]*")


def shown_text(text_: str) -> str:
    """The text with Slack link targets removed, leaving their labels."""
    return _LINK_TARGET.sub("<", text_)


@contextmanager
def statements_sent(engine: Engine, starting: str = "") -> Iterator[list[tuple[str, Any]]]:
    """(statement, parameters) of each SQL statement the engine sends inside the block, those
    whose text starts with `starting`."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().startswith(starting):
            sent.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def plans_with_and_without_statistics(
    engine: Engine, statement: str, params: Any
) -> dict[str, str]:
    """The statement's plan before and after ANALYZE, as text: a plan chosen without table
    statistics is what PostgreSQL runs during a new table's first burst, or without autovacuum."""
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    plans = {}
    with engine.connect() as conn:
        for when in ("without statistics", "with statistics"):
            if when == "with statistics":
                conn.execute(text("ANALYZE"))
            rows = conn.exec_driver_sql(explain + statement, params).all()
            plans[when] = " ".join(str(r) for r in rows)
            conn.rollback()  # EXPLAIN of a write plans it without running it; keep nothing
    return plans


@contextmanager
def leads_locked(engine: Engine, pg_mode: str = "ACCESS EXCLUSIVE") -> Iterator[threading.Thread]:
    """The leads table locked by another connection until the block ends (SQLite: the whole
    database, BEGIN EXCLUSIVE; PostgreSQL: LOCK TABLE in `pg_mode`). Yields the holding thread."""
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN EXCLUSIVE")
            else:
                conn.execute(text(f"LOCK TABLE leads IN {pg_mode} MODE"))
            locked.set()
            release.wait(20)
            conn.rollback()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(10)
    try:
        yield holder
    finally:
        release.set()
        holder.join()


def start_bot(
    database_url: str,
    slack: SlackEmulator,
    clock: FakeClock,
    *,
    delivery_time: FakeDeliveryTime | None = None,
    **overrides: str,
) -> Bot:
    local = start_local_bot(
        database_url, slack, clock, {**BASE_ENV, **overrides}, delivery_time=delivery_time
    )
    return Bot(**vars(local))


def at_once(actions: list[Callable[[], object]]) -> None:
    """Run each action on a thread of its own, all released at the same moment; return when
    every one is done."""
    start = threading.Barrier(len(actions))

    def go(act: Callable[[], object]) -> None:
        start.wait()
        act()

    threads = [threading.Thread(target=go, args=(act,)) for act in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture
def bot(database_url: str, slack: SlackEmulator, clock: FakeClock) -> Iterator[Bot]:
    running = start_bot(database_url, slack, clock)
    yield running
    running.stop()


# tgkill(2) by architecture: a signal to one thread of another process (os.kill reaches the
# process, and the kernel picks the thread).
_TGKILL = {"x86_64": 234, "aarch64": 131}


def sigterm_to_a_worker_thread(pid: int) -> None:
    """SIGTERM delivered to one of `pid`'s threads other than its main one, as the kernel may
    deliver a `kill` when the main thread already has a signal pending."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    tid = next(int(t.name) for t in Path(f"/proc/{pid}/task").iterdir() if int(t.name) != pid)
    if libc.syscall(_TGKILL[os.uname().machine], pid, tid, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


needs_tgkill = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir() or os.uname().machine not in _TGKILL,
    reason="needs Linux on x86_64 or aarch64 to signal one thread of another process",
)


@pytest.fixture
def cpu_claims() -> Iterator[None]:
    """For a test whose leadbot processes take CPUs with PIN_CPU=auto: one such test at a time
    across the xdist workers, as their claims are host-wide (every other test's processes run
    with PIN_CPU=off, see tests.test_outbox._bot_env)."""
    with (Path(tempfile.gettempdir()) / "leadbot-tests-cpu-claims.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
