"""Duplicate leads: the same person submitted again within DUPLICATE_WINDOW.

A lead whose normalised email or phone matches an earlier lead of the same workspace submitted
within the window is still stored (a second conversation can be worth having), but marked with
`duplicate_of_id` = the most recent earlier match. Its card and the submitter's receipt link the
earlier lead and name its owner; an owner still working the earlier lead is told by DM.

Race: the lookup sees committed rows only, so two identical leads submitted at the same instant
may both go unmarked. That is acceptable: the mark is a hint, a missed one costs a little double
work and never a lead, and a lock here would make every submission wait on the others.

Contact details stay private: cards, receipts and DMs say *what* matched (email, phone), never
the value, and all user text goes through `render.esc`.
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from bot import leads, render
from bot.outcomes import CLOSING
from models import CLAIMED, Lead

log = logging.getLogger(__name__)

# Outcomes after which nobody is working the lead any more: its owner need not hear of repeats.
# One list, owned by the outcomes core.
CLOSED_STAGES = CLOSING
# Slack's own permalinks look like this; anything else is not put inside <url|text> markup.
_SAFE_URL = re.compile(r"^https?://[^\s<>|]+$")


def find_earlier(
    session: Session,
    *,
    team_id: str,
    email_norm: str | None,
    phone_norm: str | None,
    since: datetime,
    until: datetime,
) -> Lead | None:
    """The most recent lead of `team_id` submitted in [since, until] with the same email or
    phone, or None. Equality on the indexed email_norm / phone_norm columns only, so the
    database reads the few matching rows, never the window's history."""
    if not email_norm and not phone_norm:
        return None  # nothing to compare: a lead without contact matches nothing
    query = _find_earlier(bool(email_norm), bool(phone_norm))
    params = {"team_id": team_id, "since": since, "until": until}
    params |= {"email_norm": email_norm, "phone_norm": phone_norm}
    return session.scalars(query, params).first()


@functools.cache
def _find_earlier(by_email: bool, by_phone: bool) -> Any:
    """The lookup, built once per shape (SQLAlchemy then skips its construction per request).

    Each key gets its own subquery for its most recent match, read backwards from the
    (key, submitted_at) index: one index entry whatever the history, and the plan needs no
    table statistics. With `email OR phone` in one WHERE, PostgreSQL without statistics (a new
    table's first burst; autovacuum not yet run) read every lead of the window instead: 5 ms
    per /lead with 3,000 leads in it, and growing.
    """
    latest = [q.scalar_subquery() for q in _latest_by_key(by_email, by_phone)]
    return (
        select(Lead)
        .where(Lead.id.in_(latest))
        .order_by(Lead.submitted_at.desc(), Lead.id.desc())
        .limit(1)
    )


def earlier_exists(by_email: bool, by_phone: bool) -> ColumnElement[bool]:
    """True where `find_earlier` (same parameters) would find a lead: for a statement that
    stores a new person's lead in the same round trip as the lookup (bot.flows)."""
    return or_(*(q.exists() for q in _latest_by_key(by_email, by_phone)))


def _latest_by_key(by_email: bool, by_phone: bool) -> list[Select[Any]]:
    """Per contact key, the id of its most recent lead in the window (at most one row)."""
    latest = []
    for wanted, column, key in (
        (by_email, Lead.email_norm, "email_norm"),
        (by_phone, Lead.phone_norm, "phone_norm"),
    ):
        if wanted:
            latest.append(
                select(Lead.id)
                .where(
                    column == bindparam(key),
                    Lead.submitted_at >= bindparam("since"),
                    Lead.submitted_at <= bindparam("until"),
                    Lead.team_id == bindparam("team_id"),
                )
                .order_by(Lead.submitted_at.desc(), Lead.id.desc())
                .limit(1)
            )
    return latest


def earlier_of(conn: Session | Connection, lead: Lead) -> Lead | None:
    """The lead this one repeats, or None (not a duplicate, or the earlier one was deleted)."""
    if lead.duplicate_of_id is None:
        return None
    return leads.read_lead(conn, lead.duplicate_of_id, lead.team_id)


def matched_on(lead: Lead, earlier: Lead) -> str:
    """Which contact matched, in words: never the value itself."""
    return matched_on_keys(lead.email_norm, lead.phone_norm, earlier)


def matched_on_keys(email_norm: str | None, phone_norm: str | None, earlier: Lead | None) -> str:
    same = []
    if earlier is not None and email_norm and email_norm == earlier.email_norm:
        same.append("email")
    if earlier is not None and phone_norm and phone_norm == earlier.phone_norm:
        same.append("phone")
    return " and ".join(same) or "contact"


def is_open(lead: Lead) -> bool:
    """Claimed and not closed: someone is working it now."""
    return lead.status == CLAIMED and bool(lead.owner_id) and lead.stage not in CLOSED_STAGES


# --- rendering (pure) --------------------------------------------------------------------------


def link(lead: Lead) -> str:
    """The lead's card when its permalink is known, else just `#id`."""
    url = lead.card_permalink
    if url and _SAFE_URL.match(url):
        return f"<{url}|lead #{lead.id}>"
    return f"lead #{lead.id}"


def _owner(earlier: Lead) -> str:
    if earlier.status == CLAIMED and earlier.owner_id:
        closed = (
            f", closed as {render.esc(earlier.stage)}" if earlier.stage in CLOSED_STAGES else ""
        )
        return f"owned by {render.mention(earlier.owner_id)}{closed}"
    return "still unclaimed"


def note(lead: Lead, earlier: Lead) -> str:
    """One mrkdwn line for the card and the receipt: which lead, who has it."""
    return (
        f"⚠️ *Possible duplicate:* same {matched_on(lead, earlier)} as {link(earlier)}, "
        f"submitted {render.slack_date(earlier.submitted_at, '{date_short_pretty}')} — "
        f"{_owner(earlier)}."
    )


def card_note(conn: Session | Connection, lead: Lead) -> str | None:
    """The card's duplicate line, from the earlier lead's state now (called at delivery)."""
    earlier = earlier_of(conn, lead)
    return note(lead, earlier) if earlier is not None else None


def receipt_note(lead: Lead, earlier: Lead | None) -> str | None:
    """The submitter's receipt line for a repeat of `earlier`, or None."""
    if earlier is None:
        return None
    return f"{note(lead, earlier)} It is saved anyway; its card says so too."


def owner_dm(lead: Lead, earlier: Lead, card_channel: str) -> tuple[str, render.Message] | None:
    """(user, message) for the owner of an open earlier lead, or None when nobody need hear.

    Names the new lead as its public card does (name, company, event) and says what matched,
    never the contact values: the owner has the earlier lead's details already.
    """
    if not is_open(earlier) or earlier.owner_id is None:
        return None
    if earlier.owner_id == lead.submitted_by:
        return None  # they submitted it themselves, and their receipt says so
    where = render.channel_mention(card_channel)
    event = f" from {render.inline(lead.event, 100)}" if lead.event else ""
    text = (
        f"👀 {render.mention(lead.submitted_by)} just submitted lead #{lead.id} "
        f"{render.lead_label(lead)}{event} with the same {matched_on(lead, earlier)} as your "
        f"lead {link(earlier)} {render.lead_label(earlier)}. Its card in {where} is marked as a "
        "possible duplicate: claim it, or tell the channel you already have them."
    )
    return earlier.owner_id, render.Message(text=text)
