"""The traffic Slack sends leadbot: `/lead` lines and Claim clicks on real-looking cards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from bench.common import LEADS_CHANNEL, Prepared, PreparingSim, lead_texts
from bench.data import LEADS, bulk_insert, max_id
from bot import render
from bot.ids import Action
from models import NEW, Lead

MARKETERS = [f"U0MKT{i:05d}" for i in range(20)]
REPS = [f"U0REP{i:05d}" for i in range(200)]
EVENTS_CHANNEL = "C0EVENTS01"


def new_lead_row(i: int, now: datetime) -> dict[str, Any]:
    return {
        "team_id": "T0LEADBOT",
        "name": f"Sam Seed {i}",
        "email": f"sam.seed{i}@example.com",
        "phone": None,
        "company": f"Seeded Co {i % 53}",
        "title": "VP Sales",
        "priority": "warm",
        "event": f"expo{i % 7}",
        "territory": None,
        "persona": None,
        "notes": "met at the booth",
        "submitted_by": MARKETERS[i % len(MARKETERS)],
        "submitted_at": now - timedelta(minutes=5),
        "source_channel": EVENTS_CHANNEL,
        "status": NEW,
        "owner_id": None,
        "claimed_at": None,
        "version": 1,
        "card_channel": None,
        "card_ts": None,
        "card_posted_at": None,
        "card_error": None,
        "card_permalink": None,
        "reminders_sent": 0,
        # Not due within the run: the scheduler's sweeps find nothing to send.
        "next_reminder_at": now + timedelta(hours=6),
        "escalated_at": None,
    }


def seed_claimable(engine: Engine, n: int) -> list[Lead]:
    """`n` unclaimed leads (no card yet, so a claim's card refresh is a no-op and the loopback
    Slack needs no stored card); returns transient Lead objects to render cards from."""
    now = datetime.now(UTC)
    first = max_id(engine, LEADS) + 1
    rows = [new_lead_row(first + k, now) for k in range(n)]
    bulk_insert(engine, LEADS, rows)
    leads = []
    for k, row in enumerate(rows):
        lead = Lead(**{key: value for key, value in row.items()})
        lead.id = first + k
        leads.append(lead)
    return leads


def card_message(lead: Lead, ts: str) -> dict[str, Any]:
    """The card as Slack includes it in a click's payload (blocks and all)."""
    card = render.lead_card(lead, datetime.now(UTC))
    return {
        "type": "message",
        "subtype": "bot_message",
        "text": card.text,
        "blocks": card.blocks,
        "ts": ts,
        "bot_id": "B0LEADBOT",
        "user": "U0LEADBOT",
    }


def prepare_submit(sim: PreparingSim, text: str, user: str) -> Prepared:
    sim.kind = "lead"
    sim.slash_command(text, user, channel_id=EVENTS_CHANNEL)
    return sim.take()[0]


def prepare_claim(sim: PreparingSim, lead: Lead, user: str, ts: str) -> Prepared:
    sim.kind = "claim"
    sim.block_action(
        user,
        Action.CLAIM.value,
        render.card_value(lead),
        channel_id=LEADS_CHANNEL,
        message=card_message(lead, ts),
    )
    return sim.take()[0]


def mixed(sim: PreparingSim, targets: list[Lead], n: int, start: int) -> list[Prepared]:
    """`n` requests alternating a `/lead` submission and a Claim click on a distinct lead.

    One submission in 20 repeats the one before it (the same person met twice), so the
    duplicate path runs at about the rate a busy event gives it; the rest are new people."""
    texts = lead_texts(n, start)
    out: list[Prepared] = []
    claims = iter(targets)
    previous = ""
    for i, text in enumerate(texts):
        if i % 2 == 0:
            if i % 40 == 38:
                text = previous
            previous = text
            out.append(prepare_submit(sim, text, MARKETERS[i % len(MARKETERS)]))
        else:
            lead = next(claims)
            out.append(prepare_claim(sim, lead, REPS[i % len(REPS)], f"17000{lead.id:05d}.000100"))
    return out
