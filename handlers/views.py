"""The `/lead` modal's submission."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from slack_bolt import Ack, App
from slack_sdk.webhook import WebhookClient

from bot import duplicates, flows, render
from bot.ids import MODAL_FIELDS, View, is_slack_id
from bot.parsing import FIELDS, ParseResult, validate_fields
from handlers.common import (
    FORM_MAY_HAVE_BEEN_SAVED,
    FORM_NOT_SAVED,
    SQLAlchemyError,
    later,
    lead_failed,
    metadata_of,
    services_of,
    state_values_of,
    team_of,
    user_of,
)

log = logging.getLogger(__name__)


def register(app: App) -> None:
    app.view(View.NEW_LEAD.value)(submit_modal)


def form_channel(metadata: dict[str, Any]) -> str | None:
    """Where the form was opened, as its metadata says: an id, or nothing."""
    channel = metadata.get("channel_id")
    return channel if is_slack_id(channel) else None


def form_key(view: Any) -> str | None:
    """The submitted form's request key (bot.leads.request_key): its view id, with its hash
    where it has one. Not the submission's trigger_id: every interaction gets a new one. The id
    alone is Slack's for one modal; the hash (minted with the view, its time in it) keeps apart
    the ids a loopback Slack started afresh hands out again (the sandbox keeps its database
    across runs). The same submission delivered again stores nothing more."""
    view_id = view.get("id") if isinstance(view, dict) else None
    if not isinstance(view_id, str) or not view_id:
        return None
    digest = view.get("hash")
    return f"{view_id}:{digest}" if isinstance(digest, str) and digest else view_id


def field_errors(result: ParseResult) -> dict[str, str]:
    """A refused form's errors, each under its field's block (the new-lead and edit forms)."""
    errors: dict[str, str] = {}
    for error in result.errors:
        # "email or phone" belongs to no single block: show it under email.
        block = error.field if error.field in MODAL_FIELDS else "email"
        errors.setdefault(block, error.message[:150])
    return errors


def sent_before(lead_id: int) -> str:
    """Under the form's first field, for a form stored already and sent again with changes."""
    return (
        f"This form was saved already, as lead #{lead_id}, with the details first sent; the "
        f"changes are not saved. Close it and type /lead edit {lead_id} to correct the lead."
    )


def submit_modal(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: Any) -> None:
    services = services_of(context)
    values = render.modal_values(state_values_of(view))
    result = validate_fields(values, **flows.parse_options(services.settings))
    if result.lead is None:
        ack(response_action="errors", errors=field_errors(result))
        return
    user = user_of(body)
    team = team_of(body, services)
    metadata = metadata_of(view)
    try:
        lead, earlier = flows.submit_lead(
            services,
            result.lead,
            user_id=user,
            team_id=team,
            channel=form_channel(metadata),
            request_key=form_key(view),
        )
    except SQLAlchemyError as e:
        said = FORM_MAY_HAVE_BEEN_SAVED if lead_failed(e) else FORM_NOT_SAVED
        # The form stays open as typed, the answer under its first field.
        ack(response_action="errors", errors={"name": said})
        return
    if any(getattr(result.lead, f) != getattr(lead, f) for f in FIELDS):
        # This form was stored before (sent again after "may have been saved", say) and is
        # now sent with changes: they are not stored. It stays open, saying where they go.
        ack(response_action="errors", errors={"name": sent_before(lead.id)})
        return
    ack()
    receipt = render.receipt(
        lead,
        flows.card_channel(services.settings, lead),
        note=duplicates.receipt_note(lead, earlier),
    )
    # The receipt goes out after the ack: its response_url post is a round trip to Slack.
    later(services, tell_submitter, services, metadata, user, receipt)


# Where Slack's response_urls point (commercial Slack and GovSlack).
RESPONSE_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})


def slack_response_url(url: object, api_url: str) -> bool:
    """Whether `url` is one Slack hands out: https on Slack's hooks host, or on the host and port
    of SLACK_API_URL (the loopback Slack of tests, the demo and the sandbox). The URL comes back
    in a modal's private_metadata; any other one would have the server post the receipt (and
    the duplicate it names) wherever the metadata said, its own network included."""
    if not isinstance(url, str):
        return False
    try:
        parts, api = urlsplit(url), urlsplit(api_url)
        if parts.username is not None or parts.password is not None:
            return False
        if parts.scheme == "https" and parts.hostname in RESPONSE_HOSTS and parts.port is None:
            return True
        return (parts.scheme, parts.hostname, parts.port) == (api.scheme, api.hostname, api.port)
    except ValueError:  # a port that is not a number or out of range
        return False


def tell_submitter(
    services: Any, metadata: dict[str, Any], user: str, message: render.Message
) -> None:
    """Ephemeral where they typed /lead (via its response_url), else a DM."""
    url = metadata.get("response_url")
    if slack_response_url(url, services.settings.slack_api_url):
        try:
            response = WebhookClient(str(url), timeout=5).send(
                text=message.text, blocks=message.blocks or None, response_type="ephemeral"
            )
            if response.status_code == 200:
                return
        except Exception as e:
            log.warning("response_url post failed: %s", type(e).__name__)
    flows.tell(services, None, user, message.text)
