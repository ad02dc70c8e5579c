"""groups and channels as recipients: the registry of chats an admin added

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 05:00:00

A post to a chat is a notification with no client (``recipient_id`` NULL) whose
``recipient_address`` is the chat's; ``chats`` says what the address is (title, kind, whether the
bot may post, which events post there) and whether it is still reachable.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "chats",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("locale", sa.String(10), nullable=False),
        sa.Column("bot_status", sa.String(20), nullable=False),
        sa.Column("can_post", sa.Boolean(), nullable=False),
        sa.Column("subscriptions", _JSON, nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unreachable_reason", sa.Text(), nullable=True),
        sa.Column("unreachable_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("channel", "address", name="uq_chats_channel_address"),
    )
    # The history's "Chat" filter: posts (and admins' tests) have no client; a small partial index.
    op.create_index("ix_notifications_chat_posts", "notifications", ["recipient_address", "created_at"],
                    postgresql_where=sa.text("recipient_id IS NULL"), sqlite_where=sa.text("recipient_id IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_notifications_chat_posts", table_name="notifications")
    op.drop_table("chats")
