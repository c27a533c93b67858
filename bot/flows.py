"""Adapters between the core and Slack. The database decides first; what Slack must be told is
queued in the outbox in the same transaction, so a change and its messages stand or fall together.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import String, bindparam, cast, literal_column, null, select
from sqlalchemy.orm import Session

from bot import duplicates, leads, outbox, outcomes, render
from bot.delivery import DeliveryError
from bot.parsing import LeadInput
from bot.services import Services
from bot.settings import Settings
from bot.sla import add_working_time
from models import Lead, LeadEvent, OutboxItem, driver, plain_lead

log = logging.getLogger(__name__)


class Submitted(NamedTuple):
    lead: Lead
    earlier: Lead | None  # the recent lead this one repeats, if any


def submit_lead(
    services: Services,
    data: LeadInput,
    *,
    user_id: str,
    team_id: str,
    channel: str | None,
    request_key: str | None = None,
) -> Submitted:
    """Store the lead and queue its card (one transaction); raises SQLAlchemyError if the
    database is down, in which case nothing was stored. A repeat of a recent lead is marked,
    and the owner still working the earlier one hears of it (see _store_repeat).

    `request_key`: the Slack request's (leads.request_key). The same request again, to this
    process or another, stores nothing and queues nothing: it gets the lead stored the first
    time, with its earlier lead as the first answer named it.
    """
    now = services.clock.now()
    values = leads.lead_values(
        data,
        team_id=team_id,
        submitted_by=user_id,
        now=now,
        source_channel=channel,
        request_key=leads.request_key(request_key),
    )
    where = card_channel(services.settings, data)
    keys = (bool(values["email_norm"]), bool(values["phone_norm"]))
    window = {
        "team_id": team_id,
        "email_norm": values["email_norm"],
        "phone_norm": values["phone_norm"],
        "since": now - services.settings.duplicate_window,
        "until": now,
    }
    # Nearly every /lead is a new person's: it runs on a bare connection, since an ORM
    # session's begin, bookkeeping and close were a tenth of a SQLite /lead's CPU.
    stored: Submitted | None = None
    if services.engine.dialect.name == "postgresql":
        # The lead, its event and its card in one autocommit statement that also does the
        # lookup: one round trip where a transaction takes six.
        card = outbox.card_row(Lead(id=0), where)  # its times are real time
        params = window | values | {f"o_{k}": card[k] for k in _CARD_PARAMS}
        with services.single_engine.connect() as conn:
            lead_id = driver.run(conn, _submit_with_card(tuple(values), *keys), params).scalar()
        if lead_id is not None:
            stored = Submitted(plain_lead(values | {"id": lead_id}), None)
        else:
            with services.sessions.begin() as s:
                stored = _store_repeat(s, values, window, where)
    else:
        # SQLite: the INSERT that does the lookup, then the event and the card. A repeat is
        # stored in the same transaction: a second one would wait in line for the file's
        # writer lock again (under load, the slowest 2% of answers).
        with services.engine.begin() as conn:
            insert = _insert_unless_repeat(tuple(values), *keys, conn.dialect.name)
            fresh = leads.submit_unless(conn, insert, window | values, values)
            if fresh is not None:
                stored = Submitted(fresh, None)
                outbox.enqueue(conn, [outbox.card_row(fresh, where)])
            else:
                with services.sessions(bind=conn) as s:  # joins the connection's transaction
                    stored = _store_repeat(s, values, window, where)
    if stored is None:  # the same Slack request again: read only now, never for a new lead
        with services.single_engine.connect() as conn:
            lead = leads.replayed(conn, values["request_key"])
            earlier = duplicates.earlier_of(conn, lead)
        log.warning("lead %s: its Slack request came again; nothing stored", lead.id)
        return Submitted(lead, earlier)
    lead, earlier = stored
    # A new person's lead queued only its card; a repeat may have queued a DM too.
    services.outbox.kick(posting_to=where if earlier is None else None)
    log.info("lead %s submitted", lead.id)
    return Submitted(lead, earlier)


def _store_repeat(
    session: Session, values: dict[str, Any], window: dict[str, Any], where: str
) -> Submitted | None:
    """Store a lead whose person bot.duplicates found a recent lead of, marked as its repeat
    (the card renders the mark at delivery), with its card and the earlier owner's DM. None,
    and nothing stored, when its request is a stored lead's already (leads.replayed)."""
    earlier = duplicates.find_earlier(session, **window)
    matched = duplicates.matched_on_keys(values["email_norm"], values["phone_norm"], earlier)
    lead = leads.submit(session, values, duplicate_of=earlier, matched_on=matched)
    if lead is None:
        return None
    rows = [outbox.card_row(lead, where)]
    dm = duplicates.owner_dm(lead, earlier, where) if earlier is not None else None
    if dm is not None:
        rows.append(outbox.message_row(dm[0], dm[1], lead_id=lead.id))
    outbox.enqueue(session, rows)
    return Submitted(lead, earlier)


# The card row's columns that do not depend on the lead's id (see outbox.card_row).
_CARD_PARAMS = (
    "kind",
    "channel",
    "thread_ts",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
)


@functools.cache
def _submit_with_card(columns: tuple[str, ...], by_email: bool, by_phone: bool) -> Any:
    """INSERT a lead, its "submitted" event and its card's outbox row as one statement
    (data-modifying CTEs, PostgreSQL only), built once per shape, unless the lookup of
    bot.duplicates finds an earlier lead of the same person (by email and/or phone, as the
    lead has them): then it stores nothing and returns no row. Params: the lead's `columns`,
    the lookup's (bot.duplicates.find_earlier) and `o_*` for _CARD_PARAMS (a prefix no lead
    column has: SQLAlchemy would add that column to the lead's INSERT)."""
    lead_t, event_t, outbox_t = Lead.__table__, LeadEvent.__table__, OutboxItem.__table__
    new = _insert_unless_repeat(columns, by_email, by_phone, "postgresql").cte("new_lead")
    at = bindparam("submitted_at", type_=lead_t.c.submitted_at.type)
    event = event_t.insert().from_select(
        ["lead_id", "at", "actor", "kind", "detail"],
        select(
            new.c.id,
            at,
            bindparam("submitted_by", type_=lead_t.c.submitted_by.type),
            literal_column("'submitted'", String),
            null(),
        ),
    )
    card = outbox_t.insert().from_select(
        ["lead_id", "dedupe_key", *_CARD_PARAMS],
        select(
            new.c.id,
            # outbox.card_row's key, f"card:{lead.id}": a lead never gets two cards.
            literal_column("'card:'", String) + cast(new.c.id, String),
            *(bindparam(f"o_{k}", type_=outbox_t.c[k].type) for k in _CARD_PARAMS),
        ),
    )
    return select(new.c.id).add_cte(event.cte("new_event"), card.cte("new_card"))


@functools.cache
def _insert_unless_repeat(
    columns: tuple[str, ...], by_email: bool, by_phone: bool, dialect: str
) -> Any:
    """INSERT a lead (params: its `columns`, and the lookup's as bot.duplicates.find_earlier
    takes them) RETURNING its id, unless the lookup finds an earlier lead of the same person
    or its request_key is a stored lead's (leads.lead_insert): then it stores nothing and
    returns no row. Built once per shape and dialect."""
    lead_t = Lead.__table__
    row = select(*(bindparam(c, type_=lead_t.c[c].type) for c in columns))
    if by_email or by_phone:
        row = row.where(~duplicates.earlier_exists(by_email, by_phone))
    insert = leads.lead_insert(dialect).from_select(columns, row)
    return insert.returning(lead_t.c.id)


def claim_all(
    services: Services, clicks: Sequence[tuple[int, str, str]]
) -> list[leads.ClaimResult]:
    """Claims (lead id, user, workspace), in one transaction, each result in its click's place.

    Each claim is one conditional UPDATE with its follow-up clock; each won claim queues the
    card refresh and both DMs (claimer's private details, submitter's news). The events and
    the outbox rows of all claims are one INSERT each. Core statements only, on a bare
    connection: an ORM session's overhead is not needed. The leads are locked in id order, so
    two processes claiming the same leads in one batch each cannot deadlock. Once a lead is
    settled in the batch (won, or found taken), further clicks on it (a stampede on one card)
    lose without a statement of their own: only their events are written."""
    now = services.clock.now()
    follow_up = outcomes.follow_up_on_claim(services.settings.policy, now)
    results: dict[int, leads.ClaimResult] = {}
    events: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    lost: list[Lead] = []
    # (lead id, workspace) → the lead as this batch left it, None if there is no such lead.
    settled: dict[tuple[int, str], Lead | None] = {}
    with services.engine.begin() as conn:
        # A stable sort: clicks on one lead keep their order, and the first wins.
        for i in sorted(range(len(clicks)), key=lambda i: clicks[i][0]):
            lead_id, user_id, team_id = clicks[i]
            if (lead_id, team_id) in settled:
                lead = settled[lead_id, team_id]
                if lead is not None:
                    events.append(leads.event_row(lead_id, "claim_too_late", user_id, now))
                results[i] = leads.ClaimResult(won=False, lead=lead)
                continue
            result = leads.claim(
                conn,
                lead_id,
                user_id,
                team_id=team_id,
                now=now,
                follow_up=follow_up,
                events=events,
            )
            results[i] = result
            lead = settled[lead_id, team_id] = result.lead
            if result.won and lead is not None:
                # The version was bumped by this transaction: no refresh for it can exist yet.
                rows.append(outbox.refresh_row(lead))
                if lead.owner_id:
                    rows.append(
                        outbox.message_row(
                            lead.owner_id,
                            render.claimer_dm(lead),
                            lead_id=lead.id,
                            # The only place the owner gets the contact details: should Slack
                            # refuse these blocks, they still arrive, as text.
                            claimer_plain=True,
                        )
                    )
                rows.append(
                    outbox.message_row(
                        lead.submitted_by, render.submitter_claimed_dm(lead), lead_id=lead.id
                    )
                )
            elif lead is not None:
                # The clicker may have seen an out-of-date card: bring it up to date (once).
                lost.append(lead)
        outbox.enqueue(conn, rows)
        for lead in lost:
            outbox.enqueue_refresh(conn, lead)
        if events:
            leads.record_all(conn, events)
    services.outbox.kick()
    return [results[i] for i in range(len(clicks))]


def after_release(session: Session, lead: Lead, by: str, previous: str | None) -> None:
    """A released lead, in the release's transaction: the card offers it again, its thread says
    who released it and, when someone else did (a manager), whose it was (`previous`); that
    owner is told by DM, since their "is yours" DM stays and the lead just leaves their `/lead
    mine`."""
    outbox.enqueue_refresh(session, lead)
    if previous and previous != by:
        outbox.enqueue_message(
            session, previous, render.released_owner_dm(lead, by), lead_id=lead.id
        )
    if lead.card_channel and lead.card_ts:
        outbox.enqueue_message(
            session,
            lead.card_channel,
            render.released_note(lead, by, previous),
            lead_id=lead.id,
            thread_ts=lead.card_ts,
        )


def tell_submitter_card_failed(session: Session, lead: Lead, error: DeliveryError) -> None:
    """A card that cannot be posted: the submitter hears why, in words they can act on."""
    # The advice speaks of "the leads channel"; a policy route may have sent the card to
    # another one, and the admin must fix (or /invite the bot to) that one.
    channel = session.scalar(
        select(OutboxItem.channel).where(
            OutboxItem.lead_id == lead.id, OutboxItem.kind == outbox.CARD
        )
    )
    where = f" to {render.channel_mention(channel)}" if channel else ""
    # A malformed card was tried in short too (bot.outbox): the admin needs Slack's code.
    code = f" (`{render.inline(error.code, 60)}`)" if error.malformed else ""
    outbox.enqueue_message(
        session,
        lead.submitted_by,
        render.Message(
            text=f"⚠️ Lead #{lead.id} {render.lead_label(lead)} is saved, but its card could "
            f"not be posted{where}: {error.advice}{code}. Ask your leadbot admin; the "
            "managers' digest lists it too."
            + (" The card goes out by itself once that is fixed." if error.fixable else "")
        ),
        lead_id=lead.id,
    )


def tell(services: Services, channel: str | None, user: str, text: str) -> None:
    """A private word to one person about their own click: ephemeral where they clicked, else
    a DM. Only useful now, so it skips the outbox; sent from its own small pool so that Slack's
    round trip never holds a listener thread that other people's acks are waiting for."""

    def send() -> None:
        try:
            if channel:
                try:
                    services.slack.ephemeral(channel, user, text)
                    return
                except DeliveryError as e:
                    if e.transient:
                        raise
                    # Where they clicked is not a place the bot can answer (a channel it is
                    # not in, archived, a conversation it cannot see): say it in a DM.
                    log.info("private note not shown where clicked (%s); sent as a DM", e.code)
            services.slack.dm(user, render.Message(text=text))
        except DeliveryError as e:
            log.warning("private note to a user not sent: %s", e.code)

    services.notes.submit(send)


# --- the policy's clock ------------------------------------------------------------------------


def claim_due(settings: Settings, lead: Lead, start: datetime) -> datetime:
    """When an unclaimed lead is next due a reminder: its priority's claim_within of working
    time after `start` (working hours, working days, holidays skipped)."""
    policy = settings.policy
    return add_working_time(start, policy.rule(lead.priority).claim_within, policy.hours)


def reminder_schedule(settings: Settings, now: datetime) -> Callable[[Lead], tuple[datetime, int]]:
    """For leads.take_reminder: the next reminder time and the escalation count, per lead."""

    def schedule(lead: Lead) -> tuple[datetime, int]:
        return claim_due(settings, lead, now), settings.policy.rule(lead.priority).escalate_after

    return schedule


def card_channel(settings: Settings, data: LeadInput | Lead) -> str:
    """Where the lead's card goes: the first matching route of the policy, else LEADS_CHANNEL."""
    return settings.policy.route(
        territory=data.territory,
        persona=data.persona,
        priority=data.priority,
        event=data.event,
        default_channel=settings.leads_channel,
    )


def parse_options(settings: Settings) -> dict[str, Any]:
    """The policy's vocabulary for the /lead parser and the modal's validation."""
    policy = settings.policy
    return {
        "priorities": policy.priority_keys(),
        "default_priority": policy.default_priority,
        "personas": policy.persona_keys() or None,
    }
