"""bot.request_body: every body parses to what Bolt's own parse gives, only faster."""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_bolt import BoltRequest
from slack_bolt.request.internals import parse_body as bolt_parse_body

from bot import render
from bot.request_body import _unquote_plus, bolt_request, parse_body
from tests.test_sandbox_render import NOW, make_lead

FORM = "application/x-www-form-urlencoded"
CONTENT_TYPES = st.sampled_from([None, FORM, "application/json", "text/plain"])
# Text that stresses the decoding: escapes whole and broken, plus signs, backslashes (the
# codec's own escape character) and non-ASCII.
TRICKY = st.text(alphabet=string.hexdigits + "%+&=\\xuN{}\"' é€😀\n", max_size=60)


def _outcome(parse: Any, body: str, content_type: str | None) -> tuple[str, Any]:
    try:
        return "ok", parse(body, content_type)
    except Exception as e:  # the same kind of failure counts as the same outcome
        return "raised", type(e)


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=60), max_size=6), CONTENT_TYPES)
def test_any_form_parses_as_bolt_parses_it(fields: dict[str, str], content_type: str) -> None:
    body = urlencode(fields)
    assert _outcome(parse_body, body, content_type) == _outcome(bolt_parse_body, body, content_type)


@given(TRICKY, CONTENT_TYPES)
def test_any_text_parses_as_bolt_parses_it(body: str, content_type: str) -> None:
    assert _outcome(parse_body, body, content_type) == _outcome(bolt_parse_body, body, content_type)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
    )
)
def test_any_interaction_payload_parses_as_bolt_parses_it(payload: Any) -> None:
    body = urlencode({"payload": json.dumps(payload)})
    assert _outcome(parse_body, body, FORM) == _outcome(bolt_parse_body, body, FORM)


def test_a_claim_click_with_its_card_parses_as_bolt_parses_it() -> None:
    lead = make_lead(
        name="Zoë O'Brien & Søn", company="Ünïcode “Quotes” 😀", notes="50% off + more"
    )
    card = render.lead_card(lead, NOW)
    payload = {
        "type": "block_actions",
        "user": {"id": "U0REP00001"},
        "actions": [{"action_id": "claim", "value": render.card_value(lead)}],
        "message": {"text": card.text, "blocks": card.blocks, "ts": "1700000001.000100"},
    }
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))})
    assert body.count("%") > 200  # the escapes the fast decoding is for
    assert parse_body(body, FORM) == bolt_parse_body(body, FORM) == payload


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a+b%2Bc", "a b+c"),
        ("%5Cx41", "\\x41"),  # an escaped backslash followed by what looks like an escape
        ("\\x41", "\\x41"),  # a literal backslash stays one
        ("\\n%41", "\\nA"),  # ... also beside an escape, which the codec would read as a newline
        ("\\%41", "\\A"),
        ("100%", "100%"),  # a % without two hex digits stays as it is
        ("%zz%41", "%zzA"),
        ("%C3%A9%E2%82%AC", "é€"),
        ("%FF", "\ufffd"),  # not UTF-8: replaced, as unquote does
    ],
)
def test_escapes_decode_as_unquote_plus_decodes_them(text: str, expected: str) -> None:
    assert _unquote_plus(text) == expected


def test_the_request_bolt_gets_is_the_one_it_would_build() -> None:
    payload = {"type": "block_actions", "team": {"id": "T0LEADBOT"}, "user": {"id": "U1"}}
    body = urlencode({"payload": json.dumps(payload)})
    headers = {"content-type": FORM, "x-slack-signature": "v0=abc"}
    ours, bolts = (
        bolt_request(body, "a=1", headers),
        BoltRequest(body=body, query="a=1", headers=headers),
    )
    assert ours.raw_body == bolts.raw_body == body
    assert ours.body == bolts.body == payload
    assert dict(ours.context) == dict(bolts.context)
    assert ours.context["team_id"] == "T0LEADBOT"
    assert (ours.query, ours.headers, ours.content_type, ours.mode, ours.lazy_only) == (
        bolts.query,
        bolts.headers,
        bolts.content_type,
        bolts.mode,
        bolts.lazy_only,
    )
