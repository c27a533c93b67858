"""The managers' daily digest, once a day at DIGEST_AT in TIMEZONE.

Its figures cover the time since the previous day's digest, not a fixed 24 hours: on the days
clocks change two digests are 23 or 25 hours apart, and one sent late (the process was down)
would otherwise count again what the one before it counted. So each lead is in one digest.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import leads, outbox, privacy, render, report
from bot.services import Services
from models import JobRun, Lead

JOB = "digest"
DAY = render.DAY  # the usual window, which the digest labels "Last 24 hours"
# After a long gap (managers added after months, a bot switched off for weeks) the digest
# covers at most this much, as "the last few days" stays readable on a phone.
LONGEST_WINDOW = timedelta(days=7)


def due_date(services: Services) -> datetime | None:
    """Today's digest time if it has passed (in TIMEZONE), else None."""
    settings = services.settings
    local = services.clock.now().astimezone(settings.timezone)
    due = datetime.combine(local.date(), settings.digest_at, tzinfo=settings.timezone)
    # Both sides carry the same zone, so this compares wall-clock times: a DIGEST_AT the clocks
    # skip (02:30 on a spring-forward day) falls due when they jump past it, and one they repeat
    # at its first occurrence (the day's row keeps the second from sending again).
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
        with services.sessions() as s:
            # A cheap look first: passes after today's digest must not compute figures.
            if _sent_on(s, due.date()):
                return f"already sent for {due.date()}"
    day = None if force or due is None else due.date()
    with services.sessions() as s:
        since = now - DAY if day is None else _window_start(s, day, now)
        figures = leads.digest_for(s, now, window=now - since)
        # SLA breaches, cards not posted, the per-event funnel (bot/report.py).
        # Its 30-day funnel counts calendar days in TIMEZONE, as `/lead report` does.
        extras = report.digest_extras(s, now, window=now - since, tz=settings.timezone)
        short = leads.short_cards(s, since, now)
    message = render.digest_message(figures, now)
    message = report.with_digest_extras(message, extras, now)
    message = with_short_cards(message, *short)
    # Claiming the day and queueing the DMs commit together: a failure in between (the
    # database gone, a crash) must leave the day unclaimed so the next pass sends it.
    with services.sessions.begin() as s:
        if day is not None and not leads.claim_job_run(s, JOB, day, now):
            return f"already sent for {day}"
        # The DMs name leads but are about none: their rows say which, for `forget` and the
        # purge to find and rewrite (bot.privacy); a lead erased since it was read is left out.
        message = privacy.without_erased(s, message)
        outbox.enqueue(
            s, [privacy.naming_row(manager, message) for manager in settings.manager_ids]
        )
    services.outbox.kick()
    count = len(settings.manager_ids)
    return f"sent to {count} manager{'' if count == 1 else 's'}"


def with_short_cards(
    message: render.Message, count: int, codes: list[tuple[str, int]], shown: list[Lead]
) -> render.Message:
    """The digest with a line on the cards Slack refused in full and that went short in its
    period (bot.outbox: a first post, a repost or a refresh, whenever the lead came in):
    claimable, so not among the cards not posted, but someone should fix what Slack refused."""
    if not count:
        return message
    refusals = ", ".join(f"`{render.inline(code, 60)}` ×{n}" for code, n in codes[:5])
    refs = ", ".join(render.lead_ref(lead) for lead in shown)
    if count > len(shown):
        refs += f" and {count - len(shown)} more"
    text = (
        f"*Cards shown in short form ({count})* — Slack refused the full card ({refusals}): "
        "these cards show only the lead's number, name, company and priority, with its Claim or "
        "Release button. Nothing is lost (whoever claims gets every detail in a DM), but tell "
        "whoever runs leadbot. "
        f"Leads: {refs}"
    )
    note = f"{count} card{'' if count == 1 else 's'} shown in short form"
    return render.Message(
        text=f"{message.text}; {note}", blocks=[*message.blocks, render.section(text)]
    )


def _sent_on(session: Session, day: date) -> bool:
    found = session.scalar(select(JobRun.id).where(JobRun.job == JOB, JobRun.due_on == day))
    return found is not None


def _window_start(session: Session, day: date, now: datetime) -> datetime:
    """Where the previous digest's figures ended (its `at`), within LONGEST_WINDOW; 24 hours
    back for the first digest, or when the clock has been set back behind the previous one."""
    previous = session.scalar(
        select(JobRun.at)
        .where(JobRun.job == JOB, JobRun.due_on < day)
        .order_by(JobRun.due_on.desc())
        .limit(1)
    )
    if previous is None or previous >= now:
        return now - DAY
    return max(previous, now - LONGEST_WINDOW)
