"""A client's phone number (E.164): ``clients.phone``, written by ``vestnik_upsert_client``

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 04:50:00

A phone is identity, not a channel address: a booking system that knows a
phone can name the client by it (``webapp/webhooks.py``).  It is not unique
(a family may share one number); a look-up that finds two clients is refused.
``vestnik_upsert_client`` is 0017's function with ``phone`` merged like the
other fields: absent leaves it, ``null`` clears it, a value (already checked
against the registry's E.164 pattern) sets it.
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def _with_phone(upsert: str) -> str:
    """0017's function text with the phone written on insert and merged on update."""
    edits = [
        ("id, name, locale, timezone,", "id, name, phone, locale, timezone,"),
        ("client_key, coalesce(fields->>'name', ''),", "client_key, coalesce(fields->>'name', ''), fields->>'phone',"),
        ("locale = coalesce(fields->>'locale', c.locale),",
         "phone = CASE WHEN fields ? 'phone' THEN fields->>'phone' ELSE c.phone END,\n"
         "            locale = coalesce(fields->>'locale', c.locale),"),
    ]
    for old, new in edits:
        assert upsert.count(old) == 1, old
        upsert = upsert.replace(old, new)
    return upsert


def _previous() -> str:
    return importlib.import_module("vestnik.migrations.versions.0017_client_addresses")._UPSERT


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("phone", sa.String(length=16), nullable=True))
    op.create_index("ix_clients_phone", "clients", ["phone"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_with_phone(_previous()))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_previous())
    op.drop_index("ix_clients_phone", table_name="clients")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("phone")
