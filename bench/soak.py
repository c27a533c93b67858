"""`python -m bench.soak [--db sqlite|postgres] [--minutes N] [--rate R] [--env KEY=VALUE]`.

A soak of `leadbot serve` as deployed: a steady mix of what a team sends, for as long as asked,
with the process's memory, threads and descriptors read after every round. It answers one
question the benchmark's short scenarios cannot: does the process level off, or keep growing?

Each round (a minute by default) sends, open loop at `--rate` requests/s: `/lead` submissions
and Claim clicks alternating (with `--reads`, one request in 25 is `/lead mine` or `/lead report`
instead: their work grows with the leads stored, tens of thousands an hour here, so they measure
data growth more than a leak, and are left out by default). The clicks claim
the cards the earlier rounds' submissions posted, oldest first, as a team working its queue
would, so the unclaimed backlog stays about one round deep instead of growing for the whole
soak. The scheduler runs as deployed, with a 1-minute reminder interval, so reminders,
escalations and card checks happen throughout; every 10 s Slack misbehaves for a few posts
(429s, 500s, or `not_in_channel`), so retries and history look-ups run too. Slack answers
after 50 ms.

Prints a line per round and writes the rounds as JSON (`--out`, default bench/soak.json).
Not part of `python -m bench`: a useful soak is long.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bench.common import (
    LEADS_CHANNEL,
    SECRET,
    Database,
    Prepared,
    PreparingSim,
    Served,
    lead_texts,
    loopback_slack,
    run_load,
)
from bench.workload import MARKETERS, REPS, prepare_claim, prepare_submit
from bot.slack_emulator import SlackEmulator
from models import NEW, Lead

OUT = Path(__file__).resolve().parent / "soak.json"
MANAGER = "U0MGR00001"
FAULT_EVERY = 10.0  # seconds between Slack's bad spells
FAULTS = (
    {"status": 429, "retry_after": 1},
    {"status": 500},
    {"error": "not_in_channel"},
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--minutes", type=float, default=10.0, help="how long to send (default 10)")
    p.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    p.add_argument("--round", type=float, default=60.0, help="seconds per round (default 60)")
    p.add_argument("--reads", action="store_true", help="mix in /lead mine and /lead report")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for the served process, e.g. MALLOC_ARENA_MAX=2 (repeatable)",
    )
    p.add_argument("--out", type=Path, default=OUT, help="where to write the rounds as JSON")
    args = p.parse_args(argv)
    for item in args.env:
        if "=" not in item:
            p.error(f"--env {item!r}: expected KEY=VALUE")
    if args.minutes <= 0 or args.rate <= 0 or args.round < 5:
        p.error("--minutes and --rate must be positive and --round at least 5 seconds")
    return args


def _status(pid: int) -> dict[str, float]:
    """RSS and thread count from /proc, descriptors from /proc/PID/fd."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return {
        "rss_mb": round(int(fields["VmRSS"][0]) / 1024, 1),
        "rss_anon_mb": round(int(fields["RssAnon"][0]) / 1024, 1),
        "threads": int(fields["Threads"][0]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def _unclaimed(engine: Engine, n: int) -> list[Lead]:
    """The `n` oldest leads whose card is up and that nobody has claimed."""
    with Session(engine, expire_on_commit=False) as session:
        leads = session.scalars(
            select(Lead)
            .where(Lead.status == NEW, Lead.card_ts.is_not(None))
            .order_by(Lead.id)
            .limit(n)
        ).all()
        session.expunge_all()
    return list(leads)


def _round_requests(
    served: Served, slack: SlackEmulator, engine: Engine, n: int, start: int, reads: bool
) -> list[Prepared]:
    """`n` requests, signed now (Slack's signatures are good for 5 minutes)."""
    sim = PreparingSim(
        served.url, SECRET, team_id=slack.team_id, response_url_for=slack.response_url
    )
    cards = iter(_unclaimed(engine, n // 2))
    out: list[Prepared] = []
    for i, text in enumerate(lead_texts(n, start)):
        lead = next(cards, None) if i % 2 else None
        if reads and i % 25 == 0:
            # One request in 25 is a read: someone's own leads, or the report.
            sim.kind = "read"
            if (i // 25) % 2:
                sim.slash_command("mine", REPS[i % len(REPS)], channel_id=LEADS_CHANNEL)
            else:
                sim.slash_command("report 7", MARKETERS[i % len(MARKETERS)])
            out.append(sim.take()[0])
        elif lead is not None and lead.card_ts is not None:
            out.append(prepare_claim(sim, lead, REPS[i % len(REPS)], lead.card_ts))
        else:
            out.append(prepare_submit(sim, text, MARKETERS[i % len(MARKETERS)]))
    return out


def _faults(slack: SlackEmulator, stop: threading.Event) -> None:
    for fault in itertools.cycle(FAULTS):
        if stop.wait(FAULT_EVERY):
            return
        slack.fail("chat.postMessage", times=5, **fault)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.ERROR)
    # A soak is often stopped with kill: stop the served process and write the rounds then too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rounds = max(1, round(args.minutes * 60 / args.round))
    per_round = int(args.rate * args.round)
    extra = dict(item.split("=", 1) for item in args.env)
    settings = {
        "REMINDER_AFTER": "1m",
        "ESCALATE_AFTER": "2",
        "MANAGER_IDS": MANAGER,
        # Many channels' worth of cards: one paced channel would only grow a backlog here.
        "SLACK_POSTS_PER_SECOND": "100",
        **extra,
    }
    workdir = Path(tempfile.mkdtemp(prefix="leadbot-soak-"))
    slack = loopback_slack()
    slack.latency(0.05)
    database = Database.create(args.db, "soak", workdir)
    engine = database.engine()
    served = Served.product("soak", database.url, slack.url, workdir, **settings).start()
    stop = threading.Event()
    faults = threading.Thread(target=_faults, args=(slack, stop), daemon=True)
    report: dict[str, Any] = {
        "db": args.db,
        "rate": args.rate,
        "round_s": args.round,
        "reads": args.reads,
        "settings": settings,
        "rounds": [],
    }
    try:
        served.wait_healthy()
        time.sleep(2.0)
        report["start"] = _status(served.pid)
        print(f"start: {report['start']}", flush=True)
        faults.start()
        sent = 0
        t0 = time.monotonic()
        for r in range(rounds):
            requests = _round_requests(
                served, slack, engine, per_round, 1_000_000 + sent, args.reads
            )
            cpu = served.cpu_seconds()
            load = run_load(
                served.port, requests, clients=16, max_seconds=args.round * 1.5, rate=args.rate
            )
            sent += len(requests)
            row = {
                "round": r + 1,
                "minutes": round((time.monotonic() - t0) / 60, 2),
                "requests": sent,
                "errors": load.errors,
                "cpu_ms_per_request": round(
                    1000 * (served.cpu_seconds() - cpu) / max(1, len(load.samples)), 2
                ),
                **_status(served.pid),
            }
            report["rounds"].append(row)
            print(json.dumps(row), flush=True)
            if served.proc is not None and served.proc.poll() is not None:
                print(f"leadbot stopped: {served.log_tail()}", file=sys.stderr)
                return 1
        stop.set()
        time.sleep(args.round / 2)  # idle: the outbox drains, the jobs run once more
        report["idle"] = _status(served.pid)
        print(f"idle: {report['idle']}", flush=True)
    finally:
        # The rounds first, and no second SIGTERM in the middle of cleaning up.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        stop.set()
        served.stop()
        slack.stop()
        engine.dispose()
        database.drop()
    errors = sum(row["errors"] for row in report["rounds"])
    print(f"{sent:,} requests, {errors} errors; rounds in {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
