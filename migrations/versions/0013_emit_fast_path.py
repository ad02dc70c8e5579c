"""vestnik_emit's fast path: one generated expression checks a valid event

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 15:00:00

Walking the registry's JSON Schema in PL/pgSQL (``vestnik_json_problems``) to
name every bad field cost a tiny CRM transaction about a third more than a
hand-written INSERT.  ``vestnik db upgrade`` now also writes
``vestnik_event_ok(...)``: the registry compiled to one SQL expression per
event type (``shared/registry_sql.py``).  ``vestnik_emit`` asks it first and
walks the schema only for an event it refuses, for the messages.  This
migration installs a stub that refuses everything (every event takes the walk)
until ``db upgrade`` writes the real one, and ``vestnik_day_exists``, the
calendar check both paths use.
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_DAY_EXISTS = """
CREATE OR REPLACE FUNCTION vestnik_day_exists(s text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT substr(s, 9, 2)::int <= CASE substr(s, 6, 2)::int
        WHEN 2 THEN CASE WHEN substr(s, 1, 4)::int % 4 = 0
                              AND (substr(s, 1, 4)::int % 100 <> 0 OR substr(s, 1, 4)::int % 400 = 0) THEN 29
                         ELSE 28 END
        WHEN 4 THEN 30 WHEN 6 THEN 30 WHEN 9 THEN 30 WHEN 11 THEN 30 ELSE 31 END
$$
"""

_STUB = """
CREATE OR REPLACE FUNCTION vestnik_event_ok(
    event_type text, recipients jsonb, data jsonb, key text, idempotency_key text, send_at timestamptz
) RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT false $$
"""

_EMIT = """
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
    -- Most events are valid: one generated expression says so (vestnik_event_ok, rewritten by every
    -- `vestnik db upgrade` from the registry); only an event it refuses is walked for the messages.
    IF vestnik_event_ok(vestnik_emit.event_type, vestnik_emit.recipients, vestnik_emit.data, vestnik_emit.key,
                        vestnik_emit.idempotency_key, vestnik_emit.send_at) THEN
        INSERT INTO outbox_events (event_type, recipients, data, key, idempotency_key, send_at)
        VALUES (vestnik_emit.event_type, vestnik_emit.recipients, vestnik_emit.data, vestnik_emit.key,
                vestnik_emit.idempotency_key, vestnik_emit.send_at)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id INTO new_id;
        IF new_id IS NULL THEN  -- the idempotency key was used: the first event stands
            SELECT o.id INTO new_id FROM outbox_events AS o WHERE o.idempotency_key = vestnik_emit.idempotency_key;
        END IF;
        RETURN new_id;
    END IF;
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
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_DAY_EXISTS)
    op.execute(_STUB)
    op.execute(_EMIT)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # 0006's vestnik_emit (the walk only), then the functions this revision added.
    previous = importlib.import_module("vestnik.migrations.versions.0006_sql_entry_points")
    op.execute(next(f for f in previous._FUNCTIONS if "FUNCTION vestnik_emit(" in f))
    op.execute("DROP FUNCTION IF EXISTS vestnik_event_ok(text, jsonb, jsonb, text, text, timestamptz)")
    op.execute("DROP FUNCTION IF EXISTS vestnik_day_exists(text)")
