"""A claim card someone deleted in Slack: an unclaimed lead gets a new one, so that it can still
be claimed, and what was meant for the old card's thread follows it."""

from __future__ import annotations

import json
from datetime import timedelta

from slack_sdk import WebClient

from jobs.reminders import CARD_CHECKS_PER_RUN
from models import LeadEvent
from tests.conftest import LEADS_CHANNEL, MANAGER, REP_A, Bot
from tests.test_handoff import card_of, click
from tests.test_outcomes import option_for

EXAMPLE = "Jane Doe, jane@acme.example, Acme Corp, hot, #SaaStr2026, wants an API demo"


def delete_card(bot: Bot, ts: str) -> None:
    """As a workspace admin would, over Slack's Web API."""
    WebClient(token="xoxb-admin", base_url=bot.slack.url).chat_delete(channel=LEADS_CHANNEL, ts=ts)
    assert bot.slack.message(LEADS_CHANNEL, ts) is None


def replies(bot: Bot, ts: str) -> list[str]:
    return [m.text for m in bot.slack.thread(LEADS_CHANNEL, ts) if m.ts != ts]


def event_kinds(bot: Bot, lead_id: int) -> list[str]:
    with bot.services.sessions() as s:
        return [
            e.kind
            for e in s.query(LeadEvent).filter_by(lead_id=lead_id).order_by(LeadEvent.id).all()
        ]


def test_a_deleted_unclaimed_card_is_posted_again_at_its_reminder(bot: Bot) -> None:
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    first = lead.card_ts
    assert first is not None
    delete_card(bot, first)

    bot.clock.advance(timedelta(minutes=30))
    assert bot.run_job("reminders") == "1 reminded, 0 escalated"
    bot.settle()

    again = bot.lead(lead.id)
    assert again.card_ts and again.card_ts != first and again.card_channel == LEADS_CHANNEL
    card = card_of(bot, again)
    shown = json.dumps(card.blocks)
    assert "Posted again: the first card for this lead was deleted" in shown
    assert "Jane Doe" in shown and "jane@acme.example" not in shown
    assert [
        m.ts for m in bot.slack.messages(LEADS_CHANNEL) if m.ts == m.thread_ts or not m.thread_ts
    ] == [again.card_ts]
    # The reminder went to the new card's thread, the clocks run on from the first post.
    [reminder] = replies(bot, again.card_ts)
    assert "Reminder 1" in reminder
    assert again.card_posted_at == lead.card_posted_at and again.claim_due_at == lead.claim_due_at
    assert again.card_permalink and again.card_ts.replace(".", "") in again.card_permalink
    assert event_kinds(bot, lead.id)[-3:] == ["reminded", "card_deleted", "card_posted"]

    # It can be claimed from the new card, and the card shows who has it.
    click(bot, REP_A, "lead_claim", again)
    claimed = bot.lead(lead.id)
    assert claimed.owner_id == REP_A
    assert "Claimed by" in json.dumps(card_of(bot, claimed).blocks)

    # Reminders and escalation go on in the new card's thread.
    bot.clock.advance(timedelta(hours=2))
    assert bot.run_job("reminders") == "0 reminded, 0 escalated"


def test_escalation_after_a_deleted_card_links_the_new_one(bot: Bot) -> None:
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    assert lead.card_ts
    bot.clock.advance(timedelta(minutes=30))
    assert bot.run_job("reminders") == "1 reminded, 0 escalated"
    bot.settle()
    delete_card(bot, lead.card_ts)

    bot.clock.advance(timedelta(minutes=30))
    assert bot.run_job("reminders") == "1 reminded, 0 escalated"
    bot.settle()
    new = bot.lead(lead.id)
    assert new.card_ts and new.card_ts != lead.card_ts
    assert ["Reminder 2" in r for r in replies(bot, new.card_ts)] == [True]
    assert new.reminders_sent == 2

    bot.clock.advance(timedelta(minutes=30))
    assert bot.run_job("reminders") == "0 reminded, 1 escalated"
    bot.settle()
    [escalation] = bot.slack.dms(MANAGER)
    assert new.card_ts.replace(".", "") in escalation.text
    assert "managers have been told" in replies(bot, new.card_ts)[-1]


def test_a_reply_slack_refuses_for_a_deleted_thread_goes_to_the_new_card(bot: Bot) -> None:
    """Where Slack answers `thread_not_found` to a reply (the card deleted after the refresh
    that would have noticed), the reply waits for the new card and lands in its thread."""
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    old = lead.card_ts
    assert old
    delete_card(bot, old)
    # The refresh finds the card where it was (Slack's answer raced the delete)...
    bot.slack.answer("chat.update", {"ok": True, "channel": LEADS_CHANNEL, "ts": old})
    # ...and the reply under it is refused.
    bot.slack.fail(
        "chat.postMessage", error="thread_not_found", when=lambda a: a.get("thread_ts") == old
    )
    bot.clock.advance(timedelta(minutes=30))
    assert bot.run_job("reminders") == "1 reminded, 0 escalated"
    bot.settle()

    new = bot.lead(lead.id)
    assert new.card_ts and new.card_ts != old
    assert ["Reminder 1" in r for r in replies(bot, new.card_ts)] == [True]
    assert replies(bot, old) == []


def test_a_claimed_leads_deleted_card_is_left_alone(bot: Bot) -> None:
    """A claimed lead is its owner's (`/lead mine`, the DMs): no new card in the channel."""
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    click(bot, REP_A, "lead_claim", lead)
    claimed = bot.lead(lead.id)
    assert claimed.card_ts
    posts = len(bot.slack.calls_to("chat.postMessage"))
    option = option_for(card_of(bot, claimed).blocks, "contacted")
    delete_card(bot, claimed.card_ts)

    # From `/lead mine`, where the owner has it: the card's refresh finds it gone.
    r = bot.sim.select(REP_A, "lead_outcome", {"selected_option": option})
    assert r.status == 200
    bot.settle()
    assert bot.slack.calls_to("chat.update")[-1].error == "message_not_found"
    after = bot.lead(lead.id)
    assert after.stage == "contacted" and after.card_ts == claimed.card_ts
    assert "card_deleted" not in event_kinds(bot, lead.id)
    channel_posts = [
        c
        for c in bot.slack.calls_to("chat.postMessage")[posts:]
        if c.args.get("channel") == LEADS_CHANNEL
    ]
    assert [c.args.get("thread_ts") for c in channel_posts] == [claimed.card_ts] * len(
        channel_posts
    )


def test_a_released_lead_whose_card_was_deleted_gets_a_new_one(bot: Bot) -> None:
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    click(bot, REP_A, "lead_claim", lead)
    claimed = bot.lead(lead.id)
    assert claimed.card_ts
    delete_card(bot, claimed.card_ts)

    # Released from `/lead mine`'s place of record, the DM: the card's refresh finds it gone.
    bot.sim.block_action(REP_A, "lead_release", f"{lead.id}:{claimed.version}")
    bot.settle()
    released = bot.lead(lead.id)
    assert released.owner_id is None
    assert released.card_ts and released.card_ts != claimed.card_ts
    assert "lead_claim" in json.dumps(card_of(bot, released).blocks)


def test_a_burst_of_reminders_checks_a_tier_3_budget_of_cards(bot: Bot) -> None:
    """Hundreds of leads of one event fall due together: a card check each would be a storm of
    chat.update calls Slack answers with 429s. One run checks at most CARD_CHECKS_PER_RUN."""
    for i in range(CARD_CHECKS_PER_RUN + 5):
        bot.submit(f"Lead {i}, p{i}@acme.example, hot")
    updates = len(bot.slack.calls_to("chat.update"))
    bot.clock.advance(timedelta(minutes=30))
    assert bot.run_job("reminders") == f"{CARD_CHECKS_PER_RUN + 5} reminded, 0 escalated"
    assert len(bot.slack.calls_to("chat.update")) - updates == CARD_CHECKS_PER_RUN
