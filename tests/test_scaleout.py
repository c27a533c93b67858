"""Two complete bots (app, server, outbox, engine each) on one database, as two `leadbot serve`
processes behind a load balancer would be: one card per lead, one owner, each reminder and
each digest once. On PostgreSQL in CI; on SQLite locally."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.leads import events_of
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


def test_two_processes_writing_claims_on_the_same_cards_give_each_card_one_owner(
    database_url: str, slack, clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Bursts of clicks on the same cards through both processes at once, in opposite orders:
    each process writes its clicks in batches, and each card still gets one owner, one claim
    event and one note to its loser; no batch fails (their leads are locked in id order)."""
    a, b = _both(database_url, slack, clock)
    try:
        for i in range(8):
            a.submit(f"Lead {i}, lead{i}@example.com")
        leads = a.leads()
        clicks = []
        for i, lead in enumerate(leads):
            for bot, rep in ((a, f"U0REPA{i:04d}"), (b, f"U0REPB{i:04d}")):
                clicks.append((bot, rep, lead))
        # a gets the cards in order, b the other way round.
        clicks.sort(key=lambda c: (c[0] is b, c[2].id if c[0] is a else -c[2].id))
        with caplog.at_level(logging.WARNING, logger="handlers.actions"):
            _parallel(
                *[
                    (
                        lambda bot=bot, rep=rep, lead=lead: bot.sim.block_action(
                            rep,
                            "lead_claim",
                            f"{lead.id}:1",
                            channel_id=lead.card_channel,
                            message_ts=lead.card_ts,
                        )
                    )
                    for bot, rep, lead in clicks
                ]
            )
            a.settle()
            b.settle()
        assert [r.getMessage() for r in caplog.records if r.name == "handlers.actions"] == []
        for i, lead in enumerate(leads):
            clickers = {f"U0REPA{i:04d}", f"U0REPB{i:04d}"}
            owner = a.lead(lead.id).owner_id
            assert owner in clickers
            [loser] = clickers - {owner}
            with a.services.sessions() as s:
                kinds = sorted(e.kind for e in events_of(s, lead.id) if "claim" in e.kind)
            assert kinds == ["claim_too_late", "claimed"]
            assert len(slack.dms(owner)) == 1
            [note] = slack.ephemerals(loser)
            assert f"<@{owner}>" in note.text
    finally:
        a.stop()
        b.stop()
