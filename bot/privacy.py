"""Retention and erasure: the `purge` job (RETAIN_FOR) and `leadbot forget EMAIL` (GDPR).

Both delete whole leads: the lead row, its event log and its outbox rows (queued messages about
it, which may carry its details, must never go out afterwards). A message about no one lead
that names leads (the managers' digest) is rewritten instead: each erased lead's stretch becomes
"#12 (erased)", in its outbox row and, once delivered, in Slack (an EDIT through the outbox).
Contact details never reach a log here: only lead ids and counts are logged, and of the leads
only ids are read back from the database (the digests' bodies are read, to be rewritten: SQLAlchemy,
which would print the rows it reads at DEBUG, is held at WARNING by bot.logs).

The purge job also clears the bodies of messages done with longer ago than RETAIN_FOR (30 days
without it): nothing reads a delivered message's body afterwards (`prune_delivered`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy.orm import Session

from bot import leads, outbox, render
from bot.delivery import DeliveryError
from bot.outbox import EDIT, MESSAGE
from bot.parsing import _is_email, normalize_email
from bot.services import Services
from bot.settings import SettingsError, format_duration
from models import PENDING, SENT, Lead, LeadEvent, OutboxItem

log = logging.getLogger(__name__)

PURGE_BATCH = 500  # leads per transaction: a big purge never holds a long lock
# Delivered messages keep their bodies this long when RETAIN_FOR is not set (see
# prune_delivered); then, as with RETAIN_FOR, only what finds them again stays.
BODIES_KEPT = timedelta(days=30)
PRUNE_BATCH = 1000  # rows per transaction
PRUNE_JOB = "prune"  # its JobRun rows: the day's prune is done (prune_delivered)


class ForgetError(SettingsError):
    """The address given to `forget` is unusable; str() is one line (the CLI exits 2 on it)."""


# --- messages that name leads they are not about ----------------------------------------------
#
# The digest is queued without a lead_id (it is about many), so deleting a lead's rows misses it.
# Its payload starts with the ids it names ({"ids": [12, 15], "text": …}): an erasure finds the
# rows naming its leads from that short head, not by parsing every body.

IDS = "ids"
ERASED = "#{id} (erased)"  # what an erased lead's stretch of a line becomes
GONE_TEXT = "This message named a lead that has since been erased, so it is no longer shown."
_HEAD = 2000  # characters of a payload read to learn its ids
_HEAD_IDS = re.compile(r'\{"ids": \[([0-9, ]*)\]')
# How leadbot names a lead in a line: its reference (`#12`, or linked: `<url|#12>`,
# `<url|lead #12>`) and then its label (` *Jane Doe* (Acme)`, render.lead_label). User text
# never holds a `*` (render.inert turns it into a lookalike), so " *" after a reference starts
# a label and nothing a person typed can fake or hide one.
_REF = r"(?:<[^<>|\n]*\|(?:lead )?#{a}>|(?<![\w#&|/])#{b}(?!\d))"
_ANY_REF = _REF.format(a=r"\d+", b=r"\d+")
# A named lead's stretch: from its labelled reference to the next one on the line (the ", "
# between them left), else to the end of the line, so the label is gone whatever its length or
# the renderer's cut (60 characters in the digest's lines, 200 elsewhere).
_NAMED = re.compile(
    _REF.format(a=r"(?P<a>\d+)", b=r"(?P<b>\d+)") + rf" \*[^\n]*?(?=(?:, ?)?{_ANY_REF} \*|\n|$)"
)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def _rewrite(value: Any, change: Callable[[str], str]) -> Any:
    """`value` (JSON) with `change` applied to each string in it."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_rewrite(v, change) for v in value]
    if isinstance(value, dict):
        return {k: _rewrite(v, change) for k, v in value.items()}
    return value


def _lead_of(match: re.Match[str]) -> int:
    return int(match["a"] or match["b"])


def named_ids(body: Any) -> list[int]:
    """The ids of the leads a message body (text, blocks: any JSON) names, in order."""
    return sorted({_lead_of(m) for s in _strings(body) for m in _NAMED.finditer(s)})


def _without(body: Any, erased: Collection[int]) -> Any:
    """`body` with each stretch naming an erased lead replaced by its stand-in."""

    def one(match: re.Match[str]) -> str:
        lead_id = _lead_of(match)
        return ERASED.format(id=lead_id) if lead_id in erased else match[0]

    return _rewrite(body, lambda s: _NAMED.sub(one, s) if "*" in s else s)


def gone_message() -> render.Message:
    """What a message whose body was cleared becomes when a lead it named is erased."""
    return render.Message(text=GONE_TEXT, blocks=[render.section(f"🗑️ {GONE_TEXT}")])


def naming_row(channel: str, message: render.Message) -> dict[str, Any]:
    """`outbox.message_row` for a message about no one lead (the digest), its payload headed
    by the ids of the leads it names, for an erasure of one of them to find."""
    row = outbox.message_row(channel, message)
    body = json.loads(row["payload"])
    row["payload"] = json.dumps({IDS: named_ids([message.text, message.blocks]), **body})
    return row


def without_erased(session: Session, message: render.Message) -> render.Message:
    """`message`, to be queued in this transaction, without the leads it names that are gone.

    A digest reads its leads before the transaction that queues it: a lead erased in between
    would be named by a row its erasure never saw. So the named leads are read here again,
    locked (FOR SHARE) until this transaction ends: an erasure still to come waits and then
    finds the row; one already done leaves them missing here. (SQLite: both transactions write,
    and writers take turns.)"""
    ids = named_ids([message.text, message.blocks])
    if not ids:
        return message
    there = set(session.scalars(select(Lead.id).where(Lead.id.in_(ids)).with_for_update(read=True)))
    gone = set(ids) - there
    if not gone:
        return message
    log.info(
        "leads %s erased before a message naming them was queued",
        ", ".join(str(i) for i in sorted(gone)),
    )
    return render.Message(text=_without(message.text, gone), blocks=_without(message.blocks, gone))


def _head_ids(head: str | None) -> list[int] | None:
    """The ids a payload declares at its head; None for a payload that declares none (queued
    by an earlier version) or one too long to tell from its head."""
    match = _HEAD_IDS.match(head or "")
    if match is None:
        return None
    return [int(i) for i in match[1].replace(" ", "").split(",") if i]


def _rewritten(payload: str | None, erased: Collection[int]) -> dict[str, Any] | None:
    """The payload of a message naming leads once the `erased` are gone from it; None if it
    names none of them. A message whose body was cleared is replaced whole."""
    try:
        stored = json.loads(payload or "null")
    except ValueError:
        return None
    if not isinstance(stored, dict):
        return None
    declared = stored.get(IDS)
    ids = declared if isinstance(declared, list) else named_ids(stored)
    if not set(ids) & set(erased):
        return None
    if "text" not in stored:
        gone = gone_message()
        return {IDS: [], "text": gone.text, "blocks": gone.blocks}
    body = {k: v for k, v in stored.items() if k != IDS}
    body["text"] = _without(body.get("text"), erased)
    body["blocks"] = _without(body.get("blocks"), erased)
    return {IDS: [i for i in ids if i not in erased], **body}


def rewrite_naming(session: Session, erased: Collection[int]) -> int:
    """Rewrite, in this transaction, every message queued without a lead that names one of
    the `erased` leads; queue the Slack edit of those delivered or on their way. Returns how
    many were rewritten.

    Rows are locked while rewritten (FOR UPDATE): two erasures rewriting one digest at once must
    not each write back the other's lead. A row leased by a deliverer may be on its way with its
    old body: its edit waits until it has landed (outbox.EDIT)."""
    if not erased:
        return 0
    wanted = set(erased)
    heads = session.execute(
        select(OutboxItem.id, func.substr(OutboxItem.payload, 1, _HEAD)).where(
            OutboxItem.lead_id.is_(None),
            OutboxItem.kind == MESSAGE,
            OutboxItem.payload.is_not(None),
        )
    ).all()
    # A payload that declares no ids (an earlier version's) is read whole.
    hits = [
        row_id
        for row_id, head in heads
        if (declared := _head_ids(head)) is None or wanted.intersection(declared)
    ]
    if not hits:
        return 0
    rows = session.execute(
        select(
            OutboxItem.id,
            OutboxItem.status,
            OutboxItem.channel,
            OutboxItem.result_ts,
            OutboxItem.lease_owner,
            OutboxItem.payload,
        )
        .where(OutboxItem.id.in_(hits))
        .order_by(OutboxItem.id)
        .with_for_update()
    ).all()
    edits = []
    rewritten = 0
    for row in rows:
        new = _rewritten(row.payload, wanted)
        if new is None:
            continue
        session.execute(
            update(OutboxItem)
            .where(OutboxItem.id == row.id)
            .values(payload=json.dumps(new))
            .execution_options(synchronize_session=False)
        )
        rewritten += 1
        shown = row.status == SENT and row.result_ts and row.channel
        on_its_way = row.status == PENDING and row.lease_owner is not None
        if shown or on_its_way:
            edits.append(outbox.edit_row(row.id, row.channel, gone_message()))
    outbox.enqueue(session, edits)
    if rewritten:
        log.info(
            "rewrote %d messages naming erased leads (%d to edit in Slack)", rewritten, len(edits)
        )
    return rewritten


# --- deleting leads ----------------------------------------------------------------------------


@dataclass
class Erased:
    leads: int  # leads deleted
    messages: int  # other messages naming them, rewritten


def erase_leads(session: Session, lead_ids: Sequence[int]) -> Erased:
    """Delete these leads with their events and outbox rows, and rewrite the messages about no
    one lead that name them (`rewrite_naming`), in this transaction.

    Children are deleted explicitly (by their lead_id indexes) rather than left to ON DELETE
    CASCADE, so nothing depends on SQLite's foreign_keys pragma being on for this connection.
    The rewrite comes in the same transaction: a lead id can be reused once its row is gone
    (SQLite), and a later look could no longer tell which lead a message named."""
    if not lead_ids:
        return Erased(0, 0)
    ids = list(lead_ids)
    session.execute(
        delete(OutboxItem)
        .where(OutboxItem.lead_id.in_(ids))
        .execution_options(synchronize_session=False)
    )
    session.execute(
        delete(LeadEvent)
        .where(LeadEvent.lead_id.in_(ids))
        .execution_options(synchronize_session=False)
    )
    result = session.execute(
        delete(Lead).where(Lead.id.in_(ids)).execution_options(synchronize_session=False)
    )
    return Erased(int(result.rowcount or 0), rewrite_naming(session, ids))


def delete_leads(session: Session, lead_ids: Sequence[int]) -> int:
    """`erase_leads`; returns how many leads went."""
    return erase_leads(session, lead_ids).leads


def _chunks(ids: Sequence[int], size: int) -> list[Sequence[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _rewritten_note(count: int) -> str:
    return f"; {count} other messages naming them rewritten" if count else ""


# --- retention ---------------------------------------------------------------------------------


def purge_expired(services: Services, *, batch_size: int = PURGE_BATCH) -> str:
    """Delete leads submitted more than RETAIN_FOR ago (business clock), a batch at a time.

    Each batch is its own short transaction: the oldest `batch_size` ids by the
    `ix_leads_submitted_at` range scan, then their deletion. Safe to run in several processes at
    once: a lead deleted by another pass simply counts in that pass.
    """
    retain = services.settings.retain_for
    if retain is None:
        return "skipped: RETAIN_FOR not set"
    cutoff = services.clock.now() - retain
    purged = rewritten = 0
    while True:
        with services.sessions.begin() as s:
            ids = list(
                s.scalars(
                    select(Lead.id)
                    .where(Lead.submitted_at < cutoff)
                    .order_by(Lead.submitted_at, Lead.id)
                    .limit(batch_size)
                )
            )
            if not ids:
                break
            erased = erase_leads(s, ids)
        purged += erased.leads
        rewritten += erased.messages
        log.debug("purge: deleted %d leads (ids %d..%d)", erased.leads, min(ids), max(ids))
    if rewritten:
        services.outbox.kick()
    summary = f"purged {purged} leads older than {format_duration(retain)}"
    summary += _rewritten_note(rewritten)
    if purged:
        log.info("%s", summary)
    return summary


def prune_delivered(services: Services, *, batch_size: int = PRUNE_BATCH) -> str:
    """Clear the bodies of messages done with (sent, failed, dropped) that were queued more than
    RETAIN_FOR ago, or BODIES_KEPT without it; once a day (the first purge pass of the day, in
    the outbox's clock). Returns a summary.

    Nothing reads such a body again: forget blanks a lead's messages by their channel and ts,
    which stay; copy-db would only carry the bodies along. A message about no one lead keeps the
    ids of the leads it names, so that erasing one of them still finds it (and, its body gone,
    replaces it whole). With RETAIN_FOR, every lead a digest names was submitted before it and
    is purged before its body is cleared: each is then rewritten line by line. The edits
    delivered (outbox.EDIT) go whole. Times are the outbox's (wall clock), as its rows are."""
    now = services.outbox.wall()
    kept = format_duration(services.settings.retain_for or BODIES_KEPT)
    # Once a day: the look reads every row of the outbox (0.6 s on PostgreSQL, 1.5 s on SQLite
    # at 300,000 rows, when nothing is left to clear), and a day more of bodies costs nothing.
    with services.sessions.begin() as s:
        if not leads.claim_job_run(s, PRUNE_JOB, now.date(), now):
            return f"message bodies older than {kept}: cleared already on {now.date()}"
    cutoff = now - (services.settings.retain_for or BODIES_KEPT)
    done = and_(
        OutboxItem.kind == MESSAGE,
        OutboxItem.status != PENDING,
        OutboxItem.created_at < cutoff,
        OutboxItem.payload.is_not(None),
    )
    cleared = after = 0
    while True:
        # By id from where the last batch ended: each batch reads on, not past the cleared rows
        # again (a scan from the start each time made a first prune of 270k rows take minutes).
        with services.sessions.begin() as s:
            ids = list(
                s.scalars(
                    select(OutboxItem.id)
                    .where(OutboxItem.id > after, done, OutboxItem.lead_id.is_not(None))
                    .order_by(OutboxItem.id)
                    .limit(batch_size)
                )
            )
            if ids:
                s.execute(
                    update(OutboxItem)
                    .where(OutboxItem.id.in_(ids))
                    .values(payload=None)
                    .execution_options(synchronize_session=False)
                )
        cleared += len(ids)
        if len(ids) < batch_size:
            break
        after = ids[-1]
    while True:
        with services.sessions.begin() as s:
            # Locked: an erasure rewriting the same row must not be undone, nor undo this.
            rows = s.execute(
                select(OutboxItem.id, OutboxItem.payload)
                .where(done, OutboxItem.lead_id.is_(None), OutboxItem.payload.contains('"text"'))
                .order_by(OutboxItem.id)
                .limit(batch_size)
                .with_for_update()
            ).all()
            for row in rows:
                try:
                    stored = json.loads(row.payload)
                except ValueError:
                    stored = None
                declared = stored.get(IDS) if isinstance(stored, dict) else None
                named = declared if isinstance(declared, list) else named_ids(stored)
                s.execute(
                    update(OutboxItem)
                    .where(OutboxItem.id == row.id)
                    .values(payload=json.dumps({IDS: named}) if named else None)
                    .execution_options(synchronize_session=False)
                )
        cleared += len(rows)
        if len(rows) < batch_size:
            break
    with services.sessions.begin() as s:
        edits = s.execute(
            delete(OutboxItem)
            .where(
                OutboxItem.kind == EDIT,
                OutboxItem.status != PENDING,
                OutboxItem.created_at < cutoff,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
    if cleared or edits:
        log.info("pruned %d delivered messages' bodies and %d edits", cleared, edits or 0)
    return f"{cleared} message bodies older than {kept} cleared"


# --- erasure -----------------------------------------------------------------------------------


def check_address(email: str) -> str:
    """The normalised address, or ForgetError; checked before anything connects to Slack."""
    target = normalize_email(email or "")
    if not _is_email(target):
        # Not echoed: even a mistyped address is personal data on the operator's screen/logs.
        raise ForgetError("forget: that is not an email address — expected name@example.com")
    return target


def forget_person(services: Services, email: str) -> str:
    """Erase every lead of this address (case and spaces ignored), then blank their cards and
    the bot's messages about them (the claimer's DM carries the contact details), and rewrite
    the messages naming them among others (the digest: `rewrite_naming`).

    The leads go first, in one transaction, and only then is Slack edited: a card refresh still
    queued for a lead would otherwise put the details back on a card we had just blanked.
    """
    target = check_address(email)
    with services.sessions.begin() as s:
        rows = s.execute(
            select(Lead.id, Lead.card_channel, Lead.card_ts)
            .where(_email_key(s) == target)
            .order_by(Lead.id)
        ).all()
        ids = [row.id for row in rows]
        # Read before the delete takes the outbox rows, which are the only record of them.
        sent = [
            message
            for chunk in _chunks(ids, PURGE_BATCH)
            for message in s.execute(
                select(OutboxItem.lead_id, OutboxItem.channel, OutboxItem.result_ts)
                .where(
                    OutboxItem.lead_id.in_(chunk),
                    OutboxItem.kind == MESSAGE,
                    OutboxItem.status == SENT,
                    OutboxItem.result_ts.is_not(None),
                )
                .order_by(OutboxItem.id)
            )
        ]
        erased = [erase_leads(s, chunk) for chunk in _chunks(ids, PURGE_BATCH)]
    forgotten = sum(e.leads for e in erased)
    rewritten = sum(e.messages for e in erased)
    if ids:
        log.info("forget: deleted leads %s", ", ".join(str(i) for i in ids))
    if rewritten:
        services.outbox.kick()  # the digests' edits
    cards = [(row.id, row.card_channel, row.card_ts) for row in rows if row.card_ts]
    blanked = _blank(services, cards, "card")
    messages = _blank(services, [(m.lead_id, m.channel, m.result_ts) for m in sent], "message")
    return (
        f"forgot {forgotten} leads for that address; "
        f"{blanked} cards and {messages} messages blanked" + _rewritten_note(rewritten)
    )


def _blank(services: Services, posted: list[tuple[int, str | None, str]], what: str) -> int:
    """Replace each (lead id, channel, ts) message with the removal note; how many were."""
    blanked = 0
    dms: dict[str, str] = {}  # user id → DM id, opened once per person
    for lead_id, channel, ts in posted:
        if not channel:
            continue
        try:
            if channel[0] in "UW":
                # Rows sent by earlier versions name the user; Slack edits a DM only by its id.
                if channel not in dms:
                    dms[channel] = services.slack.dm_channel(channel)
                channel = dms[channel]
            services.slack.update(channel, ts, render.forgotten_card(lead_id))
        except DeliveryError as e:
            log.warning("forget: could not blank a %s of lead %s: %s", what, lead_id, e.code)
            continue
        blanked += 1
    return blanked


def _email_key(session: Session) -> ColumnElement[Any]:
    """`normalize_email(Lead.email)` computed by the database, so emails are never read back."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLite's lower() folds ASCII only, so JÖRG@… would not match jörg@…: give this
        # connection Python's own rule (registering it again is harmless).
        dbapi = session.connection().connection.driver_connection
        dbapi.create_function("leadbot_email_key", 1, _sql_email_key, deterministic=True)
        return func.leadbot_email_key(Lead.email)
    # PostgreSQL's lower() folds Unicode per the database's LC_CTYPE (C.UTF-8, en_US.UTF-8, …).
    return func.lower(func.replace(Lead.email, " ", ""))


def _sql_email_key(value: str | None) -> str | None:
    return None if value is None else normalize_email(value)
