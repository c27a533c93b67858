"""Pure rendering: leads and digests in, Block Kit (validated by slack_sdk models) and text out.

The messages every lead and claim send (the card, the receipt, the claimer's and submitter's
DMs) are built as plain dicts instead, for speed; tests/test_render.py checks them against the
models.

Every piece of user text goes through `esc` (Slack's mrkdwn escaping of &, <, >), so a lead can
never ping @channel, a user group or a person, nor smuggle in a link; short values set inside
leadbot's own sentences and formatting go through `inline` too (one line, no *, _, ~ or ` that
Slack would read as formatting). Contact details (email, phone) appear only in `claimer_dm`,
which goes to the rep who owns the lead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.ids import MODAL_FIELDS, Action, input_action_id
from bot.ids import View as ViewId
from bot.outcomes import assignment, is_closed, owner_since, stage_label
from models import CLAIMED, Lead

if TYPE_CHECKING:
    from bot.leads import DigestFigures
    from bot.policy import Policy

CARD_NOTES_MAX = 500  # the card is a teaser; the full notes go to whoever claims the lead
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
HEADER_MAX = 150
# Slack cuts a message's `text` past this (api.slack.com/changelog/2018-04-truncating-really-
# long-messages); chat.update refuses it (msg_too_long).
MESSAGE_TEXT_MAX = 40_000
PRIORITY_EMOJI = {"hot": "🔥", "warm": "🌤️", "cold": "❄️"}
# How claimer_dm's first line ends, pointing at the details under it. Its notification text is
# that line without it (see claimer_dm).
REACH_THEM = "Here is how to reach them"


@dataclass(frozen=True)
class Message:
    """What to send: fallback text (notifications, screen readers) plus blocks."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


def esc(text: str | None) -> str:
    """Escape user text for Slack mrkdwn: only &, < and > are control characters there."""
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Slack has no escape for its formatting characters: in text set inside leadbot's own *bold*,
# _italics_ or `code` (or next to them on one line) they could end leadbot's formatting early or
# start some of their own, so they are shown as lookalikes Slack does not parse. An underscore
# inside a word (Acme_Corp, snake_case) is left alone: Slack never reads that one as italics.
_INERT = str.maketrans({"*": "\u2217", "~": "\u223c", "`": "\u02cb"})
_LOOSE_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
CARD_NOTES_LINES = 8  # the card's teaser of the notes: a few lines, not a tower of them


# What inert() would change: a formatting character, or whitespace other than single spaces.
# Most values have none, and one search is cheaper than the rewrite (cards render per claim).
_NOT_INERT = re.compile(r"[*~`_]|[^\S ]| {2}")


def inert(text: str | None) -> str:
    """User text for inside one of leadbot's lines, before escaping: one line (runs of
    whitespace, newlines included, become one space) and no formatting characters."""
    if not text:
        return ""
    if not _NOT_INERT.search(text) and text[0] != " " and text[-1] != " ":
        return text
    one_line = " ".join(text.split()).translate(_INERT)
    return _LOOSE_UNDERSCORE.sub("\u02cd", one_line)


def inline(text: str | None, limit: int = 200) -> str:
    """`inert`, cut to `limit` characters, escaped: a short value (a name, an event, a reason)
    as it is shown in mrkdwn."""
    return esc(shorten(inert(text), limit))


def paragraphs(text: str) -> str:
    """Free text (notes) shown as written, but without runs of blank lines: at most one blank
    line in a row, and none at either end."""
    if "\n" not in text and "\r" not in text:
        return text.strip()
    lines = [line.rstrip() for line in text.strip().splitlines()]
    kept = [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]
    return "\n".join(kept)


def shorten(text: str, limit: int) -> str:
    """Cut to `limit` characters with an ellipsis; always before escaping, never inside one."""
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def esc_short(text: str, limit: int) -> str:
    """Escaped, then cut to at most `limit` characters (never inside an &entity;): escaping
    can make text five times longer (& → &amp;), so `shorten` before `esc` bounds nothing."""
    escaped = esc(text)
    if len(escaped) <= limit:
        return escaped
    return escaped[: _outside_entity(escaped, max(0, limit - 1))].rstrip() + "…"


def _outside_entity(escaped: str, cut: int) -> int:
    """`cut`, or where the &entity; it would fall inside starts (entities are 5 or fewer)."""
    if cut >= len(escaped):
        return cut
    amp = escaped.rfind("&", max(0, cut - 5), cut)
    return amp if amp != -1 and ";" not in escaped[amp:cut] else cut


def slack_date(when: datetime, fmt: str = "{date_short_pretty} at {time}") -> str:
    """Slack shows each reader the time in their own zone; the fallback is UTC."""
    # Labelled UTC, so written in UTC whatever zone the instant was given in.
    fallback = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{fmt}|{fallback}>"


def mention(user_id: str) -> str:
    return f"<@{user_id}>"


def human_duration(delta: timedelta) -> str:
    """Rounded for people: 45s, 12m, 3h 5m, 2d 4h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def _blocks(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    # to_dict() runs slack_sdk's validators, so a block over Slack's limits fails here, in
    # tests, not as an invalid_blocks error from Slack in production.
    return [b.to_dict() for b in blocks]


# Plain-dict builders, each what the slack_sdk model named in its docstring writes with
# to_dict(). The models validate and introspect every object, ~30 µs a block: most of the
# rendering each lead and claim needs. What is built from these is checked against the models
# in tests/test_render.py, at its longest.


def plain_text(text: str, *, emoji: bool = True) -> dict[str, Any]:
    """`PlainTextObject(text=text)` as an element's label (`emoji=False`: as a header's)."""
    out: dict[str, Any] = {"type": "plain_text", "text": text}
    if emoji:
        out["emoji"] = True
    return out


def mrkdwn(text: str) -> dict[str, Any]:
    """`MarkdownTextObject(text=text)`."""
    return {"type": "mrkdwn", "text": text}


def section(text: str) -> dict[str, Any]:
    """`SectionBlock(text=MarkdownTextObject(text=text))`."""
    return {"type": "section", "text": mrkdwn(text)}


def context(text: str) -> dict[str, Any]:
    """`ContextBlock(elements=[MarkdownTextObject(text=text)])`."""
    return {"type": "context", "elements": [mrkdwn(text)]}


def button(
    text: str,
    action_id: str,
    value: str,
    *,
    style: str | None = None,
    confirm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`ButtonElement(text=…, action_id=…, value=…, style=…, confirm=ConfirmObject(…))`."""
    out: dict[str, Any] = {
        "type": "button",
        "action_id": str(action_id),
        "text": plain_text(text),
        "value": value,
    }
    if style:
        out["style"] = style
    if confirm:
        out["confirm"] = confirm
    return out


def confirm_dialog(title: str, text: str, yes: str, no: str) -> dict[str, Any]:
    """`ConfirmObject(title=…, text=…, confirm=…, deny=…)`."""
    return {
        "title": plain_text(title),
        "text": mrkdwn(text),
        "confirm": plain_text(yes),
        "deny": plain_text(no),
    }


def lead_label(lead: Lead, limit: int = 200) -> str:
    """`Jane Doe (Acme Corp)` escaped, for sentences."""
    label = f"*{inline(lead.name, limit)}*"
    if lead.company:
        label += f" ({inline(lead.company, limit)})"
    return label


def lead_ref(lead: Lead) -> str:
    """`#12`, linked to the card when its permalink is known."""
    return f"<{lead.card_permalink}|#{lead.id}>" if lead.card_permalink else f"#{lead.id}"


def card_value(lead: Lead) -> str:
    """Button value: lead id and the version the card was rendered from."""
    return f"{lead.id}:{lead.version}"


def _fields(lead: Lead) -> list[dict[str, Any]]:
    pairs = [
        ("Title", lead.title),
        ("Company", lead.company),
        ("Priority", f"{PRIORITY_EMOJI.get(lead.priority, '')} {lead.priority}".strip()),
        ("Event", lead.event),
        ("Persona", lead.persona),
        ("Territory", lead.territory),
    ]
    out = []
    for label, value in pairs:
        if value:
            out.append(mrkdwn(f"*{label}*\n{inline(value, FIELD_TEXT_MAX - 200)}"))
    return out


def lead_card(lead: Lead, now: datetime, *, note: str | None = None) -> Message:
    """The public claim card: no email or phone, ever. `note` is ready mrkdwn (already
    escaped), e.g. bot.duplicates' "possible duplicate of #12" line, shown under the header."""
    header = f"{PRIORITY_EMOJI.get(lead.priority, '')} {lead.name}".strip()
    blocks = [{"type": "header", "text": plain_text(shorten(header, HEADER_MAX), emoji=False)}]
    if note:
        blocks.append(section(note))
    fields = _fields(lead)
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if lead.notes:
        notes = esc(card_notes(lead.notes))
        blocks.append(section(f"*Notes*\n{notes}"))
    blocks.append(
        context(
            f"Lead #{lead.id} · submitted by {mention(lead.submitted_by)} "
            f"{slack_date(lead.submitted_at, '{ago}')}"
        )
    )
    if lead.status == CLAIMED and lead.owner_id and lead.claimed_at:
        waited = human_duration(lead.claimed_at - lead.submitted_at)
        given = assignment(lead)
        if given is None:
            owner = (
                f"✅ *Claimed by {mention(lead.owner_id)}* "
                f"{slack_date(lead.claimed_at)} ({waited} after submission)"
            )
        else:
            # Handed over by a manager: the claim time (and its speed) was someone else's.
            by, at = given
            owner = (
                f"✅ *Assigned to {mention(lead.owner_id)}* by {mention(by)} {slack_date(at)}\n"
                f"First claimed {slack_date(lead.claimed_at)}, {waited} after submission"
            )
        blocks.append(section(owner))
        # The stage line and the owner's actions (Record outcome, Reassign): bot/render_outcomes.
        from bot import render_outcomes

        blocks.extend(render_outcomes.card_stage_blocks(lead))
        release = release_button(lead)
        blocks.append(
            {
                "type": "actions",
                "block_id": "lead_owner_actions",
                "elements": render_outcomes.owner_elements(lead, release),
            }
        )
        got = "claimed by" if given is None else "assigned to"
        text = f"Lead #{lead.id}: {lead_label(lead)} {got} {mention(lead.owner_id)}"
        text += render_outcomes.card_text_suffix(lead)
    else:
        claim = button("Claim", Action.CLAIM, card_value(lead), style="primary")
        blocks.append({"type": "actions", "block_id": "lead_claim_actions", "elements": [claim]})
        event = f" from {inline(lead.event, 100)}" if lead.event else ""
        text = f"New {lead.priority} lead #{lead.id}: {lead_label(lead)}{event} — who takes it?"
    return Message(text=text, blocks=blocks)


def card_notes(notes: str) -> str:
    """The start of the notes, for the public card (not escaped yet): the first
    CARD_NOTES_LINES lines and CARD_NOTES_MAX characters, blank-line runs folded."""
    lines = paragraphs(notes).split("\n")
    text = "\n".join(lines[:CARD_NOTES_LINES])
    if len(lines) > CARD_NOTES_LINES:
        text = text.rstrip() + "\n…"
    return shorten(text, CARD_NOTES_MAX)


def release_button(lead: Lead) -> dict[str, Any]:
    """The owner's Release button, with its confirmation: on the full card and the short one."""
    return button(
        "Release",
        Action.RELEASE,
        card_value(lead),
        confirm=confirm_dialog(
            "Release this lead?",
            "It goes back to the channel for anyone to claim.",
            "Release",
            "Keep it",
        ),
    )


# The short card (`short_card`): each value cut to this, far inside any Block Kit limit.
SHORT_CARD_VALUE_MAX = 80
SHORT_CARD_BLOCK = "lead_short_card:"  # its first block's id, followed by the lead's id


def _short_line(lead: Lead) -> str:
    """`Lead #12 · Jane Doe (Acme Corp) · hot` as plain text: one line, each value cut short."""

    def one(value: str | None, limit: int = SHORT_CARD_VALUE_MAX) -> str:
        return shorten(" ".join((value or "").split()), limit)

    line = f"Lead #{lead.id} · {one(lead.name) or '(no name)'}"
    if lead.company and one(lead.company):
        line += f" ({one(lead.company)})"
    return f"{line} · {one(lead.priority, 32)}"


def short_card(lead: Lead) -> Message:
    """The claim card cut to what claiming needs, for when Slack refused the full one as
    malformed (a limit it changed, text nobody foresaw): the lead's number, name, company and
    priority as plain text, and the same Claim (or Release) button as the full card, so the
    click handlers work unchanged. No email or phone, as on every card."""
    line = _short_line(lead)
    blocks: list[dict[str, Any]] = [
        # The block_id names the lead: a short card posted without its metadata (when that is
        # what Slack refused) can still be found in the channel's history (bot.outbox).
        {
            "type": "section",
            "block_id": f"{SHORT_CARD_BLOCK}{lead.id}",
            "text": plain_text(line, emoji=False),
        },
    ]
    if lead.status == CLAIMED and lead.owner_id:
        stage = f" · {esc(stage_label(lead.stage))}" if lead.stage else ""
        blocks.append(section(f"✅ *Claimed by {mention(lead.owner_id)}*{stage}"))
        blocks.append(
            context(
                "⚠️ Slack would not show this lead's full card. The owner has every detail in "
                "a DM and records outcomes from `/lead mine`."
            )
        )
        if not is_closed(lead):
            blocks.append(
                {
                    "type": "actions",
                    "block_id": "lead_owner_actions",
                    "elements": [release_button(lead)],
                }
            )
        text = f"Lead #{lead.id}: {inline(lead.name, SHORT_CARD_VALUE_MAX)} claimed by "
        text += mention(lead.owner_id)
    else:
        blocks.append(
            context(
                "⚠️ Slack would not show this lead's full card. Claim it to get every detail "
                "(contact, notes) in a DM."
            )
        )
        claim = button("Claim", Action.CLAIM, card_value(lead), style="primary")
        blocks.append({"type": "actions", "block_id": "lead_claim_actions", "elements": [claim]})
        text = (
            f"New {inline(lead.priority, 32)} lead #{lead.id}: "
            f"{inline(lead.name, SHORT_CARD_VALUE_MAX)} — who takes it?"
        )
    return Message(text=text, blocks=blocks)


def short_card_dm(lead: Lead, channel: str, code: str, *, reposted: bool = False) -> Message:
    """The submitter's word that the lead reached sales, as a short card (see `short_card`);
    `reposted`: a card posted again, after someone deleted the one before."""
    where = channel_mention(channel)
    reached = f"reached {where}"
    if reposted:
        reached = f"was posted again in {where} (its card was deleted)"
    text = (
        f"⚠️ Lead #{lead.id} {lead_label(lead, SHORT_CARD_VALUE_MAX)} {reached}, "
        "but as a short card: Slack refused the full one "
        f"(`{inline(code, 60)}`). It can be claimed as usual, and whoever claims it gets every "
        "detail in a DM. Worth telling your leadbot admin."
    )
    return Message(text=text)


def channel_mention(channel: str) -> str:
    """`<#C…>` for a channel id (Slack shows its name), a policy's `#name` as written."""
    if channel[:1] in ("C", "G") and channel.isalnum():
        return f"<#{channel}>"
    return esc(channel)


def receipt(lead: Lead, channel: str, *, note: str | None = None) -> Message:
    """`note`: ready (escaped) mrkdwn added as its own paragraph, e.g. a duplicate warning."""
    where = channel_mention(channel)
    text = (
        f"✅ Lead #{lead.id} {lead_label(lead)} is in. Its card goes to {where}; "
        "you'll get a DM when a rep claims it."
    )
    blocks = [section(text)]
    if note:
        text = f"{text}\n{note}"
        blocks.append(section(note))
    return Message(text=text, blocks=blocks)


def claimer_dm(lead: Lead, intro: str | None = None) -> Message:
    """Contact details and full notes, privately, for the rep who owns the lead. `intro`
    (ready mrkdwn) replaces the first line, e.g. for a lead a manager reassigned; the
    notification text is that line up to its REACH_THEM ("… assigned you lead #7 Jane Doe.")."""
    label = lead_label(lead)
    lines = [intro or f"You claimed lead #{lead.id} {label}. {REACH_THEM}:"]
    headline = f"Lead #{lead.id} {label} is yours"
    if intro:
        # The last one: a lead's name could hold those words too.
        headline = intro.rsplit(f" {REACH_THEM}", 1)[0]
    details = [
        ("Name", lead.name),
        ("Title", lead.title),
        ("Company", lead.company),
        ("Email", lead.email),
        ("Phone", lead.phone),
        ("Event", lead.event),
        ("Persona", lead.persona),
        ("Territory", lead.territory),
        ("Priority", lead.priority),
    ]
    # Nine lines of at most 300 characters as sent: within a section's 3,000 however much of
    # the text needs escaping.
    # Email and phone as typed (the rep copies them); the rest as one inert line each.
    detail_text = "\n".join(
        f"*{k}:* {esc_short(v if k in ('Email', 'Phone') else inert(v), 300)}"
        for k, v in details
        if v
    )
    blocks = [section(lines[0]), section(detail_text)]
    if lead.notes:
        # Full notes (up to 10,000 characters) split over sections of Slack's 3,000 limit.
        escaped = esc(paragraphs(lead.notes))
        chunk = SECTION_TEXT_MAX - 100
        parts = _split(escaped, chunk)
        for i, part in enumerate(parts):
            head = "*Notes*\n" if i == 0 else ""
            blocks.append(section(head + part))
    blocks.append(
        context(f"Submitted by {mention(lead.submitted_by)} {slack_date(lead.submitted_at)}")
    )
    return Message(text=headline, blocks=blocks)


def claimer_dm_plain(
    lead: Lead, assigned_by: str | None = None, corrected_by: str | None = None
) -> Message:
    """claimer_dm as one short text without blocks, for when Slack refused that DM as
    malformed (bot.outbox's `plain_if_refused`): the owner must still learn how to reach them.
    `assigned_by`: the manager who gave them the lead, for an owner who did not claim it;
    `corrected_by`: who corrected the lead's details, for the DM that brings the new ones."""
    details = [
        ("Name", lead.name),
        ("Company", lead.company),
        ("Email", lead.email),
        ("Phone", lead.phone),
        ("Notes", lead.notes),
    ]
    # Each on one line; the notes as long as a section would show them, the rest as the card.
    shown = "\n".join(
        f"{k}: {esc_short(' '.join(v.split()), 2900 if k == 'Notes' else 300)}"
        for k, v in details
        if v
    )
    if corrected_by:
        what = f"{mention(corrected_by)} corrected your lead #{lead.id} {lead_label(lead)}"
    elif assigned_by:
        what = f"{mention(assigned_by)} assigned you lead #{lead.id} {lead_label(lead)}"
    else:
        what = f"You claimed lead #{lead.id} {lead_label(lead)}"
    return Message(
        text=f"{what}; Slack would not show the full message, so here it is in short:\n{shown}"
    )


def _split(text: str, size: int) -> list[str]:
    """Split escaped text into chunks of at most `size`, never inside an &entity;."""
    parts = []
    while text:
        cut = _outside_entity(text, min(size, len(text)))
        parts.append(text[:cut])
        text = text[cut:]
    return parts


def submitter_claimed_dm(lead: Lead) -> Message:
    assert lead.owner_id and lead.claimed_at
    waited = human_duration(lead.claimed_at - lead.submitted_at)
    text = (
        f"🙌 {mention(lead.owner_id)} claimed your lead #{lead.id} {lead_label(lead)} "
        f"— {waited} after you submitted it."
    )
    return Message(text=text, blocks=[section(text)])


def already_claimed(lead: Lead) -> str:
    given = assignment(lead)
    if lead.owner_id and given is not None:
        return (
            f"Too late — lead #{lead.id} {lead_label(lead)} is with {mention(lead.owner_id)}, "
            f"assigned by {mention(given[0])} {slack_date(given[1])}."
        )
    if lead.owner_id and lead.claimed_at:
        return (
            f"Too late — lead #{lead.id} {lead_label(lead)} was claimed by "
            f"{mention(lead.owner_id)} {slack_date(lead.claimed_at)}."
        )
    return f"Lead #{lead.id} is not open for claiming any more."


def reminder(lead: Lead, waited: timedelta, number: int) -> Message:
    text = (
        f"⏰ Reminder {number}: lead #{lead.id} {lead_label(lead)} has waited "
        f"{human_duration(waited)} without an owner. Can you take it? Click *Claim* on the card."
    )
    return Message(text=text)


def escalation_thread_note(lead: Lead, reminders: int, *, told_managers: bool = True) -> Message:
    if told_managers:
        return Message(
            text=f"📣 Still unclaimed after {reminders} reminders — the managers have been told."
        )
    return Message(
        text=f"📣 Still unclaimed after {reminders} reminders. No managers are set up to tell "
        "(MANAGER_IDS) — can someone take it?"
    )


def escalation_dm(lead: Lead, waited: timedelta, reminders: int, permalink: str | None) -> Message:
    link = f"<{permalink}|Open the card>" if permalink else "See the leads channel"
    text = (
        f"📣 Lead #{lead.id} {lead_label(lead)} ({esc(lead.priority)}"
        f"{', ' + inline(lead.event, 100) if lead.event else ''}) is still unclaimed "
        f"after {human_duration(waited)} and {reminders} reminders. {link} and assign someone."
    )
    return Message(text=text, blocks=_blocks([SectionBlock(text=MarkdownTextObject(text=text))]))


def current_state(lead: Lead) -> str:
    """One sentence on where a lead stands now, for someone who clicked an old card."""
    if is_closed(lead):
        return f"Lead #{lead.id} is closed ({stage_label(lead.stage)}); the card now shows that."
    since = owner_since(lead)
    if lead.status == CLAIMED and lead.owner_id and since:
        got = "assigned to" if assignment(lead) else "claimed by"
        return (
            f"Lead #{lead.id} is {got} {mention(lead.owner_id)} since "
            f"{slack_date(since)}; the card now shows that."
        )
    return f"Lead #{lead.id} is open to claim; the card now shows that."


def release_refused(lead: Lead) -> str:
    owner = mention(lead.owner_id) if lead.owner_id else "the owner"
    return f"Only {owner} or a manager can release lead #{lead.id}."


def released_note(lead: Lead, by: str, previous: str | None = None) -> Message:
    """The card's thread: who released it, and whose it was when someone else did."""
    whose = f" from {mention(previous)}" if previous and previous != by else ""
    return Message(
        text=f"↩️ {mention(by)} released lead #{lead.id}{whose}; it is open to claim again."
    )


def released_owner_dm(lead: Lead, by: str) -> Message:
    """To the owner whose lead someone else (a manager) released: it is not theirs any more."""
    text = (
        f"↩️ {mention(by)} released your lead #{lead.id} {lead_label(lead)}: it is no longer "
        "yours, and back in the channel for anyone to claim. Nothing more to do on it."
    )
    return Message(text=text, blocks=[section(text)])


# --- corrections (`/lead edit N`) ---------------------------------------------------------------


def changed_fields(fields: Sequence[str]) -> str:
    """`email, phone and notes`: which fields an edit changed, never their values."""
    names = list(fields)
    return "".join(names) if len(names) < 2 else f"{', '.join(names[:-1])} and {names[-1]}"


def edit_saved(lead: Lead, fields: Sequence[str]) -> Message:
    """To whoever corrected the lead, privately: what changed and who else hears of it."""
    text = f"✅ Lead #{lead.id} {lead_label(lead)} is corrected: {changed_fields(fields)}."
    if lead.card_ts and set(fields) - {"email", "phone"}:  # never on the card (lead_card)
        text += " Its card shows the change."
    if lead.owner_id:
        text += f" {mention(lead.owner_id)} gets the corrected details in a DM."
    return Message(text=text, blocks=[section(text)])


def edited_owner_intro(lead: Lead, by: str, fields: Sequence[str]) -> str:
    """The first line of the owner's new claimer_dm after a correction (its notification text
    up to REACH_THEM: that it was corrected, not that the lead is theirs)."""
    return (
        f"✏️ {mention(by)} corrected lead #{lead.id} {lead_label(lead)} "
        f"({changed_fields(fields)}). {REACH_THEM} now:"
    )


def edited_submitter_dm(lead: Lead, by: str, fields: Sequence[str]) -> Message:
    """To the submitter when someone else (a manager) corrected their lead: which fields."""
    changed = changed_fields(fields)
    text = f"✏️ {mention(by)} corrected your lead #{lead.id} {lead_label(lead)}: {changed}."
    return Message(text=text, blocks=[section(text)])


# --- the new-lead modal -------------------------------------------------------------------------

_MODAL_INPUTS: list[tuple[str, str, str, bool, bool]] = [
    # field, label, placeholder, optional, multiline
    ("name", "Name", "Jane Doe", False, False),
    ("email", "Email", "jane@acme.example", True, False),
    ("phone", "Phone", "+1 415 555 0100", True, False),
    ("company", "Company", "Acme Corp", True, False),
    ("title", "Title", "VP Engineering", True, False),
    ("event", "Event", "SaaStr2026", True, False),
    ("territory", "Territory", "EMEA", True, False),
    ("persona", "Persona", "IT leader", True, False),
    ("notes", "Notes", "What did they ask for? What's the next step?", True, True),
]


def _input_max(name: str) -> int:
    """The most characters the form's input for `name` takes (Slack refuses a longer
    initial value)."""
    return 3000 if name == "notes" else 254 if name == "email" else 200


def kept_out_of_form(lead: Lead) -> tuple[str, ...]:
    """Fields of `lead` too long for the form's inputs (notes typed inline take 10,000
    characters, the form 3,000): the edit form leaves them out, and saving keeps them."""
    return tuple(
        name for name, *_ in _MODAL_INPUTS if len(getattr(lead, name) or "") > _input_max(name)
    )


def _no_longer_listed(value: str) -> str:
    return f"Was “{shorten(value, 60)}”, which the handoff policy no longer lists."


def lead_modal(
    private_metadata: str = "", policy: Policy | None = None, *, lead: Lead | None = None
) -> dict[str, Any]:
    """The `/lead` modal; block_id of each input is the field name (errors map back 1:1).

    Priority is a select of the policy's priorities; persona is a select of its personas (with
    their descriptions) when the policy lists any, free text otherwise.

    With `lead`, the same form filled in with its values, to correct it (`/lead edit N`): a
    value the policy no longer lists is not chosen (the hint says what it was), and a field
    too long for its input is left out with a line saying it is kept (`kept_out_of_form`).
    """
    if policy is None:
        from bot.policy import default_policy

        policy = default_policy({})
    kept = kept_out_of_form(lead) if lead is not None else ()
    stored: dict[str, str] = {}
    if lead is not None:
        stored = {name: value for name in MODAL_FIELDS if (value := getattr(lead, name))}
    blocks: list[Block] = []
    for name, label, placeholder, optional, multiline in _MODAL_INPUTS:
        if name in kept:
            size = len(getattr(lead, name) or "")
            blocks.append(
                ContextBlock(
                    elements=[
                        MarkdownTextObject(
                            text=f"*{label}:* {size:,} characters, more than this form holds; "
                            "they are kept as they are."
                        )
                    ]
                )
            )
            continue
        if name == "persona" and policy.personas:
            options = [
                Option(
                    text=shorten(p.name, 75),
                    value=p.key,
                    description=shorten(p.description, 75) or None,
                )
                for p in policy.personas
            ]
            chosen = next((o for o in options if o.value == stored.get("persona")), None)
            hint = None
            if "persona" in stored and chosen is None:
                hint = _no_longer_listed(stored["persona"])
            blocks.append(
                InputBlock(
                    block_id="persona",
                    label="Persona",
                    optional=True,
                    hint=hint,
                    element=StaticSelectElement(
                        action_id=input_action_id("persona"),
                        placeholder="Who are they?",
                        options=options,
                        initial_option=chosen,
                    ),
                )
            )
            continue
        blocks.append(
            InputBlock(
                block_id=name,
                label=label,
                optional=optional,
                hint="Email or phone: at least one." if name == "email" else None,
                element=PlainTextInputElement(
                    action_id=input_action_id(name),
                    placeholder=placeholder,
                    multiline=multiline,
                    max_length=_input_max(name),
                    initial_value=stored.get(name),
                ),
            )
        )
        if name == "title":
            options = [
                Option(
                    text=key,
                    value=key,
                    description=shorten(rule.means, 75) or None,
                )
                for key, rule in policy.priorities.items()
            ]
            hint = None
            if lead is None:
                initial = next(
                    (o for o in options if o.value == policy.default_priority), options[0]
                )
            else:
                # A priority the policy has dropped is not swapped for another: they choose.
                initial = next((o for o in options if o.value == lead.priority), None)
                if initial is None:
                    hint = _no_longer_listed(lead.priority)
            blocks.append(
                InputBlock(
                    block_id="priority",
                    label="Priority",
                    hint=hint,
                    element=StaticSelectElement(
                        action_id=input_action_id("priority"),
                        options=options,
                        initial_option=initial,
                    ),
                )
            )
    view = View(
        type="modal",
        callback_id=ViewId.NEW_LEAD if lead is None else ViewId.EDIT_LEAD,
        title="New lead" if lead is None else f"Edit lead #{lead.id}",
        submit="Submit" if lead is None else "Save",
        close="Cancel",
        private_metadata=private_metadata,
        blocks=blocks,
    )
    return view.to_dict()


def modal_values(state_values: dict[str, Any]) -> dict[str, str | None]:
    """Read the modal's state.values back into {field: value}; tolerant of missing parts."""
    out: dict[str, str | None] = {}
    for block_id, actions in (state_values or {}).items():
        if not isinstance(actions, dict):
            continue
        element = actions.get(input_action_id(block_id))
        if not isinstance(element, dict):
            continue
        if element.get("type") == "static_select":
            selected = element.get("selected_option") or {}
            out[block_id] = selected.get("value") if isinstance(selected, dict) else None
        else:
            value = element.get("value")
            out[block_id] = value if isinstance(value, str) else None
    return out


# --- the managers' digest -----------------------------------------------------------------------


def _lines_within(lines: list[str], limit: int, more: str = "…and {n} more") -> str:
    """Join whole lines up to `limit` characters, saying how many did not fit (`more`, with
    `{n}`, must be under 100 characters)."""
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > limit - 100:
            kept.append(more.format(n=len(lines) - len(kept)))
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept) or "none"


def text_within(text: str, limit: int = MESSAGE_TEXT_MAX, more: str = "…and {n} more lines") -> str:
    """A message's `text` cut to whole lines within `limit` (Slack cuts text past 40,000
    characters wherever it falls), ending with how many lines did not fit."""
    return text if len(text) <= limit else _lines_within(text.split("\n"), limit, more)


DAY = timedelta(hours=24)


def digest_period(window: timedelta) -> str:
    """What a digest's figures cover: the last 24 hours, or, on the days clocks change or after
    a day without a digest, the time since the previous one (jobs/digest.py)."""
    if window == DAY:
        return "the last 24 hours"
    return f"the {human_duration(window)} since the last digest"


def digest_message(d: DigestFigures, now: datetime) -> Message:
    speed = "no claims"
    if d.median_to_claim is not None and d.slowest_to_claim is not None:
        speed = (
            f"median *{human_duration(d.median_to_claim)}*, "
            f"slowest *{human_duration(d.slowest_to_claim)}*"
        )
    period = (
        "Last 24 hours"
        if d.window == DAY
        else f"Since the last digest ({human_duration(d.window)})"
    )
    summary = f"*{period}:* {d.submitted} submitted · {d.claimed} claimed\n*Time to claim:* {speed}"
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text="☀️ Lead digest")),
        SectionBlock(text=MarkdownTextObject(text=summary)),
    ]
    reps = _lines_within([f"{mention(u)}: {n}" for u, n in d.claims_per_rep], FIELD_TEXT_MAX - 50)
    events = _lines_within(
        [f"{inline(e, 60) if e else '(no event)'}: {n}" for e, n in d.leads_per_event],
        FIELD_TEXT_MAX - 50,
    )
    blocks.append(
        SectionBlock(
            fields=[
                MarkdownTextObject(text=f"*Claims per rep*\n{reps}"),
                MarkdownTextObject(text=f"*Leads per event*\n{events}"),
            ]
        )
    )
    blocks.append(DividerBlock())
    if d.backlog_total:
        lines: list[str] = []
        size = 0
        for lead in d.backlog:
            waited = human_duration(now - lead.submitted_at)
            label = f"{lead_ref(lead)} {lead_label(lead, 60)}"
            line = f"• {label} — {esc(lead.priority)}, waiting {waited}"
            # Whole lines only: cutting one could break a link or an escape.
            if size + len(line) > SECTION_TEXT_MAX - 200:
                break
            lines.append(line)
            size += len(line) + 1
        more = d.backlog_total - len(lines)
        if more > 0:
            lines.append(f"…and {more} more")
        backlog = f"*Unclaimed backlog ({d.backlog_total}), oldest first*\n" + "\n".join(lines)
    else:
        backlog = "*Unclaimed backlog:* none 🎉"
    blocks.append(SectionBlock(text=MarkdownTextObject(text=backlog)))
    # The backlog is every unclaimed lead, not only those of the period.
    text = (
        f"Lead digest: {d.submitted} submitted, {d.claimed} claimed in {digest_period(d.window)}; "
        f"{d.backlog_total} unclaimed"
    )
    return Message(text=text, blocks=_blocks(blocks))


def forgotten_card(lead_id: int) -> Message:
    """What a forgotten lead's card, and each message the bot sent about it, becomes: nothing
    about the person, and no buttons."""
    text = "This lead was removed at the person's request."
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=f"🗑️ {text}")),
        # The id alone lets a rep match it to their notes; it says nothing about the person.
        ContextBlock(elements=[MarkdownTextObject(text=f"Lead #{lead_id}")]),
    ]
    return Message(text=text, blocks=_blocks(blocks))
