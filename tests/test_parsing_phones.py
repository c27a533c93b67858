"""The `/lead` grammar where the submitter sees it: signed /lead (and the form) over HTTP.

Phones in everyday formats are read as phones, and never reach the public card as a company or
a note; what looks like a phone but cannot be read, a key one typo away from a known key, a
priority the policy lacks and an invisible name are refused, naming the problem, storing
nothing. Help speaks the policy's priorities.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.clock import FakeClock
from bot.slack_emulator import SlackEmulator
from models import Lead
from tests.conftest import LEADS_CHANNEL, MARKETER, Bot, shown_text, start_bot
from tests.test_handoff import card_json, modal_state

# A policy without the built-in hot/warm/cold.
P1_P2 = """
default_priority = "p2"

[priorities.p1]
means = "Asked for a demo"
claim_within = "15m"
escalate_after = 1
follow_up_within = "4h"

[priorities.p2]
means = "Worth a call"
claim_within = "2h"
escalate_after = 3
follow_up_within = "1d"
"""


@pytest.fixture
def p1_p2_bot(
    database_url: str, slack: SlackEmulator, clock: FakeClock, tmp_path: Path
) -> Iterator[Bot]:
    policy = tmp_path / "policy.toml"
    policy.write_text(P1_P2)
    running = start_bot(database_url, slack, clock, POLICY_FILE=str(policy))
    yield running
    running.stop()


def answer(bot: Bot, text: str) -> str:
    """The ephemeral answer to `/lead text`, after the bot has done everything it will."""
    response = bot.submit(text)
    assert response.status == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    return str(body["text"])


def only_lead(bot: Bot) -> Lead:
    [lead] = bot.leads()
    return lead


def assert_refused(bot: Bot, text: str, *expected: str) -> str:
    """`text` is refused with a message holding each of `expected`: nothing stored or posted."""
    said = answer(bot, text)
    assert said.startswith("❌ Not saved"), said
    for part in expected:
        assert part in said, said
    assert bot.leads() == []
    assert bot.slack.calls_to("chat.postMessage") == []
    return said


# --- phones in everyday formats are phones ---------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored", "key"),
    [
        ("+1 415 555 0100 ext. 12", "+1 415 555 0100 ext. 12", "14155550100"),
        ("+1-415-555-0100 x12", "+1-415-555-0100 x12", "14155550100"),
        ("415 555 0100 ext 12", "415 555 0100 ext 12", "4155550100"),
        ("(415) 555-0100 #12", "(415) 555-0100 #12", "4155550100"),
        ("+49/30/1234567", "+49/30/1234567", "49301234567"),
        ("(+44) 20 7946 0958", "(+44) 20 7946 0958", "442079460958"),
        ("０９０ １２３４ ５６７８", "090 1234 5678", "09012345678"),
        ("＋４９ ３０ １２３４５６７", "+49 30 1234567", "49301234567"),
        ("+44\u00a07700\u2013900123", "+44 7700-900123", "447700900123"),
        ("mobile: +44 7700 900123", "+44 7700 900123", "447700900123"),
        ("Tel: +44 7700 900123", "+44 7700 900123", "447700900123"),
        ("cell: 415 555 0100 x7", "415 555 0100 x7", "4155550100"),
        ("Phone number: 415 555 0100", "415 555 0100", "4155550100"),
        ("phone: +1 415 555 0100 extension 1234", "+1 415 555 0100 extension 1234", "14155550100"),
    ],
)
def test_phones_are_stored_as_phones_and_never_on_the_card(
    bot: Bot, typed: str, stored: str, key: str
) -> None:
    said = answer(bot, f"Raj Patel, raj@globex.example, {typed}, Globex, met at the booth")
    lead = only_lead(bot)
    assert said.startswith("✅") or f"#{lead.id}" in said, said
    assert (lead.phone, lead.phone_norm, lead.company, lead.notes) == (
        stored,
        key,
        "Globex",
        "met at the booth",
    )
    card = shown_text(card_json(bot, lead))
    for digits in stored.replace("(", " ").replace(")", " ").replace("/", " ").split():
        if sum(c.isdigit() for c in digits) >= 3:
            assert digits not in card, (digits, card)


def test_mail_e_mail_and_note_are_the_email_and_notes_keys(bot: Bot) -> None:
    answer(bot, "Jane Doe, E-mail: jane@acme.example, Acme, Note: call back Tuesday, after 3")
    lead = only_lead(bot)
    assert (lead.email, lead.company, lead.notes) == (
        "jane@acme.example",
        "Acme",
        "call back Tuesday, after 3",
    )
    answer(bot, "Joan Roe, mail: joan@acme.example")
    assert bot.leads()[-1].email == "joan@acme.example"


def test_the_same_number_with_an_extension_is_a_duplicate(bot: Bot) -> None:
    answer(bot, "Raj Patel, +1 415 555 0100 ext. 12, Globex")
    said = answer(bot, "R. Patel, phone: +1 (415) 555-0100, Globex Inc")
    first, second = bot.leads()
    assert first.phone_norm == second.phone_norm == "14155550100"
    assert second.duplicate_of_id == first.id
    assert "same phone" in said
    assert "555" not in shown_text(card_json(bot, second))


def test_a_date_is_plain_text_not_a_phone(bot: Bot) -> None:
    answer(bot, "Jane Doe, jane@acme.example, Acme, 26.11.2026")
    lead = only_lead(bot)
    assert (lead.phone, lead.phone_norm, lead.notes) == (None, None, "26.11.2026")
    answer(bot, "Joan Roe, joan@acme.example, Acme, met 2026-11-26 14:30, call 11/30/2026")
    assert bot.leads()[-1].notes == "met 2026-11-26 14:30, call 11/30/2026"


# --- what looks like a phone but is not readable is refused ---------------------------------


@pytest.mark.parametrize(
    "field",
    [
        "+1 415 555 0100 (mobile)",
        "whatsapp +44 7700 900123",
        "call 415-555-0100 after 5",
        "Tel +49 30 1234567",
        "+1 415 555 0100 ext 12345678",
        "415 555 0100 ext",
        "＋４４ ７７００ ９００１２３ mobile",
        "ask <@U0123456789> or 4155550100",
    ],
)
def test_a_phone_it_cannot_read_is_refused_naming_it(bot: Bot, field: str) -> None:
    said = assert_refused(
        bot,
        f"Raj Patel, raj@globex.example, Globex, {field}",
        "looks like a phone number but is not one I can read",
        "`phone: …`",
    )
    assert "give at least one" not in said


def test_a_phone_it_cannot_read_is_the_only_problem_named_without_an_email(bot: Bot) -> None:
    said = assert_refused(bot, "Raj Patel, +1 415 555 0100 (mobile), Globex", "phone:")
    assert "give at least one" not in said  # the refused field was the contact


def test_seven_digits_in_a_note_go_after_notes_key(bot: Bot) -> None:
    assert_refused(bot, "Jane, jane@acme.example, Acme, budget 1000000", "`notes:`")
    answer(bot, "Jane, jane@acme.example, Acme, notes: budget 1000000")
    assert only_lead(bot).notes == "budget 1000000"


# --- key typos -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "meant"),
    [
        ("Jane, jane@acme.example, titel: CTO, Acme", "title"),
        ("Jane, jane@acme.example, compnay: Acme", "company"),
        ("Jane, emial: jane@acme.example", "email"),
        ("Jane, jane@acme.example, Acme, teritory: EMEA", "territory"),
        ("nmae: Jane, jane@acme.example", "name"),
    ],
)
def test_a_key_one_typo_away_is_refused_with_the_key_it_meant(
    bot: Bot, text: str, meant: str
) -> None:
    said = assert_refused(bot, text, f"did you mean `{meant}:`?")
    assert "missing" not in said and "give at least one" not in said
    # A colon after a word far from every key is still text.
    answer(bot, "Jane, jane@acme.example, Acme, time: 3pm, Re: pricing")
    assert only_lead(bot).notes == "time: 3pm, Re: pricing"


# --- priorities and help under a policy ------------------------------------------------------


def test_help_names_the_policys_priorities_and_default(p1_p2_bot: Bot) -> None:
    for text in ("help", "help me", "HELP with priorities", "--help"):
        said = answer(p1_p2_bot, text)
        assert "`p1` or `p2`; `p2` if you leave it out" in said, said
        assert "+1 415 555 0100, p1, #SaaStr2026" in said
        assert "`hot`" not in said and "cold" not in said
    assert p1_p2_bot.leads() == []


def test_help_with_the_built_in_priorities(bot: Bot) -> None:
    said = answer(bot, "help me")
    assert "`hot`, `warm` or `cold`; `warm` if you leave it out" in said
    assert "+1 415 555 0100, hot, #SaaStr2026" in said


@pytest.mark.parametrize("word", ["hot", "Warm", "COLD"])
def test_a_built_in_priority_the_policy_lacks_is_refused(p1_p2_bot: Bot, word: str) -> None:
    assert_refused(
        p1_p2_bot,
        f"Jane, jane@acme.example, Acme, {word}",
        f'priority: "{word}" is not one of p1, p2',
    )
    answer(p1_p2_bot, "Jane, jane@acme.example, Acme, p1")
    assert only_lead(p1_p2_bot).priority == "p1"


# --- invisible names -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["\u200b", "\u200b\u200d\u2060", "\ufeff\u200e", "\u3164"])
def test_a_name_of_invisible_characters_is_a_missing_name(bot: Bot, name: str) -> None:
    assert_refused(bot, f"{name}, jane@acme.example", "name: missing")
    assert_refused(bot, f"name: {name}, jane@acme.example, #Expo", "name: missing")
    # Like an empty field, an invisible one is skipped: the next plain field is the name.
    answer(bot, f"{name}, jane@acme.example, Acme")
    assert only_lead(bot).name == "Acme"


# --- the form reads phones the same way ------------------------------------------------------


def open_form(bot: Bot) -> dict[str, object]:
    bot.sim.slash_command(
        "", user_id=MARKETER, trigger_id="trig-1", response_url=bot.slack.response_url("form")
    )
    bot.settle()
    return dict(bot.slack.calls_to("views.open")[-1].args["view"])


def test_the_form_takes_a_phone_with_an_extension_and_full_width_digits(bot: Bot) -> None:
    view = open_form(bot)
    for phone, stored in (
        ("+1 415 555 0100 ext. 12", "+1 415 555 0100 ext. 12"),
        ("０９０ １２３４ ５６７８", "090 1234 5678"),
    ):
        response = bot.sim.view_submission(
            MARKETER,
            {**view, "id": f"V0FORM{len(stored)}"},
            modal_state({"name": "Raj Patel", "phone": phone, "priority": "hot"}),
            private_metadata=str(view["private_metadata"]),
        )
        bot.settle()
        assert response.status == 200 and "errors" not in response.body
        assert bot.leads()[-1].phone == stored
    assert len(bot.leads()) == 2


def test_the_form_refuses_an_invisible_name(bot: Bot) -> None:
    view = open_form(bot)
    response = bot.sim.view_submission(
        MARKETER,
        view,
        modal_state({"name": "\u200b", "email": "jane@acme.example", "priority": "hot"}),
        private_metadata=str(view["private_metadata"]),
    )
    bot.settle()
    errors = response.json()["errors"]
    assert errors["name"].startswith("name: missing")
    assert bot.leads() == []
    assert not [
        c for c in bot.slack.calls_to("chat.postMessage") if c.args["channel"] == LEADS_CHANNEL
    ]


def test_cards_stay_free_of_every_phone_digit_in_one_go(bot: Bot) -> None:
    """The QA reproduction: a phone with an extension and a labelled mobile, two leads."""
    answer(bot, "Raj Patel, raj@globex.example, +1 415 555 0100 ext. 12, Globex")
    answer(bot, "Ana, ana@x.example, mobile: +44 7700 900123, Initech")
    for lead in bot.leads():
        card = json.dumps(shown_text(card_json(bot, lead)))
        assert "415 555" not in card and "7700 900123" not in card, (lead.company, card)
