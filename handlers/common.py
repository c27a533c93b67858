"""Helpers shared by the listeners."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.services import Services

DB_DOWN = (
    "⚠️ I couldn't save that lead: the database is not answering right now. "
    "Nothing was stored. Please try again in a minute; here is what you typed so it isn't lost:"
)


def services_of(context: Any) -> Services:
    return context["leadbot"]


def parse_value(value: Any) -> tuple[int, int | None] | None:
    """A button value `id:version` (or just `id`) → ints; None when malformed or absurd."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    head, _, tail = value.partition(":")
    if not head.isdigit() or len(head) > 12 or (tail and not tail.isdigit()):
        return None
    return int(head), int(tail) if tail else None


__all__ = ["DB_DOWN", "SQLAlchemyError", "parse_value", "services_of"]
