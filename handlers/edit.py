"""`/lead edit N`: the lead form again, filled in with a stored lead, so that a mistyped email
or phone, a wrong company or a missing note can be corrected after the lead was sent.

Its submitter or a manager may correct a lead; a closed one (won, lost, disqualified) only a
manager. The form is validated as a new lead's, and saved with one UPDATE conditional on the
version it was filled from (bot.leads.edit): a lead claimed, released or corrected meanwhile
is not overwritten. The card refresh and the DMs are queued in the same transaction.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import Ack, App
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot import flows, leads, outbox, render
from bot.ids import View, is_digits
from bot.outcomes import stage_label
from bot.parsing import FIELDS, validate_fields
from bot.services import Services
from handlers.common import (
    DB_BUSY,
    erased_meanwhile,
    form_change_failed,
    gone,
    later,
    metadata_of,
    services_of,
    small_int,
    state_values_of,
    team_of,
    user_of,
)
from handlers.views import field_errors, form_channel, tell_submitter
from models import NEW, Lead

log = logging.getLogger(__name__)

USAGE = (
    "To correct a lead, type `/lead edit` and its number, e.g. `/lead edit 12`: the number is "
    "on your receipt and on the lead's card."
)
BROKEN = "That form is broken (no lead in it); nothing was saved."
ID_MAX = 2**31 - 1  # leads.id is an INTEGER


def register(app: App) -> None:
    app.view(View.EDIT_LEAD.value)(edit_submitted)


def lead_number(text: str) -> int | None:
    """N from `edit N` or `edit #N` (the command's whole text); None if it names no number."""
    words = text.split(maxsplit=1)
    number = words[1].strip().removeprefix("#").strip() if len(words) == 2 else ""
    # 12 digits at most, as a button's value: past 2**63 SQLite cannot even bind it.
    return int(number) if is_digits(number) and len(number) <= 12 else None


def not_found(lead_id: int) -> str:
    return (
        f"I can't find lead #{lead_id}. Its number is on your receipt and on its card; a lead "
        "erased at the person's request is gone for good."
    )


def _refused(lead_id: int, result: leads.EditResult) -> str:
    """Why `/lead edit` opens no form (the lead is not `None` here but for "not_found")."""
    lead = result.lead
    if lead is None:
        return not_found(lead_id)
    if result.reason == "forbidden":
        return (
            f"Only the lead's submitter ({render.mention(lead.submitted_by)}) or a manager can "
            f"edit lead #{lead_id}."
        )
    # "closed": the reports count it as sales closed it; the managers own those figures.
    return f"Lead #{lead_id} is closed ({stage_label(lead.stage)}): only a manager can edit it now."


def edit_command(
    services: Services, command: dict[str, Any], text: str
) -> tuple[str | None, dict[str, Any] | None]:
    """`/lead edit N`: (a private answer, None) when no form opens, else (None, the form) to
    open after the ack. Only a read: nothing is stored until the form is saved."""
    lead_id = lead_number(text)
    if lead_id is None:
        return USAGE, None
    if lead_id > ID_MAX:  # no such lead; PostgreSQL would refuse the number itself
        return not_found(lead_id), None
    user = str(command.get("user_id") or "")
    team = str(command.get("team_id") or services.team_id)
    settings = services.settings
    try:
        with services.sessions() as s:
            result = leads.check_edit(s, lead_id, user, team_id=team, managers=settings.manager_ids)
            if not result.ok or result.lead is None:
                return _refused(lead_id, result), None
            lead = result.lead
            metadata = {
                "lead_id": lead.id,
                "version": lead.version,
                "response_url": command.get("response_url"),
                "channel_id": command.get("channel_id"),
                # Left out of the form as too long for it: saving keeps them as stored.
                "keep": list(render.kept_out_of_form(lead)),
            }
            modal = render.lead_modal(json.dumps(metadata), settings.policy, lead=lead)
    except SQLAlchemyError as e:
        log.error("/lead edit of lead %s failed, database error: %s", lead_id, type(e).__name__)
        return DB_BUSY, None
    return None, modal


def after_edit(
    services: Services, session: Session, lead: Lead, by: str, changed: tuple[str, ...]
) -> None:
    """The card shows the corrected fields; the owner gets the corrected details, and the
    submitter hears when someone else corrected their lead. A new priority on a lead still
    waiting for a claim moves its SLA: see leads.reschedule_claim."""
    outbox.enqueue_refresh(session, lead)
    # From when its claim clock started: its latest release, else its card (from the card
    # alone, a lead released today and corrected was overdue at once).
    waiting = "priority" in changed and lead.status == NEW
    start = leads.claim_clock_start(session, lead) if waiting else None
    if start is not None:
        due = flows.claim_due(services.settings, lead, start)
        leads.reschedule_claim(session, lead.id, due)
    rows = []
    if lead.owner_id and lead.owner_id != by:
        dm = render.claimer_dm(lead, intro=render.edited_owner_intro(lead, by, changed))
        # As the claim's: refused for its blocks, the details still arrive, as text.
        rows.append(outbox.message_row(lead.owner_id, dm, lead_id=lead.id, corrected_by=by))
    if lead.submitted_by != by:
        told = render.edited_submitter_dm(lead, by, changed)
        rows.append(outbox.message_row(lead.submitted_by, told, lead_id=lead.id))
    outbox.enqueue(session, rows)


def _not_saved(lead_id: int, result: leads.EditResult) -> str:
    """Under the form's first field, for a correction the database did not take."""
    if result.reason == "unchanged":
        return f"Nothing to save: these are lead #{lead_id}'s details already."
    if result.reason == "forbidden":
        return f"Only the lead's submitter or a manager can edit lead #{lead_id}; nothing saved."
    if result.reason == "closed":
        return f"Lead #{lead_id} is closed now: only a manager can edit it. Nothing saved."
    # "stale": their corrections stay in the form, to copy, but are not written over a change.
    return (
        f"Lead #{lead_id} changed since this form opened (claimed, released or edited); "
        f"nothing saved. Close it and /lead edit {lead_id} again."
    )


def edit_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: Any) -> None:
    services = services_of(context)
    settings = services.settings
    values = render.modal_values(state_values_of(view))
    result = validate_fields(values, **flows.parse_options(settings))
    if result.lead is None:
        ack(response_action="errors", errors=field_errors(result))
        return
    user = user_of(body)
    metadata = metadata_of(view)
    lead_id, version = small_int(metadata.get("lead_id")), small_int(metadata.get("version"))
    channel = form_channel(metadata)
    if lead_id is None or version is None:
        ack()
        flows.tell(services, channel, user, BROKEN)
        return
    keep = metadata.get("keep")
    kept = tuple(f for f in FIELDS if isinstance(keep, list) and f in keep)
    saved: render.Message | None = None
    try:
        with services.sessions.begin() as s:
            edited = leads.edit(
                s,
                lead_id,
                result.lead,
                by=user,
                team_id=team_of(body, services),
                managers=settings.manager_ids,
                now=services.clock.now(),
                version=version,
                keep=kept,
            )
            if edited.ok and edited.lead is not None:
                after_edit(services, s, edited.lead, user, edited.changed)
                saved = render.edit_saved(edited.lead, edited.changed)
    except SQLAlchemyError as e:
        if erased_meanwhile(services, lead_id, "edit", e):  # nothing to fix in the form
            ack()
            flows.tell(services, channel, user, gone(lead_id))
            return
        ack(response_action="errors", errors={"name": form_change_failed()})
        return
    if edited.reason == "not_found":  # erased (`forget`, the purge) while the form was open
        ack()
        flows.tell(services, channel, user, gone(lead_id))
        return
    if not edited.ok or saved is None:
        ack(response_action="errors", errors={"name": _not_saved(lead_id, edited)})
        return
    ack()
    services.outbox.kick()
    # Field names only: their values are contact details.
    log.info("lead %s edited: %s", lead_id, ", ".join(edited.changed))
    later(services, tell_submitter, services, metadata, user, saved)
