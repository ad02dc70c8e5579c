"""delivery pump: the claim's index, per channel

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 00:00:00

A delivery pump claims the due pending rows of one channel, oldest ``send_at``
first (``workers/notifications.py``, ``claim_due``): a partial index on
``(channel, send_at, id)`` of pending rows makes that an index range scan that
stops after the batch, however many rows of other channels wait.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_notifications_channel_due", "notifications", ["channel", "send_at", "id"],
                    postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))


def downgrade() -> None:
    op.drop_index("ix_notifications_channel_due", table_name="notifications")
