"""The lead lifecycle: the core. Plain values in, plain results out, no Slack wire format.

Callers own the session and its transaction (`with sessions.begin() as s:`). Decisions that
several processes could race for are single conditional UPDATEs, so the database decides.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Executable,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.parsing import FIELDS, LeadInput, contact_keys
from models import (
    CARD_FELL_BACK,
    CLAIMED,
    FELL_BACK_WHERE,
    NEW,
    REQUEST_KEY_MAX,
    JobRun,
    Lead,
    LeadEvent,
    OutboxItem,
    driver,
    plain_lead,
)

SYSTEM = "system"  # the actor of events no person caused


def record(
    session: Session | Connection, lead_id: int, kind: str, actor: str, now: datetime, **detail: Any
) -> None:
    """Append to the lead's event log (never updated, never deleted but with the lead)."""
    driver.run(session, _RECORD, event_row(lead_id, kind, actor, now, **detail))


def event_row(lead_id: int, kind: str, actor: str, now: datetime, **detail: Any) -> dict[str, Any]:
    """An event for `record_all`, to write several in one statement."""
    return {
        "lead_id": lead_id,
        "at": now,
        "actor": actor,
        "kind": kind,
        "detail": json.dumps(detail, sort_keys=True) if detail else None,
    }


def record_all(session: Session | Connection, rows: list[dict[str, Any]]) -> None:
    driver.run(session, _RECORD, rows)


# Hot statements are built once: SQLAlchemy then skips their construction and cache-key work,
# which costs more CPU than SQLite takes to run them. Core, not the ORM's unit of work; the
# INSERTs run through models.driver, which also skips the per-execution parameter work.
_LEADS = Lead.__table__
_RECORD = LeadEvent.__table__.insert()

_UPSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def lead_insert(dialect: str) -> Any:
    """An INSERT into leads that stores nothing, and returns no row, when the lead's
    request_key is a stored lead's already: the same Slack request delivered again (see
    `replayed`). No error to catch, and no second statement unless it happens. For SQLite and
    PostgreSQL (both say ON CONFLICT); elsewhere a plain INSERT, which refuses the row."""
    upsert = _UPSERTS.get(dialect)
    if upsert is None:
        return _LEADS.insert()
    return upsert(_LEADS).on_conflict_do_nothing(index_elements=[_LEADS.c.request_key])


@functools.cache
def _insert_lead(dialect: str) -> Executable:
    return lead_insert(dialect).returning(_LEADS.c.id)


_GET_LEAD = (
    select(Lead).where(Lead.id == bindparam("lead_id")).execution_options(populate_existing=True)
)
_GET_TEAM_LEAD = _GET_LEAD.where(Lead.team_id == bindparam("team_id"))
# The same row as plain values, for work on a bare connection.
_READ_LEAD = select(*_LEADS.c).where(_LEADS.c.id == bindparam("lead_id"))
_READ_TEAM_LEAD = _READ_LEAD.where(_LEADS.c.team_id == bindparam("team_id"))


def lead_values(
    data: LeadInput,
    *,
    team_id: str,
    submitted_by: str,
    now: datetime,
    source_channel: str | None = None,
    request_key: str | None = None,
) -> dict[str, Any]:
    """The row of a new lead, for `submit` (or bot.flows' one-statement path) to write.
    `request_key`: the Slack request it comes from (see `request_key`), stored once."""
    # Normalised contact, indexed, so bot.duplicates can find the same person again.
    email_norm, phone_norm = contact_keys(data.email, data.phone)
    return {
        "team_id": team_id,
        "name": data.name,
        "email": data.email,
        "phone": data.phone,
        "email_norm": email_norm,
        "phone_norm": phone_norm,
        "company": data.company,
        "title": data.title,
        "priority": data.priority,
        "event": data.event,
        "territory": data.territory,
        "persona": data.persona,
        "notes": data.notes,
        "submitted_by": submitted_by,
        "submitted_at": now,
        "source_channel": source_channel,
        "request_key": request_key,
        "status": NEW,
        "version": 1,
        "reminders_sent": 0,
        "follow_up_misses": 0,
        "duplicate_of_id": None,
    }


def submit(
    session: Session,
    values: dict[str, Any],
    *,
    duplicate_of: Lead | None = None,
    matched_on: str = "contact",
) -> Lead | None:
    """Store a lead made by `lead_values` (a repeat of `duplicate_of`, matched on `matched_on`,
    when given); its card is queued by the caller. Returns the stored values as a Lead outside
    the session; None, and nothing stored, when its request_key is a stored lead's already
    (the same Slack request again: see `replayed`)."""
    values = values | {"duplicate_of_id": duplicate_of.id if duplicate_of is not None else None}
    insert = _insert_lead(session.get_bind().dialect.name)
    lead_id = driver.run(session, insert, values).scalar()
    if lead_id is None:
        return None
    return _submitted(session, lead_id, values, duplicate_of, matched_on)


def submit_unless(
    session: Session | Connection,
    insert: Executable,
    params: dict[str, Any],
    values: dict[str, Any],
) -> Lead | None:
    """Store the lead `values` through `insert` (run with `params`), an INSERT … RETURNING id
    that may store nothing (bot.flows: unless the same person's lead is recent, or its request
    is a stored lead's already, see `lead_insert`); None when it did not."""
    lead_id = driver.run(session, insert, params).scalar()
    return None if lead_id is None else _submitted(session, lead_id, values, None, "")


def _submitted(
    session: Session | Connection,
    lead_id: int,
    values: dict[str, Any],
    duplicate_of: Lead | None,
    matched_on: str,
) -> Lead:
    """Record a stored lead's events; the lead, outside the session."""
    at, by = values["submitted_at"], values["submitted_by"]
    events = [event_row(lead_id, "submitted", by, at)]
    if duplicate_of is not None:
        events.append(
            event_row(
                lead_id, "duplicate_of", SYSTEM, at, earlier=duplicate_of.id, matched=matched_on
            )
        )
    record_all(session, events)
    return plain_lead(values | {"id": lead_id})


def request_key(key: object) -> str | None:
    """A Slack request's key as a lead keeps it, None when there is none to keep (missing, not
    text, or longer than Slack's: stored without one, as before keys were kept)."""
    if isinstance(key, str) and 0 < len(key) <= REQUEST_KEY_MAX:
        return key
    return None


_BY_REQUEST = select(*_LEADS.c).where(_LEADS.c.request_key == bindparam("request_key"))


def replayed(conn: Session | Connection, key: str) -> Lead:
    """The lead stored from the Slack request `key`, whose second store stored nothing: read
    only then, never for a new lead. Not scoped to a workspace or person: the key is Slack's
    for one request, and only Slack (the signature) can send it. Raises NoResultFound (a
    SQLAlchemyError: "nothing was stored") should the lead have been erased in between."""
    row = conn.execute(_BY_REQUEST, {"request_key": key}).one()
    return plain_lead(row._mapping)


def get_lead(session: Session, lead_id: int, team_id: str | None = None) -> Lead | None:
    """The lead, scoped to the workspace when one is given."""
    # populate_existing: after a conditional UPDATE in this session, read the row as it is now.
    if team_id is None:
        return session.scalars(_GET_LEAD, {"lead_id": lead_id}).one_or_none()
    return session.scalars(_GET_TEAM_LEAD, {"lead_id": lead_id, "team_id": team_id}).one_or_none()


def read_lead(conn: Session | Connection, lead_id: int, team_id: str | None = None) -> Lead | None:
    """The lead as plain values (a `plain_lead`, in no session), scoped to the workspace when
    one is given: for reading and rendering, without the ORM's loading."""
    if team_id is None:
        row = conn.execute(_READ_LEAD, {"lead_id": lead_id}).first()
    else:
        row = conn.execute(_READ_TEAM_LEAD, {"lead_id": lead_id, "team_id": team_id}).first()
    return plain_lead(row._mapping) if row is not None else None


_CARD_TIME = _LEADS.c.card_posted_at.type
_CARD_POSTED = (
    update(_LEADS)
    # Only the first post counts: a duplicate delivery must not move the card.
    .where(_LEADS.c.id == bindparam("b_id"), _LEADS.c.card_ts.is_(None))
    .values(
        card_channel=bindparam("b_channel", type_=_LEADS.c.card_channel.type),
        card_ts=bindparam("b_ts", type_=_LEADS.c.card_ts.type),
        card_posted_at=bindparam("b_now", type_=_CARD_TIME),
        card_permalink=bindparam("b_permalink", type_=_LEADS.c.card_permalink.type),
        card_error=None,
        claim_due_at=bindparam("b_due", type_=_CARD_TIME),
        # Only an unclaimed lead waits for a reminder (a fast rep may already have it).
        next_reminder_at=case(
            (_LEADS.c.status == NEW, bindparam("b_due", type_=_CARD_TIME)), else_=None
        ),
    )
    # The priority `b_due` must be for: a correction (/lead edit) may have landed while the
    # card was on its way, after the outbox read the lead.
    .returning(_LEADS.c.priority)
)


def card_posted(
    conn: Session | Connection,
    lead_id: int,
    *,
    channel: str,
    ts: str,
    now: datetime,
    next_reminder_at: datetime,
    permalink: str | None = None,
    short: bool = False,
) -> str | None:
    """The card is in the channel: the reminder clock starts now. Returns the lead's priority
    as stored (`next_reminder_at` must be for it: the caller reschedules if the lead read
    before the post had another); None when the lead is gone or already has its card (a
    duplicate delivery), and then nothing is written. One prebuilt UPDATE: built per call as
    an ORM update, it cost ~1.4 ms of CPU per card. `short`: the card is the short one (see
    `card_fell_back`), and its event says so."""
    priority = conn.execute(
        _CARD_POSTED,
        {
            "b_id": lead_id,
            "b_channel": channel,
            "b_ts": ts,
            "b_now": now,
            "b_permalink": permalink,
            "b_due": next_reminder_at,
        },
    ).scalar()
    if priority is not None:
        marks = {"short": True} if short else {}
        record(conn, lead_id, "card_posted", SYSTEM, now, channel=channel, ts=ts, **marks)
    return priority


_CARD_REPOSTED = (
    update(_LEADS)
    .where(_LEADS.c.id == bindparam("b_id"), _LEADS.c.card_ts.is_(None))
    # Where the card is now, and nothing else: its clocks (the SLA, reminders) run on from the
    # first post.
    .values(
        card_channel=bindparam("b_channel", type_=_LEADS.c.card_channel.type),
        card_ts=bindparam("b_ts", type_=_LEADS.c.card_ts.type),
        card_permalink=bindparam("b_permalink", type_=_LEADS.c.card_permalink.type),
    )
)


def card_deleted(session: Session | Connection, lead_id: int, *, ts: str, now: datetime) -> bool:
    """Someone deleted the card `ts` of an unclaimed lead: forget it, so that a new one can be
    posted. False (nothing written) if the lead is claimed, gone, or its card is another one."""
    updated = session.execute(
        update(_LEADS)
        .where(_LEADS.c.id == lead_id, _LEADS.c.card_ts == ts, _LEADS.c.status == NEW)
        .values(card_ts=None, card_permalink=None)
    ).rowcount
    if updated:
        record(session, lead_id, "card_deleted", SYSTEM, now, ts=ts)
    return bool(updated)


def card_reposted(
    conn: Session | Connection,
    lead_id: int,
    *,
    channel: str,
    ts: str,
    now: datetime,
    permalink: str | None = None,
    short: bool = False,
) -> bool:
    """The card is posted again after a delete. False when the lead is gone or has a card."""
    updated = conn.execute(
        _CARD_REPOSTED,
        {"b_id": lead_id, "b_channel": channel, "b_ts": ts, "b_permalink": permalink},
    ).rowcount
    if updated:
        marks = {"short": True} if short else {}
        record(
            conn, lead_id, "card_posted", SYSTEM, now, channel=channel, ts=ts, again=True, **marks
        )
    return bool(updated)


_EVENTS = LeadEvent.__table__
# An event written only while its lead is there (INSERT … SELECT from the lead's row): the
# outbox writes it after a Slack call, and `forget` may have erased the lead meanwhile.
_RECORD_IF_LEAD = _EVENTS.insert().from_select(
    ["lead_id", "at", "actor", "kind", "detail"],
    select(
        _LEADS.c.id,
        bindparam("at", type_=_EVENTS.c.at.type),
        bindparam("actor", type_=_EVENTS.c.actor.type),
        bindparam("kind", type_=_EVENTS.c.kind.type),
        bindparam("detail", type_=_EVENTS.c.detail.type),
    ).where(_LEADS.c.id == bindparam("lead_id")),
)


def card_fell_back(
    conn: Session | Connection, lead_id: int, *, error: str, now: datetime, refresh: bool = False
) -> bool:
    """Slack refused the lead's full card as malformed (`error`), so a short one is shown
    instead (bot.outbox): on the lead's history, not as a failed card (`card_error` stays as
    it was), since the lead is still claimable. `refresh`: an update of a card already posted
    fell back. False (nothing written) if the lead is gone."""
    marks = {"refresh": True} if refresh else {}
    row = event_row(lead_id, CARD_FELL_BACK, SYSTEM, now, error=error[:200], **marks)
    return bool(conn.execute(_RECORD_IF_LEAD, row).rowcount)


def has_fallen_back(conn: Session | Connection, lead_id: int, *, posted: bool = False) -> bool:
    """Whether the lead's card has ever been refused as malformed (see `card_fell_back`).
    `posted`: whether a short card of it was posted (a first post or a repost; each tells its
    submitter, bot.outbox), not only shown by a refresh."""
    if posted:
        details = conn.execute(
            select(LeadEvent.detail).where(
                LeadEvent.lead_id == lead_id, LeadEvent.kind == "card_posted"
            )
        ).scalars()
        return any(json.loads(detail or "{}").get("short") is True for detail in details)
    found = conn.execute(
        select(LeadEvent.id)
        .where(LeadEvent.lead_id == lead_id, LeadEvent.kind == CARD_FELL_BACK)
        .limit(1)
    ).first()
    return found is not None


def short_cards(
    session: Session | Connection, since: datetime, now: datetime, limit: int = 10
) -> tuple[int, list[tuple[str, int]], list[Lead]]:
    """Cards that went short in [since, now) (`card_fell_back`: a first post, a repost or a
    refresh), whenever their lead was submitted, and that are in the channel: how many,
    Slack's refusals (code, leads) most first, and the first `limit` leads. A lead whose short
    card was refused too is a failed card (`card_error`), not here.

    The events are read through ix_lead_events_fell_back (its condition spelled out, so that
    both planners match it): the period's refusals, not the history's events."""
    found = session.execute(
        select(LeadEvent.lead_id, LeadEvent.detail)
        .join(_LEADS, _LEADS.c.id == LeadEvent.lead_id)
        .where(
            text(f"lead_events.{FELL_BACK_WHERE}"),
            LeadEvent.at >= since,
            LeadEvent.at < now,
            _LEADS.c.card_error.is_(None),
            _LEADS.c.card_ts.is_not(None),
        )
        .order_by(LeadEvent.id)
    ).all()
    codes: dict[int, str] = {}
    for lead_id, detail in found:  # each lead's first refusal in the window
        if lead_id not in codes:
            code = json.loads(detail or "{}").get("error")
            codes[lead_id] = str(code or "unknown")
    counts: dict[str, int] = {}
    for code in codes.values():
        counts[code] = counts.get(code, 0) + 1
    ranked = sorted(counts.items(), key=lambda c: (-c[1], c[0]))
    first = sorted(codes)[:limit]
    rows = session.execute(_READ_LEADS, {"ids": first}).all() if first else []
    shown = sorted((plain_lead(r._mapping) for r in rows), key=lambda lead: lead.id)
    return len(codes), ranked, shown


_READ_LEADS = select(*_LEADS.c).where(_LEADS.c.id.in_(bindparam("ids", expanding=True)))


def card_failed(session: Session, lead_id: int, *, error: str, now: datetime) -> None:
    session.execute(update(Lead).where(Lead.id == lead_id).values(card_error=error[:200]))
    record(session, lead_id, "card_failed", SYSTEM, now, error=error[:200])


@dataclass(frozen=True)
class ClaimResult:
    won: bool
    lead: Lead | None  # None when no such lead (in this workspace)


def claim(
    session: Session | Connection,
    lead_id: int,
    user_id: str,
    *,
    team_id: str,
    now: datetime,
    follow_up: dict[str, datetime] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> ClaimResult:
    """First click wins: one conditional UPDATE decides, whatever the number of processes.

    The same statement starts the follow-up clock (`follow_up`: its due time by lower-case
    priority, with "" for any other; see outcomes.follow_up_on_claim) and returns the claimed
    row, so a won claim reads nothing more. With `events`, the claim's event is added to it
    for `record_all` instead of written here.
    """
    params: dict[str, Any] = {
        "b_lead_id": lead_id,
        "b_team_id": team_id,
        "b_owner_id": user_id,
        "b_now": now,
    }
    keys = tuple(sorted(follow_up)) if follow_up else ()
    for i, key in enumerate(keys):
        params[f"follow_up_{i}"] = follow_up[key]  # type: ignore[index]
    row = session.execute(_claim_statement(keys), params).one_or_none()
    lead = plain_lead(row._mapping) if row is not None else read_lead(session, lead_id, team_id)
    if lead is not None:
        event = event_row(lead_id, "claimed" if row is not None else "claim_too_late", user_id, now)
        if events is None:
            record_all(session, [event])
        else:
            events.append(event)
    # A plain object with the row's values (in no session): what callers read and render.
    return ClaimResult(won=row is not None, lead=lead)


@functools.lru_cache(maxsize=16)
def _claim_statement(priorities: tuple[str, ...]) -> Any:
    """The claiming UPDATE for a policy's priorities, built once per set of priorities.
    (Parameters are prefixed b_: SQLAlchemy reserves column names in an UPDATE's SET.)"""
    values: dict[str, Any] = {
        "status": CLAIMED,
        # Typed, so UTCDateTime converts the datetimes as it does for any other value.
        "owner_id": bindparam("b_owner_id", type_=_LEADS.c.owner_id.type),
        "claimed_at": bindparam("b_now", type_=_LEADS.c.claimed_at.type),
        "next_reminder_at": None,
        "version": _LEADS.c.version + 1,
    }
    if priorities:
        due = [
            bindparam(f"follow_up_{i}", type_=_LEADS.c.follow_up_at.type)
            for i in range(len(priorities))
        ]
        when = [(func.lower(_LEADS.c.priority) == p, due[i]) for i, p in enumerate(priorities) if p]
        values["follow_up_at"] = case(*when, else_=due[priorities.index("")])
        values["follow_up_misses"] = 0
    return (
        update(_LEADS)
        .where(
            _LEADS.c.id == bindparam("b_lead_id"),
            _LEADS.c.team_id == bindparam("b_team_id"),
            _LEADS.c.status == NEW,
        )
        .values(values)
        .returning(*_LEADS.c)
    )


# --- is the message clicked in about this lead? -------------------------------------------------
# SQLite gives a new row max(id) + 1: erasing the newest lead (`forget`, the purge) gives its id
# to the next one, and the erased lead's card, still in the channel, names that id. Whatever
# names a lead (a button's value, the card's metadata) is then ambiguous; when a message was
# posted is not. Every message about a lead, its card first, is posted after the lead exists.


class CardMark(NamedTuple):
    """What a click's message is compared with (see `predates_card`)."""

    card_ts: str | None  # the lead's card as recorded (None until its post is recorded)
    queued_at: datetime | None  # when its first card was queued, in real time; None: never


_CARD_KIND = "card"  # bot.outbox.CARD (bot.outbox imports this module)
_CARD_TS_OF_ONE = select(_LEADS.c.id, _LEADS.c.card_ts).where(_LEADS.c.id == bindparam("lead_id"))
_CARD_TS_OF = select(_LEADS.c.id, _LEADS.c.card_ts).where(
    _LEADS.c.id.in_(bindparam("ids", expanding=True))
)
# Read only for a lead whose card is not recorded: one probe of ix_outbox_lead_status per lead.
_CARD_QUEUED = (
    select(OutboxItem.lead_id, func.min(OutboxItem.created_at))
    .where(OutboxItem.lead_id.in_(bindparam("ids", expanding=True)), OutboxItem.kind == _CARD_KIND)
    .group_by(OutboxItem.lead_id)
)


def card_marks(conn: Session | Connection, lead_ids: Collection[int]) -> dict[int, CardMark]:
    """Each lead's `CardMark`, for the ids that are leads: one read (two if a card is not
    posted yet). One lead, a claim clicked alone, goes through models.driver: it is on the
    claim's path, and that way costs ~30 µs of CPU on SQLite, ~40 µs the general way."""
    if not lead_ids:
        return {}
    if len(lead_ids) == 1:
        [lead_id] = lead_ids
        rows = driver.run(conn, _CARD_TS_OF_ONE, {"lead_id": lead_id})
    else:
        rows = conn.execute(_CARD_TS_OF, {"ids": sorted(lead_ids)})
    return _with_queued(conn, {lead_id: ts for lead_id, ts in rows})


def card_mark(conn: Session | Connection, lead: Lead) -> CardMark:
    """The `CardMark` of a lead already read."""
    return _with_queued(conn, {lead.id: lead.card_ts})[lead.id]


def _with_queued(conn: Session | Connection, card_ts: dict[int, str | None]) -> dict[int, CardMark]:
    unposted = [lead_id for lead_id, ts in card_ts.items() if ts is None]
    queued: dict[int, datetime] = {}
    if unposted:
        queued = {lead_id: at for lead_id, at in conn.execute(_CARD_QUEUED, {"ids": unposted})}
    return {lead_id: CardMark(ts, queued.get(lead_id)) for lead_id, ts in card_ts.items()}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _slack_micros(ts: str | None) -> int | None:
    """A Slack ts ("1712345678.123456": seconds and microseconds) in microseconds; None when
    it is not one."""
    if not ts:
        return None
    seconds, dot, micros = ts.partition(".")
    if not (seconds.isascii() and seconds.isdigit()) or len(seconds) > 12 or len(micros) > 6:
        return None
    if dot and not (micros.isascii() and micros.isdigit()):
        return None
    return int(seconds) * 1_000_000 + int(micros.ljust(6, "0"))


def predates_card(message_ts: str, mark: CardMark) -> bool:
    """Whether the message `message_ts` (where a button was clicked) was posted before the
    lead's card, so that it is neither that card nor any message about the lead: an erased
    lead's card whose id was given again. A later one may be (a DM about the lead; a copy of
    the card posted by a retry, which the card check deletes). Slack's ts against Slack's ts,
    but before the card's post is recorded against when it was queued, in our real time
    (Slack's clock may differ by its skew: only then does that matter). A ts that is not one
    is not the card's."""
    clicked = _slack_micros(message_ts)
    if clicked is None:
        return True
    card = _slack_micros(mark.card_ts)
    if card is not None:
        return clicked < card
    if mark.queued_at is None:
        return False  # a lead stored without a card (none of leadbot's): nothing to go by
    return clicked < (mark.queued_at - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class ReleaseResult:
    ok: bool
    # "released", "not_found", "not_claimed", "closed", "forbidden", "stale" (changed meanwhile)
    reason: str
    lead: Lead | None
    previous_owner: str | None = None  # whose it was, when released


def release(
    session: Session,
    lead_id: int,
    user_id: str,
    *,
    team_id: str,
    managers: tuple[str, ...] | list[str],
    now: datetime,
    next_reminder_at: datetime,
) -> ReleaseResult:
    """Owner or manager puts a claimed lead back: a new claim clock starts. `next_reminder_at`
    (the priority's claim_within of working time from `now`, bot.flows.claim_due) is both when
    it must be claimed by again and its first reminder, as a new card's (`card_posted`): the
    SLA breaches and the reminders then tell the same story, from the release."""
    lead = get_lead(session, lead_id, team_id)
    if lead is None:
        return ReleaseResult(False, "not_found", None)
    if lead.status != CLAIMED:
        return ReleaseResult(False, "not_claimed", lead)
    if lead.stage in ("won", "lost", "disqualified"):
        # A closed lead stays with whoever closed it; its card shows no Release button.
        return ReleaseResult(False, "closed", lead)
    if user_id != lead.owner_id and user_id not in managers:
        record(session, lead_id, "release_refused", user_id, now)
        return ReleaseResult(False, "forbidden", lead)
    owner = lead.owner_id
    result = session.execute(
        update(Lead)
        # Conditional on the version we checked, as every other change is: the read above holds
        # no lock, so an outcome (won, disqualified…), a reassign or a release may land between
        # it and here, and a closed lead was put back in the queue, its stage kept.
        .where(
            Lead.id == lead_id,
            Lead.status == CLAIMED,
            Lead.owner_id == owner,
            Lead.version == lead.version,
        )
        .values(
            status=NEW,
            owner_id=None,
            claimed_at=None,
            reminders_sent=0,
            escalated_at=None,
            # Not the first claim's due time: a re-claim 10 minutes after the release was
            # "claimed 2 days late", and a lead just released "overdue for 2 days".
            claim_due_at=next_reminder_at,
            next_reminder_at=next_reminder_at,
            follow_up_at=None,
            # Whoever claims it next claims it: no Reassign gave it to them (outcomes.assignment).
            assigned_at=None,
            assigned_by=None,
            version=Lead.version + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(lead)
        return ReleaseResult(False, "stale", lead)
    record(session, lead_id, RELEASED, user_id, now, previous_owner=owner)
    session.refresh(lead)
    return ReleaseResult(True, "released", lead, owner)


# --- corrections (`/lead edit N`) ------------------------------------------------------------

CLOSED_STAGES = ("won", "lost", "disqualified")


@dataclass(frozen=True)
class EditResult:
    ok: bool
    # "edited" (or "allowed" from check_edit), "not_found", "forbidden", "closed" (only a
    # manager may correct a closed lead), "stale" (changed since the form opened), "unchanged"
    reason: str
    lead: Lead | None
    changed: tuple[str, ...] = ()  # the fields the edit changed, in FIELDS order


def check_edit(
    session: Session,
    lead_id: int,
    user_id: str,
    *,
    team_id: str,
    managers: tuple[str, ...] | list[str],
    version: int | None = None,
) -> EditResult:
    """Whether `user_id` may correct the lead now: its submitter, or a manager; a closed lead
    (won, lost, disqualified) a manager only, since the reports count it as sales closed it.
    Changes nothing. `version`: the one the form was filled from; another one is "stale"."""
    lead = get_lead(session, lead_id, team_id)
    if lead is None:
        return EditResult(False, "not_found", None)
    manager = user_id in managers
    if user_id != lead.submitted_by and not manager:
        return EditResult(False, "forbidden", lead)
    if lead.stage in CLOSED_STAGES and not manager:
        return EditResult(False, "closed", lead)
    if version is not None and version != lead.version:
        return EditResult(False, "stale", lead)
    return EditResult(True, "allowed", lead)


def edit(
    session: Session,
    lead_id: int,
    data: LeadInput,
    *,
    by: str,
    team_id: str,
    managers: tuple[str, ...] | list[str],
    now: datetime,
    version: int,
    keep: tuple[str, ...] = (),
) -> EditResult:
    """Store corrected details (validated as a new lead's) as one UPDATE conditional on the
    version the form was filled from, and an `edited` event naming the changed fields. Their
    values stay out of the event: the lead row is the one place contact details are kept, so
    erasing it (`forget`, the purge) erases them, old ones included. `keep`: fields the form
    did not hold (bot.render.lead_modal), left as stored. The caller queues the card refresh
    and the DMs in the same transaction."""
    checked = check_edit(session, lead_id, by, team_id=team_id, managers=managers, version=version)
    if not checked.ok:
        return checked
    lead = checked.lead
    assert lead is not None
    values = {f: getattr(lead if f in keep else data, f) for f in FIELDS}
    changed = tuple(f for f in FIELDS if values[f] != getattr(lead, f))
    if not changed:
        return EditResult(False, "unchanged", lead)
    # The same keys as a new lead's (lead_values), so bot.duplicates finds the corrected ones.
    values["email_norm"], values["phone_norm"] = contact_keys(values["email"], values["phone"])
    result = session.execute(
        update(Lead)
        .where(Lead.id == lead_id, Lead.team_id == team_id, Lead.version == version)
        .values(**values, version=Lead.version + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(lead)
        return EditResult(False, "stale", lead)
    record(session, lead_id, "edited", by, now, fields=list(changed))
    session.refresh(lead)
    return EditResult(True, "edited", lead, changed)


def with_priority(lead: Lead, priority: str) -> Lead:
    """A plain copy of `lead` with another priority, to work out that priority's SLA."""
    return plain_lead(
        {c.name: getattr(lead, c.name) for c in _LEADS.columns} | {"priority": priority}
    )


def reschedule_claim(session: Session, lead_id: int, due: datetime) -> None:
    """A corrected priority's SLA for a lead still unclaimed: `due` (its claim_within from the
    card's post, so possibly past: the next sweep reminds) is when it had to be claimed by,
    and its first reminder unless one was sent already (the later ones follow the priority
    anyway, as each reminder schedules the next from the lead's rule)."""
    session.execute(
        update(Lead)
        .where(Lead.id == lead_id, Lead.status == NEW)
        .values(
            claim_due_at=due,
            next_reminder_at=case((Lead.reminders_sent == 0, due), else_=Lead.next_reminder_at),
        )
        .execution_options(synchronize_session=False)
    )


# --- reminders ---------------------------------------------------------------------------------


def due_reminders(session: Session, now: datetime, limit: int = 200) -> list[int]:
    """Ids of unclaimed leads whose reminder is due; an index range scan, no history."""
    return list(
        session.scalars(
            select(Lead.id)
            .where(Lead.status == NEW, Lead.next_reminder_at <= now)
            .order_by(Lead.next_reminder_at)
            .limit(limit)
        )
    )


@dataclass(frozen=True)
class ReminderTurn:
    lead: Lead
    kind: str  # "reminder" or "escalation"
    number: int  # how many reminder turns this lead has had, this one included


def take_reminder(
    session: Session,
    lead_id: int,
    *,
    now: datetime,
    schedule: Callable[[Lead], tuple[datetime, int]],
) -> ReminderTurn | None:
    """Win the right to send this lead's due reminder, or None if someone else did / it's moot.

    The UPDATE is conditional on the state we read, so of N processes sweeping at once exactly
    one moves `next_reminder_at` on and sends; the others see rowcount 0.
    """
    lead = get_lead(session, lead_id)
    if lead is None or lead.status != NEW or lead.next_reminder_at is None:
        return None
    # No card while one is posted again after a delete: its thread is not there yet.
    if lead.next_reminder_at > now or lead.card_ts is None:
        return None
    seen = lead.reminders_sent
    # The lead's policy: when the next reminder is due, and after how many the managers hear.
    next_at, escalate_after = schedule(lead)
    escalate = seen >= escalate_after and lead.escalated_at is None
    values: dict[str, Any] = {
        "reminders_sent": seen + 1,
        "next_reminder_at": next_at,
    }
    if escalate:
        values["escalated_at"] = now
    result = session.execute(
        update(Lead)
        .where(
            Lead.id == lead_id,
            Lead.status == NEW,
            Lead.reminders_sent == seen,
            Lead.next_reminder_at <= now,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    kind = "escalation" if escalate else "reminder"
    record(session, lead_id, "escalated" if escalate else "reminded", SYSTEM, now, number=seen + 1)
    session.refresh(lead)
    return ReminderTurn(lead=lead, kind=kind, number=seen + 1)


# --- once-per-due-time jobs ---------------------------------------------------------------------


def claim_job_run(session: Session, job: str, due_on: date, now: datetime) -> bool:
    """True for exactly one caller per (job, due date): the unique constraint is the lock."""
    try:
        with session.begin_nested():
            session.execute(insert(JobRun).values(job=job, due_on=due_on, at=now))
    except IntegrityError:
        return False
    return True


# --- the digest ---------------------------------------------------------------------------------


def _seconds_between(session: Session, start: Any, end: Any) -> ColumnElement[float]:
    """end - start in seconds, as SQL, on each backend."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)


RELEASED = "released"  # the event of a release (`release`): the lead is back in the queue


def _latest_release(lead_id: Any) -> Any:
    """When the lead (an id, or a column to correlate with) was last released, if ever."""
    return select(func.max(LeadEvent.at)).where(
        LeadEvent.lead_id == lead_id, LeadEvent.kind == RELEASED
    )


def queued_since() -> ColumnElement[Any]:
    """When a lead last entered the claim queue, as SQL over `leads`: its latest release, else
    its submission. Time to claim counts from there: measured from the submission, a lead
    claimed again after a release counted the first owner's days with it. A release clears
    claimed_at, so a claimed lead's latest release is always before its claim. One probe of
    ix_lead_events_lead_id per lead (few events each)."""
    released = _latest_release(Lead.id).correlate(Lead).scalar_subquery()
    return func.coalesce(released, Lead.submitted_at)


def claim_clock_start(conn: Session | Connection, lead: Lead) -> datetime | None:
    """When the lead's current claim clock started: its latest release, else its card's post
    (None while there is none). For a correction that moves the SLA (a new priority) and for
    how long a reminder says the lead has waited: counted from the card's post, a lead
    released today was overdue at once, and "waited 2 days without an owner"."""
    released = conn.execute(_latest_release(lead.id)).scalar()
    starts = [at for at in (released, lead.card_posted_at) if at is not None]
    return max(starts) if starts else None


@dataclass(frozen=True)
class DigestFigures:
    submitted: int
    claimed: int
    median_to_claim: timedelta | None
    slowest_to_claim: timedelta | None
    claims_per_rep: list[tuple[str, int]]
    leads_per_event: list[tuple[str | None, int]]
    backlog_total: int
    backlog: list[Lead]
    window: timedelta = timedelta(hours=24)  # what submitted, claimed and the rest cover


def digest_for(
    session: Session,
    now: datetime,
    *,
    window: timedelta = timedelta(hours=24),
    backlog_limit: int = 15,
) -> DigestFigures:
    """The managers' figures for the `window` before `now`, all computed by SQL aggregates."""
    since = now - window
    in_window = and_(Lead.submitted_at >= since, Lead.submitted_at < now)
    claimed_in_window = and_(Lead.claimed_at >= since, Lead.claimed_at < now)
    submitted = session.scalar(select(func.count()).select_from(Lead).where(in_window)) or 0
    claimed = session.scalar(select(func.count()).select_from(Lead).where(claimed_in_window)) or 0

    # From when the lead last entered the queue (see `queued_since`), not its submission.
    wait = _seconds_between(session, queued_since(), Lead.claimed_at)
    median = slowest = None
    if claimed:
        # One pass over the claims (each wait reads the lead's latest release): the middle one
        # or two rows by rank for the median (SQLite has no percentile_cont), the last for the
        # slowest.
        waits = select(wait.label("w")).where(claimed_in_window).subquery()
        ranked = select(
            waits.c.w,
            func.row_number().over(order_by=waits.c.w).label("r"),
            func.count().over().label("n"),
        ).subquery()
        rows = session.execute(
            select(ranked.c.w, ranked.c.r, ranked.c.n).where(
                or_((ranked.c.r * 2).between(ranked.c.n, ranked.c.n + 2), ranked.c.r == ranked.c.n)
            )
        ).all()
        if rows:
            n = rows[0].n
            middle = [row.w for row in rows if n <= 2 * row.r <= n + 2]
            median = timedelta(seconds=round(sum(middle) / len(middle)))
            slowest = timedelta(seconds=round(max(row.w for row in rows)))

    # Claims per rep: whoever clicked Claim (its event's actor), not who holds the lead now: a
    # manager's reassign is not a claim by the new owner, nor a claim the first owner lost.
    claimer = (
        select(LeadEvent.actor)
        .where(LeadEvent.lead_id == Lead.id, LeadEvent.kind == "claimed")
        .order_by(LeadEvent.id.desc())
        .limit(1)
        .correlate(Lead)
        .scalar_subquery()
    )
    claims = (
        select(func.coalesce(claimer, Lead.owner_id).label("rep"))
        .where(claimed_in_window)
        .subquery()
    )
    per_rep = session.execute(
        select(claims.c.rep, func.count())
        .group_by(claims.c.rep)
        .order_by(func.count().desc(), claims.c.rep)
    ).all()
    # Events whatever their capitals (`#saastr2026` is the `SaaStr2026` on the cards), shown
    # with one spelling, the same on every backend; as bot.report groups them.
    binary = "BINARY" if session.get_bind().dialect.name == "sqlite" else "C"
    event_key = func.lower(Lead.event)
    per_event = session.execute(
        select(func.min(Lead.event.collate(binary)), func.count())
        .where(in_window)
        .group_by(event_key)
        .order_by(func.count().desc(), event_key)
    ).all()
    backlog_total = (
        session.scalar(select(func.count()).select_from(Lead).where(Lead.status == NEW)) or 0
    )
    backlog = list(
        session.scalars(
            select(Lead)
            .where(Lead.status == NEW)
            .order_by(Lead.submitted_at, Lead.id)
            .limit(backlog_limit)
        )
    )
    return DigestFigures(
        submitted=submitted,
        claimed=claimed,
        median_to_claim=median,
        slowest_to_claim=slowest,
        claims_per_rep=[(str(u), int(n)) for u, n in per_rep],
        leads_per_event=[(e, int(n)) for e, n in per_event],
        backlog_total=backlog_total,
        backlog=backlog,
        window=window,
    )


def events_of(session: Session, lead_id: int) -> list[LeadEvent]:
    return list(
        session.scalars(
            select(LeadEvent).where(LeadEvent.lead_id == lead_id).order_by(LeadEvent.id)
        )
    )
