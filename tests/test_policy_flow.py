"""The policy file driving the running bot: validation of /lead against it, routing, and the
per-priority SLA on the working-hours clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import LEADS_CHANNEL, MANAGER, MARKETER, Bot, start_bot

POLICY = """
[hours]
timezone = "America/New_York"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "18:00"
holidays = ["2026-11-26"]

[[personas]]
key = "it-leader"
name = "IT leader"
description = "Director or VP of IT"

[priorities.hot]
means = "Asked for a demo"
claim_within = "15m"
escalate_after = 1
follow_up_within = "4h"

[priorities.warm]
means = "A real need"
claim_within = "2h"
escalate_after = 2
follow_up_within = "1d"

[[routes]]
territory = "EMEA"
channel = "C0EMEA0001"
"""

FRIDAY_1755_NY = datetime(2026, 11, 20, 22, 55, tzinfo=UTC)


def _bot(tmp_path: Path, database_url: str, slack, clock) -> Bot:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    return start_bot(database_url, slack, clock, POLICY_FILE=str(policy))


def test_lead_is_checked_against_the_policy(tmp_path, database_url, slack, clock) -> None:
    bot = _bot(tmp_path, database_url, slack, clock)
    try:
        wrong_persona = bot.submit("Jane Doe, jane@acme.example, persona: cto").json()["text"]
        assert "persona" in wrong_persona and "cto" in wrong_persona
        assert "it-leader" in wrong_persona  # the valid values are listed
        wrong_priority = bot.submit("Jane Doe, jane@acme.example, priority: cold").json()["text"]
        assert "cold" in wrong_priority and "hot" in wrong_priority and "warm" in wrong_priority
        assert bot.leads() == []
        shown = bot.submit("policy").json()["text"]
        assert "IT leader" in shown and "America/New_York" in shown and "C0EMEA0001" in shown
        # The modal offers the policy's personas and priorities as menus.
        bot.sim.slash_command("", user_id=MARKETER, trigger_id="t-policy")
        bot.settle()
        [call] = bot.slack.calls_to("views.open")
        blocks = {b["block_id"]: b for b in call.args["view"]["blocks"]}
        persona_options = blocks["persona"]["element"]["options"]
        assert [o["value"] for o in persona_options] == ["it-leader"]
        assert persona_options[0]["description"]["text"] == "Director or VP of IT"
        priorities = [o["value"] for o in blocks["priority"]["element"]["options"]]
        assert priorities == ["hot", "warm"]
    finally:
        bot.stop()


def test_routes_pick_the_channel(tmp_path, database_url, slack, clock) -> None:
    bot = _bot(tmp_path, database_url, slack, clock)
    try:
        receipt = bot.submit("Hans Muster, hans@example.de, territory: EMEA").json()["text"]
        bot.submit("Jane Doe, jane@acme.example")
        emea, other = bot.leads()
        assert emea.card_channel == "C0EMEA0001" and "<#C0EMEA0001>" in receipt
        assert other.card_channel == LEADS_CHANNEL
    finally:
        bot.stop()


def test_hot_lead_friday_evening_is_reminded_monday_0910(
    tmp_path,
    database_url,
    slack,
    clock,
) -> None:
    clock.set(FRIDAY_1755_NY)
    bot = _bot(tmp_path, database_url, slack, clock)
    try:
        bot.submit("Jane Doe, jane@acme.example, hot")
        [lead] = bot.leads()
        monday_0910 = datetime(2026, 11, 23, 14, 10, tzinfo=UTC)
        assert lead.next_reminder_at == monday_0910
        # Nothing over the weekend, nor a minute early on Monday.
        for when in (
            datetime(2026, 11, 20, 23, 30, tzinfo=UTC),  # Friday 18:30
            datetime(2026, 11, 21, 15, 0, tzinfo=UTC),  # Saturday 10:00
            datetime(2026, 11, 23, 14, 9, tzinfo=UTC),  # Monday 09:09
        ):
            clock.set(when)
            assert bot.run_job("reminders") in (
                "outside working hours: nothing sent",
                "0 reminded, 0 escalated",
            )
        assert [m for m in slack.messages(LEADS_CHANNEL) if m.thread_ts] == []
        clock.set(monday_0910)
        assert bot.run_job("reminders") == "1 reminded, 0 escalated"
        # hot: escalate after 1 reminder, 15 working minutes later.
        clock.set(monday_0910 + timedelta(minutes=15))
        assert bot.run_job("reminders") == "0 reminded, 1 escalated"
        assert len(bot.slack.dms(MANAGER)) == 1
    finally:
        bot.stop()


def test_warm_lead_uses_its_own_interval_and_skips_the_holiday(
    tmp_path,
    database_url,
    slack,
    clock,
) -> None:
    clock.set(datetime(2026, 11, 25, 22, 0, tzinfo=UTC))  # Wednesday 17:00 NY
    bot = _bot(tmp_path, database_url, slack, clock)
    try:
        bot.submit("Raj Patel, raj@globex.example")  # warm: 2h of working time
        [lead] = bot.leads()
        # 1h on Wednesday, Thursday 26 is a holiday, so the second hour ends Friday 10:00 NY.
        assert lead.next_reminder_at == datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
        clock.set(datetime(2026, 11, 26, 16, 0, tzinfo=UTC))  # the holiday, 11:00
        assert bot.run_job("reminders").startswith("outside working hours")
    finally:
        bot.stop()


# A night shift in Berlin on Friday and Saturday nights; the clocks go forward (02:00 CET to
# 03:00 CEST) inside Saturday 28 March 2026's night, which is 7 real hours long.
NIGHT_POLICY = """
[hours]
timezone = "Europe/Berlin"
days = ["fri", "sat"]
start = "22:00"
end = "06:00"

[priorities.hot]
claim_within = "6h30m"
escalate_after = 1
"""


def test_a_night_shift_reminds_across_midnight_and_the_clock_change(
    tmp_path,
    database_url,
    slack,
    clock,
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(NIGHT_POLICY)
    clock.set(datetime(2026, 3, 28, 4, 30, tzinfo=UTC))  # Saturday 05:30 CET, Friday's night
    bot = start_bot(database_url, slack, clock, POLICY_FILE=str(policy))
    try:
        shown = bot.submit("policy").json()["text"]
        assert "Fri, Sat, 22:00 to 06:00 the next day (Europe/Berlin)" in shown
        bot.submit("Jane Doe, jane@acme.example, hot")
        [lead] = bot.leads()
        # 30m to Friday's night's end; 4h of Saturday's night to 02:00 CET, when it is 03:00
        # CEST; 2h more: Sunday 05:00 CEST (03:00 UTC), not 04:00 by the wall clock.
        sunday_0500 = datetime(2026, 3, 29, 3, 0, tzinfo=UTC)
        assert lead.next_reminder_at == sunday_0500
        for when in (
            datetime(2026, 3, 28, 11, 0, tzinfo=UTC),  # Saturday noon
            datetime(2026, 3, 28, 20, 59, tzinfo=UTC),  # Saturday 21:59 CET
            datetime(2026, 3, 29, 0, 30, tzinfo=UTC),  # Sunday 01:30 CET, past midnight
            datetime(2026, 3, 29, 2, 59, tzinfo=UTC),  # Sunday 04:59 CEST
        ):
            clock.set(when)
            assert bot.run_job("reminders") in (
                "outside working hours: nothing sent",
                "0 reminded, 0 escalated",
            )
        assert [m for m in slack.messages(LEADS_CHANNEL) if m.thread_ts] == []
        clock.set(sunday_0500)
        assert bot.run_job("reminders") == "1 reminded, 0 escalated"
        # Sunday's and the weeknights are not worked: 1h to 06:00 CEST, then Friday 3 April's
        # night from 22:00 for 5h30m: Saturday 03:30 CEST.
        clock.set(datetime(2026, 3, 30, 1, 0, tzinfo=UTC))  # Monday 03:00 CEST: Sunday's night
        assert bot.run_job("reminders") == "outside working hours: nothing sent"
        saturday_0330 = datetime(2026, 4, 4, 1, 30, tzinfo=UTC)
        assert bot.lead(lead.id).next_reminder_at == saturday_0330
        clock.set(saturday_0330)
        assert bot.run_job("reminders") == "0 reminded, 1 escalated"
        assert len(bot.slack.dms(MANAGER)) == 1
    finally:
        bot.stop()
