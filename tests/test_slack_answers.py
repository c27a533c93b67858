"""Answers Slack really gives, if rarely: a post answered `ok` without its ts, a rate limit
spelled `rate_limited`, an ephemeral where the bot cannot speak, a deactivated manager, a card
the bot is not let into the channel, an expired response_url. Each is made by the loopback
Slack (`answer`, `fail(when=…)`, `fail_responses`) and reaches the real app over HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from sqlalchemy import select

from bot.clock import FakeClock
from bot.slack_emulator import Message, SlackEmulator
from jobs import digest
from models import FAILED, SENT, OutboxItem
from tests.conftest import LEADS_CHANNEL, MANAGER, MARKETER, REP_A, Bot, start_bot

EXAMPLE = "Jane Doe, jane@acme.example, Acme Corp, hot, #SaaStr2026"
OUTSIDER = "U0OUTSIDE1"
GONE_MANAGER = "U0GONEMGR1"


def outbox_items(bot: Bot) -> list[OutboxItem]:
    with bot.services.sessions() as s:
        return list(s.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def cards(slack: SlackEmulator) -> list[Message]:
    return [m for m in slack.messages(LEADS_CHANNEL) if not m.thread_ts and not m.ephemeral_for]


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture
def sales_only(database_url: str, slack: SlackEmulator, clock: FakeClock) -> Iterator[Bot]:
    bot = start_bot(database_url, slack, clock, SALES_IDS=REP_A)
    yield bot
    bot.stop()


def test_a_card_answered_ok_without_its_ts_is_found_by_its_metadata(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    # The post goes out; the answer names neither `ts` nor the message.
    bot.slack.answer("chat.postMessage", {"ts": None, "message": None}, applied=True)

    bot.submit(EXAMPLE)

    [card] = cards(bot.slack)
    [lead] = bot.leads()
    # Before, the item was marked sent and the lead had no card: no refresh, no reminder ever.
    assert (lead.card_channel, lead.card_ts, lead.card_error) == (LEADS_CHANNEL, card.ts, None)
    assert lead.next_reminder_at is not None
    assert len(bot.slack.calls_to("chat.postMessage")) == 1  # found, not posted twice
    assert not errors_logged(caplog)


def test_a_ts_less_card_that_cannot_be_found_is_not_posted_again(bot: Bot) -> None:
    bot.slack.answer("chat.postMessage", {"ts": None, "message": None}, applied=True)
    bot.slack.fail("conversations.history", error="missing_scope")

    bot.submit(EXAMPLE)

    assert len(cards(bot.slack)) == 1 and len(bot.slack.calls_to("chat.postMessage")) == 2
    [lead] = bot.leads()
    assert lead.card_ts is None and lead.card_error == "ok_without_ts"
    [note] = bot.slack.dms(MARKETER)  # the other post: rather than a second card, a word
    assert "did not say where it is" in note.text and f"<#{LEADS_CHANNEL}>" in note.text


def test_rate_limited_in_an_ok_false_answer_is_retried_not_given_up(bot: Bot) -> None:
    # chat.postMessage documents its rate limit as `rate_limited` in an HTTP 200 answer.
    bot.slack.fail("chat.postMessage", error="rate_limited")

    bot.submit(EXAMPLE)

    [lead] = bot.leads()
    [card] = cards(bot.slack)
    assert (lead.card_ts, lead.card_error) == (card.ts, None)
    assert [c.error for c in bot.slack.calls_to("chat.postMessage")] == ["rate_limited", None]
    assert bot.slack.dms(MARKETER) == []  # no "could not be posted" note


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "user_not_in_channel"])
def test_a_private_note_the_bot_cannot_show_where_clicked_comes_as_a_dm(
    sales_only: Bot, error: str
) -> None:
    bot = sales_only
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    bot.slack.fail("chat.postEphemeral", error=error)

    bot.sim.block_action(
        OUTSIDER,
        "lead_claim",
        str(lead.id),
        channel_id=LEADS_CHANNEL,
        message_ts=str(lead.card_ts),
    )
    bot.settle()

    [note] = bot.slack.dms(OUTSIDER)
    assert note.text == bot.services.access.refusal()
    assert bot.lead(lead.id).owner_id is None


def test_a_card_the_bot_may_not_post_names_the_channel_to_fix(bot: Bot) -> None:
    bot.slack.fail("chat.postMessage", error="not_in_channel")

    bot.submit(EXAMPLE)

    [note] = bot.slack.dms(MARKETER)
    assert f"could not be posted to <#{LEADS_CHANNEL}>" in note.text
    assert "/invite @leadbot" in note.text


def test_a_deactivated_manager_does_not_hold_up_the_others_nor_loop(
    database_url: str, slack: SlackEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    bot = start_bot(database_url, slack, clock, MANAGER_IDS=f"{GONE_MANAGER},{MANAGER}")
    try:
        slack.fail(
            "chat.postMessage",
            error="user_not_found",
            times=100,
            when=lambda args: args.get("channel") == GONE_MANAGER,
        )
        assert digest.run(bot.services, force=True) == "sent to 2 managers"
        bot.settle()

        [sent] = slack.dms(MANAGER)
        assert "digest" in sent.text.lower()
        by_channel = {i.channel: i for i in outbox_items(bot)}
        gone = by_channel[GONE_MANAGER]
        assert (gone.status, gone.attempts, gone.last_error) == (FAILED, 1, "user_not_found")
        assert by_channel[slack.dm_channel(MANAGER)].status == SENT
        assert not errors_logged(caplog)
    finally:
        bot.stop()


def test_a_receipt_whose_response_url_expired_comes_as_a_dm(bot: Bot) -> None:
    bot.sim.slash_command(
        "", user_id=MARKETER, trigger_id="trig-1", response_url=bot.slack.response_url("modal")
    )
    bot.settle()
    [opened] = bot.slack.calls_to("views.open")
    view = opened.args["view"]
    bot.slack.fail_responses(404, "expired_url", name="modal")

    bot.sim.view_submission(
        MARKETER,
        view,
        {
            "name": ("name_input", "plain_text_input", "Jane Doe"),
            "email": ("email_input", "plain_text_input", "jane@acme.example"),
        },
        private_metadata=view["private_metadata"],
    )
    bot.settle()

    [refused] = bot.slack.responses
    assert refused.status == 404
    [receipt] = bot.slack.dms(MARKETER)
    assert "Jane Doe" in receipt.text
    [lead] = bot.leads()
    assert lead.card_ts


def test_a_form_slack_opened_too_late_is_said_even_when_the_response_url_is_gone(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """views.open answering expired_trigger_id (Slack passed the /lead on after its 3 s) and
    then the response_url refused too: the marketer heard nothing, and the log said only
    DeliveryError."""
    caplog.set_level(logging.WARNING)
    bot.slack.answer("views.open", {"ok": False, "error": "expired_trigger_id"})
    bot.slack.fail_responses(404, "expired_url", name="form")
    bot.sim.slash_command(
        "", user_id=MARKETER, trigger_id="trig-late", response_url=bot.slack.response_url("form")
    )
    bot.settle()
    [refused] = bot.slack.responses
    assert refused.status == 404
    [told] = bot.slack.dms(MARKETER)
    assert told.text == "I couldn't open the form in time; type `/lead` again."
    assert "could not open the /lead modal: expired_trigger_id" in caplog.text
    assert bot.leads() == []


def test_a_ts_less_card_is_found_past_a_page_of_newer_messages(bot: Bot) -> None:
    """The look-up reads the channel's history page after page: with more than one page of
    messages after the card (a busy channel), one page missed it and posted a second card."""
    bot.slack.answer("chat.postMessage", {"ts": None, "message": None}, applied=True)
    gate = bot.slack.hold("conversations.history")
    bot.sim.slash_command(EXAMPLE, user_id=MARKETER, channel_id="C0EVENTS01")
    assert gate.arrived.wait(10)
    chatter = WebClient(token="xoxb-someone", base_url=bot.slack.url)
    for i in range(450):  # the channel goes on talking while leadbot looks
        chatter.chat_postMessage(channel=LEADS_CHANNEL, text=f"message {i}")
    gate.release()
    bot.settle()

    [lead] = bot.leads()
    [card] = [m for m in cards(bot.slack) if m.metadata]
    assert (lead.card_ts, lead.card_error) == (card.ts, None)
    assert len(bot.slack.calls_to("chat.postMessage")) == 451  # the card once, and the chatter
    assert len(bot.slack.calls_to("conversations.history")) == 3  # 200 + 200 + 51
