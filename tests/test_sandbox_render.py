"""The sandbox's Block Kit → HTML renderer: every block and element the bot sends, the rest of
Block Kit the page supports, and escaping (no HTML or script injection, no fake mentions)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import render
from bot.leads import DigestFigures
from bot.sandbox.blockkit import (
    BlockKitError,
    action_for,
    find_element,
    is_empty,
    state_for,
    view_state,
)
from bot.sandbox.render_html import (
    render_blocks_html,
    render_message_html,
    render_mrkdwn_html,
    render_plain_html,
    render_view_html,
)
from bot.slack_sim import slack_escape
from models import CLAIMED, NEW, Lead

NOW = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
MARKETER, REP, MANAGER = "U0SBXMKT01", "U0SBXREPA1", "U0SBXMGR01"
USERS = {MARKETER: "Maya Field", REP: "Sam Rivera", MANAGER: "Jordan Lee"}
CHANNELS = {"C0LEADS001": "leads", "C0EVENTS01": "events"}
PERMALINK = "https://leadbot-emulator.slack.com/archives/C0LEADS001/p1795708559000001"

# Everything the renderer may write; anything else in the output came from a payload.
SAFE_TAGS = {
    "a", "b", "blockquote", "br", "button", "code", "details", "div", "form", "h2", "hr", "i",
    "img", "input", "label", "li", "ol", "optgroup", "option", "pre", "s", "select", "span",
    "summary", "textarea", "time", "ul",
}  # fmt: skip
ATTACKS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "<!channel>",
    "<@U0SBXMGR01>",
    "<https://evil.example|click me>",
    "javascript:alert(1)",
    "&lt;b&gt;",
)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(fragment: str) -> _Tags:
    parser = _Tags()
    parser.feed(fragment)
    parser.close()
    return parser


def assert_safe(fragment: str) -> None:
    """Only the renderer's own tags, no event handlers, no script URLs."""
    for tag, attrs in parse(fragment).tags:
        assert tag in SAFE_TAGS, f"unexpected <{tag}> in {fragment!r}"
        for name, value in attrs:
            assert not name.startswith("on"), f"event handler {name} in {fragment!r}"
            if name in ("href", "src"):
                assert (value or "").startswith(("http://", "https://", "mailto:", "#")), value


def visible_text(fragment: str) -> str:
    return "".join(parse(fragment).text)


def make_lead(**overrides: Any) -> Lead:
    fields: dict[str, Any] = {
        "id": 7,
        "team_id": "T0LEADBOT",
        "name": "Jane Doe",
        "email": "jane@acme.example",
        "phone": "+1 415 555 0100",
        "company": "Acme Corp",
        "title": "VP Engineering",
        "priority": "hot",
        "event": "SaaStr2026",
        "territory": "EMEA",
        "persona": "IT leader",
        "notes": "Wants an API demo next week",
        "submitted_by": MARKETER,
        "submitted_at": NOW - timedelta(minutes=20),
        "status": NEW,
        "owner_id": None,
        "claimed_at": None,
        "version": 1,
        "card_channel": "C0LEADS001",
        "card_ts": "1795708559.000001",
    }
    fields.update(overrides)
    return Lead(**fields)


def claimed(**overrides: Any) -> Lead:
    return make_lead(status=CLAIMED, owner_id=REP, claimed_at=NOW, version=2, **overrides)


def blocks_html(message: render.Message, me: str | None = None) -> str:
    out = render_blocks_html(message.blocks, users=USERS, channels=CHANNELS, me=me)
    assert_safe(out)
    return out


# --- the bot's own messages ---------------------------------------------------------------------


def test_new_lead_card() -> None:
    out = blocks_html(render.lead_card(make_lead(), NOW))
    assert '<div class="bk-block bk-header"' in out and "Jane Doe</div>" in out
    assert '<div class="bk-fields">' in out
    assert "<b>Company</b><br>Acme Corp" in out and "<b>Territory</b><br>EMEA" in out
    assert "jane@acme.example" not in out  # the public card never shows contact details
    assert '<span class="mention" data-user="U0SBXMKT01">@Maya Field</span>' in out
    epoch = int((NOW - timedelta(minutes=20)).timestamp())
    assert f'<time class="slack-date" data-epoch="{epoch}" data-format="{{ago}}">' in out
    claim = re.search(r"<button[^>]*>Claim</button>", out)
    assert claim is not None
    button = claim[0]
    assert 'class="bk-btn bk-btn-primary"' in button
    assert 'data-action-id="lead_claim"' in button
    assert 'data-block-id="lead_claim_actions"' in button
    assert 'data-value="7:1"' in button and 'data-dispatch="1"' in button


def test_claimed_card_has_release_with_a_confirm_dialog() -> None:
    out = blocks_html(render.lead_card(claimed(), NOW), me=REP)
    assert ">Claim</button>" not in out
    assert "<b>Claimed by " in out
    assert '<span class="mention mention-me" data-user="U0SBXREPA1">@Sam Rivera</span>' in out
    release = re.search(r"<button[^>]*data-action-id=\"lead_release\"[^>]*>Release</button>", out)
    assert release is not None and 'data-confirm="1"' in release[0]
    confirm = out[release.end() :]
    assert confirm.startswith('<div class="bk-confirm" hidden>')
    assert '<div class="confirm-title">Release this lead?</div>' in confirm
    assert "data-confirm-deny>Keep it</button>" in confirm
    assert "data-confirm-ok>Release</button>" in confirm


def test_claimer_dm_shows_contact_details() -> None:
    out = blocks_html(render.claimer_dm(claimed()))
    text = visible_text(out)
    assert "You claimed lead #7 Jane Doe (Acme Corp)" in text
    assert "<b>Email:</b> jane@acme.example" in out
    assert "Phone: +1 415 555 0100" in text
    assert "Wants an API demo next week" in text
    assert "Submitted by @Maya Field" in text


def test_receipt_and_reminder_render_as_mrkdwn() -> None:
    out = blocks_html(render.receipt(make_lead(), "C0LEADS001"))
    assert '<a href="#" class="channel-link" data-open-conv="C0LEADS001">#leads</a>' in out
    reminder = render.reminder(make_lead(), timedelta(hours=1), 1)
    html_ = render_message_html({"text": reminder.text}, users=USERS)
    assert_safe(html_)
    assert "Reminder 1: lead #7 <b>Jane Doe</b> (Acme Corp) has waited 1h" in html_


def test_digest_message() -> None:
    figures = DigestFigures(
        submitted=3,
        claimed=2,
        median_to_claim=timedelta(minutes=12),
        slowest_to_claim=timedelta(hours=2),
        claims_per_rep=[(REP, 2)],
        leads_per_event=[("SaaStr2026", 2), (None, 1)],
        backlog_total=1,
        backlog=[make_lead(card_permalink=PERMALINK)],
    )
    out = blocks_html(render.digest_message(figures, NOW))
    text = visible_text(out)
    assert "Lead digest" in text
    assert "Last 24 hours: 3 submitted · 2 claimed" in text
    assert "median <b>12m</b>" in out
    assert '<div class="bk-fields">' in out and "@Sam Rivera: 2" in text
    assert "(no event): 1" in text
    assert '<hr class="bk-divider">' in out
    # The card's permalink opens the card inside the sandbox, not slack.com.
    assert (
        '<a href="#" class="permalink" data-open-conv="C0LEADS001" '
        'data-ts="1795708559.000001">#7</a>' in out
    )


def test_lead_modal() -> None:
    view = {**render.lead_modal('{"channel_id": "C0EVENTS01"}'), "id": "V0000001"}
    out = render_view_html(view, users=USERS, channels=CHANNELS)
    assert_safe(out)
    assert '<div class="modal" role="dialog" aria-modal="true" aria-label="New lead"' in out
    assert 'data-view-id="V0000001"' in out
    assert '<h2 class="modal-title">New lead</h2>' in out
    assert "data-view-submit>Submit</button>" in out
    assert 'data-view-close="one">Cancel</button>' in out
    name = re.search(r'<div class="bk-block bk-input" data-block-id="name"[^>]*>.*?</div>', out)
    assert name is not None and 'data-required="1"' in name[0]
    assert 'placeholder="Jane Doe"' in out and 'maxlength="200"' in out
    assert 'Email <span class="bk-optional">(optional)</span>' in out
    assert '<div class="bk-hint">Email or phone: at least one.</div>' in out
    select = re.search(
        r'<select class="bk-select"[^>]*data-action-id="priority_input".*?</select>', out
    )
    assert select is not None
    assert '<option value="warm" selected>warm</option>' in select[0]
    assert '<option value="hot">hot</option>' in select[0]
    assert re.search(r'<textarea class="bk-input-el"[^>]*data-action-id="notes_input"', out)
    # Every input element reports its value to the page's state collector.
    for field in ("name", "email", "phone", "company", "notes", "priority"):
        assert f'data-action-id="{field}_input" data-block-id="{field}"' in out


def test_lead_modal_with_errors_marks_the_field() -> None:
    view = {**render.lead_modal(), "id": "V0000001"}
    out = render_view_html(
        view, errors={"email": 'email or phone: "give" <one>'}, users=USERS, channels=CHANNELS
    )
    assert_safe(out)
    assert '<div class="bk-block bk-input has-error" data-block-id="email"' in out
    assert (
        '<div class="bk-error" role="alert">email or phone: &quot;give&quot; &lt;one&gt;</div>'
        in out
    )
    assert out.count("bk-error") == 1


# --- escaping -----------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", ATTACKS)
def test_lead_text_cannot_inject_html_or_mentions(attack: str) -> None:
    lead = claimed(name=attack, company=attack, notes=attack, event=attack, title=attack)
    for message in (
        render.lead_card(make_lead(name=attack, company=attack, notes=attack), NOW),
        render.lead_card(lead, NOW),
        render.claimer_dm(lead),
        render.receipt(lead, "#leads"),
    ):
        out = blocks_html(message)
        assert "<script" not in out and "<img" not in out
        assert "mention-broadcast" not in out
        assert "evil.example" not in out or 'href="https://evil.example' not in out
        assert attack in visible_text(out), f"{attack!r} should show literally in {out!r}"
        fallback = render_message_html({"text": message.text}, users=USERS)
        assert_safe(fallback)
        assert attack in visible_text(fallback)


def test_escaped_channel_shows_literally_and_real_one_is_a_mention() -> None:
    out = render_mrkdwn_html("&lt;!channel&gt; and <!channel>")
    assert out.startswith("&lt;!channel&gt; and ")
    assert out.endswith('<span class="mention mention-broadcast">@channel</span>')


def test_plain_text_is_literal() -> None:
    assert render_plain_html("<b>*hi*</b> & :fire:") == "&lt;b&gt;*hi*&lt;/b&gt; &amp; 🔥"
    header = render_blocks_html(
        [{"type": "header", "text": {"type": "plain_text", "text": "<i>x</i>"}}]
    )
    assert "&lt;i&gt;x&lt;/i&gt;" in header


def test_payload_cannot_forge_the_renderers_placeholders() -> None:
    out = render_mrkdwn_html("\ue0000\ue001 <@U1>")
    assert_safe(out)
    assert "\ue000" not in out and "�0� " in out


_FORMATTING = set("*_~`>:")


@given(st.text(max_size=200))
def test_any_text_renders_safely_and_literally(text: str) -> None:
    out = render_mrkdwn_html(slack_escape(text), users=USERS)
    assert_safe(out)
    if not _FORMATTING & set(text) and "\ue000" not in text and "\ue001" not in text:
        # Line breaks become <br>; everything else reads exactly as typed.
        assert visible_text(out) == text.replace("\n", "")


# --- mrkdwn -------------------------------------------------------------------------------------


def test_mrkdwn_formatting() -> None:
    out = render_mrkdwn_html(
        "*bold* _it_ ~gone~ `a<b` snake_case_name 2*3*4\n```x = 1\n<y>```\n> quoted\nafter :tada:"
    )
    assert "<b>bold</b> <i>it</i> <s>gone</s>" in out
    assert '<code class="mk-code">a&lt;b</code>' in out
    assert "snake_case_name 2*3*4" in out
    assert '<pre class="mk-pre">x = 1\n&lt;y&gt;</pre>' in out
    assert '<blockquote class="mk-quote">quoted</blockquote>after 🎉' in out


def test_mrkdwn_links_and_tokens() -> None:
    out = render_mrkdwn_html(
        "<https://acme.example/a?b=1&amp;c=2|Acme> <mailto:jane@acme.example|Jane> "
        "<javascript:alert(1)|x> <@U0SBXREPA1> <@U999|fallback> <#C0LEADS001> <#C0NEW|new> "
        "<!here> <!subteam^S1|@sales> <!date^1795708800^{date_short} at {time}|Nov 26>",
        users=USERS,
        channels=CHANNELS,
    )
    assert_safe(out)
    assert (
        '<a href="https://acme.example/a?b=1&amp;c=2" target="_blank" '
        'rel="noopener noreferrer">Acme</a>' in out
    )
    assert '<a href="mailto:jane@acme.example"' in out and ">Jane</a>" in out
    assert "javascript" not in out.split("&lt;javascript")[0]
    assert "&lt;javascript:alert(1)|x&gt;" in out
    assert "@Sam Rivera</span>" in out and "@fallback</span>" in out
    assert ">#leads</a>" in out and ">#new</a>" in out
    assert '<span class="mention mention-broadcast">@here</span>' in out
    assert '<span class="mention">@sales</span>' in out
    assert (
        '<time class="slack-date" data-epoch="1795708800" data-format="{date_short} at {time}">'
        "Nov 26</time>" in out
    )


# --- the rest of Block Kit ------------------------------------------------------------------------


def test_section_accessories_context_image_and_unknown_blocks() -> None:
    button = {
        "type": "button",
        "action_id": "go",
        "text": {"type": "plain_text", "text": "Go"},
        "url": "https://acme.example",
    }
    blocks = [
        {
            "type": "section",
            "block_id": "s1",
            "text": {"type": "mrkdwn", "text": "with button"},
            "accessory": button,
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "with image"},
            "accessory": {
                "type": "image",
                "image_url": "https://img.example/a.png",
                "alt_text": 'a "pic"',
            },
        },
        {
            "type": "section",
            "text": {"type": "plain_text", "text": "with menu"},
            "accessory": {
                "type": "overflow",
                "action_id": "more",
                "options": [
                    {"text": {"type": "plain_text", "text": "Snooze"}, "value": "snooze"},
                    {"text": {"type": "plain_text", "text": "Drop"}, "value": "drop"},
                ],
            },
        },
        {
            "type": "context",
            "elements": [
                {"type": "image", "image_url": "javascript:alert(1)", "alt_text": "bad"},
                {"type": "mrkdwn", "text": "*ctx*"},
            ],
        },
        {
            "type": "image",
            "image_url": "https://img.example/b.png",
            "alt_text": "chart",
            "title": {"type": "plain_text", "text": "Chart"},
        },
        {"type": "video", "title": {"type": "plain_text", "text": "v"}},
        "not a block",
    ]
    out = render_blocks_html(blocks)
    assert_safe(out)
    assert 'data-action-id="go" data-block-id="s1"' in out
    assert 'data-url="https://acme.example"' in out
    assert (
        '<img class="bk-accessory-img" src="https://img.example/a.png" alt="a &quot;pic&quot;"'
        in out
    )
    assert '<details class="bk-overflow">' in out
    assert (
        'data-action-id="more" data-block-id="sbx-b2" data-type="overflow" data-value="drop"' in out
    )
    assert 'class="bk-context-img bk-img-missing" title="bad"' in out  # no javascript: image
    assert "<b>ctx</b>" in out
    assert '<div class="bk-image-title">Chart</div><img class="bk-image"' in out
    assert "[video block is not shown in the sandbox]" in out
    assert "[malformed block is not shown in the sandbox]" in out


def test_actions_with_styles_selects_and_pickers() -> None:
    blocks = [
        {
            "type": "actions",
            "block_id": "a1",
            "elements": [
                {
                    "type": "button",
                    "action_id": "ok",
                    "style": "primary",
                    "value": "1",
                    "text": {"type": "plain_text", "text": "OK"},
                },
                {
                    "type": "button",
                    "action_id": "no",
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Lost"},
                    "confirm": {
                        "title": {"type": "plain_text", "text": "Sure?"},
                        "text": {"type": "mrkdwn", "text": "Mark it *lost*"},
                        "confirm": {"type": "plain_text", "text": "Yes"},
                        "deny": {"type": "plain_text", "text": "No"},
                        "style": "danger",
                    },
                },
                {
                    "type": "static_select",
                    "action_id": "outcome",
                    "placeholder": {"type": "plain_text", "text": "Outcome"},
                    "option_groups": [
                        {
                            "label": {"type": "plain_text", "text": "Open"},
                            "options": [
                                {
                                    "text": {"type": "plain_text", "text": "Contacted"},
                                    "value": "contacted",
                                },
                            ],
                        }
                    ],
                },
                {"type": "users_select", "action_id": "who", "initial_user": REP},
                {"type": "datepicker", "action_id": "when", "initial_date": "2026-12-01"},
                {"type": "external_select", "action_id": "ext"},
                {"type": "mystery_element", "action_id": "m"},
            ],
        },
        {
            "type": "input",
            "block_id": "i1",
            "optional": True,
            "label": {"type": "plain_text", "text": "Pick"},
            "element": {
                "type": "checkboxes",
                "action_id": "c",
                "initial_options": [{"text": {"type": "plain_text", "text": "B"}, "value": "b"}],
                "options": [
                    {"text": {"type": "plain_text", "text": "A"}, "value": "a"},
                    {"text": {"type": "mrkdwn", "text": "*B*"}, "value": "b"},
                ],
            },
        },
        {
            "type": "input",
            "block_id": "i2",
            "dispatch_action": True,
            "label": {"type": "plain_text", "text": "One"},
            "element": {
                "type": "radio_buttons",
                "action_id": "r",
                "options": [{"text": {"type": "plain_text", "text": "X"}, "value": "x"}],
            },
        },
    ]
    out = render_blocks_html(blocks, users=USERS)
    assert_safe(out)
    assert 'class="bk-btn bk-btn-primary" data-action-id="ok"' in out
    assert 'class="bk-btn bk-btn-danger" data-action-id="no"' in out
    assert "data-confirm-ok>Yes</button>" in out and 'bk-btn-danger" data-confirm-ok' in out
    assert "Mark it <b>lost</b>" in out
    assert '<optgroup label="Open"><option value="contacted">Contacted</option></optgroup>' in out
    assert '<option value="" selected>Outcome</option>' in out
    assert f'<option value="{REP}" selected>Sam Rivera</option>' in out
    assert 'type="date"' in out and 'value="2026-12-01"' in out
    assert "external_select (options loaded from the app)" in out
    assert "[mystery_element is not shown in the sandbox]" in out
    assert re.search(r'<input type="checkbox" name="g\d+" value="b" checked><span><b>B</b>', out)
    # Inputs in a modal only dispatch actions when the block asks for it.
    assert 'data-action-id="c" data-block-id="i1" data-type="checkboxes" data-state="1"' in out
    assert 'data-type="radio_buttons" data-dispatch="1" data-state="1"' in out


def test_attachments_and_fallback_text() -> None:
    out = render_message_html(
        {
            "text": "fallback *text*",
            "attachments": [
                {"color": "#36a64f", "title": "T", "text": "body"},
                {"color": "red;background:url(x)", "fallback": "fb"},
            ],
        }
    )
    assert_safe(out)
    assert '<div class="bk-text">fallback <b>text</b></div>' in out
    assert 'data-color="36a64f"' in out and "url(x)" not in out
    assert ">fb</div>" in out


def test_home_view_and_pushed_modal() -> None:
    home = render_view_html(
        {"type": "home", "id": "VH1", "blocks": [{"type": "divider"}]}, users=USERS
    )
    assert home == '<div class="home-view" data-view-id="VH1"><hr class="bk-divider"></div>'
    pushed = render_view_html(
        {
            "type": "modal",
            "id": "V2",
            "title": {"type": "plain_text", "text": "More"},
            "blocks": [],
        },
        depth=2,
    )
    assert 'data-view-close="one">Back</button>' in pushed and "data-view-submit" not in pushed


# --- what the page sends back -------------------------------------------------------------------


def test_block_kit_state_and_actions_are_built_from_the_stored_view() -> None:
    view = render.lead_modal()
    state = view_state(
        view["blocks"],
        {"name": {"name_input": "Bob"}, "priority": {"priority_input": "hot"}},
        UTC,
    )
    assert state["name"] == {"name_input": {"type": "plain_text_input", "value": "Bob"}}
    assert state["email"] == {"email_input": {"type": "plain_text_input", "value": None}}
    assert state["priority"]["priority_input"]["selected_option"]["value"] == "hot"
    assert state["priority"]["priority_input"]["selected_option"]["text"]["text"] == "hot"
    assert render.modal_values(state)["priority"] == "hot"
    assert is_empty(state["email"]["email_input"]) and not is_empty(state["name"]["name_input"])
    with pytest.raises(BlockKitError):
        view_state(view["blocks"], {"priority": {"priority_input": "<made up>"}}, UTC)

    card = render.lead_card(make_lead(), NOW)
    block_id, element = find_element(card.blocks, "lead_claim_actions", "lead_claim")
    action = action_for(element, block_id, None, UTC, "1.0")
    assert action["value"] == "7:1" and action["style"] == "primary"
    assert action["text"]["text"] == "Claim" and action["block_id"] == "lead_claim_actions"
    with pytest.raises(BlockKitError):
        find_element(card.blocks, "lead_claim_actions", "lead_release")
    overflow = {
        "type": "overflow",
        "options": [{"text": {"type": "plain_text", "text": "A"}, "value": "a"}],
    }
    assert state_for(overflow, "a", UTC)["selected_option"]["value"] == "a"
