"""SQL entry points: vestnik_emit and vestnik_upsert_client, and the registry they check against

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 10:00:00

- ``vestnik_registry``: the event registry as JSON Schema documents (one row
  per event type, plus the recipients' and client record's schemas, the
  envelope's limits and the defaults of a new client).  ``vestnik db upgrade``
  rewrites its rows from ``shared/events.py`` every time, so it never drifts
  from the code (the same document ``vestnik-client`` ships).
- PostgreSQL only: ``vestnik_json_problems`` (the JSON Schema subset of
  ``shared/wire.py``: every problem as "path: reason"), ``vestnik_emit(...)
  RETURNS bigint`` and ``vestnik_upsert_client(client_id, fields) RETURNS
  text`` for a CRM in any language on the same database, and
  ``vestnik_client_key`` (a CRM id to the ``clients`` row's key).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

_FUNCTIONS = [
    # jsonb type test, as JSON Schema's "type" means it (5.0 is a number, not an integer)
    """
CREATE OR REPLACE FUNCTION vestnik_json_is(val jsonb, kind text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(CASE kind
        WHEN 'integer' THEN jsonb_typeof(val) = 'number' AND val::text ~ '^-?[0-9]+$'
        ELSE jsonb_typeof(val) = kind END, false)
$$
""",
    """
CREATE OR REPLACE FUNCTION vestnik_json_message(node jsonb, val jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN coalesce(
        node->>'x-error',
        CASE WHEN node ? 'anyOf' THEN vestnik_json_message(
            (SELECT b FROM jsonb_array_elements(node->'anyOf') WITH ORDINALITY AS t(b, n)
              ORDER BY (b->>'type' IS NOT DISTINCT FROM 'null'), n LIMIT 1), val) END,
        CASE WHEN node ? 'enum' THEN 'must be one of ' || (
            SELECT string_agg(e, ', ' ORDER BY n) FROM jsonb_array_elements_text(node->'enum') WITH ORDINALITY AS t(e, n))
        END,
        CASE WHEN node ? 'type' AND NOT vestnik_json_is(val, node->>'type') THEN CASE node->>'type'
            WHEN 'object' THEN 'must be an object' WHEN 'array' THEN 'must be a list'
            WHEN 'string' THEN 'must be a string' WHEN 'integer' THEN 'must be an integer'
            WHEN 'number' THEN 'must be a number' WHEN 'boolean' THEN 'must be true or false'
            ELSE 'must be null' END END,
        'is not valid');
END
$$
""",
    # Every problem of val against node, as "path: reason" (the light client's schema.problems, in SQL).
    """
CREATE OR REPLACE FUNCTION vestnik_json_problems(node jsonb, val jsonb, path text) RETURNS text[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found text[] := '{}';
    ok boolean := true;
    s text;
    num numeric;
    branch jsonb;
    prop text;
    child text;
    declared text;
    i int;
BEGIN
    IF node ? 'anyOf' THEN
        FOR branch IN SELECT b FROM jsonb_array_elements(node->'anyOf') AS t(b) LOOP
            IF cardinality(vestnik_json_problems(branch, val, path)) = 0 THEN
                RETURN found;
            END IF;
        END LOOP;
        -- "this or null" (no x-error of its own): a value of this type reports its own problems
        IF NOT node ? 'x-error' THEN
            FOR branch IN SELECT b FROM jsonb_array_elements(node->'anyOf') WITH ORDINALITY AS t(b, n) ORDER BY n LOOP
                IF branch->>'type' IS DISTINCT FROM 'null'
                   AND (NOT branch ? 'type' OR vestnik_json_is(val, branch->>'type')) THEN
                    RETURN vestnik_json_problems(branch, val, path);
                END IF;
            END LOOP;
        END IF;
        RETURN ARRAY[path || ': ' || vestnik_json_message(node, val)];
    END IF;
    IF node ? 'type' AND NOT vestnik_json_is(val, node->>'type') THEN
        ok := false;
    ELSIF node ? 'enum' AND NOT (node->'enum') @> jsonb_build_array(val) THEN
        ok := false;
    ELSIF jsonb_typeof(val) = 'string' THEN
        s := val #>> '{}';
        IF length(s) < coalesce((node->>'minLength')::int, 0)
           OR length(s) > coalesce((node->>'maxLength')::int, length(s))
           OR (node ? 'pattern' AND s !~ (node->>'pattern')) THEN
            ok := false;
        ELSIF node->>'format' IN ('date', 'date-time') THEN
            -- the pattern bounds year, month and day; this asks whether the day exists in that month
            ok := substr(s, 9, 2)::int <= extract(day FROM make_date(substr(s, 1, 4)::int, substr(s, 6, 2)::int, 1)
                                                        + interval '1 month' - interval '1 day');
        ELSIF node->>'format' = 'timezone' THEN
            ok := EXISTS (SELECT 1 FROM pg_timezone_names AS z WHERE z.name = s);
        END IF;
    ELSIF jsonb_typeof(val) = 'number' THEN
        num := (val #>> '{}')::numeric;
        ok := NOT ((node ? 'minimum' AND num < (node->>'minimum')::numeric)
                   OR (node ? 'maximum' AND num > (node->>'maximum')::numeric)
                   OR (node ? 'x-max-decimals' AND scale(trim_scale(num)) > (node->>'x-max-decimals')::int));
    END IF;
    IF NOT ok THEN
        RETURN ARRAY[path || ': ' || vestnik_json_message(node, val)];
    END IF;
    IF jsonb_typeof(val) = 'array' THEN
        IF node ? 'maxItems' AND jsonb_array_length(val) > (node->>'maxItems')::int THEN
            RETURN ARRAY[path || ': at most ' || (node->>'maxItems') || ' items'];
        END IF;
        IF node ? 'minItems' AND jsonb_array_length(val) < (node->>'minItems')::int THEN
            found := found || (path || ': at least ' || (node->>'minItems') || ' item'
                               || CASE WHEN (node->>'minItems')::int = 1 THEN '' ELSE 's' END);
        END IF;
        IF node ? 'items' THEN
            FOR i IN 0 .. jsonb_array_length(val) - 1 LOOP
                found := found || vestnik_json_problems(node->'items', val->i, path || '[' || i || ']');
            END LOOP;
        END IF;
    ELSIF jsonb_typeof(val) = 'object' THEN
        FOR prop IN SELECT r FROM jsonb_array_elements_text(coalesce(node->'required', '[]')) AS t(r) LOOP
            IF NOT val ? prop THEN
                found := found || (CASE WHEN path = '' THEN prop ELSE path || '.' || prop END || ': required');
            END IF;
        END LOOP;
        FOR prop, branch IN SELECT p.key, p.value FROM jsonb_each(coalesce(node->'properties', '{}')) AS p LOOP
            IF val ? prop THEN
                child := CASE WHEN path = '' THEN prop ELSE path || '.' || prop END;
                found := found || vestnik_json_problems(branch, val->prop, child);
            END IF;
        END LOOP;
        IF node->'additionalProperties' = 'false'::jsonb THEN
            SELECT string_agg(k, ', ' ORDER BY k COLLATE "C") INTO declared
              FROM jsonb_object_keys(coalesce(node->'properties', '{}')) AS t(k);
            FOR prop IN SELECT k FROM jsonb_object_keys(val) AS t(k)
                         WHERE NOT coalesce(node->'properties', '{}') ? k ORDER BY k COLLATE "C" LOOP
                found := found || (CASE WHEN path = '' THEN prop ELSE path || '.' || prop END
                                   || ': unknown field (declared: ' || coalesce(declared, 'none') || ')');
            END LOOP;
        END IF;
    END IF;
    RETURN found;
END
$$
""",
    # Edit distance, for "did you mean ..." on an unknown event type (only runs on that error).
    """
CREATE OR REPLACE FUNCTION vestnik_edit_distance(a text, b text) RETURNS int
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    prev int[];
    cur int[];
    i int;
    j int;
BEGIN
    prev := ARRAY(SELECT generate_series(0, length(b)));
    FOR i IN 1 .. length(a) LOOP
        cur := ARRAY[i];
        FOR j IN 1 .. length(b) LOOP
            cur := cur || least(prev[j + 1] + 1, cur[j] + 1,
                                prev[j] + CASE WHEN substr(a, i, 1) = substr(b, j, 1) THEN 0 ELSE 1 END);
        END LOOP;
        prev := cur;
    END LOOP;
    RETURN prev[length(b) + 1];
END
$$
""",
    # A CRM's client id to the key of its clients row.  Today the key is the id itself (integers);
    # string ids arrive with the client identity migration.
    """
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
""",
    """
CREATE OR REPLACE FUNCTION vestnik_emit(
    event_type text, recipients jsonb, data jsonb, key text DEFAULT NULL, idempotency_key text DEFAULT NULL,
    send_at timestamptz DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    spec jsonb;
    limits jsonb;
    problems text[] := '{}';
    hint text;
    targets text;
    new_id bigint;
BEGIN
    SELECT r.document INTO spec FROM vestnik_registry AS r WHERE r.name = 'event:' || vestnik_emit.event_type;
    IF spec IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM vestnik_registry AS r WHERE r.name = 'limits') THEN
            RAISE EXCEPTION USING ERRCODE = '55000',
                MESSAGE = 'vestnik_registry is empty: run `vestnik db upgrade`';
        END IF;
        SELECT ' (did you mean ' || string_agg(quote_literal(n), ' or ' ORDER BY d, n) || '?)' INTO hint
          FROM (SELECT substr(r.name, 7) AS n, vestnik_edit_distance(substr(r.name, 7), vestnik_emit.event_type) AS d
                  FROM vestnik_registry AS r WHERE r.name LIKE 'event:%') AS c
         WHERE d <= greatest(2, length(vestnik_emit.event_type) / 4);
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid %L event: unknown event type %L%s', vestnik_emit.event_type,
                             vestnik_emit.event_type, coalesce(hint, '')),
            HINT = 'the event types are listed in Vestnik''s docs/events.md';
    END IF;
    SELECT r.document INTO limits FROM vestnik_registry AS r WHERE r.name = 'limits';
    IF data IS NULL OR jsonb_typeof(data) <> 'object' THEN
        problems := problems || 'data: must be an object'::text;
    ELSE
        problems := problems || vestnik_json_problems(spec->'data', data, 'data');
        IF cardinality(problems) = 0 AND octet_length(data::text) > (limits->>'data_max_bytes')::int THEN
            problems := problems || ('data: larger than ' || (limits->>'data_max_bytes') || ' bytes as JSON');
        END IF;
    END IF;
    IF recipients IS NULL OR jsonb_typeof(recipients) <> 'array' THEN
        problems := problems || CASE WHEN jsonb_typeof(recipients) = 'string'
            THEN format('recipients: must be a list of client ids, not one string (%L)', recipients #>> '{}')
            ELSE 'recipients: must be a list of client ids' END;
    ELSE
        targets := spec->>'targets_field';
        IF jsonb_array_length(recipients) = 0
           AND NOT (targets IS NOT NULL AND jsonb_typeof(data) = 'object'
                    AND coalesce(data->targets, 'null'::jsonb) NOT IN ('null'::jsonb, '{}'::jsonb, '[]'::jsonb,
                                                                      'false'::jsonb, '""'::jsonb, '0'::jsonb)) THEN
            problems := problems || ('recipients: at least one client id is required'
                                     || CASE WHEN targets IS NULL THEN '' ELSE ' (or data.' || targets || ')' END);
        END IF;
        problems := problems || vestnik_json_problems(
            (SELECT r.document FROM vestnik_registry AS r WHERE r.name = 'recipients'), recipients, 'recipients');
    END IF;
    IF key IS NOT NULL THEN
        problems := problems || vestnik_json_problems(
            (SELECT r.document FROM vestnik_registry AS r WHERE r.name = 'key'), to_jsonb(key), 'key');
    END IF;
    IF idempotency_key IS NOT NULL THEN
        problems := problems || vestnik_json_problems(
            (SELECT r.document FROM vestnik_registry AS r WHERE r.name = 'key'), to_jsonb(idempotency_key),
            'idempotency_key');
    END IF;
    IF send_at > now() + make_interval(days => (limits->>'send_at_max_ahead_days')::int) THEN
        problems := problems || format('send_at: more than %s days ahead (%s)', limits->>'send_at_max_ahead_days',
                                       send_at);
    ELSIF send_at < now() - make_interval(days => (limits->>'send_at_max_past_days')::int) THEN
        problems := problems || format('send_at: more than %s days in the past (%s); leave it out to send now',
                                       limits->>'send_at_max_past_days', send_at);
    END IF;
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid %L event: %s', vestnik_emit.event_type, array_to_string(problems, '; ')),
            DETAIL = array_to_string(problems, E'\\n');
    END IF;
    INSERT INTO outbox_events (event_type, recipients, data, key, idempotency_key, send_at)
    VALUES (vestnik_emit.event_type, vestnik_emit.recipients, vestnik_emit.data, vestnik_emit.key,
            vestnik_emit.idempotency_key, vestnik_emit.send_at)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN  -- the idempotency key was used: the first event stands
        SELECT o.id INTO new_id FROM outbox_events AS o WHERE o.idempotency_key = vestnik_emit.idempotency_key;
    END IF;
    RETURN new_id;
END
$$
""",
    """
CREATE OR REPLACE FUNCTION vestnik_upsert_client(client_id text, fields jsonb DEFAULT '{}'::jsonb) RETURNS text
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    problems text[] := '{}';
    defaults jsonb;
    client_key bigint;
    created boolean := false;
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
        id, name, email, telegram_chat_id, locale, timezone, notifications_telegram_enabled,
        notifications_email_enabled, allow_service_notifications, allow_marketing_notifications, last_active_at,
        created_at, updated_at)
    VALUES (
        client_key, coalesce(fields->>'name', ''), fields->>'email', fields->>'telegram_chat_id',
        coalesce(fields->>'locale', defaults->>'locale', 'ru'), coalesce(fields->>'timezone', defaults->>'timezone',
        'Europe/Moscow'), coalesce((fields->>'telegram_enabled')::boolean, true),
        coalesce((fields->>'email_enabled')::boolean, true), coalesce((fields->>'allow_service')::boolean, true),
        coalesce((fields->>'allow_marketing')::boolean, false), (fields->>'last_active_at')::timestamptz,
        now(), now())
    ON CONFLICT (id) DO NOTHING
    RETURNING true INTO created;
    IF NOT coalesce(created, false) THEN
        -- An absent field is never changed: the choices a client made in the profile stay.
        UPDATE clients AS c SET
            name = CASE WHEN fields ? 'name' THEN fields->>'name' ELSE c.name END,
            email = CASE WHEN fields ? 'email' THEN fields->>'email' ELSE c.email END,
            email_unreachable_reason = CASE WHEN fields ? 'email' AND (fields->>'email') IS DISTINCT FROM c.email
                                            THEN NULL ELSE c.email_unreachable_reason END,
            telegram_chat_id = CASE WHEN fields ? 'telegram_chat_id' THEN fields->>'telegram_chat_id'
                                    ELSE c.telegram_chat_id END,
            telegram_unreachable_reason = CASE WHEN fields ? 'telegram_chat_id'
                                                    AND (fields->>'telegram_chat_id') IS DISTINCT FROM c.telegram_chat_id
                                               THEN NULL ELSE c.telegram_unreachable_reason END,
            locale = coalesce(fields->>'locale', c.locale),
            timezone = coalesce(fields->>'timezone', c.timezone),
            notifications_telegram_enabled = coalesce((fields->>'telegram_enabled')::boolean,
                                                      c.notifications_telegram_enabled),
            notifications_email_enabled = coalesce((fields->>'email_enabled')::boolean, c.notifications_email_enabled),
            allow_service_notifications = coalesce((fields->>'allow_service')::boolean, c.allow_service_notifications),
            allow_marketing_notifications = coalesce((fields->>'allow_marketing')::boolean,
                                                     c.allow_marketing_notifications),
            last_active_at = CASE WHEN fields ? 'last_active_at' THEN (fields->>'last_active_at')::timestamptz
                                  ELSE c.last_active_at END,
            updated_at = now()
        WHERE c.id = client_key;
    END IF;
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
""",
]

_DROP = [
    "DROP FUNCTION IF EXISTS vestnik_upsert_client(text, jsonb)",
    "DROP FUNCTION IF EXISTS vestnik_emit(text, jsonb, jsonb, text, text, timestamptz)",
    "DROP FUNCTION IF EXISTS vestnik_client_key(text)",
    "DROP FUNCTION IF EXISTS vestnik_edit_distance(text, text)",
    "DROP FUNCTION IF EXISTS vestnik_json_problems(jsonb, jsonb, text)",
    "DROP FUNCTION IF EXISTS vestnik_json_message(jsonb, jsonb)",
    "DROP FUNCTION IF EXISTS vestnik_json_is(jsonb, text)",
]


def upgrade() -> None:
    op.create_table(
        "vestnik_registry",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("document", _JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in _FUNCTIONS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _DROP:
            op.execute(statement)
    op.drop_table("vestnik_registry")
