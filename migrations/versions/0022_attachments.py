"""Attachments from the admin: ``stored_files``, a rule step's attachment, what a notification carried

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30 05:10:00

``stored_files`` keeps the files admins upload (in the database: every web and
worker process on every host reads the same store; docs/attachments.md).
``rule_overrides.attachments`` names, per step, what a rule's messages carry;
``notifications.attachment`` records what a sent message carried, for the
history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "stored_files",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("mime_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("rule_overrides") as batch:
        batch.add_column(sa.Column("attachments", _JSON, nullable=False, server_default=sa.text("'{}'")))
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("attachment", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("attachment")
    with op.batch_alter_table("rule_overrides") as batch:
        batch.drop_column("attachments")
    op.drop_table("stored_files")
