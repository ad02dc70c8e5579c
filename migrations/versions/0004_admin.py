"""admin: test sends to an admin, history indexes

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-24 06:40:00

- ``admin_users.telegram_chat_id``: where "send test to me" goes on Telegram.
- ``notifications.recipient_id`` nullable: a test send is recorded as a
  notification with the admin as initiator and no client.
- Indexes for the admin history's filters, newest first: by event type, and the
  few rows an admin started (a partial index; most rows are 'system').
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ADMIN_ROWS = sa.text("initiator <> 'system'")
# SQLite rebuilds the table to change a column; its partial indexes are re-declared
# after the copy so their WHERE clauses survive whatever reflection keeps.
_PARTIAL = (
    ("ix_notifications_due", ["send_at"], sa.text("status = 'pending'")),
    ("ix_notifications_processing", ["locked_until"], sa.text("status = 'processing'")),
)


def _recipient_nullable(nullable: bool) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for name, _columns, _where in _PARTIAL:
            op.drop_index(name, table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("recipient_id", existing_type=_BIG, nullable=nullable)
    if sqlite:
        for name, columns, where in _PARTIAL:
            op.create_index(name, "notifications", columns, unique=False, postgresql_where=where, sqlite_where=where)


def upgrade() -> None:
    with op.batch_alter_table("admin_users") as batch:
        batch.add_column(sa.Column("telegram_chat_id", sa.String(length=64), nullable=True))
    _recipient_nullable(True)
    op.create_index("ix_notifications_event_created", "notifications", ["event_type", "created_at"], unique=False)
    op.create_index("ix_notifications_by_admin", "notifications", ["created_at"], unique=False,
                    postgresql_where=_ADMIN_ROWS, sqlite_where=_ADMIN_ROWS)


def downgrade() -> None:
    op.drop_index("ix_notifications_by_admin", table_name="notifications")
    op.drop_index("ix_notifications_event_created", table_name="notifications")
    op.execute("DELETE FROM notifications WHERE recipient_id IS NULL")
    _recipient_nullable(False)
    with op.batch_alter_table("admin_users") as batch:
        batch.drop_column("telegram_chat_id")
