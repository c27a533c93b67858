"""Part of the burst scenario: one outbox pass while a deep backlog waits for a paced channel.

After a big event, or when Slack comes back from an outage, thousands of cards may wait their
turn in one channel (Slack allows ~1 post a second) while as many DMs about other leads are due.
Every pass leaves the cards out, with whatever of their leads is queued behind them, and takes
the DMs. Timed here: that pass's query, as the live loop runs it with deliveries in flight,
with `n` cards waiting and `n` DMs due, for a small and a large `n`, over a delivered history
(the outbox of the leads before), in a fresh table as after a first burst (no statistics yet:
autovacuum has not analysed it) and once analysed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import LEADS_CHANNEL, Context, Database, median
from bench.data import LEADS, OUTBOX, bulk_insert
from bench.workload import REPS, new_lead_row
from bot.app import build_services
from bot.local import local_settings
from bot.outbox import CARD, MESSAGE
from models import PENDING, SENT

REPS_TIMED = 7
LIMIT = 100  # the live loop's batch (Outbox._dispatch)
IN_FLIGHT = list(range(1, 17))  # leads whose delivery is under way (the loop's 16 slots)


def _history(size: int, now: datetime) -> list[dict[str, Any]]:
    """`size` delivered DMs, older than the backlog (lower ids), as months of use leave."""
    sent = {
        "kind": MESSAGE,
        "lead_id": None,
        "dedupe_key": None,
        "thread_ts": None,
        "status": SENT,
        "attempts": 1,
        "lease_owner": None,
        "lease_until": None,
        "last_error": None,
        "payload": '{"text": "dm"}',
        "result_ts": "1700000000.000100",
    }
    old = now - timedelta(days=30)
    return [
        {
            **sent,
            "channel": REPS[i % len(REPS)],
            "next_attempt_at": old,
            "created_at": old,
            "sent_at": old,
        }
        for i in range(size)
    ]


def _rows(n: int, now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    leads = []
    for i in range(2 * n):
        row = new_lead_row(i, now)
        row["id"] = i + 1
        leads.append(row)
    common = {
        "thread_ts": None,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now - timedelta(seconds=5),
        "lease_owner": None,
        "lease_until": None,
        "last_error": None,
        "created_at": now - timedelta(seconds=5),
        "sent_at": None,
        "result_ts": None,
        "payload": '{"text": "card"}',
    }
    card = {**common, "kind": CARD, "channel": LEADS_CHANNEL}
    items = [{**card, "lead_id": i + 1, "dedupe_key": f"card:{i + 1}"} for i in range(n)]
    # A DM due now about each of n other leads (cards already out): what the pass must find.
    dm = {**common, "kind": MESSAGE, "dedupe_key": None}
    items += [{**dm, "lead_id": n + k + 1, "channel": REPS[k % len(REPS)]} for k in range(n)]
    return leads, items


def pass_time(ctx: Context, kind: str, n: int, history: int) -> dict[str, Any]:
    """Median seconds of the paced pass's query with `n` cards waiting and `n` DMs due over
    `history` delivered items, unanalysed and analysed; and how many DMs it took (LIMIT at
    most)."""
    database = Database.create(kind, f"backlog{n}", ctx.workdir)
    engine = database.engine()
    out: dict[str, Any] = {"waiting_cards": n, "delivered_history": history}
    try:
        now = datetime.now(UTC)
        leads, items = _rows(n, now)
        bulk_insert(engine, LEADS, leads)
        bulk_insert(engine, OUTBOX, _history(history, now))
        bulk_insert(engine, OUTBOX, items)
        # Nothing is sent: the Slack URL is never called.
        settings = local_settings(
            database.url, "http://127.0.0.1:9/api/", {"LEADS_CHANNEL": LEADS_CHANNEL}
        )
        services = build_services(settings, engine=engine)
        try:
            for stage in ("unanalysed", "analysed"):
                if stage == "analysed":
                    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                        c.exec_driver_sql("ANALYZE outbox")
                times = []
                for _ in range(REPS_TIMED):
                    t0 = time.perf_counter()
                    # The query Outbox._dispatch runs each pass while the channel is out of
                    # tokens and deliveries are in flight (internal, called directly: the live
                    # loop would also send).
                    groups = services.outbox._due_groups(
                        LIMIT, busy=IN_FLIGHT, paced=[LEADS_CHANNEL]
                    )
                    times.append(time.perf_counter() - t0)
                out[stage] = {"seconds": median(times), "dms_found": len(groups)}
        finally:
            services.outbox.stop()
    finally:
        engine.dispose()
        database.drop()
    return out
