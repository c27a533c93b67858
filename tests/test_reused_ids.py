"""A lead id given again: SQLite takes max(id) + 1 for a new row, so erasing the newest lead
(`leadbot forget`, the RETAIN_FOR purge) frees its number for the next `/lead`. The erased lead's
card stays in the channel (a purged one with its buttons, a forgotten one blanked but with its
metadata): no click on it, and no crash recovery of the outbox, may act on the new lead.

PostgreSQL's sequences give no id twice, until `leadbot copy-db` sets them to the highest id
copied (bot.copydb): on PostgreSQL the tests do what it does, and the id comes back there too.
Everything goes over the real interfaces: signed clicks with Slack's payload shape (the
container's channel and message_ts, the message), the loopback Slack, a real database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot import leads, outbox, render
from bot.clock import FakeClock, FakeDeliveryTime
from bot.copydb import _reset_sequences
from bot.privacy import forget_person
from bot.slack_emulator import Message, SlackEmulator
from models import NEW, OutboxItem
from tests.conftest import LEADS_CHANNEL, MARKETER, REP_A, REP_B, Bot, start_bot
from tests.test_outbox import advance, cards_of

OLD = "Old Person, old@acme.example, OldCo"
NEW_LEAD = "New Person, new@acme.example, NewCo"
OUT_OF_DATE = "This card is out of date: the lead it showed is gone."


@pytest.fixture
def retaining(database_url: str, slack: SlackEmulator, clock: FakeClock) -> Iterator[Bot]:
    bot = start_bot(database_url, slack, clock, RETAIN_FOR="1d")
    yield bot
    bot.stop()


@pytest.fixture
def timed(database_url: str, slack: SlackEmulator, clock: FakeClock) -> Iterator[Bot]:
    """The outbox's retries and card checks go when the test moves its time (`advance`)."""
    bot = start_bot(database_url, slack, clock, RETAIN_FOR="1d", delivery_time=FakeDeliveryTime())
    yield bot
    bot.stop()


def ids_as_after_copy_db(bot: Bot) -> None:
    """On PostgreSQL, each sequence set to the highest id there is, as `leadbot copy-db` leaves
    it: an erased lead's id is given again, as SQLite gives it. Nothing to do on SQLite."""
    if bot.services.engine.dialect.name == "postgresql":
        with bot.services.engine.begin() as conn:
            _reset_sequences(conn)


def card_message(bot: Bot, lead_id: int) -> Message:
    lead = bot.lead(lead_id)
    assert lead.card_channel and lead.card_ts, "the lead has no card"
    message = bot.slack.message(lead.card_channel, lead.card_ts)
    assert message is not None
    return message


def click(bot: Bot, user: str, message: Message, action_id: str) -> None:
    """`user` clicks the button `action_id` of this message, as Slack sends it."""
    [value] = [
        element["value"]
        for block in message.blocks or []
        if block.get("type") == "actions"
        for element in block["elements"]
        if element.get("action_id") == action_id
    ]
    response = bot.sim.block_action(user, action_id, value, message=message)
    assert response.status == 200
    bot.settle()


def erase_by_purge(bot: Bot, lead_id: int) -> None:
    bot.clock.advance(timedelta(days=2))
    assert bot.run_job("purge").startswith("purged 1 leads")
    assert [lead.id for lead in bot.leads() if lead.id == lead_id] == []


def erase_by_forget(bot: Bot, lead_id: int) -> None:
    assert forget_person(bot.services, "old@acme.example").startswith("forgot 1 leads")
    bot.clock.advance(timedelta(minutes=1))
    assert [lead.id for lead in bot.leads() if lead.id == lead_id] == []


def old_lead_then_new_one(
    bot: Bot, erase: str, *, claimed_by: str | None = None
) -> tuple[Message, int]:
    """Old Person's lead, its card (claimed by `claimed_by`, if given), then the lead erased
    and New Person's lead stored under the same id. Returns the old card, as it was left."""
    bot.submit(OLD)
    [old] = bot.leads()
    if claimed_by:
        click(bot, claimed_by, card_message(bot, old.id), "lead_claim")
    old_card = card_message(bot, old.id)
    (erase_by_purge if erase == "purge" else erase_by_forget)(bot, old.id)
    ids_as_after_copy_db(bot)
    bot.submit(NEW_LEAD)
    [new] = bot.leads()
    assert new.id == old.id, "the premise: the erased lead's id is given to the new lead"
    left = bot.slack.message(old_card.channel, old_card.ts)
    assert left is not None
    return left, new.id


def dm_text(bot: Bot, user: str) -> str:
    return json.dumps([(m.text, m.blocks) for m in bot.slack.dms(user)])


def answers(bot: Bot, user: str) -> list[str]:
    return [m.text for m in bot.slack.ephemerals(user)]


# --- clicks on the erased lead's card ------------------------------------------------------------


def test_claim_on_a_purged_leads_card_leaves_the_new_lead_with_its_id_alone(retaining: Bot) -> None:
    bot = retaining
    old_card, lead_id = old_lead_then_new_one(bot, "purge")
    assert "Old Person" in json.dumps(old_card.blocks)  # a purge leaves the card as it was

    click(bot, REP_A, old_card, "lead_claim")

    new = bot.lead(lead_id)
    assert (new.status, new.owner_id) == (NEW, None)
    assert "new@acme.example" not in dm_text(bot, REP_A)
    assert answers(bot, REP_A) == [OUT_OF_DATE]
    # The new lead's own card still claims it.
    click(bot, REP_B, card_message(bot, lead_id), "lead_claim")
    assert bot.lead(lead_id).owner_id == REP_B
    assert "new@acme.example" in dm_text(bot, REP_B)


def test_claim_on_an_old_card_while_the_new_leads_card_is_not_posted(retaining: Bot) -> None:
    """The new lead has no card yet (here Slack refuses it: the bot was removed from the
    channel; a paced burst or an outage does the same): there is no card to compare the click
    with, and a message older than the lead is still not its card."""
    bot = retaining
    bot.submit(OLD)
    [old] = bot.leads()
    old_card = card_message(bot, old.id)
    erase_by_purge(bot, old.id)
    ids_as_after_copy_db(bot)
    bot.slack.fail("chat.postMessage", error="not_in_channel", when=lambda a: "metadata" in a)
    bot.submit(NEW_LEAD)
    [new] = bot.leads()
    assert (new.id, new.card_ts, new.card_error) == (old.id, None, "not_in_channel")

    click(bot, REP_A, old_card, "lead_claim")

    new = bot.lead(new.id)
    assert (new.status, new.owner_id) == (NEW, None)
    assert answers(bot, REP_A) == [OUT_OF_DATE]
    with bot.services.sessions() as s:  # nothing queued for the rep, no card refresh
        queued = s.execute(
            select(OutboxItem.kind, OutboxItem.channel).where(OutboxItem.lead_id == new.id)
        ).all()
    assert {kind for kind, _ in queued} <= {outbox.CARD, outbox.MESSAGE}
    assert REP_A not in {channel for _, channel in queued}


def test_release_on_a_purged_leads_card_leaves_the_new_lead_claimed(retaining: Bot) -> None:
    """Both cards say lead 1 at version 2 (claimed once): the button values are the same."""
    bot = retaining
    old_card, lead_id = old_lead_then_new_one(bot, "purge", claimed_by=REP_A)
    click(bot, REP_A, card_message(bot, lead_id), "lead_claim")
    new = bot.lead(lead_id)
    assert new.owner_id == REP_A
    release = [
        e["value"]
        for b in old_card.blocks or []
        if b.get("type") == "actions"
        for e in b["elements"]
        if e.get("action_id") == "lead_release"
    ]
    assert release == [f"{new.id}:{new.version}"], "the premise: the same button value"

    click(bot, REP_A, old_card, "lead_release")

    after = bot.lead(lead_id)
    assert (after.status, after.owner_id, after.version) == ("claimed", REP_A, new.version)
    assert answers(bot, REP_A) == [OUT_OF_DATE]


def test_claim_on_a_forgotten_leads_blanked_card_from_before_the_blanking(retaining: Bot) -> None:
    """A rep's Slack showing the card as it was before `forget` blanked it sends its click."""
    bot = retaining
    bot.submit(OLD)
    [old] = bot.leads()
    as_shown = card_message(bot, old.id)
    erase_by_forget(bot, old.id)
    ids_as_after_copy_db(bot)
    bot.submit(NEW_LEAD)
    [new] = bot.leads()
    assert new.id == old.id

    click(bot, REP_A, as_shown, "lead_claim")

    assert bot.lead(new.id).owner_id is None
    assert answers(bot, REP_A) == [OUT_OF_DATE]


# --- the outbox's crash recovery ----------------------------------------------------------------


@pytest.mark.parametrize("erase", ["forget", "purge"])
def test_a_retried_card_is_not_taken_for_the_erased_leads_card(timed: Bot, erase: str) -> None:
    """The new lead's first post ends in a 5xx (it may have been posted), so the retry looks
    in the channel's history for a card with its lead id: the erased lead's card (blanked or
    not) has that id in its metadata, but it is not this lead's card. Nor is it a second copy
    of it for the card check to delete."""
    bot = timed
    bot.submit(OLD)
    advance(bot, 0)
    [old] = bot.leads()
    old_card = card_message(bot, old.id)
    (erase_by_purge if erase == "purge" else erase_by_forget)(bot, old.id)
    ids_as_after_copy_db(bot)
    shown_before = bot.slack.message(old_card.channel, old_card.ts)
    assert shown_before is not None
    bot.slack.fail("chat.postMessage", status=500, when=lambda a: "metadata" in a)
    assert bot.sim.slash_command(NEW_LEAD, user_id=MARKETER, channel_id="C0EVENTS01").status == 200
    assert bot.app.leadbot_executor.wait_idle(15)  # type: ignore[attr-defined]
    bot.services.outbox.wait_parked()
    advance(bot, 0.5)  # the retry: history, then a post
    advance(bot, outbox.CARD_CHECK_DELAY.total_seconds())
    [new] = bot.leads()
    assert new.id == old.id

    assert new.card_ts and new.card_ts != old_card.ts
    shown = card_message(bot, new.id)
    assert "New Person" in json.dumps(shown.blocks)
    assert len(bot.slack.calls_to("conversations.history")) == 1
    # The erased lead's card is where it was, as it was, and not deleted as a second card.
    left = bot.slack.message(old_card.channel, old_card.ts)
    assert left is not None and left.blocks == shown_before.blocks
    assert bot.slack.calls_to("chat.delete") == []
    assert [m.ts for m in cards_of(bot.slack, new.id, LEADS_CHANNEL) if m.ts != old_card.ts] == [
        new.card_ts
    ]


# --- the core's rule ----------------------------------------------------------------------------


def test_a_message_is_about_a_lead_only_if_not_older_than_its_card(retaining: Bot) -> None:
    """bot.leads.card_marks and predates_card over the real database: several leads in one
    read (a batch of claims), one alone, one whose card is not posted, one that is not."""
    bot = retaining
    bot.submit(OLD)
    bot.slack.fail("chat.postMessage", error="not_in_channel", when=lambda a: "metadata" in a)
    bot.submit(NEW_LEAD)
    posted, unposted = bot.leads()
    assert posted.card_ts and unposted.card_ts is None
    card = posted.card_ts
    seconds, micros = card.split(".")
    earlier = f"{seconds}.{int(micros) - 1:06d}"
    later = f"{int(seconds) + 1}.{micros}"

    with bot.services.engine.connect() as conn:
        marks = leads.card_marks(conn, {posted.id, unposted.id, 999})
        assert leads.card_marks(conn, {posted.id}) == {posted.id: marks[posted.id]}
    assert set(marks) == {posted.id, unposted.id}
    assert marks[posted.id] == leads.CardMark(card, None)
    queued = marks[unposted.id].queued_at
    assert marks[unposted.id].card_ts is None and queued is not None

    on_card = marks[posted.id]
    assert not leads.predates_card(card, on_card)  # the card itself
    assert not leads.predates_card(later, on_card)  # a later copy, a DM about the lead
    assert leads.predates_card(earlier, on_card)  # posted before it: another lead's
    for malformed in ("", "abc", "1.2.3", "1796000000.1234567", "-1.5"):
        assert leads.predates_card(malformed, on_card), malformed
    # No card yet: compared with when it was queued (Slack's ts are seconds since the epoch).
    at = queued.timestamp()
    assert leads.predates_card(f"{int(at) - 1}.000000", marks[unposted.id])
    assert not leads.predates_card(f"{int(at) + 1}.000000", marks[unposted.id])


def test_reassign_on_a_purged_leads_card_opens_no_form_for_the_new_lead(retaining: Bot) -> None:
    """A manager's Reassign on the old card would have handed the new lead, and its contact
    details, to whoever the manager picked."""
    from tests.conftest import MANAGER

    bot = retaining
    old_card, lead_id = old_lead_then_new_one(bot, "purge", claimed_by=REP_A)
    click(bot, REP_B, card_message(bot, lead_id), "lead_claim")
    opened = len(bot.slack.calls_to("views.open"))

    click(bot, MANAGER, old_card, "lead_reassign")

    assert len(bot.slack.calls_to("views.open")) == opened
    assert answers(bot, MANAGER) == [OUT_OF_DATE]
    # On the new lead's own card the same button opens the form.
    click(bot, MANAGER, card_message(bot, lead_id), "lead_reassign")
    assert len(bot.slack.calls_to("views.open")) == opened + 1


# --- an erasure while a delivery is on its way, and the ids given again at once -----------------


def _during_the_post(bot: Bot, shows: str, then: Callable[[], None]) -> dict[str, str]:
    """Run `then` while the outbox's post of the message that shows `shows` is on its way:
    after Slack took it, before the outbox records it. Returns the posted message's ts."""
    posting = bot.services.outbox.slack
    post = posting.post
    seen: dict[str, str] = {}

    def post_then(channel: str, message: Any, thread_ts: str | None = None, **kw: Any) -> Any:
        result = post(channel, message, thread_ts=thread_ts, **kw)
        if not seen and shows in message.text + json.dumps(message.blocks):
            seen["ts"] = result[1]
            then()
        return result

    posting.post = post_then  # type: ignore[method-assign]
    return seen


def test_a_card_posted_while_its_lead_is_erased_is_not_given_to_the_next_lead(bot: Bot) -> None:
    """The erased lead's id went to the next /lead (SQLite), whose row then took the card
    that was on its way: the channel showed the erased person as the new lead, and its own
    card was never posted."""
    bot.submit("Bob Roe, bob@init.example, Initech")
    ids_as_after_copy_db(bot)

    def erase_and_submit_again() -> None:
        assert forget_person(bot.services, "jane@acme.example").startswith("forgot 1 leads")
        ids_as_after_copy_db(bot)
        bot.sim.slash_command(NEW_LEAD, user_id=MARKETER, channel_id="C0EVENTS01")

    seen = _during_the_post(bot, "Jane Doe", erase_and_submit_again)
    bot.submit("Jane Doe, jane@acme.example, Acme Corp")
    bot.settle()
    new = bot.leads()[-1]
    assert new.name == "New Person"
    assert new.card_ts is not None and new.card_ts != seen["ts"]
    assert "New Person" in json.dumps(card_message(bot, new.id).blocks)
    jane_card = bot.slack.message(LEADS_CHANNEL, seen["ts"])
    assert jane_card is not None and "Jane Doe" not in json.dumps(jane_card.blocks)


def test_a_dm_delivered_while_its_lead_is_erased_is_blanked_though_its_id_was_reused(
    bot: Bot,
) -> None:
    """The claimer's DM (the contact details) on its way as the lead is forgotten: the outbox
    blanks it when its row is gone, and it took a new row with the same id for its own."""
    bot.submit("Bob Roe, bob@init.example, Initech")
    bot.submit("Jane Doe, jane@acme.example, Acme Corp")
    jane = bot.leads()[-1]

    def erase_and_reuse() -> None:
        assert forget_person(bot.services, "jane@acme.example").startswith("forgot 1 leads")
        ids_as_after_copy_db(bot)
        for i in range(10):  # ordinary work afterwards: one of these takes the DM's id
            with bot.services.sessions.begin() as s:
                note = render.Message(text=f"note {i}")
                outbox.enqueue(s, [outbox.message_row("C0OTHER001", note, thread_ts="1.000001")])

    _during_the_post(bot, "jane@acme.example", erase_and_reuse)
    click(bot, REP_A, card_message(bot, jane.id), "lead_claim")
    bot.settle()
    shown = json.dumps([(m.text, m.blocks) for m in bot.slack.dms(REP_A)])
    assert "jane@acme.example" not in shown
