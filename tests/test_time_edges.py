"""Time at its edges: the digest on the days clocks change or when it goes out late, a digest
that fails half-way, and times rendered for Slack. Driven by the fake clock (no sleeps)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.exc import OperationalError

from bot import render, report
from bot.clock import FakeClock
from tests.conftest import MANAGER, Bot, start_bot

BERLIN = ZoneInfo("Europe/Berlin")


def _utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def _submitted_counts(bot: Bot) -> list[int]:
    """The "N submitted" of each digest the manager got, in order."""
    counts = []
    for dm in bot.slack.dms(MANAGER):
        found = re.match(r"Lead digest: (\d+) submitted", dm.text)
        if found:
            counts.append(int(found.group(1)))
    return counts


def _submit_at(bot: Bot, when: datetime, name: str) -> None:
    bot.clock.set(when)
    bot.submit(f"{name}, {name.lower()}@example.com")


def _digest_at(bot: Bot, when: datetime) -> str:
    bot.clock.set(when)
    return bot.run_job("digest")


def test_a_lead_between_two_digests_across_fall_back_is_in_the_next_one(
    database_url: str, slack, clock: FakeClock
) -> None:
    # 02:30 happens twice in Berlin on 25 October 2026: the digest goes out at the first, and
    # the next day's is 25 hours later. A fixed 24-hour window left that extra hour's leads out
    # of every digest.
    bot = start_bot(database_url, slack, clock, TIMEZONE="Europe/Berlin", DIGEST_AT="02:30")
    try:
        assert _digest_at(bot, _utc(2026, 10, 24, 0, 30)) == "sent to 1 manager"
        assert _digest_at(bot, _utc(2026, 10, 25, 0, 30)) == "sent to 1 manager"  # 02:30 CEST
        _submit_at(bot, _utc(2026, 10, 25, 0, 45), "Ada")  # 02:45 CEST, after that digest
        # 02:30 CET, the same local day once more: nothing is sent twice.
        assert _digest_at(bot, _utc(2026, 10, 25, 1, 30)).startswith("already sent")
        assert _digest_at(bot, _utc(2026, 10, 26, 1, 30)) == "sent to 1 manager"
        assert _submitted_counts(bot) == [0, 0, 1]
        # It says which period it covers: no longer "the last 24 hours".
        last = bot.slack.dms(MANAGER)[-1]
        assert last.text.startswith(
            "Lead digest: 1 submitted, 0 claimed in the 1d 1h since the last digest; "
        )
        assert "*Since the last digest (1d 1h):* 1 submitted" in str(last.blocks)
    finally:
        bot.stop()


def test_a_lead_is_not_counted_twice_across_spring_forward(
    database_url: str, slack, clock: FakeClock
) -> None:
    # 02:30 does not exist in Berlin on 29 March 2026: that digest goes out when the clocks jump
    # to 03:00 CEST, 23.5 hours after the one before. A fixed 24-hour window counted a lead of
    # the half hour before the earlier digest in both.
    bot = start_bot(database_url, slack, clock, TIMEZONE="Europe/Berlin", DIGEST_AT="02:30")
    try:
        _submit_at(bot, _utc(2026, 3, 28, 1, 15), "Ada")  # 02:15 CET
        assert _digest_at(bot, _utc(2026, 3, 28, 1, 30)) == "sent to 1 manager"
        assert _digest_at(bot, _utc(2026, 3, 29, 0, 59)).startswith("not due yet")  # 01:59 CET
        sent = _digest_at(bot, _utc(2026, 3, 29, 1, 0))  # 03:00 CEST, the jump past 02:30
        assert sent == "sent to 1 manager"
        assert _submitted_counts(bot) == [1, 0]
    finally:
        bot.stop()


def test_a_late_digest_neither_drops_nor_repeats_leads(
    database_url: str, slack, clock: FakeClock
) -> None:
    # The bot was down at 09:00 on the 27th and sent that digest at 15:00. A window of the 24
    # hours before each send lost the lead of the 26th at 10:00 and counted the 27th's twice.
    bot = start_bot(database_url, slack, clock, TIMEZONE="UTC", DIGEST_AT="09:00")
    try:
        assert _digest_at(bot, _utc(2026, 11, 26, 9, 0)) == "sent to 1 manager"
        _submit_at(bot, _utc(2026, 11, 26, 10, 0), "Ada")
        _submit_at(bot, _utc(2026, 11, 27, 12, 0), "Bob")
        assert _digest_at(bot, _utc(2026, 11, 27, 15, 0)) == "sent to 1 manager"
        assert _digest_at(bot, _utc(2026, 11, 28, 9, 0)) == "sent to 1 manager"
        assert _submitted_counts(bot) == [0, 2, 0]
    finally:
        bot.stop()


def test_a_digest_that_fails_half_way_is_sent_by_the_next_pass(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The day used to be claimed in a transaction of its own before the figures were read: a
    # database error (or a crash) in between left that day without a digest for good.
    real = report.digest_extras
    failures = [OperationalError("SELECT", {}, Exception("server closed the connection"))]

    def once_down(*args, **kwargs):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(report, "digest_extras", once_down)
    bot.clock.set(_utc(2026, 11, 27, 9, 0))
    with pytest.raises(OperationalError):
        bot.run_job("digest")
    assert bot.slack.dms(MANAGER) == []
    bot.clock.advance(timedelta(minutes=1))
    assert bot.run_job("digest") == "sent to 1 manager"
    assert bot.run_job("digest").startswith("already sent")
    assert len(bot.slack.dms(MANAGER)) == 1


def test_slack_date_fallback_is_utc_whatever_the_zone_given() -> None:
    # 03:00 CEST is 01:00 UTC: the fallback said "03:00 UTC", two hours off.
    when = datetime(2026, 3, 29, 3, 0, tzinfo=BERLIN)
    assert render.slack_date(when) == (
        f"<!date^{int(when.timestamp())}^{{date_short_pretty}} at {{time}}|2026-03-29 01:00 UTC>"
    )


def test_fake_clock_keeps_utc() -> None:
    # Clock.now() promises UTC; a fake clock set in another zone passed that zone on.
    clock = FakeClock(datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN))
    assert clock.now() == _utc(2026, 10, 25, 0, 30) and clock.now().tzinfo is UTC
    clock.set(datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN))  # the second 02:30
    assert clock.now() == _utc(2026, 10, 25, 1, 30) and clock.now().tzinfo is UTC
    with pytest.raises(ValueError):
        clock.set(datetime(2026, 10, 25, 2, 30))  # naive: which 02:30, where?
