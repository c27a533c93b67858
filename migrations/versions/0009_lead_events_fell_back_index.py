"""Lead events: a partial index of the cards Slack refused in full, by when.

The digest lists the cards that went out short in its period, whenever their lead was
submitted (a refresh or a repost of an older lead's card can go short too). lead_events had no
index on `at`, so finding a day's refusals read every event of the history. This index holds
only `card_fell_back` events: a few rows, and nothing for the other events' INSERTs to write.
The digest's query spells out `kind = 'card_fell_back'` so that both planners match it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op

from migrations import online

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    online.create_index(
        "ix_lead_events_fell_back", "lead_events", ["at"], where="kind = 'card_fell_back'"
    )


def downgrade() -> None:
    op.drop_index("ix_lead_events_fell_back", table_name="lead_events")
