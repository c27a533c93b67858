"""Reminders, escalation and the digest, driven by a fake clock (no sleeps)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from bot import leads
from bot.parsing import LeadInput
from models import Lead
from tests.conftest import LEADS_CHANNEL, MANAGER, MARKETER, REP_A, REP_B, Bot

EXAMPLE = "Jane Doe, jane@acme.example, Acme Corp, hot, #SaaStr2026, wants an API demo"


def thread_replies(bot: Bot, lead: Lead) -> list[str]:
    assert lead.card_ts
    return [m.text for m in bot.slack.thread(LEADS_CHANNEL, lead.card_ts) if m.ts != lead.card_ts]


def test_reminders_in_thread_once_per_interval_then_escalation(bot: Bot) -> None:
    bot.submit(EXAMPLE)
    [lead] = bot.leads()

    bot.clock.advance(timedelta(minutes=29, seconds=59))
    assert bot.run_job("reminders") == "0 reminded, 0 escalated"
    assert thread_replies(bot, lead) == []

    bot.clock.advance(timedelta(seconds=1))  # 30m: first reminder, in the card's thread
    assert bot.run_job("reminders") == "1 reminded, 0 escalated"
    assert bot.run_job("reminders") == "0 reminded, 0 escalated"  # never twice per interval
    [first] = thread_replies(bot, lead)
    assert "Reminder 1" in first and "30m" in first

    bot.clock.advance(timedelta(minutes=29))
    assert bot.run_job("reminders") == "0 reminded, 0 escalated"
    bot.clock.advance(timedelta(minutes=1))  # 60m: second reminder
    assert bot.run_job("reminders") == "1 reminded, 0 escalated"
    assert bot.slack.dms(MANAGER) == []

    bot.clock.advance(timedelta(minutes=30))  # 90m: after 2 reminders, the managers are told
    assert bot.run_job("reminders") == "0 reminded, 1 escalated"
    [escalation] = bot.slack.dms(MANAGER)
    # The card's permalink, built from the workspace URL when the card was posted.
    ts = lead.card_ts.replace(".", "")
    link = f"https://leadbot-emulator.slack.com/archives/{LEADS_CHANNEL}/p{ts}"
    assert link in escalation.text
    assert "1h 30m" in escalation.text and "2 reminders" in escalation.text
    assert "jane@acme.example" not in escalation.text
    assert "managers have been told" in thread_replies(bot, lead)[-1]

    bot.clock.advance(timedelta(minutes=30))  # reminders go on; escalation happens once
    assert bot.run_job("reminders") == "1 reminded, 0 escalated"
    assert len(bot.slack.dms(MANAGER)) == 1
    kinds = [e.kind for e in _events(bot, lead.id)]
    assert kinds.count("reminded") == 3 and kinds.count("escalated") == 1


def test_claimed_leads_are_never_reminded(bot: Bot) -> None:
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    bot.sim.block_action(
        REP_A, "lead_claim", f"{lead.id}:1", channel_id=lead.card_channel, message_ts=lead.card_ts
    )
    bot.settle()
    for _ in range(5):
        bot.clock.advance(timedelta(hours=1))
        assert bot.run_job("reminders") == "0 reminded, 0 escalated"
    assert thread_replies(bot, lead) == []


def test_release_restarts_the_reminder_clock(bot: Bot) -> None:
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    bot.sim.block_action(
        REP_A, "lead_claim", f"{lead.id}:1", channel_id=lead.card_channel, message_ts=lead.card_ts
    )
    bot.settle()
    bot.clock.advance(timedelta(hours=3))
    bot.sim.block_action(
        REP_A,
        "lead_release",
        f"{lead.id}:2",
        channel_id=lead.card_channel,
        message_ts=lead.card_ts,
    )
    bot.settle()
    assert bot.run_job("reminders") == "0 reminded, 0 escalated"
    bot.clock.advance(timedelta(minutes=30))
    assert bot.run_job("reminders") == "1 reminded, 0 escalated"


def test_concurrent_reminder_runs_send_each_reminder_once(bot: Bot) -> None:
    for i in range(6):
        bot.submit(f"Lead {i}, lead{i}@example.com")
    bot.clock.advance(timedelta(minutes=30))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait()
            bot.run_job("reminders")
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    replies = [m for m in bot.slack.messages(LEADS_CHANNEL) if m.thread_ts]
    assert len(replies) == 6
    assert sorted(m.thread_ts for m in replies) == sorted(lead.card_ts for lead in bot.leads())


def test_escalation_without_managers_still_notes_the_thread(
    database_url: str, slack, clock
) -> None:
    from tests.conftest import start_bot

    bot = start_bot(database_url, slack, clock, MANAGER_IDS="", ESCALATE_AFTER="1")
    try:
        bot.submit(EXAMPLE)
        [lead] = bot.leads()
        bot.clock.advance(timedelta(minutes=30))
        bot.run_job("reminders")
        bot.clock.advance(timedelta(minutes=30))
        assert bot.run_job("reminders") == "0 reminded, 1 escalated"
        assert "managers" in thread_replies(bot, lead)[-1]
    finally:
        bot.stop()


# --- digest -------------------------------------------------------------------------------------


def stored_with_card(s: Session, typed: LeadInput, at: datetime) -> Lead:
    """A lead stored as submitted at `at`, its card posted then (no Slack call): history in
    bulk, for the jobs and renderers that read it."""
    lead = leads.submit(
        s, leads.lead_values(typed, team_id="T0LEADBOT", submitted_by=MARKETER, now=at)
    )
    leads.card_posted(
        s,
        lead.id,
        channel=LEADS_CHANNEL,
        ts=f"1764000000.{lead.id:06d}",
        now=at,
        next_reminder_at=at + timedelta(minutes=30),
        permalink=f"https://leadbot-emulator.slack.com/archives/{LEADS_CHANNEL}/"
        f"p1764000000{lead.id:06d}",
    )
    return lead


def _seed(bot: Bot) -> dict[str, int]:
    """A known day: 5 leads in the last 24 h (3 claimed), 1 older unclaimed, 1 older claimed."""
    base = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # the digest runs at 09:00 UTC
    ids: dict[str, int] = {}
    plan = [
        # key, submitted (hours before 09:00), event, claimed after (minutes), by
        ("old-open", 50, "Expo", None, None),
        ("old-claimed", 30, "Expo", 10, REP_A),  # submitted 30 h ago, claimed 29h50m ago
        ("a", 20, "SaaStr2026", 5, REP_A),
        ("b", 10, "SaaStr2026", 15, REP_B),
        ("c", 8, "Expo", 60, REP_A),
        ("d", 3, None, None, None),
        ("e", 1, "SaaStr2026", None, None),
    ]
    with bot.services.sessions.begin() as s:
        for key, hours, event, after, rep in plan:
            at = base - timedelta(hours=hours)
            lead = stored_with_card(
                s, LeadInput(name=f"Lead {key}", email=f"{key}@example.com", event=event), at
            )
            if rep:
                leads.claim(s, lead.id, rep, team_id="T0LEADBOT", now=at + timedelta(minutes=after))
            ids[key] = lead.id
    return ids


def test_digest_figures_on_a_known_day(bot: Bot) -> None:
    ids = _seed(bot)
    bot.clock.set(datetime(2026, 11, 26, 8, 59, tzinfo=UTC))
    assert bot.run_job("digest").startswith("not due yet")
    assert bot.slack.dms(MANAGER) == []

    bot.clock.set(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    assert bot.run_job("digest").startswith("sent to 1 manager")
    assert bot.run_job("digest").startswith("already sent")
    [digest] = bot.slack.dms(MANAGER)
    body = json.dumps(digest.blocks)
    assert "5 submitted" in body and "3 claimed" in body
    # claims in the window took 5, 15 and 60 minutes: median 15m, slowest 1h
    assert "median *15m*" in body and "slowest *1h*" in body
    assert f"<@{REP_A}>: 2" in body and f"<@{REP_B}>: 1" in body
    assert "SaaStr2026: 3" in body and "Expo: 1" in body and "(no event): 1" in body
    # backlog: every unclaimed lead, oldest first, with links to the cards
    backlog = body[body.index("Unclaimed backlog") :]
    order = [backlog.index(f"Lead {k}") for k in ("old-open", "d", "e")]
    assert order == sorted(order)
    assert "Unclaimed backlog (3)" in backlog
    assert f"archives/{LEADS_CHANNEL}/p1764000000{ids['old-open']:06d}" in backlog
    assert "@example.com" not in body


def test_digest_time_follows_timezone(database_url: str, slack, clock) -> None:
    from tests.conftest import start_bot

    bot = start_bot(database_url, slack, clock, TIMEZONE="America/New_York", DIGEST_AT="08:30")
    try:
        bot.clock.set(datetime(2026, 11, 26, 13, 29, tzinfo=UTC))  # 08:29 in New York
        assert bot.run_job("digest").startswith("not due yet")
        bot.clock.set(datetime(2026, 11, 26, 13, 30, tzinfo=UTC))
        assert bot.run_job("digest").startswith("sent to 1 manager")
        bot.clock.set(datetime(2026, 11, 27, 4, 0, tzinfo=UTC))  # 23:00 the same NY day
        assert bot.run_job("digest").startswith("already sent")
    finally:
        bot.stop()


def test_concurrent_digest_runs_send_once(bot: Bot) -> None:
    bot.clock.set(datetime(2026, 11, 26, 9, 5, tzinfo=UTC))
    barrier = threading.Barrier(4)
    results: list[str] = []

    def run() -> None:
        barrier.wait()
        results.append(bot.run_job("digest"))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results)[-1].startswith("sent to 1 manager")
    assert sum(r.startswith("sent") for r in results) == 1
    assert len(bot.slack.dms(MANAGER)) == 1


def _events(bot: Bot, lead_id: int):
    with bot.services.sessions() as s:
        return leads.events_of(s, lead_id)
