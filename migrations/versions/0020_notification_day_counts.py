"""notification_day_counts: the dashboard's per-day figures, kept by statement-level triggers

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30 05:00:00

The dashboard's charts (sent and failed per channel per day, the wait from due to sent, uncertain
deliveries) grouped 70,000 rows of the last 14 days at 2,000,000 rows: 110-240 ms in PostgreSQL per
view (docs/benchmarks.md, "The dashboard").  This table holds the same figures per UTC day of
``created_at``, channel, status and ``delivery_uncertain``.

On PostgreSQL three triggers ``FOR EACH STATEMENT`` with transition tables append, per statement
that inserts, updates or deletes notifications, one row of differences per key it changed (an update
that changes no key adds nothing).  The rows are written in the writer's transaction (committed or
rolled back with it) and only inserted, never updated, so concurrent writers neither wait on nor
deadlock with each other; ``shared/day_counts.fold`` sums them into one row per key (the scheduler's
reap tick).  The trigger is created and the table backfilled from the rows in one transaction, under
the trigger's lock on ``notifications``, so nothing is counted twice or missed.  SQLite: the table
stays empty and the dashboard groups the rows (small databases).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# One row's key and wait (seconds from due to sent; sent rows only).
_ROW = """(created_at AT TIME ZONE 'UTC')::date AS day, channel, status, delivery_uncertain AS uncertain,
           CASE WHEN status = 'sent' AND sent_at IS NOT NULL
                THEN EXTRACT(epoch FROM sent_at - coalesce(send_at, created_at))::float8 END AS wait"""
_INSERT = "INSERT INTO notification_day_counts (day, channel, status, uncertain, n, waited, wait_sum, wait_max)"
_FUNCTION = f"""
CREATE OR REPLACE FUNCTION vestnik_day_counts() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_INSERT}
        SELECT day, channel, status, uncertain, count(*), count(wait), coalesce(sum(wait), 0), max(wait)
        FROM (SELECT {_ROW} FROM vestnik_new) r GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'UPDATE' THEN
        {_INSERT}
        SELECT day, channel, status, uncertain, sum(sign), sum(sign * (wait IS NOT NULL)::int),
               coalesce(sum(sign * wait), 0), max(wait) FILTER (WHERE sign > 0)
        FROM (SELECT 1 AS sign, {_ROW} FROM vestnik_new
              UNION ALL SELECT -1, {_ROW} FROM vestnik_old) r
        GROUP BY 1, 2, 3, 4
        HAVING sum(sign) <> 0 OR sum(sign * (wait IS NOT NULL)::int) <> 0 OR coalesce(sum(sign * wait), 0) <> 0;
    ELSE
        {_INSERT}
        SELECT day, channel, status, uncertain, -count(*), -count(wait), -coalesce(sum(wait), 0), NULL
        FROM (SELECT {_ROW} FROM vestnik_old) r GROUP BY 1, 2, 3, 4;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
_TRIGGERS = {
    "notifications_day_counts_insert": "AFTER INSERT ON notifications REFERENCING NEW TABLE AS vestnik_new",
    "notifications_day_counts_update": "AFTER UPDATE ON notifications "
                                       "REFERENCING OLD TABLE AS vestnik_old NEW TABLE AS vestnik_new",
    "notifications_day_counts_delete": "AFTER DELETE ON notifications REFERENCING OLD TABLE AS vestnik_old",
}
_BACKFILL = f"""
{_INSERT}
SELECT day, channel, status, uncertain, count(*), count(wait), coalesce(sum(wait), 0), max(wait)
FROM (SELECT {_ROW} FROM notifications) r GROUP BY 1, 2, 3, 4
"""


def upgrade() -> None:
    op.create_table(
        "notification_day_counts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("uncertain", sa.Boolean(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("waited", sa.BigInteger(), nullable=False),
        sa.Column("wait_sum", sa.Float(), nullable=False),
        sa.Column("wait_max", sa.Float(), nullable=True),
    )
    op.create_index("ix_notification_day_counts_day", "notification_day_counts", ["day"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)
        for name, when in _TRIGGERS.items():  # takes notifications' SHARE ROW EXCLUSIVE lock until commit
            op.execute(f"CREATE TRIGGER {name} {when} FOR EACH STATEMENT EXECUTE FUNCTION vestnik_day_counts()")
        op.execute(_BACKFILL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in _TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON notifications")
        op.execute("DROP FUNCTION IF EXISTS vestnik_day_counts()")
    op.drop_index("ix_notification_day_counts_day", table_name="notification_day_counts")
    op.drop_table("notification_day_counts")
