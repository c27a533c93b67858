"""Retention and erasure: the `purge` job (RETAIN_FOR) and `leadbot forget EMAIL` (GDPR).

Both delete whole leads: the lead row, its event log and its outbox rows (queued messages about
it, which may carry its details, must never go out afterwards). Contact details never reach a
log here: only lead ids and counts are logged, and only ids are read back from the database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from bot import render
from bot.delivery import DeliveryError
from bot.outbox import MESSAGE
from bot.parsing import _is_email, normalize_email
from bot.services import Services
from bot.settings import SettingsError, format_duration
from models import SENT, Lead, LeadEvent, OutboxItem

log = logging.getLogger(__name__)

PURGE_BATCH = 500  # leads per transaction: a big purge never holds a long lock


class ForgetError(SettingsError):
    """The address given to `forget` is unusable; str() is one line (the CLI exits 2 on it)."""


# --- deleting leads ----------------------------------------------------------------------------


def delete_leads(session: Session, lead_ids: Sequence[int]) -> int:
    """Delete these leads with their events and outbox rows; returns how many leads went.

    Children are deleted explicitly (by their lead_id indexes) rather than left to ON DELETE
    CASCADE, so nothing depends on SQLite's foreign_keys pragma being on for this connection.
    """
    if not lead_ids:
        return 0
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
    return int(result.rowcount or 0)


def _chunks(ids: Sequence[int], size: int) -> list[Sequence[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


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
    purged = 0
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
            deleted = delete_leads(s, ids)
        purged += deleted
        log.debug("purge: deleted %d leads (ids %d..%d)", deleted, min(ids), max(ids))
    summary = f"purged {purged} leads older than {format_duration(retain)}"
    if purged:
        log.info("%s", summary)
    return summary


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
    the bot's messages about them (the claimer's DM carries the contact details).

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
        forgotten = sum(delete_leads(s, chunk) for chunk in _chunks(ids, PURGE_BATCH))
    if ids:
        log.info("forget: deleted leads %s", ", ".join(str(i) for i in ids))
    cards = [(row.id, row.card_channel, row.card_ts) for row in rows if row.card_ts]
    blanked = _blank(services, cards, "card")
    messages = _blank(services, [(m.lead_id, m.channel, m.result_ts) for m in sent], "message")
    return (
        f"forgot {forgotten} leads for that address; "
        f"{blanked} cards and {messages} messages blanked"
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
