"""Remind about unclaimed leads in the card's thread; escalate to managers."""

from __future__ import annotations

from bot import flows, leads, outbox, render
from bot.services import Services
from bot.sla import is_working_time

# Cards re-rendered per run to see they are still there (below): chat.update is in Slack's
# Tier 3, about 50 a minute, and this job runs every 30 s. After an event's burst, hundreds of
# leads fall due together: the rest are checked at a later turn, not in a storm of 429s.
CARD_CHECKS_PER_RUN = 25


def run(services: Services) -> str:
    settings = services.settings
    now = services.clock.now()
    if not is_working_time(now, settings.policy.hours):
        return "outside working hours: nothing sent"
    schedule = flows.reminder_schedule(settings, now)
    with services.sessions() as s:
        due = leads.due_reminders(s, now)
    reminded = escalated = checked = 0
    for lead_id in due:
        # Winning the conditional UPDATE and queueing the messages is one transaction: a
        # reminder is either decided and on its way, or neither (and another process takes it).
        with services.sessions.begin() as s:
            turn = leads.take_reminder(
                s,
                lead_id,
                now=now,
                schedule=schedule,
            )
            if turn is None:  # another process won it, or the lead was claimed meanwhile
                continue
            lead = turn.lead
            assert lead.card_channel and lead.card_ts
            # Since the lead last came into the queue: after a release, not since its card.
            waited = now - (leads.claim_clock_start(s, lead) or lead.submitted_at)
            if turn.kind == "reminder":
                # Counting reminders only: the escalation took a turn (and said so in the
                # thread), so without this the thread went "Reminder 2", the note, "Reminder 4".
                number = turn.number - (1 if lead.escalated_at is not None else 0)
                message = render.reminder(lead, waited, number)
                reminded += 1
            else:
                dm = render.escalation_dm(lead, waited, turn.number - 1, lead.card_permalink)
                # Told while the lead waits unclaimed as it was (a later reminder does not
                # make this news stale: escalation comes once).
                waiting = outbox.while_lead(lead, "status", "version")
                for manager in settings.manager_ids:
                    outbox.enqueue_message(s, manager, dm, lead_id=lead.id, only_while=waiting)
                message = render.escalation_thread_note(
                    lead, turn.number - 1, told_managers=bool(settings.manager_ids)
                )
                escalated += 1
            # The card re-rendered first: if someone deleted it, Slack says so, and the lead
            # gets a new one (bot.outbox) rather than reminders in a thread nobody sees.
            if checked < CARD_CHECKS_PER_RUN:
                outbox.enqueue(s, [outbox.refresh_row(lead, reminder=turn.number)])
                checked += 1
            # Posted only while the lead is unclaimed and this is its latest reminder: queued
            # during an outage, stale ones are dropped (bot.outbox, WHILE), not sent in a burst.
            outbox.enqueue_message(
                s,
                lead.card_channel,
                message,
                lead_id=lead.id,
                thread_ts=lead.card_ts,
                only_while=outbox.while_lead(lead, "status", "version", "reminders_sent"),
            )
    if reminded or escalated:
        services.outbox.kick()
    return f"{reminded} reminded, {escalated} escalated"
