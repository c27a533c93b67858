"""Leads: index each contact key together with submitted_at.

The duplicate lookup of every /lead asks for a contact's most recent lead within the window.
With the keys indexed alone, PostgreSQL without table statistics (a new table's first burst,
before autovacuum has analysed it) combined them with the submitted_at index and read every
lead of the window: 5 ms per /lead with 3,000 leads in it, growing with the window. With
(key, submitted_at) the lookup reads one index entry per key, with or without statistics.
They replace ix_leads_email_norm and ix_leads_phone_norm, which they cover.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from alembic import op

from migrations import online

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    online.create_index("ix_leads_email_submitted", "leads", ["email_norm", "submitted_at"])
    online.create_index("ix_leads_phone_submitted", "leads", ["phone_norm", "submitted_at"])
    online.drop_index("ix_leads_email_norm", "leads")
    online.drop_index("ix_leads_phone_norm", "leads")


def downgrade() -> None:
    op.create_index("ix_leads_email_norm", "leads", ["email_norm"])
    op.create_index("ix_leads_phone_norm", "leads", ["phone_norm"])
    op.drop_index("ix_leads_phone_submitted", table_name="leads")
    op.drop_index("ix_leads_email_submitted", table_name="leads")
