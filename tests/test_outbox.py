"""Issue 3, "nothing lost, nothing doubled": each delivery property proven by injecting its fault.

Everything goes through real interfaces: signed requests to the app's HTTP endpoint, the
loopback Slack emulator over HTTP, and a real database (SQLite, or PostgreSQL with
LEADBOT_TEST_DATABASE_URL). The outbox's retry backoff runs on real time (0.5 s, doubling), so
faults are injected a few times at most and waits stay short; the tests of when a retry, a
lease's end or a paced post may go move the outbox's time by hand (`FakeDeliveryTime`).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.engine import make_url

from bot import outbox, render
from bot.clock import FakeClock, FakeDeliveryTime
from bot.delivery import MAX_RETRY_AFTER, Slack, make_web_client
from bot.manifest import manifest_yaml
from bot.slack_emulator import Call, Message, SlackEmulator
from bot.slack_sim import SlackSim
from models import FAILED, PENDING, SENT, Lead, LeadEvent, OutboxItem, make_engine
from models import make_sessionmaker as sessions_for
from tests.conftest import (
    LEADS_CHANNEL,
    MARKETER,
    REP_A,
    SECRET,
    TEAM,
    Bot,
    needs_tgkill,
    plans_with_and_without_statistics,
    sigterm_to_a_worker_thread,
    start_bot,
    statements_sent,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "Jane Doe, jane@acme.example, Acme Corp, hot, #SaaStr2026"
LEAD_NO = re.compile(r"\blead #(\d+)\b", re.IGNORECASE)


# --- what the channel holds ----------------------------------------------------------------------


def top_level(slack: SlackEmulator, channel: str = LEADS_CHANNEL) -> list[Message]:
    """The leads channel as people see it: top-level, non-ephemeral messages."""
    return [
        m
        for m in slack.messages(channel)
        if not m.ephemeral_for and (not m.thread_ts or m.thread_ts == m.ts)
    ]


def cards_per_lead(slack: SlackEmulator, channel: str = LEADS_CHANNEL) -> Counter[int]:
    """How many cards the channel shows for each lead (a card's text names `lead #N`)."""
    counts: Counter[int] = Counter()
    for m in top_level(slack, channel):
        found = LEAD_NO.search(m.text)
        assert found, f"a top-level message in the leads channel is not a card: {m.text!r}"
        lead_id = int(found.group(1))
        # The card's metadata names the same lead: that is what crash recovery looks for.
        assert m.metadata == {
            "event_type": outbox.CARD_EVENT_TYPE,
            "event_payload": {"lead_id": lead_id, outbox.CARD_SUBMITTED: ANY},
        }, m.metadata
        counts[lead_id] += 1
    return counts


def cards_of(slack: SlackEmulator, lead_id: int, channel: str = LEADS_CHANNEL) -> list[Message]:
    return [
        m
        for m in top_level(slack, channel)
        if (found := LEAD_NO.search(m.text)) and int(found.group(1)) == lead_id
    ]


def posts_to_channel(slack: SlackEmulator) -> list[Call]:
    return [c for c in slack.calls_to("chat.postMessage") if c.args.get("channel") == LEADS_CHANNEL]


def card_items(bot: Bot) -> list[OutboxItem]:
    with bot.services.sessions() as s:
        return list(
            s.scalars(
                select(OutboxItem).where(OutboxItem.kind == outbox.CARD).order_by(OutboxItem.id)
            )
        )


def event_count(bot: Bot, lead_id: int, kind: str) -> int:
    with bot.services.sessions() as s:
        return int(
            s.scalar(
                select(func.count()).where(LeadEvent.lead_id == lead_id, LeadEvent.kind == kind)
            )
            or 0
        )


@contextmanager
def bot_with(
    database_url: str,
    slack: SlackEmulator,
    clock: FakeClock,
    *,
    delivery_time: FakeDeliveryTime | None = None,
    **env: str,
) -> Iterator[Bot]:
    """A bot started with these settings overridden, stopped afterwards."""
    bot = start_bot(database_url, slack, clock, delivery_time=delivery_time, **env)
    try:
        yield bot
    finally:
        bot.stop()


@pytest.fixture
def timed(database_url: str, slack: SlackEmulator, clock: FakeClock) -> Iterator[Bot]:
    """A bot whose outbox's time moves only when the test advances it."""
    with bot_with(database_url, slack, clock, delivery_time=FakeDeliveryTime()) as bot:
        yield bot


def advance(bot: Bot, seconds: float) -> float:
    """Move the outbox's time on; returns the seconds its loop then chose to wait, once it has
    done what fell due."""
    time_ = bot.services.outbox.time
    assert isinstance(time_, FakeDeliveryTime)
    time_.advance(seconds)
    return bot.services.outbox.wait_parked()


def submitted(bot: Bot, text_: str) -> float:
    """Submit a /lead; the seconds the outbox's loop then chose to wait (see `advance`)."""
    assert bot.sim.slash_command(text_, user_id=MARKETER, channel_id="C0EVENTS01").status == 200
    assert bot.app.leadbot_executor.wait_idle(15)  # type: ignore[attr-defined]
    return bot.services.outbox.wait_parked()


# --- 1. 5xx, then success ------------------------------------------------------------------------


def test_card_is_posted_once_after_two_server_errors(timed: Bot) -> None:
    bot = timed
    bot.slack.fail("chat.postMessage", status=500, times=2)
    # Backoff: 0.5 s, then 1 s; the loop waits for each retry, and nothing goes before it.
    assert submitted(bot, EXAMPLE) == pytest.approx(0.5, abs=1e-3)
    assert advance(bot, 0.49) == pytest.approx(0.01, abs=1e-3)
    assert [c.status for c in posts_to_channel(bot.slack)] == [500]
    assert advance(bot, 0.01) == pytest.approx(1.0, abs=1e-3)
    assert [c.status for c in posts_to_channel(bot.slack)] == [500, 500]
    advance(bot, 0.99)
    assert [c.status for c in posts_to_channel(bot.slack)] == [500, 500]
    advance(bot, 0.01)

    [lead] = bot.leads()
    attempts = posts_to_channel(bot.slack)
    assert [c.status for c in attempts] == [500, 500, 200]
    [item] = card_items(bot)
    assert (item.status, item.attempts) == (SENT, 3)
    [card] = cards_of(bot.slack, lead.id)
    assert cards_per_lead(bot.slack) == {lead.id: 1}
    assert lead.card_ts == card.ts == item.result_ts
    assert lead.card_channel == LEADS_CHANNEL and lead.card_error is None


# --- 2. 429 with Retry-After ---------------------------------------------------------------------


def test_rate_limited_post_waits_its_retry_after(timed: Bot) -> None:
    bot = timed
    bot.slack.fail("chat.postMessage", status=429, retry_after=3)
    # The loop wakes at least every 2 s, but sends nothing before Slack's 3 s have passed.
    assert submitted(bot, EXAMPLE) == pytest.approx(2.0, abs=1e-3)
    assert advance(bot, 2.0) == pytest.approx(1.0, abs=1e-3)
    assert len(posts_to_channel(bot.slack)) == 1, "retried before Slack's Retry-After had passed"
    assert advance(bot, 0.99) == pytest.approx(0.01, abs=1e-3)
    assert len(posts_to_channel(bot.slack)) == 1, "retried before Slack's Retry-After had passed"
    advance(bot, 0.01)

    [lead] = bot.leads()
    first, second = posts_to_channel(bot.slack)
    assert (first.status, first.error) == (429, "ratelimited")
    assert second.ok
    assert cards_per_lead(bot.slack) == {lead.id: 1}
    [card] = cards_of(bot.slack, lead.id)
    assert lead.card_ts == card.ts


def test_an_outage_of_days_is_still_retried_five_minutes_apart(
    timed: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """The backoff is 0.5 s * 2 ** attempts, capped: after ~1,000 attempts (3.5 days of
    Slack out of reach) that power no longer fit a float, each pass failed with OverflowError,
    and the item was tried again on every pass."""
    bot = timed
    caplog.set_level(logging.WARNING)
    bot.slack.fail("chat.postMessage", status=500, times=3)
    submitted(bot, EXAMPLE)
    with bot.services.sessions.begin() as s:  # as if Slack had failed it for days
        s.execute(update(OutboxItem).values(attempts=1030))
    advance(bot, 0.5)
    assert [c.status for c in posts_to_channel(bot.slack)] == [500, 500]
    advance(bot, outbox.MAX_BACKOFF - 0.01)
    assert [c.status for c in posts_to_channel(bot.slack)] == [500, 500]
    advance(bot, 0.01)
    assert [c.status for c in posts_to_channel(bot.slack)] == [500, 500, 500]
    advance(bot, outbox.MAX_BACKOFF)
    assert [c.status for c in posts_to_channel(bot.slack)] == [500, 500, 500, 200]
    assert [(i.status, i.attempts) for i in card_items(bot)] == [(SENT, 1033)]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_retry_after_of_years_holds_the_card_back_an_hour(
    timed: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    bot = timed
    caplog.set_level(logging.WARNING)
    bot.slack.fail("chat.postMessage", retry_after=10**12)  # once: OverflowError, retried at once
    submitted(bot, EXAMPLE)
    advance(bot, MAX_RETRY_AFTER - 1)
    assert [c.status for c in posts_to_channel(bot.slack)] == [429]
    advance(bot, 1)
    assert [c.status for c in posts_to_channel(bot.slack)] == [429, 200]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- 3. errors retrying cannot fix ---------------------------------------------------------------


def test_permanent_error_is_recorded_once_and_told_to_the_submitter(bot: Bot) -> None:
    # Not a malformed card (`invalid_blocks` and its kind go out short instead: see
    # tests/test_card_fallback.py) but a refusal no retry and no smaller card can fix.
    error, advice = "restricted_action", "Slack answered 'restricted_action'"
    bot.slack.fail("chat.postMessage", error=error)
    assert bot.submit(EXAMPLE).status == 200

    [lead] = bot.leads()
    [attempt] = posts_to_channel(bot.slack)  # one attempt: retrying cannot fix it
    assert attempt.error == error
    assert lead.card_ts is None and lead.card_error == error
    [item] = card_items(bot)
    assert (item.status, item.attempts, item.last_error) == (FAILED, 1, error)
    [note] = bot.slack.dms(MARKETER)
    assert f"#{lead.id}" in note.text and "could not be posted" in note.text
    assert advice in note.text
    assert top_level(bot.slack) == []
    assert event_count(bot, lead.id, "card_failed") == 1
    assert "by itself" not in note.text


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        ("channel_not_found", "LEADS_CHANNEL"),
        ("not_in_channel", "/invite"),
        ("is_archived", "unarchive"),
        ("invalid_auth", "SLACK_BOT_TOKEN"),
    ],
)
def test_a_card_refused_until_someone_fixes_slack_goes_out_once_they_do(
    timed: Bot, error: str, advice: str
) -> None:
    """The bot not invited to the channel is the commonest first-day mistake: the card failed
    for good, and after the /invite the lead still had no card, so nobody could claim it."""
    bot = timed
    bot.slack.fail("chat.postMessage", error=error, times=3, when=lambda a: "metadata" in a)
    submitted(bot, EXAMPLE)
    [lead] = bot.leads()
    assert lead.card_ts is None and lead.card_error == error
    [item] = card_items(bot)
    assert (item.status, item.attempts, item.last_error) == (PENDING, 1, error)
    # Tried again after a minute, then two: still refused, and told once, not at every try.
    for seconds, attempts in ((59.99, 1), (0.01, 2), (120, 3)):
        advance(bot, seconds)
        assert len(posts_to_channel(bot.slack)) == attempts
    [note] = bot.slack.dms(MARKETER)
    assert advice in note.text and "goes out by itself once that is fixed" in note.text
    assert event_count(bot, lead.id, "card_failed") == 1
    # Fixed (the faults are used up): the next try, four minutes on, posts the card.
    advance(bot, 240)
    [lead] = bot.leads()
    assert lead.card_ts and lead.card_error is None
    assert [m.ts for m in top_level(bot.slack)] == [lead.card_ts]
    assert [(i.status, i.attempts) for i in card_items(bot)] == [(SENT, 4)]
    told = bot.slack.dms(MARKETER)[-1].text
    assert told.startswith(f"✅ Lead #{lead.id} ") and "its card is posted now" in told


# --- 4. a timeout whose post Slack applied anyway ------------------------------------------------


@pytest.mark.parametrize(
    ("lands", "channel", "deleted"),
    [
        # The timed-out post lands before the retry, which finds it in the channel's history.
        pytest.param("before-retry", LEADS_CHANNEL, 0, id="lands-before-retry"),
        # It lands after the retry has posted again: Slack kept both, the card check deletes one.
        pytest.param("after-retry", LEADS_CHANNEL, 1, id="lands-after-retry"),
        # A route may name its channel (`#name`), and history needs an id, known only from a
        # card posted there: for the first card ever, the retry posts again and the check
        # deletes one.
        pytest.param("before-retry", "#leads-named", 1, id="channel-name-first-card"),
    ],
)
def test_timed_out_post_that_went_through_leaves_one_card(
    database_url: str,
    slack: SlackEmulator,
    clock: FakeClock,
    tmp_path: Path,
    lands: str,
    channel: str,
    deleted: int,
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[routes]]\nchannel = "{channel}"\n')  # every lead goes there
    cards = itertools.count()
    # Slack holds the first card's post past the 1 s timeout, and applies it when released.
    gate = slack.hold("chat.postMessage", when=lambda a: "metadata" in a and next(cards) == 0)
    with bot_with(
        database_url,
        slack,
        clock,
        delivery_time=FakeDeliveryTime(),
        SLACK_TIMEOUT="1s",
        POLICY_FILE=str(policy),
    ) as bot:
        try:
            assert submitted(bot, EXAMPLE) == pytest.approx(0.5, abs=1e-3)  # timed out: backoff
        finally:
            if lands == "before-retry":
                gate.release()
        if lands == "before-retry":
            slack.wait_for("chat.postMessage", lambda c: "metadata" in c.args)
            advance(bot, 0.5)  # the retry finds it in the channel's history
        else:
            advance(bot, 0.5)  # the retry posts again
            gate.release()
            slack.wait_for("chat.postMessage", lambda c: "metadata" in c.args, count=2)
        # The card check after an uncertain post: a second card, if any, goes.
        advance(bot, outbox.CARD_CHECK_DELAY.total_seconds())
        [lead] = bot.leads()
        [item] = card_items(bot)

    assert (item.status, item.attempts) == (SENT, 2)  # the timeout was retried, once
    assert cards_per_lead(slack, channel) == {lead.id: 1}, (
        "the channel shows the card twice: "
        f"{[(m.ts, m.text) for m in cards_of(slack, lead.id, channel)]}"
    )
    [card] = cards_of(slack, lead.id, channel)
    assert lead.card_ts == card.ts
    assert len(slack.calls_to("chat.delete")) == deleted


def test_card_is_not_lost_when_the_history_lookup_is_refused(timed: Bot) -> None:
    """A retried card first looks for itself in conversations.history. If Slack refuses that
    call (missing_scope: the manifest does not request channels:history), the card must still
    be delivered, not given up as if posting were impossible."""
    bot = timed
    bot.slack.fail("chat.postMessage", status=500)
    bot.slack.fail("conversations.history", error="missing_scope")
    assert submitted(bot, EXAMPLE) == pytest.approx(0.5, abs=1e-3)  # the 500's backoff
    advance(bot, 0.5)
    assert [c.error for c in bot.slack.calls_to("conversations.history")] == ["missing_scope"]

    [lead] = bot.leads()
    [item] = card_items(bot)
    assert item.status == SENT, f"card given up after a 500: {item.last_error}"
    assert cards_per_lead(bot.slack) == {lead.id: 1}
    [card] = cards_of(bot.slack, lead.id)
    assert lead.card_ts == card.ts and lead.card_error is None
    assert bot.slack.dms(MARKETER) == []  # no "could not be posted" note


@pytest.mark.parametrize(
    ("fault", "looks"),
    [
        ({"status": 429, "retry_after": 1}, 0),  # Slack refused it: nothing was posted
        ({"error": "not_in_channel"}, 0),
        ({"status": 500}, 1),  # a 5xx may have posted all the same
    ],
    ids=["429", "not_in_channel", "500"],
)
def test_a_retried_card_reads_history_only_when_it_may_have_been_posted(
    timed: Bot, fault: dict, looks: int
) -> None:
    """The look in conversations.history (a Tier 3 call) is for an attempt that may have
    posted; in a storm of 429s it was one more call per retry, itself rate-limited."""
    bot = timed
    bot.slack.fail("chat.postMessage", **fault)
    submitted(bot, EXAMPLE)
    advance(bot, 3600)  # past any retry's wait
    [item] = card_items(bot)
    assert item.status == SENT and item.attempts == 2
    assert len(bot.slack.calls_to("conversations.history")) == looks
    assert cards_per_lead(bot.slack) == {bot.leads()[0].id: 1}


def test_a_lease_its_holder_never_gave_back_marks_the_attempt_unknown(timed: Bot) -> None:
    """An item whose holder died mid-call keeps the error of the attempt before (a 429, say),
    which posted nothing; the dead attempt may have. Taking its lease again says so."""
    bot = timed
    out = bot.services.outbox
    with bot.services.sessions.begin() as s:
        item = OutboxItem(
            kind=outbox.MESSAGE,
            channel=MARKETER,
            payload='{"text": "hi"}',
            status=outbox.PENDING,
            attempts=2,
            last_error="ratelimited",
            lease_owner="a-process-that-died",
            lease_until=out.wall() - timedelta(seconds=1),
            next_attempt_at=out.wall() - timedelta(seconds=60),
            created_at=out.wall() - timedelta(seconds=60),
        )
        s.add(item)
        s.flush()
        item_id = item.id
    out.stop()  # the test takes the lease itself
    [taken] = out._take_leases([item_id]).values()
    assert (taken.last_error, taken.attempts) == (outbox.LEASE_EXPIRED, 3)
    assert outbox._may_have_posted(taken.last_error)


def test_manifest_requests_the_scopes_card_recovery_reads_history_with() -> None:
    section = manifest_yaml().split("oauth_config:")[1].split("settings:")[0]
    scopes = re.findall(r"^\s+- (\S+)$", section, re.MULTILINE)
    # conversations.history on public (channels:) and private (groups:) leads channels.
    assert {"channels:history", "groups:history"} <= set(scopes), scopes


# --- 5. the process stopped: SIGKILL mid-post, SIGTERM mid-click ---------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bot_env(database_url: str, slack: SlackEmulator) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "SLACK_BOT_TOKEN": "xoxb-x",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.url,
        "DATABASE_URL": database_url,
        "LEADS_CHANNEL": LEADS_CHANNEL,  # an id, so the history lookup can use it as is
        "SLACK_TIMEOUT": "2s",
        "LOG_LEVEL": "WARNING",
        # PIN_CPU=auto takes CPUs host-wide: tests in parallel would take them from each other
        # (the tests of pinning itself ask for auto, see tests.conftest.cpu_claims).
        "PIN_CPU": "off",
    }


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"leadbot serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"leadbot serve not healthy after 30 s:\n{log.read_text()}")


@contextmanager
def _serving(
    env: dict[str, str], slack: SlackEmulator, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], SlackSim, Path]]:
    """`leadbot serve` as deployed, healthy: the process, a signed client for it, its log.
    Killed on the way out if the test left it running."""
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=tmp_path,  # no stray .env
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(proc, port, log)
        url = f"http://127.0.0.1:{port}/slack/events"
        yield proc, SlackSim(url, SECRET, team_id=TEAM, response_url_for=slack.response_url), log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_post_in_flight_when_the_process_is_killed_is_not_doubled_by_the_restart(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    # The card post is held in flight, as a hung Slack call, until the process is dead; Slack
    # then applies it (the emulator's own handler answers once the gate opens).
    gate = slack.hold("chat.postMessage", when=lambda args: args.get("channel") == LEADS_CHANNEL)
    env = _bot_env(database_url, slack)
    try:
        with _serving(env, slack, tmp_path) as (proc, sim, log):
            response = sim.slash_command(EXAMPLE, user_id=MARKETER)
            assert response.status == 200 and "Lead #1" in response.json()["text"]
            assert gate.arrived.wait(15), f"the card post never reached Slack:\n{log.read_text()}"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
    finally:
        gate.release()
    # Slack applied the post the dead process was waiting for.
    slack.wait_for("chat.postMessage", lambda c: c.args["channel"] == LEADS_CHANNEL, timeout=5)
    assert len(cards_of(slack, 1)) == 1

    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            [(lead_id, owner, lease_until, attempts)] = conn.execute(
                select(
                    OutboxItem.lead_id,
                    OutboxItem.lease_owner,
                    OutboxItem.lease_until,
                    OutboxItem.attempts,
                ).where(OutboxItem.kind == outbox.CARD)
            ).all()
            assert owner is not None and attempts == 1  # the dead process still holds it
            assert lease_until > datetime.now(UTC) + timedelta(seconds=20)  # max(30 s, 3×2 s)
            # Fast-forward the dead process's lease (30 s) instead of waiting it out.
            conn.execute(
                update(OutboxItem)
                .where(OutboxItem.lease_owner == owner)
                .values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
            )

        rerun = subprocess.run(
            [sys.executable, "-m", "bot.cli", "jobs", "run", "outbox"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "1 sent" in rerun.stdout, rerun.stdout + rerun.stderr

        with sessions_for(engine)() as s:
            lead = s.get(Lead, lead_id)
            item = s.scalars(select(OutboxItem).where(OutboxItem.kind == outbox.CARD)).one()
        assert lead is not None
        [card] = cards_of(slack, lead_id)
        assert cards_per_lead(slack) == {lead_id: 1}
        assert len(posts_to_channel(slack)) == 1  # the restart found the card, did not repost
        assert lead.card_ts == card.ts and lead.card_channel == LEADS_CHANNEL
        assert (item.status, item.attempts, item.lease_owner) == (SENT, 2, None)
    finally:
        engine.dispose()


def test_sigterm_finishes_a_click_already_acked_then_exits_cleanly(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    """SIGTERM is how systemd, Docker and Kubernetes stop `serve`. A click answered before it
    arrives must still take effect: the claim's work (held here at its sales-group lookup) runs
    after the ack, and the process waits for it instead of dying mid-way."""
    slack.set_usergroup("S0SALES001", [REP_A])
    gate = slack.hold("usergroups.users.list")
    env = {**_bot_env(database_url, slack), "SALES_USERGROUP": "S0SALES001", "LOG_LEVEL": "INFO"}
    try:
        with _serving(env, slack, tmp_path) as (proc, sim, log):
            assert "Lead #1" in sim.slash_command(EXAMPLE, user_id=MARKETER).json()["text"]
            clicked = sim.block_action(REP_A, "lead_claim", "1:1", channel_id=LEADS_CHANNEL)
            assert clicked.status == 200
            assert gate.arrived.wait(15), f"the claim never asked for the group:\n{log.read_text()}"
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10  # the claim is still held while the process stops
            while "stopping: finishing the work already answered" not in log.read_text():
                assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()}"
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.01)
            gate.release()
            assert proc.wait(15) == 0, log.read_text()
    finally:
        gate.release()
    if database_url.startswith("sqlite"):
        # Its connections were closed on the way out: SQLite checkpointed and removed its WAL.
        assert not Path(f"{make_url(database_url).database}-wal").exists()
    text = log.read_text()
    assert text.index("stopping: no new connections") < text.index("stopping: finishing")
    assert "WARNING" not in text.split("serving on")[0], text  # a clean start warns of nothing
    engine = make_engine(database_url)
    try:
        with sessions_for(engine)() as s:
            lead = s.get(Lead, 1)
            assert lead is not None and lead.owner_id == REP_A
    finally:
        engine.dispose()


@needs_tgkill
def test_sigterm_stops_serve_whichever_thread_it_lands_on(
    database_url: str, slack: SlackEmulator, tmp_path: Path
) -> None:
    """The kernel hands a process's signal to any of its threads. Landing on a worker, it once
    went unheard until SIGKILL: the main thread slept in one endless join."""
    env = {**_bot_env(database_url, slack), "LOG_LEVEL": "INFO"}
    with _serving(env, slack, tmp_path) as (proc, sim, log):
        assert "Lead #1" in sim.slash_command(EXAMPLE, user_id=MARKETER).json()["text"]
        sigterm_to_a_worker_thread(proc.pid)
        assert proc.wait(15) == 0, log.read_text()
    assert "stopping: finishing the work already answered" in log.read_text()


# --- 6. two deliverers ---------------------------------------------------------------------------


def _deliverer(engine: Engine, slack: SlackEmulator, **options: Any) -> outbox.Outbox:
    """An outbox of its own on `engine`, as another process would have."""
    client = make_web_client("xoxb-x", slack.url, timeout=5, retries=False)
    return outbox.Outbox(sessions_for(engine), Slack(client), **options)


def test_two_deliverers_never_send_the_same_item_twice(
    database_url: str, slack: SlackEmulator
) -> None:
    engines = [make_engine(database_url) for _ in range(2)]
    try:
        # Two processes' worth of outbox, built as bot/app.py build_services builds one.
        boxes = [
            _deliverer(engine, slack, posts_per_second=1000, lease=timedelta(seconds=30))
            for engine in engines
        ]
        with sessions_for(engines[0]).begin() as s:
            for i in range(30):
                outbox.enqueue_message(s, LEADS_CHANNEL, render.Message(text=f"message {i:02d}"))

        barrier = threading.Barrier(2)
        sent = [0, 0]
        errors: list[BaseException] = []

        def deliver(n: int) -> None:
            try:
                barrier.wait(5)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    result = boxes[n].run_pass()
                    sent[n] += result.sent
                    with sessions_for(engines[n])() as s:
                        left = s.scalar(select(func.count()).where(OutboxItem.status == PENDING))
                    if not left:
                        return
                    time.sleep(min(result.paced or 0.0, 0.05))
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=deliver, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors

        texts = Counter(c.args["text"] for c in slack.calls_to("chat.postMessage"))
        assert texts == Counter({f"message {i:02d}": 1 for i in range(30)})
        assert sum(sent) == 30
        with sessions_for(engines[0])() as s:
            rows = list(s.scalars(select(OutboxItem)))
        assert [(r.status, r.attempts) for r in rows] == [(SENT, 1)] * 30
    finally:
        for engine in engines:
            engine.dispose()


def test_an_item_left_for_pacing_is_given_back_untried(
    database_url: str, slack: SlackEmulator
) -> None:
    """A group's items are leased together; one that must wait for a token is released at once
    with its attempt uncounted, so another deliverer can send it now and nothing looks retried."""
    engine = make_engine(database_url)
    try:
        boxes = [_deliverer(engine, slack, posts_per_second=0.1, burst=1) for _ in range(2)]
        with sessions_for(engine).begin() as s:
            for text in ("first", "second"):  # one channel, no lead: one group, in order
                outbox.enqueue_message(s, LEADS_CHANNEL, render.Message(text=text))

        result = boxes[0].run_pass()
        assert (result.sent, result.paced is not None) == (1, True)
        with sessions_for(engine)() as s:
            rows = list(s.scalars(select(OutboxItem).order_by(OutboxItem.id)))
        assert [(r.status, r.attempts, r.lease_owner, r.lease_until) for r in rows] == [
            (SENT, 1, None, None),
            (PENDING, 0, None, None),
        ]

        assert boxes[1].run_pass().sent == 1  # not held by the paced deliverer
        texts = [c.args["text"] for c in slack.calls_to("chat.postMessage")]
        assert texts == ["first", "second"]
        with sessions_for(engine)() as s:
            second = s.get(OutboxItem, rows[1].id)
            assert second is not None and (second.status, second.attempts) == (SENT, 1)
    finally:
        engine.dispose()


# --- 7. a burst under Slack's rate limit ---------------------------------------------------------


def test_burst_of_fifty_leads_under_the_rate_limit(
    database_url: str, slack: SlackEmulator, clock: FakeClock
) -> None:
    with bot_with(database_url, slack, clock, SLACK_POSTS_PER_SECOND="20") as bot:
        _burst(bot)


def _burst(bot: Bot) -> None:
    bot.slack.rate_limit(per_second=20, burst=5)
    n = 50
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    started = time.monotonic()

    def submit(i: int) -> None:
        barrier.wait(10)
        r = bot.sim.slash_command(
            f"Person {i:02d}, person{i:02d}@acme.example, Acme {i:02d}", user_id=MARKETER
        )
        statuses.append(r.status)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    bot.settle(timeout=20)
    elapsed = time.monotonic() - started

    assert statuses == [200] * n
    leads = bot.leads()
    assert len(leads) == n
    assert all(lead.card_ts for lead in leads)
    assert cards_per_lead(bot.slack) == Counter({lead.id: 1 for lead in leads})
    posts = posts_to_channel(bot.slack)
    limited = bot.slack.stats["ratelimited"]
    assert limited < 0.05 * len(posts), f"{limited} of {len(posts)} posts were rate-limited"
    assert elapsed < 10, f"50 cards took {elapsed:.1f} s"


# --- 8. duplicate clicks -------------------------------------------------------------------------


def _button(bot: Bot, lead: Lead, action_id: str) -> str:
    assert lead.card_ts
    card = bot.slack.message(LEADS_CHANNEL, lead.card_ts)
    assert card is not None and card.blocks
    return next(
        e["value"]
        for b in card.blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == action_id
    )


def _twice_at_once(bot: Bot, body: bytes) -> list[int]:
    """Deliver one signed payload twice, concurrently (as a retried delivery would)."""
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def send() -> None:
        barrier.wait(5)
        statuses.append(bot.sim.raw(body, "application/x-www-form-urlencoded").status)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    return statuses


def test_duplicate_claim_and_release_deliveries_act_once(bot: Bot) -> None:
    bot.submit(EXAMPLE)
    [lead] = bot.leads()
    claim_value = _button(bot, lead, "lead_claim")

    first = bot.sim.block_action(
        REP_A, "lead_claim", claim_value, channel_id=LEADS_CHANNEL, message_ts=lead.card_ts
    )
    assert first.status == 200
    # The same payload again, twice at once, then a second click by the same rep.
    assert _twice_at_once(bot, first.request_body) == [200, 200]
    again = bot.sim.block_action(
        REP_A, "lead_claim", claim_value, channel_id=LEADS_CHANNEL, message_ts=lead.card_ts
    )
    assert again.status == 200
    bot.settle()

    lead = bot.lead(lead.id)
    assert lead.owner_id == REP_A
    assert event_count(bot, lead.id, "claimed") == 1
    [card_update] = bot.slack.calls_to("chat.update")
    assert card_update.args["ts"] == lead.card_ts
    assert len(bot.slack.dms(REP_A)) == 1
    assert len(bot.slack.dms(MARKETER)) == 1  # "claimed your lead", once

    release_value = _button(bot, lead, "lead_release")
    released = bot.sim.block_action(
        REP_A, "lead_release", release_value, channel_id=LEADS_CHANNEL, message_ts=lead.card_ts
    )
    assert released.status == 200
    assert _twice_at_once(bot, released.request_body) == [200, 200]
    bot.settle()

    assert event_count(bot, lead.id, "released") == 1
    assert bot.lead(lead.id).owner_id is None
    assert lead.card_ts
    notes = [m for m in bot.slack.thread(LEADS_CHANNEL, lead.card_ts) if m.ts != lead.card_ts]
    assert len(notes) == 1 and "released" in notes[0].text


# --- the worker waits instead of spinning ---------------------------------------------------------


def test_paced_worker_waits_for_its_next_token_instead_of_spinning(
    database_url: str, slack: SlackEmulator, clock: FakeClock
) -> None:
    with bot_with(
        database_url, slack, clock, delivery_time=FakeDeliveryTime(), SLACK_POSTS_PER_SECOND="2"
    ) as bot:
        with statements_sent(bot.services.engine) as queries:
            for i in range(5):
                submitted(bot, f"Person {i}, person{i}@acme.example")
            # A burst of 4, then one per token: the loop waits the half second to the next.
            assert submitted(bot, "Person 5, person5@acme.example") == pytest.approx(0.5, abs=1e-3)
            assert len(posts_to_channel(bot.slack)) == 4
            assert advance(bot, 0.5) == pytest.approx(0.5, abs=1e-3)
            assert len(posts_to_channel(bot.slack)) == 5
            advance(bot, 0.5)
            assert len(posts_to_channel(bot.slack)) == 6
        assert all(lead.card_ts for lead in bot.leads())
    # About a dozen statements per lead (store, lease, post, record) plus a pass per wake-up.
    assert len(queries) < 200, f"{len(queries)} SQL statements for 6 leads: the worker busy-loops"


def test_worker_sleeps_while_another_process_holds_a_lease(timed: Bot) -> None:
    bot = timed
    now = bot.services.outbox.wall()
    # One transaction: committed without its lease, the item could be sent by this worker's
    # own wake-up (every 2 s at the latest) before the lease is written.
    with bot.services.sessions.begin() as s:
        outbox.enqueue_message(s, LEADS_CHANNEL, render.Message(text="held elsewhere"), now=now)
        s.flush()
        # The row exactly as a live deliverer in another process leaves it while its call runs.
        s.execute(
            update(OutboxItem).values(
                lease_owner="another-process", lease_until=now + timedelta(seconds=1.5), attempts=1
            )
        )
    # The worker waits for the lease's end, not its 2 s poll, and sends nothing before it.
    assert bot.services.outbox.wait_parked() == pytest.approx(1.5, abs=1e-3)
    assert advance(bot, 1.0) == pytest.approx(0.5, abs=1e-3)
    assert bot.slack.calls_to("chat.postMessage") == []  # not ours to send
    # Its lease ends (the other process died): now this worker delivers it, once.
    advance(bot, 0.5)
    assert [c.args["text"] for c in bot.slack.calls_to("chat.postMessage")] == ["held elsewhere"]


def test_a_slow_post_does_not_hold_back_the_next_leads_card(bot: Bot) -> None:
    """Deliveries are started as they fall due, not in passes that wait for every answer: with
    Slack's round trip, waiting held a busy channel well under its rate."""
    gate = bot.slack.hold("chat.postMessage", when=lambda args: "Slow Sam" in args["text"])
    try:
        bot.sim.slash_command("Slow Sam, sam@slow.example", user_id=MARKETER)
        assert gate.arrived.wait(5)
        bot.sim.slash_command("Quick Quinn, quinn@quick.example", user_id=MARKETER)
        # Quinn's card goes while Sam's post is still waiting for Slack.
        [call] = bot.slack.wait_for("chat.postMessage", lambda c: "Quick Quinn" in c.args["text"])
        assert call.ok and not [
            c for c in bot.slack.calls_to("chat.postMessage") if "Sam" in c.args["text"]
        ]
    finally:
        gate.release()
    bot.settle()
    assert all(lead.card_ts for lead in bot.leads())


def test_a_backlog_in_one_paced_channel_does_not_hold_up_dms(
    database_url: str, slack: SlackEmulator, clock: FakeClock
) -> None:
    """150 posts wait their turn in #leads (2 a second); a claim's DMs still go at once."""
    with bot_with(database_url, slack, clock, SLACK_POSTS_PER_SECOND="2") as bot:
        bot.submit(EXAMPLE)
        [lead] = bot.leads()
        with bot.services.sessions.begin() as s:
            outbox.enqueue(
                s,
                [
                    outbox.message_row(LEADS_CHANNEL, render.Message(text=f"backlog {i}"))
                    for i in range(150)
                ],
            )
        bot.sim.block_action(
            REP_A,
            "lead_claim",
            f"{lead.id}:1",
            channel_id=lead.card_channel,
            message_ts=lead.card_ts,
        )
        try:
            [dm] = slack.wait_for("chat.postMessage", lambda c: c.args["channel"] == REP_A)
            assert "is yours" in dm.args["text"]
            backlog = [c for c in slack.calls_to("chat.postMessage") if "backlog" in c.args["text"]]
            assert len(backlog) < 50, "the DM waited for the channel's backlog"
        finally:
            with bot.services.sessions.begin() as s:  # let the bot stop without draining it
                s.execute(
                    update(OutboxItem).where(OutboxItem.status == PENDING).values(status=SENT)
                )


def _stored_leads(sessions: Any, n: int) -> list[int]:
    now = datetime.now(UTC)
    row = {"team_id": TEAM, "priority": "warm", "submitted_by": MARKETER, "submitted_at": now}
    with sessions.begin() as s:
        people = [{"name": f"n{i}", "status": "new", "version": 1, **row} for i in range(n)]
        return list(s.scalars(insert(Lead).returning(Lead.id), people))


def test_what_waits_behind_a_paced_post_is_not_counted_as_due(
    database_url: str, slack: SlackEmulator
) -> None:
    """A lead's DM waits while the lead's card waits for its channel's token, so the loop must
    not count it as due: it did, and the loop went round every 20 ms, each time reading the
    channel's whole backlog, until the card went."""
    engine = make_engine(database_url)
    box = _deliverer(engine, slack, posts_per_second=1)  # no loop thread: the test looks
    sessions = sessions_for(engine)
    try:
        [lead_id] = _stored_leads(sessions, 1)
        for _ in range(box.burst):  # the channel's tokens are gone
            assert box._take_token(outbox._Due(0, LEADS_CHANNEL, outbox.CARD)) == 0
        with sessions.begin() as s:
            outbox.enqueue(
                s,
                [
                    outbox.message_row(LEADS_CHANNEL, render.Message(text="card"), lead_id=lead_id),
                    outbox.message_row(REP_A, render.Message(text="dm"), lead_id=lead_id),
                ],
            )
        assert box._next_due_in() == 0  # both are due, as far as the table goes
        assert box._due_groups(100, paced=[LEADS_CHANNEL]) == {}  # but a pass takes neither
        assert box._next_due_in(skip_paced=True) == float("inf")  # so the loop waits
        # An item that does not wait behind the card still counts.
        other = outbox.message_row(MARKETER, render.Message(text="other"))
        with sessions.begin() as s:
            outbox.enqueue(s, [other])
        assert box._next_due_in(skip_paced=True) == 0
    finally:
        box.stop()
        engine.dispose()


def test_a_new_card_for_a_channel_out_of_tokens_does_not_wake_the_loop(
    database_url: str, slack: SlackEmulator
) -> None:
    """After an event, /leads come in faster than their channel may take cards; each one woke
    the loop for a pass that could send nothing and read past every card waiting there."""
    engine = make_engine(database_url)
    box = _deliverer(engine, slack, posts_per_second=1)  # no loop thread: the test looks

    def wakes(**hint: Any) -> bool:
        box._wake.clear()
        box.kick(**hint)
        return box._wake.is_set()

    try:
        assert wakes(posting_to=LEADS_CHANNEL)  # it has tokens
        for _ in range(box.burst):
            assert box._take_token(outbox._Due(0, LEADS_CHANNEL, outbox.CARD)) == 0
        assert not wakes(posting_to=LEADS_CHANNEL)  # its next token wakes the loop instead
        assert wakes(posting_to="C0OTHER001")  # another channel's card may go now
        assert wakes()  # anything else may go now
    finally:
        box.stop()
        engine.dispose()


def _pending_dms(sessions: Any, users: list[str]) -> None:
    with sessions.begin() as s:
        outbox.enqueue(s, [outbox.message_row(u, render.Message(text=f"to {u}")) for u in users])


def test_a_pass_waits_until_several_deliveries_may_start(
    database_url: str, slack: SlackEmulator
) -> None:
    """With a backlog, a pass reads every due item afresh; one per finished delivery cost more
    database time than the deliveries it started. So while deliveries are in flight, a pass
    starts nothing until four (MIN_ROOM) may start, and then starts them together."""
    engine = make_engine(database_url)
    # No loop thread: the test runs each pass itself, so none happens behind its back.
    box = _deliverer(engine, slack, posts_per_second=1000)
    users = [f"U{i:08d}" for i in range(40)]
    gates = {
        u: slack.hold("chat.postMessage", when=lambda a, u=u: a["channel"] == u) for u in users
    }

    def at_slack() -> list[str]:
        return [u for u in users if gates[u].arrived.is_set()]

    def wait(condition: Any) -> None:
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)

    try:
        _pending_dms(sessions_for(engine), users)
        with statements_sent(engine, "SELECT outbox.id, outbox.lead_id") as reads:
            box._dispatch()
            full = box._max_inflight
            assert len(reads) == 1 and len(box._inflight) == full
            wait(lambda: len(at_slack()) == 8)  # the pool's threads; the rest queue behind them

            for n in (1, 2, 3):  # room for fewer than 4 (MIN_ROOM): the pass waits
                gates[at_slack()[n - 1]].release()
                wait(lambda n=n: len(box._inflight) == full - n)
                assert box._dispatch() == (True, None)
                assert len(reads) == 1, f"a pass read the backlog with room for {n}"
            gates[at_slack()[3]].release()
            wait(lambda: len(box._inflight) == full - 4)
            box._dispatch()  # room for 4: one read starts them all
            assert len(reads) == 2 and len(box._inflight) == full

            for gate in gates.values():
                gate.release()
            while len(slack.calls_to("chat.postMessage")) < len(users):
                box._dispatch()
                time.sleep(0.01)
            wait(lambda: not box._inflight)
        sent = Counter(c.args["channel"] for c in slack.calls_to("chat.postMessage"))
        assert sent == Counter(users)  # each once
    finally:
        for gate in gates.values():
            gate.release()
        box.stop()
        engine.dispose()


def test_lease_and_release_pick_their_rows_by_id_alone(
    database_url: str, slack: SlackEmulator
) -> None:
    """Leasing a lead's items and giving them back read those rows by primary key, with or
    without table statistics: a plan that took in the status index read every pending row
    (5 ms per lease with 5,000 pending on PostgreSQL, before its first ANALYZE)."""
    engine = make_engine(database_url)
    box = _deliverer(engine, slack)
    try:
        _pending_dms(sessions_for(engine), [f"U{i:08d}" for i in range(3000)])
        with sessions_for(engine)() as s:
            ids = list(s.scalars(select(OutboxItem.id).order_by(OutboxItem.id).limit(2)))
        with statements_sent(engine, "UPDATE outbox") as captured:
            leased = box._take_leases(ids)
            with box.single.begin() as s:
                s.execute(outbox._RELEASE, {"b_ids": ids, "b_owner": box.owner})
        assert sorted(leased) == ids
        with sessions_for(engine)() as s:  # given back as they were
            rows = list(s.scalars(select(OutboxItem).where(OutboxItem.id.in_(ids))))
            assert [(r.lease_owner, r.attempts) for r in rows] == [(None, 0), (None, 0)]
        assert len(captured) == 2
        by_id = "INTEGER PRIMARY KEY" if engine.dialect.name == "sqlite" else "outbox_pkey"
        for statement, params in captured:
            plans = plans_with_and_without_statistics(engine, statement, params)
            for when, plan in plans.items():
                assert by_id in plan, (when, plan)
                assert "ix_outbox_status_next_attempt" not in plan, (when, plan)
    finally:
        box.stop()
        engine.dispose()


def test_a_pass_reads_what_is_pending_not_the_delivered_history(
    database_url: str, slack: SlackEmulator
) -> None:
    """Every shape of the pass's read (nothing in flight; leads in flight; a paced channel too)
    walks the pending items, never the delivered history, with or without statistics. With
    statistics both databases used to walk the whole table in id order, history first."""
    engine = make_engine(database_url)
    box = _deliverer(engine, slack)
    sessions = sessions_for(engine)
    now = datetime.now(UTC)
    try:
        with sessions.begin() as s:
            people = [
                {
                    "team_id": TEAM,
                    "name": f"n{i}",
                    "priority": "warm",
                    "submitted_by": MARKETER,
                    "submitted_at": now,
                    "status": "new",
                    "version": 1,
                    "reminders_sent": 0,
                }
                for i in range(600)
            ]
            lead_ids = list(s.scalars(insert(Lead).returning(Lead.id), people))
            history = {"payload": "{}", "status": SENT, "attempts": 1, "next_attempt_at": now}
            s.execute(
                insert(OutboxItem),
                [
                    {"kind": "message", "channel": f"U{i:07d}", "created_at": now, **history}
                    for i in range(20_000)
                ],
            )
            outbox.enqueue(
                s,
                [
                    outbox.message_row(f"U{i:07d}", render.Message(text="dm"), lead_id=lead_ids[i])
                    for i in range(300)
                ]
                + [
                    outbox.message_row(LEADS_CHANNEL, render.Message(text="card"), lead_id=i)
                    for i in lead_ids[300:]
                ],
            )
        shapes = {
            "nothing in flight": {},
            "leads in flight": {"busy": lead_ids[:2]},
            "a channel paced": {"busy": lead_ids[:2], "paced": [LEADS_CHANNEL]},
        }
        for shape, kwargs in shapes.items():
            with statements_sent(engine) as captured:
                groups = box._due_groups(100, **kwargs)
            assert groups, shape
            [(statement, params)] = captured
            plans = plans_with_and_without_statistics(engine, statement, params)
            for when, plan in plans.items():
                where = (shape, when, plan)
                assert "ix_outbox_pending" in plan or "ix_outbox_status_next_attempt" in plan, where
                assert not re.search(r"SCAN outbox'|Seq Scan on outbox|outbox_pkey", plan), where
                if "paced" in kwargs:
                    assert "ix_outbox_lead_status" in plan, where
            assert "ix_outbox_pending" in plans["with statistics"], shape
            # The loop's look for the soonest item it could take leaves out the same things.
            with statements_sent(engine) as captured:
                box._due_in(**kwargs)
            [(statement, params)] = captured
            plans = plans_with_and_without_statistics(engine, statement, params)
            for when, plan in plans.items():
                where = (shape, "soonest", when, plan)
                assert "ix_outbox_status_next_attempt" in plan or "ix_outbox_pending" in plan, where
                assert not re.search(r"SCAN outbox'|Seq Scan on outbox|outbox_pkey", plan), where
    finally:
        box.stop()
        engine.dispose()
