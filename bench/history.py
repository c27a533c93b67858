"""Scenario 2: cost vs history.

The reminder sweep (`jobs.reminders.run`: `leads.due_reminders` + `take_reminder` per lead), the
outbox sweep (`Outbox.run_pass` over a few due items) and the digest (`leads.digest_for`) are
timed with the same work to do — the same due leads, the same due outbox items, the same last
24 hours — over a small and a large stored history (most leads claimed or closed, spread over two
years, each with its sent card and one sent DM in the outbox). The history grows in place, so
the only difference between the two measurements is the number of old rows. The SQL each
sweep runs is captured and EXPLAINed on the large history; full scans of `leads` or `outbox`
are flagged.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, event, update

import models
from bench.common import (
    LEADS_CHANNEL,
    Context,
    Database,
    Row,
    ScenarioResult,
    loopback_slack,
    median,
    ratio,
)
from bench.data import LEADS, OUTBOX, bulk_insert, check_roundtrip, max_id
from bench.workload import MARKETERS, REPS
from bot import leads
from bot.app import build_services
from bot.clock import FakeClock
from bot.local import local_settings
from bot.services import Services
from bot.slack_emulator import SlackEmulator
from jobs import reminders
from models import CLAIMED, NEW, PENDING, SENT, OutboxItem

NAME = "history"
DUE_REMINDERS = 50  # unclaimed leads whose reminder is due, in both histories
NOT_DUE = 100  # unclaimed leads not due yet (a realistic live backlog)
RECENT = 300  # leads submitted (and mostly claimed) in the digest's last 24 hours
DUE_OUTBOX = 5  # pending outbox items due now
TARGET_GROWTH = 1.5
TARGET_DIGEST_PG_MS = 2000.0
MANAGER = "U0MANAGER1"

# Closed states, where the product has them (the lifecycle grows): history rows use them too.
_CLOSED = [
    getattr(models, n) for n in ("WON", "LOST", "CLOSED", "DISQUALIFIED") if hasattr(models, n)
]


def _person(i: int) -> dict[str, Any]:
    return {
        "team_id": "T0LEADBOT",
        "name": f"Alex Historic {i}",
        "email": f"alex.historic{i}@example.com",
        "phone": f"+1 212 555 {i % 10000:04d}",
        "company": f"Company {i % 5000}",
        "title": ("CTO", "VP Sales", "Head of IT", "Engineer")[i % 4],
        "priority": ("hot", "warm", "cold")[i % 3],
        "event": f"expo{i % 40}",
        "territory": ("EMEA", "NA", "APAC")[i % 3],
        "persona": None,
        "notes": "talked about pricing and the integration with their CRM",
        "submitted_by": MARKETERS[i % len(MARKETERS)],
        "source_channel": "C0EVENTS01",
        "version": 2,
        "card_channel": LEADS_CHANNEL,
        "card_error": None,
        "reminders_sent": 0,
        "next_reminder_at": None,
        "escalated_at": None,
    }


def _card(row: dict[str, Any], i: int) -> None:
    posted = row["submitted_at"] + timedelta(seconds=2)
    row["card_ts"] = f"{posted.timestamp():.6f}"
    row["card_posted_at"] = posted
    row["card_permalink"] = f"https://leadbot.slack.com/archives/{LEADS_CHANNEL}/p{i:016d}"


def _history_rows(
    first_id: int, n: int, now: datetime, rng: random.Random
) -> Iterator[dict[str, Any]]:
    """Old leads: submitted between two years and two days ago; claimed (within 8 hours, so
    before the digest's last 24 hours: the window holds the same leads at every size), most of
    them closed."""
    start = now - timedelta(days=730)
    span = (timedelta(days=728)).total_seconds()
    for k in range(n):
        i = first_id + k
        row = _person(i)
        row["submitted_at"] = start + timedelta(seconds=rng.random() * span)
        row["status"] = _CLOSED[i % len(_CLOSED)] if _CLOSED and i % 10 < 7 else CLAIMED
        row["owner_id"] = REPS[i % 50]
        row["claimed_at"] = row["submitted_at"] + timedelta(seconds=rng.randint(60, 8 * 3600))
        row["reminders_sent"] = i % 3
        _card(row, i)
        yield row


def _outbox_rows(lead_rows: list[dict[str, Any]], first_id: int) -> Iterator[dict[str, Any]]:
    """Each old lead's card and its claimer's DM, delivered long ago."""
    payload = json.dumps({"text": "You claimed a lead: contact details inside.", "blocks": []})
    for k, row in enumerate(lead_rows):
        lead_id = first_id + k
        at = row["submitted_at"]
        common = {
            "lead_id": lead_id,
            "thread_ts": None,
            "status": SENT,
            "attempts": 1,
            "next_attempt_at": at,
            "lease_owner": None,
            "lease_until": None,
            "last_error": None,
            "created_at": at,
            "sent_at": at + timedelta(seconds=2),
        }
        yield {
            **common,
            "kind": "card",
            "dedupe_key": f"card:{lead_id}",
            "channel": LEADS_CHANNEL,
            "payload": None,
            "result_ts": row["card_ts"],
        }
        yield {
            **common,
            "kind": "message",
            "dedupe_key": None,
            "channel": row["owner_id"],
            "payload": payload,
            "result_ts": f"{at.timestamp() + 3:.6f}",
        }


def add_history(engine: Engine, n: int, now: datetime, seed: int) -> float:
    """Append `n` old leads (and their outbox rows); returns seconds taken."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    chunk = 50_000
    done = 0
    # As any bulk load is done: the secondary indexes are built once at the end, from the
    # sorted data, instead of being updated row by row (20% of the load on SQLite).
    indexes = [*LEADS.indexes, *OUTBOX.indexes]
    for index in indexes:
        index.drop(engine)
    while done < n:
        first = max_id(engine, LEADS) + 1
        rows = list(_history_rows(first, min(chunk, n - done), now, rng))
        bulk_insert(engine, LEADS, rows)
        bulk_insert(engine, OUTBOX, _outbox_rows(rows, first))
        if done == 0:
            check_roundtrip(engine, first, rows[0]["submitted_at"])
        done += len(rows)
    for index in indexes:
        index.create(engine)
    if engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk load; the planner needs the statistics.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE leads")
            conn.exec_driver_sql("VACUUM ANALYZE outbox")
            # Flush the load's dirty pages now, not during the timed passes.
            conn.exec_driver_sql("CHECKPOINT")
    return time.perf_counter() - t0


def add_live(engine: Engine, now: datetime, wall: datetime) -> tuple[list[int], list[int]]:
    """The same live work in both histories: due and not-due unclaimed leads, the last 24 hours'
    leads, and a few outbox items due now. Returns (due lead ids, due outbox ids)."""
    rows: list[dict[str, Any]] = []
    for k in range(DUE_REMINDERS + NOT_DUE):
        row = _person(k)
        row.update(
            submitted_at=now - timedelta(hours=2, minutes=k % 60),
            status=NEW,
            owner_id=None,
            claimed_at=None,
            version=1,
        )
        _card(row, k)
        due = k < DUE_REMINDERS
        row["next_reminder_at"] = now - timedelta(minutes=1) if due else now + timedelta(minutes=20)
        rows.append(row)
    for k in range(RECENT):
        row = _person(10_000 + k)
        # Spread over the last 23 hours; claimed within minutes (before `now`).
        row["submitted_at"] = now - timedelta(minutes=10 + (4 * k) % 1380)
        claimed = k % 6 != 0
        row.update(
            status=CLAIMED if claimed else NEW,
            version=2 if claimed else 1,
            owner_id=REPS[k % 50] if claimed else None,
            claimed_at=row["submitted_at"] + timedelta(minutes=1 + k % 9) if claimed else None,
        )
        if not claimed:
            row["next_reminder_at"] = now + timedelta(minutes=1 + k % 29)
        _card(row, 10_000 + k)
        rows.append(row)
    first = max_id(engine, LEADS) + 1
    bulk_insert(engine, LEADS, rows)
    due_leads = list(range(first, first + DUE_REMINDERS))
    first_item = max_id(engine, OUTBOX) + 1
    items = [
        {
            "lead_id": None,
            "kind": "message",
            "dedupe_key": None,
            "channel": f"U0DUE{k:05d}",
            "thread_ts": None,
            "payload": json.dumps({"text": "hello", "blocks": []}),
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": wall - timedelta(minutes=1),
            "lease_owner": None,
            "lease_until": None,
            "last_error": None,
            "created_at": wall,
            "sent_at": None,
            "result_ts": None,
        }
        for k in range(DUE_OUTBOX)
    ]
    bulk_insert(engine, OUTBOX, items)
    return due_leads, list(range(first_item, first_item + DUE_OUTBOX))


class Live:
    """Puts the live work back after each measured pass, outside the timing."""

    def __init__(
        self, services: Services, now: datetime, due_leads: list[int], due_items: list[int]
    ):
        self.services, self.now, self.due_leads, self.due_items = (
            services,
            now,
            due_leads,
            due_items,
        )

    def reset(self) -> None:
        wall = datetime.now(UTC)
        with self.services.sessions.begin() as s:
            s.execute(
                update(models.Lead)
                .where(models.Lead.id.in_(self.due_leads))
                .values(
                    next_reminder_at=self.now - timedelta(minutes=1),
                    reminders_sent=0,
                    escalated_at=None,
                )
            )
            # What the reminder pass queued (the outbox worker is not running here).
            s.execute(
                delete(OutboxItem).where(
                    OutboxItem.status == PENDING, OutboxItem.id.not_in(self.due_items)
                )
            )
            s.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_(self.due_items))
                .values(
                    status=PENDING,
                    next_attempt_at=wall - timedelta(minutes=1),
                    attempts=0,
                    lease_owner=None,
                    lease_until=None,
                    sent_at=None,
                    result_ts=None,
                )
            )


def _ops(services: Services, now: datetime) -> dict[str, Callable[[], Any]]:
    def reminder_sweep() -> str:
        return reminders.run(services)

    def outbox_sweep() -> str:
        return str(services.outbox.run_pass())

    def digest() -> str:
        with services.sessions() as s:
            figures = leads.digest_for(s, now)
        return (
            f"{figures.submitted} submitted, {figures.claimed} claimed, "
            f"backlog {figures.backlog_total}"
        )

    return {"reminder sweep": reminder_sweep, "outbox sweep": outbox_sweep, "digest": digest}


@dataclass
class Setup:
    """One database with its history loaded, and what the sweeps need to run against it."""

    size: int
    database: Database
    engine: Engine
    services: Services
    live: Live
    load_seconds: float


def measure(setups: list[Setup], now: datetime, reps: int) -> dict[int, dict[str, Any]]:
    """Time each sweep `reps` times on every history, alternating between the histories and the
    sweeps, after one warm-up pass each: a burst of noise from the shared machine (other
    people's tests, their fsyncs) then hits both sizes alike instead of one of them."""
    ops = {s.size: _ops(s.services, now) for s in setups}
    times: dict[int, dict[str, list[float]]] = {
        s.size: {n: [] for n in ops[s.size]} for s in setups
    }
    results: dict[int, dict[str, Any]] = {s.size: {} for s in setups}
    for r in range(reps + 1):
        for name in ops[setups[0].size]:
            for setup in setups:
                setup.live.reset()
                t0 = time.perf_counter()
                results[setup.size][name] = ops[setup.size][name]()
                elapsed = time.perf_counter() - t0
                if r:  # the first pass warms SQLAlchemy's statement cache and the pages
                    times[setup.size][name].append(elapsed)
    return {
        size: {
            name: {
                # Best of N: the cost of the work itself; the median shows the noise.
                "best_ms": round(min(t) * 1000, 3),
                "median_ms": round((median(t) or 0) * 1000, 3),
                "runs": len(t),
                "result": results[size][name],
            }
            for name, t in per_op.items()
        }
        for size, per_op in times.items()
    }


# --- query plans -------------------------------------------------------------------------------

_SQLITE_FULL = re.compile(r"^SCAN (leads|outbox)\b")
_PG_FULL = re.compile(r"Seq Scan on (leads|outbox)\b")


def _statements(engine: Engine, fn: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The distinct SELECT/UPDATE/DELETE statements (with parameters) `fn` sends."""
    seen: list[tuple[str, Any]] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if (
            not executemany
            and head in ("SELECT", "UPDATE", "DELETE")
            and all(statement != s for s, _ in seen)
        ):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def capture_plans(engine: Engine, services: Services, live: Live, now: datetime) -> dict[str, Any]:
    """Run each sweep once, record the statements it sends, EXPLAIN each."""
    plans: dict[str, Any] = {}
    for name, fn in _ops(services, now).items():
        live.reset()
        seen = _statements(engine, fn)
        entries = []
        for statement, params in seen:
            if statement.strip().upper() == "SELECT 1":
                continue  # pool_pre_ping
            lines = _explain(engine, statement, params)
            flagged = [ln for ln in lines if _SQLITE_FULL.search(ln.strip()) or _PG_FULL.search(ln)]
            entries.append(
                {"sql": " ".join(statement.split()), "plan": lines, "full_scans": flagged}
            )
        plans[name] = entries
    return plans


def _explain(engine: Engine, statement: str, params: Any) -> list[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            return [str(r[-1]) for r in rows]
        rows = conn.exec_driver_sql("EXPLAIN " + statement, params).all()
        conn.rollback()
        return [str(r[0]) for r in rows]


# --- the scenario ------------------------------------------------------------------------------


def working_now(settings: Any) -> datetime:
    """A business 'now' inside the policy's working hours (reminders sleep outside them), so
    the figures do not depend on the hour the bench is run."""
    from bot.sla import is_working_time

    today = datetime.now(UTC).replace(hour=11, minute=0, second=0, microsecond=0)
    for hours in range(0, 24 * 8):
        when = today - timedelta(hours=hours)
        if is_working_time(when, settings.policy.hours):
            return when
    raise RuntimeError("the policy has no working hours in the last week")


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(NAME)
    small, large = ctx.pick((10_000, 50_000), (10_000, 1_000_000))
    reps = ctx.pick(7, 15)
    label = f"{small // 1000}k→{large // 1000}k" if large < 1_000_000 else f"{small // 1000}k→1M"
    result.details["setup"] = {
        "histories": [small, large],
        "label": label + (" (--quick: 50k instead of 1M)" if ctx.quick else ""),
        "due_reminders": DUE_REMINDERS,
        "unclaimed_not_due": NOT_DUE,
        "last_24h_leads": RECENT,
        "due_outbox_items": DUE_OUTBOX,
        "outbox_rows_per_old_lead": 2,
        "closed_statuses_used": _CLOSED or ["claimed (the product has no closed status yet)"],
        "timing": f"best of {reps} passes after one warm-up pass, alternating between a "
        "database holding the small history and one holding the large (median in details)",
        "postgres_after_load": "VACUUM ANALYZE (as autovacuum would); SQLite: no ANALYZE, as the "
        "product never runs it",
        "lead_events_history": "not loaded (the sweeps only append to it)",
    }
    slack = loopback_slack()  # answers at once: the database is what is measured here
    try:
        for kind in ctx.dbs:
            _one_db(ctx, result, kind, slack, small, large, reps, label)
    finally:
        slack.stop()
    return result


def _setup(
    ctx: Context, kind: str, slack: SlackEmulator, size: int, now: datetime | None
) -> tuple[Setup, datetime]:
    database = Database.create(kind, f"history{size}", ctx.workdir)
    engine = database.engine()
    settings = local_settings(
        database.url,
        slack.url,
        {
            "MANAGER_IDS": MANAGER,
            "LEADS_CHANNEL": LEADS_CHANNEL,
            # Pacing is not what is measured: the due items go to distinct DMs anyway.
            "SLACK_POSTS_PER_SECOND": "1000",
        },
    )
    now = now or working_now(settings)
    services = build_services(settings, engine=engine, clock=FakeClock(now))
    try:
        due_leads, due_items = add_live(engine, now, datetime.now(UTC))
        live = Live(services, now, due_leads, due_items)
        load = add_history(engine, size - DUE_REMINDERS - NOT_DUE - RECENT, now, seed=size)
    except BaseException:
        _teardown(engine, services, database)
        raise
    ctx.log(f"  history/{kind}: {size} leads loaded in {load:.1f}s")
    return Setup(size, database, engine, services, live, load), now


def _teardown(engine: Engine, services: Services, database: Database) -> None:
    services.outbox.stop()
    engine.dispose()
    database.drop()


def _one_db(
    ctx: Context,
    result: ScenarioResult,
    kind: str,
    slack: SlackEmulator,
    small: int,
    large: int,
    reps: int,
    label: str,
) -> None:
    setups: list[Setup] = []
    try:
        first, now = _setup(ctx, kind, slack, small, None)
        setups.append(first)
        second, _ = _setup(ctx, kind, slack, large, now)
        setups.append(second)
        timed = measure(setups, now, reps)
        at_small, at_large = timed[small], timed[large]
        for size in (small, large):
            done = timed[size]["reminder sweep"]["result"]
            if not str(done).startswith(f"{DUE_REMINDERS} "):
                raise RuntimeError(f"the reminder sweep did not do the work set up: {done!r}")
        plans = capture_plans(second.engine, second.services, second.live, now)
        details = {
            "load_seconds": {str(s.size): round(s.load_seconds, 1) for s in setups},
            str(small): at_small,
            str(large): at_large,
            "plans": plans,
        }
    finally:
        for setup in setups:
            _teardown(setup.engine, setup.services, setup.database)
    result.details[kind] = details
    for op in ("reminder sweep", "outbox sweep", "digest"):
        t_small, t_large = at_small[op]["best_ms"], at_large[op]["best_ms"]
        growth = ratio(t_large, t_small)
        result.add(
            Row(
                NAME,
                kind,
                f"{op} {label}",
                t_large,
                "ms",
                t_small,
                growth,
                f"<= {TARGET_GROWTH}x",
                None if growth is None else growth <= TARGET_GROWTH,
                note=f"best of N, {small} vs {large} leads; medians "
                f"{at_small[op]['median_ms']:.1f} → {at_large[op]['median_ms']:.1f} ms",
            )
        )
    if kind == "postgres":
        t = at_large["digest"]["median_ms"]  # the slower figure, against an absolute target
        result.add(
            Row(
                NAME,
                kind,
                f"digest at {large // 1000}k (median)",
                t,
                "ms",
                None,
                None,
                f"< {TARGET_DIGEST_PG_MS:.0f} ms",
                t < TARGET_DIGEST_PG_MS,
            )
        )
    full = sum(len(e["full_scans"]) for entries in plans.values() for e in entries)
    result.add(
        Row(
            NAME,
            kind,
            "full scans in sweep plans",
            full,
            "",
            None,
            None,
            "0",
            full == 0,
            note="; ".join(
                sorted({f for entries in plans.values() for e in entries for f in e["full_scans"]})
            )[:200],
        )
    )
