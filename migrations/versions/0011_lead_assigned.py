"""Leads: the Reassign that gave a lead to its owner, who made it and when.

After a manager handed a lead from one rep to another, the card said the new owner had claimed
it at the first rep's claim time, and `/lead mine` told them it had been theirs for days:
claimed_at stays the first claim's on purpose (the digest's claims per rep and time to claim
count it). `assigned_by` and `assigned_at` say what happened since: set by a Reassign, cleared
by a Release (bot.outcomes.owner_since reads them).

Leads reassigned before this get them from their history: the latest `reassigned` event to the
lead's owner now, if it came after the claim they hold the lead by (a lead released and claimed
again since is its claimer's, whoever it was once assigned to).

The columns are added without a default (no rewrite on PostgreSQL) and committed at once, as in
0010, so the table is not locked while the history is read; the backfill writes in short
transactions of its own, a range of event ids each.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

import json
from datetime import datetime

import sqlalchemy as sa
from alembic import op

from migrations import online
from models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BATCH = 10_000  # lead_events ids read at a time (see 0010)
LEADS_PER_COMMIT = 1_000

LEADS = sa.table(
    "leads",
    sa.column("id", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("owner_id", sa.String()),
    sa.column("claimed_at", UTCDateTime()),
    sa.column("assigned_at", UTCDateTime()),
    sa.column("assigned_by", sa.String()),
)
EVENTS = sa.table(
    "lead_events",
    sa.column("id", sa.Integer()),
    sa.column("lead_id", sa.Integer()),
    sa.column("at", UTCDateTime()),
    sa.column("actor", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("detail", sa.Text()),
)


def upgrade() -> None:
    # A re-run after a cut backfill finds the columns committed already (see 0010).
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("leads")}
    with op.batch_alter_table("leads") as batch:
        if "assigned_at" not in have:
            batch.add_column(sa.Column("assigned_at", UTCDateTime(), nullable=True))
        if "assigned_by" not in have:
            batch.add_column(sa.Column("assigned_by", sa.String(32), nullable=True))
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        with bind.engine.connect() as writer:
            _from_events(bind, writer)


def _from_events(bind: sa.Connection, writer: sa.Connection) -> None:
    """Each lead's latest `reassigned` event, batch by batch in id order (a later batch's
    overwrites an earlier one's), kept where it gave the lead to the owner it has now, after
    their claim."""
    last = bind.scalar(sa.select(sa.func.max(EVENTS.c.id))) or 0
    # The lead by its primary key alone, the rest checked in the SET: given owner_id and status
    # to match, PostgreSQL without statistics (a table just grown) scanned ix_leads_owner_status,
    # every lead of a busy rep, for each row.
    when = sa.bindparam("at", type_=UTCDateTime())
    holds = sa.and_(
        LEADS.c.status == "claimed",
        LEADS.c.owner_id == sa.bindparam("owner", type_=sa.String()),
        LEADS.c.claimed_at <= when,
    )
    update = (
        sa.update(LEADS)
        .where(LEADS.c.id == sa.bindparam("lead", type_=sa.Integer()))
        .values(
            assigned_at=sa.case((holds, when), else_=LEADS.c.assigned_at),
            assigned_by=sa.case(
                (holds, sa.bindparam("by", type_=sa.String())), else_=LEADS.c.assigned_by
            ),
        )
    )
    for start in range(0, last, BATCH):
        rows = bind.execute(
            sa.select(EVENTS.c.lead_id, EVENTS.c.at, EVENTS.c.actor, EVENTS.c.detail)
            .where(
                EVENTS.c.id > start,
                EVENTS.c.id <= start + BATCH,
                EVENTS.c.kind == "reassigned",
            )
            .order_by(EVENTS.c.id)
        ).all()
        latest: dict[int, tuple[datetime, str, str]] = {}
        for lead_id, at, actor, detail in rows:
            owner = json.loads(detail or "{}").get("owner")
            if isinstance(owner, str):
                latest[lead_id] = (at, actor, owner)
        changes = [
            {"lead": k, "at": at, "by": by, "owner": owner}
            for k, (at, by, owner) in sorted(latest.items())
        ]
        # A transaction holds its leads' row locks until it commits, and a claim or an outcome
        # on one of them waits (the app's lock_timeout is 2 s): a thousand leads each at
        # most, should someone have reassigned many at once (10,000 took 2.6 s on PostgreSQL).
        for i in range(0, len(changes), LEADS_PER_COMMIT):
            with writer.begin():
                writer.execute(update, changes[i : i + LEADS_PER_COMMIT])


def downgrade() -> None:
    online.drop_columns("leads", "assigned_at", "assigned_by")
