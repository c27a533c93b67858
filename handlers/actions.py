"""Buttons on the claim card: Claim and Release.

Each click is acked at once (handlers.common.acks_first); the database then decides
(conditional UPDATEs), and the card and DMs are queued in the outbox in the same transaction.
A click delivered twice (double click, Slack retry) finds the state already changed and changes
nothing more.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App
from sqlalchemy.exc import SQLAlchemyError

from bot import flows, leads, outbox, render
from bot.ids import Action
from bot.services import Services
from handlers.common import acks_first, parse_value, services_of

log = logging.getLogger(__name__)

DB_BUSY = "⚠️ The database is not answering right now, so nothing changed. Try again in a minute."


def register(app: App) -> None:
    app.action(Action.CLAIM.value)(acks_first(claim))
    app.action(Action.RELEASE.value)(acks_first(release))


def _target(
    body: dict[str, Any], action: dict[str, Any]
) -> tuple[str, str | None, int | None, int | None]:
    """(user, channel, lead id, card version) from a block_actions payload, tolerating gaps."""
    user = str((body.get("user") or {}).get("id") or "")
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    parsed = parse_value(action.get("value"))
    if parsed is None:
        return user, channel, None, None
    return user, channel, parsed[0], parsed[1]


def _team(body: dict[str, Any], services: Services) -> str:
    return str((body.get("team") or {}).get("id") or services.team_id)


def claim(body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    services = services_of(context)
    user, channel, lead_id, _version = _target(body, action)
    if lead_id is None:
        flows.tell(services, channel, user, "That button is broken (no lead id); nothing changed.")
        return
    if not services.access.may_claim(user):
        flows.tell(services, channel, user, services.access.refusal())
        return
    try:
        result = flows.claim(services, lead_id, user, _team(body, services))
    except SQLAlchemyError as e:
        log.error("claim of lead %s failed, database error: %s", lead_id, type(e).__name__)
        flows.tell(services, channel, user, DB_BUSY)
        return
    if result.lead is None:
        flows.tell(services, channel, user, f"Lead #{lead_id} no longer exists; nothing changed.")
    elif result.won:
        log.info("lead %s claimed", lead_id)
    elif result.lead.owner_id == user:
        flows.tell(services, channel, user, f"You already own lead #{lead_id}.")
    else:
        flows.tell(services, channel, user, render.already_claimed(result.lead))


def release(body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    services = services_of(context)
    user, channel, lead_id, version = _target(body, action)
    if lead_id is None:
        flows.tell(services, channel, user, "That button is broken (no lead id); nothing changed.")
        return
    try:
        with services.sessions.begin() as s:
            current = leads.get_lead(s, lead_id, _team(body, services))
            stale = result = None
            if current is None:
                pass  # answered below: no such lead in this workspace
            elif version is not None and version != current.version:
                # The card showed an older state (e.g. another owner): act on nothing, refresh.
                outbox.enqueue_refresh(s, current)
                stale = render.current_state(current)
            else:
                result = leads.release(
                    s,
                    lead_id,
                    user,
                    team_id=_team(body, services),
                    managers=services.settings.manager_ids,
                    now=services.clock.now(),
                    next_reminder_at=flows.claim_due(
                        services.settings, current, services.clock.now()
                    ),
                )
                if result.ok and result.lead is not None:
                    flows.after_release(s, result.lead, user)
                elif result.reason == "not_claimed" and result.lead is not None:
                    outbox.enqueue_refresh(s, result.lead)  # make sure the card shows it is open
    except SQLAlchemyError as e:
        log.error("release of lead %s failed, database error: %s", lead_id, type(e).__name__)
        flows.tell(services, channel, user, DB_BUSY)
        return
    services.outbox.kick()
    if stale is not None:
        flows.tell(services, channel, user, f"That card was out of date; nothing changed. {stale}")
    elif result is None or result.lead is None:
        flows.tell(services, channel, user, f"Lead #{lead_id} no longer exists; nothing changed.")
    elif result.reason == "closed":
        flows.tell(services, channel, user, f"Lead #{lead_id} is closed; it cannot be released.")
    elif result.reason == "forbidden":
        flows.tell(services, channel, user, render.release_refused(result.lead))
    elif not result.ok:
        flows.tell(services, channel, user, f"Lead #{lead_id} is not claimed; nothing to release.")
    else:
        log.info("lead %s released", lead_id)
