"""`/lead report`, the digest's extras (SLA breaches, cards not posted, per-event funnel) and the
policy on App Home, on a known data set written straight into the database."""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot import report
from bot.policy import describe_policy, parse_policy
from bot.report import Funnel, ReportArgs, UsageError, parse_report_args
from models import CLAIMED, NEW, Lead, make_sessionmaker
from tests.conftest import (
    LEADS_CHANNEL,
    MANAGER,
    MARKETER,
    REP_A,
    REP_B,
    TEAM,
    Bot,
    start_bot,
    statements_sent,
)
from tests.test_handoff import click
from tests.test_outcomes import choose, new_lead, open_disqualify

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # the digest's hour (DIGEST_AT 09:00 UTC)
DUE_AFTER = timedelta(minutes=30)  # REMINDER_AFTER in the tests' settings
_TS = itertools.count(1)


def add_lead(
    s: Session,
    name: str,
    *,
    ago: timedelta,
    event: str | None = None,
    persona: str | None = None,
    claim_after: timedelta | None = None,
    stage: str | None = None,
    reason: str | None = None,
    owner: str = REP_A,
    due_after: timedelta | None = DUE_AFTER,
    card_error: str | None = None,
    now: datetime = NOW,
) -> Lead:
    """A lead as the lifecycle would leave it: stage and reason set as sales would record them."""
    submitted = now - ago
    claimed = submitted + claim_after if claim_after is not None else None
    lead = Lead(
        team_id=TEAM,
        name=name,
        email=f"{name.lower().replace(' ', '.')}@example.com",
        company="Acme",
        priority="warm",
        event=event,
        persona=persona,
        submitted_by=MARKETER,
        submitted_at=submitted,
        status=CLAIMED if claimed else NEW,
        owner_id=owner if claimed else None,
        claimed_at=claimed,
        version=2 if claimed else 1,
        reminders_sent=0,
        card_channel=None if card_error else LEADS_CHANNEL,
        card_ts=None if card_error else f"1764000000.{next(_TS):06d}",
        card_permalink=None if card_error else f"https://x.slack.com/archives/C/p{len(name)}",
        card_error=card_error,
        claim_due_at=submitted + due_after if due_after is not None and not card_error else None,
        stage=stage,
        stage_at=claimed + timedelta(days=1) if stage and claimed else None,
        outcome_reason=reason,
    )
    s.add(lead)
    s.flush()
    return lead


def m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


def d(days: float) -> timedelta:
    return timedelta(days=days)


def h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def seed_funnel(s: Session, now: datetime = NOW) -> None:
    """Eleven leads in the last 30 days (calendar days in UTC, today included), two just
    outside them.

    event       persona  claimed after  stage         reason
    SaaStr2026  it       5m             won
    SaaStr2026  it       10m            qualified
    SaaStr2026  finance  20m            meeting
    SaaStr2026  finance  40m            disqualified  No budget
    SaaStr2026  -        (unclaimed)
    Expo        it       60m            disqualified  No budget
    Expo        it       30m            disqualified  Not a fit
    Expo        -        90m            lost          Went with a competitor
    Expo        finance  2m             (no outcome yet)
    -           it       15m            contacted
    -           -        3m             disqualified  (no reason), at the 30 days' first instant
    """
    rows = [
        ("s1", d(1), "SaaStr2026", "it", m(5), "won", None),
        ("s2", d(2), "SaaStr2026", "it", m(10), "qualified", None),
        ("s3", d(3), "SaaStr2026", "finance", m(20), "meeting", None),
        ("s4", d(4), "SaaStr2026", "finance", m(40), "disqualified", "No budget"),
        ("s5", d(5), "SaaStr2026", None, None, None, None),
        ("e1", d(6), "Expo", "it", m(60), "disqualified", "No budget"),
        ("e2", d(7), "Expo", "it", m(30), "disqualified", "Not a fit"),
        ("e3", d(8), "Expo", None, m(90), "lost", "Went with a competitor"),
        ("e4", d(9), "Expo", "finance", m(2), None, None),
        ("n1", d(10), None, "it", m(15), "contacted", None),
        # NOW is 09:00: the 30 days are today and the 29 before, from midnight.
        ("n2", d(29) + h(9), None, None, m(3), "disqualified", None),
        # Outside the 30 days: one second too old, and long ago.
        ("old1", d(29) + h(9) + timedelta(seconds=1), "Expo", "it", m(1), "won", None),
        ("old2", d(400), "SaaStr2026", "it", m(1), "won", None),
    ]
    for name, ago, event, persona, after, stage, reason in rows:
        add_lead(
            s,
            f"Lead {name}",
            ago=ago,
            event=event,
            persona=persona,
            claim_after=after,
            stage=stage,
            reason=reason,
            now=now,
        )


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker:
    return make_sessionmaker(engine)


@pytest.fixture
def funnel_db(sessions: sessionmaker) -> sessionmaker:
    with sessions.begin() as s:
        seed_funnel(s)
    return sessions


def F(key: str | None, *counts: int | timedelta | None) -> Funnel:
    """Funnel(key, submitted, claimed, contacted, qualified, won, disqualified, lost, median)."""
    return Funnel(key, *counts)  # type: ignore[arg-type]


# --- the figures -------------------------------------------------------------------------------


def test_report_funnel_per_event_and_persona(funnel_db: sessionmaker) -> None:
    with funnel_db() as s:
        r = report.report_for(s, NOW)
    assert (r.since, r.until, r.days, r.event) == (NOW - d(29) - h(9), NOW, 30, None)
    # claim times 2 3 5 10 15 | 20 30 40 60 90 minutes: median (15 + 20) / 2 = 17m30s
    assert r.total == F(None, 11, 10, 9, 2, 1, 4, 1, m(17.5))
    assert r.by_event.groups == [
        F("SaaStr2026", 5, 4, 4, 2, 1, 1, 0, m(15)),  # 5 10 | 20 40
        F("Expo", 4, 4, 3, 0, 0, 2, 1, m(45)),  # 2 30 | 60 90
        F(None, 2, 2, 2, 0, 0, 1, 0, m(9)),  # 3 | 15
    ]
    assert r.by_event.total_groups == 3 and r.by_event.hidden == 0
    assert r.by_persona.groups == [
        F("it", 5, 5, 5, 2, 1, 2, 0, m(15)),  # 5 10 15 30 60
        F("finance", 3, 3, 2, 0, 0, 1, 0, m(20)),  # 2 20 40
        F(None, 3, 2, 2, 0, 0, 1, 1, m(46.5)),  # unclaimed, 3 | 90
    ]
    # Reasons of disqualified leads only (a lost lead's reason is not one).
    assert r.reasons == [("No budget", 2), ("Not a fit", 1), (None, 1)]
    assert r.total_reasons == 3


def test_report_window_boundaries(funnel_db: sessionmaker) -> None:
    """`days` are calendar days (here in UTC), today included: not `days` × 24 hours."""
    with funnel_db() as s:
        week = report.report_for(s, NOW, days=7)  # from Fri 20 Nov 00:00: e2 (19 Nov) is out
        two = report.report_for(s, NOW, days=2)  # yesterday and today
        today = report.report_for(s, NOW, days=1)  # since midnight: nothing yet
        tonight = report.report_for(s, NOW + h(15) - timedelta(seconds=1))  # 23:59:59
        tomorrow = report.report_for(s, NOW + h(15))  # midnight: n2's day has left the window
        everything = report.report_for(s, NOW, days=3650)
        before = report.report_for(s, NOW - d(3650))
    assert week.since == datetime(2026, 11, 20, tzinfo=UTC) and week.until == NOW
    assert week.total == F(None, 6, 5, 5, 2, 1, 2, 0, m(20))  # 5 10 20 40 60
    assert two.total == F(None, 1, 1, 1, 1, 1, 0, 0, m(5))
    assert today.total.submitted == 0 and today.since == datetime(2026, 11, 26, tzinfo=UTC)
    assert tonight.total.submitted == 11
    assert tomorrow.total.submitted == 10
    assert everything.total.submitted == 13
    assert before.total == F(None, 0, 0, 0, 0, 0, 0, 0, None)
    assert before.by_event.groups == [] and before.reasons == []


def test_report_for_one_event_is_case_insensitive(funnel_db: sessionmaker) -> None:
    with funnel_db() as s:
        r = report.report_for(s, NOW, event="saastr2026")
        none = report.report_for(s, NOW, event="Nowhere")
    assert r.total == F(None, 5, 4, 4, 2, 1, 1, 0, m(15))
    assert r.by_event.groups == []  # it would only repeat the total
    assert r.by_persona.groups == [
        F("finance", 2, 2, 2, 0, 0, 1, 0, m(30)),
        F("it", 2, 2, 2, 2, 1, 0, 0, m(7.5)),
        F(None, 1, 0, 0, 0, 0, 0, 0, None),
    ]
    assert r.reasons == [("No budget", 1)]
    assert none.total.submitted == 0


def test_report_caps_the_groups_shown(sessions: sessionmaker) -> None:
    with sessions.begin() as s:
        # event k has k leads (20 events, 210 leads): the 15 largest are shown.
        for k in range(1, 21):
            for i in range(k):
                add_lead(s, f"L{k}-{i}", ago=m(10 + i), event=f"Event{k:02d}", claim_after=m(k))
    with sessions() as s:
        r = report.report_for(s, NOW)
    assert [g.key for g in r.by_event.groups] == [f"Event{k:02d}" for k in range(20, 5, -1)]
    assert [g.median_to_claim for g in r.by_event.groups] == [m(k) for k in range(20, 5, -1)]
    assert r.by_event.total_groups == 20 and r.by_event.hidden == 5
    body = json.dumps(report.report_message(r).blocks, ensure_ascii=False)
    # Events 1..5 are left out: 15 leads.
    assert "…and 5 more events (15 leads)" in body
    assert "Event05" not in body


# --- the message -------------------------------------------------------------------------------


def _valid(blocks: list[dict]) -> None:
    for b in blocks:
        Block.parse(b).validate_json()  # type: ignore[union-attr]


def test_report_message(funnel_db: sessionmaker) -> None:
    with funnel_db() as s:
        r = report.report_for(s, NOW)
    msg = report.report_message(r, persona_names={"it": "IT leader"})
    _valid(msg.blocks)
    body = "\n".join(
        b["text"]["text"] for b in msg.blocks if b["type"] == "section" and "text" in b
    )
    assert msg.blocks[0]["text"]["text"] == "📊 Lead report — the last 30 days"
    assert (
        "• *SaaStr2026*: 5 submitted → 4 claimed → 4 contacted → 2 qualified → 1 won · "
        "1 disqualified · median time to claim 15m" in body
    )
    assert (
        "• *Expo*: 4 submitted → 4 claimed → 3 contacted → 0 qualified → 0 won · "
        "2 disqualified · 1 lost · median time to claim 45m" in body
    )
    assert "• _no event_: 2 submitted" in body
    assert "• *IT leader*: 5 submitted" in body and "• *finance*: 3 submitted" in body
    assert (
        "*Disqualify reasons*\n• *No budget*: 2\n• *Not a fit*: 1\n• _no reason given_: 1" in body
    )
    assert "Went with a competitor" not in body
    assert "median time to claim 17m" in msg.text and "11 submitted" in msg.text
    assert "@example.com" not in json.dumps(msg.blocks, ensure_ascii=False)


def test_report_message_escapes_and_empty(sessions: sessionmaker) -> None:
    with sessions.begin() as s:
        add_lead(
            s,
            "X",
            ago=d(1),
            event="R&D <!channel>",
            persona="<@U123>",
            claim_after=m(1),
            stage="disqualified",
            reason="*bold* <https://evil.example|click>",
        )
    with sessions() as s:
        r = report.report_for(s, NOW)
        empty = report.report_for(s, NOW, event="Nowhere")
    body = json.dumps(report.report_message(r).blocks, ensure_ascii=False)
    assert "R&amp;D &lt;!channel&gt;" in body and "&lt;@U123&gt;" in body
    assert "&lt;https://evil.example|click&gt;" in body
    assert "<!channel>" not in body and "<@U123>" not in body and "<https" not in body
    msg = report.report_message(empty)
    _valid(msg.blocks)
    assert "No leads were submitted for *#Nowhere* in the last 30 days." in msg.text


# --- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("report", ReportArgs(None, 30)),
        ("REPORT   ", ReportArgs(None, 30)),
        ("report 7", ReportArgs(None, 7)),
        ("report #SaaStr2026", ReportArgs("SaaStr2026", 30)),
        # The event "SaaStr2026 90" if leads have it, else "SaaStr2026" over 90 days.
        ("report #SaaStr2026 90", ReportArgs("SaaStr2026 90", 30, "SaaStr2026", 90)),
        ("report 90 #SaaStr2026", ReportArgs("SaaStr2026", 90)),
        ("report 1", ReportArgs(None, 1)),
        ("report 3650", ReportArgs(None, 3650)),
        ('report #"Web Summit" 14', ReportArgs("Web Summit", 14)),
        ("report “#Web  Summit” 14", ReportArgs("Web Summit", 14)),
        ('report #"Foo, Bar" 3', ReportArgs("Foo, Bar", 3)),  # a comma within quotes
        ("report ##Expo", ReportArgs("Expo", 30)),
        # Days as the settings write durations too.
        ("report 7d", ReportArgs(None, 7)),
        ("report #Expo 90D", ReportArgs("Expo", 90)),
    ],
)
def test_report_arguments(text: str, expected: ReportArgs) -> None:
    assert parse_report_args(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("report 0", "`0` is not a number of days from 1 to 3650"),
        ("report 3651", "`3651` is not a number of days from 1 to 3650"),
        ("report -5", "`-5` is neither an `#event` nor a number of days"),
        ("report 7w", "`7w` is neither an `#event` nor a number of days"),
        ("report 0d", "`0d` is not a number of days from 1 to 3650"),
        # int() refuses more than 4,300 digits: once a traceback.
        ("report " + "9" * 5000, "is not a number of days from 1 to 3650"),
        ("report last week", "`last` is neither an `#event` nor a number of days"),
        ("report Expo", "`Expo` is neither an `#event` nor a number of days"),
        ("report 7 30", "`30`: the number of days is given twice (already 7)"),
        ("report #a #b", "`#b`: one `#event` at a time (already `#a`)"),
        ("report #", "`#`: write the event's name after `#`"),
        ('report #"Web Summit', "A quote is not closed"),
        ("report <@U1> `x`", "`&lt;@U1&gt;` is neither"),
        ("report ٣", "`٣` is neither"),  # a digit, but not one anyone types as days
    ],
)
def test_report_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_report_args(text)
    assert message in str(error.value)
    assert "Usage: `/lead report [#event] [days]`" in str(error.value)


# --- over HTTP ---------------------------------------------------------------------------------


def test_lead_report_over_http(bot: Bot) -> None:
    bot.clock.set(NOW)
    with bot.services.sessions.begin() as s:
        seed_funnel(s)
    response = bot.sim.slash_command("report", user_id=MANAGER)
    assert response.status == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    _valid(body["blocks"])
    shown = json.dumps(body["blocks"], ensure_ascii=False)
    assert "11 submitted → 10 claimed → 9 contacted → 2 qualified → 1 won" in shown
    assert "*SaaStr2026*: 5 submitted" in shown and "*Expo*: 4 submitted" in shown

    one = bot.sim.slash_command("report 7 #saastr2026", user_id=MANAGER).json()
    shown = json.dumps(one["blocks"], ensure_ascii=False)
    assert "#SaaStr2026, the last 7 days" in shown  # as the leads have it
    assert "5 submitted → 4 claimed → 4 contacted → 2 qualified → 1 won" in shown
    assert "By event" not in shown and "By persona" in shown

    bad = bot.sim.slash_command("report 7 weeks", user_id=MANAGER).json()
    assert bad["response_type"] == "ephemeral"
    assert "`weeks` is neither an `#event` nor a number of days" in bad["text"]
    # Nothing was stored as a lead, nothing was posted.
    assert len(bot.leads()) == 13
    assert bot.slack.calls_to("chat.postMessage") == []


def test_a_lead_stored_the_instant_of_the_report_counts(bot: Bot) -> None:
    """The window ended just before its `now`: with the clock standing still, as in a test
    or a fast typist on a coarse clock, the lead just stored was not in its own report."""
    bot.submit("Jane Doe, jane@acme.example, Acme Corp, hot, #SaaStr2026")
    shown = json.dumps(bot.sim.slash_command("report", user_id=MANAGER).json())
    assert "1 submitted" in shown and "No leads" not in shown


def test_a_lead_qualified_counts_as_qualified_whatever_came_after(bot: Bot) -> None:
    """The funnel is cumulative: a lead sales qualified and then lost (the commonest end of a
    real deal) or disqualified was a real opportunity, and stays one in every funnel. Recorded
    over HTTP, as sales do, then read in `/lead report` and in the digest."""
    bot.clock.set(NOW - h(3))
    paths = {
        "Qualified Lost": ["qualified", "lost"],
        "Qualified Disqualified": ["qualified", "disqualified"],
        "Contacted Lost": ["contacted", "lost"],
        "Won Lost": ["won", "lost"],  # a deal that fell through after it was signed
        "Won Outright": ["won"],  # no qualified step recorded
        "Qualified Won": ["qualified", "won"],
    }
    when: dict[str, datetime] = {}
    for i, (name, stages) in enumerate(paths.items()):
        lead = new_lead(bot, f"{name}, lead{i}@acme.example, Acme, warm, #Expo")
        for stage in stages:
            bot.clock.advance(m(10))
            when.setdefault(f"{name} {stage}", bot.clock.now())
            if stage == "disqualified":
                view = open_disqualify(bot, lead, f"trig-{i}")
                reason = {"outcome_reason": ("outcome_reason_input", "static_select", "No budget")}
                assert bot.sim.view_submission(REP_A, view, reason).status == 200
                bot.settle()
            else:
                choose(bot, REP_A, lead, stage)
            assert bot.lead(lead.id).stage == stage
    # The first qualifying stage, kept: not cleared by a loss, not moved by a later win.
    assert {lead.name: lead.qualified_at for lead in bot.leads()} == {
        "Qualified Lost": when["Qualified Lost qualified"],
        "Qualified Disqualified": when["Qualified Disqualified qualified"],
        "Contacted Lost": None,
        "Won Lost": when["Won Lost won"],
        "Won Outright": when["Won Outright won"],
        "Qualified Won": when["Qualified Won qualified"],
    }

    bot.clock.set(NOW)
    steps = "6 submitted → 6 claimed → 6 contacted → 5 qualified → 2 won · 1 disqualified · 3 lost"
    shown = json.dumps(bot.sim.slash_command("report", user_id=MANAGER).json(), ensure_ascii=False)
    assert f"*All leads*\\n{steps}" in shown
    assert f"• *Expo*: {steps}" in shown
    assert "_qualified_ every lead sales qualified (or won), even if lost" in shown
    assert bot.run_job("digest") == "sent to 1 manager"
    [digest] = bot.slack.dms(MANAGER)
    assert f"• *Expo*: {steps}" in json.dumps(digest.blocks, ensure_ascii=False)


def test_the_report_reads_only_the_funnel_index(sessions: sessionmaker) -> None:
    """Every query of `/lead report` (and so of the digest's funnel) is answered from the
    covering index over a submitted_at window: no lead row read, whatever the history holds."""
    with sessions.begin() as s:
        seed_funnel(s)
    engine = sessions.kw["bind"]
    with sessions() as s, statements_sent(engine, "SELECT") as sent:
        report.report_for(s, NOW)
    assert len(sent) == 4  # by event, by persona, medians, reasons
    with sessions() as s, statements_sent(engine, "SELECT") as one:
        # The event's name as stored comes with the personas: no pass of its own.
        assert report.report_for(s, NOW, event="SAASTR2026").event == "SaaStr2026"
    assert len(one) == 3  # by persona, medians, reasons
    sent += one
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # As autovacuum leaves a table (its visibility map makes index-only scans cheap),
            # and without the plans a table this small would otherwise get.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as vacuum:
                vacuum.exec_driver_sql("VACUUM ANALYZE leads")
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_bitmapscan = off")
        for statement, params in sent:
            prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
            plan = " ".join(str(r) for r in conn.exec_driver_sql(prefix + statement, params))
            if engine.dialect.name == "sqlite":
                assert "USING COVERING INDEX ix_leads_submitted_funnel2 " in plan, plan
                assert "SCAN leads" not in plan, plan
            else:
                assert "Index Only Scan using ix_leads_submitted_funnel2 " in plan, plan
                assert "Seq Scan" not in plan, plan


def test_slow_report_follows_through_response_url(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the ack's budget the person is told it is coming, then gets it via response_url."""
    bot.clock.set(NOW)
    with bot.services.sessions.begin() as s:
        seed_funnel(s)
    gate = threading.Event()
    real = report.report_for

    def slow(*args: Any, **kwargs: Any) -> report.Report:
        assert gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(report, "report_for", slow)
    monkeypatch.setattr(report, "ANSWER_BUDGET", 0.05)
    url = bot.slack.response_url("report-1")
    ack = bot.sim.slash_command("report 30", user_id=MANAGER, response_url=url).json()
    assert ack["response_type"] == "ephemeral" and ack["text"] == report.WORKING
    gate.set()
    [post] = bot.slack.wait_for_response(1, timeout=10, name="report-1")
    assert post.body["response_type"] == "ephemeral"
    _valid(post.body["blocks"])
    assert "11 submitted → 10 claimed" in json.dumps(post.body["blocks"], ensure_ascii=False)


def test_report_when_the_database_is_down(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> report.Report:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(report, "report_for", down)
    answer = bot.sim.slash_command("report", user_id=MANAGER).json()
    assert answer["response_type"] == "ephemeral" and answer["text"] == report.DB_DOWN


# --- the digest --------------------------------------------------------------------------------


def seed_sla(s: Session) -> None:
    h = timedelta(hours=1)
    # Claimed in the last 24 h: late by 20m, late by 1h 30m, on time.
    add_lead(s, "Late A", ago=10 * h, claim_after=m(50), owner=REP_A)
    add_lead(s, "Late B", ago=5 * h, claim_after=m(120), owner=REP_B)
    add_lead(s, "On Time", ago=4 * h, claim_after=m(10))
    # Claimed late, but three days ago: yesterday's digest had it.
    add_lead(s, "Late Old", ago=d(3), claim_after=5 * h)
    # Unclaimed past their due time: by 2h 30m and by 1d 15h 30m; one not due yet.
    add_lead(s, "Overdue E", ago=3 * h, event="Expo")
    add_lead(s, "Overdue F", ago=40 * h, event="Expo")
    add_lead(s, "Fresh G", ago=m(10), event="Expo")
    # Cards Slack refused: two for one reason, one for another; a claimed one does not count.
    add_lead(s, "Failed H", ago=2 * h, card_error="not_in_channel")
    add_lead(s, "Failed I", ago=6 * h, card_error="channel_not_found")
    add_lead(s, "Failed J", ago=7 * h, card_error="not_in_channel")
    add_lead(s, "Failed K", ago=8 * h, card_error="not_in_channel", claim_after=m(5))


def test_digest_extras_figures(sessions: sessionmaker) -> None:
    with sessions.begin() as s:
        seed_sla(s)
    with sessions() as s:
        x = report.digest_extras(s, NOW)
    assert x.claimed_late == 2
    assert [lead.name for lead in x.claimed_late_leads] == ["Late B", "Late A"]
    assert x.overdue == 2
    assert [lead.name for lead in x.overdue_leads] == ["Overdue F", "Overdue E"]
    assert x.undelivered == 3
    assert x.undelivered_errors == [("not_in_channel", 2), ("channel_not_found", 1)]
    assert [lead.name for lead in x.undelivered_leads] == ["Failed J", "Failed I", "Failed H"]
    assert x.funnel_total.submitted == 11
    assert [(g.key, g.submitted) for g in x.funnel.groups] == [(None, 8), ("Expo", 3)]


def test_digest_shows_sla_breaches_and_cards_not_posted(bot: Bot) -> None:
    with bot.services.sessions.begin() as s:
        seed_sla(s)
    bot.clock.set(NOW)
    assert bot.run_job("digest") == "sent to 1 manager"
    [digest] = bot.slack.dms(MANAGER)
    _valid(digest.blocks)
    body = "\n".join(b["text"]["text"] for b in digest.blocks if b.get("text", {}).get("text"))
    # The digest's own figures are still there.
    assert "Unclaimed backlog (6)" in json.dumps(digest.blocks, ensure_ascii=False)
    assert "• Claimed late in the last 24 hours: *2*" in body
    late = body.index("Late B"), body.index("Late A")
    assert late[0] < late[1]
    assert f"<@{REP_B}> claimed it 1h 30m after it was due" in body
    assert f"<@{REP_A}> claimed it 20m after it was due" in body
    assert "Late Old" not in body and "On Time" not in body
    assert "• Past due and still unclaimed: *2*" in body
    assert "*Overdue F* (Acme) — due 1d 15h ago" in body
    assert "*Overdue E* (Acme) — due 2h 30m ago" in body
    assert "*Cards that could not be posted (3)*" in body
    assert (
        "• `not_in_channel` ×2: the bot is not in the leads channel — type /invite @leadbot there"
        in body
    )
    assert "• `channel_not_found` ×1: the leads channel does not exist" in body
    assert "Failed K" not in body
    assert "2 claimed late, 2 past due and unclaimed; 3 cards not posted" in digest.text
    assert "@example.com" not in json.dumps(digest.blocks, ensure_ascii=False)


def test_digest_funnel_by_event(bot: Bot) -> None:
    with bot.services.sessions.begin() as s:
        seed_funnel(s)
    bot.clock.set(NOW)
    assert bot.run_job("digest") == "sent to 1 manager"
    [digest] = bot.slack.dms(MANAGER)
    _valid(digest.blocks)
    body = json.dumps(digest.blocks, ensure_ascii=False)
    assert "*Funnel by event, the last 30 days*" in body
    assert (
        "• *SaaStr2026*: 5 submitted → 4 claimed → 4 contacted → 2 qualified → 1 won · "
        "1 disqualified · median time to claim 15m" in body
    )
    assert "• _no event_: 2 submitted → 2 claimed" in body
    assert "Cards that could not be posted" not in body


def test_digest_funnel_lists_the_top_events(sessions: sessionmaker) -> None:
    with sessions.begin() as s:
        for k in range(1, 8):
            for i in range(k):
                add_lead(s, f"L{k}-{i}", ago=d(k), event=f"Event{k}")
    with sessions() as s:
        x = report.digest_extras(s, NOW)
    text = "\n".join(b.text.text for b in report.digest_blocks(x, NOW) if getattr(b, "text", None))
    assert [g.key for g in x.funnel.groups] == ["Event7", "Event6", "Event5", "Event4", "Event3"]
    assert "…and 2 more events (3 leads) — `/lead report` lists them all" in text
    assert "*SLA breaches*" in text and "Past due and still unclaimed: *28*" in text


def test_digest_without_anything_to_report(sessions: sessionmaker) -> None:
    with sessions() as s:
        x = report.digest_extras(s, NOW)
    blocks = report.digest_blocks(x, NOW)
    text = "\n".join(b.text.text for b in blocks if getattr(b, "text", None))
    assert "*SLA breaches:* none ✅" in text
    assert "Cards that could not be posted" not in text
    assert "*Funnel by event, the last 30 days*\nno leads" in text


# --- App Home ----------------------------------------------------------------------------------


def _open_home(bot: Bot, user: str) -> dict:
    event = {"type": "app_home_opened", "user": user, "tab": "home", "channel": "D0HOME0001"}
    # A fresh event id: on PostgreSQL, processed_events outlives each test's truncation.
    assert bot.sim.event(event, event_id=f"Ev0HOME{uuid.uuid4().hex[:10]}").status == 200
    bot.settle()
    home = bot.slack.home(user)
    assert home is not None
    return home


def test_home_lists_the_queue_to_sales_and_managers_only_once_sales_is_named(
    database_url: str, slack, clock
) -> None:
    """With SALES_IDS (or SALES_USERGROUP) set, the unclaimed leads' names and companies are for
    those who may claim them: a lead routed to a private channel was listed to everyone."""
    bot = start_bot(database_url, slack, clock, SALES_IDS=REP_A)
    try:
        bot.submit("Jane Doe, jane@acme.example, Acme Corp, hot")
        bot.submit("Raj Patel, raj@globex.example, Globex, warm")
        for user in (REP_A, MANAGER):
            shown = json.dumps(_open_home(bot, user)["blocks"])
            assert "Jane Doe" in shown and "Globex" in shown, user
        for user in (REP_B, MARKETER):
            shown = json.dumps(_open_home(bot, user)["blocks"])
            assert "Jane Doe" not in shown and "Globex" not in shown, user
            assert "2 leads are waiting for sales" in shown, user
    finally:
        bot.stop()


def test_home_lists_the_queue_to_everyone_where_anyone_may_claim(bot: Bot) -> None:
    bot.submit("Jane Doe, jane@acme.example, Acme Corp, hot")
    assert "Jane Doe" in json.dumps(_open_home(bot, MARKETER)["blocks"])


def test_home_shows_the_policy_below_the_leads(bot: Bot) -> None:
    home = _open_home(bot, REP_A)
    blocks = home["blocks"]
    assert len(blocks) <= 100
    _valid(blocks)
    texts = [json.dumps(b, ensure_ascii=False) for b in blocks]
    policy_at = next(i for i, t in enumerate(texts) if "Handoff policy" in t)
    queue_at = next(i for i, t in enumerate(texts) if "Unclaimed, oldest first" in t)
    assert queue_at < policy_at
    shown = "\n".join(b["text"]["text"] for b in blocks[policy_at:] if b["type"] == "section")
    assert shown == describe_policy(bot.services.settings.policy, default_channel=LEADS_CHANNEL)


def test_home_lists_fifteen_long_named_leads_within_block_kit_limits(bot: Bot) -> None:
    """Fifteen open leads, each with a long name and company full of characters Slack
    escapes, linked to its card: once more than one section's 3,000 characters, and the Home
    tab failed to build for that rep at all."""
    odd = "Ünïcode & <Co> " * 6  # 90 characters, ~140 escaped
    for i in range(16):
        bot.submit(f"{odd}{i}, p{i}@acme.example, {odd}Holdings {i}, hot, #SaaStr2026")
    for lead in bot.leads()[:15]:
        click(bot, REP_A, "lead_claim", lead)
    home = _open_home(bot, REP_A)
    blocks = home["blocks"]
    _valid(blocks)
    assert len(blocks) <= 100
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert max(len(t) for t in sections) <= 3000
    shown = "\n".join(sections)
    mine = shown[shown.index("*Your open leads*") : shown.index("*Unclaimed, oldest first*")]
    assert [int(n) for n in re.findall(r"\|#(\d+)>", mine)] == [
        lead.id for lead in bot.leads()[:15]
    ]


def _big_policy(personas: int, description: int) -> str:
    rows = [
        f'[[personas]]\nkey = "p{i}"\nname = "Persona {i}"\n'
        f'description = "{("Buys & <builds> " * 40)[:description]}"\n'
        for i in range(personas)
    ]
    reasons = ", ".join(f'"Reason number {i} & more"' for i in range(100))
    return "\n".join(rows) + f"\n[outcomes]\ndisqualify_reasons = [{reasons}]\n"


def test_policy_sections_split_on_lines_within_limits() -> None:
    policy = parse_policy(_big_policy(40, 480))
    text = describe_policy(policy)
    blocks = report.line_sections(text)
    _valid([b.to_dict() for b in blocks])
    sections = [b.text.text for b in blocks]  # type: ignore[attr-defined]
    assert len(sections) > 3 and all(len(t) <= 3000 for t in sections)
    # Nothing lost, nothing reordered; the long line of reasons is split inside.
    assert "\n".join(sections).replace("\n", "") == text.replace("\n", "")
    assert not any(re.search(r"&[a-z]*$", t) for t in sections)  # never cut inside an escape


def test_policy_sections_stop_at_the_cap() -> None:
    text = describe_policy(parse_policy(_big_policy(100, 490)))
    blocks = report.line_sections(text, max_sections=5)
    _valid([b.to_dict() for b in blocks])
    assert len(blocks) == 5
    assert blocks[-1].text.text.endswith("…the rest: type `/lead policy`.")  # type: ignore[attr-defined]


@pytest.fixture
def big_policy_bot(database_url: str, slack, clock, tmp_path: Path) -> Iterator[Bot]:
    path = tmp_path / "policy.toml"
    path.write_text(_big_policy(100, 490), encoding="utf-8")
    running = start_bot(database_url, slack, clock, POLICY_FILE=str(path))
    yield running
    running.stop()


def test_home_stays_valid_with_a_long_policy_and_full_lists(big_policy_bot: Bot) -> None:
    bot = big_policy_bot
    with bot.services.sessions.begin() as s:
        for i in range(20):
            add_lead(s, f"Open {i} & <co>", ago=m(i + 1), now=bot.clock.now())
            add_lead(s, f"Mine {i}", ago=m(i + 1), claim_after=m(1), now=bot.clock.now())
    home = _open_home(bot, REP_A)
    blocks = home["blocks"]
    assert len(blocks) <= 100
    _valid(blocks)
    body = json.dumps(blocks, ensure_ascii=False)
    assert "Handoff policy" in body and "Persona 0" in body
    assert "…the rest: type `/lead policy`." in body
    assert blocks[-1]["type"] == "context"  # "Updated …" still closes the page
