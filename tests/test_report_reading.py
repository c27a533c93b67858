"""How `/lead report` reads `#event` and days: as `/lead` reads `#event` (to a comma or the end),
a number ending it as the days unless leads have the whole name; and how the report names the
event it found. Over the real app (signed `/lead` over HTTP, loopback Slack) where it can be."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from bot import report
from bot.report import ReportArgs, UsageError, parse_report_args
from models import make_sessionmaker
from tests.conftest import MANAGER, Bot, statements_sent
from tests.test_report import NOW, add_lead, d, h

# --- reading the text --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # As `/lead #DMEXCO 2026, …` stores it: a year ends many event names.
        ("report #DMEXCO 2026", ReportArgs("DMEXCO 2026")),
        ("report # DMEXCO 2026", ReportArgs("DMEXCO 2026")),  # `/lead` strips `#` and spaces
        ("report #Web Summit", ReportArgs("Web Summit")),
        # A comma ends the event, as it ends a field of `/lead`.
        ("report #DMEXCO 2026, 7", ReportArgs("DMEXCO 2026", 7)),
        ("report 7, #DMEXCO 2026", ReportArgs("DMEXCO 2026", 7)),
        ("report #Day 2, 7d", ReportArgs("Day 2", 7)),
        # Days given before: a number ending the event is its name's.
        ("report 90 #Day 2", ReportArgs("Day 2", 90)),
        # Either "Day 2" or "Day" over 2 days: resolve() asks the database.
        ("report #Day 2", ReportArgs("Day 2", 30, "Day", 2)),
        ("report #DMEXCO 2026 90", ReportArgs("DMEXCO 2026 90", 30, "DMEXCO 2026", 90)),
        # Not a number of days: the name's.
        ("report #Expo 5000", ReportArgs("Expo 5000")),
        ("report #Expo 0", ReportArgs("Expo 0")),
        # An apostrophe, straight or curly, is a letter inside a word, not a quote.
        ("report #Founder’s Day", ReportArgs("Founder’s Day")),
        ("report #Founder's Day 7d", ReportArgs("Founder's Day", 7)),
        # A quote ends the name: its number stays in it.
        ('report #Web "Summit 7"', ReportArgs("Web Summit 7")),
    ],
)
def test_report_reads_the_event_as_lead_does(text: str, expected: ReportArgs) -> None:
    assert parse_report_args(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("report #a, #b", "`#b`: one `#event` at a time (already `#a`)"),
        ("report #, 7", "`#`: write the event's name after `#`"),
        ("report #x, 7, 8", "`8`: the number of days is given twice (already 7)"),
    ],
)
def test_report_reading_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_report_args(text)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("text", "subcommand"),
    [
        ("report", True),
        ("report #DMEXCO 2026, 7", True),
        ("REPORT 7, #x", True),
        ("report “#Web Summit”, 7", True),
        ("mine", True),
        ("policy", True),
        # A comma makes a lead of anything else: names may start with these words.
        ("Mine Kim, mine@x.example", False),
        ("Report Smith, r@x.example", False),
        ("policy, p@x.example", False),
        ("Jane, jane@x.example", False),
        ("", False),
    ],
)
def test_which_texts_are_subcommands(text: str, subcommand: bool) -> None:
    from handlers.subcommands import is_subcommand

    assert is_subcommand(text) is subcommand


# --- over HTTP -----------------------------------------------------------------------------------


def ask(bot: Bot, text: str) -> dict[str, Any]:
    response = bot.sim.slash_command(text, user_id=MANAGER)
    assert response.status == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    return body


def header(body: dict[str, Any]) -> str:
    return str(body["blocks"][0]["text"]["text"])


def shown(body: dict[str, Any]) -> str:
    """Every mrkdwn text of the answer, one per line."""
    texts = []
    for block in body.get("blocks") or []:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [e["text"] for e in block.get("elements") or [] if "text" in e]
    return "\n".join(texts)


def test_report_on_an_event_named_with_a_year(bot: Bot) -> None:
    """`/lead #DMEXCO 2026` stores the event "DMEXCO 2026": `/lead report #DMEXCO 2026` is its
    report, not one on "DMEXCO" over 2026 days."""
    bot.submit("Dana, dana@x.example, #DMEXCO 2026")
    bot.submit("Dev, dev@x.example, # dmexco 2026")
    assert {lead.event for lead in bot.leads()} == {"DMEXCO 2026", "dmexco 2026"}
    body = ask(bot, "report #DMEXCO 2026")
    assert header(body) == "📊 Lead report — #DMEXCO 2026, the last 30 days"
    assert "*All leads for #DMEXCO 2026*\n2 submitted → 0 claimed" in shown(body)
    assert "2026 days" not in json.dumps(body)
    assert len(bot.leads()) == 2  # nothing stored by asking


def test_report_on_an_event_with_an_apostrophe(bot: Bot) -> None:
    bot.submit("Jo, jo@x.example, #Founder’s Day")
    body = ask(bot, "report #Founder’s Day")
    assert "*All leads for #Founder’s Day*\n1 submitted" in shown(body)


def test_a_number_ending_the_event_is_the_days_unless_leads_have_that_name(bot: Bot) -> None:
    bot.clock.set(NOW)
    with bot.services.sessions.begin() as s:
        add_lead(s, "Ann", ago=d(5), event="Expo")  # in 7 days
        add_lead(s, "Bob", ago=d(20), event="Expo")  # in 30 days, not in 7
        add_lead(s, "Cy", ago=h(1), event="Day 2")
        add_lead(s, "Di", ago=h(2), event="Day")
        add_lead(s, "Ed", ago=d(60), event="Expo 90")  # outside `report #Expo 90`'s 30 days

    # No event "Expo 7": the days, and no note (the header says how it was read).
    body = ask(bot, "report #Expo 7")
    assert header(body) == "📊 Lead report — #Expo, the last 7 days"
    assert "*All leads for #Expo*\n1 submitted" in shown(body)
    assert "is read as" not in shown(body)
    # "Expo 90" has no lead in the 30 days it would be reported over: "Expo" over 90 days.
    body = ask(bot, "report #Expo 90")
    assert header(body) == "📊 Lead report — #Expo, the last 90 days"
    assert "*All leads for #Expo*\n2 submitted" in shown(body)

    # "Day 2" has leads: its report, and how to ask for the other reading.
    body = ask(bot, "report #day 2")
    assert header(body) == "📊 Lead report — #Day 2, the last 30 days"
    assert "*All leads for #Day 2*\n1 submitted" in shown(body)
    other = "For the event “day” over the last 2 days, type `/lead report 2 #day`."
    assert "`#day 2` is read as the event “Day 2”, which leads have. " + other in shown(body)
    body = ask(bot, "report 2 #Day")  # as the note says
    assert header(body) == "📊 Lead report — #Day, the last 2 days"

    # Neither reading has leads: say how it was read, and how to ask for the other.
    body = ask(bot, "report #Nowhere 7")
    note = (
        "`#Nowhere 7` is read as the event “Nowhere” over the last 7 days: no lead in the last "
        '30 days has the event “Nowhere 7”. For that event, type `/lead report #"Nowhere 7"`.'
    )
    assert f"No leads were submitted for *#Nowhere* in the last 7 days. {note}" in body["text"]
    assert note in shown(body)
    body = ask(bot, 'report #"Nowhere 7"')  # as the note says
    assert header(body) == "📊 Lead report — #Nowhere 7, the last 30 days"


def test_report_names_the_event_as_its_leads_spell_it(bot: Bot) -> None:
    """Events are grouped whatever their capitals; the report on one shows it as the leads
    have it, and as the per-event lines show it (the byte-wise first spelling), not as typed,
    with valid mrkdwn around it (no bold inside bold)."""
    bot.clock.set(NOW)
    with bot.services.sessions.begin() as s:
        add_lead(s, "Ann", ago=d(1), event="saastr2026")
        add_lead(s, "Bob", ago=d(2), event="SaaStr2026")
        add_lead(s, "Cy", ago=d(3), event="saastr2026")
        add_lead(s, "Di", ago=d(3), event="Expo")
    body = ask(bot, "report #SAASTR2026")
    assert header(body) == "📊 Lead report — #SaaStr2026, the last 30 days"
    text = shown(body)
    assert "*All leads for #SaaStr2026*\n3 submitted" in text
    assert "*#" not in text and "**" not in text  # Slack would show the stars
    assert body["text"].startswith("Lead report for #SaaStr2026, the last 30 days: 3 submitted")
    everything = shown(ask(bot, "report"))
    assert "• *SaaStr2026*: 3 submitted" in everything and "• *Expo*: 1 submitted" in everything
    # No leads: the event as typed, bold on its own.
    body = ask(bot, "report #Nowhere")
    assert "No leads were submitted for *#Nowhere* in the last 30 days." in body["text"]


def test_report_with_a_comma_is_a_report(bot: Bot) -> None:
    bot.submit("Dana, dana@x.example, #DMEXCO 2026")
    body = ask(bot, "report #DMEXCO 2026, 7")
    assert header(body) == "📊 Lead report — #DMEXCO 2026, the last 7 days"
    assert "1 submitted" in shown(body)
    assert len(bot.leads()) == 1


# --- cost ----------------------------------------------------------------------------------------


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker:
    return make_sessionmaker(engine)


def test_telling_the_readings_apart_reads_only_the_funnel_index(sessions: sessionmaker) -> None:
    """resolve()'s one query is bounded by the submitted_at range of the default days, from the
    covering index, newest first: never the history, never a lead's row."""
    with sessions.begin() as s:
        for i in range(40):
            add_lead(s, f"L{i}", ago=d(i * 3), event="Expo" if i % 2 else "Day 2")
    engine = sessions.kw["bind"]
    with sessions() as s, statements_sent(engine, "SELECT") as sent:
        asked, reading = report.resolve(s, parse_report_args("report #Day 2"), NOW, UTC)
    assert asked == ReportArgs("Day 2", 30) and reading is not None and reading.whole
    [(statement, params)] = sent
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as vacuum:
                vacuum.exec_driver_sql("VACUUM ANALYZE leads")
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_bitmapscan = off")
        prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
        plan = " ".join(str(r) for r in conn.exec_driver_sql(prefix + statement, params))
    if engine.dialect.name == "sqlite":
        assert "USING COVERING INDEX ix_leads_submitted_funnel2 (submitted_at>? AND" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # newest first from the index itself
    else:
        assert "Index Only Scan Backward using ix_leads_submitted_funnel2 " in plan, plan
