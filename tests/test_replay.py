"""A `/lead` or lead form delivered again to another process (a proxy retrying the POST, a
captured request replayed inside Slack's 5 minutes) is stored once: the lead keeps its Slack
request's key, unique in the database. Each process's signature check drops a second delivery
to itself only; two bots on one database here, as behind a load balancer (see test_scaleout)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from bot.leads import events_of
from bot.slack_sim import Response
from models import OutboxItem
from tests.conftest import (
    LEADS_CHANNEL,
    MARKETER,
    TEAM,
    Bot,
    at_once,
    start_bot,
    statements_sent,
)
from tests.test_duplicates import modal_state

FORM = "application/x-www-form-urlencoded"
JANE = "Jane Doe, jane@acme.example, Acme Corp"


@pytest.fixture
def pair(database_url: str, slack, clock) -> Iterator[tuple[Bot, Bot]]:
    a, b = start_bot(database_url, slack, clock), start_bot(database_url, slack, clock)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def _again(bot: Bot, first: Response, timestamp: int) -> Response:
    """The very request `first` was (its bytes, timestamp and so signature), sent to `bot`."""
    return bot.sim.raw(first.request_body, FORM, timestamp=timestamp)


def _cards(slack) -> list[Any]:
    return [m for m in slack.messages(LEADS_CHANNEL) if not m.thread_ts]


def _stored(bot: Bot) -> tuple[int, int, int]:
    """(leads, "submitted" events, card outbox rows) in the database."""
    with bot.services.sessions() as s:
        submitted = sum(
            1 for lead in bot.leads() for e in events_of(s, lead.id) if e.kind == "submitted"
        )
        cards = s.scalar(
            select(func.count()).select_from(OutboxItem).where(OutboxItem.kind == "card")
        )
    return len(bot.leads()), submitted, cards or 0


def _replay_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "came again" in r.getMessage()
    ]


@pytest.mark.parametrize("person", ["new", "repeat"])
def test_a_lead_command_replayed_to_another_process_is_stored_once(
    pair: tuple[Bot, Bot], slack, caplog: pytest.LogCaptureFixture, person: str
) -> None:
    """A new person's lead (one statement) and a repeat's (its own path, marked as a duplicate
    of the earlier lead) alike: the replay stores nothing, posts no card, and is answered
    exactly as the first delivery was."""
    a, b = pair
    if person == "repeat":
        a.submit(JANE)  # lead #1: the replayed lead is a possible duplicate of it
    before = len(a.leads())
    caplog.set_level(logging.INFO)
    now = int(time.time())
    first = a.sim.slash_command(JANE, user_id=MARKETER, timestamp=now)
    a.settle()
    again = _again(b, first, now)
    a.settle()
    b.settle()
    assert first.status == again.status == 200
    assert again.json() == first.json()  # the receipt, word for word (with its note)
    lead = a.leads()[-1]
    assert f"Lead #{lead.id}" in again.json()["text"]
    assert ("Possible duplicate" in again.json()["text"]) == (person == "repeat")
    assert len(a.leads()) == before + 1
    assert lead.request_key is not None
    assert _stored(a) == (before + 1, before + 1, before + 1)
    assert len(_cards(slack)) == before + 1
    [warning] = _replay_warnings(caplog)
    assert f"lead {lead.id}" in warning
    logged = " ".join(r.getMessage() for r in caplog.records).lower()
    assert "jane" not in logged and "acme" not in logged


def test_a_lead_command_delivered_to_both_processes_at_once_is_stored_once(
    pair: tuple[Bot, Bot], slack
) -> None:
    """Both deliveries race, neither after the other: the unique key decides, and the one that
    lost answers with the winner's lead."""
    a, b = pair
    body = urlencode(
        {
            "team_id": TEAM,
            "channel_id": "C0EVENTS01",
            "user_id": MARKETER,
            "command": "/lead",
            "text": "Max Moe, max@acme.example",
            "response_url": slack.response_url("race"),
            "trigger_id": a.sim.new_trigger_id(),
        }
    ).encode()
    now = int(time.time())
    answers: list[Response] = []
    at_once(
        [lambda bot=bot: answers.append(bot.sim.raw(body, FORM, timestamp=now)) for bot in pair]
    )
    a.settle()
    b.settle()
    [lead] = a.leads()
    assert len(_cards(slack)) == 1
    assert len(answers) == 2 and answers[0].json() == answers[1].json()
    assert f"Lead #{lead.id}" in answers[0].json()["text"]


def test_a_trigger_id_too_long_to_keep_is_stored_as_before(pair: tuple[Bot, Bot]) -> None:
    """Longer than any of Slack's (PostgreSQL would refuse it, and the /lead with it): the lead
    is stored without a key, as leads were before keys were kept."""
    a, _ = pair
    response = a.sim.slash_command(JANE, user_id=MARKETER, trigger_id="1." * 60)
    a.settle()
    [lead] = a.leads()
    assert f"Lead #{lead.id}" in response.json()["text"]
    assert lead.request_key is None


def test_the_lead_form_replayed_to_another_process_is_stored_once(
    pair: tuple[Bot, Bot], slack, caplog: pytest.LogCaptureFixture
) -> None:
    """The form's submission carries no trigger_id of the form's own (each interaction gets a
    new one): its key is the modal's view id (and hash). The replay stores nothing, and its
    receipt, on the response_url as ever, names the first lead."""
    a, b = pair
    a.sim.slash_command(
        "", user_id=MARKETER, trigger_id="trig-form", response_url=slack.response_url("form")
    )
    a.settle()
    view = slack.modals["trig-form"]  # as Slack sends it back: its id and hash
    caplog.set_level(logging.INFO)
    now = int(time.time())
    values = modal_state({"name": "Max Moe", "email": "max@acme.example", "priority": "hot"})
    first = a.sim.view_submission(MARKETER, view, values, timestamp=now)
    a.settle()
    again = _again(b, first, now)
    a.settle()
    b.settle()
    assert first.status == again.status == 200
    [lead] = a.leads()
    assert lead.request_key == f"{view['id']}:{view['hash']}"
    assert _stored(a) == (1, 1, 1)
    assert len(_cards(slack)) == 1
    receipts = slack.wait_for_response(count=2, name="form")
    assert len(receipts) == 2
    assert receipts[0].body == receipts[1].body
    assert f"Lead #{lead.id}" in receipts[1].body["text"]
    [warning] = _replay_warnings(caplog)
    assert f"lead {lead.id}" in warning and "max" not in warning.lower()


def test_a_stored_form_sent_again_with_changes_says_so_and_keeps_them_out(
    pair: tuple[Bot, Bot], slack
) -> None:
    """The form stays open after "it may have been saved"; sent again with a field changed, it
    is the same form: nothing more is stored, and rather than a receipt that looks as if the
    changes went in, the form says where the lead is and how to correct it."""
    a, _ = pair
    a.sim.slash_command(
        "", user_id=MARKETER, trigger_id="trig-edit", response_url=slack.response_url("form")
    )
    a.settle()
    view = slack.modals["trig-edit"]
    typed = {"name": "Max Moe", "email": "max@acme.example", "priority": "hot"}
    assert a.sim.view_submission(MARKETER, view, modal_state(typed)).status == 200
    a.settle()
    [lead] = a.leads()

    fixed = a.sim.view_submission(MARKETER, view, modal_state({**typed, "name": "Max Mole"}))
    a.settle()
    assert fixed.status == 200 and fixed.json()["response_action"] == "errors"
    assert fixed.json()["errors"]["name"] == (
        f"This form was saved already, as lead #{lead.id}, with the details first sent; the "
        f"changes are not saved. Close it and type /lead edit {lead.id} to correct the lead."
    )
    assert [(kept.id, kept.name) for kept in a.leads()] == [(lead.id, "Max Moe")]
    assert _stored(a) == (1, 1, 1) and len(_cards(slack)) == 1


def test_the_same_text_as_a_new_command_is_stored_again_as_a_possible_duplicate(
    pair: tuple[Bot, Bot], slack
) -> None:
    """A resend (after "I can't tell whether it was stored", say) is a new command with a new
    trigger_id: stored, marked as a possible duplicate of the first, with its own card."""
    a, b = pair
    first = a.sim.slash_command(JANE, user_id=MARKETER)
    a.settle()
    again = b.sim.slash_command(JANE, user_id=MARKETER)
    b.settle()
    one, two = a.leads()
    assert one.request_key != two.request_key
    assert two.duplicate_of_id == one.id
    assert f"Lead #{one.id}" in first.json()["text"]
    assert (
        f"Lead #{two.id}" in again.json()["text"] and "Possible duplicate" in again.json()["text"]
    )
    assert len(_cards(slack)) == 2


def test_a_new_lead_costs_no_statement_more_for_its_key(pair: tuple[Bot, Bot]) -> None:
    """The key is checked by the INSERT that stores the lead (ON CONFLICT DO NOTHING): the
    lead stored by a request is never looked up by its key, whether it is a new person's or a
    repeat; only a replay is."""
    a, _ = pair
    pg = a.services.engine.dialect.name == "postgresql"
    storing = "WITH new_lead AS" if pg else "INSERT INTO leads"
    for text_ in ("Max Moe, max@acme.example", "Max Moe, max@acme.example"):  # new, repeat
        with statements_sent(a.services.engine) as sent:
            assert a.submit(text_).status == 200
        assert [q for q, _ in sent if q.startswith(storing) and "ON CONFLICT" in q], sent
        assert not [q for q, _ in sent if q.startswith("SELECT") and "request_key =" in q]
    assert len(a.leads()) == 2
