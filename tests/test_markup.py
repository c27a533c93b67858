"""Injection audit: text people type (leads, notes, a policy file, `/lead report`'s event) never
acts as Slack markup in anything leadbot sends.

A workday with hostile text in every field is driven through the real app (slash commands,
the modal, clicks, the jobs on the fake clock); then every message, ephemeral, response and
view leadbot sent is scanned: mrkdwn must show the text literally (only &, < and > escaped,
once), plain_text must carry it unescaped, and leadbot's own *bold*, _italics_ and `code`
must not be opened or closed by it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot import render
from tests.conftest import LEADS_CHANNEL, MANAGER, MARKETER, REP_A, REP_B, Bot, start_bot
from tests.test_handoff import modal_state
from tests.test_outcomes import claim, click_card, elements, option_for

# Each field its own word, so a finding names the field. Every value carries a ping, a link
# or a mention, the three mrkdwn escapes, and each formatting character around its word.
PINGS = (
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!subteam^S0123>",
    "<@U0BOSS0001>",
    "<#C0EVIL0001>",
    "<https://evil.example|click here>",
)


def _hostile(word: str, ping: str) -> str:
    return f"{ping} *{word}* _{word}_ ~{word}~ `{word}` R&D <{word}>"


NAME = _hostile("nm", "<!channel>")
COMPANY = _hostile("co", "<https://evil.example|click here>")
TITLE = _hostile("ti", "<!subteam^S0123>")
EVENT = _hostile("ev", "<!here>")
TERRITORY = _hostile("te", "<#C0EVIL0001>")
# Notes of many lines and blank runs: the card shows a few lines, not a tower of them.
NOTES = _hostile("no", "<!everyone>") + "\n" * 60 + "line\n" * 40 + "end <@U0BOSS0001>"
PERSONA_NAME = _hostile("pn", "<!channel>")[:75]
PERSONA_ABOUT = _hostile("pd", "<@U0BOSS0001>")
MEANS = _hostile("mn", "<!here>")
REASON = _hostile("rs", "<!everyone>")[:75]
DQ_NOTE = _hostile("dq", "<!channel>") + "\n" * 40 + "signed <@U0BOSS0001>"
REPORT_EVENT = "<!here> *rp* & <rp>"

# Short values, set inside leadbot's own lines and formatting. (Notes, "no" and "dq", are the
# writer's own paragraphs: escaped, but their formatting is theirs.)
INLINE_WORDS = ("nm", "co", "ti", "ev", "te", "pn", "pd", "mn", "rs", "rp")

POLICY = f"""
[[personas]]
key = "it_lead"
name = {json.dumps(PERSONA_NAME)}
description = {json.dumps(PERSONA_ABOUT)}

[[personas]]
key = "dev"
name = "Developer"

[priorities.hot]
means = {json.dumps(MEANS)}
claim_within = "30m"
escalate_after = 1
follow_up_within = "4h"

[priorities.warm]
means = "A real need"
claim_within = "2h"
escalate_after = 2
follow_up_within = "1d"

[outcomes]
disqualify_reasons = [{json.dumps(REASON)}, "No budget"]
"""

START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


# --- what leadbot sent --------------------------------------------------------------------------


def _texts(node: Any, where: str) -> Iterator[tuple[str, str, str]]:
    """(kind, text, where) of every text object in a Block Kit tree or view."""
    if isinstance(node, dict):
        kind = node.get("type")
        if kind in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
            yield kind, node["text"], where
        for key, value in node.items():
            if key in ("private_metadata", "value", "action_id", "block_id", "callback_id"):
                continue  # not shown to anyone
            yield from _texts(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _texts(item, f"{where}[{i}]")
    elif isinstance(node, str) and where.endswith((".placeholder", ".initial_value")):
        yield "plain_text", node, where


def _message(body: dict[str, Any], where: str) -> Iterator[tuple[str, str, str]]:
    # A message's own `text` is mrkdwn (the notification, and what blocks fall back to).
    if isinstance(body.get("text"), str):
        kind = "plain_text" if body.get("mrkdwn") is False else "mrkdwn"
        yield kind, body["text"], f"{where}.text"
    for key in ("blocks", "attachments"):
        yield from _texts(body.get(key), f"{where}.{key}")


def sent(bot: Bot, acks: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    for call in bot.slack.calls:
        if call.method.startswith("chat."):
            found += _message(call.args, call.method)
        elif call.method.startswith("views."):
            view = call.args.get("view")
            if isinstance(view, str):
                view = json.loads(view)
            found += _texts(view, call.method)
    for post in bot.slack.responses:
        if isinstance(post.body, dict):
            found += _message(post.body, f"response_url {post.name}")
    for name, body in acks:
        found += _message(body, f"ack {name}")
        # A modal's field errors are shown as plain text.
        for field, error in (body.get("errors") or {}).items():
            found.append(("plain_text", error, f"ack {name}.errors.{field}"))
    return found


# handlers/commands.py's refusal quotes what was typed, escaped but as typed: its values may
# still format (the person sees their own text). Only that is let through here.
NOT_OURS = ("❌ Not saved",)

# A typed word between two of the same formatting character, as Slack would format it.
_WORDS = "|".join(INLINE_WORDS)
_INLINE_FORMATTED = re.compile(rf"(?<!\w)([*_~`])({_WORDS})\1(?!\w)")


def problems(texts: list[tuple[str, str, str]]) -> list[str]:
    found = []
    for kind, text, where in texts:
        if kind == "mrkdwn":
            for ping in PINGS:
                if ping in text:
                    found.append(f"{where}: live {ping} in {text[:300]!r}")
            if "&amp;lt;" in text or "&amp;amp;" in text or "&amp;gt;" in text:
                found.append(f"{where}: escaped twice in {text[:300]!r}")
            m = _INLINE_FORMATTED.search(text)
            if m and not text.startswith(NOT_OURS):
                found.append(f"{where}: {m.group(0)} formats inline text in {text[:300]!r}")
            if "\n\n\n" in text.replace("\n> ", "\n"):
                found.append(f"{where}: runs of blank lines in {text[:120]!r}")
        else:
            if re.search(r"&(amp|lt|gt);", text):
                found.append(f"{where}: escaped plain_text {text[:300]!r}")
    return found


# --- the day --------------------------------------------------------------------------------


def _bot(tmp_path: Path, database_url: str, slack: Any, clock: Any) -> Bot:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    clock.set(START)
    return start_bot(database_url, slack, clock, POLICY_FILE=str(policy))


def _slash(bot: Bot, acks: list, text: str, user: str = MARKETER, **kw: Any) -> dict[str, Any]:
    r = bot.sim.slash_command(text, user_id=user, channel_id="C0EVENTS01", **kw)
    bot.settle()
    assert r.status == 200, r.body
    body = r.json() if r.body.strip() else {}
    acks.append((text[:30], body))
    return body


def _choose(bot: Bot, user: str, lead_id: int, stage: str, trigger_id: str | None = None) -> None:
    lead = bot.lead(lead_id)
    message = bot.slack.message(LEADS_CHANNEL, lead.card_ts or "")
    assert message is not None
    r = bot.sim.select(
        user,
        "lead_outcome",
        {"selected_option": option_for(message.blocks, stage)},
        channel_id=LEADS_CHANNEL,
        message_ts=message.ts,
        block_id="lead_owner_actions",
        trigger_id=trigger_id,
    )
    assert r.status == 200
    bot.settle()


def _view(bot: Bot, trigger_id: str) -> dict[str, Any]:
    [call] = [c for c in bot.slack.calls_to("views.open") if c.args["trigger_id"] == trigger_id]
    view = call.args["view"]
    return json.loads(view) if isinstance(view, str) else view


def hostile_day(bot: Bot) -> list[tuple[str, dict[str, Any]]]:
    acks: list[tuple[str, dict[str, Any]]] = []
    # 1: typed, every field hostile.
    _slash(
        bot,
        acks,
        f"name: {NAME}, email: one@acme.example, company: {COMPANY}, title: {TITLE}, hot, "
        f"event: {EVENT}, territory: {TERRITORY}, persona: it_lead, notes: {NOTES}",
    )
    # 2: through the modal (commas allowed there).
    _slash(bot, acks, "", trigger_id="trig-new", response_url=bot.slack.response_url("modal"))
    view = _view(bot, "trig-new")
    state = modal_state(
        {
            "name": NAME + ", Jr.",
            "email": "two@acme.example",
            "company": COMPANY,
            "priority": "hot",
            "event": EVENT,
            "notes": NOTES,
        }
    )
    state["persona"] = ("persona_input", "static_select", "it_lead")
    r = bot.sim.view_submission(MARKETER, view, state, private_metadata=view["private_metadata"])
    assert r.status == 200 and "errors" not in r.body, r.body
    bot.settle()
    # 3: its card refused by Slack: the submitter hears of it.
    bot.slack.fail(
        "chat.postMessage",
        error="channel_not_found",
        when=lambda a: a.get("channel") == LEADS_CHANNEL,
    )
    _slash(bot, acks, f"name: {NAME}, email: three@acme.example, event: {EVENT}, warm")
    # Reminders, then the managers told.
    for _ in range(3):
        bot.clock.advance(timedelta(minutes=31))
        bot.run_job("reminders")
    # 1 claimed late, then outcomes; 2 stays unclaimed.
    claim(bot, 1, REP_A)
    _choose(bot, REP_A, 1, "contacted")
    # 4: the same person as 1: a duplicate note on its card and receipt, a DM to 1's owner.
    _slash(bot, acks, f"name: {NAME}, email: one@acme.example, company: {COMPANY}, event: {EVENT}")
    claim(bot, 4, REP_B)
    _choose(bot, REP_B, 4, "disqualified", trigger_id="trig-dq")
    dq = _view(bot, "trig-dq")
    r = bot.sim.view_submission(
        REP_B,
        dq,
        {
            "outcome_reason": ("outcome_reason_input", "static_select", REASON),
            "outcome_note": ("outcome_note_input", "plain_text_input", DQ_NOTE),
        },
    )
    assert r.status == 200 and "errors" not in r.body, r.body
    bot.settle()
    # A manager hands 1 to REP_B.
    lead = bot.lead(1)
    click_card(bot, MANAGER, lead, "lead_reassign", trigger_id="trig-ra")
    ra = _view(bot, "trig-ra")
    r = bot.sim.view_submission(
        MANAGER, ra, {"new_owner": ("new_owner_input", "users_select", REP_B)}
    )
    assert r.status == 200
    bot.settle()
    # Follow-ups: the nudge, a snooze, then the managers told.
    for _ in range(3):
        bot.clock.advance(timedelta(hours=5))
        bot.run_job("followups")
    nudge = [m for m in bot.slack.dms(REP_B) if m.text.startswith("⏰")][-1]
    value = next(e["value"] for e in elements(nudge.blocks) if e["action_id"] == "lead_snooze_1h")
    bot.sim.block_action(
        REP_B, "lead_snooze_1h", value, channel_id=nudge.channel, message_ts=nudge.ts
    )
    bot.settle()
    # The digest, the next morning.
    bot.clock.set(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    assert bot.run_job("digest").startswith("sent")
    # What anyone can ask for.
    for who in (REP_B, MARKETER):
        _slash(bot, acks, "mine", user=who)
        _slash(bot, acks, "policy", user=who)
        bot.sim.event({"type": "app_home_opened", "user": who, "tab": "home"})
        bot.settle()
    # Refused leads: the reply names the value at fault, in a message and in the modal.
    _slash(bot, acks, f"name: {NAME}, email: <{NAME}>, persona: {PERSONA_NAME}")
    r = bot.sim.view_submission(
        MARKETER, view, modal_state({"name": NAME, "email": COMPANY, "priority": "hot"})
    )
    acks.append(("modal errors", r.json()))
    _slash(bot, acks, "report")
    _slash(bot, acks, f'report #"{REPORT_EVENT}" 90')
    _slash(bot, acks, f"report #{EVENT.split()[0]}")
    return acks


def test_nothing_typed_acts_as_markup_anywhere_leadbot_writes(
    tmp_path: Path, database_url: str, slack: Any, clock: Any
) -> None:
    bot = _bot(tmp_path, database_url, slack, clock)
    try:
        acks = hostile_day(bot)
        texts = sent(bot, acks)
        assert len(texts) > 100  # the day did run
        found = problems(texts)
        assert not found, "\n".join(found)
        cards = [m for m in bot.slack.messages(LEADS_CHANNEL) if not m.thread_ts]
        assert len(cards) == 3  # 3's card was refused
        for card in cards:
            notes = [b["text"]["text"] for b in card.blocks if "*Notes*" in str(b)]
            assert all(n.count("\n") <= render.CARD_NOTES_LINES + 1 for n in notes), notes
    finally:
        bot.stop()
