"""notifications: indexes only where their queries look, so a status change writes fewer entries

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-30 08:30:00

Every status change of a notification (pending -> processing -> sent) is a non-HOT update:
``status`` is in the partial indexes' predicates, so PostgreSQL writes a new entry into every
index whose predicate the new row meets, and into every index without one.  Of the 18 indexes,
ten took an entry on every update.  Five of them serve rows most notifications are not:

- ``uq_notification_broadcast`` and ``uq_notification_broadcast_address`` (unique constraints)
  become unique indexes ``WHERE broadcast_id IS NOT NULL``: rows without a broadcast were never
  in conflict there (NULLs are distinct), and ``ON CONFLICT DO NOTHING`` without a target honours
  partial unique indexes too;
- ``ix_notifications_broadcast_status`` likewise (every query on it names a broadcast);
- ``ix_notifications_key`` ``WHERE key IS NOT NULL`` (cancel by key and the history's key filter
  name a key);
- ``ix_notifications_status_created`` ``WHERE status IN ('failed', 'canceled')``: the history's
  status filter and the dashboard's "failed in the last 7 days" read it for those; ``sent`` rows
  are most rows (the history walks ``ix_notifications_created``), and ``pending`` and
  ``processing`` rows have their own partial indexes (``ix_notifications_due``,
  ``ix_notifications_processing``).

``bench.delivery_cpu --pg-stats``: PostgreSQL CPU during delivery 0.22 -> 0.18 ms per message;
the history pages keep their plans (docs/benchmarks.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

BROADCAST = "broadcast_id IS NOT NULL"
KEYED = "key IS NOT NULL"
ENDED_UNSENT = "status IN ('failed', 'canceled')"


def _index(name: str, columns: list[str], where: str | None, unique: bool = False) -> None:
    kwargs = {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)} if where else {}
    op.create_index(name, "notifications", columns, unique=unique, **kwargs)


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_constraint("uq_notification_broadcast", type_="unique")
        batch.drop_constraint("uq_notification_broadcast_address", type_="unique")
    _index("uq_notification_broadcast", ["broadcast_id", "recipient_id", "channel", "step"], BROADCAST, unique=True)
    _index("uq_notification_broadcast_address", ["broadcast_id", "channel", "recipient_address", "step"], BROADCAST,
           unique=True)
    for name, columns, where in (
        ("ix_notifications_broadcast_status", ["broadcast_id", "status", "channel"], BROADCAST),
        ("ix_notifications_key", ["key"], KEYED),
        ("ix_notifications_status_created", ["status", "created_at"], ENDED_UNSENT),
    ):
        op.drop_index(name, table_name="notifications")
        _index(name, columns, where)


def downgrade() -> None:
    for name, columns in (
        ("ix_notifications_broadcast_status", ["broadcast_id", "status", "channel"]),
        ("ix_notifications_key", ["key"]),
        ("ix_notifications_status_created", ["status", "created_at"]),
    ):
        op.drop_index(name, table_name="notifications")
        _index(name, columns, None)
    op.drop_index("uq_notification_broadcast_address", table_name="notifications")
    op.drop_index("uq_notification_broadcast", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.create_unique_constraint("uq_notification_broadcast", ["broadcast_id", "recipient_id", "channel", "step"])
        batch.create_unique_constraint(
            "uq_notification_broadcast_address", ["broadcast_id", "channel", "recipient_address", "step"])
