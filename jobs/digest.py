"""The managers' daily digest, once a day at DIGEST_AT in TIMEZONE."""

from __future__ import annotations

import logging
from datetime import datetime

from bot import leads, render
from bot.delivery import DeliveryError
from bot.services import Services

log = logging.getLogger(__name__)


def due_date(services: Services) -> datetime | None:
    """Today's digest time if it has passed (in TIMEZONE), else None."""
    settings = services.settings
    local = services.clock.now().astimezone(settings.timezone)
    due = datetime.combine(local.date(), settings.digest_at, tzinfo=settings.timezone)
    return due if local >= due else None


def run(services: Services, *, force: bool = False) -> str:
    settings = services.settings
    if not settings.manager_ids:
        return "skipped: no MANAGER_IDS set"
    now = services.clock.now()
    due = due_date(services)
    if not force:
        if due is None:
            return f"not due yet (at {settings.digest_at:%H:%M} {settings.timezone.key})"
        with services.sessions.begin() as s:
            if not leads.claim_job_run(s, "digest", due.date(), now):
                return f"already sent for {due.date()}"
    with services.sessions() as s:
        figures = leads.digest_for(s, now)
    permalinks = {
        lead.id: services.slack.permalink(lead.card_channel, lead.card_ts)
        for lead in figures.backlog
        if lead.card_channel and lead.card_ts
    }
    message = render.digest_message(figures, permalinks, now)
    sent = 0
    for manager in settings.manager_ids:
        try:
            services.slack.dm(manager, message)
            sent += 1
        except DeliveryError as e:
            log.warning("digest to a manager not delivered: %s", e.code)
    return f"sent to {sent} of {len(settings.manager_ids)} managers"
