"""Block Kit lookups shared by the HTML renderer and the workspace: which element an action
came from, and what Slack reports for it (an action object, or an entry of `view.state`).

The page only says "action X in block Y was used with value V"; everything else Slack puts in
the payload (option texts, the button's text and style...) is taken from the stored message or
view here, so a page can never make the sandbox send something Slack would not.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

JsonDict = dict[str, Any]

# Elements whose value lives in `view.state.values` (buttons and overflow menus don't).
STATEFUL = frozenset(
    {
        "plain_text_input",
        "email_text_input",
        "url_text_input",
        "number_input",
        "rich_text_input",
        "static_select",
        "multi_static_select",
        "external_select",
        "multi_external_select",
        "users_select",
        "multi_users_select",
        "conversations_select",
        "multi_conversations_select",
        "channels_select",
        "multi_channels_select",
        "checkboxes",
        "radio_buttons",
        "datepicker",
        "timepicker",
        "datetimepicker",
    }
)
TEXT_INPUTS = frozenset({"plain_text_input", "email_text_input", "url_text_input", "number_input"})
_ONE_OPTION = frozenset({"static_select", "external_select", "radio_buttons", "overflow"})
_MANY_OPTIONS = frozenset({"multi_static_select", "multi_external_select", "checkboxes"})
_ONE_ID = {
    "users_select": "selected_user",
    "conversations_select": "selected_conversation",
    "channels_select": "selected_channel",
}
_MANY_IDS = {
    "multi_users_select": "selected_users",
    "multi_conversations_select": "selected_conversations",
    "multi_channels_select": "selected_channels",
}


class BlockKitError(ValueError):
    """The page asked for something the stored blocks don't have or can't take."""


def block_key(block: Mapping[str, Any], index: int) -> str:
    """A block's id; Slack assigns one to blocks sent without, so the sandbox does too."""
    value = block.get("block_id")
    return value if isinstance(value, str) and value else f"sbx-b{index}"


def block_elements(block: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The interactive elements of one block, in display order."""
    found: list[Mapping[str, Any]] = []
    if block.get("type") == "actions":
        found += [e for e in block.get("elements") or [] if isinstance(e, Mapping)]
    for key in ("accessory", "element"):
        if isinstance(block.get(key), Mapping):
            found.append(block[key])
    return found


def iter_elements(blocks: Any) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(block_id, block, element) for every interactive element of `blocks`."""
    for index, block in enumerate(blocks if isinstance(blocks, list) else []):
        if isinstance(block, Mapping):
            for element in block_elements(block):
                yield block_key(block, index), block, element


def find_element(blocks: Any, block_id: str, action_id: str) -> tuple[str, JsonDict]:
    """The element `action_id` in block `block_id` (any block if that one lacks it)."""
    fallback: tuple[str, JsonDict] | None = None
    for bid, _block, element in iter_elements(blocks):
        if element.get("action_id") != action_id:
            continue
        if bid == block_id:
            return bid, copy.deepcopy(dict(element))
        fallback = fallback or (bid, copy.deepcopy(dict(element)))
    if fallback is None:
        raise BlockKitError(f"no element {action_id!r} here any more")
    return fallback


def all_options(element: Mapping[str, Any]) -> list[JsonDict]:
    """Options of a select/overflow/checkbox element, option groups flattened."""
    options = [o for o in element.get("options") or [] if isinstance(o, Mapping)]
    for group in element.get("option_groups") or []:
        if isinstance(group, Mapping):
            options += [o for o in group.get("options") or [] if isinstance(o, Mapping)]
    return [dict(o) for o in options]


def _option(element: Mapping[str, Any], value: Any) -> JsonDict | None:
    if value is None or value == "":
        return None
    for option in all_options(element):
        if option.get("value") == value:
            return copy.deepcopy(option)
    raise BlockKitError(f"{value!r} is not one of the options")


def _strings(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw] if raw else []
    if isinstance(raw, list) and all(isinstance(v, str) for v in raw):
        return [v for v in raw if v]
    raise BlockKitError("expected a string or a list of strings")


def _one(raw: Any) -> str | None:
    values = _strings(raw)
    if len(values) > 1:
        raise BlockKitError("expected one value")
    return values[0] if values else None


def _date_time(raw: Any, tz: tzinfo) -> int | None:
    text = _one(raw)
    if text is None:
        return None
    try:
        # <input type="datetime-local"> gives wall time; Slack sends epoch seconds.
        return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp())
    except ValueError:
        raise BlockKitError("not a date and time") from None


def state_for(element: Mapping[str, Any], raw: Any, tz: tzinfo) -> JsonDict:
    """`{"type": ..., <value keys>}` as Slack reports this element in `view.state.values`."""
    kind = str(element.get("type") or "")
    state: JsonDict = {"type": kind}
    if kind in _ONE_OPTION:
        state["selected_option"] = _option(element, _one(raw))
    elif kind in _MANY_OPTIONS:
        chosen = [_option(element, v) for v in _strings(raw)]
        state["selected_options"] = [o for o in chosen if o]
    elif kind in _ONE_ID:
        state[_ONE_ID[kind]] = _one(raw)
    elif kind in _MANY_IDS:
        state[_MANY_IDS[kind]] = _strings(raw)
    elif kind == "datepicker":
        state["selected_date"] = _one(raw)
    elif kind == "timepicker":
        state["selected_time"] = _one(raw)
    elif kind == "datetimepicker":
        state["selected_date_time"] = _date_time(raw, tz)
    elif kind == "rich_text_input":
        text = _one(raw) or ""
        section = {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
        state["rich_text_value"] = {"type": "rich_text", "elements": [section] if text else []}
    else:
        # Slack sends null, not "", for an empty text input.
        if raw is not None and not isinstance(raw, str):
            raise BlockKitError("expected text")
        state["value"] = raw or None
    return state


def action_for(
    element: Mapping[str, Any], block_id: str, raw: Any, tz: tzinfo, action_ts: str
) -> JsonDict:
    """The `actions[0]` object of a block_actions payload for a use of `element`."""
    kind = str(element.get("type") or "")
    action: JsonDict = {
        "type": kind,
        "action_id": element.get("action_id"),
        "block_id": block_id,
        "action_ts": action_ts,
    }
    if kind in ("button", "workflow_button"):
        action["text"] = copy.deepcopy(element.get("text"))
        for key in ("value", "style", "url"):
            if element.get(key) is not None:
                action[key] = element[key]
        return action
    if kind in STATEFUL or kind == "overflow":
        action.update({k: v for k, v in state_for(element, raw, tz).items() if k != "type"})
        if element.get("placeholder") is not None and kind != "overflow":
            action["placeholder"] = copy.deepcopy(element["placeholder"])
        return action
    raise BlockKitError(f"{kind or 'this element'} cannot be used in the sandbox")


def view_state(
    blocks: Sequence[Any],
    raw_values: Mapping[str, Any],
    tz: tzinfo,
) -> JsonDict:
    """`view.state.values` from the page's `{block_id: {action_id: raw}}`; elements the page
    did not report keep their initial value, as in Slack."""
    values: JsonDict = {}
    for block_id, _block, element in iter_elements(list(blocks)):
        kind = str(element.get("type") or "")
        action_id = element.get("action_id")
        if kind not in STATEFUL or not isinstance(action_id, str):
            continue
        sent = raw_values.get(block_id)
        if isinstance(sent, Mapping) and action_id in sent:
            raw = sent[action_id]
        else:
            raw = initial_raw(element)
        values.setdefault(block_id, {})[action_id] = state_for(element, raw, tz)
    return values


def initial_raw(element: Mapping[str, Any]) -> Any:
    """An element's initial value in the page's raw form (string or list of strings)."""
    kind = str(element.get("type") or "")
    if kind in _ONE_OPTION:
        return (element.get("initial_option") or {}).get("value")
    if kind in _MANY_OPTIONS:
        return [o.get("value") for o in element.get("initial_options") or [] if o.get("value")]
    for key in (
        "initial_user",
        "initial_conversation",
        "initial_channel",
        "initial_date",
        "initial_time",
    ):
        if key in element:
            return element[key]
    for key in ("initial_users", "initial_conversations", "initial_channels"):
        if key in element:
            return list(element[key] or [])
    if kind == "datetimepicker" and element.get("initial_date_time") is not None:
        return None  # the page always reports it; nothing sensible to guess here
    value = element.get("initial_value")
    return value if isinstance(value, str) else None


def is_empty(state: Mapping[str, Any]) -> bool:
    """True when an element's state holds nothing (Slack's test for a required input)."""
    values = [v for k, v in state.items() if k != "type"]
    return all(
        v in (None, "", [], {}) or v == {"type": "rich_text", "elements": []} for v in values
    )
