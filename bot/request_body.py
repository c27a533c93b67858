"""A Slack request's body, parsed as Bolt parses it, with a form's escapes decoded in C.

A click's body is a form whose one field, `payload`, holds the click as percent-encoded JSON,
the whole card included: ~2.7 KB with ~500 escapes for a claim card. `urllib.parse` decodes
escapes one at a time in Python, and Bolt's parse of such a body took ~230 µs of CPU, ten
times the JSON decoding after it (bench/HISTORY.md). Here the same decoding is done by the
`unicode_escape` codec: `%XX` becomes `\\xXX`, the codec turns each into the code point XX,
and the code points are the UTF-8 bytes that `unquote` would have decoded. Anything the fast
way does not cover exactly (non-ASCII text, a `%` without two hex digits, JSON bodies) is
parsed by Bolt's own function, so the result is Bolt's in every case, except that a body with a
lone surrogate in it is refused (NotText).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

from slack_bolt import BoltContext, BoltRequest
from slack_bolt.request.internals import build_context
from slack_bolt.request.internals import parse_body as bolt_parse_body

# What a body of the wrong shape raises in Bolt or the listeners: bad JSON (ValueError), JSON
# nested deeper than the stack (RecursionError), a string or an empty list where they index in
# (LookupError, TypeError), a string where they read keys (AttributeError). Such a request is
# refused, not answered with a 500.
MALFORMED = (ValueError, RecursionError, LookupError, AttributeError, TypeError)


# A surrogate left in a decoded string: JSON's `\ud800` alone (a pair decodes to one code
# point). No text can hold one, so it cannot be stored (UnicodeEncodeError in both databases)
# and Slack never sends one: such a body is refused like any malformed one.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Where one might be: a `\uD800`–`\uDFFF` escape in JSON text (emoji come as such pairs too).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class NotText(ValueError):
    """A body with a lone surrogate in it; str(error) says so, for the 400's body."""


def check_text(node: Any) -> None:
    """NotText if any string in `node` (keys too, at any depth) holds a lone surrogate."""
    todo = [node]  # a loop, not recursion: JSON nests deeper than the stack has room for
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise NotText("a string in it is not Unicode text (a lone surrogate)")
        elif isinstance(item, dict):
            todo.extend(item)
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)


def _unquote_plus(text: str) -> str:
    """`urllib.parse.unquote_plus(text)` for ASCII `text`, as `parse_qsl` applies it."""
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    # Backslashes doubled first, so that the codec's only escapes are the ones made here.
    escaped = text.replace("\\", "\\\\").replace("%", "\\x").encode("ascii")
    try:
        raw = escaped.decode("unicode_escape")
    except UnicodeDecodeError:  # a % without two hex digits after it: unquote keeps it as is
        return unquote(text)
    # Each code point is one byte of the text's UTF-8, as unquote decodes it (errors replaced).
    return raw.encode("latin-1").decode("utf-8", "replace")


def _form(body: str) -> dict[str, str]:
    """`dict(parse_qsl(body, keep_blank_values=True))` for an ASCII `body`."""
    fields = {}
    for part in body.split("&"):
        if part:
            name, _, value = part.partition("=")
            fields[_unquote_plus(name)] = _unquote_plus(value)
    return fields


def parse_body(body: str, content_type: str | None) -> dict[str, Any]:
    """What `slack_bolt.request.internals.parse_body` returns (or raises) for the same body."""
    # JSON, and anything not ASCII (a form is ASCII on the wire), goes Bolt's way.
    if not body or content_type == "application/json" or body.startswith("{") or not body.isascii():
        parsed = bolt_parse_body(body, content_type)
        check_text(parsed)  # a rare path (events, odd bodies): no need to look first
        return parsed
    fields = _form(body)
    if "payload" in body:
        payload = fields.get("payload")
        if payload is None:
            return {}
        parsed = json.loads(payload)
        if _SURROGATE_ESCAPE.search(payload):
            check_text(parsed)
        return parsed
    return fields


def bolt_request(body: str, query: Any, headers: Any) -> BoltRequest:
    """`BoltRequest(body=body, query=query, headers=headers)` for HTTP mode, its body parsed
    by `parse_body` above. Bolt's constructor parses the body it is given, so it gets none
    and the parsed body and its context are put in as the constructor would."""
    request = BoltRequest(body="", query=query, headers=headers)
    request.raw_body = body  # what the signature check reads
    request.body = parse_body(body, request.content_type)
    request.context = build_context(BoltContext({}), request.body)
    return request
