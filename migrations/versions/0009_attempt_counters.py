"""attempt counters: one atomic row per scope replaces counting in Python

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 10:00:00

Sign-in throttles counted rows of ``client_sign_in_attempts`` and the admin
lockout added to ``admin_users.failed_logins`` in Python, so parallel
requests read the same count and the limits leaked (24 parallel wrong
passwords left the counter at 4).  ``attempt_counters`` holds one row per
scope, bumped by a single ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``
(``shared/counters.py``); the old table and columns go.  Counts in flight
at the upgrade are forgotten (at worst an hour's throttle restarts).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "attempt_counters",
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )
    op.create_index("ix_attempt_counters_window", "attempt_counters", ["window_ends_at"], unique=False)
    op.drop_index("ix_client_sign_in_attempts_scope", table_name="client_sign_in_attempts")
    op.drop_table("client_sign_in_attempts")
    with op.batch_alter_table("admin_users") as batch:
        batch.drop_column("failed_logins")
        batch.drop_column("locked_until")


def downgrade() -> None:
    with op.batch_alter_table("admin_users") as batch:
        batch.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "client_sign_in_attempts",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_client_sign_in_attempts_scope", "client_sign_in_attempts", ["scope", "created_at"],
                    unique=False)
    op.drop_index("ix_attempt_counters_window", table_name="attempt_counters")
    op.drop_table("attempt_counters")
