"""Sizing: does a second `leadbot serve` process add throughput on this machine?

`python -m bench.processes [--db sqlite|postgres] [--requests N] [--rounds R]` starts two
leadbot processes on one database and two bare-Bolt baselines, then sends the ack scenario's
load (16 clients, Slack at 300 ms) to one process, and split 8 + 8 over two, alternating, and
prints requests/s for each. Not part of `python -m bench`: it answers a sizing question (see
the README's Sizing), it is not judged against a target.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path

from bench.ack import CLIENTS, LATENCY, WARMUP, _sim, _warm
from bench.common import Database, LoadResult, Served, loopback_slack, run_load
from bench.workload import mixed, seed_claimable
from bot.slack_emulator import SlackEmulator
from models import Lead


class _Targets:
    """Unclaimed leads handed out in order, each clicked once."""

    def __init__(self, leads: list[Lead]) -> None:
        self.leads = leads
        self.used = 0

    def take(self, n: int) -> list[Lead]:
        out = self.leads[self.used : self.used + n]
        self.used += n
        return out


def _load(
    servers: list[Served], slack: SlackEmulator, targets: _Targets, n: int, start: int
) -> float:
    """`n` requests spread over `servers`, CLIENTS clients in all, submitting the people
    numbered from `start` on (bench.common.lead_texts); total requests/s."""
    share = n // len(servers)
    plans = [
        mixed(_sim(s, slack), targets.take(share // 2 + 1), share, start + share * i)
        for i, s in enumerate(servers)
    ]
    results: list[LoadResult | None] = [None] * len(servers)

    def one(i: int) -> None:
        results[i] = run_load(
            servers[i].port, plans[i], clients=CLIENTS // len(servers), max_seconds=60
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(servers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r.throughput for r in results if r is not None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.processes", description=__doc__)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    p.add_argument("--requests", type=int, default=2000, help="per measured run")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="leadbot-bench-"))
    slack = loopback_slack()
    slack.latency(LATENCY)
    database = Database.create(args.db, "processes", workdir)
    engine = database.engine()
    served: list[Served] = []
    try:
        need = 2 * WARMUP + args.rounds * 4 * (args.requests // 2 + 2)  # 4 loads a round
        targets = _Targets(seed_claimable(engine, need))
        # Each process on a CPU of its own (README → Sizing), the first where PIN_CPU=auto puts a
        # lone process.
        cpus = sorted(os.sched_getaffinity(0), reverse=True)
        own = [{"PIN_CPU": str(cpus[i % len(cpus)])} for i in range(2)]
        products = [
            Served.product(f"processes-{i}", database.url, slack.url, workdir, **own[i])
            for i in range(2)
        ]
        baselines = [
            Served.baseline(f"processes-b{i}", slack.url, workdir, **own[i]) for i in range(2)
        ]
        served = [s.start() for s in (*products, *baselines)]
        for s in served:
            s.wait_healthy()
        for s in products:
            _warm(s, slack, targets.take(WARMUP // 2))
        for s in baselines:
            _warm(s, slack, [])
        print(f"{args.db}: requests/s, {CLIENTS} clients, Slack at {LATENCY * 1000:.0f} ms")
        people = iter(range(200_000, 4_000_000, args.requests))  # new people for every load
        for r in range(args.rounds):
            figures = {
                "baseline x1": _load(baselines[:1], slack, targets, args.requests, next(people)),
                "baseline x2": _load(baselines, slack, targets, args.requests, next(people)),
                "leadbot x1": _load(products[:1], slack, targets, args.requests, next(people)),
                "leadbot x2": _load(products, slack, targets, args.requests, next(people)),
            }
            print(f"  round {r + 1}: " + "  ".join(f"{k} {v:.0f}" for k, v in figures.items()))
    finally:
        for s in served:
            s.stop()
        engine.dispose()
        database.drop()
        slack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
