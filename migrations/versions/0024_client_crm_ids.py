"""CRM client ids that are strings: ``clients.crm_id`` and a sequence of negative keys

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-30 08:00:00

A client's id is the CRM's own: an integer or a string of up to 64 characters
(a UUID).  ``clients.id`` stays the row key every table refers to, so no
foreign key and no history row changes: an integer id (and its canonical
decimal text, "42") is its own key, as before.  A string id gets a key from
``clients_string_key_seq`` (-1, -2, ...), which never meets an integer id.
``clients.crm_id`` holds the CRM's id as text (backfilled ``id::text``),
unique; a check keeps a positive key's ``crm_id`` its decimal text.  A
trigger fills ``crm_id`` for an INSERT that leaves it out (an integer
client written by hand, as before this migration).

``vestnik_client_key`` now finds a string id by ``crm_id`` (NULL when no
client has it), and ``vestnik_upsert_client`` (0019's function) writes
``crm_id``, takes a new string id's key from the sequence, and lets any
unique conflict (two transactions creating the same string id) fall through
to the update.
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

SEQUENCE = "clients_string_key_seq"

_CLIENT_KEY = """
CREATE OR REPLACE FUNCTION vestnik_client_key(client_id text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF client_id ~ '^[1-9][0-9]{0,18}$' THEN  -- an integer id (canonical decimal text) is its own key
        IF client_id::numeric <= 9223372036854775807 THEN
            RETURN client_id::bigint;
        END IF;
    END IF;
    RETURN (SELECT c.id FROM clients AS c WHERE c.crm_id = client_id);  -- a string id: NULL when new
END
$$
"""

_PREVIOUS_CLIENT_KEY = """
CREATE OR REPLACE FUNCTION vestnik_client_key(client_id text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF client_id ~ '^[1-9][0-9]{0,18}$' AND client_id::numeric <= 9223372036854775807 THEN
        RETURN client_id::bigint;
    END IF;
    RAISE EXCEPTION USING ERRCODE = '22023',
        MESSAGE = format('invalid client %L: id: this database holds integer client ids only '
                         '(1 to 9223372036854775807, no leading zeros)', client_id);
END
$$
"""

_FILL_CRM_ID = """
CREATE OR REPLACE FUNCTION vestnik_clients_crm_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.crm_id := NEW.id::text;
    RETURN NEW;
END
$$;
CREATE TRIGGER clients_crm_id BEFORE INSERT ON clients
    FOR EACH ROW WHEN (NEW.crm_id IS NULL) EXECUTE FUNCTION vestnik_clients_crm_id();
"""


def with_crm_id(upsert: str) -> str:
    """0019's function text with ``crm_id`` written and string ids keyed from the sequence."""
    edits = [
        ("    client_key := vestnik_client_key(client_id);\n",
         "    client_key := vestnik_client_key(client_id);\n"
         f"    IF client_key IS NULL THEN  -- a string id no client has yet: a new negative key\n"
         f"        client_key := nextval('{SEQUENCE}');\n"
         "    END IF;\n"),
        ("        id, name, phone, locale, timezone,", "        id, crm_id, name, phone, locale, timezone,"),
        ("        client_key, coalesce(fields->>'name', ''),", "        client_key, client_id, coalesce(fields->>'name', ''),"),
        # any unique conflict: the key (an integer id) or crm_id (a string id another transaction created)
        ("    ON CONFLICT (id) DO NOTHING\n", "    ON CONFLICT DO NOTHING\n"),
        ("    IF NOT coalesce(created, false) THEN\n",
         "    IF NOT coalesce(created, false) THEN\n        client_key := vestnik_client_key(client_id);\n"),
    ]
    for old, new in edits:
        assert upsert.count(old) == 1, old
        upsert = upsert.replace(old, new)
    return upsert


def _previous_upsert() -> str:
    phone = importlib.import_module("vestnik.migrations.versions.0019_client_phone")
    return phone._with_phone(phone._previous())


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("crm_id", sa.String(length=64), nullable=True))
    op.execute("UPDATE clients SET crm_id = CAST(id AS TEXT)")
    with op.batch_alter_table("clients") as batch:
        batch.alter_column("crm_id", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint("uq_clients_crm_id", ["crm_id"])
        batch.create_check_constraint("ck_clients_crm_id", "id < 0 OR crm_id = CAST(id AS TEXT)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE SEQUENCE {SEQUENCE} INCREMENT -1 START -1 MAXVALUE -1")
        op.execute(_FILL_CRM_ID)
        op.execute(_CLIENT_KEY)
        op.execute(with_crm_id(_previous_upsert()))


def downgrade() -> None:
    # Clients known only by a string id cannot be kept by a schema without crm_id: their rows (and what
    # refers to them) would name no CRM client.  The downgrade refuses rather than guesses.
    if op.get_bind().execute(sa.text("SELECT count(*) FROM clients WHERE id < 0")).scalar():
        raise RuntimeError("clients with string ids exist (clients.id < 0): a downgrade below 0024 would lose "
                           "their CRM ids; forget or remove them first")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_previous_upsert())
        op.execute(_PREVIOUS_CLIENT_KEY)
        op.execute("DROP TRIGGER IF EXISTS clients_crm_id ON clients")
        op.execute("DROP FUNCTION IF EXISTS vestnik_clients_crm_id()")
        op.execute(f"DROP SEQUENCE IF EXISTS {SEQUENCE}")
    with op.batch_alter_table("clients") as batch:
        batch.drop_constraint("ck_clients_crm_id", type_="check")
        batch.drop_constraint("uq_clients_crm_id", type_="unique")
        batch.drop_column("crm_id")
