"""Tests for bot.textview: Slack mrkdwn and Block Kit rendered as terminal text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.textview import render_blocks, render_message, render_mrkdwn, render_view

NY = ZoneInfo("America/New_York")
USERS = {"U1": "Alice", "U2": "@bob"}
CHANNELS = {"C1": "leads", "C2": "#sales"}
# 2025-11-26 15:33:54 UTC == 10:33:54 EST.
TS = 1764171234
# 2025-11-26 03:00:00 UTC == 2025-11-25 22:00 EST: a different calendar day in New York.
TS_LATE = 1764126000
NOW = datetime(2025, 11, 26, 15, 38, 54, tzinfo=UTC)  # five minutes after TS


def plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def md(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def date_token(fmt: str, ts: int = TS, fallback: str = "fb") -> str:
    return f"<!date^{ts}^{fmt}|{fallback}>"


# --- mrkdwn: mentions ------------------------------------------------------------------------


class TestMentions:
    def test_user_from_map(self) -> None:
        assert render_mrkdwn("hi <@U1>", users=USERS) == "hi @Alice"

    def test_user_name_with_at_is_not_doubled(self) -> None:
        assert render_mrkdwn("<@U2>", users=USERS) == "@bob"

    def test_unknown_user_shows_id(self) -> None:
        assert render_mrkdwn("<@U999>", users=USERS) == "@U999"
        assert render_mrkdwn("<@U1>") == "@U1"

    def test_user_label(self) -> None:
        assert render_mrkdwn("<@U7|carol>") == "@carol"

    def test_channel_from_map_label_and_id(self) -> None:
        assert render_mrkdwn("<#C1>", channels=CHANNELS) == "#leads"
        assert render_mrkdwn("<#C2>", channels=CHANNELS) == "#sales"
        assert render_mrkdwn("<#C3|general>") == "#general"
        assert render_mrkdwn("<#C3>") == "#C3"

    @pytest.mark.parametrize("name", ["here", "channel", "everyone"])
    def test_broadcasts(self, name: str) -> None:
        assert render_mrkdwn(f"ping <!{name}>!") == f"ping @{name}!"
        # Legacy form with a label.
        assert render_mrkdwn(f"<!{name}|{name}>") == f"@{name}"

    def test_subteam(self) -> None:
        assert render_mrkdwn("<!subteam^S123|@sales-team>") == "@sales-team"
        assert render_mrkdwn("<!subteam^S123|sales-team>") == "@sales-team"
        assert render_mrkdwn("<!subteam^S123>") == "@S123"


# --- mrkdwn: links, entities, formatting -----------------------------------------------------


class TestLinksAndText:
    def test_labelled_link(self) -> None:
        assert render_mrkdwn("see <https://x.io|the docs>") == "see the docs (https://x.io)"

    def test_bare_link(self) -> None:
        assert render_mrkdwn("<https://x.io/a>") == "https://x.io/a"

    def test_link_label_same_as_url_not_repeated(self) -> None:
        assert render_mrkdwn("<https://x.io|https://x.io>") == "https://x.io"

    def test_link_with_escaped_ampersand(self) -> None:
        out = render_mrkdwn("<https://x.io/?a=1&amp;b=2|A &amp; B>")
        assert out == "A & B (https://x.io/?a=1&b=2)"

    def test_mailto(self) -> None:
        assert render_mrkdwn("<mailto:a@b.co|a@b.co>") == "a@b.co"
        assert render_mrkdwn("<mailto:a@b.co>") == "a@b.co"
        assert render_mrkdwn("<mailto:a@b.co|Email Ann>") == "Email Ann (a@b.co)"

    def test_entities(self) -> None:
        assert render_mrkdwn("1 &lt; 2 &amp;&amp; 3 &gt; 2") == "1 < 2 && 3 > 2"

    def test_entities_are_decoded_once(self) -> None:
        assert render_mrkdwn("&amp;lt;") == "&lt;"

    def test_escaped_mention_stays_literal(self) -> None:
        out = render_mrkdwn("typed &lt;!channel&gt; but real <!channel>")
        assert out == "typed <!channel> but real @channel"

    def test_escaped_user_mention_stays_literal(self) -> None:
        assert render_mrkdwn("&lt;@U1&gt;", users=USERS) == "<@U1>"

    def test_names_from_maps_are_not_unescaped(self) -> None:
        assert render_mrkdwn("<@U5>", users={"U5": "A &amp; B"}) == "@A &amp; B"

    def test_formatting_markers_kept(self) -> None:
        text = "*bold* _italic_ ~strike~ `code <x>` ```block```"
        assert render_mrkdwn(text.replace("<x>", "&lt;x&gt;")) == text

    def test_stray_angle_bracket_kept(self) -> None:
        assert render_mrkdwn("a < b") == "a < b"


# --- mrkdwn: dates ---------------------------------------------------------------------------


class TestDates:
    @pytest.mark.parametrize(
        ("fmt", "utc", "new_york"),
        [
            ("{date_num}", "2025-11-26", "2025-11-26"),
            ("{date}", "November 26th, 2025", "November 26th, 2025"),
            ("{date_short}", "Nov 26, 2025", "Nov 26, 2025"),
            ("{date_long}", "Wednesday, November 26th, 2025", "Wednesday, November 26th, 2025"),
            ("{time}", "3:33 PM", "10:33 AM"),
            ("{time_secs}", "3:33:54 PM", "10:33:54 AM"),
            ("{date_short_pretty} at {time}", "today at 3:33 PM", "today at 10:33 AM"),
            ("{date_pretty}", "today", "today"),
            ("{date_long_pretty}", "today", "today"),
        ],
    )
    def test_tokens_in_two_zones(self, fmt: str, utc: str, new_york: str) -> None:
        assert render_mrkdwn(date_token(fmt), tz=UTC, now=NOW) == utc
        assert render_mrkdwn(date_token(fmt), tz=NY, now=NOW) == new_york

    @pytest.mark.parametrize(
        ("fmt", "utc", "new_york"),
        [
            ("{date_num}", "2025-11-26", "2025-11-25"),
            ("{date}", "November 26th, 2025", "November 25th, 2025"),
            ("{date_long}", "Wednesday, November 26th, 2025", "Tuesday, November 25th, 2025"),
            ("{time}", "3:00 AM", "10:00 PM"),
            ("{date_pretty}", "today", "yesterday"),
        ],
    )
    def test_day_boundary_depends_on_zone(self, fmt: str, utc: str, new_york: str) -> None:
        assert render_mrkdwn(date_token(fmt, TS_LATE), tz=UTC, now=NOW) == utc
        assert render_mrkdwn(date_token(fmt, TS_LATE), tz=NY, now=NOW) == new_york

    def test_pretty_tomorrow_and_far_dates(self) -> None:
        tomorrow = TS + 86400
        assert render_mrkdwn(date_token("{date_pretty}", tomorrow), now=NOW) == "tomorrow"
        far = TS + 10 * 86400
        assert render_mrkdwn(date_token("{date_short_pretty}", far), now=NOW) == "Dec 6, 2025"

    def test_ordinals(self) -> None:
        day = 86400
        first = TS + 5 * day  # Dec 1st
        assert render_mrkdwn(date_token("{date}", first), now=NOW) == "December 1st, 2025"
        assert render_mrkdwn(date_token("{date}", first + day), now=NOW) == "December 2nd, 2025"
        assert render_mrkdwn(date_token("{date}", first + 2 * day)) == "December 3rd, 2025"
        assert render_mrkdwn(date_token("{date}", first + 10 * day)) == "December 11th, 2025"
        assert render_mrkdwn(date_token("{date}", first + 20 * day)) == "December 21st, 2025"

    @pytest.mark.parametrize(
        ("delta", "expected"),
        [
            (timedelta(seconds=20), "just now"),
            (timedelta(minutes=1), "1 minute ago"),
            (timedelta(minutes=5), "5 minutes ago"),
            (timedelta(hours=3, minutes=10), "3 hours ago"),
            (timedelta(days=2), "2 days ago"),
            (timedelta(days=65), "2 months ago"),
            (timedelta(days=800), "2 years ago"),
            (-timedelta(hours=2), "in 2 hours"),
        ],
    )
    def test_ago(self, delta: timedelta, expected: str) -> None:
        now = datetime.fromtimestamp(TS, UTC) + delta
        assert render_mrkdwn(date_token("{ago}"), now=now) == expected

    def test_ago_with_naive_now_uses_tz(self) -> None:
        naive = datetime(2025, 11, 26, 10, 38, 54)  # New York wall clock
        assert render_mrkdwn(date_token("{ago}"), tz=NY, now=naive) == "5 minutes ago"

    def test_literal_text_and_unknown_tokens_kept(self) -> None:
        out = render_mrkdwn(date_token("Due {date_short} &amp; {nope}"), now=NOW)
        assert out == "Due Nov 26, 2025 & {nope}"

    def test_optional_link(self) -> None:
        out = render_mrkdwn(f"<!date^{TS}^{{date_num}}^https://x.io|fb>", now=NOW)
        assert out == "2025-11-26 (https://x.io)"

    def test_bad_timestamp_uses_fallback(self) -> None:
        assert render_mrkdwn("<!date^soon^{date}|Nov 26 &amp; later>") == "Nov 26 & later"
        assert render_mrkdwn("<!date^99999999999999999999^{date}|fb>") == "fb"
        assert render_mrkdwn("<!date^abc>") == ""


# --- blocks ----------------------------------------------------------------------------------


def button(label: str, **extra: Any) -> dict[str, Any]:
    return {"type": "button", "text": plain(label), "action_id": label.lower(), **extra}


class TestBlocks:
    def test_header_underlined(self) -> None:
        out = render_blocks([{"type": "header", "text": plain("New lead")}])
        assert out == "New lead\n========"

    def test_section_text_is_mrkdwn(self) -> None:
        block = {"type": "section", "text": md("*Acme* from <@U1>")}
        assert render_blocks([block], users=USERS) == "*Acme* from @Alice"

    def test_plain_text_is_not_parsed(self) -> None:
        block = {"type": "section", "text": plain("<@U1> &amp;")}
        assert render_blocks([block], users=USERS) == "<@U1> &amp;"

    def test_section_fields_two_columns(self) -> None:
        block = {
            "type": "section",
            "fields": [md("*Owner*\n<@U1>"), md("*Region*\nEMEA"), md("*Size*\n50")],
        }
        out = render_blocks([block], users=USERS, width=40)
        assert out.splitlines() == [
            "*Owner*              *Region*",
            "@Alice               EMEA",
            "*Size*",
            "50",
        ]

    def test_section_fields_one_per_line_when_too_wide(self) -> None:
        long = "x" * 30
        block = {"type": "section", "fields": [md(long), md("short")]}
        assert render_blocks([block], width=40).splitlines() == [long, "short"]

    @pytest.mark.parametrize(
        ("accessory", "shown"),
        [
            (button("Claim", style="primary"), "[Claim]"),
            ({"type": "overflow", "options": []}, "[⋯]"),
            ({"type": "static_select", "placeholder": plain("Pick one")}, "[Pick one ▾]"),
            (
                {
                    "type": "static_select",
                    "initial_option": {"text": plain("EMEA"), "value": "emea"},
                },
                "[EMEA ▾]",
            ),
            ({"type": "users_select", "initial_user": "U1"}, "[@Alice ▾]"),
            ({"type": "image", "image_url": "https://x.io/a.png", "alt_text": "logo"}, None),
        ],
    )
    def test_section_accessory(self, accessory: dict[str, Any], shown: str | None) -> None:
        block = {"type": "section", "text": md("Lead"), "accessory": accessory}
        expected = shown or "[image: logo]"
        assert render_blocks([block], users=USERS) == f"Lead\n{expected}"

    def test_context(self) -> None:
        block = {
            "type": "context",
            "elements": [
                {"type": "image", "image_url": "https://x.io/a.png", "alt_text": "avatar"},
                md("by <@U1>"),
                plain("2 leads"),
            ],
        }
        assert render_blocks([block], users=USERS) == "  [image: avatar] · by @Alice · 2 leads"

    def test_context_wraps_with_indent(self) -> None:
        block = {"type": "context", "elements": [md("word " * 20)]}
        lines = render_blocks([block], width=30).splitlines()
        assert len(lines) > 1
        assert all(line.startswith("  word") and len(line) <= 30 for line in lines)

    def test_divider(self) -> None:
        assert render_blocks([{"type": "divider"}], width=30) == "-" * 30
        assert render_blocks([{"type": "divider"}]) == "-" * 72

    def test_actions(self) -> None:
        block = {
            "type": "actions",
            "elements": [
                button("Claim", style="primary"),
                button("Snooze"),
                button("Reject", style="danger", confirm={"title": plain("Sure?")}),
                {"type": "static_select", "placeholder": plain("Reassign")},
                {"type": "overflow", "options": []},
            ],
        }
        out = render_blocks([block])
        assert out == ("[*Claim*]  [ Snooze ]  [!Reject!] (asks to confirm)  [Reassign ▾]  [⋯]")

    def test_actions_wrap_between_elements(self) -> None:
        block = {"type": "actions", "elements": [button(f"Button {i}") for i in range(6)]}
        lines = render_blocks([block], width=30).splitlines()
        assert lines == [
            "[ Button 0 ]  [ Button 1 ]",
            "[ Button 2 ]  [ Button 3 ]",
            "[ Button 4 ]  [ Button 5 ]",
        ]

    def test_actions_other_elements(self) -> None:
        block = {
            "type": "actions",
            "elements": [
                {"type": "datepicker", "initial_date": "2025-12-01"},
                {"type": "timepicker", "placeholder": plain("When?")},
                {
                    "type": "checkboxes",
                    "options": [
                        {"text": plain("Hot"), "value": "hot"},
                        {"text": plain("Cold"), "value": "cold"},
                    ],
                    "initial_options": [{"text": plain("Hot"), "value": "hot"}],
                },
            ],
        }
        out = render_blocks([block], width=100)
        assert out == "[date: 2025-12-01]  [time: When?]  [x] Hot  [ ] Cold"

    def test_image(self) -> None:
        block = {"type": "image", "image_url": "https://x.io/c.png", "alt_text": "chart"}
        assert render_blocks([block]) == "[image: chart]"
        titled = {**block, "title": plain("Weekly leads")}
        assert render_blocks([titled]) == "Weekly leads\n[image: chart]"

    def test_input_text_with_placeholder_optional_and_hint(self) -> None:
        block = {
            "type": "input",
            "label": plain("Notes"),
            "optional": True,
            "element": {"type": "plain_text_input", "placeholder": plain("Anything else?")},
            "hint": plain("Visible to sales"),
        }
        assert render_blocks([block]) == (
            "Notes (optional): ____ (Anything else?)\n  Visible to sales"
        )

    def test_input_variants(self) -> None:
        blocks = [
            {"type": "input", "label": plain("Company"), "element": {"type": "plain_text_input"}},
            {
                "type": "input",
                "label": plain("Email"),
                "element": {"type": "email_text_input", "initial_value": "a@b.co"},
            },
            {
                "type": "input",
                "label": plain("Owner"),
                "element": {"type": "users_select", "placeholder": plain("Choose")},
            },
            {"type": "input", "label": plain("Deck"), "element": {"type": "file_input"}},
            {"type": "input", "label": plain("Nothing")},
        ]
        assert render_blocks(blocks).splitlines() == [
            "Company: ____",
            "Email: a@b.co",
            "Owner: [Choose ▾]",
            "Deck: [file_input]",
            "Nothing: ____",
        ]

    def test_input_radio_one_option_per_line(self) -> None:
        block = {
            "type": "input",
            "label": plain("Priority"),
            "element": {
                "type": "radio_buttons",
                "options": [
                    {"text": plain("High"), "value": "h"},
                    {"text": plain("Low"), "value": "l"},
                ],
                "initial_option": {"value": "l"},
            },
        }
        assert render_blocks([block]).splitlines() == ["Priority:", "  ( ) High", "  (•) Low"]

    def test_rich_text(self) -> None:
        block = {
            "type": "rich_text",
            "elements": [
                {
                    "type": "rich_text_section",
                    "elements": [
                        {"type": "text", "text": "Hi "},
                        {"type": "user", "user_id": "U1"},
                        {"type": "text", "text": ", see "},
                        {"type": "text", "text": "this ", "style": {"bold": True}},
                        {"type": "link", "url": "https://x.io", "text": "link"},
                        {"type": "text", "text": " in "},
                        {"type": "channel", "channel_id": "C1"},
                        {"type": "text", "text": " "},
                        {"type": "emoji", "name": "wave"},
                        {"type": "text", "text": "\n"},
                    ],
                },
                {
                    "type": "rich_text_list",
                    "style": "ordered",
                    "elements": [
                        {"type": "rich_text_section", "elements": [{"type": "text", "text": "a"}]},
                        {"type": "rich_text_section", "elements": [{"type": "text", "text": "b"}]},
                    ],
                },
                {
                    "type": "rich_text_list",
                    "style": "bullet",
                    "indent": 1,
                    "elements": [
                        {"type": "rich_text_section", "elements": [{"type": "text", "text": "c"}]}
                    ],
                },
                {"type": "rich_text_quote", "elements": [{"type": "text", "text": "q"}]},
                {
                    "type": "rich_text_preformatted",
                    "elements": [{"type": "text", "text": "x = 1"}],
                },
            ],
        }
        out = render_blocks([block], users=USERS, channels=CHANNELS)
        assert out.splitlines() == [
            "Hi @Alice, see *this* link (https://x.io) in #leads :wave:",
            "1. a",
            "2. b",
            "  ◦ c",
            "> q",
            "```",
            "x = 1",
            "```",
        ]

    def test_unsupported_block(self) -> None:
        blocks = [{"type": "video", "title": plain("x")}, {"type": "divider"}]
        assert render_blocks(blocks, width=20) == "[unsupported block: video]\n" + "-" * 20

    def test_fallback_text_when_no_blocks(self) -> None:
        assert render_blocks([], fallback_text="New lead from <@U1>", users=USERS) == (
            "New lead from @Alice"
        )


class TestLayout:
    def test_wraps_long_lines_keeping_newlines(self) -> None:
        text = "alpha beta gamma delta epsilon zeta eta theta\nsecond line"
        out = render_blocks([{"type": "section", "text": md(text)}], width=20)
        assert out.splitlines() == [
            "alpha beta gamma",
            "delta epsilon zeta",
            "eta theta",
            "second line",
        ]

    def test_long_urls_are_not_split(self) -> None:
        url = "https://example.com/" + "a" * 40
        out = render_blocks([{"type": "section", "text": md(f"go <{url}>")}], width=30)
        assert out.splitlines() == ["go", url]

    def test_code_blocks_are_not_reflowed(self) -> None:
        code = "```\n" + "x = 1 " * 10 + "\n```"
        out = render_blocks([{"type": "section", "text": md(code)}], width=20)
        assert out == code.replace(" \n", "\n")

    def test_no_trailing_spaces_or_double_blank_lines(self) -> None:
        block = {"type": "section", "text": md("a   \n\n\n\nb  \n\n")}
        out = render_blocks([block, {"type": "section", "text": md("\n\nc")}])
        assert out == "a\n\nb\n\nc"


# --- messages and views ----------------------------------------------------------------------


class TestMessage:
    def test_blocks_win_over_text(self) -> None:
        message = {"text": "fallback", "blocks": [{"type": "section", "text": md("body")}]}
        assert render_message(message) == "body"

    def test_text_when_no_blocks(self) -> None:
        message = {"text": "Lead for <@U1>: <https://x.io|Acme>", "blocks": []}
        assert render_message(message, users=USERS) == "Lead for @Alice: Acme (https://x.io)"

    def test_text_is_wrapped(self) -> None:
        assert render_message({"text": "one two three four"}, width=20) == "one two three four"
        assert render_message({"text": "one two three four five six"}, width=20) == (
            "one two three four\nfive six"
        )

    def test_thread_reply_prefix(self) -> None:
        reply = {"text": "claimed", "thread_ts": "1.0", "ts": "2.0"}
        assert render_message(reply) == "↳ (in thread) claimed"
        # A reply being posted has no ts yet.
        assert render_message({"text": "claimed", "thread_ts": "1.0"}).startswith("↳")

    def test_thread_parent_has_no_prefix(self) -> None:
        assert render_message({"text": "lead", "thread_ts": "1.0", "ts": "1.0"}) == "lead"
        assert render_message({"text": "lead", "ts": "1.0"}) == "lead"

    def test_kwargs_are_passed_through(self) -> None:
        message = {"text": date_token("{time}")}
        assert render_message(message, tz=NY, now=NOW) == "10:33 AM"

    def test_legacy_attachments(self) -> None:
        message = {
            "text": "Digest",
            "attachments": [
                {"title": "Acme", "text": "by <@U1>", "fields": [{"title": "Size", "value": 50}]}
            ],
        }
        assert render_message(message, users=USERS).splitlines() == [
            "Digest",
            "| Acme",
            "| by @Alice",
            "| *Size* 50",
        ]


class TestView:
    def test_modal(self) -> None:
        view = {
            "type": "modal",
            "title": plain("Log a lead"),
            "submit": plain("Save"),
            "close": plain("Discard"),
            "blocks": [
                {"type": "section", "text": md("Tell us about the lead.")},
                {
                    "type": "input",
                    "label": plain("Company"),
                    "element": {"type": "plain_text_input", "placeholder": plain("Acme")},
                },
            ],
        }
        assert render_view(view, width=30).splitlines() == [
            "Log a lead",
            "=" * 30,
            "Tell us about the lead.",
            "Company: ____ (Acme)",
            "",
            "[ Discard ]  [*Save*]",
        ]

    def test_modal_defaults_close_to_cancel(self) -> None:
        view = {"type": "modal", "title": plain("Info"), "blocks": []}
        assert render_view(view, width=20).splitlines() == ["Info", "=" * 20, "", "[ Cancel ]"]

    def test_home_has_no_buttons(self) -> None:
        view = {"type": "home", "blocks": [{"type": "header", "text": plain("Your leads")}]}
        out = render_view(view, width=20)
        assert out.splitlines() == ["App Home", "=" * 20, "Your leads", "=" * 10]
        assert "Cancel" not in out


# --- robustness ------------------------------------------------------------------------------


class TestBrokenInput:
    def test_blocks_with_odd_shapes(self) -> None:
        blocks: list[Any] = [
            None,
            5,
            "text",
            {},
            {"type": None},
            {"type": "section", "text": None, "fields": "nope", "accessory": 3},
            {"type": "section", "text": {"type": "mrkdwn", "text": 42}},
            {"type": "actions", "elements": [None, {"type": "button"}, {"text": 1}]},
            {"type": "context", "elements": None},
            {"type": "header", "text": {"text": 7}},
            {"type": "input"},
            {"type": "image"},
            {"type": "rich_text", "elements": [{"type": "rich_text_list", "elements": None}]},
            {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [1]}]},
            {"type": "input", "label": 3, "element": {"type": "checkboxes", "options": [None]}},
            {"type": "actions", "elements": [{"type": "datetimepicker", "initial_date_time": "x"}]},
        ]
        assert render_blocks(blocks).splitlines() == [
            "[unsupported block: NoneType]",
            "[unsupported block: int]",
            "[unsupported block: str]",
            "[unsupported block: ?]",
            "[unsupported block: ?]",
            "42",
            "[ button ]  [element]",
            "7",
            "=",
            "(no label): ____",
            "[image: image]",
            "3:",
            "  [ ]",
            "[date & time: —]",
        ]

    @pytest.mark.parametrize("blocks", [None, 5, "blocks", {"type": "divider"}, [[]]])
    def test_blocks_not_a_list(self, blocks: Any) -> None:
        assert isinstance(render_blocks(blocks, fallback_text="fb"), str)
        if not isinstance(blocks, list):
            assert render_blocks(blocks, fallback_text="fb") == "fb"

    @pytest.mark.parametrize(
        ("message", "expected"),
        [
            (None, ""),
            ({}, ""),
            ({"text": None}, ""),
            ({"text": 42}, "42"),
            ({"text": "hi", "blocks": None, "attachments": "x"}, "hi"),
            ({"text": "hi", "blocks": [], "thread_ts": None}, "hi"),
            ({"text": "hi", "thread_ts": 1.5, "ts": 1.5}, "hi"),
            ({"attachments": [None, {"fallback": "fb"}]}, "| fb"),
        ],
    )
    def test_odd_messages(self, message: Any, expected: str) -> None:
        assert render_message(message) == expected

    @pytest.mark.parametrize("view", [None, {}, {"blocks": "x"}, {"type": 3, "title": 4}])
    def test_odd_views(self, view: Any) -> None:
        assert isinstance(render_view(view), str)

    def test_odd_mrkdwn_and_options(self) -> None:
        assert render_mrkdwn(None) == ""  # type: ignore[arg-type]
        assert render_mrkdwn(12) == "12"  # type: ignore[arg-type]
        assert render_mrkdwn("<>") == "<>"
        assert render_mrkdwn("<@>") == "@"
        assert render_mrkdwn("<@U1>", users=["nope"]) == "@U1"  # type: ignore[arg-type]
        assert render_mrkdwn("<@U1>", users={"U1": None}) == "@U1"  # type: ignore[dict-item]
        assert render_mrkdwn(date_token("{time}"), tz="EST", now="now") == "3:33 PM"  # type: ignore[arg-type]

    @pytest.mark.parametrize("width", [0, -5, 3, "wide", None, 10**6])
    def test_odd_widths(self, width: Any) -> None:
        block = {"type": "section", "text": md("some words to wrap here")}
        assert render_blocks([block, {"type": "divider"}], width=width).startswith("some")


# Arbitrary JSON-ish payloads, biased towards real keys and type names so the fuzzing
# reaches the element and rich-text code rather than bouncing off unknown blocks.
_KEYS = [
    "type", "text", "elements", "fields", "accessory", "element", "label", "options", "style",
    "placeholder", "initial_option", "initial_options", "initial_user", "confirm", "hint",
    "optional", "alt_text", "title", "indent", "offset", "user_id", "url", "timestamp", "format",
]  # fmt: skip
_TYPES = [
    "mrkdwn", "plain_text", "button", "overflow", "static_select", "users_select", "datepicker",
    "timepicker", "datetimepicker", "checkboxes", "radio_buttons", "plain_text_input",
    "rich_text_input", "image", "rich_text_section", "rich_text_list", "rich_text_quote",
    "rich_text_preformatted", "text", "link", "user", "channel", "date", "emoji", "broadcast",
]  # fmt: skip
_scalar = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(_TYPES)
    | st.sampled_from(["<@U1>", "&lt;", "<!date^x^{ago}|f>", "<https://x|y>", "primary"])
)
_json = st.recursive(
    _scalar,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS), children, max_size=5)
    ),
    max_leaves=25,
)
_block = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["header", "section", "context", "divider", "actions", "image", "input", "rich_text"]
        )
    },
    optional={key: _json for key in _KEYS if key != "type"},
)


@settings(max_examples=300)
@given(st.lists(_block, max_size=3), _json)
def test_fuzz_never_raises(blocks: list[dict[str, Any]], junk: Any) -> None:
    out = render_blocks(blocks)
    # The per-block safety net must not be what keeps this from raising.
    assert "[unrenderable block" not in out
    assert isinstance(render_message({"text": junk, "blocks": blocks, "thread_ts": junk}), str)
    assert isinstance(render_view({"type": "modal", "title": junk, "blocks": blocks}), str)
    assert isinstance(render_mrkdwn(junk), str)
