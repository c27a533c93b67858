"""Initial schema: leads, their event log, and job runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leads",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("phone", sa.String(40), nullable=True),
        sa.Column("company", sa.String(200), nullable=True),
        sa.Column("title", sa.String(200), nullable=True),
        sa.Column("priority", sa.String(32), nullable=False),
        sa.Column("event", sa.String(200), nullable=True),
        sa.Column("territory", sa.String(200), nullable=True),
        sa.Column("persona", sa.String(200), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("submitted_by", sa.String(32), nullable=False),
        sa.Column("submitted_at", UTCDateTime(), nullable=False),
        sa.Column("source_channel", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(32), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("card_channel", sa.String(32), nullable=True),
        sa.Column("card_ts", sa.String(32), nullable=True),
        sa.Column("card_posted_at", UTCDateTime(), nullable=True),
        sa.Column("card_error", sa.String(200), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("next_reminder_at", UTCDateTime(), nullable=True),
        sa.Column("escalated_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_leads_status_next_reminder", "leads", ["status", "next_reminder_at"])
    op.create_index("ix_leads_submitted_at", "leads", ["submitted_at"])
    op.create_index("ix_leads_claimed_at", "leads", ["claimed_at"])
    op.create_table(
        "lead_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "lead_id",
            sa.Integer(),
            sa.ForeignKey("leads.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_lead_events_lead_id", "lead_events", ["lead_id", "id"])
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job", sa.String(32), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("job", "due_on", name="uq_job_runs_job_due_on"),
    )


def downgrade() -> None:
    op.drop_table("job_runs")
    op.drop_index("ix_lead_events_lead_id", table_name="lead_events")
    op.drop_table("lead_events")
    op.drop_index("ix_leads_claimed_at", table_name="leads")
    op.drop_index("ix_leads_submitted_at", table_name="leads")
    op.drop_index("ix_leads_status_next_reminder", table_name="leads")
    op.drop_table("leads")
