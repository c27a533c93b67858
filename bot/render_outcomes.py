"""Pure rendering for the lifecycle after the claim: the card's stage and owner actions, the
disqualify and reassign modals, follow-up nudges, `/lead mine`, and the DMs each change sends.

Same rules as bot/render.py: Block Kit through slack_sdk models (validated), except the parts
of the claim card and its outcome select, built as plain dicts like the card (checked against
the models in tests/test_render.py); fallback text on every message, user text escaped with
`esc`. Outcome selects carry the lead in each option's
value: `id:version:stage` on the card (so a stale card is recognised), `id:stage` elsewhere
(a DM or an ephemeral list shows no state that could be out of date).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
    UserSelectElement,
)
from slack_sdk.models.views import View

from bot import ids
from bot.ids import Action, input_action_id
from bot.outcomes import (
    DISQUALIFIED,
    NOTE_MAX,
    STAGES,
    assignment,
    is_closed,
    nudge_key,
    owner_since,
    stage_label,
)
from bot.render import (
    REACH_THEM,
    Message,
    button,
    card_value,
    esc,
    human_duration,
    inline,
    lead_label,
    mention,
    paragraphs,
    plain_text,
    section,
    shorten,
    slack_date,
)
from models import CLAIMED, Lead

STAGE_EMOJI = {
    "contacted": "📞",
    "meeting": "📅",
    "qualified": "✅",
    "disqualified": "🚫",
    "won": "🏆",
    "lost": "🥀",
}
MINE_MAX = 20  # leads listed by `/lead mine`: one section each, well inside 50 blocks


def _blocks(blocks: list[Block]) -> list[dict[str, Any]]:
    # to_dict() runs slack_sdk's validators: a block over Slack's limits fails in tests.
    return [b.to_dict() for b in blocks]


# --- option values ------------------------------------------------------------------------------


def outcome_value(lead: Lead, stage: str, *, versioned: bool) -> str:
    return f"{lead.id}:{lead.version}:{stage}" if versioned else f"{lead.id}:{stage}"


def parse_outcome_value(value: Any) -> tuple[int, int | None, str] | None:
    """`id:version:stage` or `id:stage` → (id, version or None, stage); None when malformed."""
    if not isinstance(value, str) or len(value) > 60:
        return None
    parts = value.split(":")
    if len(parts) == 2:
        head, tail, stage = parts[0], "", parts[1]
    elif len(parts) == 3:
        head, tail, stage = parts
    else:
        return None
    if not ids.is_digits(head) or len(head) > 12:
        return None
    if tail and (not ids.is_digits(tail) or len(tail) > 9):
        return None
    if stage not in STAGES:
        return None
    return int(head), int(tail) if tail else None, stage


def snooze_value(lead: Lead) -> str:
    """A nudge's Snooze button value: `id:version:misses` (outcomes.nudge_key)."""
    version, misses = nudge_key(lead)
    return f"{lead.id}:{version}:{misses}"


def parse_snooze_value(value: Any) -> tuple[int, tuple[int, int] | None] | None:
    """`id:version:misses` → (id, (version, misses)); a bare `id` (nudges sent before the key)
    → (id, None); None when malformed."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    parts = value.split(":")
    if len(parts) not in (1, 3) or not all(ids.is_digits(p) and len(p) <= 12 for p in parts):
        return None
    if len(parts) == 1:
        return int(parts[0]), None
    return int(parts[0]), (int(parts[1]), int(parts[2]))


def outcome_select(lead: Lead, *, versioned: bool) -> dict[str, Any]:
    """ "Record outcome": every stage but the current one (choosing it again would do nothing).
    A plain dict (see bot.render's builders): it is on every claimed card."""
    return {
        "type": "static_select",
        "action_id": str(Action.OUTCOME),
        "placeholder": plain_text("Record outcome"),
        "options": [
            {
                "text": plain_text(f"{STAGE_EMOJI[stage]} {label}"),
                "value": outcome_value(lead, stage, versioned=versioned),
            }
            for stage, label in STAGES.items()
            if stage != lead.stage
        ],
    }


# --- the claim card -------------------------------------------------------------------------------


def stage_text(lead: Lead) -> str:
    """`🚫 Disqualified — No budget` (escaped), or "" before the first outcome."""
    if not lead.stage:
        return ""
    text = f"{STAGE_EMOJI.get(lead.stage, '')} {esc(stage_label(lead.stage))}".strip()
    if lead.stage == DISQUALIFIED and lead.outcome_reason:
        text += f" — {inline(lead.outcome_reason, 200)}"
    return text


def card_stage_blocks(lead: Lead) -> list[dict[str, Any]]:
    """The card's stage line, under "Claimed by"; nothing before the first outcome."""
    if not lead.stage:
        return []
    when = f" {slack_date(lead.stage_at)}" if lead.stage_at else ""
    closed = " · closed" if is_closed(lead) else ""
    return [section(f"*Stage:* {stage_text(lead)}{when}{closed}")]


def card_text_suffix(lead: Lead) -> str:
    """For the card's fallback text: ` · Qualified`."""
    return f" · {esc(stage_label(lead.stage))}" if lead.stage else ""


def owner_elements(lead: Lead, release: dict[str, Any]) -> list[dict[str, Any]]:
    """The claimed card's actions: Record outcome, Reassign, Release; a closed lead keeps only
    the select (to correct a mistake), since nothing is left to hand over or give back."""
    select = outcome_select(lead, versioned=True)
    if is_closed(lead):
        return [select]
    return [select, button("Reassign", Action.REASSIGN, card_value(lead)), release]


# --- modals ---------------------------------------------------------------------------------------


def modal_metadata(lead: Lead, *, versioned: bool, channel: str | None) -> str:
    return json.dumps(
        {"lead_id": lead.id, "version": lead.version if versioned else None, "channel": channel}
    )


def disqualify_modal(lead: Lead, reasons: tuple[str, ...], private_metadata: str) -> dict[str, Any]:
    """Why the lead is disqualified: one of the policy's reasons, and an optional note."""
    view = View(
        type="modal",
        callback_id=ids.View.DISQUALIFY,
        title="Disqualify lead",
        submit="Disqualify",
        close="Cancel",
        private_metadata=private_metadata,
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"Lead #{lead.id} {lead_label(lead)}. The reason goes back to "
                    f"{mention(lead.submitted_by)}, who submitted it."
                )
            ),
            InputBlock(
                block_id=ids.DISQUALIFY_REASON,
                label="Reason",
                element=StaticSelectElement(
                    action_id=input_action_id(ids.DISQUALIFY_REASON),
                    placeholder="Choose a reason",
                    options=[Option(text=shorten(r, 75), value=r) for r in reasons],
                ),
            ),
            InputBlock(
                block_id=ids.DISQUALIFY_NOTE,
                label="Note",
                optional=True,
                element=PlainTextInputElement(
                    action_id=input_action_id(ids.DISQUALIFY_NOTE),
                    placeholder="Anything marketing should know?",
                    multiline=True,
                    max_length=NOTE_MAX,
                ),
            ),
        ],
    )
    return view.to_dict()


def reassign_modal(lead: Lead, private_metadata: str) -> dict[str, Any]:
    owner = mention(lead.owner_id) if lead.owner_id else "nobody"
    view = View(
        type="modal",
        callback_id=ids.View.REASSIGN,
        title="Reassign lead",
        submit="Reassign",
        close="Cancel",
        private_metadata=private_metadata,
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"Lead #{lead.id} {lead_label(lead)} is owned by {owner}. "
                    "The new owner gets the contact details by DM."
                )
            ),
            InputBlock(
                block_id=ids.REASSIGN_OWNER,
                label="New owner",
                element=UserSelectElement(
                    action_id=input_action_id(ids.REASSIGN_OWNER), placeholder="Choose a rep"
                ),
            ),
        ],
    )
    return view.to_dict()


def view_input(values: dict[str, Any], block_id: str) -> str | None:
    """One input's value from a view's state.values (select, user select or text)."""
    block = values.get(block_id)
    element = block.get(input_action_id(block_id)) if isinstance(block, dict) else None
    if not isinstance(element, dict):
        return None
    if "selected_option" in element:
        selected = element.get("selected_option")
        value = selected.get("value") if isinstance(selected, dict) else None
    elif "selected_user" in element:
        value = element.get("selected_user")
    else:
        value = element.get("value")
    return value if isinstance(value, str) and value.strip() else None


# --- messages -------------------------------------------------------------------------------------


def _where(lead: Lead) -> str:
    """`*Jane Doe* (SaaStr2026)`: marketing knows its leads by event; the company otherwise."""
    if lead.event:
        return f"*{inline(lead.name, 200)}* ({inline(lead.event, 100)})"
    return lead_label(lead)


def _section(text: str) -> Message:
    return Message(text=text, blocks=_blocks([SectionBlock(text=MarkdownTextObject(text=text))]))


def stage_dm(lead: Lead, actor: str, note: str | None = None) -> Message:
    """To the submitter, at every stage change: where their lead stands now, and who said so."""
    stage = stage_label(lead.stage)
    reason = ""
    if lead.stage == DISQUALIFIED and lead.outcome_reason:
        reason = f" ({inline(lead.outcome_reason, 200)})"
    emoji = STAGE_EMOJI.get(lead.stage or "", "")
    text = f"{emoji} {_where(lead)} is now *{esc(stage)}*{reason} — {mention(actor)}".strip()
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=text))]
    if note:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(text="> " + esc(paragraphs(note)).replace("\n", "\n> "))
            )
        )
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"Lead #{lead.id}")]))
    return Message(text=text, blocks=_blocks(blocks))


def new_owner_intro(lead: Lead, by: str) -> str:
    return f"{mention(by)} assigned you lead #{lead.id} {lead_label(lead)}. {REACH_THEM}:"


def old_owner_note(lead: Lead, by: str) -> Message:
    new = mention(lead.owner_id) if lead.owner_id else "someone else"
    return _section(
        f"🔀 {mention(by)} reassigned lead #{lead.id} {lead_label(lead)} to {new}. "
        "Nothing more to do on it."
    )


def reassigned_thread_note(lead: Lead, by: str, previous: str | None) -> Message:
    new = mention(lead.owner_id) if lead.owner_id else "someone else"
    was = f" from {mention(previous)}" if previous else ""
    return Message(text=f"🔀 {mention(by)} reassigned lead #{lead.id}{was} to {new}.")


def new_owner_not_told(lead: Lead) -> Message:
    """To the manager who reassigned, if Slack will not deliver the new owner's DM (an app's
    user, someone deactivated): the lead would otherwise sit with someone who never hears."""
    new = mention(lead.owner_id) if lead.owner_id else "The new owner"
    return Message(
        text=f"⚠️ {new} could not be told about lead #{lead.id} {lead_label(lead)}: Slack would "
        "not deliver the message. If they are an app or have left, reassign the lead to a person."
    )


def follow_up_nudge(lead: Lead, now: datetime, *, managers_told: bool = False) -> Message:
    """To the owner: no outcome yet. Record one right here, or snooze."""
    since = lead.stage_at if lead.stage and lead.stage_at else owner_since(lead) or now
    if lead.stage:
        where = f"*{esc(stage_label(lead.stage))}* since"
    else:
        where = "assigned to you" if assignment(lead) else "claimed"
    text = (
        f"⏰ Lead #{lead.id} {lead_label(lead)}: {where} {human_duration(now - since)} ago and "
        "nothing new recorded. How is it going?"
    )
    if managers_told:
        text += " The managers have been told it is waiting."
    if lead.card_permalink:
        text += f" <{lead.card_permalink}|Open the card>"
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=text)),
        ActionsBlock(
            block_id=f"lead_follow_up_{lead.id}",
            elements=[
                outcome_select(lead, versioned=False),
                ButtonElement(
                    text="Snooze 1 hour", action_id=Action.SNOOZE_HOUR, value=snooze_value(lead)
                ),
                ButtonElement(
                    text="Snooze 1 day", action_id=Action.SNOOZE_DAY, value=snooze_value(lead)
                ),
            ],
        ),
    ]
    return Message(text=text, blocks=_blocks(blocks))


def follow_up_escalation(lead: Lead, now: datetime, misses: int) -> Message:
    """To the managers, at the second miss: who holds the lead, how long, where the card is."""
    owner = mention(lead.owner_id) if lead.owner_id else "Nobody"
    held = human_duration(now - (owner_since(lead) or now))
    state = f"is at *{esc(stage_label(lead.stage))}*" if lead.stage else "has no outcome yet"
    link = f"<{lead.card_permalink}|Open the card>" if lead.card_permalink else "See its card"
    text = (
        f"📣 Lead #{lead.id} {lead_label(lead)} ({esc(lead.priority)}) {state}: {owner} has held "
        f"it {held} and missed {misses - 1} follow-up reminder{'s' if misses > 2 else ''}. "
        f"{link} to reassign it if needed."
    )
    return _section(text)


def snoozed(lead: Lead, until: datetime) -> str:
    return (
        f"😴 Snoozed: I'll ask about lead #{lead.id} {lead_label(lead)} again {slack_date(until)}."
    )


def snooze_out_of_date(lead: Lead) -> str:
    """For a Snooze on a nudge that is no longer the latest word on the lead."""
    nxt = f"the next one is {slack_date(lead.follow_up_at)}" if lead.follow_up_at else "none is due"
    stage = f" It is at {stage_text(lead)} now." if lead.stage else ""
    return (
        f"That reminder about lead #{lead.id} {lead_label(lead)} is out of date: {nxt}; "
        f"nothing changed.{stage}"
    )


def recorded(lead: Lead) -> str:
    return f"Lead #{lead.id} {lead_label(lead)} is now {stage_text(lead)}."


def current_state(lead: Lead) -> str:
    """Where a lead stands, for someone who acted on an out-of-date card or message."""
    if lead.status == CLAIMED and lead.owner_id:
        stage = stage_text(lead) or "no outcome yet"
        return (
            f"Lead #{lead.id} is with {mention(lead.owner_id)} ({stage}); the card now shows that."
        )
    return f"Lead #{lead.id} is open to claim; the card now shows that."


def outcome_refused(lead: Lead) -> str:
    owner = mention(lead.owner_id) if lead.owner_id else "its owner"
    return f"Only {owner} or a manager can record outcomes for lead #{lead.id}; nothing changed."


def snooze_refused(lead: Lead) -> str:
    owner = mention(lead.owner_id) if lead.owner_id else "its owner"
    return f"Only {owner} or a manager can snooze lead #{lead.id}; nothing changed."


def reassign_refused() -> str:
    return "Only managers (MANAGER_IDS) can reassign leads; nothing changed."


def mine(leads: list[Lead], total: int, now: datetime) -> dict[str, Any]:
    """`/lead mine`: the caller's open leads, each with its outcome select."""
    if not leads:
        return {"text": "You have no open leads: nothing claimed is waiting for an outcome. 🎉"}
    head = f"*Your open leads ({total})*, oldest claim first:"
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=head))]
    for lead in leads[:MINE_MAX]:
        link = f"<{lead.card_permalink}|#{lead.id}>" if lead.card_permalink else f"#{lead.id}"
        stage = stage_text(lead) or "no outcome yet"
        held = human_duration(now - (owner_since(lead) or now))
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"{link} {lead_label(lead, 80)} — {esc(lead.priority)}, {stage}, "
                    f"yours for {held}"
                ),
                accessory=outcome_select(lead, versioned=False),
            )
        )
    if total > len(leads[:MINE_MAX]):
        more = total - len(leads[:MINE_MAX])
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"…and {more} more")]))
    return {"text": f"Your open leads: {total}", "blocks": _blocks(blocks)}
