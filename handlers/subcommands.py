"""`/lead <word>` subcommands: each takes the services, the command payload and the full text,
and returns the keyword arguments of an ephemeral ack (`text`, optionally `blocks`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot import render
from bot import report as reports
from bot.policy import describe_policy
from bot.services import Services
from handlers import outcomes

Subcommand = Callable[[Services, dict[str, Any], str], dict[str, Any]]


def policy(services: Services, command: dict[str, Any], text: str) -> dict[str, Any]:
    """The written handoff policy, readably."""
    settings = services.settings
    described = describe_policy(settings.policy, default_channel=settings.leads_channel)
    # A policy file may hold far more than one message (a megabyte of routes): whole lines up
    # to Slack's limit, then how many more are in the file.
    more = "…and {n} more lines: the rest is in the policy file."
    return {"text": render.text_within(described, more=more)}


def report(services: Services, command: dict[str, Any], text: str) -> dict[str, Any]:
    """`/lead report [#event] [days]`: the funnel per event and per persona (bot/report.py)."""
    return reports.answer(services, command, text)


SUBCOMMANDS: dict[str, Subcommand] = {
    "policy": policy,
    "report": report,
    "mine": outcomes.mine,  # your open leads, with their outcome select
}
