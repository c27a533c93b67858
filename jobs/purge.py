"""Retention: delete leads older than RETAIN_FOR, with their history (off when unset)."""

from __future__ import annotations

from bot.privacy import purge_expired
from bot.services import Services


def run(services: Services) -> str:
    return purge_expired(services)
