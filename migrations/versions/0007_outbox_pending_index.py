"""Outbox: a partial index of the pending items, in id order.

Each delivery pass takes the oldest due items (ORDER BY id LIMIT 100). Once the table had
statistics, both databases answered it by walking the whole table in id order, the delivered
history first, since the statistics say pending rows are common enough to meet the limit soon:
15 ms (SQLite) and 25-30 ms (PostgreSQL) a pass with 200,000 delivered items, growing with the
history. Walking this index reads only what is pending. The queries spell out
`status = 'pending'` so that the planners can match the index's condition.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from alembic import op

from migrations import online

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    online.create_index("ix_outbox_pending", "outbox", ["id"], where="status = 'pending'")


def downgrade() -> None:
    op.drop_index("ix_outbox_pending", table_name="outbox")
