"""Scenario 5: footprint of `leadbot serve`.

Time from process start to the first 200 on /healthz (median of a few starts), idle RSS
(/proc/PID/status VmRSS) once the scheduler and outbox are up, and RSS after 10,000 `/lead`
submissions (500 with --quick) — against the bare-Bolt baseline doing the same.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import (
    SECRET,
    Context,
    Database,
    PreparingSim,
    Row,
    ScenarioResult,
    Served,
    lead_texts,
    loopback_slack,
    median,
    ratio,
    run_load,
)
from bench.workload import MARKETERS, prepare_submit
from bot.slack_emulator import SlackEmulator

NAME = "footprint"
LATENCY = 0.3  # start-up includes one auth.test round trip to Slack
STARTS = 3
IDLE_WAIT = 3.0  # seconds after healthz before the idle reading: scheduler and outbox settle
QUICK_IDLE_WAIT = 1.5
TARGET_IDLE_MB = 100.0
TARGET_START_S = 2.0


def _starts(make: Any, count: int) -> tuple[list[float], Served]:
    """Start `count` times; returns the start times and the last process, left running."""
    times: list[float] = []
    served: Served | None = None
    for i in range(count):
        served = make(i).start()
        times.append(served.wait_healthy())
        if i < count - 1:
            served.stop()
    assert served is not None
    return times, served


def _submit(served: Served, slack: SlackEmulator, n: int, idle_wait: float) -> dict[str, Any]:
    sim = PreparingSim(
        served.url, SECRET, team_id=slack.team_id, response_url_for=slack.response_url
    )
    requests = [
        prepare_submit(sim, text, MARKETERS[i % len(MARKETERS)])
        for i, text in enumerate(lead_texts(n, 900_000))
    ]
    load = run_load(served.port, requests, clients=16, max_seconds=180)
    after = served.rss_mb()
    time.sleep(idle_wait)
    return {
        "ok": len(load.ok()),
        "errors": load.errors,
        "rss_mb_after": round(after, 1),
        "rss_mb_settled": round(served.rss_mb(), 1),
        "rps": round(load.throughput, 1),
    }


def _measure(
    served: Served, slack: SlackEmulator, n: int, starts: list[float], idle_wait: float
) -> dict[str, Any]:
    time.sleep(idle_wait)
    idle = served.rss_mb()
    got = _submit(served, slack, n, idle_wait)
    return {
        "start_s": [round(s, 3) for s in starts],
        "start_median_s": round(median(starts) or 0, 3),
        "rss_mb_idle": round(idle, 1),
        **got,
    }


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(NAME)
    n = ctx.pick(500, 10_000)
    starts = ctx.pick(2, STARTS)
    idle_wait = ctx.pick(QUICK_IDLE_WAIT, IDLE_WAIT)
    result.details["setup"] = {
        "submissions": n,
        "starts": starts,
        "slack_latency_s": LATENCY,
        "idle_wait_s": idle_wait,
        "note": f"--quick submits {n:,} leads instead of 10,000" if ctx.quick else "",
    }
    slack = loopback_slack()
    slack.latency(LATENCY)
    try:
        times, base_proc = _starts(
            lambda i: Served.baseline(f"footprint-baseline{i}", slack.url, ctx.workdir), starts
        )
        try:
            base = _measure(base_proc, slack, n, times, idle_wait)
        finally:
            base_proc.stop()
        result.details["baseline"] = base
        ctx.log(f"  footprint/baseline: {base}")
        for kind in ctx.dbs:
            database = Database.create(kind, "footprint", ctx.workdir)
            try:
                times, proc = _starts(
                    lambda i, k=kind, d=database: Served.product(
                        f"footprint-{k}{i}", d.url, slack.url, ctx.workdir
                    ),
                    starts,
                )
                try:
                    got = _measure(proc, slack, n, times, idle_wait)
                finally:
                    # With cards still queued: does SIGTERM stop it within the grace period?
                    got_stop = proc.stop()
                got["graceful_stop_s"] = None if got_stop is None else round(got_stop, 2)
            finally:
                database.drop()
            result.details[kind] = got
            ctx.log(f"  footprint/{kind}: {got}")
            start = got["start_median_s"]
            result.add(
                Row(
                    NAME,
                    kind,
                    "start → /healthz 200",
                    start,
                    "s",
                    base["start_median_s"],
                    ratio(start, base["start_median_s"]),
                    f"< {TARGET_START_S:.0f} s",
                    start < TARGET_START_S,
                )
            )
            idle = got["rss_mb_idle"]
            result.add(
                Row(
                    NAME,
                    kind,
                    "idle RSS",
                    idle,
                    "MB",
                    base["rss_mb_idle"],
                    ratio(idle, base["rss_mb_idle"]),
                    f"< {TARGET_IDLE_MB:.0f} MB",
                    idle < TARGET_IDLE_MB,
                )
            )
            result.add(
                Row(
                    NAME,
                    kind,
                    f"RSS after {n:,} leads",
                    got["rss_mb_settled"],
                    "MB",
                    base["rss_mb_settled"],
                    ratio(got["rss_mb_settled"], base["rss_mb_settled"]),
                    note=f"+{got['rss_mb_settled'] - idle:.1f} MB over idle; "
                    f"{got['errors']} errors",
                )
            )
    finally:
        slack.stop()
    return result
