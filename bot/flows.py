"""Adapters between the core and Slack: each step a handler or job takes after the database
has decided. The database write always comes first; Slack is told afterwards.
"""

from __future__ import annotations

import logging

from bot import leads, render
from bot.delivery import DeliveryError
from bot.services import Services
from models import Lead

log = logging.getLogger(__name__)


def post_card(services: Services, lead_id: int) -> DeliveryError | None:
    """Post a stored lead's claim card to the leads channel and remember where it went."""
    now = services.clock.now()
    with services.sessions.begin() as s:
        lead = leads.get_lead(s, lead_id)
        if lead is None or lead.card_ts:
            return None
        message = render.lead_card(lead, now)
    try:
        channel, ts = services.slack.post(services.settings.leads_channel, message)
    except DeliveryError as e:
        log.warning("card for lead %s not posted: %s", lead_id, e.code)
        with services.sessions.begin() as s:
            leads.card_failed(s, lead_id, error=e.code, now=services.clock.now())
        return e
    with services.sessions.begin() as s:
        leads.card_posted(
            s,
            lead_id,
            channel=channel,
            ts=ts,
            now=services.clock.now(),
            reminder_after=services.settings.reminder_after,
        )
    log.info("card posted for lead %s", lead_id)
    return None


def refresh_card(services: Services, lead: Lead) -> None:
    """Re-render the card in place (same ts) from the lead's current state."""
    if not (lead.card_channel and lead.card_ts):
        return
    try:
        services.slack.update(
            lead.card_channel, lead.card_ts, render.lead_card(lead, services.clock.now())
        )
    except DeliveryError as e:
        log.warning("card for lead %s not updated: %s", lead.id, e.code)


def announce_claim(services: Services, lead: Lead) -> None:
    """After a won claim: the card, the claimer's private details, the submitter's news."""
    refresh_card(services, lead)
    for user, message in (
        (lead.owner_id, render.claimer_dm(lead)),
        (lead.submitted_by, render.submitter_claimed_dm(lead)),
    ):
        if not user:
            continue
        try:
            services.slack.dm(user, message)
        except DeliveryError as e:
            log.warning("DM about lead %s not sent: %s", lead.id, e.code)


def tell(services: Services, channel: str | None, user: str, text: str) -> None:
    """A private word to one person: ephemeral in the channel when we have one, else a DM."""
    try:
        if channel:
            services.slack.ephemeral(channel, user, text)
        else:
            services.slack.dm(user, render.Message(text=text))
    except DeliveryError as e:
        log.warning("private note to a user not sent: %s", e.code)
