"""Leads: the Slack request each was stored from, unique.

A `/lead` (or the lead form's submission) that reaches a second process behind the same load
balancer (a proxy retrying the POST, a captured request replayed inside Slack's 5 minutes) was
stored again, as a second lead marked as a possible duplicate, with a second card. The lead now
keeps its request's key (the slash command's trigger_id, the form's view id and hash), and the
unique index makes the second store write nothing: its INSERT … ON CONFLICT DO NOTHING returns
no row, and the person is answered with the first lead. Leads stored before this, or made
otherwise (demo data, copies), have none: NULLs never conflict.

The column is added without a default (no rewrite of the table on PostgreSQL); the index is
built CONCURRENTLY there, so /lead goes on storing while it builds.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from migrations import online

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (Unless there: a run cut during the index build below leaves it committed.)
    online.add_columns("leads", sa.Column("request_key", sa.String(100), nullable=True))
    online.create_index("ix_leads_request_key", "leads", ["request_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_leads_request_key", table_name="leads")
    online.drop_columns("leads", "request_key")
