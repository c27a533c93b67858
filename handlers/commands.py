"""`/lead`: inline submission, help, the modal, `/lead edit N` and the other subcommands."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt import Ack, App, Respond

from bot import duplicates, flows, render
from bot.delivery import DeliveryError
from bot.ids import is_slack_id
from bot.parsing import is_help, parse_lead_text, slack_unescape, usage
from bot.services import Services
from handlers import edit
from handlers.common import (
    DB_DOWN,
    SQLAlchemyError,
    later,
    lead_failed,
    may_have_been_saved,
    services_of,
)
from handlers.subcommands import SUBCOMMANDS, is_subcommand

log = logging.getLogger(__name__)


def register(app: App) -> None:
    app.command("/lead")(lead_command)


def lead_command(ack: Ack, command: dict[str, Any], context: Any, respond: Respond) -> None:
    """Store first, then ack with the receipt; the card follows through the outbox."""
    services = services_of(context)
    text = slack_unescape(str(command.get("text") or ""))
    user_id = str(command.get("user_id") or "")
    if not text.strip():
        ack()
        # The form opens after the ack (trigger_id stays valid for 3 seconds).
        later(services, _open_form, services, command, respond)
        return
    options = flows.parse_options(services.settings)
    if is_help(text):
        # The policy's own priorities: a `hot` example under p1/p2 would teach an error.
        ack(
            response_type="ephemeral",
            text=usage(options["priorities"], options["default_priority"]),
        )
        return
    word = text.strip().split(maxsplit=1)[0].lower()
    if word == "edit" and "," not in text:
        # `/lead edit N`: the form filled in with lead N, once it is theirs to correct.
        answer, modal = edit.edit_command(services, command, text.strip())
        if modal is None:
            ack(response_type="ephemeral", text=answer or edit.USAGE)
            return
        ack()
        again = f"/lead edit {edit.lead_number(text.strip())}"
        later(services, _open_form, services, command, respond, modal, again)
        return
    if is_subcommand(text):
        # `/lead policy`, `/lead mine`, `/lead report …`: answered privately, nothing stored.
        ack(response_type="ephemeral", **SUBCOMMANDS[word](services, command, text.strip()))
        return

    result = parse_lead_text(text, **options)
    if result.lead is None:
        problems = "\n".join(f"• {e.message}" for e in result.errors)
        ack(
            response_type="ephemeral",
            text=f"❌ Not saved — please fix:\n{render.esc(problems)}\n\n"
            "Type `/lead help` for the format.",
        )
        return
    try:
        lead, earlier = flows.submit_lead(
            services,
            result.lead,
            user_id=user_id,
            team_id=str(command.get("team_id") or services.team_id),
            channel=command.get("channel_id"),
            # Slack's for this one command: the same one delivered again stores nothing. A
            # resend after "can't tell" is a new command, stored (and marked as a repeat).
            request_key=command.get("trigger_id"),
        )
    except SQLAlchemyError as e:
        said = DB_DOWN
        if lead_failed(e):
            said = may_have_been_saved(flows.card_channel(services.settings, result.lead))
        ack(response_type="ephemeral", text=f"{said}\n```{render.esc(text)}```")
        return
    receipt = render.receipt(
        lead,
        flows.card_channel(services.settings, lead),
        note=duplicates.receipt_note(lead, earlier),
    )
    ack(response_type="ephemeral", text=receipt.text, blocks=receipt.blocks)


def _open_form(
    services: Services,
    command: dict[str, Any],
    respond: Respond,
    modal: dict[str, Any] | None = None,
    again: str = "/lead",
) -> None:
    """Open the new-lead form, or `modal` (the edit form); if Slack will not, say so."""
    try:
        if modal is None:
            metadata = json.dumps(
                {
                    "response_url": command.get("response_url"),
                    "channel_id": command.get("channel_id"),
                }
            )
            modal = render.lead_modal(metadata, services.settings.policy)
        services.slack.views_open(str(command.get("trigger_id") or ""), modal)
    except Exception as e:
        code = e.code if isinstance(e, DeliveryError) else type(e).__name__
        log.warning("could not open the /lead modal: %s", code)
        if code == "expired_trigger_id":  # Slack passed the command on too late to open it
            text = f"I couldn't open the form in time; type `{again}` again."
        else:
            text = "I couldn't open the form; try `/lead help`."
        try:
            # Bolt's respond() answers a refused response_url (expired, used up) with its
            # status rather than raising.
            told = respond(response_type="ephemeral", text=text).status_code == 200
        except Exception as again:  # a response_url Slack would not send, or Slack unreachable
            log.warning("could not say so on the response_url either: %s", type(again).__name__)
            told = False
        user = command.get("user_id")
        if not told and is_slack_id(user):
            flows.tell(services, None, user, text)  # a DM, rather than nothing at all
