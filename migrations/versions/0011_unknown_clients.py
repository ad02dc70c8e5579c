"""outbox_events.unknown_clients: the recipients Vestnik did not know when it handled the event

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 09:00:00

The admin's dashboard and ``/metrics`` count events that named unknown
clients (a partial index keeps that count cheap); the event's page lists them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_SOME = sa.text("unknown_clients IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("outbox_events") as batch:
        batch.add_column(sa.Column("unknown_clients", _JSON, nullable=True))
    op.create_index("ix_outbox_unknown_clients", "outbox_events", ["processed_at"], unique=False,
                    postgresql_where=_SOME, sqlite_where=_SOME)


def downgrade() -> None:
    op.drop_index("ix_outbox_unknown_clients", table_name="outbox_events")
    sqlite = op.get_bind().dialect.name == "sqlite"
    pending = sa.text("status = 'pending'")
    if sqlite:  # SQLite rebuilds the table to drop a column: re-declare its partial index after the copy
        op.drop_index("ix_outbox_unpublished", table_name="outbox_events")
    with op.batch_alter_table("outbox_events") as batch:
        batch.drop_column("unknown_clients")
    if sqlite:
        op.create_index("ix_outbox_unpublished", "outbox_events", ["id"], unique=False, postgresql_where=pending,
                        sqlite_where=pending)
