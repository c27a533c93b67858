"""The `/lead` grammar and lead validation: every rule, every error, and properties."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.parsing import (
    FIELDS,
    MAX_LENGTHS,
    USAGE,
    FieldError,
    LeadInput,
    ParseResult,
    _remove_controls,
    _visible,
    contact_keys,
    format_lead_text,
    is_help,
    normalize_email,
    normalize_phone,
    parse_lead_text,
    slack_unescape,
    usage,
    validate_fields,
)

EXAMPLE = (
    "Jane Doe, jane@acme.example, Acme Corp, +1 415 555 0100, hot, #SaaStr2026, wants an API demo"
)


def lead_of(text: str, personas: Sequence[str] | None = None) -> LeadInput:
    result = parse_lead_text(text, personas=personas)
    assert result.ok, result.errors
    assert result.lead is not None
    assert result.errors == ()
    return result.lead


def only_error(result: ParseResult, field: str) -> FieldError:
    """The single error of `result`, which must be about `field`."""
    assert not result.ok
    assert result.lead is None
    assert [e.field for e in result.errors] == [field], result.errors
    return result.errors[0]


def errors_of(text: str) -> dict[str, FieldError]:
    result = parse_lead_text(text)
    assert not result.ok
    assert result.lead is None
    return {e.field: e for e in result.errors}


def has_no_controls(text: str) -> bool:
    return not any(unicodedata.category(c) == "Cc" for c in text)


# --- help and unescaping ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["help", "HELP", "  Help \n", "-h", "-H", "--help", "\t--HELP "])
def test_help_words(text: str) -> None:
    assert is_help(text)


@pytest.mark.parametrize("text", ["", " ", "helpme", "-help", "h", "Jane, help"])
def test_not_help(text: str) -> None:
    assert not is_help(text)


def test_help_followed_by_words_is_help_but_a_lead_named_help_is_not() -> None:
    for text in ("help me", "Help with p1?", "-h  please", "--HELP\tme"):
        assert is_help(text), text
    assert not is_help("help me, jane@acme.example")  # a comma: a lead, its name "help me"


def test_usage_is_mrkdwn_with_the_fields_priorities_and_example() -> None:
    assert f"`/lead {EXAMPLE}`" in USAGE
    for word in (*FIELDS, "hot", "warm", "cold", "notes:"):
        assert word in USAGE
    assert "**" not in USAGE  # Slack bold is a single asterisk
    assert "`hot`, `warm` or `cold`; `warm` if you leave it out" in USAGE
    assert usage() == USAGE


def test_usage_names_the_policys_priorities_and_uses_one_in_the_example() -> None:
    text = usage(("p1", "p2"), "P2")
    assert "(`p1` or `p2`; `p2` if you leave it out)" in text
    assert "`/lead Jane Doe, jane@acme.example, Acme Corp, +1 415 555 0100, p1, #SaaStr" in text
    assert "hot" not in text and "warm" not in text and "cold" not in text
    assert "(`only`; `only` if you leave it out)" in usage(("only",), "only")
    assert "`a`, `b`, `c` or `d`;" in usage(("a", "b", "c", "d"), "a")


def test_slack_unescape_undoes_exactly_three_entities() -> None:
    assert slack_unescape("Ben &amp; Jerry &lt;3 &gt;_&lt;") == "Ben & Jerry <3 >_<"
    # &amp; goes last, so an escaped entity comes out as the literal entity text.
    assert slack_unescape("&amp;lt;b&amp;gt;") == "&lt;b&gt;"
    assert slack_unescape("&quot; &#39; &nbsp;") == "&quot; &#39; &nbsp;"
    assert slack_unescape("plain") == "plain"


# --- the grammar -----------------------------------------------------------------------------


def test_the_example() -> None:
    assert lead_of(EXAMPLE) == LeadInput(
        name="Jane Doe",
        email="jane@acme.example",
        phone="+1 415 555 0100",
        company="Acme Corp",
        priority="hot",
        event="SaaStr2026",
        notes="wants an API demo",
    )


def test_name_and_email_only_defaults_the_priority() -> None:
    assert lead_of("Jane Doe, jane@acme.example") == LeadInput(
        name="Jane Doe", email="jane@acme.example", priority="warm"
    )


def test_all_keyed_fields() -> None:
    text = (
        "name: Jane Doe, email: jane@acme.example, phone: 415-555-0100, company: Acme, "
        "title: CTO, priority: cold, event: SaaStr 2026, territory: EMEA, persona: buyer, "
        "notes: hi"
    )
    assert lead_of(text) == LeadInput(
        name="Jane Doe",
        email="jane@acme.example",
        phone="415-555-0100",
        company="Acme",
        title="CTO",
        priority="cold",
        event="SaaStr 2026",
        territory="EMEA",
        persona="buyer",
        notes="hi",
    )


def test_keys_are_case_insensitive_and_allow_spaces_around_the_colon() -> None:
    lead = lead_of("NAME : Jane,Email:jane@acme.example ,  Title  :   VP Sales  ,PRIORITY: HOT")
    assert (lead.name, lead.email, lead.title, lead.priority) == (
        "Jane",
        "jane@acme.example",
        "VP Sales",
        "hot",
    )


def test_keyed_and_unkeyed_mix() -> None:
    lead = lead_of(
        "title: CTO, Jane Doe, territory: West, jane@acme.example, Acme, warm, met twice"
    )
    assert lead == LeadInput(
        name="Jane Doe",
        email="jane@acme.example",
        company="Acme",
        title="CTO",
        territory="West",
        priority="warm",
        notes="met twice",
    )


def test_plain_fields_fill_the_slots_not_given_by_key() -> None:
    lead = lead_of("company: Acme, Jane Doe, jane@acme.example, wants a demo")
    assert (lead.name, lead.company, lead.notes) == ("Jane Doe", "Acme", "wants a demo")
    lead = lead_of("Acme, name: Jane Doe, jane@acme.example")
    assert (lead.name, lead.company) == ("Jane Doe", "Acme")


def test_the_rest_of_the_plain_fields_are_notes_in_order() -> None:
    lead = lead_of("Jane, Acme, one, jane@acme.example, two, three")
    assert lead.notes == "one, two, three"


def test_colon_after_an_unknown_word_is_plain_text() -> None:
    lead = lead_of("Jane, Acme, wants: a demo, jane@acme.example")
    assert lead.notes == "wants: a demo"
    lead = lead_of("Re: Jane, jane@acme.example, time: 3pm")
    assert (lead.name, lead.company) == ("Re: Jane", "time: 3pm")


def test_keyed_notes_take_the_rest_of_the_text_with_commas() -> None:
    lead = lead_of("Jane, jane@acme.example, notes: wants a demo, pricing, and email: later")
    assert lead.notes == "wants a demo, pricing, and email: later"
    assert lead.email == "jane@acme.example"


def test_keyed_notes_follow_unkeyed_notes() -> None:
    lead = lead_of("Jane, Acme, met at booth, jane@acme.example, Notes : call back, Tuesday")
    assert lead.notes == "met at booth, call back, Tuesday"


def test_keyed_notes_keep_newlines_and_tabs() -> None:
    lead = lead_of("Jane, jane@acme.example, notes:\n line 1,\n\tline 2  \n")
    assert lead.notes == "line 1,\n\tline 2"


def test_empty_fields_are_ignored() -> None:
    lead = lead_of(" , Jane,,  ,\t, jane@acme.example ,, , ")
    assert lead == LeadInput(name="Jane", email="jane@acme.example")
    assert lead_of("Jane, jane@acme.example, notes:   ").notes is None
    assert lead_of("Jane, jane@acme.example, title:  , company:").title is None


@pytest.mark.parametrize("word", ["hot", "HOT", "Warm", "cOLD"])
def test_priority_words_in_any_case(word: str) -> None:
    assert lead_of(f"Jane, jane@acme.example, {word}").priority == word.lower()


def test_event_by_hash_and_by_key() -> None:
    assert lead_of("Jane, jane@acme.example, #SaaStr2026").event == "SaaStr2026"
    assert lead_of("Jane, jane@acme.example, # Web Summit").event == "Web Summit"
    assert lead_of("Jane, jane@acme.example, event: #SaaStr2026").event == "SaaStr2026"
    assert lead_of("Jane, jane@acme.example, event: Summit #2").event == "Summit #2"


@pytest.mark.parametrize(
    "phone",
    ["+1 415 555 0100", "415-555-0100", "(415) 555.0100", "5550100", "+44 20 7946 0958"],
)
def test_unkeyed_phones_by_shape(phone: str) -> None:
    assert lead_of(f"Jane, {phone}") == LeadInput(name="Jane", phone=phone)


@pytest.mark.parametrize("text", ["555 010", "Booth 42", "12-34-56", "123456a", "+"])
def test_short_or_lettered_numbers_are_plain_text(text: str) -> None:
    assert lead_of(f"Jane, Acme, {text}, jane@acme.example").notes == text


def test_mailto_and_tel_are_unwrapped() -> None:
    text = (
        "Jane, <mailto:jane@acme.example|jane@acme.example>, "
        "<tel:+14155550100|+1 415 555 0100>, Acme"
    )
    lead = lead_of(text)
    assert (lead.email, lead.phone, lead.company) == (
        "jane@acme.example",
        "+1 415 555 0100",
        "Acme",
    )
    keyed = lead_of("name: Jane, email: <mailto:jane@acme.example>, phone: <tel:+14155550100>")
    assert (keyed.email, keyed.phone) == ("jane@acme.example", "+14155550100")


def test_unescaped_slack_text_parses() -> None:
    text = slack_unescape("Ben &amp; Jerry, jane@acme.example, R&amp;D &lt;3")
    assert lead_of(text).company == "R&D <3"


# --- kept exactly and cleaned ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "\u05e9\u05e8\u05d4 \u05db\u05d4\u05df\u200f",  # Hebrew with a right-to-left mark
        "Jane\u200bDoe\u200d",  # zero-width space and joiner
        "\u202eeoD enaJ",  # right-to-left override
        "Zoë 🦄 O'Brien 👩🏽‍💻",
        "山田 太郎",
        "Robert'); DROP TABLE leads;--",
        "<!channel>",
        "<@U123>",
        "<https://x|y>",
        "<!subteam^S123|@sales>",
        "&lt; literal",
        "\ufeffBOM",
    ],
)
def test_unusual_text_is_kept_exactly(name: str) -> None:
    assert lead_of(f"name: {name}, jane@acme.example").name == name
    assert lead_of(f"{name}, jane@acme.example").name == name
    assert lead_of(f"Jane, jane@acme.example, notes: {name}").notes == name
    raw = {"name": name, "email": "jane@acme.example", "notes": name, "title": name}
    lead = validate_fields(raw).lead
    assert lead is not None
    assert (lead.name, lead.notes, lead.title) == (name, name, name)


def test_mentions_and_links_with_at_signs_are_not_emails() -> None:
    lead = lead_of("Jane, jane@acme.example, Acme, ask <@U123> about it, <https://x.io/@a|profile>")
    assert lead.notes == "ask <@U123> about it, <https://x.io/@a|profile>"


def test_nul_and_control_characters_are_removed() -> None:
    lead = lead_of(
        "Ja\x00ne\x07 Doe\x1b, \x00jane@acme.example\x7f, Ac\u0085me\r\n, notes: a\x00b\r\nc\td"
    )
    assert lead == LeadInput(
        name="Jane Doe", email="jane@acme.example", company="Acme", notes="ab\nc\td"
    )


@pytest.mark.parametrize("keep", ["", "\n\t"])
def test_controls_removed_are_exactly_unicodes_category_cc(keep: str) -> None:
    # Every code point (surrogates cannot be in a str from Slack's UTF-8): the fast removal
    # must agree with Unicode's own definition of a control character.
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    expected = "".join(c for c in every if c in keep or unicodedata.category(c) != "Cc")
    assert _remove_controls(every, keep) == expected


def test_controls_do_not_shield_whitespace_from_stripping() -> None:
    assert lead_of("\x00 Jane \x00, jane@acme.example").name == "Jane"


def test_newlines_and_tabs_are_removed_outside_notes() -> None:
    lead = lead_of("Jane\n Doe, jane@acme.example, title: V\tP, Acme, extra\nline")
    assert (lead.name, lead.title, lead.notes) == ("Jane Doe", "VP", "extra\nline")


def test_ten_thousand_character_notes_are_stored_exactly() -> None:
    notes = ("naïve, 🚀 <!here> " * 1000)[:10_000].strip()
    notes = notes + "x" * (10_000 - len(notes))
    assert len(notes) == 10_000
    assert lead_of(f"Jane, jane@acme.example, notes: {notes}").notes == notes
    lead = validate_fields({"name": "Jane", "email": "jane@acme.example", "notes": notes}).lead
    assert lead is not None and lead.notes == notes


def test_values_at_the_length_limits_are_accepted() -> None:
    raw = {field: "x" * limit for field, limit in MAX_LENGTHS.items()}
    raw["email"] = "a" * 241 + "@acme.example"
    raw["phone"] = "+1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0"  # 20 digits
    assert (len(raw["email"]), len(raw["phone"])) == (254, 40)
    result = validate_fields(raw)
    assert result.ok, result.errors
    assert result.lead == LeadInput(priority="warm", **raw)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t", ",,,", " , ,\t, ", "\x00", "notes:"])
def test_empty_texts_are_errors_not_exceptions(text: str) -> None:
    errors = errors_of(text)
    assert set(errors) == {"name", "email"}
    assert errors["name"].message == "name: missing — the first plain field is the name"
    assert errors["email"].message == "email or phone: give at least one so sales can reach them"


def test_name_missing_when_only_contact_details() -> None:
    result = parse_lead_text("jane@acme.example, hot, #Expo")
    assert only_error(result, "name").message.startswith("name: missing")


def test_email_or_phone_required() -> None:
    error = only_error(parse_lead_text("Jane Doe, Acme, hot"), "email")
    assert error.message == "email or phone: give at least one so sales can reach them"
    assert lead_of("Jane Doe, 415 555 0100").phone == "415 555 0100"


def test_four_thousand_character_name_is_refused() -> None:
    name = "J" * 4000
    error = only_error(parse_lead_text(f"{name}, jane@acme.example"), "name")
    assert error.message == "name: too long (4000 characters; at most 200)"
    assert error.value == name


@pytest.mark.parametrize(
    ("field", "limit"), [(f, n) for f, n in MAX_LENGTHS.items() if f not in ("email", "phone")]
)
def test_every_length_limit(field: str, limit: int) -> None:
    raw = {"name": "Jane", "email": "jane@acme.example", field: "y" * (limit + 1)}
    error = only_error(validate_fields(raw), field)
    assert error.message == f"{field}: too long ({limit + 1} characters; at most {limit})"
    text = f"Jane, jane@acme.example, {field}: {'y' * (limit + 1)}"
    assert only_error(parse_lead_text(text), field).value == "y" * (limit + 1)


def test_long_email_and_phone_are_refused() -> None:
    email = "a" * 250 + "@acme.example"
    error = only_error(parse_lead_text(f"Jane, {email}"), "email")
    assert error.message == f"email: too long ({len(email)} characters; at most 254)"
    phone = "1" + " " * 40 + "234567"
    error = only_error(validate_fields({"name": "Jane", "phone": phone}), "phone")
    assert error.message == f"phone: too long ({len(phone)} characters; at most 40)"


@pytest.mark.parametrize(
    "email",
    [
        "jane@acme",
        "@acme.example",
        "jane@",
        "jane@@acme.example",
        "jane@bob@acme.example",
        "jane doe@acme.example",
        "jane@acme..example",
        "jane@.acme.example",
        "jane@acme.example.",
        "<jane@acme.example>",
        "Jane Doe jane@acme.example",
    ],
)
def test_invalid_emails_are_email_errors(email: str) -> None:
    for text in (f"Jane, {email}", f"Jane, email: {email}, 4155550100"):
        error = only_error(parse_lead_text(text), "email")
        assert error.value == email
        assert error.message == f'email: "{email}" is not a valid email address'


def test_invalid_email_from_the_modal() -> None:
    raw = {"name": "Jane", "email": "jane@acme, bob@acme.example"}
    error = only_error(validate_fields(raw), "email")
    assert error.message == 'email: "jane@acme, bob@acme.example" is not a valid email address'


def test_keyed_email_or_phone_without_the_shape_is_not_reinterpreted() -> None:
    error = only_error(parse_lead_text("Jane, phone: call me, jane@acme.example"), "phone")
    assert error.message == 'phone: "call me" is not a valid phone number'
    error = only_error(parse_lead_text("Jane, email: 4155550100, 4155550199"), "email")
    assert error.message == 'email: "4155550100" is not a valid email address'


@pytest.mark.parametrize("phone", ["555-0100", "1" * 20, "+(1)...2-3 4 5 6 7"])
def test_phones_with_7_to_20_digits(phone: str) -> None:
    assert validate_fields({"name": "Jane", "phone": phone}).ok


@pytest.mark.parametrize(("phone", "digits"), [("555-010", 6), ("+()", 0), ("1" * 21, 21)])
def test_phone_digit_counts(phone: str, digits: int) -> None:
    error = only_error(validate_fields({"name": "Jane", "phone": phone}), "phone")
    assert error.message == f'phone: "{phone}" has {digits} digits; a phone number has 7 to 20'


def test_unkeyed_phone_with_too_many_digits_is_a_phone_error() -> None:
    phone = "+1 415 555 0100 1234 5678 901"
    error = only_error(parse_lead_text(f"Jane, {phone}"), "phone")
    assert error.value == phone
    assert f'"{phone}"' in error.message


# (`+1 415 555 0100 ext 2` and `415/555/0100` were here: an extension and slashes are valid now.)
@pytest.mark.parametrize("phone", ["++14155550100"])
def test_keyed_phone_shape_errors(phone: str) -> None:
    error = only_error(validate_fields({"name": "Jane", "phone": phone}), "phone")
    assert error.message == f'phone: "{phone}" is not a valid phone number'


@pytest.mark.parametrize("priority", ["urgent", "HOTT", "1"])
def test_unknown_priority(priority: str) -> None:
    text = f"Jane, jane@acme.example, priority: {priority}"
    error = only_error(parse_lead_text(text), "priority")
    assert error.value == priority
    assert error.message == f'priority: "{priority}" is not one of hot, warm, cold'
    raw = {"name": "Jane", "email": "jane@acme.example", "priority": priority}
    assert only_error(validate_fields(raw), "priority").message == error.message


def test_unkeyed_unknown_priority_word_is_plain_text() -> None:
    assert lead_of("Jane, Acme, urgent, jane@acme.example").notes == "urgent"


@pytest.mark.parametrize(
    ("text", "field", "first", "second"),
    [
        ("Jane, a@acme.example, b@acme.example", "email", "a@acme.example", "b@acme.example"),
        (
            "Jane, email: a@acme.example, b@acme.example",
            "email",
            "a@acme.example",
            "b@acme.example",
        ),
        ("Jane, 4155550100, phone: 4155550199", "phone", "4155550100", "4155550199"),
        ("name: Jane, name: Joan, 4155550100", "name", "Jane", "Joan"),
        ("Jane, 4155550100, hot, cold", "priority", "hot", "cold"),
        ("Jane, 4155550100, hot, priority: urgent", "priority", "hot", "urgent"),
        ("Jane, 4155550100, #SaaStr, #Dreamforce", "event", "SaaStr", "Dreamforce"),
        ("Jane, 4155550100, event: Expo, #Expo", "event", "Expo", "Expo"),
        ("Jane, 4155550100, title: CTO, title: CEO", "title", "CTO", "CEO"),
        ("Jane, 4155550100, company: A, company: B", "company", "A", "B"),
    ],
)
def test_a_field_given_twice_names_both_values(
    text: str, field: str, first: str, second: str
) -> None:
    error = only_error(parse_lead_text(text), field)
    assert error.value == second
    assert error.message == f'{field}: given twice ("{first}" and "{second}"); keep one'


def test_three_values_give_one_error_per_extra() -> None:
    errors = parse_lead_text("Jane, 4155550100, hot, warm, cold").errors
    assert [(e.field, e.value) for e in errors] == [("priority", "warm"), ("priority", "cold")]


def test_errors_in_several_fields_are_all_reported_in_field_order() -> None:
    text = (
        f"{'n' * 201}, jane@acme, priority: urgent, phone: nope, title: {'t' * 201}, "
        f"company: {'c' * 201}"
    )
    errors = parse_lead_text(text).errors
    assert [e.field for e in errors] == ["name", "email", "phone", "company", "title", "priority"]


def test_long_values_are_shortened_in_messages() -> None:
    email = "j" * 100 + "@acme"
    error = only_error(parse_lead_text(f"Jane, {email}"), "email")
    assert error.value == email
    assert f'"{"j" * 39}…" is not a valid email address' in error.message
    assert len(error.message) < 100


def test_control_characters_never_appear_in_messages() -> None:
    result = parse_lead_text("Ja\x00ne, ja\x1bne@acme, priority: ur\x07gent, phone: 1\n2")
    assert {e.field for e in result.errors} == {"email", "priority", "phone"}
    for error in result.errors:
        assert has_no_controls(error.message)
        assert has_no_controls(error.value)
    assert 'email: "jane@acme"' in result.errors[0].message


def test_messages_never_quote_control_characters_from_the_modal() -> None:
    priorities = ("hot\n", "warm")
    raw = {"name": "Jane", "phone": "4155550100", "priority": "x"}
    error = only_error(
        validate_fields(raw, priorities=priorities, default_priority="warm"), "priority"
    )
    assert has_no_controls(error.message)


# --- validate_fields (the modal) -------------------------------------------------------------


def test_validate_fields_from_a_modal() -> None:
    raw = {
        "name": "  Jane Doe ",
        "email": "jane@acme.example",
        "phone": "",
        "company": None,
        "title": "   ",
        "priority": None,
        "event": "#Expo",
        "notes": "\n line one\n\tline two \n",
        "unknown": "ignored",
    }
    assert validate_fields(raw) == ParseResult(
        LeadInput(
            name="Jane Doe",
            email="jane@acme.example",
            priority="warm",
            event="Expo",
            notes="line one\n\tline two",
        ),
        (),
    )


def test_validate_fields_missing_everything() -> None:
    errors = validate_fields({}).errors
    assert [(e.field, e.value) for e in errors] == [("name", ""), ("email", "")]
    assert errors[0].message.startswith("name: missing — ")
    assert errors[1].message == "email or phone: give at least one so sales can reach them"


def test_validate_fields_normalises_priority_case() -> None:
    raw = {"name": "Jane", "phone": "4155550100", "priority": " COLD "}
    lead = validate_fields(raw).lead
    assert lead is not None and lead.priority == "cold"


# --- policy: priorities and personas ---------------------------------------------------------


def test_custom_priorities_and_default() -> None:
    def parse(text: str) -> ParseResult:
        return parse_lead_text(text, priorities=("P1", "P2", "P3"), default_priority="p2")

    assert parse("Jane, 4155550100").lead == LeadInput(
        name="Jane", phone="4155550100", priority="P2"
    )
    assert parse("Jane, 4155550100, p1, priority: p1").errors[0].field == "priority"
    assert parse("Jane, 4155550100, p1").lead == LeadInput(
        name="Jane", phone="4155550100", priority="P1"
    )
    # A built-in priority word the policy lacks is refused, typed with or without its key.
    for text in ("Jane, 4155550100, Acme, hot", "Jane, 4155550100, priority: hot"):
        error = only_error(parse(text), "priority")
        assert error.message == 'priority: "hot" is not one of P1, P2, P3'
    assert only_error(parse("Jane, 4155550100, COLD"), "priority").value == "COLD"
    assert parse("Jane, 4155550100, Acme, urgent").lead == LeadInput(
        name="Jane", phone="4155550100", company="Acme", priority="P2", notes="urgent"
    )


def test_default_priority_must_be_a_priority() -> None:
    with pytest.raises(ValueError):
        parse_lead_text("Jane, 4155550100", default_priority="urgent")
    with pytest.raises(ValueError):
        validate_fields({}, priorities=("a", "b"))


def test_personas_unrestricted_by_default() -> None:
    assert lead_of("Jane, 4155550100, persona: anything at all").persona == "anything at all"


def test_personas_restricted_and_canonical() -> None:
    personas = ("Economic Buyer", "Champion", "End User")
    lead = lead_of("Jane, 4155550100, persona: champion", personas=personas)
    assert lead.persona == "Champion"
    error = only_error(
        parse_lead_text("Jane, 4155550100, persona: CTO", personas=personas), "persona"
    )
    assert error.value == "CTO"
    assert error.message == 'persona: "CTO" is not one of Economic Buyer, Champion, End User'
    raw = {"name": "Jane", "phone": "4155550100", "persona": "end user"}
    modal = validate_fields(raw, personas=personas).lead
    assert modal is not None and modal.persona == "End User"
    assert validate_fields({**raw, "persona": None}, personas=personas).ok


# --- phones in everyday formats, and what only looks like one ----------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("+1 415 555 0100 ext. 12", "+1 415 555 0100 ext. 12"),
        ("+1 415 555 0100 Ext 12", "+1 415 555 0100 Ext 12"),
        ("415-555-0100 x12", "415-555-0100 x12"),
        ("415-555-0100X 12", "415-555-0100X 12"),
        ("415.555.0100 #12", "415.555.0100 #12"),
        ("415 555 0100 extension: 1234567", "415 555 0100 extension: 1234567"),
        ("+49/30/1234567", "+49/30/1234567"),
        ("(+44) 20 7946 0958", "(+44) 20 7946 0958"),
        ("０９０ １２３４ ５６７８", "090 1234 5678"),
        ("＋４９（３０）１２３４５６７", "+49(30)1234567"),
        ("٠١٢٣٤٥٦٧٨٩", "0123456789"),
        ("+44\u00a07700\u2013900123", "+44 7700-900123"),
    ],
)
def test_phones_with_extensions_slashes_and_other_digits(typed: str, stored: str) -> None:
    assert lead_of(f"Jane, {typed}, Acme") == LeadInput(name="Jane", phone=stored, company="Acme")
    assert lead_of(f"Jane, phone: {typed}").phone == stored
    lead = validate_fields({"name": "Jane", "phone": typed}).lead
    assert lead is not None and lead.phone == stored
    assert parse_lead_text(format_lead_text(lead)).lead == lead


def test_an_extension_follows_the_number_with_at_most_seven_digits() -> None:
    assert validate_fields({"name": "Jane", "phone": "415 555 0100 x1234567"}).ok
    for phone in ("415 555 0100 ext", "415 555 0100 x12345678", "ext 12 415 555 0100"):
        error = only_error(validate_fields({"name": "Jane", "phone": phone}), "phone")
        assert error.message == f'phone: "{phone}" is not a valid phone number'
    error = only_error(validate_fields({"name": "Jane", "phone": "415 555 0100 x1 2"}), "phone")
    assert error.message == 'phone: "415 555 0100 x1 2" is not a valid phone number'


def test_a_phones_key_leaves_its_extension_out() -> None:
    plain = contact_keys(None, "+1 (415) 555-0100")
    assert plain == (None, "14155550100")
    for phone in ("+1 415 555 0100 ext. 12", "+1-415-555-0100 x9", "+1 415 555 0100 #3"):
        assert contact_keys(None, phone) == plain
    assert contact_keys(None, "+1 415 555 0100 (mobile)") == (None, "14155550100")  # as before


def test_a_phones_digits_are_counted_without_the_extension() -> None:
    error = only_error(validate_fields({"name": "Jane", "phone": "555 010 x1234"}), "phone")
    assert error.message == 'phone: "555 010 x1234" has 6 digits; a phone number has 7 to 20'


@pytest.mark.parametrize(
    "field",
    [
        "+1 415 555 0100 (mobile)",
        "whatsapp +44 7700 900123",
        "call 415-555-0100 after 5",
        "1234567a",
        "ext 12 415 555 0100",
        "415 555 0100 ext 12345678",
        "budget 1 000 000",
        "＋４４ ７７００ ９００１２３ mobile",
        "<tel:+14155550100|call me> now",
        "ask <@U01234567> or 4155550100",
    ],
)
def test_an_unkeyed_field_that_only_looks_like_a_phone_is_refused(field: str) -> None:
    for text in (f"Jane, jane@acme.example, Acme, {field}", f"Jane, {field}"):
        error = only_error(parse_lead_text(text), "phone")
        assert error.value == field
        assert error.message == (
            f"phone: {_quoted(field)} looks like a phone number but is not one I can read; write "
            "it as `phone: …` (if it is no phone number, put it after `notes:`)"
        )
    # Keyed, it is what the key says: after `notes:` (or as a title) it is kept as typed.
    assert lead_of(f"Jane, jane@acme.example, notes: {field}").notes == field
    assert lead_of(f"Jane, jane@acme.example, title: {field}").title == field


def _quoted(value: str) -> str:
    return f'"{value}"' if len(value) <= 40 else f'"{value[:39]}…"'


def test_dates_and_mentions_are_text_not_phones() -> None:
    for text in (
        "26.11.2026",
        "met 26.11.2026 at the booth",
        "11/26/2026 and 2026-11-26 14:30",
        "3/4 at 10:30 for 45 min",
        "ask <@U01234567> about it",
        "see <#C01234567|booth-4>",
    ):
        lead = lead_of(f"Jane, jane@acme.example, Acme, {text}")
        assert (lead.phone, lead.notes) == (None, text)
    # A date is a phone when keyed as one, and a "date" with no such day or month is a phone.
    assert lead_of("Jane, phone: 26.11.2026").phone == "26.11.2026"
    assert lead_of("Jane, 45.67.8901").phone == "45.67.8901"
    assert lead_of("Jane, 12345-678").phone == "12345-678"


# --- keys: aliases and typos -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("tel", "phone"),
        ("Tel.", "phone"),
        ("TELEPHONE", "phone"),
        ("mobile", "phone"),
        ("Mobile number", "phone"),
        ("cell", "phone"),
        ("cell-phone", "phone"),
        ("phone number", "phone"),
        ("Phone No.", "phone"),
        ("mail", "email"),
        ("E-mail", "email"),
        ("e_mail", "email"),
        ("Email address", "email"),
    ],
)
def test_key_aliases(key: str, field: str) -> None:
    value = "+1 415 555 0100" if field == "phone" else "jane@acme.example"
    lead = lead_of(f"Jane, {key}: {value}, Acme")
    assert (getattr(lead, field), lead.company) == (value, "Acme")


def test_note_is_notes_and_takes_the_rest() -> None:
    lead = lead_of("Jane, jane@acme.example, Acme, Note: call back, Tuesday")
    assert lead.notes == "call back, Tuesday"


def test_an_alias_and_its_key_together_are_given_twice() -> None:
    error = only_error(parse_lead_text("Jane, tel: 4155550100, phone: 4155550199"), "phone")
    assert error.message == 'phone: given twice ("4155550100" and "4155550199"); keep one'


@pytest.mark.parametrize(
    ("typed", "field"),
    [
        ("titel", "title"),
        ("Compnay", "company"),
        ("emial", "email"),
        ("nmae", "name"),
        ("phoen", "phone"),
        ("prioirty", "priority"),
        ("teritory", "territory"),
        ("persoan", "persona"),
        ("evnt", "event"),
        ("nots", "notes"),
        ("comapny", "company"),
        ("compny", "company"),
        ("titles", "title"),
        ("Titel.", "title"),
        ("e-mial", "email"),
    ],
)
def test_a_key_one_typo_away_is_refused_naming_the_key(typed: str, field: str) -> None:
    result = parse_lead_text(f"Jane, jane@acme.example, {typed}: CTO, Acme")
    error = only_error(result, field)
    assert error.value == f"{typed}: CTO"
    assert error.message == (
        f'{field}: "{typed}:" is not a key; did you mean `{field}:`? If not, leave out the colon.'
    )
    # Without the colon it is text; so is a colon after a word far from every key.
    assert lead_of(f"Jane, jane@acme.example, {typed} CTO, Acme").company == f"{typed} CTO"
    far = "time: 3pm, Re: pricing, wants: a demo, date: Tuesday, met at the booth: twice"
    assert lead_of(f"Jane, jane@acme.example, Acme, {far}").notes == far


def test_a_typo_of_name_or_a_contact_key_is_the_only_error() -> None:
    # The name and the contact were probably in the refused field: no "missing" beside it.
    assert [e.field for e in parse_lead_text("nmae: Jane, jane@acme.example").errors] == ["name"]
    assert [e.field for e in parse_lead_text("Jane, emial: jane@acme.example").errors] == ["email"]
    assert [e.field for e in parse_lead_text("Jane, phoen: 4155550100").errors] == ["phone"]
    # Other typos do not stand in for a missing contact.
    errors = parse_lead_text("Jane, titel: CTO").errors
    assert [(e.field, e.value) for e in errors] == [("email", ""), ("title", "titel: CTO")]


# --- invisible values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "invisible",
    ["\u200b", "\u200b\u200c\u200d", "\u2060\ufeff", "\u200e\u200f", "\u3164", "\u00ad"],
)
def test_a_value_of_invisible_characters_is_not_given(invisible: str) -> None:
    assert set(errors_of(f"{invisible}, jane@acme.example")) == {"name"}
    assert set(errors_of(f"name: {invisible}, jane@acme.example")) == {"name"}
    # Skipped like an empty field: the next plain field is the name.
    assert lead_of(f"{invisible}, jane@acme.example, Acme").name == "Acme"
    raw = {"name": invisible, "email": "jane@acme.example", "company": invisible}
    error = only_error(validate_fields(raw), "name")
    assert error.message == "name: missing — who is the lead?"
    lead = validate_fields({**raw, "name": "Jane"}).lead
    assert lead is not None and lead.company is None


# --- format and normalise --------------------------------------------------------------------


def test_format_lead_text_is_keyed_with_notes_last() -> None:
    lead = lead_of(EXAMPLE)
    assert format_lead_text(lead) == (
        "name: Jane Doe, email: jane@acme.example, phone: +1 415 555 0100, company: Acme Corp, "
        "priority: hot, event: SaaStr2026, notes: wants an API demo"
    )
    assert parse_lead_text(format_lead_text(lead)).lead == lead


def test_format_round_trips_awkward_values() -> None:
    lead = LeadInput(
        name="hot",
        email="a:b@acme.example",
        company="#NotAnEvent",
        title="notes: not really",
        event="Expo #2",
        persona="jane@acme",
        notes="a, b,\nnotes: c\t, email: d@e.f",
    )
    assert parse_lead_text(format_lead_text(lead)).lead == lead


def test_normalize_email_and_phone() -> None:
    assert normalize_email(" Jane.Doe @Acme.Example ") == "jane.doe@acme.example"
    assert normalize_phone("+1 (415) 555-0100") == "14155550100"
    assert normalize_phone("٤١٥") == ""  # only ASCII digits are phone digits


def test_parse_result_holds_exactly_one_of_lead_or_errors() -> None:
    with pytest.raises(ValueError):
        ParseResult(None, ())
    with pytest.raises(ValueError):
        ParseResult(LeadInput(name="x"), (FieldError("name", "", "x"),))
    assert ParseResult(LeadInput(name="x"), ()).ok
    assert not ParseResult(None, (FieldError("name", "", "x"),)).ok


# --- properties ------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=200)

# Text without commas, control characters or surrounding whitespace: what a keyed value can hold.
_value_chars = st.characters(exclude_categories=("Cc", "Cs"), exclude_characters=",")
values = st.text(_value_chars, min_size=1, max_size=30).map(str.strip).filter(_visible)
notes = (
    st.text(
        st.one_of(st.characters(exclude_categories=("Cc", "Cs")), st.sampled_from("\n\t,")),
        min_size=1,
        max_size=200,
    )
    .map(str.strip)
    .filter(_visible)
)
_local = st.text("abcxyzABC0189._%+-'", min_size=1, max_size=20)
_label = st.text("abcdefghXYZ0189-", min_size=1, max_size=10)
emails = st.builds(
    lambda local, labels: f"{local}@{'.'.join(labels)}",
    _local,
    st.lists(_label, min_size=2, max_size=3),
)
phones = (
    st.builds(
        lambda plus, digits, seps: (
            ("+" if plus else "") + "".join(d + s for d, s in zip(digits, seps, strict=False))
        ),
        st.booleans(),
        st.text("0123456789", min_size=7, max_size=20),
        st.lists(st.sampled_from(["", "", " ", "-", ".", "(", ")"]), min_size=20, max_size=20),
    )
    .map(str.strip)
    .filter(lambda p: len(p) <= 40)
)
events = values.filter(lambda v: not v.startswith("#"))
optional = st.none() | values


@st.composite
def leads(draw: st.DrawFn) -> LeadInput:
    email = draw(st.none() | emails)
    phone = draw(phones if email is None else st.none() | phones)
    return LeadInput(
        name=draw(values),
        email=email,
        phone=phone,
        company=draw(optional),
        title=draw(optional),
        priority=draw(st.sampled_from(["hot", "warm", "cold"])),
        event=draw(st.none() | events),
        territory=draw(optional),
        persona=draw(optional),
        notes=draw(st.none() | notes),
    )


_key = st.sampled_from([*FIELDS, "wants", "Name", "EMAIL", "Notes", "x"])
_piece = st.one_of(
    values,
    emails,
    phones,
    st.sampled_from(["hot", "WARM", "cold", "urgent", "#", "# ", "##x", ":", "@", "<@U1>", ""]),
    values.map(lambda v: "#" + v),
    st.builds(lambda k, sp, v: f"{k}{sp}:{sp}{v}", _key, st.sampled_from(["", " ", "\t"]), values),
    st.builds(lambda e: f"<mailto:{e}|{e}>", emails),
    st.builds(lambda p: f"<tel:{normalize_phone(p)}|{p}>", phones),
    st.text(st.sampled_from(" \x00\n\t\x1f,:#@<>|"), max_size=5),
)
grammar_texts = st.lists(_piece, max_size=10).flatmap(
    lambda pieces: st.sampled_from([",", ", ", " , "]).map(lambda sep: sep.join(pieces))
)
# A name and a contact first make most of these acceptable, for the round-trip property.
likely_valid_texts = st.builds(
    lambda name, contact, rest: f"{name}, {contact}, {rest}", values, emails | phones, grammar_texts
)
any_texts = st.text() | st.text(st.sampled_from("ab @#,:<>|+-()0123456789\x00\n\t "))


def _check_result(result: ParseResult) -> None:
    assert isinstance(result, ParseResult)
    assert (result.lead is None) == bool(result.errors)
    for error in result.errors:
        assert error.field in FIELDS
        assert error.message.startswith(error.field) or error.message.startswith("email or")
        assert has_no_controls(error.message)


@PROPERTY_SETTINGS
@given(any_texts | grammar_texts | likely_valid_texts)
def test_parse_never_raises(text: str) -> None:
    _check_result(parse_lead_text(text))
    _check_result(parse_lead_text(text, personas=("Buyer", "User")))


@PROPERTY_SETTINGS
@given(leads())
def test_format_then_parse_round_trips(lead: LeadInput) -> None:
    assert parse_lead_text(format_lead_text(lead)).lead == lead


@PROPERTY_SETTINGS
@given(likely_valid_texts | grammar_texts | any_texts)
def test_whatever_parses_round_trips(text: str) -> None:
    result = parse_lead_text(text)
    if result.lead is not None:
        again = parse_lead_text(format_lead_text(result.lead))
        assert again.lead == result.lead, again.errors


@PROPERTY_SETTINGS
@given(leads())
def test_validate_fields_accepts_valid_leads(lead: LeadInput) -> None:
    raw = {field: getattr(lead, field) for field in FIELDS}
    assert validate_fields(raw).lead == lead
