"""Funnel reports: `/lead report [#event] [days]`, the digest's extras, the policy on App Home.

Queries are SQL aggregates over an indexed `submitted_at` (or `claimed_at`, or `status`) range,
so the cost follows the window asked for, not the history stored; no lead is loaded into Python
to be counted. Medians use window functions (`row_number`/`count` over a partition), which
SQLite and PostgreSQL both have, and only for the groups shown.

Rendering is pure, as in `bot.render`: figures in, Block Kit (validated by slack_sdk) and text out;
every event, persona and reason goes through `render.inline` (escaped, and unable to end or start
bold or italics: they are shown inside leadbot's own).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.webhook import WebhookClient
from sqlalchemy import (
    ColumnElement,
    Float,
    String,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.delivery import ADVICE
from bot.leads import _seconds_between
from bot.outcomes import QUALIFYING
from bot.render import (
    HEADER_MAX,
    SECTION_TEXT_MAX,
    Message,
    _blocks,
    _split,
    digest_period,
    esc,
    human_duration,
    inline,
    lead_label,
    mention,
    shorten,
    slack_date,
)
from bot.settings import format_duration
from models import NEW, Lead

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

DEFAULT_DAYS = 30
MAX_DAYS = 3650
TOP_GROUPS = 15  # groups listed per breakdown in `/lead report`
DIGEST_TOP_EVENTS = 5  # the digest is read on a phone: the few events that matter
DIGEST_FUNNEL_DAYS = 30
DIGEST_LIST = 5  # leads named per digest list; the counts cover the rest
LABEL_MAX = 60

# Stages as sales report them (bot/outcomes.py writes them). The funnel is cumulative: a lead
# that reached a later stage passed the earlier ones, a disqualified or lost lead was
# contacted on the way out, and one qualified (or won) before it was lost or disqualified was
# still qualified (Lead.qualified_at keeps that).
DISQUALIFIED = "disqualified"
WON = "won"
LOST = "lost"
CONTACTED_STAGES: tuple[str, ...] = ("contacted", "meeting", "qualified", WON, DISQUALIFIED, LOST)

USAGE = (
    "Usage: `/lead report [#event] [days]` — the funnel of leads submitted today and the "
    f"`days` − 1 days before (1–{MAX_DAYS}, default {DEFAULT_DAYS}; `1` is today), for one "
    "`#event` or all of them. "
    "Example: `/lead report #SaaStr2026 90`. As in `/lead`, the event runs to a comma or the "
    "end (`#DMEXCO 2026`); a number ending it is the days unless it is a year or leads have "
    'that whole name. Quotes keep a number in the name: `#"Day 2" 90`.'
)


# --- figures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Funnel:
    """One group's funnel; `key` is the event or persona (None: leads without one)."""

    key: str | None
    submitted: int
    claimed: int
    contacted: int
    qualified: int
    won: int
    disqualified: int
    lost: int
    median_to_claim: timedelta | None = None


@dataclass(frozen=True)
class Breakdown:
    """The largest groups (by leads submitted), and how many groups there are in all."""

    groups: list[Funnel]
    total_groups: int

    @property
    def hidden(self) -> int:
        return self.total_groups - len(self.groups)


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    days: int
    event: str | None
    total: Funnel
    by_event: Breakdown
    by_persona: Breakdown
    reasons: list[tuple[str | None, int]]  # disqualify reasons, most frequent first
    total_reasons: int
    timezone: tzinfo = UTC  # the zone whose calendar days `days` counts


def report_window(now: datetime, days: int, tz: tzinfo = UTC) -> tuple[datetime, datetime]:
    """`days` calendar days in the team's zone: today so far and the `days - 1` days before it,
    from local midnight (as people read "the last 7 days", and as events run, by the day), not
    `days` × 24 hours back from this minute, which split a day's event by the hour of asking.
    A midnight the clocks skip starts the day at the jump; one they repeat, at its first."""
    first = now.astimezone(tz).date() - timedelta(days=days - 1)
    return datetime.combine(first, time(0), tzinfo=tz).astimezone(UTC), now


def _window(since: datetime, until: datetime) -> ColumnElement[bool]:
    # submitted_at first: the indexed range bounds every report query.
    # Up to and including `until` (the report's now): a lead stored this instant counts.
    return and_(Lead.submitted_at >= since, Lead.submitted_at <= until)


def _counts() -> list[tuple[str, Any]]:
    # count(expr) skips NULLs: a CASE without ELSE counts only the rows that match.
    return [
        ("submitted", func.count()),
        # Claimed now, or worked on and since put back in the queue (a release keeps the stage):
        # that lead was contacted, so it was claimed; the funnel never narrows then widens.
        (
            "claimed",
            func.count(case((or_(Lead.claimed_at.is_not(None), Lead.stage.is_not(None)), 1))),
        ),
        ("contacted", func.count(case((Lead.stage.in_(CONTACTED_STAGES), 1)))),
        # Qualified once, whatever came after. The stage too: a lead whose stage was written
        # without qualified_at (by a process still on the code before migration 0010) counts.
        (
            "qualified",
            func.count(case((or_(Lead.qualified_at.is_not(None), Lead.stage.in_(QUALIFYING)), 1))),
        ),
        ("won", func.count(case((Lead.stage == WON, 1)))),
        ("disqualified", func.count(case((Lead.stage == DISQUALIFIED, 1)))),
        ("lost", func.count(case((Lead.stage == LOST, 1)))),
    ]


_EMPTY = Funnel(None, 0, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class _Groups:
    rows: list[Funnel]  # the top groups, medians not filled in yet; key: the name shown
    keys: list[str | None]  # each row's group as the database folds it (lower-case)
    total: Funnel  # over every group, not only the top ones
    count: int  # how many groups there are
    spelling: str | None = None  # of `spelling_of` over all the rows (see _groups)


def _folded(column: Any) -> Any:
    """The group of an event or persona: case ignored, as `/lead report #event` compares them.
    People type `#saastr2026` on a phone for the `SaaStr2026` a colleague typed: one event."""
    return func.lower(column)


def _shown(session: Session, column: Any) -> Any:
    """The spelling a case-folded group is shown with: the same on every backend (a byte-wise
    minimum, capitals first), not left to the database's collation."""
    binary = "BINARY" if session.get_bind().dialect.name == "sqlite" else "C"
    return func.min(column.collate(binary))


def _groups(
    session: Session,
    where: ColumnElement[bool],
    column: Any,
    top: int,
    *,
    spelling_of: Any = None,
) -> _Groups:
    """The `top` largest groups of `column` (by leads submitted), in one pass over the window.

    Window functions over the grouped rows run after GROUP BY and before LIMIT, so the same
    query also gives the number of groups and the totals over all of them; and, with
    `spelling_of`, how that column is shown over all the rows (`_shown`: the name of the one
    event a report is narrowed to, without a pass of its own).
    """
    counts = _counts()
    key = _folded(column)
    extra = []
    if spelling_of is not None:
        extra.append(func.min(_shown(session, spelling_of)).over().label("spelling"))
    rows = session.execute(
        select(
            key.label("key"),
            _shown(session, column).label("shown"),
            *(expr.label(name) for name, expr in counts),
            *(func.sum(expr).over().label(f"all_{name}") for name, expr in counts),
            func.count().over().label("groups"),
            *extra,
        )
        .where(where)
        .group_by(key)
        # Named groups before "(none)" at equal counts; NULL sorts differently per backend.
        .order_by(func.count().desc(), key.is_(None), key)
        .limit(top)
    ).all()
    if not rows:
        return _Groups([], [], _EMPTY, 0)
    names = [name for name, _ in counts]
    first = rows[0]._mapping
    total = Funnel(None, *(int(first[f"all_{n}"]) for n in names))
    groups = [Funnel(r.shown, *(int(r._mapping[n]) for n in names)) for r in rows]
    spelling = first["spelling"] if spelling_of is not None else None
    return _Groups(groups, [r.key for r in rows], total, int(first["groups"]), spelling)


def _medians(
    session: Session,
    where: ColumnElement[bool],
    dimensions: Mapping[str, tuple[Any, Sequence[str | None]]],
    *,
    overall: bool = False,
) -> dict[tuple[str, str | None], timedelta]:
    """Median time to claim per group, for the groups named in `dimensions` ({name: (column,
    keys)}: a column as `_folded` groups it, and keys as that gives them), and over all leads
    (key ("", None)) when `overall`: one pass over the window.

    Each row is ranked within its group by its wait. The middle one or two rows of a group of
    n are those with 2·rank in [n, n+2] (row (n+1)/2 when n is odd, n/2 and n/2+1 when even):
    no division and no percentile_cont (SQLite has none). Only those few rows come back.
    """
    # As a float: PostgreSQL's extract() gives numeric, several times slower to sort.
    wait = cast(_seconds_between(session, Lead.submitted_at, Lead.claimed_at), Float)
    columns: list[Any] = [wait.label("w")]
    parts: list[tuple[str, Any]] = [(name, column) for name, (column, _) in dimensions.items()]
    if overall:
        parts.append(("", None))
    for name, column in parts:
        columns += [
            (column if column is not None else literal(None, String)).label(f"k_{name}"),
            func.row_number().over(partition_by=column, order_by=wait).label(f"r_{name}"),
            func.count().over(partition_by=column).label(f"n_{name}"),
        ]
    ranked = select(*columns).where(where, Lead.claimed_at.is_not(None)).subquery()

    def middle(name: str) -> ColumnElement[bool]:
        rank, n = ranked.c[f"r_{name}"], ranked.c[f"n_{name}"]
        return (rank * 2).between(n, n + 2)

    wanted: list[ColumnElement[bool]] = []
    for name, (_, keys) in dimensions.items():
        key = ranked.c[f"k_{name}"]
        named = [k for k in keys if k is not None]
        in_keys: ColumnElement[bool] = key.in_(named) if named else false()
        if None in keys:
            in_keys = or_(in_keys, key.is_(None))
        wanted.append(and_(middle(name), in_keys))
    if overall:
        wanted.append(middle(""))
    if not wanted:
        return {}
    waits: dict[tuple[str, str | None], list[float]] = {}
    for row in session.execute(select(ranked).where(or_(*wanted))).mappings():
        for name, _ in parts:
            keys = dimensions[name][1] if name else (None,)
            rank, n, key = row[f"r_{name}"], row[f"n_{name}"], row[f"k_{name}"]
            if n <= 2 * rank <= n + 2 and key in keys:
                waits.setdefault((name, key), []).append(float(row["w"]))
    return {k: timedelta(seconds=round(sum(ws) / len(ws))) for k, ws in waits.items()}


def _claimed_keys(groups: _Groups) -> list[str | None]:
    """The folded keys of the groups with a claim: those whose median is worth a look."""
    return [k for g, k in zip(groups.rows, groups.keys, strict=True) if g.claimed]


def _with_medians(
    groups: _Groups, name: str, medians: Mapping[tuple[str, str | None], timedelta]
) -> Breakdown:
    rows = [
        replace(g, median_to_claim=medians.get((name, k)))
        for g, k in zip(groups.rows, groups.keys, strict=True)
    ]
    return Breakdown(rows, groups.count)


def _reasons(
    session: Session, where: ColumnElement[bool], top: int
) -> tuple[list[tuple[str | None, int]], int]:
    rows = session.execute(
        select(Lead.outcome_reason, func.count(), func.count().over())
        .where(where, Lead.stage == DISQUALIFIED)
        .group_by(Lead.outcome_reason)
        .order_by(func.count().desc(), Lead.outcome_reason.is_(None), Lead.outcome_reason)
        .limit(top)
    ).all()
    return [(r[0], int(r[1])) for r in rows], int(rows[0][2]) if rows else 0


def report_for(
    session: Session,
    now: datetime,
    *,
    days: int = DEFAULT_DAYS,
    event: str | None = None,
    top: int = TOP_GROUPS,
    tz: tzinfo = UTC,
) -> Report:
    """The funnel of leads submitted in the last `days` calendar days in `tz` (today included,
    see report_window), overall, per event, per persona.

    `event` narrows to one event, compared case-insensitively (people type `#saastr2026` for
    the `SaaStr2026` on the cards), as events and personas are grouped; Report.event is then
    a stored spelling, the one the per-event lines and the digest show (see _shown). Four
    queries at most, each one pass over the window.
    """
    since, until = report_window(now, days, tz)
    where = _window(since, until)
    if event is not None:
        where = and_(where, _same_event(event))
    # With one event asked for, a per-event breakdown would only repeat the total.
    by_event = _groups(session, where, Lead.event, top) if event is None else None
    if by_event is not None and not by_event.count:
        empty = Breakdown([], 0)
        return Report(since, now, days, event, _EMPTY, empty, empty, [], 0, tz)
    # The one event is named as its leads spell it (as the per-event lines would), not as typed.
    spelling_of = Lead.event if event is not None else None
    by_persona = _groups(session, where, Lead.persona, top, spelling_of=spelling_of)
    event = by_persona.spelling or event
    total = by_persona.total
    dimensions = {"persona": (_folded(Lead.persona), _claimed_keys(by_persona))}
    if by_event is not None:
        dimensions["event"] = (_folded(Lead.event), _claimed_keys(by_event))
    medians = _medians(session, where, dimensions, overall=True) if total.claimed else {}
    total = replace(total, median_to_claim=medians.get(("", None)))
    reasons, total_reasons = _reasons(session, where, top) if total.disqualified else ([], 0)
    return Report(
        since,
        now,
        days,
        event,
        total,
        _with_medians(by_event, "event", medians) if by_event else Breakdown([], 0),
        _with_medians(by_persona, "persona", medians),
        reasons,
        total_reasons,
        tz,
    )


def _same_event(event: str) -> ColumnElement[bool]:
    # Both sides folded by the database, so they fold alike (SQLite's lower() is ASCII's).
    return _folded(Lead.event) == _folded(literal(event, String))


@dataclass(frozen=True)
class Reading:
    """How `#Day 2` (ReportArgs.or_event) was read: as the event "Day 2" (`whole`) because
    leads of the last `searched` days have it, or else as the event "Day" over 2 days."""

    typed: str  # "Day 2"
    whole: bool
    event: str  # "Day"
    days: int  # 2
    searched: int


def resolve(
    session: Session, args: ReportArgs, now: datetime, tz: tzinfo = UTC
) -> tuple[ReportArgs, Reading | None]:
    """The one reading of `args` to report on, and how an ambiguous one was read.

    `#Day 2` is the event "Day 2" when that reading (over the default days) has leads, else the
    event "Day" over 2 days: the name as `/lead` stored it wins, and is never an empty report.
    One query over the funnel index's submitted_at range of the default days, newest first: it
    stops at the event's latest lead, and reads the whole range only when there is none.
    """
    if args.or_event is None or args.or_days is None or args.event is None:
        return args, None
    searched = args.days
    since, until = report_window(now, searched, tz)
    found = session.scalar(
        select(Lead.submitted_at)
        .where(_window(since, until), _same_event(args.event))
        .order_by(Lead.submitted_at.desc())
        .limit(1)
    )
    reading = Reading(args.event, found is not None, args.or_event, args.or_days, searched)
    if reading.whole:
        return ReportArgs(args.event, args.days), reading
    return ReportArgs(args.or_event, args.or_days), reading


@dataclass(frozen=True)
class DigestExtras:
    """What the daily digest adds: SLA breaches, undelivered cards, the per-event funnel."""

    claimed_late: int  # claimed in the last 24 h after their claim_due_at
    claimed_late_leads: list[Lead]  # the most late first
    overdue: int  # unclaimed now and past their claim_due_at
    overdue_leads: list[Lead]  # the longest overdue first
    undelivered: int  # unclaimed leads whose card could not be posted
    undelivered_errors: list[tuple[str, int]]  # Slack's error code, how many cards
    undelivered_leads: list[Lead]  # the oldest first
    funnel_total: Funnel
    funnel: Breakdown  # per event, over `funnel_days`
    funnel_days: int = DIGEST_FUNNEL_DAYS
    window: timedelta = timedelta(hours=24)  # what claimed_late covers


def digest_extras(
    session: Session,
    now: datetime,
    *,
    window: timedelta = timedelta(hours=24),
    funnel_days: int = DIGEST_FUNNEL_DAYS,
    top_events: int = DIGEST_TOP_EVENTS,
    limit: int = DIGEST_LIST,
    tz: tzinfo = UTC,
) -> DigestExtras:
    """The digest's extra figures: each query is bounded by an index (claimed_at, status,
    submitted_at), never by the size of the history. The funnel covers the same calendar days
    (in `tz`) as `/lead report` asked at the same moment, so the two agree."""
    since = now - window
    late = and_(
        Lead.claimed_at >= since,
        Lead.claimed_at < now,
        Lead.claim_due_at.is_not(None),
        Lead.claimed_at > Lead.claim_due_at,
    )
    claimed_late = session.scalar(select(func.count()).select_from(Lead).where(late)) or 0
    late_by = _seconds_between(session, Lead.claim_due_at, Lead.claimed_at)
    claimed_late_leads = (
        list(
            session.scalars(select(Lead).where(late).order_by(late_by.desc(), Lead.id).limit(limit))
        )
        if claimed_late
        else []
    )

    overdue_where = and_(Lead.status == NEW, Lead.claim_due_at < now)
    overdue = session.scalar(select(func.count()).select_from(Lead).where(overdue_where)) or 0
    overdue_leads = (
        list(
            session.scalars(
                select(Lead).where(overdue_where).order_by(Lead.claim_due_at, Lead.id).limit(limit)
            )
        )
        if overdue
        else []
    )

    failed = and_(Lead.status == NEW, Lead.card_error.is_not(None))
    errors = session.execute(
        select(Lead.card_error, func.count())
        .where(failed)
        .group_by(Lead.card_error)
        .order_by(func.count().desc(), Lead.card_error)
    ).all()
    undelivered = sum(int(n) for _, n in errors)
    undelivered_leads = (
        list(
            session.scalars(
                select(Lead).where(failed).order_by(Lead.submitted_at, Lead.id).limit(limit)
            )
        )
        if undelivered
        else []
    )

    where = _window(*report_window(now, funnel_days, tz))
    events = _groups(session, where, Lead.event, top_events)
    claimed = _claimed_keys(events)
    dimensions = {"event": (_folded(Lead.event), claimed)}
    medians = _medians(session, where, dimensions) if claimed else {}
    return DigestExtras(
        claimed_late=claimed_late,
        claimed_late_leads=claimed_late_leads,
        overdue=overdue,
        overdue_leads=overdue_leads,
        undelivered=undelivered,
        undelivered_errors=[(str(code), int(n)) for code, n in errors],
        undelivered_leads=undelivered_leads,
        funnel_total=events.total,
        funnel=_with_medians(events, "event", medians),
        funnel_days=funnel_days,
        window=window,
    )


# --- `/lead report` arguments ------------------------------------------------------------------


class UsageError(ValueError):
    """A word `/lead report` cannot read; str(error) is the message for the person."""


@dataclass(frozen=True)
class ReportArgs:
    event: str | None = None
    days: int = DEFAULT_DAYS
    # `#Day 2` at the end of the text, no days given before it: the event "Day 2" as `/lead`
    # stores it, or the event "Day" (`or_event`) over 2 days (`or_days`). resolve() picks by
    # what is stored; None when the text says which.
    or_event: str | None = None
    or_days: int | None = None


# Quotes by kind, as phones type them too (curly); each closes with any quote of its kind.
_DOUBLE = '"“”„'
_SINGLE = "'‘’"

# A number of days, as `30` or as the settings write durations, `30d`.
_DAYS = re.compile(r"([0-9]+)d?", re.IGNORECASE)
_DAYS_WITH_UNIT = re.compile(r"[0-9]+d", re.IGNORECASE)
_PLAIN_NUMBER = re.compile(r"[0-9]+")
# A year ends many event names (`#DMEXCO 2026`); nobody means 2026 days by it.
_YEAR = re.compile(r"(?:19|20)[0-9]{2}")
# What `/lead` strips from the front of an event (bot/parsing.py: every `#` and space).
_EVENT_PREFIX = re.compile(r"^[#\s]+")


@dataclass(frozen=True)
class _Word:
    text: str  # quotes removed
    quoted: bool


def _tokens(text: str) -> list[_Word | None]:
    """Words, and None for each comma (it ends an `#event` as it ends a field of `/lead`).
    A quote opens only at the start of a word (or after its `#`s), so an apostrophe inside one
    (`#Founder's Day`) is just a letter; within quotes, spaces and commas are the word's."""
    out: list[_Word | None] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == ",":
            out.append(None)
            i += 1
            continue
        j = i
        while j < n and text[j] == "#":
            j += 1
        if j < n and text[j] in _DOUBLE + _SINGLE:
            kind = _DOUBLE if text[j] in _DOUBLE else _SINGLE
            close = next((k for k in range(j + 1, n) if text[k] in kind), -1)
            if close < 0:
                raise UsageError(f"❌ A quote is not closed in `{_show(text)}`.\n{USAGE}")
            out.append(_Word(text[i:j] + text[j + 1 : close], quoted=True))
            i = close + 1
            continue
        while j < n and not text[j].isspace() and text[j] != ",":
            j += 1
        out.append(_Word(text[i:j], quoted=False))
        i = j
    return out


def _event_name(text: str) -> str:
    # As `/lead` stores it, and one space between words: what people type, not its spacing.
    return " ".join(_EVENT_PREFIX.sub("", text).split())


def _days_of(word: str, already: int | None) -> int:
    number = _DAYS.fullmatch(word)
    if number is None:
        raise UsageError(
            f"❌ `{_show(word)}` is neither an `#event` nor a number of days.\n{USAGE}"
        )
    if already is not None:
        raise UsageError(
            f"❌ `{_show(word)}`: the number of days is given twice (already {already}).\n{USAGE}"
        )
    digits = number.group(1)
    # int() of thousands of digits raises; far fewer are already out of range.
    value = int(digits) if len(digits) <= 6 else MAX_DAYS + 1
    if not 1 <= value <= MAX_DAYS:
        raise UsageError(
            f"❌ `{_show(word)}` is not a number of days from 1 to {MAX_DAYS}.\n{USAGE}"
        )
    return value


def parse_report_args(text: str) -> ReportArgs:
    """`report [#event] [days]` (either order) → ReportArgs, or UsageError naming the bad word.

    `#event` is read as `/lead` reads it: everything after the `#` up to a comma or the end
    (`#DMEXCO 2026` is the event "DMEXCO 2026"), or one quoted word (`#"Web Summit" 14`).
    A last word `90d` is the days; a last number that is not a year (`#SaaStr2026 90`), when
    no days came before, may be either: ReportArgs.or_event/or_days, which resolve() settles.
    """
    words = text.strip().split(maxsplit=1)
    rest = text
    if words and words[0].lower() == "report":  # the subcommand's own word, if given
        rest = words[1] if len(words) > 1 else ""
    tokens = _tokens(rest)
    event: str | None = None
    days: int | None = None
    or_event: str | None = None
    or_days: int | None = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token is None:
            continue
        if not token.text.startswith("#"):
            days = _days_of(token.text, days)
            continue
        if event is not None:
            raise UsageError(
                f"❌ `{_show(token.text)}`: one `#event` at a time "
                f"(already `#{_show(event)}`).\n{USAGE}"
            )
        if token.quoted:
            name = _event_name(token.text)
            if not name:
                raise UsageError(
                    f"❌ `{_show(token.text)}`: write the event's name after `#`.\n{USAGE}"
                )
            event = name
            continue
        run = [token.text]
        quoted_end = False
        while i < len(tokens) and (word := tokens[i]) is not None:
            if word.text.startswith("#") and not word.quoted:
                so_far = _event_name(" ".join(run)) or "…"
                raise UsageError(
                    f"❌ `{_show(word.text)}`: one `#event` at a time "
                    f"(already `#{_show(so_far)}`).\n{USAGE}"
                )
            run.append(word.text)
            quoted_end = word.quoted
            i += 1
        name = _event_name(" ".join(run))
        if not name:
            raise UsageError(
                f"❌ `{_show(token.text)}`: write the event's name after `#`.\n{USAGE}"
            )
        event = name
        *first, last = name.split(" ")
        if i < len(tokens) or days is not None or not first or quoted_end:
            # A comma or a quote ended the name, or the days are given: a number is the name's.
            continue
        if _DAYS_WITH_UNIT.fullmatch(last):
            event, days = " ".join(first), _days_of(last, None)
        elif (
            _PLAIN_NUMBER.fullmatch(last)
            and not _YEAR.fullmatch(last)
            and len(last) <= 6  # int() of thousands of digits raises
            and 1 <= int(last) <= MAX_DAYS
        ):
            or_event, or_days = " ".join(first), int(last)
    return ReportArgs(event=event, days=days or DEFAULT_DAYS, or_event=or_event, or_days=or_days)


def _show(word: str) -> str:
    # Echoed inside `code`: escaped, one line, short, and no backtick to break out of it.
    return esc(shorten(" ".join(word.split()).replace("`", "'"), 40))


# --- rendering ---------------------------------------------------------------------------------


def _days(days: int) -> str:
    """The calendar days a window covers (report_window), as a heading says it."""
    return "today" if days == 1 else f"the last {days} days"


def _in_days(days: int) -> str:
    return "today" if days == 1 else f"in the last {days} days"


def _window_note(report: Report, retain_for: timedelta | None) -> str:
    """Where the window starts, in the team's zone (the days are its days), and, when leads
    older than RETAIN_FOR are deleted, that the window reaches back further than what is left."""
    tz = report.timezone
    start = report.since.astimezone(tz)
    zone = getattr(tz, "key", None) or str(tz)
    note = (
        f"Leads submitted from {start:%a %d %b %Y}, 00:00 ({esc(zone)}), "
        f"to {slack_date(report.until)}."
    )
    if retain_for is not None and report.since < report.until - retain_for:
        note += (
            f" Leads are deleted {format_duration(retain_for)} after they were submitted "
            f"(RETAIN_FOR): none before {slack_date(report.until - retain_for)} are left to count."
        )
    return note


def _label(key: str | None, none: str, names: Mapping[str, str] | None = None) -> str:
    if key is None:
        return f"_{none}_"
    return f"*{inline((names or {}).get(key, key), LABEL_MAX)}*"


def _steps(f: Funnel) -> str:
    text = (
        f"{f.submitted} submitted → {f.claimed} claimed → {f.contacted} contacted → "
        f"{f.qualified} qualified → {f.won} won"
    )
    if f.disqualified:
        text += f" · {f.disqualified} disqualified"
    if f.lost:
        text += f" · {f.lost} lost"
    if f.median_to_claim is not None:
        text += f" · median time to claim {human_duration(f.median_to_claim)}"
    return text


def _group_lines(
    breakdown: Breakdown,
    total: Funnel,
    *,
    noun: str,
    none: str,
    names: Mapping[str, str] | None = None,
    limit: int = SECTION_TEXT_MAX - 200,
    more_hint: str = "",
) -> str:
    """One line per group, whole lines only, then one line for the groups left out."""
    lines: list[str] = []
    size = 0
    shown_leads = 0
    for group in breakdown.groups:
        line = f"• {_label(group.key, none, names)}: {_steps(group)}"
        if size + len(line) + 1 > limit:
            break
        lines.append(line)
        size += len(line) + 1
        shown_leads += group.submitted
    more = breakdown.total_groups - len(lines)
    if more > 0:
        leads = total.submitted - shown_leads
        plural = noun if more == 1 else f"{noun}s"
        lines.append(
            f"…and {more} more {plural} ({leads} lead{'' if leads == 1 else 's'}){more_hint}"
        )
    return "\n".join(lines) or "none"


def _reason_lines(reasons: list[tuple[str | None, int]], total_reasons: int, total: int) -> str:
    lines = [f"• {_label(r, 'no reason given')}: {n}" for r, n in reasons]
    if total_reasons > len(reasons):
        rest = total - sum(n for _, n in reasons)
        lines.append(f"…and {total_reasons - len(reasons)} more reasons ({rest} leads)")
    return "\n".join(lines)


def _reading_note(reading: Reading | None, report: Report) -> str | None:
    """Says how `#Day 2` was read when the other reading may be the one meant: when "Day 2"
    has leads (so "Day" over 2 days was not reported), or when neither has any."""
    if reading is None or (not reading.whole and report.total.submitted):
        return None
    typed, event = inline(reading.typed, LABEL_MAX), inline(reading.event, LABEL_MAX)
    if reading.whole:
        stored = inline(report.event or reading.typed, LABEL_MAX)
        return (
            f"`#{_show(reading.typed)}` is read as the event “{stored}”, which leads have. "
            f"For the event “{event}” over {_days(reading.days)}, type "
            f"`/lead report {reading.days} #{_show(reading.event)}`."
        )
    return (
        f"`#{_show(reading.typed)}` is read as the event “{event}” over "
        f"{_days(reading.days)}: no lead {_in_days(reading.searched)} has the event “{typed}”. "
        f'For that event, type `/lead report #"{_show(reading.typed)}"`.'
    )


def report_message(
    report: Report,
    persona_names: Mapping[str, str] | None = None,
    *,
    retain_for: timedelta | None = None,
    reading: Reading | None = None,
) -> Message:
    """`/lead report` as a message: totals, per event, per persona, disqualify reasons; and
    how an ambiguous `#Day 2` was read (resolve), when the other reading may be the one meant."""
    scope = f"#{report.event}, " if report.event else ""
    header = shorten(f"📊 Lead report — {scope}{_days(report.days)}", HEADER_MAX)
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=header))]
    t = report.total
    # Not in bold itself: the summary's heading is, and mrkdwn does not nest `*`.
    event = f"#{inline(report.event, LABEL_MAX)}" if report.event else ""
    where = f" for {event}" if event else ""
    note = _reading_note(reading, report)
    if not t.submitted:
        text = f"No leads were submitted{' for *' + event + '*' if event else ''} "
        text += f"{_in_days(report.days)}."
        blocks.append(SectionBlock(text=MarkdownTextObject(text=text)))
        if note:
            blocks.append(ContextBlock(elements=[MarkdownTextObject(text=note)]))
            text += " " + note
    else:
        summary = f"*All leads{where}*\n{_steps(t)}"
        blocks.append(SectionBlock(text=MarkdownTextObject(text=summary)))
        if note:
            blocks.append(ContextBlock(elements=[MarkdownTextObject(text=note)]))
        if report.event is None:
            events = _group_lines(report.by_event, t, noun="event", none="no event")
            blocks.append(SectionBlock(text=MarkdownTextObject(text=f"*By event*\n{events}")))
        personas = _group_lines(
            report.by_persona, t, noun="persona", none="no persona", names=persona_names
        )
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f"*By persona*\n{personas}")))
        if report.reasons:
            reasons = _reason_lines(report.reasons, report.total_reasons, t.disqualified)
            blocks.append(
                SectionBlock(text=MarkdownTextObject(text=f"*Disqualify reasons*\n{reasons}"))
            )
        text = f"Lead report{where}, {_days(report.days)}: {_steps(t)}"
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"{_window_note(report, retain_for)} _Claimed_ counts leads a rep "
                    "holds or has recorded an outcome on; _contacted_ every lead with an "
                    "outcome; _qualified_ every lead sales qualified (or won), even if lost "
                    "or disqualified since. Events and personas are grouped whatever their "
                    "capitals."
                )
            ]
        )
    )
    fallback = text if t.submitted else f"Lead report: {text}"
    return Message(text=fallback, blocks=_blocks(blocks))


def _ref(lead: Lead) -> str:
    link = lead.card_permalink
    ref = f"<{link}|#{lead.id}>" if link else f"#{lead.id}"
    return f"{ref} {lead_label(lead, LABEL_MAX)}"


def digest_blocks(x: DigestExtras, now: datetime) -> list[Block]:
    """The digest's extra sections: SLA breaches, cards not posted, the per-event funnel."""
    blocks: list[Block] = [DividerBlock()]
    if not x.claimed_late and not x.overdue:
        sla = "*SLA breaches:* none ✅"
    else:
        lines = [
            "*SLA breaches*",
            f"• Claimed late in {digest_period(x.window)}: *{x.claimed_late}*",
        ]
        for lead in x.claimed_late_leads:
            assert lead.claimed_at is not None and lead.claim_due_at is not None
            late = human_duration(lead.claimed_at - lead.claim_due_at)
            owner = mention(lead.owner_id) if lead.owner_id else "someone"
            lines.append(f"  ◦ {_ref(lead)} — {owner} claimed it {late} after it was due")
        if x.claimed_late > len(x.claimed_late_leads):
            lines.append(f"  ◦ …and {x.claimed_late - len(x.claimed_late_leads)} more")
        lines.append(f"• Past due and still unclaimed: *{x.overdue}*")
        for lead in x.overdue_leads:
            assert lead.claim_due_at is not None
            lines.append(f"  ◦ {_ref(lead)} — due {human_duration(now - lead.claim_due_at)} ago")
        if x.overdue > len(x.overdue_leads):
            lines.append(f"  ◦ …and {x.overdue - len(x.overdue_leads)} more")
        sla = _fit(lines)
    blocks.append(SectionBlock(text=MarkdownTextObject(text=sla)))

    if x.undelivered:
        lines = [
            f"*Cards that could not be posted ({x.undelivered})* — these leads are not in "
            "the channel, so nobody can claim them:"
        ]
        for code, n in x.undelivered_errors:
            advice = ADVICE.get(code, "Slack refused the card")
            lines.append(f"• `{esc(shorten(code, 60))}` ×{n}: {esc(advice)}")
        lines.append("Leads: " + ", ".join(_ref(lead) for lead in x.undelivered_leads))
        if x.undelivered > len(x.undelivered_leads):
            lines[-1] += f" and {x.undelivered - len(x.undelivered_leads)} more"
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_fit(lines))))

    title = f"*Funnel by event, {_days(x.funnel_days)}*"
    if not x.funnel_total.submitted:
        funnel = f"{title}\nno leads"
    else:
        funnel = f"{title}\n" + _group_lines(
            x.funnel,
            x.funnel_total,
            noun="event",
            none="no event",
            more_hint=" — `/lead report` lists them all",
        )
    blocks.append(SectionBlock(text=MarkdownTextObject(text=funnel)))
    return blocks


def _fit(lines: list[str], limit: int = SECTION_TEXT_MAX - 100) -> str:
    """Whole lines up to `limit`: cutting one could break a link or an escape."""
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > limit - 20:
            kept.append(f"…and {len(lines) - len(kept)} more lines")
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def with_digest_extras(message: Message, x: DigestExtras, now: datetime) -> Message:
    """The digest message with the extra sections after its own, and a longer fallback text."""
    notes = []
    if x.claimed_late or x.overdue:
        notes.append(f"{x.claimed_late} claimed late, {x.overdue} past due and unclaimed")
    if x.undelivered:
        notes.append(f"{x.undelivered} card{'' if x.undelivered == 1 else 's'} not posted")
    text = message.text + ("; " + "; ".join(notes) if notes else "")
    return Message(text=text, blocks=message.blocks + _blocks(digest_blocks(x, now)))


# --- answering `/lead report` within Slack's three seconds -----------------------------------

# Slack drops a slash command not answered within 3 s. A month of leads takes well under a
# second even at a million leads, but years of them can take longer: past this budget the ack
# says the report is coming, and the report follows through the command's response_url.
ANSWER_BUDGET = 2.0
WORKING = "📊 Counting a lot of leads — the report will appear here in a few seconds."
DB_DOWN = "⚠️ The database is not answering right now, so there is no report; try again soon."


def answer(
    services: Services, command: Mapping[str, Any], text: str, *, budget: float | None = None
) -> dict[str, Any]:
    """`/lead report …` → the keyword arguments of its ephemeral ack (`text`, `blocks`)."""
    try:
        args = parse_report_args(text)
    except UsageError as e:
        return {"text": str(e)}
    settings = services.settings
    names = {p.key: p.name for p in settings.policy.personas}
    now = services.clock.now()
    results: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1)
    lock = threading.Lock()
    late = threading.Event()

    def work() -> None:
        try:
            with services.sessions() as s:
                asked, reading = resolve(s, args, now, settings.timezone)
                figures = report_for(
                    s, now, days=asked.days, event=asked.event, tz=settings.timezone
                )
            message = report_message(
                figures, persona_names=names, retain_for=settings.retain_for, reading=reading
            )
            result: dict[str, Any] = {"text": message.text, "blocks": message.blocks}
        except SQLAlchemyError as e:
            log.error("report failed, database error: %s", type(e).__name__)
            result = {"text": DB_DOWN}
        except Exception:
            log.exception("report failed")
            result = {"text": "⚠️ The report failed; the error is in leadbot's log."}
        with lock:  # either the ack takes it, or it goes to response_url: never both
            if not late.is_set():
                results.put(result)
                return
        _respond_later(str(command.get("response_url") or ""), result)

    threading.Thread(target=work, name="leadbot-report", daemon=True).start()
    try:
        return results.get(timeout=ANSWER_BUDGET if budget is None else budget)
    except queue.Empty:
        with lock:
            if results.empty():
                late.set()
                return {"text": WORKING}
        return results.get_nowait()


def _respond_later(url: str, result: Mapping[str, Any]) -> None:
    if not url:
        log.warning("report ready after the ack, but the command had no response_url")
        return
    client = WebhookClient(
        url,
        timeout=10,
        retry_handlers=[ConnectionErrorRetryHandler(), RateLimitErrorRetryHandler()],
    )
    try:
        response = client.send(response_type="ephemeral", **result)
    except Exception as e:  # logged, not raised: this runs on a thread of its own
        log.warning("report not delivered to response_url: %s", type(e).__name__)
        return
    if response.status_code != 200:
        log.warning("report not delivered to response_url: HTTP %s", response.status_code)


# --- the written policy on App Home ------------------------------------------------------------

POLICY_SECTIONS_MAX = 20  # App Home allows 100 blocks; the rest of the page needs few


def line_sections(
    text: str,
    *,
    max_sections: int = POLICY_SECTIONS_MAX,
    limit: int = SECTION_TEXT_MAX,
    rest: str = "…the rest: type `/lead policy`.",
) -> list[Block]:
    """Text (the policy's description, a list of leads) as sections of at most `limit`
    characters, split between lines.

    A line longer than a section (a long list of reasons) is split inside, never within an
    `&entity;`. Past `max_sections` the last section ends with `rest`.
    """
    pieces: list[str] = []
    for line in text.split("\n"):
        # Room is left in each piece for the closing note below.
        pieces.extend(_split(line, limit - 100) if len(line) > limit - 100 else [line])
    # Whole lines per section; a section never starts or ends with a blank line.
    chunks: list[list[str]] = [[]]
    size = 0
    for piece in pieces:
        if chunks[-1] and size + 1 + len(piece) > limit:
            chunks.append([])
            size = -1
        chunks[-1].append(piece)
        size += 1 + len(piece)
    sections = [t for t in ("\n".join(c).strip("\n") for c in chunks) if t.strip()]
    if len(sections) > max_sections:
        sections = sections[:max_sections]
        note = rest
        lines = sections[-1].split("\n")
        # Drop whole lines from the end until the note fits (never cut inside an escape).
        while len(lines) > 1 and len("\n".join(lines)) + len(note) + 1 > limit:
            lines.pop()
        sections[-1] = "\n".join(lines) + "\n" + note
    return [SectionBlock(text=MarkdownTextObject(text=s)) for s in sections]
