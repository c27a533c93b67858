"""Follow-ups: a claimed lead with no new outcome after its priority's follow_up_within (working
time) nudges its owner by DM; the next miss tells the managers too. Only in working hours."""

from __future__ import annotations

from bot import outbox, outcomes
from bot.render_outcomes import follow_up_escalation, follow_up_nudge
from bot.services import Services
from bot.sla import is_working_time


def run(services: Services) -> str:
    settings = services.settings
    policy = settings.policy
    now = services.clock.now()
    # Nobody is nudged at night: what falls due meanwhile goes out at the next opening.
    if not is_working_time(now, policy.hours):
        return "outside working hours: nothing sent"
    with services.sessions() as s:
        due = outcomes.due_follow_ups(s, now)
    nudged = escalated = 0
    for lead_id in due:
        # Winning the conditional UPDATE and queueing the DMs is one transaction: a follow-up
        # is either decided and on its way, or neither (and another process takes it).
        with services.sessions.begin() as s:
            turn = outcomes.take_follow_up(s, lead_id, now=now, policy=policy)
            if turn is None:  # another process won it, or an outcome came in meanwhile
                continue
            lead = turn.lead
            assert lead.owner_id
            tell_managers = turn.kind == "escalation" and bool(settings.manager_ids)
            if tell_managers:
                dm = follow_up_escalation(lead, now, turn.misses)
                # Told unless an outcome, a Reassign, a release or a correction came first
                # (queued while Slack was away): the misses stay misses when later nudges come.
                still = outbox.while_lead(lead, "status", "version")
                for manager in settings.manager_ids:
                    outbox.enqueue_message(s, manager, dm, lead_id=lead.id, only_while=still)
                escalated += 1
            else:
                nudged += 1
            outbox.enqueue_message(
                s,
                lead.owner_id,
                follow_up_nudge(lead, now, managers_told=tell_managers),
                lead_id=lead.id,
                # Only while it is the lead's latest word: no outcome, Reassign, release or
                # correction since (version), no later nudge (misses), no snooze (due time).
                only_while=outbox.while_lead(
                    lead, "status", "version", "follow_up_misses", "follow_up_at"
                ),
            )
    if nudged or escalated:
        services.outbox.kick()
    return f"{nudged} nudged, {escalated} escalated"
