"""Every action_id, block_id and callback_id, shared by the renderers and the handlers; and
what a Slack id and a number in a value look like."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TypeGuard

# A user, team or channel id as Slack writes them (U0123ABCD, T…, C…, D…): the database keeps
# them in 32 characters.
_SLACK_ID = re.compile(r"[A-Z0-9]{1,32}")


def is_slack_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _SLACK_ID.fullmatch(value) is not None


def is_digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "²", which int() then refuses."""
    return text.isascii() and text.isdigit()


class Action(StrEnum):
    CLAIM = "lead_claim"
    RELEASE = "lead_release"
    # Lifecycle (issue 4): the outcome select (card, follow-up DM, /lead mine), reassign, snooze.
    OUTCOME = "lead_outcome"
    REASSIGN = "lead_reassign"
    SNOOZE_HOUR = "lead_snooze_1h"
    SNOOZE_DAY = "lead_snooze_1d"


class View(StrEnum):
    NEW_LEAD = "lead_new"
    EDIT_LEAD = "lead_edit"  # the same form, filled in with a stored lead (`/lead edit N`)
    DISQUALIFY = "lead_disqualify"
    REASSIGN = "lead_reassign_to"


# Input blocks of the new-lead modal: block_id == field name, so validation errors map 1:1.
MODAL_FIELDS: tuple[str, ...] = (
    "name",
    "email",
    "phone",
    "company",
    "title",
    "priority",
    "event",
    "territory",
    "persona",
    "notes",
)


def input_action_id(field: str) -> str:
    """The action_id of the element inside a modal input block."""
    return f"{field}_input"


# Input blocks of the disqualify and reassign modals (action_id: input_action_id(block_id)).
DISQUALIFY_REASON = "outcome_reason"
DISQUALIFY_NOTE = "outcome_note"
REASSIGN_OWNER = "new_owner"
# The actions block of a claimed card (Release, Reassign, Record outcome).
OWNER_ACTIONS_BLOCK = "lead_owner_actions"
