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

# What `report`'s arguments start with: an `#event` (maybe quoted) or a number of days.
_REPORT_ARGS = tuple("#\"'“”„‘’0123456789")


def is_subcommand(text: str) -> bool:
    """Whether `/lead <text>` (unescaped) is one of SUBCOMMANDS rather than a lead.

    A lead's fields are separated by commas, so a comma makes `Mine Kim, mine@x.example` a
    lead. But `report` separates its own arguments with them (`report #DMEXCO 2026, 7`, as
    `/lead` ends an `#event` at a comma): with a comma it is still a report when its first
    argument is an `#event` or a number, which no lead's name is after the word "report".
    """
    words = text.split(maxsplit=1)
    word = words[0].lower() if words else ""
    if word not in SUBCOMMANDS:
        return False
    if "," not in text:
        return True
    return word == "report" and len(words) > 1 and words[1].startswith(_REPORT_ARGS)
