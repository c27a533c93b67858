"""What Slack refuses in a message or a view: Block Kit's limits, checked the way slack.com does.

The loopback Slack (bot.slack_emulator) answers chat.postMessage, chat.update,
chat.postEphemeral, views.open/update/push/publish and response_url posts with Slack's errors
when a payload breaks one of these, and SlackSim checks the app's acks with them, so the suite
sees what real Slack would reject. Each limit is the one Slack's reference page gives for that
object (docs.slack.dev/reference/block-kit/...; views: docs.slack.dev/reference/views/...).

slack_sdk's models validate many of these limits, but only on objects built through them: a raw
dict (leadbot builds its busiest messages as dicts) or the options of a select parsed from one
are never checked. So the table below is applied to the JSON as sent, and each block is then
also parsed with `slack_sdk.models.blocks.Block.parse(...).to_dict()`, whose validators catch
what the table leaves out (empty texts, confirm dialogs, images...).

Only the stdlib and slack_sdk are used so the module can ship inside the package.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

JsonDict = dict[str, Any]

MESSAGE_BLOCKS = 50  # docs.slack.dev/reference/block-kit/blocks: "up to 50 blocks in each message"
VIEW_BLOCKS = 100  # same page: "and 100 blocks in modals or Home tabs"
# api.slack.com/changelog/2018-04-truncating-really-long-messages: text past 40,000 characters
# is cut (warning `message_truncated`) by chat.postMessage, chat.postEphemeral and response
# URLs; chat.update answers `msg_too_long`.
MESSAGE_TEXT = 40_000

CHARS, ITEMS, AT_MOST = "chars", "items", "at most"

# Object type -> (path, kind, limit). A path is keys joined by "."; "[]" stands for each item of
# a list. "*" applies to every block and element. CHARS bounds a string's length, ITEMS a list's
# length, AT_MOST a number's value.
LIMITS: dict[str, tuple[tuple[str, str, int], ...]] = {
    "*": (  # block_id: blocks page; action_id, placeholder: each element's page
        ("block_id", CHARS, 255),
        ("action_id", CHARS, 255),
        ("placeholder.text", CHARS, 150),
    ),
    "section": (("text.text", CHARS, 3000), ("fields", ITEMS, 10), ("fields[].text", CHARS, 2000)),
    "header": (("text.text", CHARS, 150),),
    "context": (("elements", ITEMS, 10),),
    "actions": (("elements", ITEMS, 25),),
    "input": (("label.text", CHARS, 2000), ("hint.text", CHARS, 2000)),
    "image": (("image_url", CHARS, 3000), ("alt_text", CHARS, 2000), ("title.text", CHARS, 2000)),
    "button": (("text.text", CHARS, 75), ("value", CHARS, 2000), ("url", CHARS, 3000)),
    "static_select": (("options", ITEMS, 100), ("option_groups", ITEMS, 100)),
    "multi_static_select": (("options", ITEMS, 100), ("option_groups", ITEMS, 100)),
    "overflow": (("options", ITEMS, 5),),
    "checkboxes": (("options", ITEMS, 10),),
    "radio_buttons": (("options", ITEMS, 10),),
    "plain_text_input": (("max_length", AT_MOST, 3000), ("min_length", AT_MOST, 3000)),
    # composition objects (docs.slack.dev/reference/block-kit/composition-objects/...)
    "option": (("text.text", CHARS, 75), ("value", CHARS, 150), ("description.text", CHARS, 75)),
    "option_group": (("label.text", CHARS, 75), ("options", ITEMS, 100)),
    "confirm": (
        ("title.text", CHARS, 100),
        ("text.text", CHARS, 300),
        ("confirm.text", CHARS, 30),
        ("deny.text", CHARS, 30),
    ),
    # views (docs.slack.dev/reference/views/modal-views, .../home-tab-views)
    "modal": (
        ("title.text", CHARS, 24),
        ("submit.text", CHARS, 24),
        ("close.text", CHARS, 24),
        ("private_metadata", CHARS, 3000),
        ("callback_id", CHARS, 255),
        ("external_id", CHARS, 255),
        ("blocks", ITEMS, VIEW_BLOCKS),
    ),
    "home": (
        ("private_metadata", CHARS, 3000),
        ("callback_id", CHARS, 255),
        ("external_id", CHARS, 255),
        ("blocks", ITEMS, VIEW_BLOCKS),
    ),
}

# Unique within the message or view (block_id: blocks page, "should be unique for each message
# and each iteration of a message") and within one block (action_id: each element's page,
# "should be unique among all other action_ids in the containing block").
UNIQUE_BLOCK_ID = "block_id"
UNIQUE_ACTION_ID = "action_id"


def _found(obj: Any, path: str, pointer: str) -> Iterator[tuple[Any, str]]:
    """The values at `path` in `obj`, each with its JSON pointer."""
    key, _, rest = path.partition(".")
    each = key.endswith("[]")
    key = key.removesuffix("[]")
    if not isinstance(obj, dict) or key not in obj:
        return
    value, at = obj[key], f"{pointer}/{key}"
    items = list(enumerate(value)) if each and isinstance(value, list) else None
    targets = [(v, f"{at}/{i}") for i, v in items] if items is not None else [(value, at)]
    for target, where in targets:
        if rest:
            yield from _found(target, rest, where)
        else:
            yield target, where


def _broken(obj: Any, kind: str, pointer: str) -> list[str]:
    """Slack's words for each limit of `kind` (an object type in LIMITS) that `obj` breaks."""
    errors = []
    for path, measure, limit in LIMITS.get(kind, ()):
        for value, where in _found(obj, path, pointer):
            if measure == CHARS and isinstance(value, str) and len(value) > limit:
                errors.append(f"must be less than {limit + 1} characters [json-pointer:{where}]")
            elif measure == ITEMS and isinstance(value, list) and len(value) > limit:
                errors.append(f"no more than {limit} items allowed [json-pointer:{where}]")
            elif measure == AT_MOST and isinstance(value, int) and value > limit:
                errors.append(f"must be less than {limit + 1} [json-pointer:{where}]")
    return errors


def _element_errors(element: Any, pointer: str, action_ids: dict[str, str]) -> list[str]:
    """One block element (or a block's text/image item): its limits, its options', its
    confirm dialog's; its action_id is added to `action_ids` (the block's, for duplicates)."""
    if not isinstance(element, dict):
        return []
    errors = _broken(element, "*", pointer) + _broken(element, str(element.get("type")), pointer)
    errors += _repeated(element, "action_id", pointer, action_ids)
    for key in ("options", "initial_options"):
        for i, option in enumerate(element.get(key) or []):
            errors += _broken(option, "option", f"{pointer}/{key}/{i}")
    if isinstance(element.get("initial_option"), dict):
        errors += _broken(element["initial_option"], "option", f"{pointer}/initial_option")
    for g, group in enumerate(element.get("option_groups") or []):
        errors += _broken(group, "option_group", f"{pointer}/option_groups/{g}")
        for i, option in enumerate((group or {}).get("options") or []):
            errors += _broken(option, "option", f"{pointer}/option_groups/{g}/options/{i}")
    if isinstance(element.get("confirm"), dict):
        errors += _broken(element["confirm"], "confirm", f"{pointer}/confirm")
    return errors


def _repeated(obj: JsonDict, key: str, pointer: str, seen: dict[str, str]) -> list[str]:
    """`obj[key]` (a block_id, an action_id) if already in `seen`, which it is added to."""
    value = obj.get(key)
    if not isinstance(value, str):
        return []
    where = f"{pointer}/{key}"
    if value in seen:
        return [f"duplicate {key} {value!r}, also at {seen[value]} [json-pointer:{where}]"]
    seen[value] = where
    return []


def _sdk_errors(block: JsonDict, pointer: str) -> list[str]:
    """What slack_sdk's own validators say of a block (None for types it does not know)."""
    try:
        parsed = Block.parse(block)
        if parsed is not None:
            parsed.to_dict()
    except SlackObjectFormationError as e:
        return [f"{e} [json-pointer:{pointer}]"]
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        return [
            f"failed to match all allowed schemas ({type(e).__name__}) [json-pointer:{pointer}]"
        ]
    return []


def blocks_errors(
    blocks: list[Any], pointer: str = "/blocks", max_blocks: int | None = None
) -> list[str]:
    """Everything Slack would refuse in a list of blocks, in Slack's words with JSON pointers:
    limits, duplicate block_ids, duplicate action_ids within a block."""
    errors: list[str] = []
    if max_blocks is not None and len(blocks) > max_blocks:
        errors.append(f"no more than {max_blocks} items allowed [json-pointer:{pointer}]")
    block_ids: dict[str, str] = {}
    for i, block in enumerate(blocks):
        at = f"{pointer}/{i}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"failed to match all allowed schemas [json-pointer:{at}]")
            continue
        found = _broken(block, "*", at) + _broken(block, block["type"], at)
        found += _repeated(block, "block_id", at, block_ids)
        action_ids: dict[str, str] = {}
        for key in ("accessory", "element"):
            found += _element_errors(block.get(key), f"{at}/{key}", action_ids)
        if block["type"] in ("actions", "context"):
            for j, element in enumerate(block.get("elements") or []):
                found += _element_errors(element, f"{at}/elements/{j}", action_ids)
        errors += found or _sdk_errors(block, at)
    return errors


def message_errors(blocks: Any) -> list[str]:
    """A message's blocks (chat.postMessage, chat.update, chat.postEphemeral, response_url)."""
    if blocks is None:
        return []
    return blocks_errors(blocks, "/blocks", MESSAGE_BLOCKS)


def view_errors(view: JsonDict) -> list[str]:
    """A modal or Home tab view (views.open/update/push/publish, a view_submission's ack)."""
    kind = str(view.get("type"))
    errors = _broken(view, kind, "/view")
    blocks = view.get("blocks")
    if isinstance(blocks, list):
        errors += blocks_errors(blocks, "/view/blocks")
    return errors
