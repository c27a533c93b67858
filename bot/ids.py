"""Every action_id, block_id and callback_id, shared by the renderers and the handlers."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    CLAIM = "lead_claim"
    RELEASE = "lead_release"


class View(StrEnum):
    NEW_LEAD = "lead_new"


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
