"""Scheduled jobs: plain functions of Services, run by APScheduler or `leadbot jobs run NAME`.

Each pass is safe to run in any number of processes at once: who sends what is decided by
conditional UPDATEs and unique rows in the database, never by which process runs the job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from bot.services import Services
from jobs import digest, followups, purge, reminders


def _outbox(services: Services) -> str:
    return str(services.outbox.drain())


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[Services], str]  # one pass; returns a one-line summary
    every: timedelta  # how often the in-process scheduler runs a pass
    description: str
    # False: `serve` runs it in its own worker thread (woken at once when work is queued).
    scheduled: bool = True


JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        Job(
            "reminders",
            reminders.run,
            timedelta(seconds=30),
            "remind about unclaimed leads in the card's thread; escalate to managers",
        ),
        Job(
            "followups",
            followups.run,
            timedelta(seconds=60),
            "nudge owners of claimed leads with no outcome; tell managers at the next miss",
        ),
        Job(
            "digest",
            digest.run,
            timedelta(seconds=60),
            "send managers the daily digest at DIGEST_AT in TIMEZONE (once a day)",
        ),
        Job(
            "purge",
            purge.run,
            timedelta(hours=1),
            "delete leads older than RETAIN_FOR, with their event log (off when unset); "
            "forget handled Slack event ids after a day",
        ),
        Job(
            "outbox",
            _outbox,
            timedelta(seconds=2),
            "deliver queued Slack messages: retries, pacing, recovery after a crash",
            scheduled=False,
        ),
    )
}
