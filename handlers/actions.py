"""Buttons on the claim card: Claim and Release."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot import flows, leads, outbox, render
from bot.ids import Action
from handlers.common import parse_value, services_of

log = logging.getLogger(__name__)


def register(app: App) -> None:
    app.action(Action.CLAIM.value)(claim)
    app.action(Action.RELEASE.value)(release)


def _target(body: dict[str, Any], action: dict[str, Any]) -> tuple[str, str | None, int | None]:
    user = str((body.get("user") or {}).get("id") or "")
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    parsed = parse_value(action.get("value"))
    return user, channel, parsed[0] if parsed else None


def claim(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    ack()
    services = services_of(context)
    user, channel, lead_id = _target(body, action)
    if lead_id is None:
        flows.tell(services, channel, user, "That button is broken (no lead id); nothing changed.")
        return
    team = str((body.get("team") or {}).get("id") or services.team_id)
    with services.sessions.begin() as s:
        result = leads.claim(s, lead_id, user, team_id=team, now=services.clock.now())
        if result.won and result.lead is not None:
            flows.after_claim(s, result.lead)
    services.outbox.kick()
    if result.lead is None:
        flows.tell(services, channel, user, f"Lead #{lead_id} no longer exists; nothing changed.")
        return
    if not result.won:
        flows.tell(services, channel, user, render.already_claimed(result.lead))
        return
    log.info("lead %s claimed", lead_id)


def release(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    ack()
    services = services_of(context)
    user, channel, lead_id = _target(body, action)
    if lead_id is None:
        flows.tell(services, channel, user, "That button is broken (no lead id); nothing changed.")
        return
    team = str((body.get("team") or {}).get("id") or services.team_id)
    with services.sessions.begin() as s:
        result = leads.release(
            s,
            lead_id,
            user,
            team_id=team,
            managers=services.settings.manager_ids,
            now=services.clock.now(),
            reminder_after=services.settings.reminder_after,
        )
        if result.ok and result.lead is not None:
            flows.after_release(s, result.lead, user)
        elif result.reason == "not_claimed" and result.lead is not None:
            outbox.enqueue_refresh(s, lead_id)  # make sure the card shows it is open
    services.outbox.kick()
    if result.lead is None:
        flows.tell(services, channel, user, f"Lead #{lead_id} no longer exists; nothing changed.")
        return
    if result.reason == "forbidden":
        flows.tell(services, channel, user, render.release_refused(result.lead))
        return
    if not result.ok:
        flows.tell(services, channel, user, f"Lead #{lead_id} is not claimed; nothing to release.")
        return
    log.info("lead %s released", lead_id)
