"""inline buttons an admin defines on a Telegram template, and who pressed one

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 02:30:00

The editor's text (one row per line, ``text -> https://...`` or ``text -> callback:data``,
``shared/buttons.py``); NULL or empty: no buttons.  ``notification_reactions.actor``: the Telegram user
who pressed a button (a press counts once per person and button, in a group too).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notification_templates") as batch:
        batch.add_column(sa.Column("buttons", sa.Text(), nullable=True))
    with op.batch_alter_table("notification_reactions") as batch:
        batch.add_column(sa.Column("actor", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notification_reactions") as batch:
        batch.drop_column("actor")
    with op.batch_alter_table("notification_templates") as batch:
        batch.drop_column("buttons")
