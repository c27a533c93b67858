"""Scenario 1: ack latency under load.

16 clients send signed `/lead` submissions and Claim clicks (alternating, each click on its own
unclaimed lead) over HTTP to `leadbot serve` as deployed, while the loopback Slack answers every
Web API call after 300 ms. The same requests go to the bare-Bolt baseline behind the same server;
runs alternate baseline/leadbot so both see the same machine noise.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from bench.common import (
    SECRET,
    Context,
    Database,
    LoadResult,
    Row,
    ScenarioResult,
    Served,
    percentile,
    ratio,
    run_load,
)
from bench.workload import mixed, seed_claimable
from bot.slack_emulator import SlackEmulator
from models import CLAIMED, Lead

NAME = "ack"
CLIENTS = 16
LATENCY = 0.3
TARGET_P50 = 1.3  # x baseline
TARGET_P99_MS = 250.0
TARGET_RPS = 0.7  # x baseline


def _sim(served: Served, slack: SlackEmulator) -> Any:
    from bench.common import PreparingSim

    return PreparingSim(served.url, SECRET, team_id=slack.team_id, response_url_for=slack.response_url)


def _pool(results: list[LoadResult]) -> LoadResult:
    samples = [s for r in results for s in r.samples]
    return LoadResult(samples, sum(r.wall for r in results))


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(NAME)
    n = ctx.pick(640, 2400)  # requests per measured run
    warmup = 48
    rounds = ctx.pick(1, 2)
    max_seconds = ctx.pick(40.0, 90.0)
    result.details["setup"] = {
        "clients": CLIENTS,
        "requests_per_run": n,
        "warmup_requests": warmup,
        "rounds": rounds,
        "slack_latency_s": LATENCY,
        "mix": "alternating /lead inline submission and Claim click (each on a distinct lead)",
        "web_threads": "default (8)",
    }
    slack = SlackEmulator().start()
    slack.latency(LATENCY)
    try:
        baseline = Served.baseline("ack-baseline", slack.url, ctx.workdir).start()
        try:
            baseline.wait_healthy()
            for kind in ctx.dbs:
                _one_db(ctx, result, kind, slack, baseline, n, warmup, rounds, max_seconds)
        finally:
            baseline.stop()
    finally:
        slack.stop()
    return result


def _one_db(
    ctx: Context,
    result: ScenarioResult,
    kind: str,
    slack: SlackEmulator,
    baseline: Served,
    n: int,
    warmup: int,
    rounds: int,
    max_seconds: float,
) -> None:
    database = Database.create(kind, "ack", ctx.workdir)
    engine = database.engine()
    try:
        targets = seed_claimable(engine, (n // 2 + warmup // 2 + 1) * (rounds + 1))
        product = Served.product(f"ack-{kind}", database.url, slack.url, ctx.workdir).start()
        base_runs: list[LoadResult] = []
        prod_runs: list[LoadResult] = []
        try:
            product.wait_healthy()
            used = 0
            for target_name, served in (("baseline", baseline), ("leadbot", product)):
                # Warm-up: Bolt's first request calls auth.test (300 ms here), pools fill, etc.
                sim = _sim(served, slack)
                reqs = mixed(sim, targets[used:], warmup, 0)
                used += warmup // 2
                run_load(served.port, reqs, clients=CLIENTS, max_seconds=30)
                ctx.log(f"  ack/{kind}: warmed {target_name}")
            for r in range(rounds):
                for target_name, served, runs in (
                    ("baseline", baseline, base_runs),
                    ("leadbot", product, prod_runs),
                ):
                    sim = _sim(served, slack)
                    reqs = mixed(sim, targets[used:], n, (r + 1) * 100_000)
                    if target_name == "leadbot":
                        used += n // 2
                    load = run_load(served.port, reqs, clients=CLIENTS, max_seconds=max_seconds)
                    runs.append(load)
                    ctx.log(
                        f"  ack/{kind} round {r + 1}: {target_name} "
                        f"p50={_p(load, 50)} p99={_p(load, 99)} ms, {load.throughput:.0f} req/s, "
                        f"{load.errors} errors"
                    )
            rss = product.rss_mb()
        finally:
            product.stop()
        with engine.connect() as conn:
            stored = conn.scalar(select(func.count()).select_from(Lead))
            claimed = conn.scalar(
                select(func.count()).select_from(Lead).where(Lead.status == CLAIMED)
            )
    finally:
        engine.dispose()
        database.drop()

    base, prod = _pool(base_runs), _pool(prod_runs)
    b50, b99 = percentile(base.latencies(), 50), percentile(base.latencies(), 99)
    p50, p99 = percentile(prod.latencies(), 50), percentile(prod.latencies(), 99)
    r50 = ratio(p50, b50)
    rps = ratio(prod.throughput, base.throughput)
    result.add(
        Row(NAME, kind, "ack p50", _ms(p50), "ms", _ms(b50), r50, f"<= {TARGET_P50}x baseline",
            None if r50 is None else r50 <= TARGET_P50)
    )
    result.add(
        Row(NAME, kind, "ack p99", _ms(p99), "ms", _ms(b99), ratio(p99, b99),
            f"< {TARGET_P99_MS:.0f} ms", None if p99 is None else p99 * 1000 < TARGET_P99_MS)
    )
    result.add(
        Row(NAME, kind, "throughput", round(prod.throughput, 1), "req/s",
            round(base.throughput, 1), rps, f">= {TARGET_RPS}x baseline",
            None if rps is None else rps >= TARGET_RPS)
    )
    result.add(
        Row(NAME, kind, "errors", prod.errors, "requests", base.errors, None, "0",
            prod.errors == 0)
    )
    result.details[kind] = {
        "leadbot": {
            "all": prod.summary(),
            "lead": prod.summary("lead"),
            "claim": prod.summary("claim"),
            "rss_mb_after": round(rss, 1),
        },
        "baseline": {"all": base.summary(), "lead": base.summary("lead"), "claim": base.summary("claim")},
        "per_round": [
            {"baseline": b.summary(), "leadbot": p.summary()} for b, p in zip(base_runs, prod_runs, strict=True)
        ],
        "sanity": {"leads_stored": stored, "leads_claimed": claimed},
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _p(load: LoadResult, p: float) -> str:
    v = percentile(load.latencies(), p)
    return "-" if v is None else f"{v * 1000:.1f}"
