"""Retention (the purge job) and erasure (`leadbot forget`), on the real database and Slack."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select, update

from bot import leads, outbox, render
from bot.clock import FakeClock
from bot.parsing import LeadInput
from bot.privacy import ForgetError, forget_person, purge_expired
from bot.settings import SettingsError
from bot.slack_emulator import SlackEmulator
from models import Lead, LeadEvent, OutboxItem
from tests.conftest import (
    LEADS_CHANNEL,
    MANAGER,
    MARKETER,
    REP_A,
    REP_B,
    SECRET,
    TEAM,
    Bot,
    at_once,
    start_bot,
)
from tests.test_outcomes import elements

ROOT = Path(__file__).resolve().parent.parent
JANE = "Jane Doe, Jane.Doe@Acme.example, +1 415 555 0100, Acme Corp, hot, #SaaStr2026"
JANE_AGAIN = "Janet Doe, jane.doe@acme.EXAMPLE, Initech, warm"  # same address, other case
BOB = "Bob Roe, bob@roe.example, +44 20 7946 0000, Roe Ltd"
JANE_DETAILS = ("jane.doe@acme.example", "jane doe", "janet doe", "415 555 0100", "4155550100")


def _counts(bot: Bot, lead_id: int) -> tuple[int, int, int]:
    """(leads, events, outbox rows) for one lead id."""
    with bot.services.sessions() as s:
        return (
            s.scalar(select(func.count()).select_from(Lead).where(Lead.id == lead_id)) or 0,
            s.scalar(select(func.count()).where(LeadEvent.lead_id == lead_id)) or 0,
            s.scalar(select(func.count()).where(OutboxItem.lead_id == lead_id)) or 0,
        )


def _seed(bot: Bot, count: int, at: datetime, prefix: str = "old") -> list[int]:
    with bot.services.sessions.begin() as s:
        return [
            leads.submit(
                s,
                leads.lead_values(
                    LeadInput(name=f"{prefix} {i}", email=f"{prefix}{i}@example.com"),
                    team_id=TEAM,
                    submitted_by=MARKETER,
                    now=at,
                ),
            ).id
            for i in range(count)
        ]


def _queue_dm(bot: Bot, lead_id: int, text: str, *, later: bool = False) -> None:
    """A message about the lead waiting in the outbox (`later`: not due for an hour)."""
    due = datetime.now(UTC) + timedelta(hours=1) if later else None  # wall clock, as the outbox
    with bot.services.sessions.begin() as s:
        outbox.enqueue_message(s, REP_A, render.Message(text=text), lead_id=lead_id, now=due)


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement the engine runs inside the block."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _all_logging_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy's own loggers stay at WARNING unless told: at DEBUG they print result rows.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")


# --- retention ---------------------------------------------------------------------------------


@pytest.fixture
def retaining_bot(database_url: str, slack: SlackEmulator, clock: FakeClock) -> Iterator[Bot]:
    bot = start_bot(database_url, slack, clock, RETAIN_FOR="30d")
    try:
        yield bot
    finally:
        bot.stop()


def test_purge_deletes_only_expired_leads_with_their_events_and_outbox(
    retaining_bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    bot = retaining_bot
    bot.submit(JANE)
    [old] = bot.leads()
    _queue_dm(bot, old.id, "still queued", later=True)
    bot.clock.advance(timedelta(days=20))
    bot.submit(BOB)
    recent = bot.leads()[-1]
    edge_id = _seed(bot, 1, old.submitted_at + timedelta(seconds=1), "edge")[0]
    before = _counts(bot, old.id)
    assert before[0] == 1 and before[1] >= 2 and before[2] >= 2  # card + the queued DM

    bot.clock.advance(timedelta(days=10, seconds=1))  # `old` is now 30 days and 1 s old
    _all_logging_at_debug(caplog)
    assert bot.run_job("purge").startswith("purged 1 leads older than 30d; ")

    assert _counts(bot, old.id) == (0, 0, 0)
    assert [lead.id for lead in bot.leads()] == [recent.id, edge_id]  # exactly 30 d old stays
    assert _counts(bot, recent.id)[1:] != (0, 0)
    assert bot.run_job("purge").startswith("purged 0 leads older than 30d; ")
    logged = caplog.text.lower()
    assert f"ids {old.id}..{old.id}" in logged
    assert not [d for d in JANE_DETAILS if d in logged]


def test_purge_goes_in_batches_and_reads_nothing_but_ids(retaining_bot: Bot) -> None:
    bot = retaining_bot
    _seed(bot, 5, bot.clock.now() - timedelta(days=40))
    kept = _seed(bot, 2, bot.clock.now() - timedelta(days=29), "new")
    with _statements(bot.services.engine) as sql:
        assert purge_expired(bot.services, batch_size=2) == "purged 5 leads older than 30d"
    assert [lead.id for lead in bot.leads()] == kept
    deletes = [s for s in sql if s.startswith("DELETE FROM leads")]
    assert len(deletes) == 3  # 2 + 2 + 1, each in its own transaction
    selects = [s for s in sql if s.startswith("SELECT") and "FROM leads" in s]
    assert selects and all(s.startswith("SELECT leads.id FROM leads WHERE") for s in selects)
    assert all("leads.submitted_at <" in s for s in selects)  # the index range scan


def test_purge_is_off_without_retain_for(bot: Bot) -> None:
    bot.submit(JANE)
    bot.clock.advance(timedelta(days=3650))
    assert bot.run_job("purge").startswith("skipped: RETAIN_FOR not set; ")
    assert len(bot.leads()) == 1


# --- erasure -----------------------------------------------------------------------------------


def _card(bot: Bot, lead: Lead) -> str:
    assert lead.card_channel and lead.card_ts
    message = bot.slack.message(lead.card_channel, lead.card_ts)
    assert message is not None
    return json.dumps({"text": message.text, "blocks": message.blocks}).lower()


def test_forget_erases_every_lead_of_the_address_and_blanks_their_cards(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    bot.submit(JANE)
    bot.submit(JANE_AGAIN)
    bot.submit(BOB)
    jane, janet, bob = bot.leads()
    bot.sim.block_action(
        REP_A, "lead_claim", f"{jane.id}:1", channel_id=jane.card_channel, message_ts=jane.card_ts
    )
    bot.settle()
    assert "jane.doe@acme.example" in json.dumps(bot.slack.dms(REP_A)[0].blocks).lower()
    with bot.services.sessions() as s:
        landed = set(s.scalars(select(OutboxItem.channel).where(OutboxItem.kind == outbox.MESSAGE)))
    # Sent DMs record the DM channel they landed in (chat.update needs it, not the user id).
    assert landed == {bot.slack.dm_channel(REP_A), bot.slack.dm_channel(MARKETER)}
    jane, janet = bot.lead(jane.id), bot.lead(janet.id)
    assert "jane doe" in _card(bot, jane) and "janet doe" in _card(bot, janet)
    bob_card = _card(bot, bob)
    # Hold the outbox so a message about Jane is still pending when she is forgotten.
    bot.services.outbox.stop()
    _queue_dm(bot, janet.id, "Janet Doe wants a call back")
    _queue_dm(bot, bob.id, "Bob Roe wants a call back")

    _all_logging_at_debug(caplog)
    result = forget_person(bot.services, "  JANE.doe @Acme.Example ")
    assert result == "forgot 2 leads for that address; 2 cards and 2 messages blanked"

    assert [lead.id for lead in bot.leads()] == [bob.id]
    assert _counts(bot, jane.id) == (0, 0, 0) and _counts(bot, janet.id) == (0, 0, 0)
    for lead in (jane, janet):
        card = _card(bot, lead)
        assert "removed at the person's request" in card
        assert not [d for d in (*JANE_DETAILS, "acme", "initech", "saastr") if d in card]
        assert '"actions"' not in card  # no Claim/Release button on a forgotten lead
    assert _card(bot, bob) == bob_card
    # The claimer's DM held her contact details, the submitter's her name: both are blanked.
    for user in (REP_A, MARKETER):
        said = json.dumps([(m.text, m.blocks) for m in bot.slack.dms(user)]).lower()
        assert not [d for d in JANE_DETAILS if d in said], user
        assert "removed at the person's request" in said
    assert bot.services.outbox.drain().sent == 1  # Bob's DM goes; Janet's was dropped
    assert [m.text for m in bot.slack.dms(REP_A)][-1] == "Bob Roe wants a call back"
    assert not [m for m in bot.slack.dms(REP_A) if "Janet" in m.text]

    logged = caplog.text.lower()
    assert f"deleted leads {jane.id}, {janet.id}" in logged
    assert any(r.name.startswith("sqlalchemy") for r in caplog.records)  # rows were logged too
    assert not [d for d in JANE_DETAILS if d in logged]


@pytest.mark.parametrize("on_its_way", ["the card", "the claimer's DM", "the card's refresh"])
def test_what_was_on_its_way_when_the_lead_was_forgotten_is_blanked_once_it_lands(
    bot: Bot, on_its_way: str
) -> None:
    """forget blanks what was delivered before it. A card, a claimer's DM (her contact
    details) or a card's refresh still on its way to Slack was not yet recorded as delivered:
    it landed intact after the erasure, and a refresh put her name back on the card forget
    had just blanked."""
    if on_its_way == "the card":
        gate = bot.slack.hold("chat.postMessage", when=lambda a: a["channel"] == LEADS_CHANNEL)
        bot.sim.slash_command(JANE, user_id=MARKETER)
    else:
        bot.submit(JANE)
        [jane] = bot.leads()
        if on_its_way == "the claimer's DM":
            gate = bot.slack.hold("chat.postMessage", when=lambda a: a["channel"] == REP_A)
        else:  # forget's own blanking is an update too, and must go through
            gate = bot.slack.hold("chat.update", when=lambda a: "removed at" not in json.dumps(a))
        bot.sim.block_action(
            REP_A, "lead_claim", f"{jane.id}:1", channel_id=LEADS_CHANNEL, message_ts=jane.card_ts
        )
    assert gate.arrived.wait(10)
    assert forget_person(bot.services, "jane.doe@acme.example").startswith("forgot 1 leads")
    gate.release()
    bot.settle()
    [card] = bot.slack.messages(LEADS_CHANNEL)
    shown = json.dumps({"text": card.text, "blocks": card.blocks}).lower()
    assert "removed at the person's request" in shown
    assert not [d for d in (*JANE_DETAILS, "acme") if d in shown]
    said = json.dumps([(m.text, m.blocks) for m in bot.slack.dms(REP_A)]).lower()
    assert not [d for d in JANE_DETAILS if d in said]
    if on_its_way == "the claimer's DM":
        assert "removed at the person's request" in said


@pytest.mark.parametrize("seed", range(12))
def test_forget_while_the_card_is_being_clicked_leaves_her_details_nowhere(
    bot: Bot, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    """`forget` at the same moment as up to four clicks on her card (claims, releases, outcomes by
    reps and a manager): she is gone, nothing the bot posted still shows her details (what it
    said privately, ephemerals, Slack keeps on no one's screen for long), and a click that
    lost the race was told the lead no longer exists, not that the database was down."""
    caplog.set_level(logging.WARNING)
    rnd = random.Random(seed)
    bot.submit(JANE)
    [jane] = bot.leads()
    if rnd.random() < 0.5:
        bot.sim.block_action(
            REP_A, "lead_claim", f"{jane.id}:1", channel_id=LEADS_CHANNEL, message_ts=jane.card_ts
        )
        bot.settle()
    message = bot.slack.message(LEADS_CHANNEL, bot.lead(jane.id).card_ts)
    assert message is not None
    on_card = {"channel_id": LEADS_CHANNEL, "message_ts": message.ts}
    clicks: list[Callable[[], object]] = []
    for who in (REP_A, REP_B, MANAGER):
        for control in elements(message.blocks):
            if control["action_id"] == "lead_outcome":
                chosen = {"selected_option": rnd.choice(control["options"])}
                clicks.append(
                    lambda w=who, c=chosen: bot.sim.select(w, "lead_outcome", c, **on_card)
                )
            else:
                aid, value = control["action_id"], control["value"]
                clicks.append(
                    lambda w=who, a=aid, v=value: bot.sim.block_action(w, a, v, **on_card)
                )
    together = [
        *rnd.sample(clicks, min(4, len(clicks))),
        lambda: forget_person(bot.services, "jane.doe@acme.example"),
    ]
    at_once(together)
    bot.settle()
    assert bot.leads() == []
    shown = [(m.text, m.blocks) for m in bot.slack.messages() if not m.ephemeral_for]
    said = json.dumps(shown).lower()
    assert not [d for d in (*JANE_DETAILS, "acme") if d in said]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "database is not answering" not in json.dumps([m.text for m in bot.slack.messages()])


def test_forget_blanks_dms_whose_rows_still_name_the_user(bot: Bot) -> None:
    """Rows sent by earlier versions kept the user id they were sent to; Slack edits a DM only
    by its D… id, so forget opens the DM to learn it."""
    bot.submit(JANE)
    [jane] = bot.leads()
    bot.sim.block_action(
        REP_A, "lead_claim", f"{jane.id}:1", channel_id=jane.card_channel, message_ts=jane.card_ts
    )
    bot.settle()
    with bot.services.sessions.begin() as s:
        for user in (REP_A, MARKETER):
            s.execute(
                update(OutboxItem)
                .where(OutboxItem.channel == bot.slack.dm_channel(user))
                .values(channel=user)
            )

    result = forget_person(bot.services, "jane.doe@acme.example")
    assert result == "forgot 1 leads for that address; 1 cards and 2 messages blanked"
    for user in (REP_A, MARKETER):
        said = json.dumps([(m.text, m.blocks) for m in bot.slack.dms(user)]).lower()
        assert not [d for d in JANE_DETAILS if d in said], user
    opened = [c.args.get("users") for c in bot.slack.calls_to("conversations.open")]
    assert sorted(opened) == sorted([REP_A, MARKETER])


def test_forget_matches_non_ascii_addresses_whatever_the_case(bot: Bot) -> None:
    bot.submit("Jörg Ünal, JÖRG.Ünal@Beispiel.DE")
    bot.submit(BOB)
    assert forget_person(bot.services, "jörg.ünal@beispiel.de") == (
        "forgot 1 leads for that address; 1 cards and 0 messages blanked"
    )
    assert [lead.name for lead in bot.leads()] == ["Bob Roe"]


def test_forget_of_an_unknown_address_changes_nothing(bot: Bot) -> None:
    bot.submit(BOB)
    assert forget_person(bot.services, "nobody@example.com") == (
        "forgot 0 leads for that address; 0 cards and 0 messages blanked"
    )
    assert len(bot.leads()) == 1


def test_forget_reports_cards_it_could_not_blank(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    bot.submit(JANE)
    [jane] = bot.leads()
    bot.slack.fail("chat.update", error="message_not_found")
    caplog.set_level(logging.WARNING, logger="bot.privacy")
    assert forget_person(bot.services, "jane.doe@acme.example") == (
        "forgot 1 leads for that address; 0 cards and 0 messages blanked"
    )
    assert bot.leads() == []
    assert f"card of lead {jane.id}: message_not_found" in caplog.text


@pytest.mark.parametrize("address", ["not-an-email", "", "jane@", "@acme.example", "a@b@c.d"])
def test_forget_refuses_what_is_not_an_address(bot: Bot, address: str) -> None:
    bot.submit(BOB)
    with pytest.raises(ForgetError) as error:
        forget_person(bot.services, address)
    assert isinstance(error.value, SettingsError)  # so the CLI prints one line and exits 2
    assert "\n" not in str(error.value)
    assert len(bot.leads()) == 1


# --- the command line --------------------------------------------------------------------------


def _leadbot(*args: str, slack: SlackEmulator, database_url: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SECRET,
        "LEADS_CHANNEL": LEADS_CHANNEL,
        "SLACK_API_URL": slack.url,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "DEBUG",
    }
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_forget_refuses_a_non_address_with_one_line(
    database_url: str, slack: SlackEmulator
) -> None:
    result = _leadbot("forget", "not-an-email", slack=slack, database_url=database_url)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("leadbot: forget: that is not an email address")
    assert "not-an-email" not in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_forget_erases_and_blanks(bot: Bot) -> None:
    bot.submit(JANE)
    bot.submit(BOB)
    jane, bob = bot.leads()
    result = _leadbot(
        "forget",
        "Jane.Doe@acme.example",
        slack=bot.slack,
        database_url=bot.services.settings.database_url,
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.splitlines()[0]
        == "forgot 1 leads for that address; 1 cards and 0 messages blanked"
    )
    assert "removed at the person's request" in _card(bot, jane)
    assert [lead.id for lead in bot.leads()] == [bob.id]
    assert not [d for d in JANE_DETAILS if d in result.stderr.lower()]  # DEBUG logs included
