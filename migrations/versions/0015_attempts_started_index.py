"""attempts by time: an index on delivery_attempts.started_at

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 02:30:00

The sends a channel made in its current window (the estimated end of a broadcast counts the
day's email quota used; the limiter seeds its long windows after Redis lost them) are read by
``started_at``; without the index each read scans every attempt ever made.
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_attempts_started", "delivery_attempts", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_attempts_started", table_name="delivery_attempts")
