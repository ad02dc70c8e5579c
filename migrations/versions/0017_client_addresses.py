"""Addresses per client and channel: ``client_addresses`` replaces the per-channel client columns

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 01:40:00

A client had one column per channel (``email``, ``telegram_chat_id``, their
``*_unreachable_reason`` and ``notifications_*_enabled``), so a new channel
meant a migration and edits in every reader.  Now one row per client and
channel holds the address, the client's switch, whether the address was
proven and whether a provider declared it dead.  The old columns' data is
copied and the columns dropped (the downgrade copies back what those columns
can hold).  ``vestnik_upsert_client`` is rewritten to write the rows; it maps
the record's fields to channels with the ``address_fields`` and
``switch_fields`` documents ``vestnik db upgrade`` stores in
``vestnik_registry`` (``shared/addresses.py``), so a new channel needs no new
SQL either.
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: the old columns, per channel: (address, switch, unreachable reason)
_OLD = {"email": ("email", "notifications_email_enabled", "email_unreachable_reason"),
        "telegram": ("telegram_chat_id", "notifications_telegram_enabled", "telegram_unreachable_reason")}
#: what the registry documents say until ``db upgrade`` writes them (the fields as of this migration)
_FALLBACK_ADDRESS_FIELDS = '{"email": "email", "telegram_chat_id": "telegram"}'
_FALLBACK_SWITCH_FIELDS = '{"email_enabled": "email", "telegram_enabled": "telegram"}'

_UPSERT = """
CREATE OR REPLACE FUNCTION vestnik_upsert_client(client_id text, fields jsonb DEFAULT '{}'::jsonb) RETURNS text
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    problems text[] := '{}';
    defaults jsonb;
    client_key bigint;
    created boolean := false;
    field text;
    chan text;
BEGIN
    IF client_id IS NULL THEN
        problems := problems || 'id: required'::text;
    ELSE
        problems := problems || vestnik_json_problems(
            (SELECT r.document FROM vestnik_registry AS r WHERE r.name = 'client_id'), to_jsonb(client_id), 'id');
    END IF;
    IF fields IS NULL OR jsonb_typeof(fields) <> 'object' THEN
        problems := problems || 'fields: must be an object'::text;
    ELSE
        problems := problems || vestnik_json_problems(
            (SELECT r.document FROM vestnik_registry AS r WHERE r.name = 'client'), fields, '');
    END IF;
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid client %L: %s', client_id, array_to_string(problems, '; ')),
            DETAIL = array_to_string(problems, E'\\n');
    END IF;
    client_key := vestnik_client_key(client_id);
    SELECT r.document INTO defaults FROM vestnik_registry AS r WHERE r.name = 'defaults';
    INSERT INTO clients AS c (
        id, name, locale, timezone, allow_service_notifications, allow_marketing_notifications, last_active_at,
        created_at, updated_at)
    VALUES (
        client_key, coalesce(fields->>'name', ''),
        coalesce(fields->>'locale', defaults->>'locale', 'ru'), coalesce(fields->>'timezone', defaults->>'timezone',
        'Europe/Moscow'), coalesce((fields->>'allow_service')::boolean, true),
        coalesce((fields->>'allow_marketing')::boolean, false), (fields->>'last_active_at')::timestamptz,
        now(), now())
    ON CONFLICT (id) DO NOTHING
    RETURNING true INTO created;
    IF NOT coalesce(created, false) THEN
        -- An absent field is never changed: the choices a client made in the profile stay.
        UPDATE clients AS c SET
            name = CASE WHEN fields ? 'name' THEN fields->>'name' ELSE c.name END,
            locale = coalesce(fields->>'locale', c.locale),
            timezone = coalesce(fields->>'timezone', c.timezone),
            allow_service_notifications = coalesce((fields->>'allow_service')::boolean, c.allow_service_notifications),
            allow_marketing_notifications = coalesce((fields->>'allow_marketing')::boolean,
                                                     c.allow_marketing_notifications),
            last_active_at = CASE WHEN fields ? 'last_active_at' THEN (fields->>'last_active_at')::timestamptz
                                  ELSE c.last_active_at END,
            forgotten_at = NULL,
            updated_at = now()
        WHERE c.id = client_key;
    END IF;
    -- Addresses: a given one is set (null or blank removes it); a changed one gets a fresh chance.
    FOR field, chan IN
        SELECT d.key, d.value #>> '{}' FROM jsonb_each(coalesce(
            (SELECT r.document FROM vestnik_registry AS r WHERE r.name = 'address_fields'),
            'ADDRESS_FIELDS'::jsonb)) AS d
    LOOP
        IF fields ? field THEN
            INSERT INTO client_addresses AS a (client_id, channel, address, enabled, created_at, updated_at)
            VALUES (client_key, chan, nullif(btrim(fields->>field), ''), true, now(), now())
            ON CONFLICT (client_id, channel) DO UPDATE SET
                address = EXCLUDED.address,
                unreachable_reason = CASE WHEN EXCLUDED.address IS DISTINCT FROM a.address THEN NULL
                                          ELSE a.unreachable_reason END,
                unreachable_at = CASE WHEN EXCLUDED.address IS DISTINCT FROM a.address THEN NULL
                                      ELSE a.unreachable_at END,
                verified_at = CASE WHEN EXCLUDED.address IS DISTINCT FROM a.address THEN NULL
                                   ELSE a.verified_at END,
                updated_at = CASE WHEN EXCLUDED.address IS DISTINCT FROM a.address THEN now()
                                  ELSE a.updated_at END;
        END IF;
    END LOOP;
    FOR field, chan IN
        SELECT d.key, d.value #>> '{}' FROM jsonb_each(coalesce(
            (SELECT r.document FROM vestnik_registry AS r WHERE r.name = 'switch_fields'),
            'SWITCH_FIELDS'::jsonb)) AS d
    LOOP
        IF fields ? field AND (fields->>field) IS NOT NULL THEN
            INSERT INTO client_addresses AS a (client_id, channel, enabled, created_at, updated_at)
            VALUES (client_key, chan, (fields->>field)::boolean, now(), now())
            ON CONFLICT (client_id, channel) DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now()
            WHERE a.enabled IS DISTINCT FROM EXCLUDED.enabled;
        END IF;
    END LOOP;
    IF fields ? 'groups' THEN
        DELETE FROM client_groups AS g WHERE g.client_id = client_key;
        INSERT INTO client_groups (name, client_id)
        SELECT DISTINCT btrim(n), client_key FROM jsonb_array_elements_text(fields->'groups') AS t(n);
    END IF;
    IF fields ? 'tags' THEN
        DELETE FROM client_tags AS g WHERE g.client_id = client_key;
        INSERT INTO client_tags (tag, client_id)
        SELECT DISTINCT btrim(n), client_key FROM jsonb_array_elements_text(fields->'tags') AS t(n);
    END IF;
    RETURN CASE WHEN coalesce(created, false) THEN 'created' ELSE 'updated' END;
END
$$
""".replace("'ADDRESS_FIELDS'", f"'{_FALLBACK_ADDRESS_FIELDS}'").replace("'SWITCH_FIELDS'", f"'{_FALLBACK_SWITCH_FIELDS}'")


def upgrade() -> None:
    op.create_table(
        "client_addresses",
        sa.Column("client_id", _BIG_ID, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=2048), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unreachable_reason", sa.Text(), nullable=True),
        sa.Column("unreachable_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("client_id", "channel"),
    )
    op.create_index("ix_client_addresses_channel_address", "client_addresses", ["channel", "address"])
    # One row per client and channel that has anything to keep: an address, a switch turned off, a mark.
    for channel, (address, switch, reason) in _OLD.items():
        op.execute(sa.text(
            f"INSERT INTO client_addresses (client_id, channel, address, enabled, unreachable_reason, "
            f"unreachable_at, created_at, updated_at) "
            f"SELECT id, :channel, NULLIF(TRIM({address}), ''), {switch}, {reason}, "
            f"CASE WHEN {reason} IS NULL THEN NULL ELSE updated_at END, created_at, updated_at FROM clients "
            f"WHERE NULLIF(TRIM({address}), '') IS NOT NULL OR NOT {switch} OR {reason} IS NOT NULL"
        ).bindparams(channel=channel))
    op.drop_index("ix_clients_telegram_chat_id", table_name="clients")
    with op.batch_alter_table("clients") as batch:
        for columns in _OLD.values():
            for column in columns:
                batch.drop_column(column)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_UPSERT)


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("email", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("telegram_chat_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("notifications_telegram_enabled", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
        batch.add_column(sa.Column("notifications_email_enabled", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
        batch.add_column(sa.Column("telegram_unreachable_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("email_unreachable_reason", sa.Text(), nullable=True))
    for channel, (address, switch, reason) in _OLD.items():
        width = 320 if channel == "email" else 64
        op.execute(sa.text(
            f"UPDATE clients SET {address} = (SELECT substr(a.address, 1, {width}) FROM client_addresses a "
            f"WHERE a.client_id = clients.id AND a.channel = :channel), "
            f"{switch} = COALESCE((SELECT a.enabled FROM client_addresses a "
            f"WHERE a.client_id = clients.id AND a.channel = :channel), {switch}), "
            f"{reason} = (SELECT a.unreachable_reason FROM client_addresses a "
            f"WHERE a.client_id = clients.id AND a.channel = :channel)"
        ).bindparams(channel=channel))
    op.create_index("ix_clients_telegram_chat_id", "clients", ["telegram_chat_id"], unique=False)
    op.drop_index("ix_client_addresses_channel_address", table_name="client_addresses")
    op.drop_table("client_addresses")
    if op.get_bind().dialect.name == "postgresql":
        previous = importlib.import_module("vestnik.migrations.versions.0006_sql_entry_points")
        op.execute(next(f for f in previous._FUNCTIONS if "FUNCTION vestnik_upsert_client(" in f))
