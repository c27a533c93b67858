"""Messages queued while Slack was away are delivered only while they still make sense: a
reminder not once its lead is claimed, a backlog of reminders as its latest one, a follow-up
nudge not once an outcome, a snooze or a later nudge came (bot.outbox, WHILE).

Over the real app and the loopback Slack, told to fail posts for a while; the outbox's own time
moves by hand (FakeDeliveryTime), business time by FakeClock. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot import outbox
from bot.clock import FakeClock, FakeDeliveryTime
from bot.slack_emulator import SlackEmulator
from jobs import JOBS
from models import SENT, Lead, OutboxItem
from tests.conftest import LEADS_CHANNEL, MANAGER, REP_A, Bot, start_bot, statements_sent
from tests.test_outcomes import card, option_for

EXAMPLE = "Jane Doe, jane@acme.example, Acme Corp, hot"
DAY = timedelta(days=1)


class Outage:
    """Slack refuses (503) the posts `which` picks, while on."""

    def __init__(self, slack: SlackEmulator, which: Callable[[dict[str, Any]], bool]) -> None:
        self.on = True
        slack.fail(
            "chat.postMessage",
            status=503,
            times=1_000_000,
            when=lambda args: self.on and which(args),
        )


@pytest.fixture
def timed(database_url: str, slack: SlackEmulator, clock: FakeClock) -> Iterator[Bot]:
    bot = start_bot(
        database_url,
        slack,
        clock,
        delivery_time=FakeDeliveryTime(),
        REMINDER_AFTER="15m",
        ESCALATE_AFTER="3",
    )
    try:
        yield bot
    finally:
        bot.stop()


def quiet(bot: Bot) -> None:
    """The clicks answered and the outbox done with what is due (retries wait for `recover`)."""
    assert bot.app.leadbot_executor.wait_idle(15)  # type: ignore[attr-defined]
    bot.services.outbox.wait_parked()


def recover(bot: Bot, outage: Outage) -> None:
    """Slack is back: every retry falls due and goes."""
    outage.on = False
    time_ = bot.services.outbox.time
    assert isinstance(time_, FakeDeliveryTime)
    time_.advance(outbox.MAX_BACKOFF)
    quiet(bot)


def run(bot: Bot, job: str) -> str:
    summary = JOBS[job].run(bot.services)
    quiet(bot)
    return summary


def act(bot: Bot, user: str, action: str, value: str, lead: Lead) -> None:
    r = bot.sim.block_action(
        user, action, value, channel_id=lead.card_channel, message_ts=lead.card_ts
    )
    assert r.status == 200
    quiet(bot)


def claim(bot: Bot, lead_id: int, user: str = REP_A) -> Lead:
    lead = bot.lead(lead_id)
    act(bot, user, "lead_claim", f"{lead.id}:{lead.version}", lead)
    return bot.lead(lead_id)


def thread(bot: Bot, lead: Lead) -> list[str]:
    assert lead.card_ts
    return [m.text for m in bot.slack.thread(LEADS_CHANNEL, lead.card_ts) if m.ts != lead.card_ts]


def messages_of(bot: Bot, lead_id: int) -> list[OutboxItem]:
    with bot.services.sessions() as s:
        return list(
            s.scalars(
                select(OutboxItem)
                .where(OutboxItem.lead_id == lead_id, OutboxItem.kind == outbox.MESSAGE)
                .order_by(OutboxItem.id)
            )
        )


def new_lead(bot: Bot) -> Lead:
    bot.submit(EXAMPLE)
    quiet(bot)
    return bot.leads()[-1]


def two_hours_of_reminders(bot: Bot) -> None:
    for _ in range(8):
        bot.clock.advance(timedelta(minutes=15))
        run(bot, "reminders")


def test_reminders_queued_in_an_outage_are_dropped_once_the_lead_is_claimed(timed: Bot) -> None:
    bot = timed
    lead = new_lead(bot)
    outage = Outage(bot.slack, lambda args: True)  # every post: threads and DMs
    two_hours_of_reminders(bot)
    claim(bot, lead.id)
    recover(bot, outage)

    assert thread(bot, lead) == []  # none of the 7 reminders nor the escalation note
    assert bot.slack.dms(MANAGER) == []  # nor the escalation DM: it was claimed meanwhile
    [claimed] = bot.slack.dms(REP_A)  # the claimer's DM went, late
    assert "is yours" in claimed.text
    stale = [i for i in messages_of(bot, lead.id) if i.channel in (LEADS_CHANNEL, MANAGER)]
    assert len(stale) == 9  # 7 reminders, the thread's escalation note and the DM
    assert {(i.status, i.last_error) for i in stale} == {(outbox.DROPPED, "lead claimed")}
    assert all(i.sent_at is None and i.result_ts is None for i in stale)


def test_a_backlog_of_reminders_collapses_to_the_latest(timed: Bot) -> None:
    bot = timed
    lead = new_lead(bot)
    outage = Outage(bot.slack, lambda args: True)
    two_hours_of_reminders(bot)
    recover(bot, outage)

    # One reminder in the thread, the latest: the others say what it says, only older.
    [latest] = thread(bot, lead)
    assert latest.startswith("⏰ Reminder") and "2h without an owner" in latest
    # The managers still hear: a later reminder does not make the escalation stale.
    [escalation] = bot.slack.dms(MANAGER)
    assert "still unclaimed" in escalation.text
    posts = [i for i in messages_of(bot, lead.id) if i.channel == LEADS_CHANNEL]
    assert [i.status for i in posts] == [outbox.DROPPED] * 7 + [SENT]
    assert {i.last_error for i in posts[:-1]} == {"superseded by a later one"}

    # Then, with Slack up, reminders go one by one as before.
    bot.clock.advance(timedelta(minutes=15))
    run(bot, "reminders")
    assert len(thread(bot, lead)) == 2


def nudges(bot: Bot) -> list[str]:
    return [m.text for m in bot.slack.dms(REP_A) if m.text.startswith("⏰")]


def test_follow_up_nudges_queued_in_an_outage_go_only_while_they_hold(timed: Bot) -> None:
    bot = timed
    lead = claim(bot, new_lead(bot).id)
    outage = Outage(bot.slack, lambda args: args.get("channel") == REP_A)  # the owner's DMs

    # Three misses while the owner's DMs fail: the managers hear at the second, the owner
    # gets the third's nudge only.
    for _ in range(3):
        bot.clock.advance(DAY)
        run(bot, "followups")
    recover(bot, outage)
    [nudge] = nudges(bot)
    assert "managers have been told" not in nudge  # the third's, not the second's
    assert len(bot.slack.dms(MANAGER)) == 1

    # A nudge queued, then an outcome recorded before Slack is back: not sent.
    outage = Outage(bot.slack, lambda args: args.get("channel") == REP_A)
    bot.clock.advance(DAY)
    assert run(bot, "followups") == "1 nudged, 0 escalated"
    shown = card(bot, bot.lead(lead.id))
    r = bot.sim.select(
        REP_A,
        "lead_outcome",
        {"selected_option": option_for(shown.blocks, "contacted")},
        channel_id=LEADS_CHANNEL,
        message_ts=shown.ts,
        block_id="lead_owner_actions",
    )
    assert r.status == 200
    quiet(bot)
    recover(bot, outage)
    assert len(nudges(bot)) == 1

    # A nudge queued, then the follow-up put later (a Snooze 1 day): not sent either.
    outage = Outage(bot.slack, lambda args: args.get("channel") == REP_A)
    bot.clock.advance(DAY)
    assert run(bot, "followups") == "1 nudged, 0 escalated"
    before = bot.lead(lead.id).follow_up_at
    bot.clock.advance(timedelta(hours=1))  # a day from now is an hour past the next follow-up
    act(bot, REP_A, "lead_snooze_1d", str(lead.id), lead)  # a button without the nudge's key
    assert bot.lead(lead.id).follow_up_at != before
    recover(bot, outage)
    assert len(nudges(bot)) == 1

    dropped = [
        i.last_error
        for i in messages_of(bot, lead.id)
        if i.channel == REP_A and i.status == outbox.DROPPED
    ]
    assert dropped == [
        "superseded by a later one",
        "superseded by a later one",
        "lead's version changed",
        "lead's follow_up_at changed",
    ]


def test_only_marked_messages_read_the_lead_before_they_go(timed: Bot) -> None:
    bot = timed
    lead = claim(bot, new_lead(bot).id)
    with bot.services.sessions.begin() as s:
        current = bot.lead(lead.id)
        plain = outbox.message_row(REP_A, outbox.render.Message(text="plain"), lead_id=lead.id)
        while_new = outbox.message_row(
            REP_A,
            outbox.render.Message(text="while new"),
            lead_id=lead.id,
            only_while={"status": "new", "version": current.version},
        )
        outbox.enqueue(s, [plain, while_new])
    with statements_sent(bot.services.engine, "SELECT") as reads:
        quiet(bot)
    assert [m.text for m in bot.slack.dms(REP_A)][-1] == "plain"
    lead_reads = [sql for sql, _ in reads if "FROM leads" in sql]
    assert len(lead_reads) == 1  # the marked message's, none for the plain one
    assert [i.status for i in messages_of(bot, lead.id)][-2:] == [SENT, outbox.DROPPED]


def test_a_state_to_wait_on_names_known_columns_of_a_lead() -> None:
    lead = Lead(id=1, status="new", version=3, email="jane@acme.example")
    assert outbox.while_lead(lead, "status", "version") == {"status": "new", "version": 3}
    with pytest.raises(ValueError, match="email"):
        outbox.while_lead(lead, "email")
    with pytest.raises(ValueError, match="lead_id"):
        outbox.message_row(REP_A, outbox.render.Message(text="x"), only_while={"status": "new"})
