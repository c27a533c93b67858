"""Buttons on the claim card: Claim and Release.

Each click is acked at once; the database then decides (conditional UPDATEs), and the card and
DMs are queued in the outbox in the same transaction. Claims acked together are written
together (CLAIM_BATCH); a Release goes alone (handlers.common.acks_first).
A click delivered twice (double click, Slack retry) finds the state already changed and changes
nothing more.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, NamedTuple

from slack_bolt import Ack, App
from sqlalchemy.exc import SQLAlchemyError

from bot import flows, leads, outbox, render
from bot.executor import Batcher
from bot.ids import Action
from bot.services import Services
from handlers.common import (
    DB_BUSY,
    OUT_OF_DATE_CARD,
    acks_first,
    clicked_before_its_card,
    clicked_in,
    clicked_message_ts,
    gone,
    parse_value,
    services_of,
    team_of,
    user_of,
    write_failed,
)

log = logging.getLogger(__name__)


# Claims acked while others are being written wait and go together, this many at most: one
# transaction and one thread for a burst of clicks (an event's leads claimed at once, a
# stampede on one card). Enough to make a burst cheap; few enough that on SQLite a `/lead`
# waiting for the writer waits for a few milliseconds at most.
CLAIM_BATCH = 32


def register(app: App) -> None:
    services: Services = app.leadbot  # type: ignore[attr-defined]
    claims: Batcher[tuple[dict[str, Any], dict[str, Any]]] = Batcher(
        services.work, functools.partial(claim_clicks, services), most=CLAIM_BATCH, name="claims"
    )

    def claim(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        claims.submit((body, action))

    app.action(Action.CLAIM.value)(claim)
    app.action(Action.RELEASE.value)(acks_first(release))


def _target(
    body: dict[str, Any], action: dict[str, Any]
) -> tuple[str, str | None, int | None, int | None]:
    """(user, channel, lead id, card version) from a block_actions payload, tolerating gaps
    and fields of the wrong shape (nothing is claimed for a click without a lead id)."""
    user = user_of(body)
    channel = clicked_in(body)
    parsed = parse_value(action.get("value") if isinstance(action, dict) else None)
    if parsed is None:
        return user, channel, None, None
    return user, channel, parsed[0], parsed[1]


def claim_clicks(services: Services, clicks: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Claim clicks (body, action) acked together: checked one by one, claimed in one go."""
    todo: list[_Claim] = []
    for body, action in clicks:
        try:
            user, channel, lead_id, _version = _target(body, action)
            if lead_id is None:
                flows.tell(
                    services, channel, user, "That button is broken (no lead id); nothing changed."
                )
            elif not services.access.may_claim(user):
                flows.tell(services, channel, user, services.access.refusal())
            else:
                team = team_of(body, services)
                todo.append(_Claim(lead_id, user, team, channel, clicked_message_ts(body)))
        except Exception as e:  # one odd payload must not cost the others their claims
            log.error("a claim click could not be read: %s", type(e).__name__, exc_info=e)
    todo = _on_their_cards(services, todo)
    if todo:
        _claim(services, todo)


class _Claim(NamedTuple):
    lead_id: int
    user: str
    team_id: str
    channel: str | None
    message_ts: str | None  # the message clicked in (a card), if the click came from one


def _on_their_cards(services: Services, todo: list[_Claim]) -> list[_Claim]:
    """The claims clicked on their lead's card; the others, clicked in a message posted before
    it (an erased lead's card, its id given again: bot.leads.predates_card), are answered and
    dropped. One read for the batch, before its transaction (bot.flows.claim_all, whose
    UPDATE cannot take the check): only if, between the two, the lead were erased and its id
    given to a new one would that one be claimed."""
    asked = {c.lead_id for c in todo if c.message_ts is not None}
    if not asked:
        return todo
    try:
        with services.single_engine.connect() as conn:
            marks = leads.card_marks(conn, asked)
    except SQLAlchemyError as e:
        log.error(
            "claims of leads %s not checked, database error: %s", sorted(asked), type(e).__name__
        )
        for c in todo:
            flows.tell(services, c.channel, c.user, DB_BUSY)
        return []
    kept = []
    for c in todo:
        mark = marks.get(c.lead_id)  # no such lead: claim_all answers that
        if (
            c.message_ts is not None
            and mark is not None
            and leads.predates_card(c.message_ts, mark)
        ):
            log.info("claim of lead %s refused: clicked on a card older than its own", c.lead_id)
            flows.tell(services, c.channel, c.user, OUT_OF_DATE_CARD)
        else:
            kept.append(c)
    return kept


def _claim(services: Services, todo: list[_Claim]) -> None:
    try:
        results = flows.claim_all(services, [(c.lead_id, c.user, c.team_id) for c in todo])
    except Exception as e:
        if len(todo) > 1:
            # One claim's trouble (a lock held too long, a deadlock with another process, a
            # bug) must not fail the others: each goes again on its own.
            log.warning(
                "a batch of %d claims failed (%s): each again alone", len(todo), type(e).__name__
            )
            for one in todo:
                try:
                    _claim(services, [one])
                except Exception as alone:  # by type: a traceback, never the payload
                    log.error(
                        "claim of lead %s failed: %s",
                        one.lead_id,
                        type(alone).__name__,
                        exc_info=alone,
                    )
            return
        if not isinstance(e, SQLAlchemyError):
            raise
        [one] = todo
        flows.tell(services, one.channel, one.user, write_failed(services, one.lead_id, "claim", e))
        return
    for one, result in zip(todo, results, strict=True):
        lead_id, user, channel = one.lead_id, one.user, one.channel
        if result.lead is None:
            flows.tell(services, channel, user, gone(lead_id))
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
    team = team_of(body, services)
    try:
        with services.sessions.begin() as s:
            current = leads.get_lead(s, lead_id, team)
            stale = result = None
            other_lead = False
            if current is None:
                pass  # answered below: no such lead in this workspace
            elif clicked_before_its_card(s, body, current):
                # An erased lead's card, its id given again: checked before the version, which
                # may be the same (and whose refresh would be this lead's).
                other_lead = True
            elif version is not None and version != current.version:
                # The card showed an older state (e.g. another owner): act on nothing, refresh.
                outbox.enqueue_refresh(s, current)
                stale = render.current_state(current)
            else:
                result = leads.release(
                    s,
                    lead_id,
                    user,
                    team_id=team,
                    managers=services.settings.manager_ids,
                    now=services.clock.now(),
                    next_reminder_at=flows.claim_due(
                        services.settings, current, services.clock.now()
                    ),
                )
                if result.ok and result.lead is not None:
                    flows.after_release(s, result.lead, user, result.previous_owner)
                elif result.reason in ("not_claimed", "stale") and result.lead is not None:
                    outbox.enqueue_refresh(s, result.lead)  # make sure the card shows it as it is
                    if result.reason == "stale":  # changed since this click's check, just now
                        stale = render.current_state(result.lead)
    except SQLAlchemyError as e:
        flows.tell(services, channel, user, write_failed(services, lead_id, "release", e))
        return
    services.outbox.kick()
    if other_lead:
        log.info("release of lead %s refused: clicked on a card older than its own", lead_id)
        flows.tell(services, channel, user, OUT_OF_DATE_CARD)
    elif stale is not None:
        flows.tell(services, channel, user, f"That card was out of date; nothing changed. {stale}")
    elif result is None or result.lead is None:
        flows.tell(services, channel, user, gone(lead_id))
    elif result.reason == "closed":
        flows.tell(services, channel, user, f"Lead #{lead_id} is closed; it cannot be released.")
    elif result.reason == "forbidden":
        flows.tell(services, channel, user, render.release_refused(result.lead))
    elif not result.ok:
        flows.tell(services, channel, user, f"Lead #{lead_id} is not claimed; nothing to release.")
    else:
        log.info("lead %s released", lead_id)
