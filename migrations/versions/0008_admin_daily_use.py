"""admin for daily use: scheduled broadcasts, quiet hours, reactions, admin names

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00

- ``broadcasts``: the schedule (``scheduled_at``, ``local_date``, ``local_time``), the time zones of
  the current expansion pass (``zones``) and progress samples for the rate and estimated end.
- ``broadcast_waves``: the moments a scheduled broadcast reaches the clients of each time zone.
- ``clients.quiet_hours_start_min`` / ``quiet_hours_end_min``: a client's own quiet hours.
- ``quiet_hours``: an admin's quiet hours per category (the defaults are in code).
- ``notification_reactions``: unsubscribes and button presses per message, for the reports.
- ``admin_users.name``: the person, as the audit log shows them.
- ``ix_notifications_broadcast_due``: a broadcast's handed-over rows that are due, so its feeder
  counts what is in flight without reading the rows that wait for quiet hours to end.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TS = sa.DateTime(timezone=True)
_DUE = sa.text("status = 'pending' AND send_at IS NOT NULL AND broadcast_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("scheduled_at", _TS, nullable=True))
        batch.add_column(sa.Column("local_date", sa.String(length=10), nullable=True))
        batch.add_column(sa.Column("local_time", sa.String(length=5), nullable=True))
        batch.add_column(sa.Column("zones", _JSON, nullable=True))
        batch.add_column(sa.Column("samples", _JSON, nullable=True))
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("quiet_hours_start_min", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("quiet_hours_end_min", sa.Integer(), nullable=True))
    with op.batch_alter_table("admin_users") as batch:
        batch.add_column(sa.Column("name", sa.String(length=200), nullable=False, server_default=""))
    op.create_table(
        "broadcast_waves",
        sa.Column("broadcast_id", _BIG, sa.ForeignKey("broadcasts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("send_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("broadcast_id", "zone"),
    )
    op.create_index("ix_broadcast_waves_due", "broadcast_waves", ["send_at"], unique=False)
    op.create_table(
        "quiet_hours",
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("start_min", sa.Integer(), nullable=False),
        sa.Column("end_min", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("category"),
    )
    op.create_table(
        "notification_reactions",
        sa.Column("id", _BIG, nullable=False),
        sa.Column("notification_id", _BIG, sa.ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("value", sa.String(length=100), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reactions_notification", "notification_reactions", ["notification_id"], unique=False)
    op.create_index("ix_reactions_created", "notification_reactions", ["created_at"], unique=False)
    op.create_index("ix_notifications_broadcast_due", "notifications", ["broadcast_id", "send_at"], unique=False,
                    postgresql_where=_DUE, sqlite_where=_DUE)


def downgrade() -> None:
    op.drop_index("ix_notifications_broadcast_due", table_name="notifications")
    op.drop_index("ix_reactions_created", table_name="notification_reactions")
    op.drop_index("ix_reactions_notification", table_name="notification_reactions")
    op.drop_table("notification_reactions")
    op.drop_table("quiet_hours")
    op.drop_index("ix_broadcast_waves_due", table_name="broadcast_waves")
    op.drop_table("broadcast_waves")
    with op.batch_alter_table("admin_users") as batch:
        batch.drop_column("name")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("quiet_hours_end_min")
        batch.drop_column("quiet_hours_start_min")
    with op.batch_alter_table("broadcasts") as batch:
        for column in ("samples", "zones", "local_time", "local_date", "scheduled_at"):
            batch.drop_column(column)
