"""`python -m bench.soak [--db sqlite|postgres] [--minutes N] [--rate R] [--reads] [--no-home]
[--no-outcomes] [--env KEY=VALUE]`.

A soak of `leadbot serve` as deployed: a steady mix of what a team sends, for as long as asked,
with the process's memory, threads and descriptors read after every round. It answers one
question the benchmark's short scenarios cannot: does the process level off, or keep growing?

Each round (a minute by default) sends, open loop at `--rate` requests/s: `/lead` submissions
and Claim clicks alternating, and, unless left out, App Home opens (one request in 20) and
outcome reports (one in 10). With `--reads`, one request in 25 is `/lead mine` or `/lead report`
instead: their work grows with the leads stored, tens of thousands an hour here, so they measure
data growth more than a leak, and are left out by default. The clicks claim
the cards the earlier rounds' submissions posted, oldest first, as a team working its queue
would, so the unclaimed backlog stays about one round deep instead of growing for the whole
soak. The outcome reports work the claimed leads' pipeline oldest first, one step per lead a
round (see NEXT_STEP): stages chosen on the card or in a follow-up nudge's DM, Snooze clicks in
that DM, and Disqualified through its modal, submitted the round after it opened. After each
round the soak checks that what it reported was stored, each modal opened and each App Home
was published (views.publish); what was not counts as an error, as do answers other than 200
and modal submissions answered with errors. `--no-home --no-outcomes` is the mix of the
figures before these were added.

The scheduler runs as deployed, with a 1-minute reminder interval, so reminders,
escalations and card checks happen throughout; every 10 s Slack misbehaves for a few posts
(429s, 500s, or `not_in_channel`), so retries and history look-ups run too. Slack answers
after 50 ms.

Prints a line per round and writes the rounds as JSON (`--out`, default bench/soak.json).
Not part of `python -m bench`: a useful soak is long.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bench.common import (
    LEADS_CHANNEL,
    SECRET,
    Database,
    Prepared,
    PreparingSim,
    Served,
    lead_texts,
    loopback_slack,
    run_load,
    wait_until,
    write_json,
)
from bench.workload import MARKETERS, REPS, card_message, prepare_claim, prepare_submit
from bot import outcomes
from bot import render_outcomes as views
from bot.ids import DISQUALIFY_NOTE, DISQUALIFY_REASON, Action, input_action_id
from bot.slack_emulator import SlackEmulator
from models import CLAIMED, NEW, Lead, LeadEvent

OUT = Path(__file__).resolve().parent / "soak.json"
MANAGER = "U0MGR00001"
FAULT_EVERY = 10.0  # seconds between Slack's bad spells
FAULTS = (
    {"status": 429, "retry_after": 1},
    {"status": 500},
    {"error": "not_in_channel"},
)
# Where App Home opens and outcome reports take a slot in each 40 requests: as many of `/lead`'s
# (even) slots as of Claim's (odd), so that submissions and claims stay level and the unclaimed
# backlog about a round deep, as in the mix without them.
HOME_SLOTS = frozenset({10, 31})  # 1 in 20
OUTCOME_SLOTS = frozenset({4, 15, 24, 35})  # 1 in 10: a step for about every fourth claim
# What a rep reports next, by the lead's stage now, taken in turn: most leads are contacted
# first, some close at once; later stages move on or close (a qualified lead is won more often
# than lost). A snooze (on a follow-up nudge) puts the follow-up off and leaves the stage as is.
NEXT_STEP: dict[str | None, tuple[str, ...]] = {
    None: ("contacted", "snooze_1h", "contacted", "disqualified", "meeting", "lost"),
    "contacted": ("meeting", "snooze_1d", "lost"),
    "meeting": ("qualified", "won", "lost"),
    "qualified": ("won", "lost", "won"),
}
CHECK_WAIT = 15.0  # seconds a round's after-ack work may take to store what it was sent


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--minutes", type=float, default=10.0, help="how long to send (default 10)")
    p.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    p.add_argument("--round", type=float, default=60.0, help="seconds per round (default 60)")
    p.add_argument("--reads", action="store_true", help="mix in /lead mine and /lead report")
    p.add_argument("--no-home", action="store_true", help="leave App Home opens out of the mix")
    p.add_argument(
        "--no-outcomes", action="store_true", help="leave outcome reports out of the mix"
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for the served process, e.g. MALLOC_ARENA_MAX=2 (repeatable)",
    )
    p.add_argument("--out", type=Path, default=OUT, help="where to write the rounds as JSON")
    args = p.parse_args(argv)
    for item in args.env:
        if "=" not in item:
            p.error(f"--env {item!r}: expected KEY=VALUE")
    if args.minutes <= 0 or args.rate <= 0 or args.round < 5:
        p.error("--minutes and --rate must be positive and --round at least 5 seconds")
    return args


def _status(pid: int) -> dict[str, float]:
    """RSS and thread count from /proc, descriptors from /proc/PID/fd."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return {
        "rss_mb": round(int(fields["VmRSS"][0]) / 1024, 1),
        "rss_anon_mb": round(int(fields["RssAnon"][0]) / 1024, 1),
        "threads": int(fields["Threads"][0]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def _unclaimed(engine: Engine, n: int) -> list[Lead]:
    """The `n` oldest leads whose card is up and that nobody has claimed."""
    with Session(engine, expire_on_commit=False) as session:
        leads = session.scalars(
            select(Lead)
            .where(Lead.status == NEW, Lead.card_ts.is_not(None))
            .order_by(Lead.id)
            .limit(n)
        ).all()
        session.expunge_all()
    return list(leads)


def _pipeline(engine: Engine, n: int, busy: set[int]) -> list[Lead]:
    """The `n` oldest claimed leads still open (no closing stage), leaving out `busy` ones."""
    with Session(engine, expire_on_commit=False) as session:
        leads = session.scalars(
            select(Lead)
            .where(Lead.status == CLAIMED, Lead.owner_id.is_not(None), outcomes.not_closed())
            .where(Lead.id.not_in(busy) if busy else Lead.id.is_not(None))
            .order_by(Lead.id)
            .limit(n)
        ).all()
        session.expunge_all()
    return list(leads)


def _as_message(text: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """A message of the bot's as Slack includes it in a click's payload."""
    return {
        "type": "message",
        "text": text,
        "blocks": blocks,
        "ts": f"{time.time():.6f}",
        "bot_id": "B0LEADBOT",
        "user": "U0LEADBOT",
    }


def _stage_option(message: dict[str, Any], stage: str) -> dict[str, Any]:
    """The Record outcome select's option for `stage`, as rendered in `message`."""
    for block in message["blocks"]:
        for element in block.get("elements") or []:
            if element.get("action_id") == Action.OUTCOME.value:
                for option in element["options"]:
                    if option["value"].endswith(f":{stage}"):
                        return dict(option)
    raise LookupError(f"no {stage} option in the message")


@dataclass
class _Sent:
    """An outcome request of this round, and what the database (or Slack) must show for it."""

    lead_id: int
    act: str  # a stage; "snooze_1h"/"snooze_1d"; "form": Disqualified's modal asked for
    follow_up_at: datetime | None = None  # before a snooze, which must move it
    trigger: str | None = None  # the trigger_id a "form" opens its modal with
    owner: str = ""


class Pipeline:
    """Sales reporting back on the leads they claimed, as Slack delivers it, round after round."""

    def __init__(self, slack: SlackEmulator) -> None:
        self.slack = slack
        self.turn = itertools.count()
        self.sent: list[_Sent] = []  # this round's, checked by check()
        # trigger_id → (lead id, owner): modals open, to be submitted next round
        self.forms: dict[str, tuple[int, str]] = {}
        self.stored = 0  # outcome reports (and modals opened) found stored

    def prepare(self, sim: PreparingSim, engine: Engine, n: int) -> list[Prepared]:
        """Up to `n` requests: the modals the last round opened, submitted, then one step each
        on the oldest open claimed leads that have no modal pending."""
        out: list[Prepared] = []
        sim.kind = "outcome"
        modals = self.slack.modals if self.forms else {}
        # A lead whose modal is open (or submitted now) gets no other step this round.
        busy = {lead_id for lead_id, _ in self.forms.values()}
        for trigger, (lead_id, owner) in list(self.forms.items())[:n]:
            del self.forms[trigger]
            out.append(self._submit_form(sim, modals[trigger], lead_id, owner))
        now = datetime.now(UTC)
        for lead in _pipeline(engine, n - len(out), busy):
            choices = NEXT_STEP.get(lead.stage) or ("won",)
            turn = next(self.turn)
            out.append(self._report(sim, lead, choices[turn % len(choices)], turn, now))
        return out

    def check(self, engine: Engine) -> int:
        """How many of this round's reports are not stored (modals not opened) once its
        after-ack work has had CHECK_WAIT seconds; opened modals are submitted next round."""
        sent, self.sent = self.sent, []
        if not sent:
            return 0
        missing: list[_Sent] = []

        def done() -> bool:
            with Session(engine) as session:
                rows = session.execute(
                    select(Lead.id, Lead.stage, Lead.follow_up_at).where(
                        Lead.id.in_({item.lead_id for item in sent})
                    )
                ).all()
            now = {row.id: row for row in rows}
            opened = self.slack.modals if any(item.act == "form" for item in sent) else {}
            missing[:] = []
            for item in sent:
                row = now.get(item.lead_id)
                if item.act == "form":
                    ok = item.trigger in opened
                elif item.act.startswith("snooze_"):
                    ok = row is not None and row.follow_up_at != item.follow_up_at
                else:
                    ok = row is not None and row.stage == item.act
                if not ok:
                    missing.append(item)
            return not missing

        wait_until(done, CHECK_WAIT, interval=0.25)
        for item in sent:
            if item.act == "form" and item not in missing and item.trigger is not None:
                self.forms[item.trigger] = (item.lead_id, item.owner)
        self.stored += len(sent) - len(missing)
        return len(missing)

    def _report(
        self, sim: PreparingSim, lead: Lead, act: str, turn: int, now: datetime
    ) -> Prepared:
        owner = str(lead.owner_id)
        dm = self.slack.dm_channel(owner)
        nudge = views.follow_up_nudge(lead, now)
        in_dm = _as_message(nudge.text, nudge.blocks)
        if act.startswith("snooze_"):
            self.sent.append(_Sent(lead.id, act, follow_up_at=lead.follow_up_at))
            action = Action.SNOOZE_HOUR if act == "snooze_1h" else Action.SNOOZE_DAY
            sim.block_action(owner, action.value, str(lead.id), channel_id=dm, message=in_dm)
            return sim.take()[0]
        # Half the stages are chosen on the card (versioned), half in a nudge's DM (not);
        # Disqualified on the card, where its modal opens with the trigger_id sent.
        on_card = act == outcomes.DISQUALIFIED or turn % 2 == 0
        message = card_message(lead, str(lead.card_ts)) if on_card else in_dm
        trigger = sim.new_trigger_id()
        if act == outcomes.DISQUALIFIED:
            self.sent.append(_Sent(lead.id, "form", trigger=trigger, owner=owner))
        else:
            self.sent.append(_Sent(lead.id, act))
        sim.select(
            owner,
            Action.OUTCOME.value,
            {"selected_option": _stage_option(message, act)},
            channel_id=LEADS_CHANNEL if on_card else dm,
            message=message,
            trigger_id=trigger,
        )
        return sim.take()[0]

    def _submit_form(
        self, sim: PreparingSim, view: dict[str, Any], lead_id: int, owner: str
    ) -> Prepared:
        """Disqualify's modal filled in: a reason from its list (in turn), and a note."""
        reasons = next(
            b["element"]["options"]
            for b in view["blocks"]
            if b.get("block_id") == DISQUALIFY_REASON
        )
        reason = reasons[next(self.turn) % len(reasons)]
        values = {
            DISQUALIFY_REASON: (
                input_action_id(DISQUALIFY_REASON),
                "static_select",
                {"selected_option": reason},
            ),
            DISQUALIFY_NOTE: (input_action_id(DISQUALIFY_NOTE), "Budget frozen until next year"),
        }
        self.sent.append(_Sent(lead_id, outcomes.DISQUALIFIED))
        sim.view_submission(owner, view, values)
        return sim.take()[0]


_event_ids = itertools.count(1)


def _prepare_home(sim: PreparingSim, slack: SlackEmulator, user: str) -> Prepared:
    """Someone opens leadbot's App Home tab: an Events API delivery with an id of its own."""
    sim.kind = "home"
    event = {
        "type": "app_home_opened",
        "user": user,
        "channel": slack.dm_channel(user),
        "tab": "home",
    }
    sim.event(event, event_id=f"Ev0SOAK{next(_event_ids):09d}")
    return sim.take()[0]


def _round_requests(
    served: Served,
    slack: SlackEmulator,
    engine: Engine,
    n: int,
    start: int,
    args: argparse.Namespace,
    pipeline: Pipeline | None,
) -> list[Prepared]:
    """`n` requests, signed now (Slack's signatures are good for 5 minutes)."""
    sim = PreparingSim(
        served.url, SECRET, team_id=slack.team_id, response_url_for=slack.response_url
    )
    cards = iter(_unclaimed(engine, n // 2))

    def read(i: int) -> bool:
        return bool(args.reads) and i % 25 == 0

    # Only as many reports as will be sent: each one prepared is checked for after the round.
    slots = OUTCOME_SLOTS if pipeline is not None else frozenset()
    wanted = sum(1 for i in range(n) if i % 40 in slots and not read(i))
    reports = iter(pipeline.prepare(sim, engine, wanted) if pipeline else [])
    out: list[Prepared] = []
    for i, text in enumerate(lead_texts(n, start)):
        if read(i):
            # One request in 25 is a read: someone's own leads, or the report.
            sim.kind = "read"
            if (i // 25) % 2:
                sim.slash_command("mine", REPS[i % len(REPS)], channel_id=LEADS_CHANNEL)
            else:
                sim.slash_command("report 7", MARKETERS[i % len(MARKETERS)])
            out.append(sim.take()[0])
            continue
        report = next(reports, None) if i % 40 in slots else None
        if report is not None:
            out.append(report)
            continue
        if not args.no_home and i % 40 in HOME_SLOTS:
            # Reps and marketers alike open it: their own leads, the queue, the policy.
            k = (start + i) // 20
            people = REPS if k % 2 else MARKETERS
            out.append(_prepare_home(sim, slack, people[k // 2 % len(people)]))
            continue
        lead = next(cards, None) if i % 2 else None
        if lead is not None and lead.card_ts is not None:
            out.append(prepare_claim(sim, lead, REPS[i % len(REPS)], lead.card_ts))
        else:
            out.append(prepare_submit(sim, text, MARKETERS[i % len(MARKETERS)]))
    return out


def _published(slack: SlackEmulator, expected: int) -> int:
    """App Home views Slack took so far, once `expected` or after CHECK_WAIT seconds."""

    def count() -> int:
        return sum(1 for call in slack.calls_to("views.publish") if call.ok)

    wait_until(lambda: count() >= expected, CHECK_WAIT, interval=0.25)
    return count()


def _refused(load: Any) -> int:
    """Answers that were a 200 but said no: a modal submission answered with errors."""
    return sum(1 for s in load.samples if s.status == 200 and b'"response_action"' in s.body)


def _stored(engine: Engine, slack: SlackEmulator) -> dict[str, int]:
    """What the database holds at the end, by status and stage, and what Slack was sent."""
    with Session(engine) as session:
        rows = session.execute(
            select(Lead.status, Lead.stage, func.count()).group_by(Lead.status, Lead.stage)
        ).all()
        snoozes = session.scalar(
            select(func.count()).select_from(LeadEvent).where(LeadEvent.kind == "snoozed")
        )
    out = {f"{status}/{stage or '-'}": int(n) for status, stage, n in rows}
    out["snoozed_events"] = int(snoozes or 0)
    out["views.publish"] = sum(1 for call in slack.calls_to("views.publish") if call.ok)
    out["views.open"] = sum(1 for call in slack.calls_to("views.open") if call.ok)
    return out


def _faults(slack: SlackEmulator, stop: threading.Event) -> None:
    for fault in itertools.cycle(FAULTS):
        if stop.wait(FAULT_EVERY):
            return
        slack.fail("chat.postMessage", times=5, **fault)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.ERROR)
    # A soak is often stopped with kill: stop the served process and write the rounds then too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rounds = max(1, round(args.minutes * 60 / args.round))
    per_round = int(args.rate * args.round)
    extra = dict(item.split("=", 1) for item in args.env)
    settings = {
        "REMINDER_AFTER": "1m",
        "ESCALATE_AFTER": "2",
        "MANAGER_IDS": MANAGER,
        # Many channels' worth of cards: one paced channel would only grow a backlog here.
        "SLACK_POSTS_PER_SECOND": "100",
        **extra,
    }
    workdir = Path(tempfile.mkdtemp(prefix="leadbot-soak-"))
    slack = loopback_slack()
    slack.latency(0.05)
    database = Database.create(args.db, "soak", workdir)
    engine = database.engine()
    served = Served.product("soak", database.url, slack.url, workdir, **settings).start()
    stop = threading.Event()
    faults = threading.Thread(target=_faults, args=(slack, stop), daemon=True)
    report: dict[str, Any] = {
        "db": args.db,
        "rate": args.rate,
        "round_s": args.round,
        "reads": args.reads,
        "home": not args.no_home,
        "outcomes": not args.no_outcomes,
        "settings": settings,
        "rounds": [],
    }
    try:
        served.wait_healthy()
        time.sleep(2.0)
        report["start"] = _status(served.pid)
        print(f"start: {report['start']}", flush=True)
        faults.start()
        pipeline = None if args.no_outcomes else Pipeline(slack)
        sent = homes = unpublished_before = 0
        t0 = time.monotonic()
        for r in range(rounds):
            requests = _round_requests(
                served, slack, engine, per_round, 1_000_000 + sent, args, pipeline
            )
            cpu = served.cpu_seconds()
            load = run_load(
                served.port,
                requests,
                clients=16,
                max_seconds=args.round * 1.5,
                rate=args.rate,
                keep_body=True,  # a modal's submission can be a 200 that says no
            )
            cpu = served.cpu_seconds() - cpu
            minutes = round((time.monotonic() - t0) / 60, 2)
            status = _status(served.pid)  # before the checks: they may wait
            sent += len(requests)
            kinds = [p.kind for p in requests]
            homes += kinds.count("home")
            # Stored, opened and published once the round's after-ack work is done.
            unstored = pipeline.check(engine) if pipeline is not None else 0
            unpublished = max(0, homes - _published(slack, homes) - unpublished_before)
            unpublished_before += unpublished
            http_errors, refused = load.errors, _refused(load)
            row = {
                "round": r + 1,
                "minutes": minutes,
                "requests": sent,
                "errors": http_errors + refused + unstored + unpublished,
                "http_errors": http_errors,
                "refused": refused,
                "unstored": unstored,
                "unpublished": unpublished,
                "homes": kinds.count("home"),
                "outcomes": kinds.count("outcome"),
                "cpu_ms_per_request": round(1000 * cpu / max(1, len(load.samples)), 2),
                **status,
            }
            report["rounds"].append(row)
            print(json.dumps(row), flush=True)
            write_json(args.out, report)  # a soak stopped early still leaves its rounds
            if served.proc is not None and served.proc.poll() is not None:
                print(f"leadbot stopped: {served.log_tail()}", file=sys.stderr)
                return 1
        stop.set()
        time.sleep(args.round / 2)  # idle: the outbox drains, the jobs run once more
        report["idle"] = _status(served.pid)
        print(f"idle: {report['idle']}", flush=True)
        report["stored"] = _stored(engine, slack)
        print(f"stored: {report['stored']}", flush=True)
    finally:
        # The rounds first, and no second SIGTERM in the middle of cleaning up.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        write_json(args.out, report)
        stop.set()
        served.stop()
        slack.stop()
        engine.dispose()
        database.drop()
    errors = sum(row["errors"] for row in report["rounds"])
    stored = f", {pipeline.stored:,} outcome steps stored" if pipeline is not None else ""
    print(f"{sent:,} requests, {errors} errors{stored}; rounds in {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
