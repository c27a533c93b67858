"""Two complete bots (app, server, outbox, engine each) on one database, as two `leadbot serve`
processes behind a load balancer would be: one card per lead, one owner, each reminder and
each digest once. On PostgreSQL in CI; on SQLite locally."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from tests.conftest import LEADS_CHANNEL, MANAGER, MARKETER, Bot, start_bot


def _both(database_url: str, slack, clock) -> tuple[Bot, Bot]:
    return start_bot(database_url, slack, clock), start_bot(database_url, slack, clock)


def _parallel(*calls) -> None:
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call) -> None:
        try:
            barrier.wait()
            call()
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_two_processes_share_the_work_without_doubling(database_url: str, slack, clock) -> None:
    a, b = _both(database_url, slack, clock)
    try:
        # Leads arrive at either process.
        _parallel(
            *[
                (
                    lambda i=i: (a if i % 2 else b).sim.slash_command(
                        f"Lead {i}, lead{i}@example.com", user_id=MARKETER
                    )
                )
                for i in range(10)
            ]
        )
        a.settle()
        b.settle()
        leads = a.leads()
        assert len(leads) == 10
        cards = [m for m in slack.messages(LEADS_CHANNEL) if not m.thread_ts]
        assert len(cards) == 10
        assert sorted(m.ts for m in cards) == sorted(lead.card_ts for lead in leads)

        # Reps click the same card through both processes at once: one owner.
        target = leads[0]
        reps = [f"U0REP{i:05d}" for i in range(12)]
        _parallel(
            *[
                (
                    lambda i=i, rep=rep: (a if i % 2 else b).sim.block_action(
                        rep,
                        "lead_claim",
                        f"{target.id}:1",
                        channel_id=target.card_channel,
                        message_ts=target.card_ts,
                    )
                )
                for i, rep in enumerate(reps)
            ]
        )
        a.settle()
        b.settle()
        owner = a.lead(target.id).owner_id
        assert owner in reps
        assert len(slack.dms(owner)) == 1

        # Both schedulers sweep at the same moment: each due reminder is sent once.
        clock.advance(timedelta(minutes=30))
        _parallel(
            lambda: a.run_job("reminders"),
            lambda: b.run_job("reminders"),
        )
        a.settle()
        b.settle()
        replies = [m for m in slack.messages(LEADS_CHANNEL) if m.thread_ts]
        assert len(replies) == 9  # every unclaimed lead, once
        assert len({m.thread_ts for m in replies}) == 9

        # And the digest goes out once per day, whichever process gets there first.
        clock.set(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
        _parallel(lambda: a.run_job("digest"), lambda: b.run_job("digest"))
        a.settle()
        b.settle()
        digests = [m for m in slack.dms(MANAGER) if "digest" in m.text.lower()]
        assert len(digests) == 1
    finally:
        a.stop()
        b.stop()
