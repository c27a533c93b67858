"""What handlers and jobs need, built once per process and passed around explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from bot.access import ClaimAccess
from bot.clock import Clock
from bot.delivery import Slack
from bot.executor import TrackingExecutor
from bot.outbox import Outbox
from bot.settings import Settings
from models import single_statement_engine


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker
    slack: Slack
    clock: Clock
    outbox: Outbox
    access: ClaimAccess
    notes: TrackingExecutor  # fire-and-forget private notes (ephemerals) to people
    work: TrackingExecutor  # what a listener does after its ack (handlers.common.later)
    team_id: str = ""  # this workspace, from auth.test at start-up
    bot_user_id: str = ""  # leadbot's own user, from the same call
    # For work that is one statement: no BEGIN/COMMIT round trips on PostgreSQL.
    single_engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.single_engine = single_statement_engine(self.engine)
