"""A release starts a new claim clock: the lead's SLA due time, its reminders and the digest's
time to claim all count from the release, not from the first post of the card.

Over the real app (signed clicks, the loopback Slack) with a fake clock, on SQLite and
PostgreSQL (LEADBOT_TEST_DATABASE_URL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot import leads, report
from bot.clock import FakeClock
from bot.slack_emulator import SlackEmulator
from models import Lead
from tests.conftest import MANAGER, REP_A, REP_B, Bot, start_bot

EXAMPLE = "Jane Doe, jane@acme.example, Acme Corp"
MONDAY = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def click(bot: Bot, user: str, action: str, lead_id: int) -> Lead:
    """`user` clicks Claim or Release on the lead's card as it is now."""
    lead = bot.lead(lead_id)
    r = bot.sim.block_action(
        user,
        action,
        f"{lead.id}:{lead.version}",
        channel_id=lead.card_channel,
        message_ts=lead.card_ts,
    )
    assert r.status == 200
    bot.settle()
    return bot.lead(lead_id)


def submitted(bot: Bot) -> Lead:
    bot.submit(EXAMPLE)
    return bot.leads()[-1]


def digest_body(bot: Bot) -> str:
    assert bot.run_job("digest").startswith("sent to 1 manager")
    return json.dumps(bot.slack.dms(MANAGER)[-1].blocks)


def test_a_claim_after_a_release_is_timed_from_the_release(bot: Bot) -> None:
    bot.clock.set(MONDAY)  # the built-in policy: 30 minutes, round the clock
    lead = submitted(bot)
    bot.clock.advance(5 * MINUTE)
    click(bot, REP_A, "lead_claim", lead.id)
    released_at = datetime(2026, 6, 3, 10, 0, tzinfo=UTC)  # two days later
    bot.clock.set(released_at)
    after = click(bot, REP_A, "lead_release", lead.id)
    # A new claim clock: due, and first reminded, 30 minutes after the release.
    assert after.claim_due_at == after.next_reminder_at == released_at + 30 * MINUTE

    bot.clock.set(released_at + 10 * MINUTE)
    click(bot, REP_B, "lead_claim", lead.id)
    bot.clock.set(datetime(2026, 6, 4, 9, 0, tzinfo=UTC))
    body = digest_body(bot)
    # 10 minutes from the release, not 2 days from the submission (nor late by 1d 23h).
    assert "median *10m*, slowest *10m*" in body, body
    assert "after it was due" not in body
    with bot.services.sessions() as s:
        extras = report.digest_extras(s, bot.clock.now())
    assert (extras.claimed_late, extras.overdue) == (0, 0)


def test_a_lead_released_just_now_is_not_overdue_until_its_new_due_time(bot: Bot) -> None:
    bot.clock.set(MONDAY)
    lead = submitted(bot)
    bot.clock.advance(5 * MINUTE)
    click(bot, REP_A, "lead_claim", lead.id)
    released_at = datetime(2026, 6, 3, 8, 55, tzinfo=UTC)
    bot.clock.set(released_at)
    click(bot, REP_A, "lead_release", lead.id)

    bot.clock.set(datetime(2026, 6, 3, 9, 0, tzinfo=UTC))  # the digest, 5 minutes on
    body = digest_body(bot)
    assert "due 1d" not in body and "ago" not in body, body
    with bot.services.sessions() as s:
        assert report.digest_extras(s, bot.clock.now()).overdue == 0

    # Overdue exactly when its first reminder after the release comes, and not before.
    bot.clock.set(released_at + 30 * MINUTE - timedelta(seconds=1))
    assert bot.run_job("reminders") == "0 reminded, 0 escalated"
    with bot.services.sessions() as s:
        assert report.digest_extras(s, bot.clock.now()).overdue == 0
    bot.clock.set(released_at + 30 * MINUTE + timedelta(seconds=1))
    assert bot.run_job("reminders") == "1 reminded, 0 escalated"
    with bot.services.sessions() as s:
        assert report.digest_extras(s, bot.clock.now()).overdue == 1


WORKING_HOURS = """
[hours]
timezone = "UTC"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "18:00"
"""


def test_a_release_after_hours_is_due_in_working_time(
    tmp_path: Path, database_url: str, slack: SlackEmulator, clock: FakeClock
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(WORKING_HOURS)
    clock.set(MONDAY)
    bot = start_bot(database_url, slack, clock, POLICY_FILE=str(policy))
    try:
        lead = submitted(bot)
        click(bot, REP_A, "lead_claim", lead.id)
        friday = datetime(2026, 6, 5, 17, 50, tzinfo=UTC)
        bot.clock.set(friday)
        after = click(bot, REP_A, "lead_release", lead.id)
        # 10 working minutes on Friday, 20 on Monday morning.
        monday_0920 = datetime(2026, 6, 8, 9, 20, tzinfo=UTC)
        assert after.claim_due_at == after.next_reminder_at == monday_0920
        bot.clock.set(monday_0920 - timedelta(seconds=1))
        assert bot.run_job("reminders") == "0 reminded, 0 escalated"
        bot.clock.set(monday_0920)
        assert bot.run_job("reminders") == "1 reminded, 0 escalated"
    finally:
        bot.stop()


def test_the_digest_median_mixes_first_claims_and_claims_after_a_release(bot: Bot) -> None:
    bot.clock.set(MONDAY)
    first, second, third = submitted(bot), submitted(bot), submitted(bot)
    bot.clock.advance(5 * MINUTE)
    click(bot, REP_A, "lead_claim", first.id)
    bot.clock.set(MONDAY + timedelta(hours=1))
    click(bot, REP_B, "lead_claim", second.id)  # 1h after submission
    bot.clock.set(MONDAY + timedelta(hours=2))
    click(bot, REP_B, "lead_claim", third.id)  # 2h after submission
    bot.clock.set(MONDAY + timedelta(hours=3))
    click(bot, REP_A, "lead_release", first.id)
    bot.clock.advance(20 * MINUTE)
    click(bot, REP_B, "lead_claim", first.id)  # 20m after its release, 3h20m after submission
    bot.clock.set(datetime(2026, 6, 2, 9, 0, tzinfo=UTC))
    body = digest_body(bot)
    assert "3 claimed" in body
    # 20m, 1h and 2h: counted from the submission, the first owner's 3 hours made it
    # the slowest, and the median 2h.
    assert "median *1h*, slowest *2h*" in body, body


def test_claim_clock_start_is_the_latest_release_else_the_cards_post(bot: Bot) -> None:
    bot.clock.set(MONDAY)
    lead = submitted(bot)
    posted = bot.lead(lead.id).card_posted_at
    with bot.services.sessions() as s:
        assert leads.claim_clock_start(s, bot.lead(lead.id)) == posted
    for hours in (1, 5):
        bot.clock.set(MONDAY + timedelta(hours=hours))
        click(bot, REP_A, "lead_claim", lead.id)
        bot.clock.advance(MINUTE)
        click(bot, REP_A, "lead_release", lead.id)
    with bot.services.sessions() as s:
        start = leads.claim_clock_start(s, bot.lead(lead.id))
    assert start == MONDAY + timedelta(hours=5) + MINUTE


def test_a_reminder_after_a_release_counts_the_wait_from_the_release(bot: Bot) -> None:
    """Counted from the card, the first reminder after a release two days on said the lead
    "has waited 2d without an owner" when it had waited 30 minutes."""
    bot.clock.set(MONDAY)
    lead = submitted(bot)
    bot.clock.advance(5 * MINUTE)
    click(bot, REP_A, "lead_claim", lead.id)
    released_at = datetime(2026, 6, 3, 10, 0, tzinfo=UTC)
    bot.clock.set(released_at)
    click(bot, REP_A, "lead_release", lead.id)
    bot.clock.set(released_at + 30 * MINUTE)
    assert bot.run_job("reminders") == "1 reminded, 0 escalated"
    bot.settle()
    after = bot.lead(lead.id)
    [reminder] = [
        m.text
        for m in bot.slack.thread(after.card_channel or "", after.card_ts or "")
        if "Reminder" in m.text
    ]
    assert "has waited 30m without an owner" in reminder, reminder


def test_a_priority_corrected_after_a_release_is_due_from_the_release(
    tmp_path: Path, database_url: str, slack: SlackEmulator
) -> None:
    """Warm (2 h) corrected to hot (15 min) after a release: due 15 minutes after the release,
    not 15 minutes after the card first went out two hours before (overdue at once)."""
    from tests.test_edit import open_form, save
    from tests.test_policy_flow import POLICY

    posted = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # Wednesday 09:00 in New York
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    bot = start_bot(database_url, slack, FakeClock(posted), POLICY_FILE=str(policy))
    try:
        bot.submit("Jane Doe, jane@acme.example, warm")
        lead = bot.leads()[-1]
        bot.clock.advance(5 * MINUTE)
        click(bot, REP_A, "lead_claim", lead.id)
        released_at = posted + timedelta(hours=2)
        bot.clock.set(released_at)
        click(bot, REP_A, "lead_release", lead.id)
        bot.clock.advance(5 * MINUTE)
        save(bot, open_form(bot, lead.id, MANAGER, trigger="t-hot"), MANAGER, priority="hot")
        after = bot.lead(lead.id)
        assert after.priority == "hot"
        assert after.claim_due_at == released_at + 15 * MINUTE
    finally:
        bot.stop()
