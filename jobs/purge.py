"""Retention: delete leads older than RETAIN_FOR, with their history (off when unset); and,
always, clear the bodies of messages delivered longer ago than RETAIN_FOR (30 days without it)
and forget the ids of Slack events handled more than a day ago."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from bot.privacy import prune_delivered, purge_expired
from bot.services import Services
from models import ProcessedEvent

# Slack sends an event again only within minutes of the first try (three retries, the last
# about five minutes on); a day of handled ids covers them all, and the table stays small.
EVENT_IDS_KEPT = timedelta(days=1)


def run(services: Services) -> str:
    cutoff = services.clock.now() - EVENT_IDS_KEPT
    with services.sessions.begin() as s:
        forgotten = s.execute(
            delete(ProcessedEvent)
            .where(ProcessedEvent.at < cutoff)
            .execution_options(synchronize_session=False)
        ).rowcount
    # Leads first: a digest naming a purged lead is rewritten before its body may be cleared.
    purged = purge_expired(services)
    pruned = prune_delivered(services)
    return f"{purged}; {pruned}; {forgotten or 0} handled event ids older than 1d forgotten"
