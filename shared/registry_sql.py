"""The registry compiled to one SQL function: ``vestnik_event_ok(...)``, the SQL entry points' fast path.

``vestnik_json_problems`` walks a JSON Schema node by node in PL/pgSQL to name
every bad field; that costs a tiny CRM transaction far more than the INSERT
itself.  Most events are valid, so ``vestnik_emit`` first asks this function,
generated from the same registry document by ``vestnik db upgrade``: one SQL
expression per event type (no loops, no PL/pgSQL), true when the event would
have no problem at all.  Only when it says no does ``vestnik_emit`` run the
walk, for the messages.  ``tests/integration/test_sql_functions.py`` holds
the two to the same verdict on every case of the registry corpus.

The compiler covers exactly the keywords of ``shared/wire.py``'s
``SCHEMA_KEYWORDS``; every value is read through a guard (``CASE WHEN
jsonb_typeof(...) = ...``) so that no cast can raise on a bad value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_TYPE = {"object": "object", "array": "array", "string": "string", "number": "number", "boolean": "boolean",
         "null": "null"}


def _lit(text: str) -> str:
    """A SQL string literal (standard_conforming_strings: backslashes are plain)."""
    return "'" + text.replace("'", "''") + "'"


def _json(value: Any) -> str:
    return _lit(json.dumps(value, ensure_ascii=False)) + "::jsonb"


def _is(expr: str, kind: str) -> str:
    if kind == "integer":
        return f"(jsonb_typeof({expr}) = 'number' AND ({expr})::text ~ '^-?[0-9]+$')"
    return f"(jsonb_typeof({expr}) = '{_TYPE[kind]}')"


def _day_exists(text: str) -> str:
    return f"vestnik_day_exists({text})"


def compile_node(node: Mapping[str, Any], expr: str, depth: int = 0) -> str:
    """A SQL boolean that is true exactly when the jsonb ``expr`` has no problem against ``node``."""
    expr = f"({expr})"  # operators bind differently ("-" before "->"): never let them regroup an operand
    if "anyOf" in node:
        return "(" + " OR ".join(compile_node(b, expr, depth) for b in node["anyOf"]) + ")"
    parts: list[str] = []
    if "type" in node:
        parts.append(_is(expr, node["type"]))
    if "enum" in node:
        parts.append(f"({expr}) IN ({', '.join(_json(v) for v in node['enum'])})")
    text = f"({expr} #>> '{{}}')"
    string: list[str] = []
    if "minLength" in node:
        string.append(f"length({text}) >= {int(node['minLength'])}")
    if "maxLength" in node:
        string.append(f"length({text}) <= {int(node['maxLength'])}")
    if "pattern" in node:
        string.append(f"{text} ~ {_lit(node['pattern'])}")
    if node.get("format") in ("date", "date-time"):
        string.append(_day_exists(text))
    elif node.get("format") == "timezone":
        string.append(f"EXISTS (SELECT 1 FROM pg_timezone_names AS z WHERE z.name = {text})")
    if string:
        parts.append(f"(CASE WHEN jsonb_typeof({expr}) = 'string' THEN {' AND '.join(string)} ELSE true END)")
    number: list[str] = []
    if "minimum" in node:
        number.append(f"{text}::numeric >= {node['minimum']}")
    if "maximum" in node:
        number.append(f"{text}::numeric <= {node['maximum']}")
    if "x-max-decimals" in node:
        number.append(f"scale(trim_scale({text}::numeric)) <= {int(node['x-max-decimals'])}")
    if number:
        parts.append(f"(CASE WHEN jsonb_typeof({expr}) = 'number' THEN {' AND '.join(number)} ELSE true END)")
    if "items" in node or "maxItems" in node or "minItems" in node:
        items: list[str] = []
        if "maxItems" in node:
            items.append(f"jsonb_array_length({expr}) <= {int(node['maxItems'])}")
        if "minItems" in node:
            items.append(f"jsonb_array_length({expr}) >= {int(node['minItems'])}")
        if "items" in node:
            item = f"i{depth}.v"
            items.append(f"NOT EXISTS (SELECT 1 FROM jsonb_array_elements({expr}) AS i{depth}(v) "
                         f"WHERE NOT {compile_node(node['items'], item, depth + 1)})")
        parts.append(f"(CASE WHEN jsonb_typeof({expr}) = 'array' THEN {' AND '.join(items)} ELSE true END)")
    if "properties" in node or "required" in node or node.get("additionalProperties") is False:
        props: Mapping[str, Any] = node.get("properties", {})
        fields: list[str] = [f"{expr} ? {_lit(name)}" for name in node.get("required", ())]
        fields += [f"(NOT {expr} ? {_lit(name)} OR {compile_node(sub, f'{expr}->{_lit(name)}', depth + 1)})"
                   for name, sub in props.items()]
        if node.get("additionalProperties") is False:
            names = "ARRAY[" + ", ".join(_lit(n) for n in props) + "]::text[]"
            fields.append(f"({expr} - {names}) = '{{}}'::jsonb")
        parts.append(f"(CASE WHEN jsonb_typeof({expr}) = 'object' THEN {' AND '.join(fields) or 'true'} "
                     "ELSE true END)")
    return "(" + (" AND ".join(parts) or "true") + ")"


def _truthy(expr: str) -> str:
    """Python's truth of a JSON value (the targets field that may stand in for recipients)."""
    return (f"coalesce({expr}, 'null'::jsonb) NOT IN ('null'::jsonb, '{{}}'::jsonb, '[]'::jsonb, 'false'::jsonb, "
            "'\"\"'::jsonb, '0'::jsonb)")


def event_ok_function(doc: Mapping[str, Any]) -> str:
    """``CREATE OR REPLACE FUNCTION vestnik_event_ok(...)`` for a registry document.

    PL/pgSQL, one ``RETURN`` per event type: each expression is planned once per
    session, on first use (a SQL-language function would be planned on every call).
    """
    limits = doc["limits"]
    checks = {}
    for name, spec in doc["events"].items():
        recipients_present = "jsonb_array_length(recipients) > 0"
        if spec.get("targets_field"):
            targets = "data->" + _lit(spec["targets_field"])
            recipients_present = f"({recipients_present} OR {_truthy(targets)})"
        checks[name] = f"{recipients_present} AND {compile_node(spec['data'], 'data')}"
    # a deprecated name (the document's "aliases") is checked as its new name
    checks.update({old: checks[new] for old, new in doc.get("aliases", {}).items() if new in checks})
    cases = [f"WHEN {_lit(name)} THEN\n            RETURN coalesce({check}, false);" for name, check in checks.items()]
    key = compile_node(doc["key"], "to_jsonb(k)")
    whens = "\n        ".join(cases)
    return f"""
CREATE OR REPLACE FUNCTION vestnik_event_ok(
    event_type text, recipients jsonb, data jsonb, key text, idempotency_key text, send_at timestamptz
) RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    k text;
BEGIN
    IF jsonb_typeof(data) IS DISTINCT FROM 'object' OR jsonb_typeof(recipients) IS DISTINCT FROM 'array'
       OR octet_length(data::text) > {int(limits['data_max_bytes'])}
       OR NOT coalesce({compile_node(doc['recipients'], 'recipients')}, false) THEN
        RETURN false;
    END IF;
    IF send_at IS NOT NULL AND NOT (send_at BETWEEN now() - interval '{int(limits['send_at_max_past_days'])} days'
                                               AND now() + interval '{int(limits['send_at_max_ahead_days'])} days') THEN
        RETURN false;
    END IF;
    FOREACH k IN ARRAY ARRAY[key, idempotency_key] LOOP
        IF k IS NOT NULL AND NOT coalesce({key}, false) THEN
            RETURN false;
        END IF;
    END LOOP;
    CASE event_type
        {whens}
        ELSE
            RETURN false;
    END CASE;
END
$fn$
"""


def client_ok_function(doc: Mapping[str, Any]) -> str:
    """``CREATE OR REPLACE FUNCTION vestnik_client_ok(client_id, fields)``: the upsert's fast path."""
    return f"""
CREATE OR REPLACE FUNCTION vestnik_client_ok(client_id text, fields jsonb) RETURNS boolean
LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(
        client_id IS NOT NULL AND jsonb_typeof(fields) = 'object'
        AND (SELECT {compile_node(doc['client_id'], 'c')} FROM (SELECT to_jsonb(client_id) AS c) AS s)
        AND {compile_node(doc['client'], 'fields')},
        false)
$fn$
"""


def alias_trigger(doc: Mapping[str, Any]) -> str:
    """A trigger that stores an event sent under a deprecated name (the registry's ``aliases``) under its
    new name, whichever way it was inserted (``vestnik_emit`` or a plain INSERT)."""
    aliases = doc.get("aliases", {})
    drop = "DROP TRIGGER IF EXISTS outbox_events_alias ON outbox_events;"
    if not aliases:
        return drop
    whens = " ".join(f"WHEN {_lit(old)} THEN {_lit(new)}" for old, new in aliases.items())
    names = ", ".join(_lit(old) for old in aliases)
    return f"""
CREATE OR REPLACE FUNCTION vestnik_event_alias() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.event_type := CASE NEW.event_type {whens} ELSE NEW.event_type END;
    RETURN NEW;
END
$fn$;
{drop}
CREATE TRIGGER outbox_events_alias BEFORE INSERT ON outbox_events
    FOR EACH ROW WHEN (NEW.event_type IN ({names})) EXECUTE FUNCTION vestnik_event_alias();
"""
