"""Do the numbers leadbot shows tell the truth? `/lead report`, the daily digest, `/lead mine`
and App Home, read from what Slack was sent, against an oracle kept by the test itself.

A random but realistic history (fixed seeds) goes through Slack's requests: submissions across
events, personas and days (the same event typed in different capitals, the same person twice),
claims, releases, reassigns, every outcome the policy defines, disqualifications with reasons,
`forget` and the retention purge, with leads put exactly at the edges of the report's calendar
days and of the digest's period, across the end of daylight saving time in TIMEZONE. The oracle
is a list of plain records updated as each click is made; its figures are loops over that list,
written from what the README promises, not from leadbot's queries.

What the numbers mean, as the oracle states it:

- a lead counts on the day it was *submitted*, in every funnel figure (`/lead report`, the
  digest's 30-day funnel); `days` are calendar days in TIMEZONE, today included;
- *claimed*: a rep holds it, or one recorded an outcome on it before putting it back;
  *contacted*: any outcome; *qualified*: qualified or won at some point, whatever came after;
  disqualified leads stay in every figure (they were submitted and worked);
- a reassigned lead is one lead and one claim, credited in the digest to the rep who claimed it;
- events and personas are one group whatever their capitals;
- the digest counts what happened in [previous digest, now): submitted, claimed (the claim it
  holds now), the time those claims took, and the backlog (every lead unclaimed now);
- an erased (`forget`) or purged lead is in no figure any more.
"""

from __future__ import annotations

import json
import random
import re
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot import report
from bot.privacy import forget_person
from bot.render import human_duration
from models import CLAIMED, NEW
from tests.conftest import MANAGER, MARKETER, REP_A, REP_B, Bot, start_bot
from tests.test_outcomes import choose, claim, click_card, modal, open_disqualify

ZONE = ZoneInfo("America/New_York")
RETAIN = timedelta(days=25)
REPS = (REP_A, REP_B)
# The same event as people type it on a phone, in several capitals; one with a space.
EVENTS = ("SaaStr2026", "saastr2026", "Expo", "EXPO", "Web Summit", None)
PERSONAS = ("it", "IT", "finance", None)
EMAILS = tuple(f"person{i}@acme.example" for i in range(10))  # repeats: duplicates
REASONS = ("No budget", "Not a fit", "Existing customer", "Unresponsive")
OPEN_STAGES = ("contacted", "meeting", "qualified")
CLOSING = ("won", "lost", "disqualified")


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=ZONE).astimezone(UTC)


def midnight(day: date) -> datetime:
    """The first instant of `day` in ZONE (no midnight of New York's is skipped or repeated)."""
    return datetime.combine(day, time(0), tzinfo=ZONE).astimezone(UTC)


# --- the oracle ---------------------------------------------------------------------------------


@dataclass
class Rec:
    """A lead as the test saw it happen."""

    id: int
    submitted_at: datetime
    email: str
    event: str | None
    persona: str | None
    claimed_at: datetime | None = None  # of the claim it holds now
    claimer: str | None = None  # who clicked that claim
    owner: str | None = None
    stage: str | None = None
    reason: str | None = None
    qualified: bool = False  # sales recorded qualified or won for it, once or more
    gone: bool = False  # forgotten or purged
    released_at: datetime | None = None  # its latest release: a new claim clock from there
    assigned_at: datetime | None = None  # its latest Reassign: its owner's since then

    @property
    def queued_at(self) -> datetime:
        """When it last entered the queue: what its time to claim, and its SLA, count from."""
        return self.released_at or self.submitted_at

    @property
    def closed(self) -> bool:
        return self.stage in CLOSING


@dataclass(frozen=True)
class Figures:
    submitted: int
    claimed: int
    contacted: int
    qualified: int
    won: int
    disqualified: int
    lost: int
    median: str | None  # as people read it


def fold(name: str | None) -> str | None:
    return None if name is None else name.lower()


def shown(spellings: list[str | None]) -> str | None:
    """How a group of spellings is shown: the byte-wise first (capitals first)."""
    named = sorted(s for s in spellings if s is not None)
    return named[0] if named else None


def funnel(leads: list[Rec]) -> Figures:
    waits = [r.claimed_at - r.submitted_at for r in leads if r.claimed_at is not None]
    median = None
    if waits:
        seconds = statistics.median(w.total_seconds() for w in waits)
        median = human_duration(timedelta(seconds=round(seconds)))
    return Figures(
        submitted=len(leads),
        claimed=sum(r.claimed_at is not None or r.stage is not None for r in leads),
        contacted=sum(r.stage is not None for r in leads),
        qualified=sum(r.qualified for r in leads),
        won=sum(r.stage == "won" for r in leads),
        disqualified=sum(r.stage == "disqualified" for r in leads),
        lost=sum(r.stage == "lost" for r in leads),
        median=median,
    )


def by(leads: list[Rec], attr: str) -> dict[str | None, Figures]:
    groups: dict[str | None, list[Rec]] = {}
    for r in leads:
        groups.setdefault(fold(getattr(r, attr)), []).append(r)
    return {shown([getattr(r, attr) for r in g]): funnel(g) for g in groups.values()}


class Oracle:
    def __init__(self) -> None:
        self.leads: dict[int, Rec] = {}
        self.digests: list[datetime] = []  # when each digest was made

    def live(self) -> list[Rec]:
        return [r for r in self.leads.values() if not r.gone]

    def report(self, now: datetime, days: int, event: str | None = None) -> dict[str, Any]:
        first_day = now.astimezone(ZONE).date() - timedelta(days=days - 1)
        since = midnight(first_day)
        leads = [r for r in self.live() if since <= r.submitted_at <= now]
        if event is not None:
            leads = [r for r in leads if fold(r.event) == event.lower()]
        disqualified = [r for r in leads if r.stage == "disqualified"]
        return {
            "total": funnel(leads),
            "events": by(leads, "event") if event is None else None,
            "personas": by(leads, "persona"),
            "reasons": dict(Counter(r.reason for r in disqualified)),
        }

    def digest(self, now: datetime) -> dict[str, Any]:
        previous = self.digests[-1] if self.digests else None
        if previous is None or previous >= now:
            since = now - timedelta(hours=24)
        else:
            since = max(previous, now - timedelta(days=7))
        live = self.live()
        submitted = [r for r in live if since <= r.submitted_at < now]
        claimed = [r for r in live if r.claimed_at is not None and since <= r.claimed_at < now]
        # From when each lead last entered the queue: a release starts a new claim clock.
        waits = sorted(r.claimed_at - r.queued_at for r in claimed)  # type: ignore[operator]
        speed = "no claims"
        if waits:
            median = round(statistics.median(w.total_seconds() for w in waits))
            speed = (
                f"median *{human_duration(timedelta(seconds=median))}*, "
                f"slowest *{human_duration(waits[-1])}*"
            )
        events: dict[str | None, list[str | None]] = {}
        for r in submitted:
            events.setdefault(fold(r.event), []).append(r.event)
        # The SLA: claimed within REMINDER_AFTER (30m, around the clock) of its card, which
        # went out the instant it was submitted, or of its latest release (a new claim clock).
        due = timedelta(minutes=30)
        late = [r for r in claimed if r.claimed_at - r.queued_at > due]  # type: ignore[operator]
        overdue = [r for r in live if r.claimed_at is None and r.queued_at + due < now]
        return {
            "window": now - since,
            "late": len(late),
            "overdue": len(overdue),
            "funnel": self.report(now, 30)["events"],
            "submitted": len(submitted),
            "claimed": len(claimed),
            "speed": speed,
            "per_rep": dict(Counter(r.claimer for r in claimed)),
            "per_event": {shown(v): len(v) for v in events.values()},
            "backlog": sum(r.claimed_at is None for r in live),
        }


# --- reading what Slack was sent -----------------------------------------------------------------

_STEPS = re.compile(
    r"(\d+) submitted → (\d+) claimed → (\d+) contacted → (\d+) qualified → (\d+) won"
    r"(?: · (\d+) disqualified)?(?: · (\d+) lost)?(?: · median time to claim (.+))?$"
)
_GROUP = re.compile(r"^• (?:\*(.+?)\*|_(?:no event|no persona)_): (.+)$")


def parse_steps(text: str) -> Figures:
    m = _STEPS.search(text)
    assert m is not None, text
    counts = [int(g) if g else 0 for g in m.groups()[:7]]
    return Figures(*counts, median=m.group(8))


def sections(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]


def section(blocks: list[dict[str, Any]], title: str) -> list[str] | None:
    for text in sections(blocks):
        if text.startswith(title + "\n"):
            return text.split("\n")[1:]
    return None


def groups_of(lines: list[str]) -> dict[str | None, Figures]:
    found = {}
    for line in lines:
        m = _GROUP.match(line)
        assert m is not None, line
        found[m.group(1)] = parse_steps(m.group(2))
    return found


def shown_report(bot: Bot, text: str, one_event: bool) -> dict[str, Any]:
    body = bot.sim.slash_command(text, user_id=MARKETER).json()
    blocks = body["blocks"]
    all_leads = [t for t in sections(blocks) if t.startswith("*All leads")]
    if not all_leads:
        assert "No leads were submitted" in body["text"], body["text"]
        events = None if one_event else {}
        return {"total": funnel([]), "events": events, "personas": {}, "reasons": {}}
    events = section(blocks, "*By event*")
    reasons: dict[str | None, int] = {}
    for line in section(blocks, "*Disqualify reasons*") or []:
        m = re.match(r"^• \*(.+)\*: (\d+)$", line)
        assert m is not None, line
        reasons[m.group(1)] = int(m.group(2))
    return {
        "total": parse_steps(all_leads[0].split("\n", 1)[1]),
        "events": groups_of(events) if events is not None else None,
        "personas": groups_of(section(blocks, "*By persona*") or []),
        "reasons": reasons,
    }


def shown_digest(message: Any) -> dict[str, Any]:
    texts = []
    for b in message.blocks:
        if b["type"] == "section":
            texts += [b["text"]["text"]] if "text" in b else [f["text"] for f in b["fields"]]
    summary = texts[0]
    m = re.match(r"^\*(.+?):\* (\d+) submitted · (\d+) claimed\n\*Time to claim:\* (.+)$", summary)
    assert m is not None, summary
    reps = next(t for t in texts if t.startswith("*Claims per rep*")).split("\n")[1:]
    events = next(t for t in texts if t.startswith("*Leads per event*")).split("\n")[1:]
    backlog = next(t for t in texts if t.startswith("*Unclaimed backlog"))
    b = re.match(r"^\*Unclaimed backlog(?: \((\d+)\), oldest first\*|:\* none)", backlog)
    assert b is not None, backlog

    def pairs(lines: list[str], pattern: str) -> dict[str | None, int]:
        if lines == ["none"]:
            return {}
        found: dict[str | None, int] = {}
        for line in lines:
            p = re.match(pattern, line)
            assert p is not None, line
            key = p.group(1)
            found[None if key == "(no event)" else key] = int(p.group(2))
        return found

    sla = next(t for t in texts if t.startswith("*SLA breaches"))
    late = re.search(r"• Claimed late in [^:]+: \*(\d+)\*", sla)
    overdue = re.search(r"• Past due and still unclaimed: \*(\d+)\*", sla)
    if sla == "*SLA breaches:* none ✅":
        late_n = overdue_n = 0
    else:
        assert late is not None and overdue is not None, sla
        late_n, overdue_n = int(late.group(1)), int(overdue.group(1))
    funnel_lines = next(t for t in texts if t.startswith("*Funnel by event, the last 30 days*"))
    funnel_lines = funnel_lines.split("\n")[1:]
    return {
        "late": late_n,
        "overdue": overdue_n,
        "funnel": {} if funnel_lines == ["no leads"] else groups_of(funnel_lines),
        "period": m.group(1),
        "submitted": int(m.group(2)),
        "claimed": int(m.group(3)),
        "speed": m.group(4),
        "per_rep": pairs(reps, r"^<@(\w+)>: (\d+)$"),
        "per_event": pairs(events, r"^(.+): (\d+)$"),
        "backlog": int(b.group(1) or 0),
    }


# --- driving the history -------------------------------------------------------------------------


@pytest.fixture
def team_bot(database_url: str, slack: Any, clock: Any) -> Iterator[Bot]:
    running = start_bot(
        database_url,
        slack,
        clock,
        TIMEZONE="America/New_York",
        DIGEST_AT="09:00",
        RETAIN_FOR=f"{RETAIN.days}d",
    )
    yield running
    running.stop()


class History:
    def __init__(self, bot: Bot, rnd: random.Random) -> None:
        self.bot, self.rnd, self.o = bot, rnd, Oracle()
        self.n = 0
        self.triggers = 0
        self.digests_seen = 0

    @property
    def now(self) -> datetime:
        return self.bot.clock.now()

    def trigger(self) -> str:
        self.triggers += 1
        return f"trig-numbers-{self.triggers}"

    def submit(self) -> Rec:
        rnd = self.rnd
        self.n += 1
        email = rnd.choice(EMAILS)
        event, persona = rnd.choice(EVENTS), rnd.choice(PERSONAS)
        fields = [f"Person {self.n}", email, f"Co {self.n}", rnd.choice(["hot", "warm", "cold"])]
        if event is not None:
            fields.append(f"event: {event}")
        if persona is not None:
            fields.append(f"persona: {persona}")
        before = {lead.id for lead in self.bot.leads()}
        assert self.bot.submit(", ".join(fields)).status == 200
        [lead] = [lead for lead in self.bot.leads() if lead.id not in before]
        rec = Rec(lead.id, self.now, email, event, persona)
        assert (lead.event, lead.persona, lead.submitted_at) == (event, persona, self.now)
        self.o.leads[rec.id] = rec
        return rec

    def pick(self, ok: Any) -> Rec | None:
        found = [r for r in self.o.live() if ok(r)]
        return self.rnd.choice(found) if found else None

    def act(self) -> None:
        rnd, bot = self.rnd, self.bot
        step = rnd.choices(
            ["submit", "claim", "outcome", "disqualify", "release", "reassign", "forget", "purge"],
            weights=[30, 20, 18, 7, 7, 7, 2, 3],
        )[0]
        if step == "submit":
            self.submit()
        elif step == "claim" and (r := self.pick(lambda r: r.claimed_at is None)):
            rep = rnd.choice(REPS)
            claim(bot, r.id, rep)
            r.claimed_at, r.claimer, r.owner, r.assigned_at = self.now, rep, rep, None
        elif step == "outcome" and (r := self.pick(lambda r: r.owner is not None)):
            stage = rnd.choice([s for s in (*OPEN_STAGES, "won", "lost") if s != r.stage])
            who = rnd.choice([r.owner, MANAGER])
            choose(bot, who, bot.lead(r.id), stage)
            r.stage, r.reason = stage, None
            r.qualified = r.qualified or stage in ("qualified", "won")
        elif step == "disqualify" and (
            r := self.pick(lambda r: r.owner is not None and r.stage != "disqualified")
        ):
            reason = rnd.choice(REASONS)
            trig = self.trigger()
            view = open_disqualify(bot, bot.lead(r.id), trig, user=r.owner)
            values = {"outcome_reason": ("outcome_reason_input", "static_select", reason)}
            assert bot.sim.view_submission(r.owner, view, values).status == 200
            bot.settle()
            r.stage, r.reason = "disqualified", reason
        elif step == "release" and (r := self.pick(lambda r: r.owner and not r.closed)):
            click_card(bot, rnd.choice([r.owner, MANAGER]), bot.lead(r.id), "lead_release")
            r.claimed_at = r.claimer = r.owner = r.assigned_at = None
            r.released_at = self.now
        elif step == "reassign" and (r := self.pick(lambda r: r.owner and not r.closed)):
            new_owner = next(rep for rep in REPS if rep != r.owner)
            trig = self.trigger()
            click_card(bot, MANAGER, bot.lead(r.id), "lead_reassign", trigger_id=trig)
            values = {"new_owner": ("new_owner_input", "users_select", new_owner)}
            assert bot.sim.view_submission(MANAGER, modal(bot, trig), values).status == 200
            bot.settle()
            r.owner, r.assigned_at = new_owner, self.now  # claimed_at and the claimer stay
        elif step == "forget" and (r := self.pick(lambda r: True)):
            # Typed as people type it: capitals and spaces do not matter.
            assert forget_person(bot.services, " " + r.email.upper()).startswith("forgot ")
            for other in self.o.live():
                other.gone = other.gone or other.email == r.email
        elif step == "purge":
            assert bot.run_job("purge").startswith("purged ")
            for other in self.o.live():
                other.gone = other.submitted_at < self.now - RETAIN

    def digest(self) -> None:
        """The digest job, as the scheduler runs it; a digest sent is checked at once."""
        expected = self.o.digest(self.now)
        if not self.bot.run_job("digest").startswith("sent"):
            return
        self.o.digests.append(self.now)
        digests = [m for m in self.bot.slack.dms(MANAGER) if m.text.startswith("Lead digest:")]
        assert len(digests) == self.digests_seen + 1
        self.digests_seen += 1
        got = shown_digest(digests[-1])
        window = expected.pop("window")
        said = f"digest at {self.now}, window {window}"
        assert got.pop("period") == (
            "Last 24 hours"
            if window == timedelta(hours=24)
            else f"Since the last digest ({human_duration(window)})"
        ), said
        assert got == expected, said

    def check_report(self, text: str, days: int, event: str | None = None) -> None:
        expected = self.o.report(self.now, days, event)
        got = shown_report(self.bot, text, one_event=event is not None)
        assert got == expected, f"/lead {text} at {self.now}"

    def check_people(self) -> None:
        """`/lead mine` and App Home: each rep's open leads, the unclaimed queue."""
        live = self.o.live()
        for rep in REPS:
            mine = sorted(r.id for r in live if r.owner == rep and not r.closed)
            body = self.bot.sim.slash_command("mine", user_id=rep).json()
            if mine:
                assert body["text"] == f"Your open leads: {len(mine)}"
            else:
                assert body["text"].startswith("You have no open leads")
            event = {"type": "app_home_opened", "user": rep, "tab": "home"}
            assert self.bot.sim.event(event, event_id=f"Ev0NUM{self.trigger()}").status == 200
            self.bot.settle()
            home = self.bot.slack.home(rep)
            assert home is not None
            text = "\n".join(sections(home["blocks"]))
            yours = text[text.index("*Your open leads*") : text.index("*Unclaimed, oldest first*")]
            queue = text[text.index("*Unclaimed, oldest first*") : text.index("Handoff policy")]
            # By how long each has been the rep's: since its claim, or the Reassign to them.
            by_hold = sorted(
                (r for r in live if r.owner == rep and not r.closed),
                key=lambda r: (r.assigned_at or r.claimed_at, r.id),
            )
            assert _ids(yours) == [r.id for r in by_hold][:15]
            unclaimed = sorted(
                (r for r in live if r.claimed_at is None), key=lambda r: (r.submitted_at, r.id)
            )
            assert _ids(queue) == [r.id for r in unclaimed][:15]

    def check_state(self) -> None:
        """The oracle's idea of each lead is the database's: every click did what it meant."""
        stored = {lead.id: lead for lead in self.bot.leads()}
        assert sorted(stored) == sorted(r.id for r in self.o.live())
        for r in self.o.live():
            lead = stored[r.id]
            got = (lead.status, lead.owner_id, lead.claimed_at, lead.stage, lead.outcome_reason)
            status = CLAIMED if r.claimed_at is not None else NEW
            assert got == (status, r.owner, r.claimed_at, r.stage, r.reason), r


def _ids(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^• <[^|>]*\|#(\d+)>", text, flags=re.MULTILINE)]


START = local(2026, 10, 22, 8, 0)  # a Thursday; New York leaves daylight time on 1 November
END = local(2026, 11, 26, 10, 30)  # the final reports are asked at this moment


def edges() -> list[datetime]:
    """Moments a lead is submitted at whatever the random walk does: the first instant of the
    final reports' windows and the second before it, and the digest's hour on the days around
    the change of clocks (a lead at 09:00:00 sharp belongs to the next digest)."""
    today = END.astimezone(ZONE).date()
    moments = []
    for days in (2, 7, 30):
        start = midnight(today - timedelta(days=days - 1))
        moments += [start - timedelta(seconds=1), start]
    for day in (31, 1, 2):
        month = 10 if day == 31 else 11
        nine = local(2026, month, day, 9)
        moments += [nine - timedelta(seconds=1), nine]
    return sorted(moments)


MINUTES = (0, 1, 7, 45, 180, 600, 1440, 2880, 2880)


@pytest.mark.parametrize("seed", range(3))
def test_numbers_shown_match_the_history(team_bot: Bot, seed: int) -> None:
    bot = team_bot
    bot.clock.set(START)
    h = History(bot, random.Random(seed))
    forced = edges()
    while True:
        step = timedelta(minutes=h.rnd.choice(MINUTES), seconds=h.rnd.choice([0, 0, 30]))
        target = min(h.now + step, END)
        while forced and forced[0] <= target:
            bot.clock.set(forced.pop(0))
            h.submit()
            h.digest()  # at 09:00:00 sharp, after the lead of that instant
        bot.clock.set(target)
        if h.now >= END:
            break
        h.act()
        h.digest()
        if h.rnd.random() < 0.1:  # now and then, someone asks for a report
            days = h.rnd.choice([1, 2, 7, 30])
            h.check_report(f"report {days}", days)
    h.check_state()
    h.check_people()
    assert len(h.o.digests) >= 15  # about one a day, each checked when it was sent
    for text, days, event in [
        ("report", 30, None),
        ("report 1", 1, None),
        ("report 2d", 2, None),
        ("report 7", 7, None),
        ("report 3650", 3650, None),
        ("report #expo 30", 30, "expo"),
        ('report #"WEB SUMMIT" 7', 7, "WEB SUMMIT"),
    ]:
        h.check_report(text, days, event)
    # An hour later all is the same: nothing moves within a day but the day's new leads.
    bot.clock.advance(timedelta(hours=1))
    h.check_report("report 7", 7)
    # After the day is over the oldest day leaves the window, whatever the hour it ends at.
    bot.clock.set(midnight(END.astimezone(ZONE).date() + timedelta(days=1)))
    h.check_report("report 7", 7)
    h.check_report("report 1", 1)
    h.digest()  # not yet 09:00: nothing
    bot.clock.set(local(2026, 11, 27, 9))
    h.digest()
    assert h.o.digests[-1] == local(2026, 11, 27, 9)


# --- each defect found, on its own -------------------------------------------------------------


def _lead(bot: Bot, text: str) -> int:
    before = {lead.id for lead in bot.leads()}
    bot.submit(text)
    [lead] = [lead for lead in bot.leads() if lead.id not in before]
    return lead.id


def _report_text(bot: Bot, text: str = "report") -> str:
    body = bot.sim.slash_command(text, user_id=MARKETER).json()
    return (
        "\n".join(sections(body["blocks"])) + "\n" + json.dumps(body["blocks"], ensure_ascii=False)
    )


def test_a_lead_worked_then_put_back_still_counts_as_claimed(bot: Bot) -> None:
    """Contacted, then released: the release keeps its stage, and the report said
    `1 submitted → 0 claimed → 1 contacted`, a funnel that widens."""
    lead_id = _lead(bot, "Jane Doe, jane@acme.example, Acme, #Expo")
    claim(bot, lead_id, REP_A)
    choose(bot, REP_A, bot.lead(lead_id), "contacted")
    click_card(bot, REP_A, bot.lead(lead_id), "lead_release")
    assert bot.lead(lead_id).stage == "contacted" and bot.lead(lead_id).claimed_at is None
    shown = _report_text(bot)
    assert "1 submitted → 1 claimed → 1 contacted → 0 qualified → 0 won" in shown


def test_an_event_typed_in_other_capitals_is_one_event(bot: Bot) -> None:
    """`#saastr2026` on one phone, `#SaaStr2026` on another: `/lead report #saastr2026` counted
    both, but the per-event lines of the report and the digest split them in two."""
    for i, event in enumerate(["SaaStr2026", "saastr2026", "SAASTR2026", "Expo"]):
        _lead(bot, f"P{i}, p{i}@acme.example, Acme, #{event}")
    shown = _report_text(bot)
    assert "• *SAASTR2026*: 3 submitted" in shown
    assert "saastr2026*" not in shown and "SaaStr2026*" not in shown
    assert "• *Expo*: 1 submitted" in shown
    bot.clock.set(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    assert bot.run_job("digest") == "sent to 1 manager"
    [digest] = [m for m in bot.slack.dms(MANAGER) if m.text.startswith("Lead digest:")]
    got = shown_digest(digest)
    assert got["per_event"] == {"SAASTR2026": 3, "Expo": 1}
    funnel_lines = section(digest.blocks, "*Funnel by event, the last 30 days*")
    assert funnel_lines is not None
    assert [line.split(":")[0] for line in funnel_lines] == ["• *SAASTR2026*", "• *Expo*"]


def test_a_reassigned_lead_is_the_claim_of_the_rep_who_claimed_it(bot: Bot) -> None:
    """Claims per rep credited the lead's owner now: after a manager's reassign, the digest
    said the new owner had claimed it (and the rep who did, nothing)."""
    lead_id = _lead(bot, "Jane Doe, jane@acme.example, Acme, #Expo")
    bot.clock.advance(timedelta(minutes=12))
    claim(bot, lead_id, REP_A)
    click_card(bot, MANAGER, bot.lead(lead_id), "lead_reassign", trigger_id="re-1")
    values = {"new_owner": ("new_owner_input", "users_select", REP_B)}
    assert bot.sim.view_submission(MANAGER, modal(bot, "re-1"), values).status == 200
    bot.settle()
    assert bot.lead(lead_id).owner_id == REP_B
    bot.clock.set(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    assert bot.run_job("digest") == "sent to 1 manager"
    [digest] = [m for m in bot.slack.dms(MANAGER) if m.text.startswith("Lead digest:")]
    got = shown_digest(digest)
    assert (got["submitted"], got["claimed"], got["per_rep"]) == (1, 1, {REP_A: 1})
    assert got["speed"] == "median *12m*, slowest *12m*"


def test_report_days_are_calendar_days_in_the_team_timezone(team_bot: Bot) -> None:
    """`/lead report 7` was 7 × 24 hours back from the minute it was asked: an event day was
    cut at that hour, and the numbers changed through the day. Now: today and the 6 days
    before, from midnight in TIMEZONE (here across the end of daylight saving time)."""
    bot = team_bot
    at = [
        local(2026, 10, 31, 23, 59, 59),  # the last second before the 7 days
        local(2026, 11, 1, 0, 0, 0),  # their first instant (still daylight time)
        local(2026, 11, 1, 12, 0),  # after the change of clocks
        local(2026, 11, 6, 23, 59, 59),  # yesterday's last second
        local(2026, 11, 7, 0, 0, 0),  # today's first
    ]
    for i, when in enumerate(at):
        bot.clock.set(when)
        _lead(bot, f"P{i}, p{i}@acme.example, Acme, #Expo")
    bot.clock.set(local(2026, 11, 7, 6, 0))  # 06:00 in New York: 11:00 UTC
    assert "4 submitted" in _report_text(bot, "report 7")  # 24 h × 7 ago would be 31 Oct 06:00
    assert "1 submitted" in _report_text(bot, "report 1")  # today so far
    assert "2 submitted" in _report_text(bot, "report 2")
    shown = _report_text(bot, "report 7")
    assert "📊 Lead report — the last 7 days" in shown
    assert "Leads submitted from Sun 01 Nov 2026, 00:00 (America/New_York)" in shown
    assert "📊 Lead report — today" in _report_text(bot, "report 1")
    bot.clock.set(local(2026, 11, 7, 23, 59, 59))  # the same all day
    assert "4 submitted" in _report_text(bot, "report 7")
    bot.clock.set(local(2026, 11, 8, 0, 0))  # and the next day, a day less
    assert "2 submitted" in _report_text(bot, "report 7")  # 1 November has left


def test_a_report_reaching_past_retention_says_so(team_bot: Bot) -> None:
    """With RETAIN_FOR, `/lead report 90` showed 25 days of leads as "the last 90 days"."""
    bot = team_bot
    _lead(bot, "Jane Doe, jane@acme.example, Acme, #Expo")
    shown = _report_text(bot, "report 90")
    assert "Leads are deleted 25d after they were submitted (RETAIN_FOR)" in shown
    assert "RETAIN_FOR" not in _report_text(bot, "report 25")


# --- the window, for any moment, zone and number of days ----------------------------------------

ZONES = ["UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago"]


@settings(max_examples=150, derandomize=True)
@given(
    now=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(ZONES),
    days=st.integers(1, 400),
)
@example(now=datetime(2026, 9, 6, 12, 0, tzinfo=UTC), zone="America/Santiago", days=1)
def test_report_window_starts_at_the_first_instant_of_a_local_day(
    now: datetime, zone: str, days: int
) -> None:
    """Whatever the zone does at midnight (Santiago skips it on its spring day), the window is
    every instant whose local date is today or one of the `days - 1` before, and no other."""
    tz = ZoneInfo(zone)
    since, until = report.report_window(now, days, tz)
    assert until == now
    first = now.astimezone(tz).date() - timedelta(days=days - 1)
    assert since.astimezone(tz).date() == first
    assert (since - timedelta(seconds=1)).astimezone(tz).date() < first
