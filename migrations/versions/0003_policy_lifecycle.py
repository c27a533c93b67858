"""Policy and lifecycle: SLA due time, outcomes, follow-ups, duplicate detection.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from migrations import online
from models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (Only those not there yet: a run cut during an index build below leaves them committed.)
    online.add_columns(
        "leads",
        sa.Column("claim_due_at", UTCDateTime(), nullable=True),
        sa.Column("stage", sa.String(32), nullable=True),
        sa.Column("stage_at", UTCDateTime(), nullable=True),
        sa.Column("outcome_reason", sa.String(200), nullable=True),
        sa.Column("follow_up_at", UTCDateTime(), nullable=True),
        sa.Column("follow_up_misses", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("email_norm", sa.String(254), nullable=True),
        sa.Column("phone_norm", sa.String(40), nullable=True),
        sa.Column("duplicate_of_id", sa.Integer(), nullable=True),
    )
    online.create_index("ix_leads_status_follow_up", "leads", ["status", "follow_up_at"])
    online.create_index("ix_leads_email_norm", "leads", ["email_norm"])
    online.create_index("ix_leads_phone_norm", "leads", ["phone_norm"])
    online.create_index("ix_leads_owner_status", "leads", ["owner_id", "status"])
    # Leads stored before this revision get their normalised contact now, so duplicate
    # detection sees them too.
    op.execute(
        "UPDATE leads SET email_norm = lower(replace(email, ' ', '')) WHERE email IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_leads_owner_status", table_name="leads")
    op.drop_index("ix_leads_phone_norm", table_name="leads")
    op.drop_index("ix_leads_email_norm", table_name="leads")
    op.drop_index("ix_leads_status_follow_up", table_name="leads")
    online.drop_columns(
        "leads",
        "duplicate_of_id",
        "phone_norm",
        "email_norm",
        "follow_up_misses",
        "stage_at",
        "outcome_reason",
        "stage",
        "claim_due_at",
    )
