"""The managers' daily digest, once a day at DIGEST_AT in TIMEZONE."""

from __future__ import annotations

from datetime import datetime

from bot import leads, outbox, render, report
from bot.services import Services


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
        # SLA breaches, cards not posted, the per-event funnel (bot/report.py).
        extras = report.digest_extras(s, now)
    message = render.digest_message(figures, now)
    message = report.with_digest_extras(message, extras, now)
    with services.sessions.begin() as s:
        for manager in settings.manager_ids:
            outbox.enqueue_message(s, manager, message)
    services.outbox.kick()
    return f"sent to {len(settings.manager_ids)} managers"
