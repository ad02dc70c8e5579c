"""lesson_reminder: the lesson reminder event under the specification's name

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 01:30:00

The event was stored as ``lesson_scheduled``; the specification calls it
``lesson_reminder``.  Stored rows move to the new name (events, the history,
an admin's rule override) so filters and rules see one name; the old name
stays accepted at the entry points (``shared.events.ALIASES``, the trigger
``outbox_events_alias`` that ``vestnik db upgrade`` writes).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

OLD, NEW = "lesson_scheduled", "lesson_reminder"


def _rename(old: str, new: str) -> None:
    for table in ("outbox_events", "notifications"):
        op.execute(sa.text(f"UPDATE {table} SET event_type = :new WHERE event_type = :old").bindparams(old=old, new=new))
    # rule_overrides: event_type is the key; an override of the new name (none before this) would win
    op.execute(sa.text("UPDATE rule_overrides SET event_type = :new WHERE event_type = :old AND NOT EXISTS "
                       "(SELECT 1 FROM rule_overrides AS r WHERE r.event_type = :new)").bindparams(old=old, new=new))


def upgrade() -> None:
    _rename(OLD, NEW)


def downgrade() -> None:
    _rename(NEW, OLD)
