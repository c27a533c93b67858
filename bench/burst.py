"""Scenario 3: a burst under Slack's rate limit.

300 leads are submitted at once (signed `/lead` requests from 30 clients) to `leadbot serve`
running with SLACK_POSTS_PER_SECOND=20, while the loopback Slack enforces a token bucket of 20
chat.postMessage per second per channel (Slack's ~1/s scaled by 20, with one second of burst)
and answers 429 + Retry-After beyond it. Measured: time until every card is in the channel vs
the bound the rate allows (300 / 20 = 15 s), cards lost and doubled, 429s.

A second run (full mode) adds Slack's round trip (300 ms per call, as in the ack scenario): the
pace is then set by the outbox itself, not by the rate limit; it is bounded in time and reports
the delivery rate and the time 300 cards would take at that rate.

Also timed, for reference: one outbox pass while thousands of cards wait for the paced channel
(bench/backlog.py).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from bench import backlog
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
    ratio,
    run_load,
)
from bench.workload import MARKETERS, prepare_submit
from bot.outbox import CARD_EVENT_TYPE
from bot.slack_emulator import Call, SlackEmulator
from models import Lead

NAME = "burst"
RATE = 20  # chat.postMessage per second per channel, on both sides
BURST = 20  # the loopback Slack's bucket: one second's worth
CLIENTS = 30
TARGET_BOUND = 1.2  # x the rate's bound
TARGET_429 = 0.05  # share of posts


def _card_posts(slack: SlackEmulator) -> list[Call]:
    return [
        c
        for c in slack.calls_to("chat.postMessage")
        if (c.args.get("metadata") or {}).get("event_type") == CARD_EVENT_TYPE
    ]


def _lead_id(call: Call) -> Any:
    return ((call.args.get("metadata") or {}).get("event_payload") or {}).get("lead_id")


def burst_once(
    ctx: Context, kind: str, n: int, latency: float, window: float, tag: str
) -> dict[str, Any]:
    """Submit `n` leads at once; follow the cards until all are in or `window` seconds pass."""
    slack = loopback_slack()
    slack.latency(latency)
    slack.rate_limit(RATE, burst=BURST)
    database = Database.create(kind, f"burst{tag}", ctx.workdir)
    product = Served.product(
        f"burst{tag}-{kind}",
        database.url,
        slack.url,
        ctx.workdir,
        SLACK_POSTS_PER_SECOND=str(RATE),
    ).start()
    out: dict[str, Any] = {"leads": n, "slack_latency_s": latency}
    try:
        product.wait_healthy()
        sim = PreparingSim(
            product.url, SECRET, team_id=slack.team_id, response_url_for=slack.response_url
        )
        requests = [
            prepare_submit(sim, text, MARKETERS[i % len(MARKETERS)])
            for i, text in enumerate(lead_texts(n, 500_000))
        ]
        slack.clear()  # auth.test at start-up is not part of the burst
        t0 = time.time()
        load = run_load(product.port, requests, clients=CLIENTS, max_seconds=60)
        acked = time.time() - t0
        # From here the process only delivers (and waits for tokens): its CPU over the cards
        # posted meanwhile is what delivering a card costs, pacing included.
        cpu_acked, at_acked = product.cpu_seconds(), time.time()
        deadline = time.monotonic() + window
        ok: list[Call] = []
        while time.monotonic() < deadline:
            ok = [c for c in _card_posts(slack) if c.ok]
            if len({_lead_id(c) for c in ok}) >= n:
                break
            time.sleep(0.05)
        delivering_cpu = product.cpu_seconds() - cpu_acked
        after_acks = len({_lead_id(c) for c in ok if c.at >= at_acked})
        # Let a late duplicate show itself before counting doubles.
        time.sleep(ctx.pick(0.5, 1.5))
        posts = slack.calls_to("chat.postMessage")
        cards = _card_posts(slack)
        ok = [c for c in cards if c.ok]
        per_lead = Counter(_lead_id(c) for c in ok)
        delivered = [c.at for c in ok]
        engine = database.engine()
        with engine.connect() as conn:
            stored = conn.scalar(select(func.count()).select_from(Lead)) or 0
            posted = (
                conn.scalar(select(func.count()).select_from(Lead).where(Lead.card_ts.is_not(None)))
                or 0
            )
        engine.dispose()
        out.update(
            {
                "acks_ok": len(load.ok()),
                "ack_errors": load.errors,
                "seconds_to_all_acks": round(acked, 2),
                "leads_stored": stored,
                "cards_delivered": len(per_lead),
                "cards_marked_posted_in_db": posted,
                # Submitted but not in the channel when following stopped (a failed save
                # counts: that lead is lost).
                "cards_undelivered": n - len(per_lead),
                "cards_doubled": sum(k - 1 for k in per_lead.values() if k > 1),
                "posts": len(posts),
                "ratelimited_429": sum(1 for c in posts if c.status == 429),
                "seconds_to_all_cards": round(max(delivered) - t0, 2)
                if len(per_lead) >= n
                else None,
                "seconds_followed": round(time.time() - t0, 2),
                "first_card_after_s": round(min(delivered) - t0, 2) if delivered else None,
                "cards_after_acks": after_acks,
                "cpu_ms_per_card_after_acks": round(delivering_cpu * 1000 / after_acks, 2)
                if after_acks
                else None,
            }
        )
        if len(per_lead) < n and delivered:
            span = max(delivered) - t0
            out["cards_per_second"] = round(len(per_lead) / span, 2) if span > 0 else None
        elif delivered:
            out["cards_per_second"] = round(n / (max(delivered) - t0), 2)
    finally:
        product.stop()
        slack.stop()
        database.drop()
    return out


def _backlog_rows(ctx: Context, result: ScenarioResult, kind: str) -> None:
    """One outbox pass while a deep backlog waits for the paced channel (bench/backlog.py)."""
    small, large = 300, ctx.pick(3000, 5000)
    history = ctx.pick(20_000, 200_000)
    ctx.log(
        f"  burst/{kind}: one outbox pass with {small} and {large} cards waiting, DMs due, "
        f"over {history:,} delivered items"
    )
    few = backlog.pass_time(ctx, kind, small, history)
    many = backlog.pass_time(ctx, kind, large, history)
    result.details[f"{kind}_backlog_pass"] = {"small": few, "large": many}
    for stage in ("unanalysed", "analysed"):
        if stage not in many:
            continue
        big, base = many[stage]["seconds"], few[stage]["seconds"]
        result.add(
            Row(
                NAME,
                kind,
                f"outbox pass, {large} cards waiting ({stage} table)",
                round(big * 1000, 2),
                "ms",
                round(base * 1000, 2),
                ratio(big, base),
                "(reference)",
                None,
                note=f"baseline: {small} cards waiting; as many DMs due, of which the pass "
                f"took {many[stage]['dms_found']} (its batch is {backlog.LIMIT}); "
                f"{history:,} delivered items under both",
            )
        )


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(NAME)
    n = ctx.pick(100, 300)
    bound = n / RATE
    result.details["setup"] = {
        "leads": n,
        "note": f"--quick submits {n} leads (bound {bound:.0f} s) instead of 300"
        if ctx.quick
        else "",
        "rate_per_s": RATE,
        "slack_bucket_burst": BURST,
        "bound_s": bound,
        "clients": CLIENTS,
    }
    for kind in ctx.dbs:
        ctx.log(f"  burst/{kind}: {n} leads at once")
        got = burst_once(ctx, kind, n, latency=0.0, window=bound * 4 + 10, tag="")
        result.details[kind] = got
        took = got["seconds_to_all_cards"]
        r = None if took is None else took / bound
        result.add(
            Row(
                NAME,
                kind,
                f"all {n} cards in",
                took,
                "s",
                bound,
                r,
                f"<= {TARGET_BOUND}x bound",
                r is not None and r <= TARGET_BOUND,
                note="" if took is not None else f"only {got['cards_delivered']} delivered",
            )
        )
        result.add(
            Row(
                NAME,
                kind,
                "server CPU per card delivered after the acks",
                got["cpu_ms_per_card_after_acks"],
                "ms",
                None,
                None,
                "(reference)",
                None,
                note=f"{got['cards_after_acks']} cards posted after the last ack; "
                "the process's CPU meanwhile (from /proc), pacing included",
            )
        )
        result.add(
            Row(
                NAME,
                kind,
                "cards lost",
                got["cards_undelivered"],
                "",
                None,
                None,
                "0",
                got["cards_undelivered"] == 0,
            )
        )
        result.add(
            Row(
                NAME,
                kind,
                "cards doubled",
                got["cards_doubled"],
                "",
                None,
                None,
                "0",
                got["cards_doubled"] == 0,
            )
        )
        share = got["ratelimited_429"] / got["posts"] if got["posts"] else None
        result.add(
            Row(
                NAME,
                kind,
                "429s / posts",
                got["ratelimited_429"],
                "",
                got["posts"],
                share,
                f"< {TARGET_429:.0%} of posts",
                share is not None and share < TARGET_429,
            )
        )
        _backlog_rows(ctx, result, kind)
        if not ctx.quick:
            # With Slack's round trip: how fast does the outbox go when the rate is not the limit?
            window = 40.0
            ctx.log(f"  burst/{kind}: again with 300 ms Slack latency ({window:.0f} s window)")
            slow = burst_once(ctx, kind, n, latency=0.3, window=window, tag="lat")
            result.details[f"{kind}_with_latency"] = slow
            rate = slow.get("cards_per_second")
            projected = n / rate if rate else None
            r = None if projected is None else projected / bound
            result.add(
                Row(
                    NAME,
                    kind,
                    f"{n} cards, Slack at 300 ms",
                    projected,
                    "s",
                    bound,
                    r,
                    f"<= {TARGET_BOUND}x bound",
                    r is not None and r <= TARGET_BOUND,
                    note=f"{slow['cards_delivered']} delivered in {slow['seconds_followed']} s; "
                    f"{rate} cards/s" + ("" if slow["seconds_to_all_cards"] else " (projected)"),
                )
            )
    return result
