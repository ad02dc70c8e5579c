"""client profile: one-time client tokens, sign-in throttle, chat id index

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-24 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "client_tokens",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("client_id", _BIG_ID, nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_client_tokens_client", "client_tokens", ["client_id", "purpose"], unique=False)
    op.create_index("ix_client_tokens_expires", "client_tokens", ["expires_at"], unique=False)
    op.create_table(
        "client_sign_in_attempts",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_client_sign_in_attempts_scope", "client_sign_in_attempts", ["scope", "created_at"],
                    unique=False)
    op.create_index("ix_clients_telegram_chat_id", "clients", ["telegram_chat_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_clients_telegram_chat_id", table_name="clients")
    op.drop_index("ix_client_sign_in_attempts_scope", table_name="client_sign_in_attempts")
    op.drop_table("client_sign_in_attempts")
    op.drop_index("ix_client_tokens_expires", table_name="client_tokens")
    op.drop_index("ix_client_tokens_client", table_name="client_tokens")
    op.drop_table("client_tokens")
