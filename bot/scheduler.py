"""The in-process scheduler of `serve` and `socket` (APScheduler 3.x)."""

from __future__ import annotations

import logging
from datetime import UTC

from apscheduler.schedulers.background import BackgroundScheduler

from bot.db import Trouble
from bot.services import Services

log = logging.getLogger(__name__)


def start_scheduler(services: Services) -> BackgroundScheduler:
    """Jobs on intervals, plus the outbox worker thread."""
    from jobs import JOBS

    scheduler = BackgroundScheduler(timezone=UTC)
    for job in JOBS.values():
        if not job.scheduled:
            continue
        scheduler.add_job(
            _runner(services, job.name),
            "interval",
            seconds=job.every.total_seconds(),
            id=job.name,
            # A slow pass is not stacked up behind itself, and missed runs collapse into one.
            max_instances=1,
            coalesce=True,
        )
    scheduler.start()
    return scheduler


def start_background(services: Services, *, with_scheduler: bool) -> BackgroundScheduler | None:
    """The outbox worker always runs (the bot's own messages go through it); the job scheduler
    only when asked (`--no-scheduler` leaves jobs to `leadbot jobs run` from cron)."""
    services.outbox.start()
    return start_scheduler(services) if with_scheduler else None


def run_job(services: Services, name: str) -> str:
    from jobs import JOBS

    return JOBS[name].run(services)


def _runner(services: Services, name: str):
    # A job failing at every run (the database down) is said once, then reminded of, and its
    # recovery is said too; the scheduler runs it on regardless, as the exception stops here.
    trouble = Trouble(log, f"job {name}")

    def run() -> None:
        try:
            summary = run_job(services, name)
        except Exception as e:
            trouble.failed(e)
        else:
            trouble.ok()
            log.debug("job %s: %s", name, summary)

    return run
