"""Helpers shared by the listeners."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot import leads
from bot.parsing import LeadInput
from bot.services import Services
from models import Lead

DB_DOWN = (
    "⚠️ I couldn't save that lead: the database is not answering right now. "
    "Nothing was stored. Please try again in a minute; here is what you typed so it isn't lost:"
)


def services_of(context: Any) -> Services:
    return context["leadbot"]


def store_lead(
    services: Services, data: LeadInput, *, user_id: str, team_id: str, channel: str | None
) -> Lead:
    """Store the lead (committed on return); raises SQLAlchemyError when the database is down."""
    with services.sessions.begin() as s:
        return leads.submit(
            s,
            data,
            team_id=team_id,
            submitted_by=user_id,
            now=services.clock.now(),
            source_channel=channel,
        )


def parse_value(value: Any) -> tuple[int, int | None] | None:
    """A button value `id:version` (or just `id`) → ints; None when malformed or absurd."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    head, _, tail = value.partition(":")
    if not head.isdigit() or len(head) > 12 or (tail and not tail.isdigit()):
        return None
    return int(head), int(tail) if tail else None


__all__ = ["DB_DOWN", "SQLAlchemyError", "parse_value", "services_of", "store_lead"]
