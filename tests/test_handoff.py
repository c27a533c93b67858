"""The product loop over real HTTP: /lead → card → Claim/Release, signed as Slack signs."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from bot import flows, leads, outbox
from bot.app import NOT_FROM_A_USER
from bot.clock import FakeClock
from bot.leads import events_of
from bot.slack_emulator import SlackEmulator
from handlers.common import DB_BUSY
from models import CLAIMED, NEW, SENT, Lead, LeadEvent, OutboxItem
from tests.conftest import (
    LEADS_CHANNEL,
    MANAGER,
    MARKETER,
    REP_A,
    REP_B,
    Bot,
    shown_text,
    start_bot,
    statements_sent,
)

EXAMPLE = (
    "Jane Doe, jane@acme.example, Acme Corp, +1 415 555 0100, hot, #SaaStr2026, wants an API demo"
)


def card_of(bot: Bot, lead: Lead) -> Any:
    assert lead.card_ts, "the lead has no card"
    message = bot.slack.message(LEADS_CHANNEL, lead.card_ts)
    assert message is not None
    return message


def card_json(bot: Bot, lead: Lead) -> str:
    message = card_of(bot, lead)
    return json.dumps({"text": message.text, "blocks": message.blocks})


def click(bot: Bot, user: str, action_id: str, lead: Lead) -> Any:
    button_value = next(
        element["value"]
        for block in card_of(bot, lead).blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == action_id
    )
    response = bot.sim.block_action(
        user,
        action_id,
        button_value,
        channel_id=lead.card_channel,
        message_ts=lead.card_ts,
    )
    bot.settle()
    return response


def modal_state(values: dict[str, str]) -> dict[str, tuple[str, str, str]]:
    """The modal's state.values as Slack sends them, from {field: value}."""
    return {
        field: (f"{field}_input", "static_select" if field == "priority" else "plain_text_input", v)
        for field, v in values.items()
    }


def buttons(bot: Bot, lead: Lead) -> list[str]:
    return [
        element["action_id"]
        for block in card_of(bot, lead).blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def test_inline_lead_is_stored_receipted_and_carded(bot: Bot) -> None:
    response = bot.submit(EXAMPLE)

    assert response.status == 200
    receipt = response.json()
    assert receipt["response_type"] == "ephemeral"
    assert "Lead #1" in receipt["text"] and "Jane Doe" in receipt["text"]

    [lead] = bot.leads()
    assert (lead.name, lead.email, lead.company, lead.phone) == (
        "Jane Doe",
        "jane@acme.example",
        "Acme Corp",
        "+1 415 555 0100",
    )
    assert (lead.priority, lead.event, lead.notes) == ("hot", "SaaStr2026", "wants an API demo")
    assert lead.submitted_by == MARKETER and lead.status == NEW
    assert lead.card_channel == LEADS_CHANNEL and lead.card_ts

    card = card_json(bot, lead)
    for shown in ("Jane Doe", "Acme Corp", "hot", "SaaStr2026", "wants an API demo"):
        assert shown in card
    assert f"<@{MARKETER}>" in card  # people as mentions, no users.info per card
    assert "<!date^" in card  # times in each reader's zone
    # Privacy by default: contact details are not on the public card.
    assert "jane@acme.example" not in card and "555" not in shown_text(card)
    assert not bot.slack.calls_to("users.info")
    assert [e.kind for e in _events(bot, lead.id)] == ["submitted", "card_posted"]


def test_a_card_delivered_again_moves_nothing_and_records_nothing(bot: Bot) -> None:
    """A second success for a card (a lease that ran out mid-post, another process posting it
    too) must not move the lead's card or log it twice."""
    bot.submit(EXAMPLE)
    bot.settle()
    [lead] = bot.leads()
    with bot.services.engine.begin() as conn:
        again = leads.card_posted(
            conn,
            lead.id,
            channel="C0OTHER",
            ts="1999999999.000100",
            now=bot.clock.now(),
            next_reminder_at=bot.clock.now(),
        )
    assert again is None
    after = bot.lead(lead.id)
    assert (after.card_channel, after.card_ts) == (lead.card_channel, lead.card_ts)
    assert after.next_reminder_at == lead.next_reminder_at
    assert [e.kind for e in _events(bot, lead.id)] == ["submitted", "card_posted"]


def test_a_new_lead_is_stored_with_its_event_and_one_card(bot: Bot) -> None:
    """On PostgreSQL a new person's lead, its event and its card row are one statement; on
    SQLite a transaction of three. Both leave the same rows."""
    bot.submit("Jane Doe, jane@acme.example, Acme Corp")
    [lead] = bot.leads()
    with bot.services.sessions() as s:
        rows = s.execute(
            select(OutboxItem.kind, OutboxItem.dedupe_key, OutboxItem.channel, OutboxItem.status)
        ).all()
    assert [tuple(r) for r in rows] == [("card", f"card:{lead.id}", LEADS_CHANNEL, SENT)]
    submitted = _events(bot, lead.id)[0]
    assert (submitted.kind, submitted.actor, submitted.at) == (
        "submitted",
        MARKETER,
        lead.submitted_at,
    )
    # The card's key is the one outbox.card_row gives: a second card for the lead is refused.
    with pytest.raises(IntegrityError), bot.services.sessions.begin() as s:
        outbox.enqueue(s, [outbox.card_row(lead, LEADS_CHANNEL)])


def test_card_is_valid_block_kit_with_fallback_text(bot: Bot) -> None:
    bot.submit(
        "title: VP Engineering, territory: EMEA, persona: IT leader, Jane Doe, jane@acme.example, "
        "Acme, notes: " + "long notes, " * 600
    )
    [lead] = bot.leads()
    message = card_of(bot, lead)
    assert message.text.strip()
    assert 0 < len(message.blocks) <= 50
    for block in message.blocks:
        Block.parse(block).validate_json()  # raises on any Block Kit limit
    card = card_json(bot, lead)
    for shown in ("VP Engineering", "EMEA", "IT leader"):
        assert shown in card
    # Notes are shortened on the card, kept whole in the database.
    assert len(lead.notes or "") > 7000
    notes_block = next(b for b in message.blocks if "Notes" in json.dumps(b))
    assert len(notes_block["text"]["text"]) < 600


@pytest.mark.parametrize("flag", ["help", "-h", "--help", "  HELP "])
def test_help(bot: Bot, flag: str) -> None:
    response = bot.submit(flag)
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "/lead" in body["text"] and "jane@acme.example" in body["text"]
    assert bot.leads() == []


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("Jane Doe, jane@acme, Acme", "email", "jane@acme"),
        ("Jane Doe, email: not-an-email, Acme", "email", "not-an-email"),
        ("Jane Doe, jane@acme.example, priority: urgent", "priority", "urgent"),
        ("Jane Doe, Acme Corp", "email or phone", ""),
        ("jane@acme.example, #SaaStr", "name", ""),
        (",,, ,", "name", ""),
    ],
)
def test_invalid_lead_is_refused_naming_field_and_value(
    bot: Bot, text: str, field: str, value: str
) -> None:
    response = bot.submit(text)
    body = response.json()
    assert response.status == 200
    assert body["response_type"] == "ephemeral"
    assert field in body["text"]
    assert value in body["text"]
    assert bot.leads() == []
    assert not bot.slack.calls_to("chat.postMessage")


def test_hostile_text_is_stored_exactly_and_shown_escaped(bot: Bot) -> None:
    name = "<!channel> Bob & <@U0BOSS0001>"
    company = "<https://evil.example|click me>"
    notes = "<!here> <!subteam^S0TEAM|@sales> *bold* `code`"
    bot.submit(f"name: {name}, email: bob@example.com, company: {company}, notes: {notes}")
    [lead] = bot.leads()
    assert (lead.name, lead.company, lead.notes) == (name, company, notes)
    message = card_of(bot, lead)
    mrkdwn = [message.text, *(t["text"] for t in _text_objects(message.blocks, "mrkdwn"))]
    plain = [t["text"] for t in _text_objects(message.blocks, "plain_text")]
    for raw in ("<!channel>", "<@U0BOSS0001>", "<https://evil", "<!here>", "<!subteam"):
        assert not any(raw in text for text in mrkdwn), raw
    joined = "\n".join(mrkdwn)
    assert "&lt;!channel&gt; Bob &amp; &lt;@U0BOSS0001&gt;" in joined
    assert "&lt;https://evil.example|click me&gt;" in joined
    # plain_text (the header) is never parsed by Slack, so it shows the name literally.
    assert any(name in text for text in plain)


def _text_objects(node: Any, kind: str) -> list[dict[str, Any]]:
    """Every text object of `kind` (mrkdwn / plain_text) anywhere in a block tree."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") == kind and isinstance(node.get("text"), str):
            found.append(node)
        for value in node.values():
            found.extend(_text_objects(value, kind))
    elif isinstance(node, list):
        for item in node:
            found.extend(_text_objects(item, kind))
    return found


def test_modal_opens_and_submits_with_field_errors_first(bot: Bot) -> None:
    response = bot.sim.slash_command(
        "", user_id=MARKETER, trigger_id="trig-1", response_url=bot.slack.response_url("modal")
    )
    bot.settle()
    assert response.status == 200
    [call] = bot.slack.calls_to("views.open")
    assert call.args["trigger_id"] == "trig-1"
    view = call.args["view"]
    assert view["callback_id"] == "lead_new"
    blocks = {b["block_id"] for b in view["blocks"]}
    assert {"name", "email", "phone", "company", "title", "priority", "event", "notes"} <= blocks

    bad = bot.sim.view_submission(
        MARKETER,
        view,
        modal_state({"name": "Jane Doe", "email": "jane@acme", "priority": "hot"}),
        private_metadata=view["private_metadata"],
    )
    assert bad.status == 200
    answer = bad.json()
    assert answer["response_action"] == "errors"
    assert "jane@acme" in answer["errors"]["email"]
    bot.settle()
    assert bot.leads() == []

    good = bot.sim.view_submission(
        MARKETER,
        view,
        modal_state(
            {"name": "Jane Doe", "email": "jane@acme.example", "priority": "hot", "event": "Expo"}
        ),
        private_metadata=view["private_metadata"],
    )
    bot.settle()
    assert good.status == 200
    assert not good.body.strip() or "errors" not in good.body
    [lead] = bot.leads()
    assert (lead.name, lead.email, lead.priority, lead.event) == (
        "Jane Doe",
        "jane@acme.example",
        "hot",
        "Expo",
    )
    assert lead.card_ts
    [receipt] = bot.slack.wait_for_response(name="modal")
    assert "Jane Doe" in json.dumps(receipt.body)
    assert receipt.body["response_type"] == "ephemeral"


def test_claim_updates_card_in_place_and_tells_claimer_and_submitter(bot: Bot) -> None:
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    bot.clock.advance(__import__("datetime").timedelta(minutes=12))
    response = click(bot, REP_A, "lead_claim", lead)
    assert response.status == 200

    lead = bot.lead(lead.id)
    assert lead.status == CLAIMED and lead.owner_id == REP_A
    [update] = bot.slack.calls_to("chat.update")
    assert update.args["ts"] == lead.card_ts and update.args["channel"] == LEADS_CHANNEL
    card = card_json(bot, lead)
    assert f"Claimed by <@{REP_A}>" in card and "<!date^" in card
    assert buttons(bot, lead) == ["lead_outcome", "lead_reassign", "lead_release"]
    assert "jane@acme.example" not in card

    [claimer_dm] = bot.slack.dms(REP_A)
    dm = json.dumps(claimer_dm.blocks)
    assert "jane@acme.example" in dm and "+1 415 555 0100" in dm and "wants an API demo" in dm
    [submitter_dm] = bot.slack.dms(MARKETER)
    assert f"<@{REP_A}>" in submitter_dm.text and "12m" in submitter_dm.text


def _claim_first_card(bot: Bot, rep: str, lead: Lead) -> Any:
    """`rep` clicks Claim on the lead's card as first rendered (version 1), settling nothing."""
    return bot.sim.block_action(
        rep, "lead_claim", f"{lead.id}:1", channel_id=lead.card_channel, message_ts=lead.card_ts
    )


def _outbox_of(bot: Bot, lead_id: int) -> list[tuple[str, str | None, str | None]]:
    with bot.services.sessions() as s:
        rows = s.execute(
            select(OutboxItem.kind, OutboxItem.channel, OutboxItem.payload)
            .where(OutboxItem.lead_id == lead_id)
            .order_by(OutboxItem.id)
        ).all()
    return [tuple(r) for r in rows]


def test_late_claim_changes_nothing_and_names_the_owner(bot: Bot) -> None:
    """A click too late records who was late and queues no second refresh for the version
    the card already shows."""
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    click(bot, REP_A, "lead_claim", lead)
    queued = _outbox_of(bot, lead.id)
    response = _claim_first_card(bot, REP_B, lead)
    bot.settle()
    assert response.status == 200
    assert bot.lead(lead.id).owner_id == REP_A
    assert len(bot.slack.calls_to("chat.update")) == 1
    [note] = bot.slack.ephemerals(REP_B)
    assert f"<@{REP_A}>" in note.text
    assert bot.slack.dms(REP_B) == []
    late = [e for e in _events(bot, lead.id) if e.kind == "claim_too_late"]
    assert [e.actor for e in late] == [REP_B]
    assert _outbox_of(bot, lead.id) == queued  # the refresh for version 2 is already queued


def test_a_won_claim_stores_its_event_refresh_and_dms_in_order(bot: Bot) -> None:
    """With the claim: its event, the card refresh for the new version and both DMs, queued
    in that order."""
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    click(bot, REP_A, "lead_claim", lead)
    stored = bot.lead(lead.id)
    assert (stored.status, stored.owner_id, stored.version) == (CLAIMED, REP_A, 2)
    assert stored.follow_up_at is not None and stored.next_reminder_at is None
    queued = _outbox_of(bot, lead.id)
    assert [kind for kind, _, _ in queued] == ["card", "card_refresh", "message", "message"]
    assert json.loads(queued[1][2] or "") == {"version": 2}
    # The claimer's DM has the contact details; the submitter's names the claimer.
    assert "jane@acme.example" in (queued[2][2] or "")
    assert f"<@{REP_A}> claimed your lead" in (queued[3][2] or "")
    assert [dm.text for dm in bot.slack.dms(REP_A)] == [json.loads(queued[2][2] or "")["text"]]
    [claimed] = [e for e in _events(bot, lead.id) if e.kind == "claimed"]
    assert claimed.actor == REP_A


def test_concurrent_leads_are_each_stored_once_with_their_own_receipt(
    bot: Bot,
) -> None:
    # Different people: the same person twice at the same instant is marked a repeat on
    # SQLite, whose writes take turns, but not always on PostgreSQL (each INSERT's lookup may
    # run before the other commits); tests/test_duplicates.py covers repeats.
    texts = [f"Person {i}, p{i}@acme.example, Acme, warm" for i in range(13)]
    barrier = threading.Barrier(len(texts))
    receipts: dict[int, str] = {}

    def send(i: int) -> None:
        barrier.wait()
        response = bot.sim.slash_command(texts[i], user_id=MARKETER, channel_id="C0EVENTS01")
        assert response.status == 200
        receipts[i] = response.json()["text"]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    bot.settle()

    stored = {lead.id: lead for lead in bot.leads()}
    assert len(stored) == len(texts)
    numbers = {i: int(re.search(r"Lead #(\d+) ", text).group(1)) for i, text in receipts.items()}  # type: ignore[union-attr]
    assert sorted(numbers.values()) == sorted(stored)  # every receipt names its own lead
    for i, number in numbers.items():
        assert stored[number].name == texts[i].split(",")[0]
    with bot.services.sessions() as s:
        submitted = s.scalars(select(LeadEvent.lead_id).where(LeadEvent.kind == "submitted"))
        assert sorted(submitted) == sorted(stored)
    assert all(bot.lead(number).card_ts for number in stored)  # and each got its card


def test_concurrent_claims_have_exactly_one_winner(bot: Bot) -> None:
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    reps = [f"U0REP{i:05d}" for i in range(24)]
    barrier = threading.Barrier(len(reps))
    statuses: list[int] = []

    def hit(rep: str) -> None:
        barrier.wait()
        statuses.append(_claim_first_card(bot, rep, lead).status)

    threads = [threading.Thread(target=hit, args=(rep,)) for rep in reps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bot.settle()

    assert statuses == [200] * len(reps)
    owner = bot.lead(lead.id).owner_id
    assert owner in reps
    with bot.services.sessions() as s:
        claims = s.scalar(
            select(func.count()).where(LeadEvent.lead_id == lead.id, LeadEvent.kind == "claimed")
        )
    assert claims == 1
    assert len(bot.slack.calls_to("chat.update")) == 1
    assert len(bot.slack.dms(owner)) == 1
    losers = {m.ephemeral_for for m in bot.slack.ephemerals()}
    assert losers == set(reps) - {owner}


def test_losers_are_told_side_by_side_while_slack_is_slow(bot: Bot) -> None:
    """A note waits on Slack, so a slow Slack must not queue the 16th loser behind the first
    few: every loser's note is on its way at once."""
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    reps = [f"U0REP{i:05d}" for i in range(17)]
    gates = {
        rep: bot.slack.hold("chat.postEphemeral", when=lambda a, rep=rep: a["user"] == rep)
        for rep in reps
    }
    try:
        for rep in reps:
            assert _claim_first_card(bot, rep, lead).status == 200
        deadline = time.monotonic() + 10
        while sum(g.arrived.is_set() for g in gates.values()) < len(reps) - 1:
            assert time.monotonic() < deadline, (
                f"only {sum(g.arrived.is_set() for g in gates.values())} of {len(reps) - 1} "
                "losers' notes reached Slack while it held them"
            )
            time.sleep(0.01)
        owner = bot.lead(lead.id).owner_id
        assert not gates[owner].arrived.is_set()
    finally:
        for gate in gates.values():
            gate.release()
    bot.settle()
    assert {m.ephemeral_for for m in bot.slack.ephemerals()} == set(reps) - {owner}


def _claim_events(sent: list[tuple[str, Any]]) -> list[list[str]]:
    """The kinds of claim events written by each INSERT seen by statements_sent."""
    out = []
    for _statement, params in sent:
        rows = params if isinstance(params, list) else [params]
        kinds = [
            kind
            for row in rows
            for kind in (row.values() if isinstance(row, dict) else row)
            if kind in ("claimed", "claim_too_late")
        ]
        if kinds:
            out.append(kinds)
    return out


def _sales_bot_with_leads(
    database_url: str, slack: SlackEmulator, clock: FakeClock, n: int
) -> tuple[Bot, list[str], list[Lead]]:
    """A bot with `n` leads whose claims are limited to a sales group of `n` + 1 reps, so that
    a claim reads the group from Slack first (see _first_claim_held)."""
    reps = [f"U0REP{i:05d}" for i in range(n + 1)]
    slack.set_usergroup("S0SALES001", reps)
    bot = start_bot(database_url, slack, clock, SALES_USERGROUP="S0SALES001")
    try:
        for i in range(n):
            bot.submit(f"Jane Doe {i}, jane{i}@acme.example, Acme Corp, hot, #SaaStr2026")
    except BaseException:
        bot.stop()
        raise
    return bot, reps, bot.leads()


@contextmanager
def _first_claim_held(bot: Bot, slack: SlackEmulator, rep: str, lead: Lead) -> Iterator[None]:
    """`rep` claims `lead`, and the claim stays under way until the block ends: it reads the
    sales group from Slack, which holds the answer. Clicks acked in the block wait for it."""
    gate = slack.hold("usergroups.users.list")
    try:
        assert _claim_first_card(bot, rep, lead).status == 200
        assert gate.arrived.wait(10)
        yield
    finally:
        gate.release()


def test_claims_acked_while_others_are_written_go_together_in_one_transaction(
    database_url: str, slack: SlackEmulator, clock: FakeClock
) -> None:
    """A burst of clicks on several cards, one of them clicked twice: the clicks that wait for
    the claim under way are written together (their events in one INSERT), the first click on
    a card still wins, and each card, DM and note is as when claimed one by one."""
    bot, reps, cards = _sales_bot_with_leads(database_url, slack, clock, 6)
    try:
        with statements_sent(bot.services.engine, "INSERT INTO lead_events") as sent:
            with _first_claim_held(bot, slack, reps[0], cards[0]):
                for rep, lead in zip(reps[1:6], cards[1:], strict=True):
                    assert _claim_first_card(bot, rep, lead).status == 200
                assert _claim_first_card(bot, reps[6], cards[3]).status == 200  # too late
            bot.settle()
        first, rest = _claim_events(sent)
        assert (first, sorted(rest)) == (["claimed"], ["claim_too_late"] + ["claimed"] * 5)
        for rep, lead in zip(reps, cards, strict=False):
            stored = bot.lead(lead.id)
            assert (stored.status, stored.owner_id, stored.version) == (CLAIMED, rep, 2)
            assert [kind for kind, _, _ in _outbox_of(bot, lead.id)] == [
                "card",
                "card_refresh",
                "message",
                "message",
            ]
            [dm] = bot.slack.dms(rep)
            assert f"jane{lead.id - cards[0].id}@acme.example" in json.dumps(dm.blocks)
        assert len(bot.slack.calls_to("chat.update")) == 6
        [late] = bot.slack.ephemerals(reps[6])
        assert f"<@{reps[3]}>" in late.text
    finally:
        bot.stop()


@pytest.mark.parametrize("failure", ["database", "bug"])
def test_a_batch_of_claims_that_fails_claims_each_alone(
    database_url: str,
    slack: SlackEmulator,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    """One claim that fails (the database refuses it, or a bug) must not fail the claims
    written with it: the batch goes again one claim at a time. Only the refused one's clicker
    hears that nothing changed; a bug is logged by type, as any after-ack failure is."""
    bot, reps, cards = _sales_bot_with_leads(database_url, slack, clock, 4)
    try:
        refused = cards[2].id

        def refuse(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
            values = params.values() if isinstance(params, dict) else params
            if statement.lstrip().startswith("UPDATE leads") and refused in values:
                if failure == "bug":
                    raise RuntimeError("a bug")
                raise OperationalError(statement, None, Exception("lock timeout"))

        event.listen(bot.services.engine, "before_cursor_execute", refuse)
        try:
            with caplog.at_level(logging.WARNING, logger="handlers.actions"):
                with _first_claim_held(bot, slack, reps[0], cards[0]):
                    for rep, lead in zip(reps[1:4], cards[1:], strict=True):
                        assert _claim_first_card(bot, rep, lead).status == 200
                bot.settle()
        finally:
            event.remove(bot.services.engine, "before_cursor_execute", refuse)
        for rep, lead in zip(reps, cards, strict=False):
            stored = bot.lead(lead.id)
            if lead.id == refused:
                assert (stored.status, stored.owner_id, stored.version) == (NEW, None, 1)
                notes = [m.text for m in bot.slack.ephemerals(rep)]
                assert notes == ([DB_BUSY] if failure == "database" else [])
            else:
                assert (stored.status, stored.owner_id) == (CLAIMED, rep)
                assert not bot.slack.ephemerals(rep)
        said = [r.getMessage() for r in caplog.records]
        error = "OperationalError" if failure == "database" else "RuntimeError"
        assert f"a batch of 3 claims failed ({error}): each again alone" in said
        if failure == "database":
            assert f"claim of lead {refused} failed, database error: OperationalError" in said
        else:
            assert f"claim of lead {refused} failed: RuntimeError" in said
    finally:
        bot.stop()


def test_a_stampede_in_one_batch_costs_one_statement_per_card(
    database_url: str, slack: SlackEmulator, clock: FakeClock
) -> None:
    """Many clicks on one card in one batch: the first click's UPDATE settles the card, and
    the others lose without a statement of their own, whether the card is won in this batch
    or was won before it. Each loser still has its event and its note; each card one refresh."""
    bot, reps, cards = _sales_bot_with_leads(database_url, slack, clock, 2)
    crowd = [f"U0CROWD{i:04d}" for i in range(8)]
    slack.set_usergroup("S0SALES001", reps + crowd)
    try:
        with statements_sent(bot.services.engine, "UPDATE leads") as updates:
            with _first_claim_held(bot, slack, reps[0], cards[0]):
                for rep in crowd[:5]:  # card 1, won in this batch by the first of them
                    assert _claim_first_card(bot, rep, cards[1]).status == 200
                for rep in crowd[5:]:  # card 0, won by the batch before
                    assert _claim_first_card(bot, rep, cards[0]).status == 200
            bot.settle()
        claims = [s for s, _ in updates if "status" in s and "owner_id" in s]
        assert len(claims) == 3  # the first batch's, then one per card
        assert bot.lead(cards[0].id).owner_id == reps[0]
        assert bot.lead(cards[1].id).owner_id == crowd[0]
        for rep in crowd[1:5]:
            [note] = bot.slack.ephemerals(rep)
            assert f"<@{crowd[0]}>" in note.text
        for rep in crowd[5:]:
            [note] = bot.slack.ephemerals(rep)
            assert f"<@{reps[0]}>" in note.text
        with bot.services.sessions() as s:
            for lead, late in ((cards[0], 3), (cards[1], 4)):
                kinds = [e.kind for e in events_of(s, lead.id)]
                assert (kinds.count("claimed"), kinds.count("claim_too_late")) == (1, late)
        for lead in cards:
            assert [k for k, _, _ in _outbox_of(bot, lead.id)].count("card_refresh") == 1
    finally:
        bot.stop()


def test_an_odd_click_in_a_batch_costs_the_others_nothing(
    database_url: str, slack: SlackEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A signed click of the wrong shape (its user a string, not an object) is refused before
    it reaches the claims being written (once, reading it raised inside the batch, which had
    to drop it by hand), and costs the clicks around it nothing."""
    bot, reps, cards = _sales_bot_with_leads(database_url, slack, clock, 3)
    try:
        odd = {
            "type": "block_actions",
            "team": {"id": slack.team_id},
            "user": reps[1],
            "channel": {"id": cards[1].card_channel},
            "actions": [{"action_id": "lead_claim", "value": f"{cards[1].id}:1", "type": "button"}],
        }
        with caplog.at_level(logging.ERROR, logger="handlers.actions"):
            with _first_claim_held(bot, slack, reps[0], cards[0]):
                body = urllib.parse.urlencode({"payload": json.dumps(odd)}).encode()
                refused = bot.sim.raw(body, "application/x-www-form-urlencoded")
                assert (refused.status, refused.body) == (400, NOT_FROM_A_USER)
                assert _claim_first_card(bot, reps[2], cards[2]).status == 200
            bot.settle()
        assert [bot.lead(lead.id).owner_id for lead in cards] == [reps[0], None, reps[2]]
        assert [r.getMessage() for r in caplog.records] == []  # nothing raised
    finally:
        bot.stop()


def test_a_batch_of_claims_locks_its_leads_in_id_order(bot: Bot) -> None:
    """Two processes each writing a batch of claims on the same cards cannot deadlock: each
    batch locks its leads in id order, whatever order the clicks came in."""
    if bot.services.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite locks the whole database, in no order")
    bot.submit(EXAMPLE)
    bot.submit("John Roe, john@acme.example, Acme Corp, hot, #SaaStr2026")
    first, second = bot.leads()
    team = bot.services.team_id
    results: list[Any] = []
    with bot.services.engine.connect() as holder, bot.services.engine.connect() as probe:
        holder.execute(text("SELECT id FROM leads WHERE id = :id FOR UPDATE"), {"id": second.id})
        # The later click's lead first: the batch must still lock the lower id first.
        batch = threading.Thread(
            target=lambda: results.extend(
                flows.claim_all(bot.services, [(second.id, REP_B, team), (first.id, REP_A, team)])
            )
        )
        batch.start()
        try:
            deadline = time.monotonic() + 10
            while not probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ):
                assert time.monotonic() < deadline, "the batch never waited for the held lead"
                probe.rollback()
            probe.rollback()
            # Waiting for the second lead, it already holds the first.
            with pytest.raises(OperationalError, match="could not obtain lock"):
                probe.execute(
                    text("SELECT id FROM leads WHERE id = :id FOR UPDATE NOWAIT"), {"id": first.id}
                )
        finally:
            holder.rollback()
            batch.join()
    assert [(r.won, r.lead.owner_id) for r in results] == [(True, REP_B), (True, REP_A)]


def test_release_only_by_owner_or_manager(bot: Bot) -> None:
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    click(bot, REP_A, "lead_claim", lead)
    lead = bot.lead(lead.id)

    click(bot, REP_B, "lead_release", lead)
    assert bot.lead(lead.id).owner_id == REP_A
    [refusal] = bot.slack.ephemerals(REP_B)
    assert "Only" in refusal.text and f"<@{REP_A}>" in refusal.text

    click(bot, REP_A, "lead_release", lead)
    released = bot.lead(lead.id)
    assert released.status == NEW and released.owner_id is None
    assert buttons(bot, released) == ["lead_claim"]

    click(bot, REP_B, "lead_claim", released)
    assert bot.lead(lead.id).owner_id == REP_B
    click(bot, MANAGER, "lead_release", bot.lead(lead.id))
    assert bot.lead(lead.id).status == NEW

    kinds = [e.kind for e in _events(bot, lead.id)]
    assert kinds == [
        "submitted",
        "card_posted",
        "claimed",
        "release_refused",
        "released",
        "claimed",
        "released",
    ]
    actors = [e.actor for e in _events(bot, lead.id) if e.kind in ("claimed", "released")]
    assert actors == [REP_A, REP_A, REP_B, MANAGER]


def test_broken_button_values_change_nothing(bot: Bot) -> None:
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    for value in ("abc", "9" * 40, "", "999:1", "-1"):
        r = bot.sim.block_action(
            REP_A, "lead_claim", value, channel_id=lead.card_channel, message_ts=lead.card_ts
        )
        assert r.status == 200
    bot.settle()
    assert bot.lead(lead.id).status == NEW
    assert len(bot.slack.ephemerals(REP_A)) == 5


def _events(bot: Bot, lead_id: int) -> list[LeadEvent]:
    with bot.services.sessions() as s:
        return events_of(s, lead_id)
