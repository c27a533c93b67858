"""The lifecycle after the claim: Record outcome (card, follow-up DM, `/lead mine`), the
disqualify modal, Reassign (managers), Snooze, and `/lead mine`.

As in handlers/actions.py: ack first, let the database decide with a conditional UPDATE, and
queue the card refresh and DMs in the outbox in the same transaction. Refusals change nothing
and say why, privately, to the person who clicked.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot import flows, leads, outbox, outcomes, render
from bot import render_outcomes as views
from bot.delivery import DeliveryError
from bot.ids import DISQUALIFY_NOTE, DISQUALIFY_REASON, REASSIGN_OWNER, Action, View, is_slack_id
from bot.services import Services
from handlers.common import (
    OUT_OF_DATE_CARD,
    acks_first,
    clicked_before_its_card,
    clicked_in,
    clicked_message_ts,
    erased_meanwhile,
    form_change_failed,
    gone,
    metadata_of,
    parse_value,
    services_of,
    small_int,
    state_values_of,
    team_of,
    text_in,
    user_of,
    write_failed,
)
from models import Lead

log = logging.getLogger(__name__)

BROKEN = "That control is broken (no lead in it); nothing changed."
SLACKBOT = "USLACKBOT"  # Slack's own bot: in every user select, and never reads a DM
NOT_A_PERSON = "leadbot and Slackbot cannot own a lead; choose a person."
# Plain text (a modal's error shows no mrkdwn): the rule is Claim's, services.access.may_claim.
NOT_SALES = (
    "Only the sales team (SALES_IDS, SALES_USERGROUP) and managers can own a lead, as only "
    "they can claim one; choose someone in it."
)
# As NOT_SALES, when the sales group cannot be read at all (access.refusal says so for Claim).
GROUP_UNREADABLE = (
    "leadbot cannot read the sales group (SALES_USERGROUP) from Slack, so only managers can own "
    "a lead for now; choose a manager, or tell your leadbot admin."
)


def _about_an_erased_lead(services: Services, body: dict[str, Any], lead_id: int) -> bool:
    """Whether the click came from a message posted before the lead's card: the card or a DM
    of an erased lead whose id SQLite gave the new one (see handlers.common), answered with
    OUT_OF_DATE_CARD before anything changes. A read, for clicks in a message only; Claim and
    Release check in handlers.actions. (A database error here is the action's own to meet.)"""
    if clicked_message_ts(body) is None:
        return False
    try:
        with services.sessions() as s:
            lead = leads.read_lead(s, lead_id, team_of(body, services))
            return lead is not None and clicked_before_its_card(s, body, lead)
    except SQLAlchemyError:
        return False


def register(app: App) -> None:
    app.action(Action.OUTCOME.value)(acks_first(outcome_chosen))
    app.action(Action.REASSIGN.value)(acks_first(reassign_clicked))
    app.action(Action.SNOOZE_HOUR.value)(acks_first(snooze_clicked))
    app.action(Action.SNOOZE_DAY.value)(acks_first(snooze_clicked))
    app.view(View.DISQUALIFY.value)(disqualify_submitted)
    app.view(View.REASSIGN.value)(reassign_submitted)


# --- payload helpers ----------------------------------------------------------------------------


def _metadata(view: dict[str, Any]) -> tuple[int | None, int | None, str | None]:
    """(lead id, card version or None, channel) from a modal's private_metadata."""
    data = metadata_of(view)
    lead_id, version, channel = data.get("lead_id"), data.get("version"), data.get("channel")
    return small_int(lead_id), small_int(version), channel if is_slack_id(channel) else None


def _open(services: Services, body: dict[str, Any], modal: dict[str, Any]) -> bool:
    try:
        services.slack.views_open(str(body.get("trigger_id") or ""), modal)
    except DeliveryError as e:
        log.warning("could not open a modal: %s", e.code)
        return False
    return True


# --- what each change sends -----------------------------------------------------------------------


def after_outcome(session: Session, lead: Lead, actor: str, note: str | None = None) -> None:
    """A recorded stage: the card shows it, and the submitter hears where their lead stands."""
    outbox.enqueue_refresh(session, lead)
    outbox.enqueue_message(
        session, lead.submitted_by, views.stage_dm(lead, actor, note), lead_id=lead.id
    )


def after_reassign(session: Session, lead: Lead, by: str, previous: str | None) -> None:
    """The new owner gets the contact details, the old one a note, the card's thread a line."""
    outbox.enqueue_refresh(session, lead)
    if lead.owner_id:
        dm = render.claimer_dm(lead, intro=views.new_owner_intro(lead, by))
        undelivered = (by, views.new_owner_not_told(lead))
        # Refused for its blocks, the DM goes again as text (the contact details are in it).
        outbox.enqueue_message(
            session, lead.owner_id, dm, lead_id=lead.id, if_undelivered=undelivered, assigned_by=by
        )
    if previous and previous != by:
        outbox.enqueue_message(session, previous, views.old_owner_note(lead, by), lead_id=lead.id)
    if lead.card_channel and lead.card_ts:
        outbox.enqueue_message(
            session,
            lead.card_channel,
            views.reassigned_thread_note(lead, by, previous),
            lead_id=lead.id,
            thread_ts=lead.card_ts,
        )


def _outcome_answer(lead_id: int, result: outcomes.OutcomeResult, *, from_card: bool) -> str | None:
    """What the clicker is told; None when the card (or nothing) says it all."""
    lead = result.lead
    if lead is None:
        return gone(lead_id)
    if result.reason == "recorded":
        # The card shows it; a DM or an ephemeral list does not change, so confirm there.
        return None if from_card else f"✅ {views.recorded(lead)}"
    if result.reason == "forbidden":
        return views.outcome_refused(lead)
    if result.reason == "same":
        return f"Lead #{lead.id} is already {views.stage_text(lead)}; nothing changed."
    if result.reason == "stale":
        return f"That was out of date; nothing changed. {views.current_state(lead)}"
    if result.reason == "not_claimed":
        return f"Lead #{lead.id} is not claimed any more; nothing changed."
    if result.reason == "reason_required":
        return "A disqualified lead needs a reason; nothing changed."
    return BROKEN


def _refresh_if_behind(session: Session, result: Any) -> None:
    # Whoever acted on an old state should see the current one: bring the card up to date.
    if result.lead is not None and result.reason in ("stale", "not_claimed", "same", "closed"):
        outbox.enqueue_refresh(session, result.lead)


# --- Record outcome -----------------------------------------------------------------------------


def outcome_chosen(body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    """A stage chosen in a Record outcome select; Disqualified first asks why, in a modal."""
    services = services_of(context)
    user, channel = user_of(body), clicked_in(body)
    parsed = views.parse_outcome_value(text_in(action, "selected_option", "value"))
    if parsed is None:
        flows.tell(services, channel, user, BROKEN)
        return
    lead_id, version, stage = parsed
    settings = services.settings
    modal: dict[str, Any] | None = None
    if _about_an_erased_lead(services, body, lead_id):
        flows.tell(services, channel, user, OUT_OF_DATE_CARD)
        return
    try:
        with services.sessions.begin() as s:
            if stage == outcomes.DISQUALIFIED:
                result = outcomes.check_outcome(
                    s,
                    lead_id,
                    user,
                    stage,
                    team_id=team_of(body, services),
                    managers=settings.manager_ids,
                    version=version,
                )
                if result.ok and result.lead is not None:
                    metadata = views.modal_metadata(
                        result.lead, versioned=version is not None, channel=channel
                    )
                    modal = views.disqualify_modal(
                        result.lead, settings.policy.disqualify_reasons, metadata
                    )
            else:
                result = outcomes.record_outcome(
                    s,
                    lead_id,
                    user,
                    stage,
                    team_id=team_of(body, services),
                    managers=settings.manager_ids,
                    policy=settings.policy,
                    now=services.clock.now(),
                    version=version,
                )
                if result.ok and result.lead is not None:
                    after_outcome(s, result.lead, user)
            _refresh_if_behind(s, result)
    except SQLAlchemyError as e:
        flows.tell(services, channel, user, write_failed(services, lead_id, "outcome", e))
        return
    services.outbox.kick()
    if modal is not None:
        if not _open(services, body, modal):
            flows.tell(services, channel, user, "I couldn't open the form; nothing changed.")
        return
    if result.ok:
        log.info("lead %s is now %s", lead_id, stage)
    answer = _outcome_answer(lead_id, result, from_card=version is not None)
    if answer:
        flows.tell(services, channel, user, answer)


def disqualify_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], context: Any
) -> None:
    """The disqualify modal: a reason from the policy is required, the note is optional."""
    services = services_of(context)
    settings = services.settings
    user = user_of(body)
    lead_id, version, channel = _metadata(view)
    values = state_values_of(view)
    reason = views.view_input(values, DISQUALIFY_REASON)
    note = views.view_input(values, DISQUALIFY_NOTE)
    if reason is None or reason not in settings.policy.disqualify_reasons:
        ack(response_action="errors", errors={DISQUALIFY_REASON: "Choose a reason from the list."})
        return
    if note is not None and len(note) > outcomes.NOTE_MAX:
        # The modal's input allows no more (Slack enforces it); a longer note was forged, and
        # quoted whole it made the submitter's DM too long for Slack to build.
        limit = f"At most {outcomes.NOTE_MAX} characters."
        ack(response_action="errors", errors={DISQUALIFY_NOTE: limit})
        return
    if lead_id is None:
        ack()
        flows.tell(services, channel, user, BROKEN)
        return
    try:
        with services.sessions.begin() as s:
            result = outcomes.record_outcome(
                s,
                lead_id,
                user,
                outcomes.DISQUALIFIED,
                team_id=team_of(body, services),
                managers=settings.manager_ids,
                policy=settings.policy,
                now=services.clock.now(),
                version=version,
                reason=reason,
                note=note,
            )
            if result.ok and result.lead is not None:
                after_outcome(s, result.lead, user, note=note)
            _refresh_if_behind(s, result)
    except SQLAlchemyError as e:
        if erased_meanwhile(services, lead_id, "disqualify", e):  # nothing to fix in the form
            ack()
            flows.tell(services, channel, user, gone(lead_id))
            return
        ack(response_action="errors", errors={DISQUALIFY_REASON: form_change_failed()})
        return
    ack()
    services.outbox.kick()
    answer = _outcome_answer(lead_id, result, from_card=version is not None)
    if answer:
        flows.tell(services, channel, user, answer)


# --- Reassign -------------------------------------------------------------------------------------


def _reassign_answer(lead_id: int, result: outcomes.ReassignResult) -> str | None:
    lead = result.lead
    if lead is None:
        return gone(lead_id)
    if result.reason == "reassigned":
        return None  # the card and its thread say it
    if result.reason == "forbidden":
        return views.reassign_refused()
    if result.reason == "stale":
        return f"That card was out of date; nothing changed. {views.current_state(lead)}"
    if result.reason == "closed":
        return f"Lead #{lead.id} is closed ({views.stage_text(lead)}); nothing to reassign."
    if result.reason == "not_claimed":
        return f"Lead #{lead.id} is not claimed; anyone can claim it from the card."
    return BROKEN


def reassign_clicked(body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    """Reassign on the card: managers get a modal to pick the new owner; others are refused."""
    services = services_of(context)
    user, channel = user_of(body), clicked_in(body)
    parsed = parse_value(action.get("value"))
    if parsed is None:
        flows.tell(services, channel, user, BROKEN)
        return
    lead_id, version = parsed
    modal: dict[str, Any] | None = None
    if _about_an_erased_lead(services, body, lead_id):
        flows.tell(services, channel, user, OUT_OF_DATE_CARD)
        return
    try:
        with services.sessions.begin() as s:
            result = outcomes.check_reassign(
                s,
                lead_id,
                user,
                team_id=team_of(body, services),
                managers=services.settings.manager_ids,
                version=version,
            )
            if result.ok and result.lead is not None:
                metadata = views.modal_metadata(result.lead, versioned=True, channel=channel)
                modal = views.reassign_modal(result.lead, metadata)
            _refresh_if_behind(s, result)
    except SQLAlchemyError as e:
        flows.tell(services, channel, user, write_failed(services, lead_id, "reassign", e))
        return
    services.outbox.kick()
    if modal is not None:
        if not _open(services, body, modal):
            flows.tell(services, channel, user, "I couldn't open the form; nothing changed.")
        return
    answer = _reassign_answer(lead_id, result)
    if answer:
        flows.tell(services, channel, user, answer)


def reassign_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: Any) -> None:
    services = services_of(context)
    settings = services.settings
    user = user_of(body)
    lead_id, version, channel = _metadata(view)
    new_owner = views.view_input(state_values_of(view), REASSIGN_OWNER)
    # Slack's user select sends a user id; anything else is a forged or broken submission.
    if not is_slack_id(new_owner):
        ack(response_action="errors", errors={REASSIGN_OWNER: "Choose the new owner."})
        return
    if new_owner in (services.bot_user_id, SLACKBOT):
        ack(response_action="errors", errors={REASSIGN_OWNER: NOT_A_PERSON})
        return
    # The new owner gets the contact details: whoever Claim would refuse may not be given them.
    if not services.access.may_claim(new_owner):
        why = GROUP_UNREADABLE if services.access.unreadable else NOT_SALES
        ack(response_action="errors", errors={REASSIGN_OWNER: why})
        return
    if lead_id is None:
        ack()
        flows.tell(services, channel, user, BROKEN)
        return
    try:
        with services.sessions.begin() as s:
            result = outcomes.reassign(
                s,
                lead_id,
                new_owner,
                by=user,
                team_id=team_of(body, services),
                managers=settings.manager_ids,
                policy=settings.policy,
                now=services.clock.now(),
                version=version,
            )
            if result.ok and result.lead is not None:
                after_reassign(s, result.lead, user, result.previous_owner)
            _refresh_if_behind(s, result)
    except SQLAlchemyError as e:
        if erased_meanwhile(services, lead_id, "reassign", e):  # nothing to fix in the form
            ack()
            flows.tell(services, channel, user, gone(lead_id))
            return
        ack(
            response_action="errors",
            errors={REASSIGN_OWNER: form_change_failed()},
        )
        return
    if result.reason == "same_owner":
        ack(
            response_action="errors",
            errors={REASSIGN_OWNER: "They already own this lead; choose someone else."},
        )
        return
    ack()
    services.outbox.kick()
    if result.ok:
        log.info("lead %s reassigned", lead_id)
    answer = _reassign_answer(lead_id, result)
    if answer:
        flows.tell(services, channel, user, answer)


# --- Snooze ---------------------------------------------------------------------------------------


def snooze_clicked(body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    """Snooze 1 hour / 1 day on a follow-up nudge (see outcomes.snooze_until)."""
    services = services_of(context)
    settings = services.settings
    user, channel = user_of(body), clicked_in(body)
    parsed = views.parse_snooze_value(action.get("value"))
    if parsed is None:
        flows.tell(services, channel, user, BROKEN)
        return
    lead_id, nudge = parsed
    key = "1h" if action.get("action_id") == Action.SNOOZE_HOUR else "1d"
    if _about_an_erased_lead(services, body, lead_id):
        flows.tell(services, channel, user, OUT_OF_DATE_CARD)
        return
    try:
        with services.sessions.begin() as s:
            result = outcomes.snooze(
                s,
                lead_id,
                user,
                team_id=team_of(body, services),
                managers=settings.manager_ids,
                policy=settings.policy,
                now=services.clock.now(),
                length=key,
                nudge=nudge,
            )
    except SQLAlchemyError as e:
        flows.tell(services, channel, user, write_failed(services, lead_id, "snooze", e))
        return
    lead = result.lead
    if lead is None:
        answer = gone(lead_id)
    elif result.ok and result.until is not None:
        answer = views.snoozed(lead, result.until)
    elif result.reason == "forbidden":
        answer = views.snooze_refused(lead)
    elif result.reason == "closed":
        answer = f"Lead #{lead.id} is closed ({views.stage_text(lead)}): no more follow-ups."
    elif result.reason == "out_of_date":
        answer = views.snooze_out_of_date(lead)
    else:
        answer = f"Lead #{lead.id} is not claimed any more; nothing to snooze."
    flows.tell(services, channel, user, answer)


# --- /lead mine -----------------------------------------------------------------------------------


def mine(services: Services, command: dict[str, Any], text: str) -> dict[str, Any]:
    """`/lead mine`: the caller's open leads (claimed, not closed), each with its outcome select."""
    user = str(command.get("user_id") or "")
    team = str(command.get("team_id") or services.team_id)
    try:
        with services.sessions() as s:
            leads = outcomes.open_leads_of(s, user, team_id=team, limit=views.MINE_MAX)
            total = len(leads)
            if total >= views.MINE_MAX:
                total = outcomes.count_open_leads_of(s, user, team_id=team)
    except SQLAlchemyError as e:
        log.error("/lead mine failed, database error: %s", type(e).__name__)
        return {"text": "⚠️ The database is not answering right now; try again in a minute."}
    return views.mine(leads, total, services.clock.now())
