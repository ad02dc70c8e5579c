"""admin_users.locale: the language each admin reads the admin in (ru or en)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 02:00:00

NULL until the admin picks one: the browser's Accept-Language decides then
(``webapp/admin/i18n.py``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("admin_users") as batch:
        batch.add_column(sa.Column("locale", sa.String(length=10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("admin_users") as batch:
        batch.drop_column("locale")
