"""A claim card Slack refuses as malformed (`invalid_blocks`, `msg_too_long`, …: a limit Slack
changed, text nobody foresaw) goes out as a short card, so the lead can still be claimed.

Over the real interfaces: signed requests to the app, the loopback Slack (whose `fail` refuses
the full card, an expected refusal, unlike a payload over Slack's limits), a real database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from bot import leads, outbox, render, slack_limits
from bot.clock import FakeClock, FakeDeliveryTime
from bot.parsing import MAX_LENGTHS
from bot.slack_emulator import Call, SlackEmulator
from jobs import digest
from models import CLAIMED, FAILED, PENDING, SENT, Lead, LeadEvent, OutboxItem
from tests.conftest import (
    LEADS_CHANNEL,
    MANAGER,
    MARKETER,
    REP_A,
    REP_B,
    START,
    Bot,
    plans_with_and_without_statistics,
    start_bot,
    statements_sent,
)
from tests.test_deleted_card import delete_card
from tests.test_handoff import card_of, click
from tests.test_outcomes import click_card, modal, new_lead
from tests.test_sandbox_render import NOW, make_lead

EXAMPLE = "Jane Doe, jane@acme.example, +1 415 555 0100, Acme Corp, hot, #SaaStr2026, API demo"
CONTACT = ("Jane Doe", "jane@acme.example", "555 0100", "Acme Corp")


def full_card(args: dict[str, Any]) -> bool:
    """Whether a chat.postMessage / chat.update carries the full card: to the leads channel,
    opening with a header (the short card has none)."""
    if args.get("channel") != LEADS_CHANNEL:
        return False
    blocks = args.get("blocks")
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return any(isinstance(b, dict) and b.get("type") == "header" for b in blocks or [])


def refuse_full_cards(slack: SlackEmulator, error: str, method: str = "chat.postMessage") -> None:
    """Slack refuses every full card from now on; the short card passes."""
    slack.fail(method, error=error, times=1000, when=full_card)


def channel_posts(slack: SlackEmulator) -> list[Call]:
    return [c for c in slack.calls_to("chat.postMessage") if c.args.get("channel") == LEADS_CHANNEL]


def events(bot: Bot, lead_id: int) -> list[tuple[str, dict[str, Any]]]:
    with bot.services.sessions() as s:
        rows = s.scalars(
            select(LeadEvent).where(LeadEvent.lead_id == lead_id).order_by(LeadEvent.id)
        )
        return [(e.kind, json.loads(e.detail or "{}")) for e in rows]


def kinds(bot: Bot, lead_id: int) -> list[str]:
    return [kind for kind, _ in events(bot, lead_id)]


def card_items(bot: Bot) -> list[OutboxItem]:
    with bot.services.sessions() as s:
        return list(
            s.scalars(
                select(OutboxItem).where(OutboxItem.kind == outbox.CARD).order_by(OutboxItem.id)
            )
        )


def undelivered(bot: Bot) -> list[tuple[str, str | None, str | None]]:
    """Outbox items not sent: (kind, status, last error)."""
    with bot.services.sessions() as s:
        items = s.scalars(select(OutboxItem).where(OutboxItem.status != SENT))
        return [(i.kind, i.status, i.last_error) for i in items]


def actions(message: Any) -> list[tuple[str, str]]:
    return [
        (e["action_id"], e["value"])
        for b in message.blocks or []
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def managers_digest(bot: Bot) -> str:
    assert digest.run(bot.services, force=True).startswith("sent to")
    bot.settle()
    message = bot.slack.dms(MANAGER)[-1]
    return json.dumps({"text": message.text, "blocks": message.blocks}, ensure_ascii=False)


@pytest.fixture
def timed(database_url: str, slack: SlackEmulator, clock: FakeClock) -> Iterator[Bot]:
    """A bot whose outbox's time moves only when the test advances it."""
    bot = start_bot(database_url, slack, clock, delivery_time=FakeDeliveryTime())
    try:
        yield bot
    finally:
        bot.stop()


def advance(bot: Bot, seconds: float) -> None:
    time_ = bot.services.outbox.time
    assert isinstance(time_, FakeDeliveryTime)
    # Listeners still running after their ack (a click) queue what this is to deliver: without
    # the wait, a release's refresh was sometimes not there yet.
    assert bot.app.leadbot_executor.wait_idle(15)  # type: ignore[attr-defined]
    time_.advance(seconds)
    bot.services.outbox.wait_parked()


def submitted(bot: Bot, text_: str) -> None:
    assert bot.sim.slash_command(text_, user_id=MARKETER, channel_id="C0EVENTS01").status == 200
    assert bot.app.leadbot_executor.wait_idle(15)  # type: ignore[attr-defined]
    bot.services.outbox.wait_parked()


# --- the short card ------------------------------------------------------------------------------


def _longest(**overrides: Any) -> Any:
    """Every field at its limit, of the character escaping lengthens most, on one line each
    but for the name, which has newlines and runs of spaces."""
    fields = {k: "&" * n for k, n in MAX_LENGTHS.items() if k not in ("email", "phone")}
    fields["name"] = ("<!channel>  \n" * 50)[: MAX_LENGTHS["name"]]
    fields |= {"email": "a" * 240 + "@acme.example", "phone": "+1 " + "5" * 20}
    return make_lead(**fields, **overrides)


def _mrkdwn(value: Any) -> Iterator[dict[str, Any]]:
    """Every mrkdwn text object in `value`."""
    if isinstance(value, dict):
        if value.get("type") == "mrkdwn":
            yield value
        for v in value.values():
            yield from _mrkdwn(v)
    elif isinstance(value, list):
        for v in value:
            yield from _mrkdwn(v)


CLAIMED_LEAD = {"status": CLAIMED, "owner_id": REP_A, "claimed_at": NOW}


@pytest.mark.parametrize(
    "lead",
    [
        make_lead(),
        make_lead(company=None),
        _longest(),
        _longest(**CLAIMED_LEAD),
        _longest(**CLAIMED_LEAD, stage="lost", stage_at=NOW, outcome_reason="&" * 2000),
    ],
    ids=["new", "no company", "longest new", "longest claimed", "longest closed"],
)
def test_the_short_card_is_small_valid_block_kit_at_its_longest(lead: Any) -> None:
    card = render.short_card(lead)
    assert [Block.parse(b).to_dict() for b in card.blocks] == card.blocks  # type: ignore[union-attr]
    assert slack_limits.message_errors(card.blocks) == []
    # Well within every limit, whatever was typed: a few hundred characters in all.
    assert len(json.dumps(card.blocks)) < 1500 and len(card.text) < 600
    shown = json.dumps({"text": card.text, "blocks": card.blocks})
    assert "@acme.example" not in shown and "5555" not in shown
    # Where Slack reads mentions (mrkdwn, the notification text) the typed one is escaped;
    # the lead's line is plain_text, shown as typed, as the full card's header is.
    parsed = [card.text, *(t["text"] for t in _mrkdwn(card.blocks))]
    assert not [t for t in parsed if "<!channel>" in t]
    assert len([b for b in card.blocks if b.get("text", {}).get("type") == "plain_text"]) == 1
    assert f"lead #{lead.id}" in card.text.lower()
    buttons = [e["action_id"] for b in card.blocks if b["type"] == "actions" for e in b["elements"]]
    if lead.status != CLAIMED:
        assert buttons == ["lead_claim"]
    else:
        assert buttons == ([] if lead.stage == "lost" else ["lead_release"])


# --- the short card, end to end ------------------------------------------------------------------


@pytest.mark.parametrize("error", ["invalid_blocks", "msg_too_long", "invalid_arguments"])
def test_a_card_refused_as_malformed_goes_out_short_and_is_claimed_end_to_end(
    bot: Bot, error: str
) -> None:
    refuse_full_cards(bot.slack, error)
    refuse_full_cards(bot.slack, error, "chat.update")
    assert bot.submit(EXAMPLE).status == 200

    # One refusal, then the short card, from the same outbox item.
    [refused, posted] = channel_posts(bot.slack)
    assert refused.error == error and full_card(refused.args)
    assert posted.ok and not full_card(posted.args)
    [lead] = bot.leads()
    assert [m.ts for m in bot.slack.messages(LEADS_CHANNEL)] == [lead.card_ts]
    assert lead.card_error is None and lead.card_channel == LEADS_CHANNEL
    [item] = card_items(bot)
    assert (item.status, item.attempts, item.last_error) == (SENT, 2, error)
    card = card_of(bot, lead)
    # What claiming needs: number, name, company, priority, and the full card's Claim button.
    shown = json.dumps(card.blocks, ensure_ascii=False)
    assert f"Lead #{lead.id} · Jane Doe (Acme Corp) · hot" in shown
    assert actions(card) == [("lead_claim", f"{lead.id}:{lead.version}")]
    assert "jane@acme.example" not in shown and "555 0100" not in shown
    assert "API demo" not in shown  # the notes wait for the claimer's DM
    assert "Claim it to get every detail" in shown
    assert card.metadata == {
        "event_type": outbox.CARD_EVENT_TYPE,
        "event_payload": {"lead_id": lead.id, outbox.CARD_SUBMITTED: lead.submitted_at.isoformat()},
    }
    assert f"lead #{lead.id}" in card.text
    # On the lead's history: refused in full, posted short; not a failed card.
    assert events(bot, lead.id)[1:] == [
        ("card_fell_back", {"error": error}),
        ("card_posted", {"channel": LEADS_CHANNEL, "ts": lead.card_ts, "short": True}),
    ]
    # The submitter hears that it reached sales, in short, and why.
    [note] = bot.slack.dms(MARKETER)
    assert f"Lead #{lead.id} *Jane Doe* (Acme Corp) reached <#{LEADS_CHANNEL}>" in note.text
    assert "short card" in note.text and f"`{error}`" in note.text
    assert "could not be posted" not in note.text

    # A reminder goes to the short card's thread; the card's check falls back too.
    bot.clock.advance(timedelta(minutes=30))
    assert bot.run_job("reminders") == "1 reminded, 0 escalated"
    assert ["Reminder 1" in m.text for m in bot.slack.thread(LEADS_CHANNEL, lead.card_ts)[1:]] == [
        True
    ]

    # Claimed from the short card, over a signed request: the claim handler is the usual one.
    click(bot, REP_A, "lead_claim", lead)
    claimed = bot.lead(lead.id)
    assert claimed.owner_id == REP_A and claimed.card_ts == lead.card_ts
    [dm] = bot.slack.dms(REP_A)
    details = json.dumps(dm.blocks, ensure_ascii=False)
    assert "jane@acme.example" in details and "API demo" in details
    # The claimed card, refused in full, is shown short: who has it, and Release.
    card = card_of(bot, claimed)
    shown = json.dumps(card.blocks, ensure_ascii=False)
    assert f"Claimed by <@{REP_A}>" in shown
    assert actions(card) == [("lead_release", f"{lead.id}:{claimed.version}")]
    # Slack refused this card in full a moment ago: the refreshes (the reminder's card check,
    # the claim) go straight to the short card, one call each, not a refused one first.
    updates = [c for c in bot.slack.calls_to("chat.update") if c.args.get("ts") == lead.card_ts]
    assert [(full_card(c.args), c.error) for c in updates] == [(False, None)] * 2
    assert undelivered(bot) == []  # no refresh left failed or waiting
    assert kinds(bot, lead.id).count("card_fell_back") == 1  # a known short card: said once
    [told] = [m for m in bot.slack.dms(MARKETER) if "claimed your lead" in m.text]
    assert f"<@{REP_A}>" in told.text

    # The digest does not call it a card that could not be posted; it says it went out short.
    body = managers_digest(bot)
    assert "Cards that could not be posted" not in body
    assert "Cards shown in short form (1)" in body and f"`{error}` ×1" in body


def test_a_claimed_card_slack_refuses_to_update_is_shown_short(bot: Bot) -> None:
    """The unclaimed card passed, the claimed one breaks a limit: the card still says who has
    the lead, and the refresh is not left failed."""
    assert bot.submit(EXAMPLE).status == 200
    [lead] = bot.leads()
    assert full_card({"channel": LEADS_CHANNEL, "blocks": card_of(bot, lead).blocks})
    refuse_full_cards(bot.slack, "invalid_blocks", "chat.update")

    click(bot, REP_A, "lead_claim", lead)
    claimed = bot.lead(lead.id)
    card = card_of(bot, claimed)
    assert f"Claimed by <@{REP_A}>" in json.dumps(card.blocks, ensure_ascii=False)
    assert actions(card) == [("lead_release", f"{lead.id}:{claimed.version}")]
    assert undelivered(bot) == []
    assert ("card_fell_back", {"error": "invalid_blocks", "refresh": True}) in events(bot, lead.id)

    # Released from the short card: the card is open to claim again, still short.
    bot.sim.block_action(
        REP_A,
        "lead_release",
        f"{lead.id}:{claimed.version}",
        channel_id=LEADS_CHANNEL,
        message_ts=claimed.card_ts,
    )
    bot.settle()
    released = bot.lead(lead.id)
    assert released.owner_id is None
    assert actions(card_of(bot, released)) == [("lead_claim", f"{lead.id}:{released.version}")]
    assert kinds(bot, lead.id).count("card_fell_back") == 1
    assert undelivered(bot) == []


# --- when even the short card is refused, or the error is not about the card ----------------------


def test_a_short_card_refused_too_fails_for_good_once_and_is_told(timed: Bot) -> None:
    bot = timed
    bot.slack.fail(
        "chat.postMessage",
        error="invalid_blocks",
        times=2,
        when=lambda a: a.get("channel") == LEADS_CHANNEL,
    )
    submitted(bot, EXAMPLE)
    [lead] = bot.leads()
    [full, short] = channel_posts(bot.slack)
    assert full_card(full.args) and not full_card(short.args)
    assert [full.error, short.error] == ["invalid_blocks", "invalid_blocks"]
    assert lead.card_ts is None and lead.card_error == "invalid_blocks"
    [item] = card_items(bot)
    assert (item.status, item.attempts, item.last_error) == (FAILED, 2, "invalid_blocks")
    assert kinds(bot, lead.id)[1:] == ["card_fell_back", "card_failed"]
    # Told as before, with Slack's code for whoever fixes it.
    [note] = bot.slack.dms(MARKETER)
    assert f"#{lead.id}" in note.text and "could not be posted" in note.text
    assert "`invalid_blocks`" in note.text and "short form" in note.text
    assert "by itself" not in note.text

    # Never again: no loop, however long the outbox runs.
    for _ in range(3):
        advance(bot, 3600)
    assert len(channel_posts(bot.slack)) == 2
    assert len(bot.slack.dms(MARKETER)) == 1
    # The digest lists it among the cards not posted, not as a short one.
    body = managers_digest(bot)
    assert "*Cards that could not be posted (1)*" in body and "`invalid_blocks` ×1" in body
    assert "short form (" not in body

    # A refusal about where the card goes, not what it says, is no reason for a short card.
    bot.slack.fail("chat.postMessage", error="restricted_action", when=full_card)
    submitted(bot, "Bob Roe, bob@globex.example, Globex")
    other = bot.leads()[-1]
    assert [c.error for c in channel_posts(bot.slack)[2:]] == ["restricted_action"]
    assert other.card_ts is None and other.card_error == "restricted_action"
    assert "card_fell_back" not in kinds(bot, other.id)


def test_transient_errors_are_retried_before_and_after_a_fallback(timed: Bot) -> None:
    """A 5xx, a timeout, a rate limit say nothing about the card: retried as they were, full
    card first; only the malformed refusal brings the short card, and it is retried too."""
    bot = timed
    bot.slack.fail("chat.postMessage", status=500, when=full_card)
    submitted(bot, EXAMPLE)
    [lead] = bot.leads()
    assert lead.card_ts is None
    assert [(full_card(c.args), c.status) for c in channel_posts(bot.slack)] == [(True, 500)]
    bot.slack.fail("chat.postMessage", error="msg_too_long", when=full_card)
    bot.slack.fail("chat.postMessage", error="rate_limited", when=lambda a: not full_card(a))
    advance(bot, 0.5)  # the 5xx's backoff: the full card again, refused as malformed, then short
    attempts = [(full_card(c.args), c.error) for c in channel_posts(bot.slack)]
    assert attempts == [(True, "internal_error"), (True, "msg_too_long"), (False, "rate_limited")]
    [item] = card_items(bot)
    assert item.status == PENDING and json.loads(item.payload or "{}") == {
        "fallback": "msg_too_long"
    }
    assert bot.lead(lead.id).card_error is None
    advance(bot, 2)  # the short card's backoff
    [*_, last] = channel_posts(bot.slack)
    assert last.ok and not full_card(last.args)
    assert bot.lead(lead.id).card_ts == card_items(bot)[0].result_ts
    assert kinds(bot, lead.id).count("card_fell_back") == 1
    assert len(bot.slack.dms(MARKETER)) == 1


# --- the log -------------------------------------------------------------------------------------


def test_the_refusal_is_logged_once_with_the_lead_and_code_and_no_contact_details(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot")
    caplog.set_level(logging.DEBUG, logger="handlers")
    caplog.set_level(logging.DEBUG, logger="jobs")
    caplog.set_level(logging.INFO)
    refuse_full_cards(bot.slack, "invalid_blocks")
    refuse_full_cards(bot.slack, "invalid_blocks", "chat.update")
    assert bot.submit(EXAMPLE).status == 200
    [lead] = bot.leads()
    click(bot, REP_A, "lead_claim", lead)
    assert bot.lead(lead.id).owner_id == REP_A

    messages = [r.getMessage() for r in caplog.records]
    said = [m for m in messages if "refused" in m and "invalid_blocks" in m]
    assert said == [
        f"Slack refused the card of lead {lead.id} (invalid_blocks): posting a short card instead"
    ]
    leaked = [m for m in messages if any(c.lower() in m.lower() for c in CONTACT)]
    assert leaked == []


# --- the claimer's DM: the only place the contact details go --------------------------------------


def _to(user: str) -> Any:
    return lambda args: args.get("channel") == user


def test_a_claimer_dm_slack_refuses_as_malformed_arrives_as_text(bot: Bot) -> None:
    """The claimer's DM is the one message with the lead's email and phone: refused for its
    blocks, the owner had a claimed lead and no way to reach them. It now arrives as text."""
    assert bot.submit(EXAMPLE).status == 200
    [lead] = bot.leads()
    bot.slack.fail("chat.postMessage", error="invalid_blocks", when=_to(REP_A))

    click(bot, REP_A, "lead_claim", lead)
    [dm] = bot.slack.dms(REP_A)
    assert not dm.blocks
    for detail in ("Jane Doe", "jane@acme.example", "+1 415 555 0100", "Acme Corp", "API demo"):
        assert detail in dm.text, detail
    assert f"#{lead.id}" in dm.text and "`invalid_blocks`" in dm.text
    assert bot.lead(lead.id).owner_id == REP_A
    # The refused DM is failed, its stand-in sent: nothing else waits.
    assert undelivered(bot) == [("message", FAILED, "invalid_blocks")]


def test_a_claimer_dm_refused_for_the_person_is_not_sent_again(bot: Bot) -> None:
    """Refused for who it goes to (a deactivated account), the same DM as text would be refused
    the same way: one try, not two."""
    assert bot.submit(EXAMPLE).status == 200
    [lead] = bot.leads()
    bot.slack.fail("chat.postMessage", error="user_not_found", when=_to(REP_A))

    click(bot, REP_A, "lead_claim", lead)
    tries = [c for c in bot.slack.calls_to("chat.postMessage") if c.args.get("channel") == REP_A]
    assert len(tries) == 1
    assert bot.slack.dms(REP_A) == []
    assert undelivered(bot) == [("message", FAILED, "user_not_found")]


def _reassign(bot: Bot, lead: Any, owner: str, trigger: str) -> None:
    """The manager reassigns `lead` to `owner` through the card's menu and modal."""
    click_card(bot, MANAGER, lead, "lead_reassign", trigger_id=trigger)
    view = modal(bot, trigger)
    r = bot.sim.view_submission(
        MANAGER, view, {"new_owner": ("new_owner_input", "users_select", owner)}
    )
    assert r.status == 200 and "errors" not in r.body
    bot.settle()
    assert bot.lead(lead.id).owner_id == owner


def _warnings(bot: Bot, user: str) -> list[str]:
    return [m.text for m in bot.slack.dms(user) if m.text.startswith("⚠️")]


def test_a_reassigned_owner_dm_slack_refuses_as_malformed_arrives_as_text(bot: Bot) -> None:
    """The new owner's DM is theirs only way to the contact: refused for its blocks, it went
    to nobody (the manager heard the owner "could not be told", which was not so: Slack would
    take a message to them). It now arrives as text, as the claimer's does, and the manager,
    with nothing to do, hears nothing."""
    lead = new_lead(bot, EXAMPLE, owner=REP_A)
    bot.slack.fail("chat.postMessage", error="msg_blocks_too_long", when=_to(REP_B))

    _reassign(bot, lead, REP_B, "trig-ra")
    [dm] = bot.slack.dms(REP_B)
    assert not dm.blocks
    assert dm.text.startswith(f"<@{MANAGER}> assigned you lead #{lead.id} *Jane Doe*")
    for detail in ("jane@acme.example", "+1 415 555 0100", "Acme Corp", "API demo"):
        assert detail in dm.text, detail
    assert "`msg_blocks_too_long`" in dm.text
    assert _warnings(bot, MANAGER) == []
    assert undelivered(bot) == [("message", FAILED, "msg_blocks_too_long")]


def test_a_reassigned_owner_text_refused_too_is_told_to_the_manager_once(bot: Bot) -> None:
    """Should Slack refuse the text as well, the owner was not told after all: the manager
    hears it, with the last refusal's code, and nothing is tried a third time."""
    lead = new_lead(bot, EXAMPLE, owner=REP_A)
    bot.slack.fail("chat.postMessage", error="invalid_blocks", when=_to(REP_B))
    bot.slack.fail("chat.postMessage", error="msg_too_long", when=_to(REP_B))

    _reassign(bot, lead, REP_B, "trig-ra2")
    tries = [c for c in bot.slack.calls_to("chat.postMessage") if c.args.get("channel") == REP_B]
    assert [(bool(c.args.get("blocks")), c.error) for c in tries] == [
        (True, "invalid_blocks"),
        (False, "msg_too_long"),
    ]
    assert bot.slack.dms(REP_B) == []
    [told] = _warnings(bot, MANAGER)
    assert told.startswith(f"⚠️ <@{REP_B}> could not be told about lead #{lead.id} ")
    assert told.endswith("(Slack: `msg_too_long`)")
    assert "jane@acme.example" not in told
    assert sorted(undelivered(bot)) == [
        ("message", FAILED, "invalid_blocks"),
        ("message", FAILED, "msg_too_long"),
    ]


# --- a card posted again after a delete ---------------------------------------------------------


def _repost(bot: Bot, lead_id: int) -> Any:
    """Someone deletes the lead's card; its reminder finds it gone and posts a new one."""
    card_ts = bot.lead(lead_id).card_ts
    assert card_ts
    delete_card(bot, card_ts)
    bot.clock.advance(timedelta(minutes=30))
    assert bot.run_job("reminders") == "1 reminded, 0 escalated"
    bot.settle()
    again = bot.lead(lead_id)
    assert again.card_ts and again.card_ts != card_ts
    return again


def test_a_card_posted_again_in_short_tells_the_submitter(bot: Bot) -> None:
    """The first card went out whole; the one posted after a delete is refused in full and
    goes short. Its submitter hears so, as they would of a first card gone short."""
    assert bot.submit(EXAMPLE).status == 200
    [lead] = bot.leads()
    assert bot.slack.dms(MARKETER) == []
    refuse_full_cards(bot.slack, "invalid_blocks")

    again = _repost(bot, lead.id)
    assert not full_card({"channel": LEADS_CHANNEL, "blocks": card_of(bot, again).blocks})
    assert events(bot, lead.id)[-2:] == [
        ("card_fell_back", {"error": "invalid_blocks"}),
        (
            "card_posted",
            {"channel": LEADS_CHANNEL, "ts": again.card_ts, "again": True, "short": True},
        ),
    ]
    [note] = bot.slack.dms(MARKETER)
    assert note.text.startswith(
        f"⚠️ Lead #{lead.id} *Jane Doe* (Acme Corp) was posted again in <#{LEADS_CHANNEL}> "
        "(its card was deleted), but as a short card"
    )
    assert "`invalid_blocks`" in note.text
    # The refresh that found the old card gone is done with: the new card shows the lead.
    assert undelivered(bot) == [("card_refresh", FAILED, "message_not_found")]


def test_a_card_posted_short_again_is_not_told_twice(bot: Bot) -> None:
    """The first card went short, and its submitter heard; the card posted after a delete goes
    short for the same reason: nothing new to tell them."""
    refuse_full_cards(bot.slack, "invalid_blocks")
    assert bot.submit(EXAMPLE).status == 200
    [lead] = bot.leads()
    [first] = bot.slack.dms(MARKETER)
    assert "reached" in first.text and "short card" in first.text

    again = _repost(bot, lead.id)
    assert not full_card({"channel": LEADS_CHANNEL, "blocks": card_of(bot, again).blocks})
    assert kinds(bot, lead.id).count("card_fell_back") == 2
    assert bot.slack.dms(MARKETER) == [first]
    # The refresh that found the old card gone is done with: the new card shows the lead.
    assert undelivered(bot) == [("card_refresh", FAILED, "message_not_found")]


def test_a_short_card_asks_for_the_full_one_again_only_after_an_hour(timed: Bot) -> None:
    """Each refresh of a short card sent the full card first, refused every time: two calls per
    refresh, in the very case (Slack changed a limit for every card) where calls run short.
    Within FULL_CARD_RETRY of a refusal the short card goes at once; after it, the full card is
    tried again, and the card is whole again once Slack takes it."""
    bot = timed
    assert bot.submit(EXAMPLE).status == 200
    advance(bot, 1)
    [lead] = bot.leads()
    bot.slack.fail("chat.update", error="invalid_blocks", when=full_card)  # once

    def refreshes() -> list[tuple[bool, str | None]]:
        updates = bot.slack.calls_to("chat.update")
        return [(full_card(c.args), c.error) for c in updates if c.args.get("ts") == lead.card_ts]

    click(bot, REP_A, "lead_claim", lead)  # refused in full, shown short
    advance(bot, 1)
    assert refreshes() == [(True, "invalid_blocks"), (False, None)]
    released = bot.lead(lead.id)
    bot.sim.block_action(
        REP_A,
        "lead_release",
        f"{lead.id}:{released.version}",
        channel_id=LEADS_CHANNEL,
        message_ts=lead.card_ts,
    )
    advance(bot, 1)
    assert refreshes()[2:] == [(False, None)]  # within the hour: short, one call

    advance(bot, outbox.FULL_CARD_RETRY)
    click(bot, REP_B, "lead_claim", bot.lead(lead.id))
    advance(bot, 1)
    assert refreshes()[3:] == [(True, None)]  # asked again, and taken: whole again
    assert f"Claimed by <@{REP_B}>" in json.dumps(card_of(bot, bot.lead(lead.id)).blocks)


def test_a_short_card_sent_without_metadata_is_found_in_the_channel(bot: Bot) -> None:
    """Slack refused the card's metadata, so the short card went without it; its post was
    applied but answered without a ts. The look in the channel's history matched cards by
    metadata only and missed it: the card failed for good (the submitter told it was not
    posted) while it sat in the channel, never refreshed nor reminded in."""
    refuse_full_cards(bot.slack, "invalid_metadata_format")
    bot.slack.answer(
        "chat.postMessage",
        {"ts": None, "message": None},
        applied=True,
        when=lambda args: args.get("channel") == LEADS_CHANNEL and not full_card(args),
    )
    assert bot.submit(EXAMPLE).status == 200
    bot.settle()
    [lead] = bot.leads()
    [shown] = bot.slack.messages(LEADS_CHANNEL)
    assert shown.metadata is None and not full_card({"channel": LEADS_CHANNEL, **vars(shown)})
    assert (lead.card_ts, lead.card_error) == (shown.ts, None)
    assert undelivered(bot) == []


# --- the digest: cards that went short in its period ---------------------------------------------


def test_the_digest_lists_the_cards_that_went_short_in_its_period_whenever_submitted(
    bot: Bot,
) -> None:
    """It listed only leads submitted in its period: an older lead's card gone short on a
    claim (a refresh) was in no digest at all. It now lists the cards that went short in its
    period, and not those that went short in an earlier one."""
    bot.slack.fail("chat.postMessage", error="invalid_blocks", when=full_card)  # once
    assert bot.submit(EXAMPLE).status == 200
    [earlier] = bot.leads()
    assert "card_fell_back" in kinds(bot, earlier.id)
    bot.clock.advance(timedelta(minutes=1))  # a period ends before the digest's instant
    assert "Cards shown in short form (1)" in managers_digest(bot)  # the day it went short

    assert bot.submit("Bob Roe, bob@globex.example, Globex, warm").status == 200
    older = bot.leads()[-1]
    assert full_card({"channel": LEADS_CHANNEL, "blocks": card_of(bot, older).blocks})
    bot.clock.advance(timedelta(days=2))
    refuse_full_cards(bot.slack, "msg_too_long", "chat.update")
    click(bot, REP_A, "lead_claim", older)
    assert ("card_fell_back", {"error": "msg_too_long", "refresh": True}) in events(bot, older.id)
    bot.clock.advance(timedelta(minutes=1))
    body = managers_digest(bot)
    assert "Cards shown in short form (1)" in body and "`msg_too_long` ×1" in body
    listed = body[body.index("Cards shown in short form") :].split("Leads: ")[1].split('"')[0]
    assert listed.endswith(f"|#{older.id}>") and f"#{earlier.id}>" not in listed
    assert "invalid_blocks" not in body  # the earlier lead's card went short two days ago


def test_the_short_cards_of_the_digest_read_no_more_than_its_period_of_events(
    engine: Engine,
) -> None:
    """The query reads the period's refusals through their partial index, never every event."""
    now = START
    rows, events_ = [], []
    for i in range(1, 3001):  # two years of leads, eight events each
        at = now - timedelta(days=730) + timedelta(minutes=350 * i)
        rows.append(
            {
                "id": i,
                "team_id": "T0LEADBOT",
                "name": f"n{i}",
                "priority": "warm",
                "submitted_by": MARKETER,
                "submitted_at": at,
                "status": CLAIMED,
                "version": 3,
                "reminders_sent": 0,
                "card_channel": LEADS_CHANNEL,
                "card_ts": f"{i}.000100",
            }
        )
        kinds_ = ["submitted", "card_posted", "claimed", "stage", "stage", "stage", "stage"]
        kinds_.append("card_fell_back" if i % 100 == 0 else "reminded")
        for k, kind in enumerate(kinds_):
            detail = json.dumps({"error": "invalid_blocks"}) if kind == "card_fell_back" else None
            events_.append(
                {
                    "lead_id": i,
                    "at": at + timedelta(minutes=k),
                    "actor": "system",
                    "kind": kind,
                    "detail": detail,
                }
            )
    with engine.begin() as conn:
        conn.execute(insert(Lead), rows)
        conn.execute(insert(LeadEvent), events_)
    since = rows[-300]["submitted_at"]  # the period holds the last 300 leads' events
    with Session(engine) as s, statements_sent(engine, "SELECT") as captured:
        count, codes, shown = leads.short_cards(s, since, now)
    assert (count, codes) == (3, [("invalid_blocks", 3)])
    assert [lead.id for lead in shown] == [2800, 2900, 3000]
    [reading] = [(q, p) for q, p in captured if "lead_events.kind" in q]
    plans = plans_with_and_without_statistics(engine, *reading)
    for when, plan in plans.items():
        # Through the refusals' own index: not every event, nor every lead's events.
        assert "ix_lead_events_fell_back" in plan, (when, plan)
        assert "SCAN lead_events" not in plan and "Seq Scan on lead_events" not in plan, (
            when,
            plan,
        )
