"""Retention: delete leads older than RETAIN_FOR (placeholder until bot/privacy.py lands)."""

from __future__ import annotations

from bot.services import Services


def run(services: Services) -> str:
    from bot.privacy import purge_expired

    return purge_expired(services)
