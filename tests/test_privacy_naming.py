"""Erasure of the messages that name a lead without being about it (the managers' digest), and
the purge's clearing of delivered messages' bodies: over the real app, database and loopback
Slack, whose store shows what a manager still sees."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

import jobs.digest
import models
from bot import outbox, privacy, render
from bot.clock import FakeClock
from bot.logs import CHATTY, QUIET
from bot.privacy import GONE_TEXT, forget_person
from bot.slack_emulator import Message
from models import PENDING, SENT, OutboxItem
from tests.conftest import LEADS_CHANNEL, MANAGER, REP_A, Bot, at_once
from tests.test_privacy import retaining_bot  # noqa: F401  (a fixture)
from tests.test_report import add_lead

JANE = "Jane Doe, jane@acme.example, +1 415 555 0100, Acme Corp, hot, #SaaStr2026"
BOB = "Bob Roe, bob@roe.example, Roe Ltd, warm"
HER = ("jane doe", "acme", "jane@acme.example", "415 555 0100")
DAY = timedelta(days=1)


def _morning(clock: FakeClock, days: int = 1) -> None:
    """The clock to 09:00 UTC (DIGEST_AT) `days` days on."""
    now = clock.now()
    clock.set(datetime(now.year, now.month, now.day, 9, 0, tzinfo=UTC) + days * DAY)


def _shown(message: Message) -> str:
    return json.dumps({"text": message.text, "blocks": message.blocks}, ensure_ascii=False)


def _digests(bot: Bot) -> list[Message]:
    return [m for m in bot.slack.dms(MANAGER) if "Lead digest" in m.text]


def _payloads(bot: Bot) -> list[tuple[int, int | None, str, str | None]]:
    with bot.services.sessions() as s:
        return [
            (r.id, r.lead_id, r.status, r.payload)
            for r in s.scalars(select(OutboxItem).order_by(OutboxItem.id))
        ]


def _naming(bot: Bot) -> list[dict]:
    """The payloads of the digest rows, decoded."""
    with bot.services.sessions() as s:
        rows = s.scalars(
            select(OutboxItem.payload).where(
                OutboxItem.lead_id.is_(None), OutboxItem.kind == outbox.MESSAGE
            )
        )
        return [json.loads(p) for p in rows if p]


def _anywhere(bot: Bot, details: tuple[str, ...]) -> list[str]:
    """The details still in any outbox row."""
    stored = json.dumps([p for *_, p in _payloads(bot)], ensure_ascii=False).lower()
    return [d for d in details if d in stored]


def _production_logging(caplog: pytest.LogCaptureFixture) -> None:
    """Everything of leadbot's at DEBUG; the libraries held where bot.logs holds them whatever
    LOG_LEVEL says (SQLAlchemy at DEBUG would print the digest rows it reads, Slack's SDK the
    bodies it sends)."""
    for name in CHATTY:
        caplog.set_level(logging.INFO, logger=name)
    for name in QUIET:
        caplog.set_level(logging.WARNING, logger=name)
    caplog.set_level(logging.DEBUG)  # last: it sets the capturing handler's level too


# --- forget ------------------------------------------------------------------------------------


def test_forget_rewrites_the_digest_naming_her_in_the_outbox_and_in_slack(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    bot.submit(JANE)
    bot.submit(BOB)
    jane, bob = bot.leads()
    _morning(bot.clock)
    assert bot.run_job("digest").startswith("sent to 1 manager")
    [digest] = _digests(bot)
    assert "Jane Doe" in _shown(digest) and "Bob Roe" in _shown(digest)
    assert [p["ids"] for p in _naming(bot)] == [[jane.id, bob.id]]

    _production_logging(caplog)
    result = forget_person(bot.services, "JANE@acme.example")
    assert result == (
        "forgot 1 leads for that address; 1 cards and 0 messages blanked; "
        "1 other messages naming them rewritten"
    )
    bot.settle()

    # What the manager sees: her line is a stand-in, Bob's is untouched, nothing else changed.
    [digest] = _digests(bot)
    shown = _shown(digest)
    assert not [d for d in HER if d in shown.lower()]
    assert f"#{jane.id} (erased)" in shown and "*Bob Roe* (Roe Ltd)" in shown
    assert digest.updated_count == 1
    assert "Unclaimed backlog (2)" in shown  # the figures stay as they were sent
    # What leadbot keeps: nothing of her in any row (copy-db copies them as they are).
    assert _anywhere(bot, HER) == []
    assert [p["ids"] for p in _naming(bot)] == [[bob.id]]
    # Forgetting Bob later rewrites the same digest again, from the rewritten row.
    forget_person(bot.services, "bob@roe.example")
    bot.settle()
    [digest] = _digests(bot)
    shown = _shown(digest)
    assert f"#{jane.id} (erased)" in shown and f"#{bob.id} (erased)" in shown
    assert "Bob Roe" not in shown and "Roe Ltd" not in shown
    logged = caplog.text.lower()
    assert not [d for d in (*HER, "bob roe") if d in logged]
    assert f"deleted leads {jane.id}" in logged


def test_every_line_of_the_digest_naming_her_goes_and_no_one_else_s(bot: Bot) -> None:
    """Her leads in each of the digest's lists (the backlog, claimed late, past due, cards not
    posted), with a name longer than the lines' 60-character cut and a company with
    parentheses and a `#7`; others on the same lines and in the same lists stay named."""
    long_name = "Zelda Quuxworth-Longname " + "x" * 60
    company = "Quux (EU) #7 Corp"
    h = timedelta(hours=1)
    with bot.services.sessions.begin() as s:
        hers = [
            add_lead(s, long_name, ago=3 * h),  # unclaimed and past due: backlog and SLA
            add_lead(s, long_name, ago=5 * h, claim_after=2 * h),  # claimed late
            add_lead(s, long_name, ago=6 * h, card_error="not_in_channel"),
        ]
        others = [
            add_lead(s, "Other Backlog", ago=2 * h),
            add_lead(s, "Other Late", ago=4 * h, claim_after=3 * h),
            add_lead(s, "Other Failed A", ago=7 * h, card_error="not_in_channel"),
            add_lead(s, "Other Failed B", ago=5 * h, card_error="not_in_channel"),
        ]
        for lead in hers:
            lead.email, lead.company = "zelda@quux.example", company
    bot.clock.set(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    assert bot.run_job("digest").startswith("sent to 1 manager")
    [before] = _digests(bot)
    # In the backlog (twice), past due, claimed late and among the cards not posted.
    assert _shown(before).count("Zelda") >= 5
    assert "Other Failed A" in _shown(before) and "Other Failed B" in _shown(before)

    forget_person(bot.services, "zelda@quux.example")
    bot.settle()
    [after] = _digests(bot)
    shown = _shown(after)
    for fragment in ("Zelda", "Quuxworth", "xxxxxxxx", "Quux", "(EU)", "#7 Corp"):
        assert fragment not in shown, fragment
    assert _anywhere(bot, ("zelda", "quux")) == []
    for lead in hers:
        assert f"#{lead.id} (erased)" in shown
    for lead in others:
        assert f"*{lead.name}* (Acme)" in shown, lead.name
    # On the "Leads:" line of the cards not posted, hers is cut out between the other two.
    [line] = [line for text in _texts(after) for line in text.split("\n") if "Leads:" in line]
    assert line.count("Other Failed") == 2 and line.count(", ") == 2, line
    assert after.blocks is not None and before.blocks is not None
    assert len(after.blocks) == len(before.blocks)  # the same sections, her lines stand-ins


def _texts(message: Message) -> list[str]:
    return [b["text"]["text"] for b in message.blocks or [] if isinstance(b.get("text"), dict)]


def test_a_digest_on_its_way_when_she_is_forgotten_is_rewritten_once_it_lands(bot: Bot) -> None:
    """The digest DM is in the air (posted, Slack not yet answered) when forget runs: the row
    is rewritten, but Slack gets the old body; its edit waits for the post to land."""
    bot.submit(JANE)
    [jane] = bot.leads()
    _morning(bot.clock)
    gate = bot.slack.hold("chat.postMessage", when=lambda a: a["channel"] == MANAGER)
    assert jobs.digest.run(bot.services).startswith("sent to 1 manager")
    assert gate.arrived.wait(10)
    forget_person(bot.services, "jane@acme.example")
    gate.release()
    bot.settle()
    [digest] = _digests(bot)
    assert f"#{jane.id} (erased)" in _shown(digest)
    assert not [d for d in HER if d in _shown(digest).lower()]
    assert digest.updated_count == 1


def test_a_digest_still_queued_when_she_is_forgotten_goes_out_without_her(bot: Bot) -> None:
    bot.submit(JANE)
    bot.submit(BOB)
    jane, _ = bot.leads()
    bot.services.outbox.stop()  # the digest waits in the outbox
    _morning(bot.clock)
    assert jobs.digest.run(bot.services).startswith("sent to 1 manager")
    forget_person(bot.services, "jane@acme.example")
    assert bot.services.outbox.drain().sent == 1  # the digest, and no edit: nothing to edit
    [digest] = _digests(bot)
    assert f"#{jane.id} (erased)" in _shown(digest) and "Bob Roe" in _shown(digest)
    assert not [d for d in HER if d in _shown(digest).lower()]
    assert digest.updated_count == 0
    assert bot.slack.calls_to("chat.update")[-1].args["channel"] == LEADS_CHANNEL  # her card


def test_a_lead_forgotten_while_the_digest_is_written_is_not_in_it(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest reads its leads, then queues its DMs in another transaction: forget comes in
    between. Her row is gone before the DMs are queued, so forget cannot find them: the digest
    must leave her out itself."""
    bot.submit(JANE)
    bot.submit(BOB)
    jane, bob = bot.leads()
    compose = jobs.digest.with_short_cards

    def forget_meanwhile(*args: object) -> render.Message:
        forget_person(bot.services, "jane@acme.example")
        return compose(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs.digest, "with_short_cards", forget_meanwhile)
    _morning(bot.clock)
    assert bot.run_job("digest").startswith("sent to 1 manager")
    [digest] = _digests(bot)
    assert not [d for d in HER if d in _shown(digest).lower()]
    assert f"#{jane.id} (erased)" in _shown(digest) and "Bob Roe" in _shown(digest)
    assert [p["ids"] for p in _naming(bot)] == [[bob.id]]
    assert _anywhere(bot, HER) == []


def _forget_waits(bot: Bot) -> bool:
    """Whether a forget in another thread waits for the digest's transaction: PostgreSQL, on
    the lead rows it locked; SQLite, for the file's writer lock (models.WriterQueue)."""
    if bot.services.engine.dialect.name == "sqlite":
        return any(queue.waiting for queue in models._WRITE_LOCKS.values())
    with bot.services.engine.connect() as probe:
        return bool(
            probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
        )


def test_a_lead_forgotten_while_the_digest_is_being_queued_is_rewritten_by_the_forget(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """forget comes while the digest's transaction is queueing it (her lead read and found
    there): it must wait for that transaction and then find the digest's row, not miss a row
    it cannot see yet (PostgreSQL: the digest holds her row FOR SHARE until it commits)."""
    bot.submit(JANE)
    bot.submit(BOB)
    jane, bob = bot.leads()
    naming_row = privacy.naming_row
    forgets: list[threading.Thread] = []

    def forget_now(channel: str, message: render.Message) -> dict:
        if not forgets:
            forgets.append(
                threading.Thread(target=forget_person, args=(bot.services, "jane@acme.example"))
            )
            forgets[0].start()
            deadline = time.monotonic() + 5
            while not _forget_waits(bot) and time.monotonic() < deadline:
                time.sleep(0.01)
        return naming_row(channel, message)

    monkeypatch.setattr(privacy, "naming_row", forget_now)
    _morning(bot.clock)
    assert jobs.digest.run(bot.services).startswith("sent to 1 manager")
    forgets[0].join(10)
    bot.settle()
    assert [lead.id for lead in bot.leads()] == [bob.id]
    [digest] = _digests(bot)
    assert not [d for d in HER if d in _shown(digest).lower()]
    assert f"#{jane.id} (erased)" in _shown(digest) and "Bob Roe" in _shown(digest)
    assert _anywhere(bot, HER) == []


def test_a_digest_queued_by_an_earlier_version_is_rewritten_too(bot: Bot) -> None:
    """Rows queued before this version name no ids: their bodies are read for `#12 *Name*`."""
    bot.submit(JANE)
    bot.submit(BOB)
    _, bob = bot.leads()
    _morning(bot.clock)
    bot.run_job("digest")
    with bot.services.sessions.begin() as s:
        [row] = s.scalars(select(OutboxItem).where(OutboxItem.lead_id.is_(None)))
        old = json.loads(row.payload)
        del old["ids"]
        row.payload = json.dumps(old)
    forget_person(bot.services, "jane@acme.example")
    bot.settle()
    [digest] = _digests(bot)
    assert not [d for d in HER if d in _shown(digest).lower()]
    assert "Bob Roe" in _shown(digest)
    assert [p["ids"] for p in _naming(bot)] == [[bob.id]]  # it names its ids from now on


# --- the purge ---------------------------------------------------------------------------------


def test_purge_rewrites_the_digests_naming_the_leads_it_deletes(retaining_bot: Bot) -> None:  # noqa: F811
    bot = retaining_bot
    bot.submit(JANE)
    [jane] = bot.leads()
    _morning(bot.clock)
    bot.run_job("digest")  # names Jane
    bot.clock.advance(19 * DAY)
    bot.submit(BOB)
    bob = bot.leads()[-1]
    _morning(bot.clock)
    bot.run_job("digest")  # names Jane (still unclaimed) and Bob
    assert [p["ids"] for p in _naming(bot)] == [[jane.id], [jane.id, bob.id]]

    bot.clock.set(jane.submitted_at + timedelta(days=30, seconds=1))
    assert bot.run_job("purge").startswith(
        "purged 1 leads older than 30d; 2 other messages naming them rewritten; "
    )
    first, second = _digests(bot)
    for digest in (first, second):
        assert not [d for d in HER if d in _shown(digest).lower()]
        assert f"#{jane.id} (erased)" in _shown(digest) and digest.updated_count == 1
    assert "Bob Roe" in _shown(second)
    assert _anywhere(bot, HER) == []
    assert [p["ids"] for p in _naming(bot)] == [[], [bob.id]]


def _age(bot: Bot, ids: list[int], by: timedelta) -> None:
    """Make outbox rows look queued `by` earlier (the outbox's times are the wall clock's)."""
    with bot.services.sessions.begin() as s:
        for row in s.scalars(select(OutboxItem).where(OutboxItem.id.in_(ids))):
            row.created_at -= by


def test_purge_clears_the_bodies_of_old_delivered_messages_and_what_they_named_stays_findable(
    bot: Bot,
) -> None:
    """Without RETAIN_FOR, bodies are kept 30 days. A delivered DM keeps where it went (forget
    still blanks it); a digest keeps the ids it names (forget still finds it, and replaces it
    whole); a queued message keeps its body; edits delivered go."""
    bot.submit(JANE)
    bot.submit(BOB)
    jane, _ = bot.leads()
    bot.sim.block_action(
        REP_A, "lead_claim", f"{jane.id}:1", channel_id=jane.card_channel, message_ts=jane.card_ts
    )
    bot.settle()
    _morning(bot.clock)
    bot.run_job("digest")  # names Bob (unclaimed)
    forget_person(bot.services, "bob@roe.example")  # a delivered edit, of that digest
    bot.settle()
    rows = _payloads(bot)
    assert [kind for kind in _kinds(bot) if kind == outbox.EDIT] == [outbox.EDIT]
    with bot.services.sessions.begin() as s:  # and one message still waiting, due later
        outbox.enqueue_message(
            s,
            REP_A,
            render.Message(text="later"),
            lead_id=jane.id,
            now=datetime.now(UTC) + timedelta(days=1),
        )
    _age(bot, [i for i, *_ in rows], timedelta(days=30, minutes=1))

    her_dms = [p for _, lead_id, status, p in rows if lead_id == jane.id and p and "text" in p]
    summary = bot.run_job("purge")
    cleared = len(her_dms) + 1  # and the digest
    assert summary.startswith(
        f"skipped: RETAIN_FOR not set; {cleared} message bodies older than 30d "
    )
    after = {i: (lead_id, status, payload) for i, lead_id, status, payload in _payloads(bot)}
    kinds = dict(zip([i for i in after], _kinds(bot), strict=True))
    for i, (lead_id, status, payload) in after.items():
        if kinds[i] == outbox.MESSAGE and status == SENT:
            assert payload is None, (lead_id, payload)  # the DMs about Jane; the digest too:
            # it names no lead any more (Bob's line is a stand-in since he was forgotten)
    assert outbox.EDIT not in _kinds(bot)
    [waiting] = [p for _, status, p in after.values() if status == PENDING]
    assert json.loads(waiting)["text"] == "later"
    assert "message bodies older than 30d: cleared already on " in bot.run_job("purge")

    # Forget still blanks Jane's DMs: where they went is kept.
    result = forget_person(bot.services, "jane@acme.example")
    assert result.startswith(
        f"forgot 1 leads for that address; 1 cards and {len(her_dms)} messages blanked"
    )
    said = json.dumps([_shown(m) for m in bot.slack.dms(REP_A)], ensure_ascii=False).lower()
    assert not [d for d in HER if d in said]


def _kinds(bot: Bot) -> list[str]:
    with bot.services.sessions() as s:
        return list(s.scalars(select(OutboxItem.kind).order_by(OutboxItem.id)))


def test_a_digest_whose_body_was_cleared_is_replaced_whole_when_a_lead_it_named_goes(
    bot: Bot,
) -> None:
    bot.submit(JANE)
    bot.submit(BOB)
    jane, bob = bot.leads()
    _morning(bot.clock)
    bot.run_job("digest")
    _age(bot, [i for i, *_ in _payloads(bot)], timedelta(days=31))
    bot.run_job("purge")
    assert [p["ids"] for p in _naming(bot)] == [[jane.id, bob.id]]
    assert "text" not in _naming(bot)[0]

    forget_person(bot.services, "jane@acme.example")
    bot.settle()
    [digest] = bot.slack.dms(MANAGER)
    assert digest.text == GONE_TEXT and "Bob" not in _shown(digest)
    assert not [d for d in HER if d in _shown(digest).lower()]
    assert _naming(bot)[0]["ids"] == []  # nothing left to find it for


def test_two_people_forgotten_at_once_both_leave_the_digest(bot: Bot) -> None:
    """Two erasures rewrite the same digest row at the same moment: each must start from the
    other's result, not write back the lead the other just took out."""
    bot.submit(JANE)
    bot.submit(BOB)
    jane, bob = bot.leads()
    _morning(bot.clock)
    bot.run_job("digest")
    at_once(
        [
            lambda: forget_person(bot.services, "jane@acme.example"),
            lambda: forget_person(bot.services, "bob@roe.example"),
        ]
    )
    bot.settle()
    [digest] = _digests(bot)
    shown = _shown(digest)
    assert f"#{jane.id} (erased)" in shown and f"#{bob.id} (erased)" in shown
    assert _anywhere(bot, (*HER, "bob roe")) == []
    assert [p["ids"] for p in _naming(bot)] == [[]]
