"""Leads: when sales first qualified them, so a lead lost later still counts as qualified.

The funnel (`/lead report`, the digest) counted as *qualified* only the leads whose stage is
qualified or won now: a deal qualified and then lost, the commonest end of a real one, dropped
out. `qualified_at` is set by the UPDATE that records the first qualified (or won) stage and
never cleared. Leads already stored get it from their history: the earliest `stage` event to
qualified or won, or, for a lead at one of them with no such event, its stage_at.

The column is added without a default (no rewrite on PostgreSQL) and committed at once, so the
table is not locked while the history is read; the backfill runs in short transactions of its
own, a range of event ids each, that leave /lead and the cards writing in between. The funnel's
covering index gains the column: the new one is built CONCURRENTLY on PostgreSQL, then the old
one dropped, so the report stays an index-only scan throughout.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

import json
from datetime import datetime

import sqlalchemy as sa
from alembic import op

from migrations import online
from models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# As this revision knows them (bot/outcomes.py QUALIFYING may change; this history may not).
QUALIFYING = ("qualified", "won")
OLD_INDEX = "ix_leads_submitted_funnel"
NEW_INDEX = "ix_leads_submitted_funnel2"
FUNNEL = ["submitted_at", "event", "persona", "stage", "claimed_at", "outcome_reason"]
# lead_events ids (and leads) per transaction. A batch's UPDATE holds its leads' row locks until
# it commits, and a claim or outcome on one of them waits: at 50,000 a batch held them for up to
# 1.8 s on a busy 2-core machine with a million leads, near the app's 2 s lock_timeout.
BATCH = 10_000

LEADS = sa.table(
    "leads",
    sa.column("id", sa.Integer()),
    sa.column("stage", sa.String()),
    sa.column("stage_at", UTCDateTime()),
    sa.column("qualified_at", UTCDateTime()),
)
EVENTS = sa.table(
    "lead_events",
    sa.column("id", sa.Integer()),
    sa.column("lead_id", sa.Integer()),
    sa.column("at", UTCDateTime()),
    sa.column("kind", sa.String()),
    sa.column("detail", sa.Text()),
)


def upgrade() -> None:
    # A re-run after a cut backfill finds the column committed already (see below).
    if "qualified_at" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("leads")}:
        with op.batch_alter_table("leads") as batch:
            batch.add_column(sa.Column("qualified_at", UTCDateTime(), nullable=True))
    # Commits the column first: on PostgreSQL, ADD COLUMN's lock would otherwise be held, and
    # every write to leads wait, for the whole backfill. The backfill writes on a connection of
    # its own, a short transaction per batch (this one is in autocommit now, where each row's
    # UPDATE would be a commit of its own); it reads here, outside those transactions.
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        with bind.engine.connect() as writer:
            _from_events(bind, writer)
            _from_stage(bind, writer)
    online.create_index(NEW_INDEX, "leads", [*FUNNEL, "qualified_at"])
    online.drop_index(OLD_INDEX, "leads")


def _from_events(bind: sa.Connection, writer: sa.Connection) -> None:
    """The earliest `stage` event to a qualifying stage, per lead. The LIKE is a portable first
    sieve on the detail's JSON text (as bot.leads.event_row writes it: sorted keys, ": "); the
    stage itself is read by json.loads, so a note that quotes a stage does not count."""
    sieve = sa.or_(*(EVENTS.c.detail.like(f'%"stage": "{stage}"%') for stage in QUALIFYING))
    last = bind.scalar(sa.select(sa.func.max(EVENTS.c.id))) or 0
    update = (
        sa.update(LEADS)
        .where(
            LEADS.c.id == sa.bindparam("lead"),
            sa.or_(LEADS.c.qualified_at.is_(None), LEADS.c.qualified_at > sa.bindparam("at")),
        )
        .values(qualified_at=sa.bindparam("at"))
    )
    for start in range(0, last, BATCH):
        rows = bind.execute(
            sa.select(EVENTS.c.lead_id, EVENTS.c.at, EVENTS.c.detail).where(
                EVENTS.c.id > start,
                EVENTS.c.id <= start + BATCH,
                EVENTS.c.kind == "stage",
                sieve,
            )
        ).all()
        first: dict[int, datetime] = {}
        for lead_id, at, detail in rows:
            if json.loads(detail).get("stage") in QUALIFYING and (
                lead_id not in first or at < first[lead_id]
            ):
                first[lead_id] = at
        if first:
            # A lead's earliest across batches wins by the condition on qualified_at (which
            # also makes a re-run change nothing).
            with writer.begin():
                writer.execute(update, [{"lead": k, "at": v} for k, v in sorted(first.items())])


def _from_stage(bind: sa.Connection, writer: sa.Connection) -> None:
    """Leads at a qualifying stage with no event saying so (history from before events were
    kept): qualified when their stage was set, as far as anyone knows."""
    last = bind.scalar(sa.select(sa.func.max(LEADS.c.id))) or 0
    for start in range(0, last, BATCH):
        with writer.begin():
            writer.execute(
                sa.update(LEADS)
                .where(
                    LEADS.c.id > start,
                    LEADS.c.id <= start + BATCH,
                    LEADS.c.stage.in_(QUALIFYING),
                    LEADS.c.qualified_at.is_(None),
                )
                .values(qualified_at=LEADS.c.stage_at)
            )


def downgrade() -> None:
    online.create_index(OLD_INDEX, "leads", FUNNEL)
    op.drop_index(NEW_INDEX, table_name="leads")
    online.drop_columns("leads", "qualified_at")
