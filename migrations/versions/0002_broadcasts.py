"""broadcasts: broadcasts, their uploaded client lists, client groups and tags

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
HELD = "status = 'pending' AND send_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("template_code", sa.String(length=100), nullable=False),
        sa.Column("channels", Json, nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("targeting", Json, nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("initiator", sa.String(length=100), nullable=False),
        sa.Column("event_id", BigId, nullable=True),
        sa.Column("mode", sa.String(length=10), nullable=False),
        sa.Column("test_size", sa.Integer(), nullable=False),
        sa.Column("test_group", sa.String(length=200), nullable=True),
        sa.Column("stage_wait_s", sa.Integer(), nullable=False),
        sa.Column("max_failure_rate", sa.Float(), nullable=False),
        sa.Column("stage", sa.String(length=10), nullable=True),
        sa.Column("expand_cursor", BigId, nullable=False),
        sa.Column("expanded_clients", sa.Integer(), nullable=False),
        sa.Column("expand_done", sa.Boolean(), nullable=False),
        sa.Column("health", Json, nullable=True),
        sa.Column("planned_clients", sa.Integer(), nullable=True),
        sa.Column("planned_messages", sa.Integer(), nullable=True),
        sa.Column("planned_by_channel", Json, nullable=True),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("test_done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expanded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_broadcasts_status", "broadcasts", ["status"], unique=False)
    op.create_table(
        "broadcast_clients",
        sa.Column("broadcast_id", BigId, nullable=False),
        sa.Column("client_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(["broadcast_id"], ["broadcasts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("broadcast_id", "client_id"),
    )
    op.create_table(
        "client_groups",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("client_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("name", "client_id"),
    )
    op.create_index("ix_client_groups_client", "client_groups", ["client_id"], unique=False)
    op.create_table(
        "client_tags",
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.Column("client_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tag", "client_id"),
    )
    op.create_index("ix_client_tags_client", "client_tags", ["client_id"], unique=False)

    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("last_active_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_clients_last_active_at", ["last_active_at"], unique=False)

    op.drop_index("ix_notifications_broadcast", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.create_unique_constraint("uq_notification_broadcast", ["broadcast_id", "recipient_id", "channel", "step"])
        batch.create_unique_constraint(
            "uq_notification_broadcast_address", ["broadcast_id", "channel", "recipient_address", "step"]
        )
    op.create_index("ix_notifications_broadcast_status", "notifications", ["broadcast_id", "status", "channel"])
    op.create_index("ix_notifications_broadcast_held", "notifications", ["broadcast_id", "channel", "id"],
                    postgresql_where=sa.text(HELD), sqlite_where=sa.text(HELD))


def downgrade() -> None:
    op.drop_index("ix_notifications_broadcast_held", table_name="notifications",
                  postgresql_where=sa.text(HELD), sqlite_where=sa.text(HELD))
    op.drop_index("ix_notifications_broadcast_status", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_constraint("uq_notification_broadcast_address", type_="unique")
        batch.drop_constraint("uq_notification_broadcast", type_="unique")
    op.create_index("ix_notifications_broadcast", "notifications", ["broadcast_id"], unique=False)
    with op.batch_alter_table("clients") as batch:
        batch.drop_index("ix_clients_last_active_at")
        batch.drop_column("last_active_at")
    op.drop_index("ix_client_tags_client", table_name="client_tags")
    op.drop_table("client_tags")
    op.drop_index("ix_client_groups_client", table_name="client_groups")
    op.drop_table("client_groups")
    op.drop_table("broadcast_clients")
    op.drop_index("ix_broadcasts_status", table_name="broadcasts")
    op.drop_table("broadcasts")
