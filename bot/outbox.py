"""The outbox: every message for a lead reaches Slack exactly once, whatever crashes.

Items are written in the same transaction as the change they report. A deliverer takes an item's
lease with a conditional UPDATE (so two processes never send the same item; a dead holder's lease
expires), calls Slack, and records the result. Transient failures (5xx, timeouts, 429) are retried
with backoff — a 429 waits at least its Retry-After — and permanent ones are recorded on the lead
and told to the person who can fix them. Posts are paced per channel, as Slack asks.

Cards carry their lead id in Slack message metadata: when a card's previous attempt ended without
an answer (a crash mid-post), the channel's recent history is checked before posting again.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, case, func, literal, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot import duplicates, leads, render
from bot.clock import DeliveryTime, SystemDeliveryTime
from bot.db import Trouble, unavailable
from bot.delivery import METADATA_REFUSED, NO_TS, DeliveryError, Slack
from models import (
    FAILED,
    PENDING,
    SENT,
    Lead,
    OutboxItem,
    driver,
    plain_row,
    single_statement,
    single_statement_engine,
)

log = logging.getLogger(__name__)

CARD = "card"
CARD_REFRESH = "card_refresh"
# After a card attempt ended without an answer, Slack may still apply it late: look again a few
# seconds after the card is in, and delete any second copy.
CARD_CHECK = "card_check"
CARD_CHECK_DELAY = timedelta(seconds=4)
MESSAGE = "message"
CARD_EVENT_TYPE = "leadbot_card"
CARD_SUBMITTED = "submitted_at"  # in a card's metadata: its lead's submission (card_metadata)
POSTS = (CARD, MESSAGE)  # the kinds that post to a channel, and so are paced
MAX_BACKOFF = 300.0  # transient failures are retried for ever, at most this far apart
# A card refused for a reason someone fixes in Slack (not_in_channel, …) is tried again after a
# minute, then ever more slowly, at most this far apart: it goes out soon after the fix.
MAX_FIXABLE_BACKOFF = 3600.0
# An item's last_error when the attempt before died mid-call (see _TAKE_LEASES).
LEASE_EXPIRED = "lease_expired"
# What Slack answers about a card someone deleted: updating it, or replying in its thread.
GONE = frozenset({"message_not_found", "thread_not_found"})
# A reply for a deleted card's thread waits for the card posted in its place, which moves it
# up when it is there; this long if that never happens (the new card cannot be posted).
HOLD_FOR_NEW_CARD = timedelta(hours=1)
REPOSTED_NOTE = (
    "🔁 _Posted again: the first card for this lead was deleted. To drop a lead, claim it and "
    "record it as disqualified._"
)
MIN_PASS_GAP = 0.02  # seconds: the delivery loop's passes come at most this often
# With deliveries in flight, a pass waits until this many more may start: each pass reads the
# due items afresh, and with a backlog (thousands due, Slack at 300 ms) a pass for every
# single finished delivery cost more database time than the deliveries it started.
MIN_ROOM = 4
# A loop that wakes this soon for a paced channel's token does not look for the soonest other
# item: its next pass finds whatever fell due meanwhile (a retry then waits at most this long).
# That look reads past every post waiting in the channel, as often as the channel gets a token.
PACED_WAKE = 1.0
# A message payload's key: an owner's DM (the claimer's, or a reassigned owner's with the
# manager in ASSIGNED_BY), to resend as text if Slack refuses its blocks.
PLAIN_IF_REFUSED = "plain_if_refused"
ASSIGNED_BY = "assigned_by"
CORRECTED_BY = "corrected_by"  # an owner's DM after someone corrected the lead (/lead edit)
# A message payload's key: the lead's state it was written for ({column: value}, see
# `while_lead`). Delivered only while the lead is still so; else done without sending, as
# DROPPED: a reminder queued during an outage must not land in the thread of a lead claimed
# meanwhile, nor eight of them at once (each later one changes the state the earlier ones
# were written for). Only these columns may be named.
WHILE = "while"
_WHILE_MARK = f'"{WHILE}": '  # how it reads in the JSON: unmarked posts skip the parse
_WHILE_COLUMNS = frozenset(
    {"status", "owner_id", "version", "reminders_sent", "follow_up_misses", "follow_up_at"}
)
# An item's status when it was done without sending (its last_error says why): never posted,
# so nothing for `forget` to blank, and out of the pending index like a sent one. (Beside
# models' PENDING, SENT and FAILED, whose owner may move it there.)
DROPPED = "dropped"
# Seconds a lead's card stays short after Slack refused its full one, before a refresh tries the
# full card again; and how many such leads are remembered at most (older ones are dropped).
FULL_CARD_RETRY = 3600.0
SHORT_CARDS_KEPT = 10_000


class CardGone(DeliveryError):
    """Slack says the card a refresh tried to update (`ts`) is not there."""

    def __init__(self, code: str, ts: str) -> None:
        super().__init__(code)
        self.ts = ts


def _now() -> datetime:
    return datetime.now(UTC)


def card_metadata(lead: Lead) -> dict[str, Any]:
    """A card's Slack message metadata: its lead, by id and by when it was submitted. SQLite
    gives an erased lead's id (the newest's) to the next lead, and the erased lead's card may be
    in the history a retried post looks in (`Outbox._cards_in_history`): the id alone took it
    for the new lead's card."""
    payload = {"lead_id": lead.id, CARD_SUBMITTED: lead.submitted_at.isoformat()}
    return {"event_type": CARD_EVENT_TYPE, "event_payload": payload}


def _same_submission(payload: dict[str, Any], lead: Lead) -> bool:
    """Whether a card's metadata payload names `lead`'s submission; a card posted before the
    metadata said it (no CARD_SUBMITTED) is taken at its id, as it was then."""
    stamp = payload.get(CARD_SUBMITTED)
    if stamp is None:
        return True
    try:
        return isinstance(stamp, str) and datetime.fromisoformat(stamp) == lead.submitted_at
    except ValueError:
        return False


# --- enqueueing (inside the caller's transaction) -----------------------------------------------


def _row(
    *,
    kind: str,
    now: datetime | None,
    lead_id: int | None = None,
    channel: str | None = None,
    thread_ts: str | None = None,
    payload: str | None = None,
    dedupe_key: str | None = None,
) -> dict[str, Any]:
    """An outbox row; every row has the same keys, so several go in one multi-row INSERT."""
    at = now or _now()
    return {
        "lead_id": lead_id,
        "kind": kind,
        "dedupe_key": dedupe_key,
        "channel": channel,
        "thread_ts": thread_ts,
        "payload": payload,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": at,
        "created_at": at,
    }


# Core, not ORM unit-of-work: a request's items are one executemany, with no flush bookkeeping.
_INSERT = OutboxItem.__table__.insert()


def _doubling(attempts: int, first: float, most: float) -> float:
    """`first` after the first attempt, doubling with each one after, never more than `most`.
    The exponent stops at 32 (past any cap here): after ~1,000 attempts (days of an outage)
    2 ** attempts no longer fit a float, and the item was retried unpaced."""
    return min(most, first * 2.0 ** min(max(0, attempts - 1), 32))


def _card_now_posted(lead: Lead, channel: str) -> render.Message:
    return render.Message(
        text=f"✅ Lead #{lead.id} {render.lead_label(lead)}: its card is posted now, in "
        f"{render.channel_mention(channel)}, after all."
    )


def enqueue(session: Session | Connection, rows: list[dict[str, Any]]) -> None:
    """Write rows made by the *_row functions, all in one statement."""
    if rows:
        driver.run(session, _INSERT, rows)


def card_row(lead: Lead, channel: str, now: datetime | None = None) -> dict[str, Any]:
    """The lead's claim card; the unique dedupe key means a lead never gets two."""
    return _row(kind=CARD, lead_id=lead.id, channel=channel, dedupe_key=f"card:{lead.id}", now=now)


def repost_row(lead_id: int, channel: str, deleted_ts: str, now: datetime) -> dict[str, Any]:
    """A new card for a lead whose card was deleted (one per deleted card)."""
    return _row(
        kind=CARD,
        lead_id=lead_id,
        channel=channel,
        payload=json.dumps({"replaces": deleted_ts}),
        dedupe_key=f"card:{lead_id}:{deleted_ts}",
        now=now,
    )


def _marks(item: OutboxItem, kind: str) -> dict[str, Any]:
    """The payload of `item` if it is of `kind`, else nothing: where its delivery's options
    (a card's `replaces` and `fallback`, a message's `if_undelivered`, …) are kept."""
    if item.kind != kind or not item.payload:
        return {}
    payload = json.loads(item.payload)
    return payload if isinstance(payload, dict) else {}


def _if_undelivered(item: OutboxItem, error: DeliveryError) -> dict[str, Any] | None:
    """The row of the message to send instead of `item`, which Slack refused for good."""
    instead = _marks(item, MESSAGE).get("if_undelivered")
    if not isinstance(instead, dict):
        return None
    text = f"{instead.get('text', '')} (Slack: `{render.esc(error.code[:100])}`)"
    return message_row(str(instead.get("to")), render.Message(text=text), lead_id=item.lead_id)


def _plain_if_refused(item: OutboxItem) -> bool:
    """Whether `item` is an owner's DM to resend as text if Slack refuses its blocks."""
    return _marks(item, MESSAGE).get(PLAIN_IF_REFUSED) is True


def _claimer_plain(
    session: Session, item: OutboxItem, error: DeliveryError
) -> dict[str, Any] | None:
    """The owner's DM as text (render.claimer_dm_plain), rendered now from the lead rather
    than stored with every claim: refusals are rare, claims are not. It keeps the refused DM's
    `if_undelivered`: whoever was to hear that the owner was not told hears it if the text is
    refused in turn. None if the lead is gone or has another owner by now."""
    lead = leads.read_lead(session, item.lead_id) if item.lead_id else None
    if lead is None or lead.owner_id != item.channel:
        return None
    marks = _marks(item, MESSAGE)
    by, fixer = marks.get(ASSIGNED_BY), marks.get(CORRECTED_BY)
    plain = render.claimer_dm_plain(
        lead,
        assigned_by=by if isinstance(by, str) else None,
        corrected_by=fixer if isinstance(fixer, str) else None,
    )
    text = f"{plain.text}\n(Slack: `{render.esc(error.code[:100])}`)"
    instead = marks.get("if_undelivered")
    told = None
    if isinstance(instead, dict):
        told = (str(instead.get("to")), render.Message(text=str(instead.get("text", ""))))
    return message_row(
        str(item.channel), render.Message(text=text), lead_id=lead.id, if_undelivered=told
    )


def _may_have_posted(last_error: str | None) -> bool:
    """Whether the attempt that ended with `last_error` may have posted all the same: no answer
    (a connection error, a timeout, a holder that died), or a 5xx or Slack-side error. Slack's
    `ok: false` answers (a 429, `not_in_channel`, …) post nothing: a retry after one need not
    read the channel's history first (a Tier 3 call, in a storm of 429s one per retry)."""
    code = last_error or ""
    if not code or code in (LEASE_EXPIRED, NO_TS) or code.startswith("http_"):
        return True
    # The errors retried as passing (bot.delivery.TRANSIENT) but Slack's rate limit, which
    # refuses the post.
    return DeliveryError(code).transient and code not in ("ratelimited", "rate_limited")


def _replaces(item: OutboxItem) -> str | None:
    """The deleted card a CARD item stands in for; None for a lead's first card."""
    ts = _marks(item, CARD).get("replaces")
    return ts if isinstance(ts, str) else None


def _fell_back(item: OutboxItem) -> str | None:
    """For a CARD item whose full card Slack refused as malformed, and which now posts the
    short card instead: Slack's error code. None for a full card."""
    code = _marks(item, CARD).get("fallback")
    return code if isinstance(code, str) else None


def refresh_row(
    lead: Lead, now: datetime | None = None, *, reminder: int | None = None
) -> dict[str, Any]:
    """A re-render of the card from the lead's state at delivery time, marked with the version
    it was queued for (and the reminder turn, for the one that checks the card is there)."""
    marks: dict[str, int] = {"version": lead.version}
    if reminder is not None:
        marks["reminder"] = reminder
    return _row(kind=CARD_REFRESH, lead_id=lead.id, payload=json.dumps(marks), now=now)


def enqueue_refresh(session: Session | Connection, lead: Lead, now: datetime | None = None) -> None:
    """Queue a re-render of the card, one per lead version: a refresh already queued (or sent)
    for this version covers every later click on an out-of-date card."""
    row = refresh_row(lead, now)
    exists = session.scalar(
        select(OutboxItem.id).where(
            OutboxItem.lead_id == lead.id,
            OutboxItem.kind == CARD_REFRESH,
            OutboxItem.payload == row["payload"],
        )
    )
    if exists is None:
        enqueue(session, [row])


def while_lead(lead: Lead, *columns: str) -> dict[str, Any]:
    """The lead's `columns` as they are now, for a message's `only_while` (see WHILE): the
    message goes only if they are the same when it is delivered."""
    state: dict[str, Any] = {}
    for column in columns:
        if column not in _WHILE_COLUMNS:
            raise ValueError(f"not a column a message can wait on: {column!r}")
        value = getattr(lead, column)
        state[column] = value.isoformat() if isinstance(value, datetime) else value
    return state


def message_row(
    channel: str,
    message: render.Message,
    *,
    lead_id: int | None = None,
    thread_ts: str | None = None,
    now: datetime | None = None,
    if_undelivered: tuple[str, render.Message] | None = None,
    claimer_plain: bool = False,
    assigned_by: str | None = None,
    corrected_by: str | None = None,
    only_while: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A post: a DM when `channel` is a user id, a thread reply with `thread_ts`.
    `if_undelivered`: a message (its text) and to whom, sent instead if Slack refuses this one
    for good, followed by Slack's error code. `claimer_plain`: the claimer's DM, sent again as
    text (render.claimer_dm_plain) if Slack refuses its blocks as malformed; `assigned_by`:
    the same for the DM of an owner this manager gave the lead to, `corrected_by` for the
    owner's DM after this person corrected the lead. Refused as malformed, such a DM is not
    undelivered: its text goes in its place (and `if_undelivered` with it). `only_while`:
    the lead's state it is for (`while_lead`); delivered only while the lead is so."""
    payload: dict[str, Any] = {"text": message.text, "blocks": message.blocks}
    if only_while:
        if lead_id is None:
            raise ValueError("only_while needs the lead_id it is about")
        payload[WHILE] = only_while
    if claimer_plain or assigned_by or corrected_by:
        payload[PLAIN_IF_REFUSED] = True
    if assigned_by:
        payload[ASSIGNED_BY] = assigned_by
    if corrected_by:
        payload[CORRECTED_BY] = corrected_by
    if if_undelivered is not None:
        to, instead = if_undelivered
        payload["if_undelivered"] = {"to": to, "text": instead.text}
    return _row(
        kind=MESSAGE,
        lead_id=lead_id,
        channel=channel,
        thread_ts=thread_ts,
        payload=json.dumps(payload),
        now=now,
    )


def enqueue_message(
    session: Session,
    channel: str,
    message: render.Message,
    *,
    lead_id: int | None = None,
    thread_ts: str | None = None,
    now: datetime | None = None,
    if_undelivered: tuple[str, render.Message] | None = None,
    assigned_by: str | None = None,
    only_while: dict[str, Any] | None = None,
) -> None:
    """Queue a post: a DM when `channel` is a user id, a thread reply with `thread_ts` (see
    `message_row`)."""
    row = message_row(
        channel,
        message,
        lead_id=lead_id,
        thread_ts=thread_ts,
        now=now,
        if_undelivered=if_undelivered,
        assigned_by=assigned_by,
        only_while=only_while,
    )
    enqueue(session, [row])


# --- edits of delivered messages (bot.privacy) -------------------------------------------------

# A message already in Slack shown anew from its row as it is now: a digest rewritten because a
# lead it named was erased. Its payload: "of", that row's id; "text" and "blocks", shown instead
# should that row hold no message any more.
EDIT = "edit"


class _NotShownYet(DeliveryError):
    """An edit of a message still on its way to Slack: tried again, as a transient failure is,
    until that message has landed (or failed, and there is nothing to edit)."""

    @property
    def transient(self) -> bool:
        return True


def edit_row(of: int, channel: str | None, instead: render.Message) -> dict[str, Any]:
    """An EDIT of row `of`'s message (`channel`: where it went, for pacing after a 429)."""
    payload = {"of": of, "text": instead.text, "blocks": instead.blocks}
    return _row(kind=EDIT, channel=channel, payload=json.dumps(payload), now=None)


# --- delivery statements, built once (see bot.leads) ----------------------------------------------

_OUTBOX = OutboxItem.__table__
# Statements that pick their rows by id test the status as `status || ''`, which no index
# answers: PostgreSQL without table statistics (a new table's first burst) otherwise ANDs the
# status index into the plan and reads every pending row, 5 ms per lease with 5,000 pending.
_STATUS = _OUTBOX.c.status.concat("")
# A lead's due items are leased together: one write for the group instead of one per item.
_TAKE_LEASES = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id.in_(bindparam("b_ids", expanding=True)),
        _STATUS == PENDING,
        _OUTBOX.c.next_attempt_at <= bindparam("b_now"),
        # A lease ends at lease_until, as _due_in counts it: else, at that very instant, the loop
        # would be told the item is due and find it not (with a fake clock, forever).
        or_(_OUTBOX.c.lease_until.is_(None), _OUTBOX.c.lease_until <= bindparam("b_now")),
    )
    .values(
        lease_owner=bindparam("b_owner", type_=_OUTBOX.c.lease_owner.type),
        lease_until=bindparam("b_until", type_=_OUTBOX.c.lease_until.type),
        attempts=_OUTBOX.c.attempts + 1,
        # A lease still held when taken again is one whose holder never came back (it died
        # mid-call): what that call did is unknown, whatever error an attempt before it left.
        last_error=case(
            (_OUTBOX.c.lease_owner.is_(None), _OUTBOX.c.last_error),
            else_=literal(LEASE_EXPIRED, _OUTBOX.c.last_error.type),
        ),
    )
    .returning(*_OUTBOX.c)
)
# Items leased but not tried (paced, or shutting down) go back as they were, attempt uncounted.
_RELEASE = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id.in_(bindparam("b_ids", expanding=True)),
        _STATUS == PENDING,
        _OUTBOX.c.lease_owner == bindparam("b_owner"),
    )
    .values(lease_owner=None, lease_until=None, attempts=_OUTBOX.c.attempts - 1)
)
# An item by its id and when it was made: SQLite gives the ids of erased rows (`forget`, the
# purge) to the next ones inserted, and a row that is not the item must not count as it.
_SAME_ITEM = and_(
    _OUTBOX.c.id == bindparam("b_id"),
    _OUTBOX.c.created_at == bindparam("b_created", type_=_OUTBOX.c.created_at.type),
)
_EXISTS = select(_OUTBOX.c.id).where(_SAME_ITEM)
_EDITED = select(_OUTBOX.c.status, _OUTBOX.c.channel, _OUTBOX.c.result_ts, _OUTBOX.c.payload).where(
    _OUTBOX.c.id == bindparam("b_id")
)
# Replies queued for a deleted card's thread: held until its new card is posted, then moved.
_FOR_THREAD = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.lead_id == bindparam("b_lead"),
        _OUTBOX.c.status == PENDING,
        _OUTBOX.c.thread_ts == bindparam("b_old"),
    )
    .values(
        thread_ts=bindparam("b_new", type_=_OUTBOX.c.thread_ts.type),
        next_attempt_at=bindparam("b_at", type_=_OUTBOX.c.next_attempt_at.type),
    )
)
_MARK_SENT = (
    update(_OUTBOX)
    .where(_SAME_ITEM, _OUTBOX.c.lease_owner == bindparam("b_owner"))
    .values(
        status=SENT,
        sent_at=bindparam("b_now", type_=_OUTBOX.c.sent_at.type),
        result_ts=bindparam("b_ts", type_=_OUTBOX.c.result_ts.type),
        # Where it landed (a DM's D… id, not the user id it was sent to): `forget` blanks it there.
        channel=func.coalesce(
            bindparam("b_channel", type_=_OUTBOX.c.channel.type), _OUTBOX.c.channel
        ),
        lease_owner=None,
        lease_until=None,
    )
)

_MARK_DROPPED = (
    update(_OUTBOX)
    .where(_SAME_ITEM, _OUTBOX.c.lease_owner == bindparam("b_owner"))
    .values(
        status=DROPPED,
        last_error=bindparam("b_why", type_=_OUTBOX.c.last_error.type),
        lease_owner=None,
        lease_until=None,
    )
)


def _moot_for(lead: Lead | None, state: dict[str, Any]) -> str | None:
    """Why a message written for the lead's `state` (see WHILE) no longer makes sense, or None
    while it does. Only the columns `while_lead` may name are compared (others are ignored)."""
    if lead is None:
        return "lead erased"
    for column, wanted in state.items():
        if column not in _WHILE_COLUMNS:
            continue
        value = getattr(lead, column)
        if isinstance(value, datetime) and isinstance(wanted, str):
            try:
                same = value == datetime.fromisoformat(wanted)
            except ValueError:
                same = False
        else:
            same = value == wanted
        if not same:
            if column == "status":
                return f"lead {value}"  # "lead claimed", "lead new" (put back)
            if column in ("reminders_sent", "follow_up_misses"):
                return "superseded by a later one"
            return f"lead's {column} changed"
    return None


# Rendered into the SQL, not bound: a planner matches a partial index's condition
# (ix_outbox_pending) only against a literal.
_PENDING_LITERAL = literal(PENDING, literal_execute=True)


def _outside(query: Any, busy: bool, paced: bool) -> Any:
    """`query` over outbox items, leaving out the leads in flight (param b_busy) and posts to
    the paced channels (b_paced) together with any later item of the same lead (it must not
    overtake that post)."""
    item = _OUTBOX.c
    if busy:
        busy_ids = bindparam("b_busy", expanding=True)
        query = query.where(or_(item.lead_id.is_(None), item.lead_id.not_in(busy_ids)))
    if paced:
        channels = bindparam("b_paced", expanding=True)
        earlier = _OUTBOX.alias("earlier").c
        # The lead's first pending post to a paced channel, looked up per candidate by (lead,
        # status): as NOT EXISTS, PostgreSQL turned it into a join over every paced post,
        # misjudged with statistics (a channel's share of all rows is not its share of the
        # pending ones) at 12 ms a pass with 3,000 cards waiting.
        blocker = (
            select(func.min(earlier.id))
            .where(
                earlier.lead_id == item.lead_id,
                earlier.status == _PENDING_LITERAL,
                earlier.kind.in_(POSTS),
                earlier.channel.in_(channels),
            )
            .scalar_subquery()
        )
        query = query.where(
            ~and_(item.kind.in_(POSTS), item.channel.in_(channels)),
            # No such post, or only later ones (the item is no paced post itself).
            func.coalesce(blocker, item.id) >= item.id,
        )
    return query


@functools.cache
def _due_statement(limit: int, busy: bool, paced: bool) -> Any:
    """Due items, oldest first: built once per shape, since a pass runs several times a second
    under load and building it (an aliased subquery, lists of ids) cost more Python time than
    running it. Params: b_now, and b_busy / b_paced when the shape has them."""
    item = _OUTBOX.c
    now = bindparam("b_now", type_=item.next_attempt_at.type)
    query = (
        select(item.id, item.lead_id, item.channel, item.kind)
        .where(
            item.status == _PENDING_LITERAL,
            item.next_attempt_at <= now,
            or_(item.lease_until.is_(None), item.lease_until <= now),
        )
        .order_by(item.id)
        .limit(limit)
    )
    return _outside(query, busy, paced)


@functools.cache
def _next_due_statement(busy: bool, paced: bool) -> Any:
    """The pending items a pass could take next, soonest first, leaving out what a pass leaves
    out: a lead's DM waiting behind its card in a paced channel counted as due at once, and
    the loop went round every 20 ms until the card went. Params: b_busy / b_paced."""
    item = _OUTBOX.c
    query = (
        select(item.next_attempt_at, item.lease_until, item.lead_id, item.channel)
        .where(item.status == PENDING)
        .order_by(item.next_attempt_at)
        .limit(50)
    )
    return _outside(query, busy, paced)


class _Due(NamedTuple):
    id: int
    channel: str | None
    kind: str


def _group_key(lead_id: int | None, channel: str | None) -> object:
    return lead_id if lead_id is not None else ("channel", channel)


def _posting_to(channel: str | None, kind: str) -> str | None:
    """The channel a post goes to (paced per channel); None for items that post nothing."""
    return channel if kind in POSTS else None


# --- pacing ------------------------------------------------------------------------------------


@dataclass
class _Bucket:
    """Token bucket for chat.postMessage to one channel."""

    rate: float
    burst: float
    tokens: float
    ticks: Callable[[], float]
    stamp: float = field(init=False)
    blocked_until: float = 0.0  # after a 429, nothing goes to this channel before this

    def __post_init__(self) -> None:
        self.stamp = self.ticks()

    def wait_time(self) -> float:
        now = self.ticks()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if now < self.blocked_until:
            return self.blocked_until - now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


@dataclass
class PassResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    # A lead's card turned out deleted: its other items wait (those for the old card's thread
    # are held for the new one), not sent from what was leased before.
    card_gone: bool = False
    # A card Slack refused as malformed waits, due at once, to go out short: a one-off drain
    # makes another pass for it.
    fell_back: bool = False
    paced: float | None = None  # seconds until a paced item may go, if any waits
    dropped: int = 0  # messages done without sending: their lead is no longer as they say

    def __str__(self) -> str:
        dropped = f", {self.dropped} dropped" if self.dropped else ""
        return f"{self.sent} sent, {self.retried} to retry, {self.failed} failed{dropped}"


class Outbox:
    def __init__(
        self,
        sessions: sessionmaker,
        slack: Slack,
        *,
        posts_per_second: float = 1.0,
        burst: int = 4,
        lease: timedelta = timedelta(seconds=60),
        delivery_time: DeliveryTime | None = None,
        clock: Callable[[], datetime] = _now,
        first_reminder: Callable[[Lead, datetime], datetime] | None = None,
        on_card_failed: Callable[[Session, Lead, DeliveryError], None] | None = None,
        workers: int = 8,
    ) -> None:
        self.sessions = sessions
        # Reads and lone UPDATEs, the bulk of delivery: no BEGIN/COMMIT round trips on PostgreSQL.
        self.single = single_statement(sessions)
        # The delivery path's statements are Core, on bare connections: an ORM session's
        # bookkeeping cost more CPU than SQLite takes to run them.
        self.engine = sessions.kw["bind"]
        self.single_engine = single_statement_engine(self.engine)
        self.slack = slack
        self.rate = posts_per_second
        self.burst = burst
        self.lease = lease
        # Real time (processes share leases and retry times), injectable for tests.
        self.time = delivery_time or SystemDeliveryTime()
        # Leads whose full card Slack refused as malformed, and when (self.time.ticks()): their
        # refreshes go straight to the short card for a while. Per process: after a restart the
        # first refresh asks once more.
        self._short_since: dict[int, float] = {}
        self.wall = self.time.wall
        self.clock = clock  # business time (injectable): when a card was posted, its age
        self.owner = f"{uuid.uuid4()}"
        self.on_card_failed = on_card_failed
        self.first_reminder = first_reminder or (lambda lead, now: now + timedelta(minutes=30))
        self._buckets: dict[str, _Bucket] = {}
        # Channels out of tokens (or told to wait by a 429): the few the loop must check.
        self._drained: set[str] = set()
        self._lock = threading.RLock()  # _bucket() is called with it held
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._passes = 0  # the loop's passes so far (wait_parked)
        self._parked: float | None = None  # the seconds the loop waits for, while it does
        self._inflight: set[object] = set()  # leads whose delivery the loop has started
        self._max_inflight = 2 * workers  # more would only queue in the pool
        self._thread: threading.Thread | None = None
        # Slack calls in flight at once (different leads); each waits ~a round trip.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="leadbot-outbox")
        self._pool_closed = False
        # From auth.test: permalinks are built from it instead of one API call per card.
        self.workspace_url: str | None = None
        # While the database is away, every pass and delivery fails: said once, not each time.
        self._pass_trouble = Trouble(log, "outbox pass")
        self._delivery_trouble = Trouble(log, "outbox delivery")

    # -- worker thread ------------------------------------------------------------------------

    def start(self) -> Outbox:
        self._thread = threading.Thread(target=self._loop, name="leadbot-outbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool_closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)

    def kick(self, posting_to: str | None = None) -> None:
        """Something was enqueued: deliver now rather than at the next poll. `posting_to`: all
        that was enqueued is one post to this channel (a new lead's card). While the channel
        is out of tokens a pass could not send it, only read past the posts waiting there;
        the loop's wake for the channel's next token takes it in turn."""
        if posting_to is not None:
            with self._lock:
                if self._is_paced(posting_to):
                    return
        self._wake.set()

    def _loop(self) -> None:
        """Start every due lead's delivery as soon as it may go, without waiting for Slack to
        answer the ones in flight: with Slack's round trip at ~300 ms, waiting for a whole pass
        held a busy channel well below the rate Slack allows."""
        last = 0.0
        while not self._stop.is_set():
            # Deliveries finish up to hundreds a second; one pass per gap takes them together.
            gap = MIN_PASS_GAP - (time.monotonic() - last)
            if gap > 0 and self._stop.wait(gap):
                break
            last = time.monotonic()
            with self._idle:
                self._busy = True
                self._passes += 1
            delay = 2.0
            try:
                found, paced = self._dispatch()
                if paced is not None:
                    delay = min(delay, paced)  # a paced channel's next token
                if not found and delay > PACED_WAKE:
                    delay = min(delay, self._next_due_in(skip_paced=True))
                # Otherwise a finished delivery, a kick or a paced channel's token wakes the
                # loop for what is next.
            except Exception as e:
                self._pass_trouble.failed(e)
            else:
                self._pass_trouble.ok()
            finally:
                with self._idle:
                    self._busy = False
                    self._parked = delay
                    self._idle.notify_all()
            if delay > 0:
                self._wake.wait(delay)
            with self._idle:
                self._parked = None
            self._wake.clear()

    def _dispatch(self, limit: int = 100) -> tuple[bool, float | None]:
        """Hand each due lead's items (in order) to the pool, unless that lead is in flight
        already or waits for a paced channel. Returns whether anything was due, and the seconds
        until a paced channel's next token."""
        with self._lock:
            room = self._max_inflight - len(self._inflight)
            if room < min(MIN_ROOM, self._max_inflight) and self._inflight:
                return True, None  # finished deliveries make room and wake the loop
            busy = [k for k in self._inflight if isinstance(k, int)]
            waits = self._paced_waits()
        paced_channels = sorted(waits)
        paced = min(waits.values(), default=None)
        groups = self._due_groups(limit, busy=busy, paced=paced_channels)
        for key, items in groups.items():
            if room <= 0:
                break
            with self._lock:
                if key in self._inflight:
                    continue
                wait = self._take_token(items[0])
                if wait > 0:
                    paced = wait if paced is None else min(paced, wait)
                    continue
                self._inflight.add(key)
            room -= 1
            future = self._pool.submit(self._deliver_group, items, True)
            future.add_done_callback(functools.partial(self._delivered, key))
        return bool(groups), paced

    def _delivered(self, key: object, future: Future[PassResult]) -> None:
        if not future.cancelled():
            error = future.exception()
            if error is not None:
                self._delivery_trouble.failed(error)
            else:
                self._delivery_trouble.ok()
        # All under _idle: wait_parked must never see the lead out of flight without the wake.
        with self._idle:
            with self._lock:
                self._inflight.discard(key)
            self._wake.set()  # the lead's next items, or a paced one, may go now
            self._idle.notify_all()

    def wait_parked(self, timeout: float = 15.0) -> float:
        """Wake the loop and wait until it has made a pass since and is waiting, with nothing in
        flight; returns the seconds it chose to wait (tests: what it waits for, with
        `FakeDeliveryTime`, and that it does not spin)."""
        with self._idle:
            after = self._passes
        self.kick()
        with self._idle:
            parked = self._idle.wait_for(
                lambda: (
                    self._passes > after
                    and self._parked is not None
                    and not self._inflight
                    and not self._wake.is_set()
                ),
                timeout,
            )
            if not parked or self._parked is None:
                raise TimeoutError(f"the outbox loop did not settle within {timeout} s")
            return self._parked

    def wait_quiet(self, timeout: float = 15.0, horizon: float = 6.0) -> bool:
        """Wait until nothing is in flight or pending due within `horizon` seconds (tests,
        demo)."""
        deadline = time.monotonic() + timeout
        self.kick()
        while time.monotonic() < deadline:
            with self._idle:
                # Let the worker finish the pass it is in (or the one the kick started). The
                # check holds the condition: no pass can start (and lease something) under it.
                self._idle.wait_for(lambda: not self._busy and not self._inflight, timeout=0.2)
                if not self._busy and not self._inflight and self._next_due_in() > horizon:
                    return True
            with self._idle:
                self._idle.wait(0.02)
        return False

    def _next_due_in(self, *, skip_paced: bool = False) -> float:
        """Seconds until a pending item may be taken: its retry time, or its lease's end when
        another (perhaps dead) process holds it. Items of leads in flight here are not
        counted (their delivery is under way), nor, with `skip_paced`, posts to a channel that
        is out of tokens and what waits behind them (the loop wakes for its next token)."""
        with self._lock:
            busy = [k for k in self._inflight if isinstance(k, int)]
            paced = sorted(self._paced_waits()) if skip_paced else []
        return self._due_in(busy=busy, paced=paced)

    def _due_in(self, *, busy: list[int] | None = None, paced: list[str] | None = None) -> float:
        """`_next_due_in` for the given leads in flight and paced channels."""
        params: dict[str, Any] = {}
        if busy:
            params["b_busy"] = busy
        if paced:
            params["b_paced"] = paced
        now = self.wall()
        with self.single_engine.connect() as conn:
            rows = conn.execute(_next_due_statement(bool(busy), bool(paced)), params).all()
        with self._lock:  # items without a lead are in flight by channel
            rows = [r for r in rows if _group_key(r.lead_id, r.channel) not in self._inflight]
        if not rows:
            return float("inf")
        soonest = min(max(r.next_attempt_at, r.lease_until or r.next_attempt_at) for r in rows)
        return max(0.0, (soonest - now).total_seconds())

    # -- delivery -----------------------------------------------------------------------------

    def drain(self, max_seconds: float = 120.0) -> PassResult:
        """Deliver everything due now, pacing as needed (for `leadbot jobs run outbox`)."""
        total = PassResult()
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            result = self.run_pass()
            total.sent += result.sent
            total.retried += result.retried
            total.failed += result.failed
            total.dropped += result.dropped
            if result.paced is not None:
                time.sleep(min(result.paced, max(0.0, deadline - time.monotonic())))
            elif not result.sent and not result.dropped and not result.fell_back:
                break
        return total

    def run_pass(self, limit: int = 100) -> PassResult:
        """One sweep over due items, oldest first, waiting for every answer; items paced out
        stay for the next pass (`leadbot jobs run outbox`, tests)."""
        groups = list(self._due_groups(limit).values())
        # After stop() (a one-off drain, tests) the pool is gone: deliver in this thread.
        mapper = map if self._pool_closed else self._pool.map
        results = list(mapper(self._deliver_group, groups))
        total = PassResult()
        for r in results:
            total.sent += r.sent
            total.retried += r.retried
            total.failed += r.failed
            total.dropped += r.dropped
            total.fell_back = total.fell_back or r.fell_back
            if r.paced is not None:
                total.paced = r.paced if total.paced is None else min(total.paced, r.paced)
        return total

    def _due_groups(
        self, limit: int, *, busy: list[int] | None = None, paced: list[str] | None = None
    ) -> dict[object, list[_Due]]:
        """Due items, oldest first, grouped by lead (or channel for items without one).

        Leaves out the leads in `busy`, and posts to the `paced` channels together with any
        later item of the same lead, so that a backlog of cards in one busy channel does not
        fill the batch and hold up everybody's DMs behind it.
        """
        params: dict[str, Any] = {"b_now": self.wall()}
        if busy:
            params["b_busy"] = busy
        if paced:
            params["b_paced"] = paced
        with self.single_engine.connect() as conn:
            due = list(conn.execute(_due_statement(limit, bool(busy), bool(paced)), params))
        # Items of one lead go in order (its card before news about it); different leads and
        # channels go in parallel, so Slack's round trip does not cap throughput.
        groups: dict[object, list[_Due]] = {}
        for item_id, lead_id, channel, kind in due:
            groups.setdefault(_group_key(lead_id, channel), []).append(_Due(item_id, channel, kind))
        return groups

    def _deliver_group(self, items: list[_Due], first_paid: bool = False) -> PassResult:
        """Deliver one lead's items in order; `first_paid`: the first one's token is taken."""
        result = PassResult()
        if not first_paid:  # no lease for a group whose first post would wait for a token
            result.paced = self._take_token(items[0]) or None
            if result.paced is not None:
                return result
        # From here the first item's token is taken.
        leased = self._take_leases([due.id for due in items])
        for i, due in enumerate(items):
            if self._stop.is_set() and not self._pool_closed:
                if i == 0:
                    self._give_back_token(due)
                break  # shutting down: what is left stays pending for the next process
            before = result.paced
            self._deliver(due, leased.get(due.id), result, paid=i == 0)
            if result.paced is not None and result.paced != before:
                break  # this lead's next item must not overtake the paced one
            leased.pop(due.id, None)
            if result.card_gone:
                break
        if leased:
            with self.single_engine.begin() as conn:
                conn.execute(_RELEASE, {"b_ids": list(leased), "b_owner": self.owner})
        return result

    def _bucket(self, channel: str) -> _Bucket:
        with self._lock:
            bucket = self._buckets.get(channel)
            if bucket is None:
                bucket = _Bucket(
                    rate=self.rate, burst=self.burst, tokens=self.burst, ticks=self.time.ticks
                )
                self._buckets[channel] = bucket
            return bucket

    def _take_leases(self, ids: list[int]) -> dict[int, OutboxItem]:
        """The items of `ids` this process now holds, by id; those not due or held by another
        process are left out."""
        now = self.wall()
        with self.single_engine.begin() as conn:
            rows = conn.execute(
                _TAKE_LEASES,
                {"b_ids": ids, "b_now": now, "b_owner": self.owner, "b_until": now + self.lease},
            ).all()
        # Plain objects with the leased rows' values; results are written by id and owner.
        return {row.id: plain_row(OutboxItem, row._mapping) for row in rows}

    def _take_token(self, due: _Due) -> float:
        """For a post, take its channel's token: 0 if taken, else seconds until one is free.
        Other items are not paced."""
        posting_to = _posting_to(due.channel, due.kind)
        if not posting_to:
            return 0.0
        with self._lock:  # check and take the token together: threads share the bucket
            bucket = self._bucket(posting_to)
            wait = bucket.wait_time()
            if wait <= 0:
                bucket.take()
                if bucket.tokens < 1:
                    self._drained.add(posting_to)
            return max(0.0, wait)

    def _paced_waits(self) -> dict[str, float]:
        """The channels out of tokens now, with the seconds until each may post again; those
        whose token came back leave `_drained` (call with the lock held)."""
        waits = {ch: self._buckets[ch].wait_time() for ch in self._drained}
        self._drained = {ch for ch, w in waits.items() if w > 0}
        return {ch: waits[ch] for ch in self._drained}

    def _is_paced(self, channel: str) -> bool:
        """Whether posts to `channel` must wait for a token (call with the lock held)."""
        return channel in self._drained and self._buckets[channel].wait_time() > 0

    def _give_back_token(self, due: _Due) -> None:
        posting_to = _posting_to(due.channel, due.kind)
        if posting_to:
            with self._lock:
                self._bucket(posting_to).tokens += 1

    def _deliver(
        self, due: _Due, item: OutboxItem | None, result: PassResult, *, paid: bool = False
    ) -> None:
        """Send one leased item (None: not leased here) unless its channel is out of tokens."""
        if item is not None and item.kind == MESSAGE and item.lead_id is not None:
            why = self._moot(item)
            if why is not None:
                # Nothing is posted: no token spent, and the lead's next item goes on at once.
                if paid:
                    self._give_back_token(due)
                self._drop(item, why)
                result.dropped += 1
                return
        wait = 0.0 if paid else self._take_token(due)
        if wait > 0:
            result.paced = wait if result.paced is None else min(result.paced, wait)
            return
        if item is None:
            self._give_back_token(due)  # not ours to send
            return  # someone else has it, or it is no longer due
        try:
            ts, channel, lead = self._send(item)
        except DeliveryError as e:
            self._failed(item, e, result)
            return
        self._record_sent(item, ts, channel, lead)
        result.sent += 1

    def _moot(self, item: OutboxItem) -> str | None:
        """Why a message marked with the lead's state (WHILE) is not to be sent now, or None.
        Reads the lead for marked messages only: the others (most) cost a substring test."""
        if not item.payload or _WHILE_MARK not in item.payload:
            return None
        payload = json.loads(item.payload)
        state = payload.get(WHILE) if isinstance(payload, dict) else None
        if not isinstance(state, dict) or not state:
            return None
        with self.single_engine.connect() as conn:
            lead = leads.read_lead(conn, item.lead_id) if item.lead_id is not None else None
        return _moot_for(lead, state)

    def _drop(self, item: OutboxItem, why: str) -> None:
        """Done without sending: DROPPED, with why as its last_error."""
        with self.single_engine.begin() as conn:
            conn.execute(
                _MARK_DROPPED,
                {
                    "b_id": item.id,
                    "b_created": item.created_at,
                    "b_owner": self.owner,
                    "b_why": why,
                },
            )
        log.info("outbox item %s (lead %s) dropped unsent: %s", item.id, item.lead_id, why)

    def _record_sent(
        self, item: OutboxItem, ts: str | None, channel: str | None, lead: Lead | None
    ) -> None:
        """`_succeeded`, tried again while the database is out of reach. Slack has the message
        already: given up, the item's lease ran out once the database was back and it was
        sent a second time (the claimer's DM twice, after a database restart under a
        delivery). Meanwhile the lead stays in flight here, so this process does not take it
        again; the worker gives up only when stopping, a one-off pass (`leadbot jobs run
        outbox`) after a lease's length."""
        give_up = time.monotonic() + self.lease.total_seconds()
        wait = 0.5
        while True:
            try:
                self._succeeded(item, ts, channel, lead)
                return
            except SQLAlchemyError as e:
                if not unavailable(e):
                    raise
                running = self._thread is not None and self._thread.is_alive()
                if self._stop.is_set() or (not running and time.monotonic() > give_up):
                    log.error(
                        "outbox item %s (%s, lead %s) was delivered, but the database could "
                        "not record it (%s): it may be delivered again",
                        item.id,
                        item.kind,
                        item.lead_id,
                        type(e).__name__,
                    )
                    raise
                if wait == 0.5:
                    log.warning(
                        "outbox item %s (%s, lead %s) was delivered; recording it once the "
                        "database is back (%s)",
                        item.id,
                        item.kind,
                        item.lead_id,
                        type(e).__name__,
                    )
            self._stop.wait(wait)
            wait = min(2 * wait, 5.0)

    def _send(self, item: OutboxItem) -> tuple[str | None, str | None, Lead | None]:
        """Do the Slack call for an item; returns (ts, channel) of what was posted, if any, and
        for a card's kinds the lead as read before the call (None if it is gone)."""
        if item.kind == EDIT:
            return self._edit(item)
        if item.kind == MESSAGE:
            payload = json.loads(item.payload or "{}")
            message = render.Message(
                text=payload.get("text", ""), blocks=payload.get("blocks") or []
            )
            channel, ts = self.slack.post(str(item.channel), message, thread_ts=item.thread_ts)
            return ts, channel, None
        with self.single_engine.connect() as conn:
            lead = leads.read_lead(conn, item.lead_id) if item.lead_id else None
            # A repeat's card links the earlier lead and names its owner as they are now.
            note = duplicates.card_note(conn, lead) if lead is not None else None
        if lead is None:
            return None, None, None  # the lead is gone (forgotten or purged): nothing to show
        if item.kind == CARD:
            if lead.card_ts:
                return lead.card_ts, lead.card_channel, lead
            if item.attempts > 1 and _may_have_posted(item.last_error):
                found = self._find_posted_card(item, lead)
                if found:
                    return *found, lead
            metadata: dict[str, Any] | None = card_metadata(lead)
            refused = _fell_back(item)
            if refused is not None:
                # The full card was refused as malformed: the short one, with nothing optional
                # (not even the metadata, when that is what Slack refused).
                card = render.short_card(lead)
                if refused in METADATA_REFUSED:
                    metadata = None
            else:
                if _replaces(item):
                    note = f"{REPOSTED_NOTE}\n{note}" if note else REPOSTED_NOTE
                card = render.lead_card(lead, self.clock(), note=note)
            channel, ts = self.slack.post(str(item.channel), card, metadata=metadata)
            if refused is not None:
                self._shown_short(lead.id)
            if not ts:
                # Posted, but Slack named no ts: without one the card cannot be refreshed nor
                # reminded in, and posting again would show the lead twice. Find it instead.
                found = self._find_posted_card(item, lead, channel)
                if not found:
                    raise DeliveryError(NO_TS)
                return *found, lead
            return ts, channel, lead
        if item.kind == CARD_CHECK:
            if lead.card_channel and lead.card_ts:
                channel = self._channel_id(lead.card_channel)
                for ts in self._cards_in_history(
                    channel or lead.card_channel, lead, item.created_at
                ):
                    if ts != lead.card_ts:
                        log.warning("deleting a second card for lead %s", lead.id)
                        self.slack.delete(lead.card_channel, ts)
            return None, None, lead
        # CARD_REFRESH: render the lead as it is now; before its card exists there is nothing to
        # refresh (the card itself will be rendered from the current state).
        if lead.card_channel and lead.card_ts:
            try:
                refused = self._short_since.get(lead.id)
                if refused is not None and self.time.ticks() - refused < FULL_CARD_RETRY:
                    # Slack refused this lead's full card a moment ago: asking again would cost
                    # a call per refresh, in the very case (a limit changed for every card)
                    # where calls are short.
                    self.slack.update(lead.card_channel, lead.card_ts, render.short_card(lead))
                    return None, None, lead
                card = render.lead_card(lead, self.clock(), note=note)
                try:
                    self.slack.update(lead.card_channel, lead.card_ts, card)
                    self._short_since.pop(lead.id, None)
                except DeliveryError as e:
                    if not e.malformed:
                        raise
                    # Slack refuses the full card (the card may be a short one already, or the
                    # claimed card breaks a limit the first did not): show the short one, so
                    # that the card still tells who has the lead. The full card is tried again
                    # after FULL_CARD_RETRY: should Slack take it then, the card is whole again.
                    self.slack.update(lead.card_channel, lead.card_ts, render.short_card(lead))
                    self._shown_short(lead.id)
                    self._refresh_fell_back(lead, e.code)
            except DeliveryError as e:
                if e.code in GONE:
                    raise CardGone(e.code, lead.card_ts) from e
                raise
        return None, None, lead

    def _edit(self, item: OutboxItem) -> tuple[None, None, None]:
        """EDIT: put what row `of` holds now in place of its message in Slack."""
        marks = _marks(item, EDIT)
        with self.single_engine.connect() as conn:
            row = conn.execute(_EDITED, {"b_id": marks.get("of")}).first()
        if row is not None and row.status == PENDING:
            raise _NotShownYet("edited_message_not_sent_yet")
        if row is None or row.status != SENT or not row.result_ts or not row.channel:
            return None, None, None  # never shown: nothing in Slack to change
        body = json.loads(row.payload or "null")
        if not isinstance(body, dict) or "text" not in body:
            body = marks  # its body cleared since (bot.privacy.prune_delivered)
        channel = str(row.channel)
        if channel[:1] in ("U", "W"):
            channel = self.slack.dm_channel(channel)  # Slack edits a DM only by its D… id
        message = render.Message(text=str(body.get("text") or ""), blocks=body.get("blocks") or [])
        self.slack.update(channel, str(row.result_ts), message)
        return None, None, None

    def _shown_short(self, lead_id: int) -> None:
        """Remember that Slack refused the lead's full card now (see FULL_CARD_RETRY)."""
        now = self.time.ticks()
        if len(self._short_since) >= SHORT_CARDS_KEPT:  # keep only the recent ones
            self._short_since = {
                k: t for k, t in self._short_since.items() if now - t < FULL_CARD_RETRY
            }
        self._short_since[lead_id] = now

    def _refresh_fell_back(self, lead: Lead, code: str) -> None:
        """A refresh showed the short card: said once per lead, on its history and in the log
        (a card posted short already said so when it was posted)."""
        with self.engine.begin() as conn:  # the check and the event together
            if leads.has_fallen_back(conn, lead.id):
                log.info("card of lead %s refreshed in short form (%s)", lead.id, code)
                return
            leads.card_fell_back(conn, lead.id, error=code, now=self.clock(), refresh=True)
        log.warning(
            "Slack refused the refreshed card of lead %s (%s): showing a short card instead",
            lead.id,
            code,
        )

    def _find_posted_card(
        self, item: OutboxItem, lead: Lead, channel: str | None = None
    ) -> tuple[str, str] | None:
        """After an attempt that ended without an answer, look for the card before reposting
        (in `channel`, an id Slack answered with, if known)."""
        if not channel or channel[:1] not in ("C", "G"):
            channel = self._channel_id(str(item.channel))
        if channel is None:
            return None
        found = self._cards_in_history(channel, lead, item.created_at)
        if found:
            log.info("card for lead %s was already posted; adopting it", lead.id)
            return found[-1], channel  # the oldest: history comes newest first
        return None

    def _channel_id(self, channel: str) -> str | None:
        """History needs an id; a route may name a channel (`#x`): use where its cards went."""
        if channel[:1] in ("C", "G"):
            return channel
        with self.single() as s:
            return s.scalar(
                select(Lead.card_channel)
                .join(OutboxItem, OutboxItem.lead_id == Lead.id)
                .where(
                    OutboxItem.kind == CARD,
                    OutboxItem.channel == channel,
                    Lead.card_channel.is_not(None),
                )
                .limit(1)
            )

    def _cards_in_history(self, channel: str, lead: Lead, since: datetime) -> list[str]:
        """The ts of every card of `lead` in the channel's recent history, newest first: not
        those of an erased lead whose id it was given (see `card_metadata`)."""
        lead_id = lead.id
        try:
            messages = self.slack.history(channel, oldest=since.timestamp() - 60)
        except DeliveryError as e:
            if e.transient:
                raise
            # Cannot look (missing scope, private channel): post anyway — a possible duplicate
            # is better than a lost lead.
            log.warning("cannot read history to check for lead %s's card: %s", lead_id, e.code)
            return []
        found = []
        short = f"{render.SHORT_CARD_BLOCK}{lead_id}"
        for message in messages:
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == CARD_EVENT_TYPE and payload.get("lead_id") == lead_id:
                if _same_submission(payload, lead):
                    found.append(str(message.get("ts")))
            elif any(
                isinstance(block, dict) and block.get("block_id") == short
                for block in message.get("blocks") or []
            ):
                found.append(str(message.get("ts")))  # a short card, posted without metadata
        return found

    def _permalink(self, channel: str, ts: str) -> str | None:
        if self.workspace_url and channel[:1] in ("C", "G"):
            # Slack's permalink format: {workspace}/archives/{channel}/p{ts without the dot}.
            return f"{self.workspace_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"
        return self.slack.permalink(channel, ts)

    def _succeeded(
        self, item: OutboxItem, ts: str | None, channel: str | None, lead: Lead | None
    ) -> None:
        """Record a delivery; for a card (`lead`: as `_send` read it), put it on the lead."""
        now = self.wall()
        sent = {
            "b_id": item.id,
            "b_created": item.created_at,
            "b_owner": self.owner,
            "b_now": now,
            "b_ts": ts,
            "b_channel": channel,
        }
        if item.kind != CARD:
            with self.single_engine.begin() as conn:
                marked = conn.execute(_MARK_SENT, sent).rowcount
            if not marked:
                self._erased_meanwhile(item, ts, channel, lead)
            return
        posted_at = self.clock()
        permalink = self._permalink(channel, ts) if ts and channel else None
        # A card's success writes the lead too, in the same transaction.
        with self.engine.begin() as conn:
            marked = conn.execute(_MARK_SENT, sent).rowcount
            if not marked and conn.execute(_EXISTS, sent).first() is None:
                # Erased while the post was on its way: its lead's id may be a new lead's
                # already (SQLite), which must not get this card. Blanked below.
                lead = None
            uncertain = (item.last_error or "").startswith("connection_error")
            # Rare (a retry after an attempt that got no answer), so worth a read that the lead
            # its check refers to is still there.
            if (
                lead is not None
                and item.attempts > 1
                and uncertain
                and leads.read_lead(conn, lead.id) is not None
            ):
                check = _row(kind=CARD_CHECK, lead_id=lead.id, now=now + CARD_CHECK_DELAY)
                check["created_at"] = item.created_at
                enqueue(conn, [check])
            replaces = _replaces(item)
            short = _fell_back(item)
            if ts and channel and lead is not None and replaces:
                # A new card gone short is news to its submitter, as a first one is; not when
                # a short card of the lead was posted before: they heard then.
                tell = short
                if short is not None and leads.has_fallen_back(conn, lead.id, posted=True):
                    tell = None
                if leads.card_reposted(
                    conn,
                    lead.id,
                    channel=channel,
                    ts=ts,
                    permalink=permalink,
                    now=posted_at,
                    short=short is not None,
                ):
                    conn.execute(
                        _FOR_THREAD,
                        {"b_lead": lead.id, "b_old": replaces, "b_new": ts, "b_at": now},
                    )
                    if tell is not None:
                        dm = render.short_card_dm(lead, channel, tell, reposted=True)
                        enqueue(conn, [message_row(lead.submitted_by, dm, lead_id=lead.id)])
            elif ts and channel and lead is not None:
                # Nothing is written if the lead is gone since, or has its card already.
                posted = leads.card_posted(
                    conn,
                    lead.id,
                    channel=channel,
                    ts=ts,
                    permalink=permalink,
                    now=posted_at,
                    next_reminder_at=self.first_reminder(lead, posted_at),
                    short=short is not None,
                )
                if posted is not None and posted != lead.priority:
                    # Corrected (/lead edit) while the card was on its way: its SLA is the
                    # new priority's, from this post (the edit found no post to count from).
                    now_is = leads.with_priority(lead, posted)
                    leads.reschedule_claim(conn, lead.id, self.first_reminder(now_is, posted_at))
                if posted and short is not None:
                    # The lead reached sales, in short: its submitter hears so (and why), in
                    # place of the "posted now, after all" below.
                    told = message_row(
                        lead.submitted_by,
                        render.short_card_dm(lead, channel, short),
                        lead_id=lead.id,
                    )
                    enqueue(conn, [told])
                elif posted and lead.card_error:
                    # The submitter was told it could not be posted: close that loop.
                    told = message_row(
                        lead.submitted_by, _card_now_posted(lead, channel), lead_id=lead.id
                    )
                    enqueue(conn, [told])
        if marked or not self._erased_meanwhile(item, ts, channel, lead):
            log.info("card posted for lead %s", item.lead_id)

    def _card_gone(self, item: OutboxItem, error: DeliveryError, now: datetime) -> bool:
        """Whether `error` says someone deleted the lead's card, and is dealt with: an unclaimed
        lead gets a new card (it could not be claimed without one), and replies meant for the
        old card's thread wait for the new one. A claimed lead is its owner's: nothing to do."""
        if isinstance(error, CardGone):
            gone = error.ts
        elif item.kind == MESSAGE and item.thread_ts and item.lead_id and error.code in GONE:
            gone = item.thread_ts
        else:
            return False
        values: dict[str, Any] = {"status": FAILED}  # a refresh: a new card shows the lead anew
        with self.sessions.begin() as s:
            lead = leads.get_lead(s, item.lead_id) if item.lead_id else None
            if lead is None:
                return False
            current, channel = lead.card_ts, lead.card_channel
            deleted = current == gone
            if deleted:
                if not channel or not leads.card_deleted(s, lead.id, ts=gone, now=now):
                    return False
                enqueue(s, [repost_row(lead.id, channel, gone, now)])
                held = {"b_lead": lead.id, "b_old": gone, "b_new": gone}
                s.execute(_FOR_THREAD, {**held, "b_at": now + HOLD_FOR_NEW_CARD})
                log.warning("the card of lead %s was deleted in Slack: posting it again", lead.id)
            if item.kind == MESSAGE:
                # To the new card's thread: now if it is there, else when it is.
                new = None if deleted else current
                at = now if new else now + HOLD_FOR_NEW_CARD
                values = {"thread_ts": new or gone, "next_attempt_at": at}
            values.update(lease_owner=None, lease_until=None, last_error=error.code[:200])
            s.execute(
                update(OutboxItem)
                .where(OutboxItem.id == item.id, OutboxItem.lease_owner == self.owner)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        if deleted:
            self.kick()
        return True

    def _erased_meanwhile(
        self, item: OutboxItem, ts: str | None, channel: str | None, lead: Lead | None
    ) -> bool:
        """After a delivery whose row was not there to mark: whether the row is gone, that is,
        its lead was erased (`forget`, the purge) while the call was on its way. The erasure
        blanks what was delivered before it and did not know of this one: blank it too. A DM
        carries the contact details, and a refresh puts them back on a card just blanked."""
        with self.single_engine.connect() as conn:
            if conn.execute(_EXISTS, {"b_id": item.id, "b_created": item.created_at}).first():
                return False  # not erased: another process took over its lease
        if item.kind == CARD_REFRESH and lead is not None:
            ts, channel = lead.card_ts, lead.card_channel
        if ts and channel and item.lead_id:
            try:
                self.slack.update(channel, ts, render.forgotten_card(item.lead_id))
            except DeliveryError as e:
                log.warning(
                    "could not blank a %s of erased lead %s: %s", item.kind, item.lead_id, e.code
                )
            else:
                log.info(
                    "blanked a %s of lead %s, erased while on its way", item.kind, item.lead_id
                )
        return True

    def _failed(self, item: OutboxItem, error: DeliveryError, result: PassResult) -> None:
        now = self.wall()
        if self._card_gone(item, error, now):
            result.failed += 1
            result.card_gone = True
            return
        instead: dict[str, Any] | None = None  # what to send in place of a refused message
        # A full card refused as malformed: the same item posts the short card next, at once
        # (once: a short card refused in turn fails for good, below).
        short = item.kind == CARD and error.malformed and _fell_back(item) is None
        if error.transient:
            backoff = _doubling(item.attempts, 0.5, MAX_BACKOFF)
            if error.retry_after is not None:
                backoff = max(backoff, error.retry_after)
                if item.channel:
                    with self._lock:
                        bucket = self._bucket(item.channel)
                        bucket.blocked_until = self.time.ticks() + error.retry_after
                        self._drained.add(item.channel)
            values: dict[str, Any] = {"next_attempt_at": now + timedelta(seconds=backoff)}
            result.retried += 1
            log.warning(
                "outbox item %s (%s, lead %s) will be retried in %.1fs: %s",
                item.id,
                item.kind,
                item.lead_id,
                backoff,
                error.code,
            )
        elif short:
            payload = json.loads(item.payload or "{}") | {"fallback": error.code[:100]}
            values = {"next_attempt_at": now, "payload": json.dumps(payload)}
            result.retried += 1
            result.fell_back = True
            log.warning(
                "Slack refused the card of lead %s (%s): posting a short card instead",
                item.lead_id,
                error.code,
            )
        elif item.kind == CARD and error.fixable:
            backoff = _doubling(item.attempts, 60.0, MAX_FIXABLE_BACKOFF)
            values = {"next_attempt_at": now + timedelta(seconds=backoff)}
            result.failed += 1
            log.warning(
                "card of lead %s not posted (%s): tried again in %.0fs, until someone fixes it",
                item.lead_id,
                error.code,
                backoff,
            )
        else:
            values = {"status": FAILED}
            result.failed += 1
            log.warning(
                "outbox item %s (%s, lead %s) failed for good: %s",
                item.id,
                item.kind,
                item.lead_id,
                error.code,
            )
            instead = _if_undelivered(item, error)
        # Either way the lease is given up and the error kept for the digest and operators.
        values.update(lease_owner=None, lease_until=None, last_error=error.code[:200])
        with self.sessions.begin() as s:
            s.execute(
                update(OutboxItem)
                .where(OutboxItem.id == item.id, OutboxItem.lease_owner == self.owner)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            lead = None
            if short and item.lead_id:
                # On the lead's history, not as a failed card: it is claimable in short. The
                # submitter hears once the short card is in (_succeeded).
                leads.card_fell_back(s, item.lead_id, error=error.code, now=self.clock())
            elif not error.transient and item.kind == CARD and item.lead_id:
                lead = leads.get_lead(s, item.lead_id)
            # Recorded and told once per problem, not at every try of a card that waits for
            # a fix.
            if error.malformed and _plain_if_refused(item):
                # Refused for its blocks, not its reader: the owner gets the text instead, and
                # `instead` (a manager's "not told") goes only if that is refused too.
                plain = _claimer_plain(s, item, error)
                if plain is not None:
                    enqueue(s, [plain])
            elif instead is not None:
                enqueue(s, [instead])
            if lead is not None and lead.card_error != error.code[:200]:
                leads.card_failed(s, lead.id, error=error.code, now=now)
                if self.on_card_failed is not None:
                    self.on_card_failed(s, lead, error)
