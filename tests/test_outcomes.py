"""The lifecycle after the claim, over real HTTP: outcomes from the card (and DMs, and
`/lead mine`), the disqualify modal, reassign, follow-ups on the working-hours clock."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState

from bot.leads import events_of
from bot.outcomes import NOTE_MAX, STAGES, record_outcome
from bot.privacy import delete_leads
from models import CLAIMED, Lead, LeadEvent, make_engine, make_sessionmaker
from tests.conftest import LEADS_CHANNEL, MANAGER, MARKETER, REP_A, REP_B, Bot, start_bot

EXAMPLE = "Jane Doe, jane@acme.example, Acme Corp, hot, #SaaStr2026, wants an API demo"
DAY = timedelta(days=1)


# --- helpers ------------------------------------------------------------------------------------


def card(bot: Bot, lead: Lead) -> Any:
    lead = bot.lead(lead.id)
    assert lead.card_ts
    message = bot.slack.message(LEADS_CHANNEL, lead.card_ts)
    assert message is not None
    return message


def card_json(bot: Bot, lead: Lead) -> str:
    message = card(bot, lead)
    return json.dumps({"text": message.text, "blocks": message.blocks}, ensure_ascii=False)


def elements(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for block in blocks:
        found.extend(block.get("elements") or [])
        if block.get("accessory"):
            found.append(block["accessory"])
    return [e for e in found if isinstance(e, dict) and "action_id" in e]


def action_ids(bot: Bot, lead: Lead) -> list[str]:
    return [e["action_id"] for e in elements(card(bot, lead).blocks)]


def option_for(blocks: list[dict[str, Any]], stage: str, lead_id: int | None = None) -> dict:
    """The Record outcome option for `stage` in these blocks (of lead `lead_id`, if given)."""
    for element in elements(blocks):
        if element["action_id"] != "lead_outcome":
            continue
        for option in element["options"]:
            value = option["value"]
            if value.endswith(f":{stage}") and (lead_id is None or value.startswith(f"{lead_id}:")):
                return option
    raise AssertionError(f"no {stage} option in {json.dumps(blocks)[:500]}")


def new_lead(bot: Bot, text: str = EXAMPLE, owner: str | None = REP_A) -> Lead:
    before = {lead.id for lead in bot.leads()}
    bot.submit(text)
    [lead] = [lead for lead in bot.leads() if lead.id not in before]
    if owner is not None:
        claim(bot, lead.id, owner)
    return bot.lead(lead.id)


def claim(bot: Bot, lead_id: int, rep: str) -> None:
    """`rep` clicks Claim on the lead's card as it is now."""
    lead = bot.lead(lead_id)
    r = bot.sim.block_action(
        rep,
        "lead_claim",
        f"{lead.id}:{lead.version}",
        channel_id=lead.card_channel,
        message_ts=lead.card_ts,
    )
    assert r.status == 200
    bot.settle()


def choose(bot: Bot, user: str, lead: Lead, stage: str, option: dict | None = None) -> Any:
    """Pick `stage` in the card's Record outcome select (or send the given option)."""
    message = card(bot, lead)
    option = option or option_for(message.blocks, stage)
    r = bot.sim.select(
        user,
        "lead_outcome",
        {"selected_option": option},
        channel_id=LEADS_CHANNEL,
        message_ts=message.ts,
        block_id="lead_owner_actions",
    )
    assert r.status == 200
    bot.settle()
    return r


def click_card(
    bot: Bot, user: str, lead: Lead, action_id: str, trigger_id: str | None = None
) -> Any:
    message = card(bot, lead)
    value = next(e["value"] for e in elements(message.blocks) if e["action_id"] == action_id)
    r = bot.sim.block_action(
        user,
        action_id,
        value,
        channel_id=LEADS_CHANNEL,
        message_ts=message.ts,
        trigger_id=trigger_id,
    )
    assert r.status == 200
    bot.settle()
    return r


def stage_events(bot: Bot, lead_id: int) -> list[dict[str, Any]]:
    return [
        json.loads(e.detail or "{}") | {"actor": e.actor} for e in events(bot, lead_id, "stage")
    ]


def events(bot: Bot, lead_id: int, kind: str | None = None) -> list[LeadEvent]:
    with bot.services.sessions() as s:
        return [e for e in events_of(s, lead_id) if kind is None or e.kind == kind]


def texts(messages: list[Any]) -> list[str]:
    return [m.text for m in messages]


def valid(blocks: list[dict[str, Any]]) -> None:
    assert 0 < len(blocks) <= 50
    for block in blocks:
        Block.parse(block).validate_json()  # raises on any Block Kit limit


def modal(bot: Bot, trigger_id: str) -> dict[str, Any]:
    [call] = [c for c in bot.slack.calls_to("views.open") if c.args["trigger_id"] == trigger_id]
    view = call.args["view"]
    View(**view).validate_json()
    return view


def open_disqualify(bot: Bot, lead: Lead, trigger_id: str, user: str = REP_A) -> dict[str, Any]:
    """Choose Disqualified in the lead's card menu, as `user`; the modal that opens."""
    message = card(bot, lead)
    r = bot.sim.select(
        user,
        "lead_outcome",
        {"selected_option": option_for(message.blocks, "disqualified")},
        channel_id=LEADS_CHANNEL,
        message_ts=message.ts,
        trigger_id=trigger_id,
    )
    assert r.status == 200
    bot.settle()
    return modal(bot, trigger_id)


# --- recording outcomes -------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["contacted", "meeting", "qualified", "won", "lost"])
def test_each_outcome_is_recorded_shown_and_told_to_the_submitter(bot: Bot, stage: str) -> None:
    lead = new_lead(bot)
    assert action_ids(bot, lead) == ["lead_outcome", "lead_reassign", "lead_release"]
    bot.clock.advance(timedelta(hours=2))

    choose(bot, REP_A, lead, stage)

    after = bot.lead(lead.id)
    assert after.stage == stage and after.stage_at == bot.clock.now()
    assert after.version == lead.version + 1
    label = STAGES[stage]
    shown = card_json(bot, lead)
    assert "*Stage:* " in shown and label in shown and f"Claimed by <@{REP_A}>" in shown
    assert card(bot, lead).text.endswith(f" · {label}")
    valid(card(bot, lead).blocks)
    # Marketing hears where its lead stands, and who said so.
    news = bot.slack.dms(MARKETER)[-1]
    assert f"*Jane Doe* (SaaStr2026) is now *{label}* — <@{REP_A}>" in news.text
    assert stage_events(bot, lead.id) == [{"stage": stage, "reason": None, "actor": REP_A}]
    # The card's select no longer offers the stage it shows.
    with pytest.raises(AssertionError):
        option_for(card(bot, lead).blocks, stage)
    if stage in ("won", "lost"):
        assert after.follow_up_at is None  # closed: no more follow-ups
        assert action_ids(bot, lead) == ["lead_outcome"]
        assert "closed" in shown
    else:
        assert after.follow_up_at == bot.clock.now() + DAY
        assert action_ids(bot, lead) == ["lead_outcome", "lead_reassign", "lead_release"]
    assert bot.slack.ephemerals(REP_A) == []  # the card says it all


def test_a_deal_goes_through_its_stages(bot: Bot) -> None:
    lead = new_lead(bot)
    for stage in ("contacted", "meeting", "qualified", "won"):
        bot.clock.advance(timedelta(hours=1))
        choose(bot, REP_A, lead, stage)
    assert bot.lead(lead.id).stage == "won"
    assert [e["stage"] for e in stage_events(bot, lead.id)] == [
        "contacted",
        "meeting",
        "qualified",
        "won",
    ]
    assert [e.get("previous") for e in stage_events(bot, lead.id)] == [
        None,
        "contacted",
        "meeting",
        "qualified",
    ]
    news = texts(bot.slack.dms(MARKETER))
    assert len(news) == 5  # claimed, then one per stage
    assert ["Contacted" in news[1], "Meeting booked" in news[2], "Won" in news[4]] == [True] * 3


def test_the_same_stage_twice_is_a_no_op(bot: Bot) -> None:
    lead = new_lead(bot)
    option = option_for(card(bot, lead).blocks, "qualified")
    choose(bot, REP_A, lead, "qualified", option)
    dms, updates = len(bot.slack.dms(MARKETER)), len(bot.slack.calls_to("chat.update"))
    choose(bot, REP_A, lead, "qualified", option)  # the same click delivered again
    assert bot.lead(lead.id).version == lead.version + 1
    assert len(stage_events(bot, lead.id)) == 1
    assert len(bot.slack.dms(MARKETER)) == dms
    assert len(bot.slack.calls_to("chat.update")) == updates
    [note] = bot.slack.ephemerals(REP_A)
    assert "already" in note.text and "nothing changed" in note.text


def test_concurrent_outcomes_from_one_card_change_it_once(bot: Bot) -> None:
    lead = new_lead(bot)
    blocks = card(bot, lead).blocks
    picks = [(REP_A, "won"), (MANAGER, "lost"), (REP_A, "qualified"), (MANAGER, "meeting")]
    barrier = threading.Barrier(len(picks))
    statuses: list[int] = []

    def pick(user: str, stage: str) -> None:
        option = option_for(blocks, stage)
        barrier.wait()
        r = bot.sim.select(
            user,
            "lead_outcome",
            {"selected_option": option},
            channel_id=LEADS_CHANNEL,
            message_ts=lead.card_ts,
        )
        statuses.append(r.status)

    threads = [threading.Thread(target=pick, args=p) for p in picks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bot.settle()
    assert statuses == [200] * len(picks)
    [event] = stage_events(bot, lead.id)
    assert bot.lead(lead.id).stage == event["stage"]
    assert bot.lead(lead.id).version == lead.version + 1
    assert len(bot.slack.dms(MARKETER)) == 2  # claimed, and the one stage that won
    assert len(bot.slack.ephemerals()) == len(picks) - 1  # the others: out of date


def test_another_rep_is_refused_and_nothing_changes(bot: Bot) -> None:
    lead = new_lead(bot)
    dms = len(bot.slack.dms(MARKETER))
    choose(bot, REP_B, lead, "won")
    after = bot.lead(lead.id)
    assert after.stage is None and after.version == lead.version
    assert stage_events(bot, lead.id) == []
    assert len(bot.slack.dms(MARKETER)) == dms
    [refusal] = bot.slack.ephemerals(REP_B)
    assert f"Only <@{REP_A}> or a manager" in refusal.text and "nothing changed" in refusal.text


def test_a_manager_may_record_an_outcome(bot: Bot) -> None:
    lead = new_lead(bot)
    choose(bot, MANAGER, lead, "qualified")
    assert bot.lead(lead.id).stage == "qualified"
    assert stage_events(bot, lead.id) == [{"stage": "qualified", "reason": None, "actor": MANAGER}]
    assert f"is now *Qualified* — <@{MANAGER}>" in bot.slack.dms(MARKETER)[-1].text


def test_a_stale_card_changes_nothing_and_is_refreshed(bot: Bot) -> None:
    lead = new_lead(bot)  # version 2
    old_qualified = option_for(card(bot, lead).blocks, "qualified")
    choose(bot, REP_A, lead, "contacted")  # version 3
    updates = len(bot.slack.calls_to("chat.update"))
    # Another copy of the card, rendered at version 2, still offers "qualified".
    choose(bot, REP_A, lead, "qualified", old_qualified)
    after = bot.lead(lead.id)
    assert after.stage == "contacted" and after.version == lead.version + 1
    [note] = bot.slack.ephemerals(REP_A)
    assert "out of date" in note.text and "Contacted" in note.text
    # The card shows the truth (the refresh queued for version 3 covers every stale click).
    assert len(bot.slack.calls_to("chat.update")) >= updates
    assert "Contacted" in card_json(bot, lead)


def test_an_outcome_on_a_released_lead_changes_nothing(bot: Bot) -> None:
    lead = new_lead(bot)
    option = option_for(card(bot, lead).blocks, "won")
    click_card(bot, REP_A, lead, "lead_release")
    choose(bot, REP_A, lead, "won", option)
    assert bot.lead(lead.id).stage is None
    assert "not claimed" in bot.slack.ephemerals(REP_A)[-1].text


def test_a_release_checked_before_the_lead_was_won_changes_nothing(
    bot: Bot, database_url: str
) -> None:
    """A release reads the lead, checks it may go, then writes, with no lock in between. The
    owner's "Won" landed in that gap (two clicks at once on one card), and the release put the
    won lead back in the queue, its stage kept. Here the "Won" is committed at that moment."""
    lead = new_lead(bot)
    message = card(bot, lead)
    seen = bot.lead(lead.id)
    won: list[Any] = []
    elsewhere = make_engine(database_url)  # another process, say: the bot's pool is busy

    def won_meanwhile(state: ORMExecuteState) -> None:
        if state.is_update and not won:  # the release's UPDATE, about to run
            with make_sessionmaker(elsewhere).begin() as other:
                won.append(
                    record_outcome(
                        other,
                        lead.id,
                        REP_A,
                        "won",
                        team_id=seen.team_id,
                        managers=[],
                        policy=bot.services.settings.policy,
                        now=bot.clock.now(),
                    )
                )

    event.listen(bot.services.sessions, "do_orm_execute", won_meanwhile)
    try:
        click_card(bot, REP_A, lead, "lead_release")
    finally:
        event.remove(bot.services.sessions, "do_orm_execute", won_meanwhile)
        elsewhere.dispose()
    assert [r.reason for r in won] == ["recorded"]
    after = bot.lead(lead.id)
    assert (after.status, after.owner_id, after.stage) == (CLAIMED, REP_A, "won")
    assert events(bot, lead.id, "released") == []
    note = bot.slack.ephemerals(REP_A)[-1].text
    assert note.startswith("That card was out of date; nothing changed.") and "Won" in note
    assert "Won" in card_json(bot, lead) and bot.slack.message(LEADS_CHANNEL, message.ts)


@pytest.mark.parametrize("click", ["lead_release", "won", "disqualify", "reassign"])
def test_a_click_on_a_lead_erased_while_it_was_written_says_the_lead_is_gone(
    bot: Bot, database_url: str, click: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`forget` (or the purge) deleting the lead between a click's check and its write failed
    the write (nothing to read back, or a row for a lead no longer there), and the rep was told
    the database was not answering, with an error logged. Here the lead is erased at the
    moment of the write. A modal's submission closes, rather than showing the database error
    in the form."""
    caplog.set_level(logging.INFO)
    lead = new_lead(bot)
    who, submitted = REP_A, None
    if click == "disqualify":
        view = open_disqualify(bot, lead, "trig-gone")
        reason = {"outcome_reason": ("outcome_reason_input", "static_select", "No budget")}
        submitted = lambda: bot.sim.view_submission(REP_A, view, reason)  # noqa: E731
    elif click == "reassign":
        who = MANAGER
        click_card(bot, MANAGER, lead, "lead_reassign", trigger_id="trig-gone")
        view = modal(bot, "trig-gone")
        owner = {"new_owner": ("new_owner_input", "users_select", REP_B)}
        submitted = lambda: bot.sim.view_submission(MANAGER, view, owner)  # noqa: E731
    erased: list[int] = []
    elsewhere = make_engine(database_url)  # `leadbot forget`, in a process of its own

    def erase_meanwhile(state: ORMExecuteState) -> None:
        if state.is_update and not erased:  # the click's UPDATE, about to run
            with make_sessionmaker(elsewhere).begin() as other:
                erased.append(delete_leads(other, [lead.id]))

    event.listen(bot.services.sessions, "do_orm_execute", erase_meanwhile)
    try:
        if submitted is not None:
            answer = submitted()
            assert (answer.status, answer.body) == (200, "")  # the modal closes
            bot.settle()
        elif click == "won":
            choose(bot, REP_A, lead, "won")
        else:
            click_card(bot, REP_A, lead, click)
    finally:
        event.remove(bot.services.sessions, "do_orm_execute", erase_meanwhile)
        elsewhere.dispose()
    assert erased == [1] and bot.leads() == []
    assert (
        bot.slack.ephemerals(who)[-1].text == f"Lead #{lead.id} no longer exists; nothing changed."
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "the lead was erased meanwhile" in caplog.text


def test_broken_outcome_values_change_nothing(bot: Bot) -> None:
    lead = new_lead(bot)
    for value in ("abc", f"{lead.id}:2:promoted", f"{lead.id}", "", "1:2:3:won", "x" * 70):
        choose(
            bot, REP_A, lead, "won", {"text": {"type": "plain_text", "text": "x"}, "value": value}
        )
    assert bot.lead(lead.id).stage is None
    assert len(bot.slack.ephemerals(REP_A)) == 6


# --- disqualify ---------------------------------------------------------------------------------


def test_disqualify_asks_for_a_reason_first(bot: Bot) -> None:
    lead = new_lead(bot)
    view = open_disqualify(bot, lead, "trig-dq")
    assert bot.lead(lead.id).stage is None  # nothing until the modal is submitted
    assert view["callback_id"] == "lead_disqualify"
    reasons = [
        o["value"]
        for b in view["blocks"]
        if b.get("block_id") == "outcome_reason"
        for o in b["element"]["options"]
    ]
    assert reasons == list(bot.services.settings.policy.disqualify_reasons)

    missing = bot.sim.view_submission(
        REP_A,
        view,
        {
            "outcome_reason": ("outcome_reason_input", "static_select", None),
            "outcome_note": ("outcome_note_input", "plain_text_input", "they left"),
        },
    )
    assert missing.status == 200
    answer = missing.json()
    assert answer["response_action"] == "errors" and "outcome_reason" in answer["errors"]
    made_up = bot.sim.view_submission(
        REP_A, view, {"outcome_reason": ("outcome_reason_input", "static_select", "Bored")}
    )
    assert made_up.json()["response_action"] == "errors"
    bot.settle()
    assert bot.lead(lead.id).stage is None

    note = "Bought <!channel> & a rival"
    done = bot.sim.view_submission(
        REP_A,
        view,
        {
            "outcome_reason": ("outcome_reason_input", "static_select", "No budget"),
            "outcome_note": ("outcome_note_input", "plain_text_input", note),
        },
    )
    assert done.status == 200 and "errors" not in done.body
    bot.settle()
    after = bot.lead(lead.id)
    assert (after.stage, after.outcome_reason, after.follow_up_at) == (
        "disqualified",
        "No budget",
        None,
    )
    shown = card_json(bot, lead)
    assert "Disqualified — No budget" in shown and "rival" not in shown  # the note is not public
    assert action_ids(bot, lead) == ["lead_outcome"]
    news = bot.slack.dms(MARKETER)[-1]
    assert "is now *Disqualified* (No budget)" in news.text
    assert "Bought &lt;!channel&gt; &amp; a rival" in json.dumps(news.blocks)
    assert "<!channel>" not in json.dumps(news.blocks)
    [event] = stage_events(bot, lead.id)
    assert event == {"stage": "disqualified", "reason": "No budget", "note": note, "actor": REP_A}


def test_a_disqualify_note_longer_than_the_modal_allows_is_refused_in_the_modal(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack's input stops at NOTE_MAX characters; a forged longer note, quoted whole in the
    submitter's DM, made a section Slack refuses, and the handler failed with the modal closed
    and nothing said."""
    lead = new_lead(bot)
    view = open_disqualify(bot, lead, "trig-long")
    reason = ("outcome_reason_input", "static_select", "No budget")
    for length, refused in ((NOTE_MAX + 1, True), (3000, True), (NOTE_MAX, False)):
        note = ("outcome_note_input", "plain_text_input", "&" * length)
        r = bot.sim.view_submission(REP_A, view, {"outcome_reason": reason, "outcome_note": note})
        bot.settle()
        if refused:
            assert r.json()["errors"] == {"outcome_note": f"At most {NOTE_MAX} characters."}
            assert bot.lead(lead.id).stage is None
    # The longest note Slack lets through, every character one it escapes, still goes.
    assert r.status == 200 and "errors" not in r.body
    assert bot.lead(lead.id).stage == "disqualified"
    assert "&amp;" * 10 in json.dumps(bot.slack.dms(MARKETER)[-1].blocks)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_disqualify_by_another_rep_opens_no_modal(bot: Bot) -> None:
    lead = new_lead(bot)
    choose(bot, REP_B, lead, "disqualified")
    assert bot.slack.calls_to("views.open") == []
    assert "Only" in bot.slack.ephemerals(REP_B)[0].text


def test_disqualify_submitted_after_the_card_changed_changes_nothing(bot: Bot) -> None:
    lead = new_lead(bot)
    view = open_disqualify(bot, lead, "trig-dq2")
    choose(bot, REP_A, lead, "contacted")  # meanwhile, from the card
    r = bot.sim.view_submission(
        REP_A, view, {"outcome_reason": ("outcome_reason_input", "static_select", "Not a fit")}
    )
    assert r.status == 200 and "errors" not in r.body
    bot.settle()
    assert bot.lead(lead.id).stage == "contacted"
    assert "out of date" in bot.slack.ephemerals(REP_A)[-1].text


# --- reassign -----------------------------------------------------------------------------------


def test_only_managers_reassign(bot: Bot) -> None:
    lead = new_lead(bot)
    for rep in (REP_A, REP_B):
        click_card(bot, rep, lead, "lead_reassign")
    assert bot.slack.calls_to("views.open") == []
    refusals = bot.slack.ephemerals()
    assert len(refusals) == 2 and all("Only managers" in m.text for m in refusals)
    assert bot.lead(lead.id).owner_id == REP_A


def test_manager_reassigns_new_owner_gets_details_old_owner_a_note(bot: Bot) -> None:
    lead = new_lead(bot)
    bot.clock.advance(timedelta(hours=20))
    click_card(bot, MANAGER, lead, "lead_reassign", trigger_id="trig-ra")
    view = modal(bot, "trig-ra")
    assert view["callback_id"] == "lead_reassign_to"

    empty = bot.sim.view_submission(
        MANAGER, view, {"new_owner": ("new_owner_input", "users_select", None)}
    )
    assert empty.json()["response_action"] == "errors"
    same = bot.sim.view_submission(
        MANAGER, view, {"new_owner": ("new_owner_input", "users_select", REP_A)}
    )
    assert "already own" in same.json()["errors"]["new_owner"]
    bot.settle()
    assert bot.lead(lead.id).owner_id == REP_A

    done = bot.sim.view_submission(
        MANAGER, view, {"new_owner": ("new_owner_input", "users_select", REP_B)}
    )
    assert done.status == 200 and "errors" not in done.body
    bot.settle()
    after = bot.lead(lead.id)
    assert after.owner_id == REP_B and after.status == CLAIMED
    assert after.follow_up_at == bot.clock.now() + DAY  # a full interval for the new owner
    shown = card_json(bot, lead)
    # The new owner did not claim it: the card says who handed it over (tests/test_ownership.py)
    assert f"Assigned to <@{REP_B}>* by <@{MANAGER}>" in shown and "Claimed by" not in shown
    [details] = bot.slack.dms(REP_B)
    body = json.dumps(details.blocks)
    assert "jane@acme.example" in body and f"<@{MANAGER}> assigned you lead" in body
    assert details.text == f"<@{MANAGER}> assigned you lead #{lead.id} *Jane Doe* (Acme Corp)."
    note = bot.slack.dms(REP_A)[-1]
    assert "reassigned" in note.text and f"<@{REP_B}>" in note.text
    assert "jane@acme.example" not in note.text
    [event] = events(bot, lead.id, "reassigned")
    assert event.actor == MANAGER
    assert json.loads(event.detail or "{}") == {"owner": REP_B, "previous_owner": REP_A}
    # The new owner may now record outcomes; the old one may not.
    choose(bot, REP_A, lead, "won")
    assert bot.lead(lead.id).stage is None
    choose(bot, REP_B, lead, "contacted")
    assert bot.lead(lead.id).stage == "contacted"


@pytest.mark.parametrize("owner", ["U0LEADBOT", "USLACKBOT"])
def test_a_reassign_to_leadbot_or_slackbot_is_refused_in_the_form(bot: Bot, owner: str) -> None:
    """Both are in Slack's user select, and neither reads a DM: the lead would sit with nobody."""
    assert bot.services.bot_user_id == "U0LEADBOT"  # from auth.test, as the emulator answers it
    lead = new_lead(bot)
    click_card(bot, MANAGER, lead, "lead_reassign", trigger_id="trig-bot")
    view = modal(bot, "trig-bot")
    r = bot.sim.view_submission(
        MANAGER, view, {"new_owner": ("new_owner_input", "users_select", owner)}
    )
    assert r.json() == {
        "response_action": "errors",
        "errors": {"new_owner": "leadbot and Slackbot cannot own a lead; choose a person."},
    }
    bot.settle()
    assert bot.lead(lead.id).owner_id == REP_A
    assert events(bot, lead.id, "reassigned") == []


@pytest.mark.parametrize("error", ["cannot_dm_bot", "user_not_found"])
def test_the_manager_hears_when_the_new_owner_cannot_be_told(bot: Bot, error: str) -> None:
    """Another app's user, or someone deactivated meanwhile: Slack refuses their DM, and the
    manager who reassigned is told, so the lead does not sit with someone who never hears."""
    lead = new_lead(bot)
    click_card(bot, MANAGER, lead, "lead_reassign", trigger_id="trig-app")
    view = modal(bot, "trig-app")
    app_user = "U0OTHERAPP"
    bot.slack.fail("chat.postMessage", error=error, when=lambda a: a.get("channel") == app_user)
    r = bot.sim.view_submission(
        MANAGER, view, {"new_owner": ("new_owner_input", "users_select", app_user)}
    )
    assert r.status == 200 and "errors" not in r.body
    bot.settle()
    assert bot.lead(lead.id).owner_id == app_user
    assert bot.slack.dms(app_user) == []
    [told] = [m for m in bot.slack.dms(MANAGER) if m.text.startswith("⚠️")]
    assert told.text.startswith(f"⚠️ <@{app_user}> could not be told about lead #{lead.id} ")
    assert "reassign the lead to a person" in told.text and f"(Slack: `{error}`)" in told.text
    assert "jane@acme.example" not in told.text  # the refused DM's details stay out


def test_a_new_owner_who_gets_the_dm_costs_the_manager_nothing(bot: Bot) -> None:
    lead = new_lead(bot)
    click_card(bot, MANAGER, lead, "lead_reassign", trigger_id="trig-ok")
    view = modal(bot, "trig-ok")
    bot.sim.view_submission(
        MANAGER, view, {"new_owner": ("new_owner_input", "users_select", REP_B)}
    )
    bot.settle()
    assert len(bot.slack.dms(REP_B)) == 1
    assert [m.text for m in bot.slack.dms(MANAGER) if m.text.startswith("⚠️")] == []


# --- follow-ups ---------------------------------------------------------------------------------


def nudges(bot: Bot, user: str) -> list[Any]:
    return [m for m in bot.slack.dms(user) if m.text.startswith("⏰")]


def click_dm(bot: Bot, user: str, message: Any, action_id: str) -> None:
    value = next(e["value"] for e in elements(message.blocks) if e["action_id"] == action_id)
    r = bot.sim.block_action(
        user, action_id, value, channel_id=message.channel, message_ts=message.ts
    )
    assert r.status == 200
    bot.settle()


def test_follow_up_nudges_the_owner_then_tells_the_managers(bot: Bot) -> None:
    lead = new_lead(bot)
    claimed_at = bot.lead(lead.id).claimed_at
    assert claimed_at is not None
    assert bot.lead(lead.id).follow_up_at == claimed_at + DAY  # built-in policy: 1d, 24/7

    bot.clock.set(claimed_at + DAY - timedelta(seconds=1))
    assert bot.run_job("followups") == "0 nudged, 0 escalated"
    bot.clock.set(claimed_at + DAY)
    assert bot.run_job("followups") == "1 nudged, 0 escalated"
    assert bot.run_job("followups") == "0 nudged, 0 escalated"  # once per due time
    [nudge] = nudges(bot, REP_A)
    valid(nudge.blocks)
    assert "Lead #1" in nudge.text and "1d" in nudge.text
    assert {e["action_id"] for e in elements(nudge.blocks)} == {
        "lead_outcome",
        "lead_snooze_1h",
        "lead_snooze_1d",
    }
    assert bot.slack.dms(MANAGER) == []

    # Snooze 1 hour: asked again an hour from now, and that is the next miss.
    bot.clock.advance(timedelta(minutes=5))
    click_dm(bot, REP_A, nudge, "lead_snooze_1h")
    assert bot.lead(lead.id).follow_up_at == bot.clock.now() + timedelta(hours=1)
    assert "Snoozed" in bot.slack.ephemerals(REP_A)[-1].text
    bot.clock.advance(timedelta(minutes=59))
    assert bot.run_job("followups") == "0 nudged, 0 escalated"
    bot.clock.advance(timedelta(minutes=1))
    assert bot.run_job("followups") == "0 nudged, 1 escalated"
    [told] = bot.slack.dms(MANAGER)
    assert f"<@{REP_A}>" in told.text and "Lead #1" in told.text
    assert f"https://leadbot-emulator.slack.com/archives/{LEADS_CHANNEL}" in told.text
    assert "jane@acme.example" not in told.text
    assert "managers have been told" in nudges(bot, REP_A)[-1].text

    # Later misses nudge the owner, once per interval; the managers heard once.
    bot.clock.advance(DAY)
    assert bot.run_job("followups") == "1 nudged, 0 escalated"
    assert len(bot.slack.dms(MANAGER)) == 1
    kinds = [e.kind for e in events(bot, lead.id)]
    assert kinds.count("follow_up_nudged") == 2 and kinds.count("follow_up_escalated") == 1
    assert kinds.count("snoozed") == 1


def test_an_outcome_from_the_nudge_restarts_the_follow_up_clock(bot: Bot) -> None:
    lead = new_lead(bot)
    bot.clock.advance(DAY)
    bot.run_job("followups")
    [nudge] = nudges(bot, REP_A)
    option = option_for(nudge.blocks, "meeting", lead.id)
    r = bot.sim.select(
        REP_A,
        "lead_outcome",
        {"selected_option": option},
        channel_id=nudge.channel,
        message_ts=nudge.ts,
    )
    assert r.status == 200
    bot.settle()
    after = bot.lead(lead.id)
    assert after.stage == "meeting" and after.follow_up_misses == 0
    assert after.follow_up_at == bot.clock.now() + DAY
    assert "is now" in bot.slack.ephemerals(REP_A)[-1].text  # a DM does not change: confirm
    assert "Meeting booked" in card_json(bot, lead)
    bot.clock.advance(DAY - timedelta(seconds=1))
    assert bot.run_job("followups") == "0 nudged, 0 escalated"
    bot.clock.advance(timedelta(seconds=1))
    assert bot.run_job("followups") == "1 nudged, 0 escalated"  # a fresh streak: the owner only
    assert "Meeting booked" in nudges(bot, REP_A)[-1].text


def test_no_follow_ups_once_closed(bot: Bot) -> None:
    lead = new_lead(bot)
    choose(bot, REP_A, lead, "lost")
    for _ in range(4):
        bot.clock.advance(DAY)
        assert bot.run_job("followups") == "0 nudged, 0 escalated"
    assert nudges(bot, REP_A) == []
    # A snooze button from an older nudge cannot bring them back.
    r = bot.sim.block_action(REP_A, "lead_snooze_1d", str(lead.id), channel_id="D0REPAAAA1")
    assert r.status == 200
    bot.settle()
    assert bot.lead(lead.id).follow_up_at is None
    assert "no more follow-ups" in bot.slack.ephemerals(REP_A)[-1].text


def test_only_the_owner_or_a_manager_snoozes(bot: Bot) -> None:
    lead = new_lead(bot)
    due = bot.lead(lead.id).follow_up_at
    bot.sim.block_action(REP_B, "lead_snooze_1d", str(lead.id), channel_id="D0REPBBBB1")
    bot.settle()
    assert bot.lead(lead.id).follow_up_at == due
    assert "Only" in bot.slack.ephemerals(REP_B)[-1].text


def test_concurrent_follow_up_runs_send_each_nudge_once(bot: Bot) -> None:
    for i in range(5):
        new_lead(bot, f"Lead {i}, lead{i}@example.com")
    bot.clock.advance(DAY)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait()
            bot.run_job("followups")
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(nudges(bot, REP_A)) == 5
    assert sorted(int(m.text.split("#")[1].split()[0]) for m in nudges(bot, REP_A)) == [
        1,
        2,
        3,
        4,
        5,
    ]


OFFICE_HOURS = """
[hours]
timezone = "UTC"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "17:00"

[priorities.hot]
claim_within = "30m"
follow_up_within = "2h"

[priorities.warm]
claim_within = "1h"
"""


def test_follow_ups_run_on_working_time_and_never_outside_it(
    database_url: str, slack: Any, clock: Any, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(OFFICE_HOURS)
    clock.set(datetime(2026, 11, 26, 16, 0, tzinfo=UTC))  # Thursday, an hour before closing
    bot = start_bot(database_url, slack, clock, POLICY_FILE=str(policy))
    try:
        lead = new_lead(bot)
        # 2h of working time: 16:00-17:00 today, then 09:00-10:00 on Friday.
        assert bot.lead(lead.id).follow_up_at == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
        bot.clock.set(datetime(2026, 11, 26, 20, 0, tzinfo=UTC))
        assert bot.run_job("followups") == "outside working hours: nothing sent"
        # Due on Friday 10:00, but nobody ran the job until the weekend: it waits for Monday.
        bot.clock.set(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
        assert bot.run_job("followups") == "outside working hours: nothing sent"
        assert nudges(bot, REP_A) == []
        bot.clock.set(datetime(2026, 11, 30, 9, 0, tzinfo=UTC))  # Monday opening
        assert bot.run_job("followups") == "1 nudged, 0 escalated"
        # The next one: 2 working hours later. A 1-day snooze asks again at this time on the
        # next working day; it was 24 working hours, Wednesday at closing (3 x 8h).
        assert bot.lead(lead.id).follow_up_at == datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
        [nudge] = nudges(bot, REP_A)
        click_dm(bot, REP_A, nudge, "lead_snooze_1d")
        assert bot.lead(lead.id).follow_up_at == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    finally:
        bot.stop()


# --- /lead mine ---------------------------------------------------------------------------------


def test_lead_mine_lists_open_leads_with_their_outcome_select(bot: Bot) -> None:
    first = new_lead(bot)
    second = new_lead(bot, "Bob Roe, bob@roe.example, Roe & Co, warm")
    closed = new_lead(bot, "Cat Poe, cat@poe.example, Poe Inc")
    new_lead(bot, "Dan Other, dan@other.example", owner=REP_B)
    new_lead(bot, "Eve Open, eve@open.example", owner=None)
    choose(bot, REP_A, closed, "won")
    choose(bot, REP_A, second, "contacted")

    r = bot.sim.slash_command("mine", user_id=REP_A)
    body = r.json()
    assert body["response_type"] == "ephemeral"
    assert body["text"] == "Your open leads: 2"
    valid(body["blocks"])
    listing = json.dumps(body["blocks"])
    assert "Jane Doe" in listing and "Bob Roe" in listing and "Roe &amp; Co" in listing
    for absent in ("Cat Poe", "Dan Other", "Eve Open", "@example", "bob@roe"):
        assert absent not in listing
    assert "Contacted" in listing
    # Each open lead has its select; pick one right from the list.
    option = option_for(body["blocks"], "qualified", first.id)
    bot.sim.select(REP_A, "lead_outcome", {"selected_option": option}, channel_id="C0EVENTS01")
    bot.settle()
    assert bot.lead(first.id).stage == "qualified"
    assert "is now" in bot.slack.ephemerals(REP_A)[-1].text

    none = bot.sim.slash_command("mine", user_id=MARKETER).json()
    assert "no open leads" in none["text"] and "blocks" not in none

    # The App Home tab's "Your open leads" leaves out closed ones too.
    bot.sim.event({"type": "app_home_opened", "user": REP_A, "tab": "home"})
    bot.settle()
    home = json.dumps(bot.slack.home(REP_A))
    assert "Bob Roe" in home and "Cat Poe" not in home
