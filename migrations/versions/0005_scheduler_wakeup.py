"""scheduler wake-up: NOTIFY when a notification is planned for later

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:00:00

The scheduler sleeps until the next due ``send_at`` (``workers/release.py``).
A row planned *earlier* than that moment (a new reminder, a reschedule, a
retry's backoff, a row the reaper put back) must wake it: this trigger sends
``NOTIFY vestnik_scheduler`` at commit for each transaction that leaves a row
pending with a ``send_at`` and not yet handed to delivery.  Rows sent at once
(``queued_at`` set on insert, the hot path) and a broadcast's held rows
(``send_at`` NULL) never notify.  PostgreSQL folds the notifications of one
transaction into one.  NOTIFY is a hint only: the scheduler polls at its tick
as well (a listener that was away misses it).  SQLite has no NOTIFY.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NOTIFY_CHANNEL = "vestnik_scheduler"  # workers/release.py listens on it
_FUNCTION = f"""
CREATE OR REPLACE FUNCTION vestnik_scheduler_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
_TRIGGER = """
CREATE TRIGGER notifications_planned_notify
AFTER INSERT OR UPDATE OF status, send_at, queued_at ON notifications
FOR EACH ROW
WHEN (NEW.status = 'pending' AND NEW.queued_at IS NULL AND NEW.send_at IS NOT NULL)
EXECUTE FUNCTION vestnik_scheduler_notify()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)
        op.execute(_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS notifications_planned_notify ON notifications")
        op.execute("DROP FUNCTION IF EXISTS vestnik_scheduler_notify()")
