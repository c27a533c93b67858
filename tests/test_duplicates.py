"""Duplicate leads over real HTTP: the repeat is stored, marked, linked, and the owner told."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, update

from bot import duplicates, leads
from bot.clock import FakeClock
from bot.parsing import LeadInput, contact_keys
from bot.slack_emulator import SlackEmulator
from models import Lead
from tests.conftest import (
    LEADS_CHANNEL,
    MARKETER,
    REP_A,
    START,
    TEAM,
    Bot,
    plans_with_and_without_statistics,
    shown_text,
    start_bot,
    statements_sent,
)
from tests.test_handoff import _text_objects, card_json, card_of, click, modal_state

FIRST = "Jane Doe, jane@acme.example, Acme Corp, +1 (415) 555-0100, hot, #SaaStr2026"
OTHER_MARKETER = "U0MARKET02"


def submit(bot: Bot, text_: str, user: str = MARKETER) -> tuple[Lead, dict[str, Any]]:
    """Submit over HTTP; the newest lead as stored and the receipt Slack got back."""
    receipt = bot.submit(text_, user=user).json()
    return bot.leads()[-1], receipt


def duplicate_dms(bot: Bot, user: str) -> list[Any]:
    return [m for m in bot.slack.dms(user) if "same" in m.text and "possible duplicate" in m.text]


# --- the mark, the card, the receipt, the owner's DM --------------------------------------------


def test_same_email_other_case_is_marked_linked_and_the_owner_told(bot: Bot) -> None:
    first, _ = submit(bot, FIRST)
    click(bot, REP_A, "lead_claim", first)
    first = bot.lead(first.id)
    assert first.email_norm == "jane@acme.example" and first.phone_norm == "14155550100"
    assert first.card_permalink and first.duplicate_of_id is None

    bot.clock.advance(timedelta(days=3))
    second, receipt = submit(
        bot, "Jane Doe, email:   JANE@Acme.EXAMPLE  , Acme Inc, notes: met again", OTHER_MARKETER
    )

    assert second.duplicate_of_id == first.id
    assert second.email_norm == "jane@acme.example"
    # The receipt: saved anyway, marked, which lead, who has it.
    assert receipt["response_type"] == "ephemeral"
    assert f"Lead #{second.id}" in receipt["text"]
    assert "Possible duplicate" in receipt["text"] and "same email" in receipt["text"]
    assert f"<{first.card_permalink}|lead #{first.id}>" in receipt["text"]
    assert f"<@{REP_A}>" in receipt["text"]
    assert "Possible duplicate" in json.dumps(receipt["blocks"])
    # The public card: links the earlier card and names its owner, never the contact values.
    card = card_json(bot, second)
    assert f"<{first.card_permalink}|lead #{first.id}>" in card
    assert f"owned by <@{REP_A}>" in card
    assert "same email" in card
    assert "acme.example" not in card.lower() and "555" not in shown_text(card)
    # The owner hears once, through the outbox, without the new lead's contact details.
    [dm] = duplicate_dms(bot, REP_A)
    assert f"lead #{second.id}" in dm.text and f"<@{OTHER_MARKETER}>" in dm.text
    assert f"lead #{first.id}" in dm.text or f"|lead #{first.id}>" in dm.text
    assert "acme.example" not in dm.text.lower() and "555" not in shown_text(dm.text)
    with bot.services.sessions() as s:
        assert "duplicate_of" in [e.kind for e in leads.events_of(s, second.id)]


def test_unclaimed_earlier_lead_is_named_unclaimed_and_nobody_is_dmed(bot: Bot) -> None:
    first, _ = submit(bot, FIRST)
    second, receipt = submit(bot, "Jane Doe, Jane@ACME.example")

    assert second.duplicate_of_id == first.id
    assert "still unclaimed" in receipt["text"]
    assert "still unclaimed" in card_json(bot, second)
    assert bot.slack.calls_to("conversations.open") == []
    assert [m for m in bot.slack.messages() if m.channel != LEADS_CHANNEL] == []


def test_closed_earlier_lead_marks_but_does_not_disturb_its_owner(bot: Bot) -> None:
    first, _ = submit(bot, FIRST)
    click(bot, REP_A, "lead_claim", first)
    # Closing is the outcomes feature's job; here only its result (the stage) matters.
    with bot.services.sessions.begin() as s:
        s.execute(update(Lead).where(Lead.id == first.id).values(stage="won"))

    second, receipt = submit(bot, "Jane Doe, jane@acme.example")

    assert second.duplicate_of_id == first.id
    assert f"<@{REP_A}>" in receipt["text"] and "closed as won" in receipt["text"]
    assert "closed as won" in card_json(bot, second)
    assert duplicate_dms(bot, REP_A) == []
    assert len(bot.slack.dms(REP_A)) == 1  # the claim's contact DM only


def test_the_owner_who_submits_the_repeat_gets_the_receipt_not_a_dm(bot: Bot) -> None:
    first, _ = submit(bot, FIRST)
    click(bot, REP_A, "lead_claim", first)
    second, receipt = submit(bot, "Jane Doe, jane@acme.example", user=REP_A)
    assert second.duplicate_of_id == first.id and "Possible duplicate" in receipt["text"]
    assert duplicate_dms(bot, REP_A) == []


def test_same_phone_formatted_differently_is_marked(bot: Bot) -> None:
    first, _ = submit(bot, FIRST)
    second, receipt = submit(bot, "J. Doe, phone: 1.415.555.0100, someone@else.example")

    assert second.phone_norm == "14155550100"
    assert second.duplicate_of_id == first.id
    assert "same phone" in receipt["text"] and "same email" not in receipt["text"]
    assert "same phone" in card_json(bot, second)


def test_the_most_recent_earlier_match_is_the_one_linked(bot: Bot) -> None:
    first, _ = submit(bot, FIRST)
    bot.clock.advance(timedelta(hours=1))
    by_phone, _ = submit(bot, "Jane, +1 415 555 0100")
    bot.clock.advance(timedelta(hours=1))
    third, _ = submit(bot, "Jane Doe, jane@acme.example, +14155550100")
    assert by_phone.duplicate_of_id == first.id
    assert third.duplicate_of_id == by_phone.id


def test_modal_receipt_says_so_too(bot: Bot) -> None:
    first, _ = submit(bot, FIRST)
    bot.sim.slash_command(
        "", user_id=MARKETER, trigger_id="trig-1", response_url=bot.slack.response_url("modal")
    )
    bot.settle()
    [call] = bot.slack.calls_to("views.open")
    view = call.args["view"]
    bot.sim.view_submission(
        MARKETER,
        view,
        modal_state({"name": "Jane Doe", "email": " JANE@acme.example ", "priority": "hot"}),
        private_metadata=view["private_metadata"],
    )
    bot.settle()
    second = bot.leads()[-1]
    assert second.duplicate_of_id == first.id
    [receipt] = bot.slack.wait_for_response(name="modal")
    assert "Possible duplicate" in json.dumps(receipt.body) and "still unclaimed" in json.dumps(
        receipt.body
    )


# --- what is not a duplicate --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "marked"), [(timedelta(days=89), True), (timedelta(days=91), False)]
)
def test_only_leads_within_the_window_count(bot: Bot, after: timedelta, marked: bool) -> None:
    first, _ = submit(bot, FIRST)
    bot.clock.advance(after)
    second, receipt = submit(bot, "Jane Doe, jane@acme.example")
    assert second.duplicate_of_id == (first.id if marked else None)
    assert ("Possible duplicate" in receipt["text"]) is marked
    assert ("Possible duplicate" in card_json(bot, second)) is marked


def test_duplicate_window_is_a_setting(
    database_url: str, slack: SlackEmulator, clock: FakeClock
) -> None:
    bot = start_bot(database_url, slack, clock, DUPLICATE_WINDOW="2h")
    try:
        submit(bot, FIRST)
        bot.clock.advance(timedelta(hours=3))
        second, _ = submit(bot, "Jane Doe, jane@acme.example")
        assert second.duplicate_of_id is None
    finally:
        bot.stop()


def test_a_lead_of_another_workspace_is_not_matched(bot: Bot) -> None:
    # The same database serving another workspace (or an earlier install) holds the same person.
    with bot.services.sessions.begin() as s:
        other = leads.submit(
            s,
            leads.lead_values(
                LeadInput(name="Jane Doe", email="jane@acme.example", phone="+1 415 555 0100"),
                team_id="T0OTHERWS1",
                submitted_by=MARKETER,
                now=bot.clock.now(),
            ),
        )
    second, receipt = submit(bot, FIRST)
    assert other.team_id != TEAM and second.team_id == TEAM
    assert second.duplicate_of_id is None
    assert "Possible duplicate" not in receipt["text"]


def test_leads_without_email_or_phone_match_nothing(bot: Bot) -> None:
    # Missing values are NULL, and NULL never equals NULL: no false positives.
    only_email, _ = submit(bot, "Ann Lee, ann@one.example")
    only_phone, _ = submit(bot, "Bob Roe, +44 20 7946 0000")
    other_email, _ = submit(bot, "Ann Lee, ann@two.example")
    other_phone, _ = submit(bot, "Bob Roe, +44 20 7946 0001")
    for lead in (only_email, only_phone, other_email, other_phone):
        assert lead.duplicate_of_id is None
    assert (only_email.phone_norm, only_phone.email_norm) == (None, None)
    assert not any("Possible duplicate" in m.text for m in bot.slack.messages(LEADS_CHANNEL))


# --- escaping and privacy -----------------------------------------------------------------------


def test_hostile_names_are_escaped_in_the_note_and_the_dm(bot: Bot) -> None:
    first, _ = submit(
        bot, "name: <!channel> Eve & co, email: eve@evil.example, company: <@U0BOSS0001>"
    )
    click(bot, REP_A, "lead_claim", first)
    second, receipt = submit(
        bot, "name: <https://evil.example|click>, email: EVE@evil.example, event: <!here>"
    )
    assert second.duplicate_of_id == first.id
    [dm] = duplicate_dms(bot, REP_A)
    card = card_of(bot, second)
    # mrkdwn only: the card's plain_text header shows the name literally, and Slack never
    # parses plain_text.
    mrkdwn = [card.text, *(t["text"] for t in _text_objects(card.blocks, "mrkdwn"))]
    for shown in (dm.text, receipt["text"], *mrkdwn):
        for raw in ("<!channel>", "<!here>", "<@U0BOSS0001>", "<https://evil"):
            assert raw not in shown
    assert "&lt;https://evil.example|click&gt;" in dm.text and "&lt;!here&gt;" in dm.text
    assert "&lt;!channel&gt; Eve &amp; co" in dm.text


def test_only_slack_shaped_permalinks_become_links() -> None:
    lead = Lead(id=7, card_permalink="https://x.slack.com/archives/C1/p1")
    assert duplicates.link(lead) == "<https://x.slack.com/archives/C1/p1|lead #7>"
    for bad in ("javascript:alert(1)", "https://x.example/a|b", "https://x.example/<!here>", None):
        assert duplicates.link(Lead(id=7, card_permalink=bad)) == "lead #7"


@pytest.mark.parametrize(
    ("email", "phone", "keys"),
    [
        (" Jane @ACME.example ", "+1 (415) 555-0100", ("jane@acme.example", "14155550100")),
        (None, "555 01 00", (None, "5550100")),
        ("a@b.example", "555 010", ("a@b.example", None)),  # too short to tell people apart
        (None, None, (None, None)),
        ("   ", "", (None, None)),
    ],
)
def test_contact_keys(email: str | None, phone: str | None, keys: tuple[Any, Any]) -> None:
    assert contact_keys(email, phone) == keys


# --- the lookup reads the indexes, not the window's history --------------------------------------


# Enough leads that reading the window instead of a contact index would cost: on a smaller
# table without statistics PostgreSQL's estimates for the two plans tie (each clamped to one
# row), and which index it then takes depends on the indexes' sizes on disk (with the funnel
# index of migration 0010 it took that one up to ~10,000 leads); either plan is cheap there.
MANY = 30_000


def _many_people(bot: Bot, n: int = MANY) -> None:
    """`n` leads in the window, a different person each, one a minute back from START."""
    with bot.services.sessions.begin() as s:
        s.execute(
            insert(Lead),
            [
                {
                    "team_id": TEAM,
                    "name": f"n{i}",
                    "email_norm": f"p{i}@x.example",
                    "phone_norm": f"1415{i:07d}",
                    "priority": "warm",
                    "submitted_by": MARKETER,
                    "submitted_at": START - timedelta(minutes=i),
                    "status": "new",
                    "version": 1,
                    "reminders_sent": 0,
                }
                for i in range(n)
            ],
        )


def _reads_only_the_contact_indexes(plans: dict[str, str]) -> None:
    for when, plan in plans.items():
        assert "ix_leads_email_submitted" in plan, (when, plan)
        assert "ix_leads_phone_submitted" in plan, (when, plan)
        # The window's own indexes would mean reading every lead submitted in it.
        assert "ix_leads_submitted_at" not in plan, (when, plan)
        assert "ix_leads_submitted_funnel" not in plan, (when, plan)


def test_lookup_reads_the_contact_indexes_with_or_without_statistics(bot: Bot) -> None:
    """The lookup runs on every /lead: it must read the two contact indexes, never the window
    of submitted leads, also before the database has statistics for the table (PostgreSQL
    without autovacuum, or a new table's first burst)."""
    _many_people(bot)
    with bot.services.sessions() as s, statements_sent(bot.services.engine) as captured:
        found = duplicates.find_earlier(
            s,
            team_id=TEAM,
            email_norm="p42@x.example",
            phone_norm="14150000043",
            since=START - timedelta(days=90),
            until=START,
        )
    assert found is not None and found.name == "n42"  # the more recent of the two matches
    # (The engine's other users, the outbox delivering the setup's cards, may run meanwhile.)
    [(statement, params)] = [(q, p) for q, p in captured if "email_norm" in q]
    _reads_only_the_contact_indexes(
        plans_with_and_without_statistics(bot.services.engine, statement, params)
    )


def test_a_new_persons_lead_is_stored_by_the_statement_that_looks_them_up(bot: Bot) -> None:
    """A new person's /lead is stored by the statement that also does the lookup (PostgreSQL:
    one statement with its event and card; SQLite: an INSERT … SELECT in the transaction that
    writes them), with no lookup of its own: the same index reads, with or without
    statistics."""
    _many_people(bot)
    pg = bot.services.engine.dialect.name == "postgresql"
    with statements_sent(bot.services.engine) as captured:
        lead, receipt = submit(bot, "Ana New, ana@new.example, +1 415 555 0199, warm, #expo")
    assert lead.name == "Ana New" and lead.duplicate_of_id is None, receipt
    storing = "WITH new_lead AS" if pg else "INSERT INTO leads"
    [(statement, params)] = [(q, p) for q, p in captured if q.startswith(storing)]
    # No lookup of its own beside it (the lookup's WHERE compares the contact keys).
    assert not [q for q, _ in captured if q.startswith("SELECT") and "email_norm =" in q]
    _reads_only_the_contact_indexes(
        plans_with_and_without_statistics(bot.services.engine, statement, params)
    )


def test_a_repeat_is_stored_with_a_single_commit(bot: Bot) -> None:
    """A repeat takes the same first step as a new person's /lead (the INSERT that does the
    lookup, which then stores nothing) and is stored by the same transaction: on SQLite a
    second transaction waited in line for the file's writer lock again, and under load those
    repeats were the slowest answers. (On PostgreSQL the first step is one autocommit
    statement, so there too the /lead commits once.)"""
    first, _ = submit(bot, FIRST)
    bot.clock.advance(timedelta(hours=1))
    events: list[tuple[int, str]] = []

    def executed(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        events.append((threading.get_ident(), statement.lstrip()))

    def committed(_conn: Any) -> None:
        events.append((threading.get_ident(), "COMMIT"))

    engine = bot.services.engine
    event.listen(engine, "before_cursor_execute", executed)
    event.listen(engine, "commit", committed)
    try:
        second, receipt = submit(bot, FIRST, OTHER_MARKETER)
    finally:
        event.remove(engine, "before_cursor_execute", executed)
        event.remove(engine, "commit", committed)
    assert second.duplicate_of_id == first.id, receipt
    storing = ("WITH new_lead AS", "INSERT INTO leads")
    [thread] = {t for t, s in events if s.startswith(storing)}
    mine = [s for t, s in events if t == thread]
    start = next(i for i, s in enumerate(mine) if s.startswith(storing))
    inserts = [s for s in mine if s.startswith("INSERT INTO leads")]
    # SQLite: the lookup's INSERT, which stored nothing, then the repeat's; PostgreSQL: the
    # repeat's, after the one-statement attempt.
    assert len(inserts) == (1 if mine[start].startswith("WITH") else 2), mine
    assert [s for s in mine[start:] if s == "COMMIT"] == ["COMMIT"], mine
