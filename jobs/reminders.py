"""Remind about unclaimed leads in the card's thread; escalate to managers."""

from __future__ import annotations

import logging

from bot import leads, render
from bot.delivery import DeliveryError
from bot.services import Services

log = logging.getLogger(__name__)


def run(services: Services) -> str:
    settings = services.settings
    now = services.clock.now()
    with services.sessions() as s:
        due = leads.due_reminders(s, now)
    reminded = escalated = 0
    for lead_id in due:
        with services.sessions.begin() as s:
            turn = leads.take_reminder(
                s,
                lead_id,
                now=now,
                reminder_after=settings.reminder_after,
                escalate_after=settings.escalate_after,
            )
        if turn is None:  # another process won it, or the lead was claimed meanwhile
            continue
        lead = turn.lead
        assert lead.card_channel and lead.card_ts
        waited = now - (lead.card_posted_at or lead.submitted_at)
        try:
            if turn.kind == "reminder":
                services.slack.post(
                    lead.card_channel,
                    render.reminder(lead, waited, turn.number),
                    thread_ts=lead.card_ts,
                )
                reminded += 1
                continue
            permalink = services.slack.permalink(lead.card_channel, lead.card_ts)
            dm = render.escalation_dm(lead, waited, turn.number - 1, permalink)
            for manager in settings.manager_ids:
                services.slack.dm(manager, dm)
            services.slack.post(
                lead.card_channel,
                render.escalation_thread_note(lead, turn.number - 1),
                thread_ts=lead.card_ts,
            )
            escalated += 1
        except DeliveryError as e:
            log.warning("%s for lead %s not delivered: %s", turn.kind, lead_id, e.code)
    return f"{reminded} reminded, {escalated} escalated"
