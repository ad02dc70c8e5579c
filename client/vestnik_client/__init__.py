"""vestnik_client: emit Vestnik events and sync clients inside the CRM's own transaction.

``emit`` adds one row to Vestnik's outbox with one ``INSERT`` in the caller's
transaction: no commit, no network.  If the CRM's transaction rolls back, the
event never existed; if it commits, Vestnik delivers it.  ``upsert_clients``
creates or updates Vestnik's copy of clients in the same transaction (one
statement, through the SQL function ``vestnik_upsert_client``), so a client
created together with an event is known when the event is handled.

Both check their input against the registry shipped with this package before
anything is written, and raise an error naming every bad field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from vestnik_client.connections import runner
from vestnik_client.errors import (
    InvalidClient,
    InvalidEvent,
    NotInTransaction,
    UnknownEventType,
    UnsupportedConnection,
    VestnikClientError,
)
from vestnik_client.schema import problems, registry, valid
from vestnik_client.values import nul_paths, recipients_list, to_json

__version__ = "0.1.0"
__all__ = ["emit", "upsert_clients", "event_types", "InvalidEvent", "UnknownEventType", "InvalidClient",
           "UnsupportedConnection", "NotInTransaction", "VestnikClientError"]

_COLUMNS = "event_type, recipients, data, key, idempotency_key, send_at"
_VALUES = "%s, %s::jsonb, %s::jsonb, %s, %s, %s::timestamptz"
INSERT = f"INSERT INTO outbox_events ({_COLUMNS}) VALUES ({_VALUES}) RETURNING id"
# A key already used: nothing is inserted and the first event's id is returned, in one statement.
INSERT_IDEMPOTENT = (
    f"WITH inserted AS (INSERT INTO outbox_events ({_COLUMNS}) VALUES ({_VALUES}) "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id) "
    "SELECT id FROM inserted UNION ALL "
    "SELECT id FROM outbox_events WHERE idempotency_key = %s AND NOT EXISTS (SELECT 1 FROM inserted)"
)
UPSERT = ("SELECT count(*) FILTER (WHERE outcome = 'created'), count(*) FILTER (WHERE outcome = 'updated') "
          "FROM (SELECT vestnik_upsert_client(c->>'id', c - 'id') AS outcome "
          "FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS t(c, n) ORDER BY n) AS done")


def event_types() -> list[str]:
    """The event types this client knows (its registry)."""
    return sorted(registry()["events"])


def _close_matches(name: Any) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, event_types(), n=3, cutoff=0.85) if isinstance(name, str) else []


def _key_problems(name: str, value: Any) -> list[str]:
    if value is None or valid(registry()["key"], value):
        return []
    return problems(registry()["key"], value, name)


def _send_at(value: Any, limits: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    if value is None:
        return None, []
    if isinstance(value, str):
        if not valid(registry()["timestamp"], value):
            return None, [f"send_at: {registry()['timestamp']['x-error']}"]
        value = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        return None, [f"send_at: must be an aware datetime or an ISO 8601 string, got {type(value).__name__}"]
    if value.tzinfo is None or value.utcoffset() is None:
        return None, ["send_at: needs a time zone (an aware datetime or an ISO 8601 time with offset)"]
    now = datetime.now(timezone.utc)
    ahead, past = limits["send_at_max_ahead_days"], limits["send_at_max_past_days"]
    if value > now + timedelta(days=ahead):
        return None, [f"send_at: more than {ahead} days ahead ({value.isoformat()})"]
    if value < now - timedelta(days=past):
        return None, [f"send_at: more than {past} days in the past ({value.isoformat()}); leave it out to send now"]
    return value.isoformat(), []


def emit(
    conn: Any,
    event_type: str,
    *,
    recipients: Iterable[int | str],
    data: Mapping[str, Any],
    key: str | None = None,
    idempotency_key: str | None = None,
    send_at: datetime | str | None = None,
) -> int | None:
    """Add an event to the caller's transaction; return its id.

    ``conn``: a SQLAlchemy Session or Connection, a psycopg 3 or psycopg2
    connection, or ``django.db.connection``, inside a transaction (never
    committed here).  ``recipients``: the CRM's client ids (integers or
    strings up to 64 characters).  ``data``: the event's fields; ``date``,
    ``datetime`` (aware), ``Decimal`` and ``UUID`` values are stored as ISO
    8601 and plain strings (see ``vestnik_client.values``).  ``key`` groups
    events about one thing (``lesson:42``) for cancel and reschedule.
    ``idempotency_key``: a second event with the same key is not created and
    the first one's id is returned.  ``send_at``: an aware datetime (or ISO
    8601 string with offset) within a year: the notifications wait until then.

    Raises :class:`InvalidEvent` naming every bad field before anything is
    written, :class:`UnsupportedConnection` / :class:`NotInTransaction` for a
    ``conn`` that cannot carry the event in the caller's transaction.
    """
    doc = registry()
    if isinstance(event_type, str):  # a deprecated name (registry "aliases") is stored under its new name
        event_type = doc.get("aliases", {}).get(event_type, event_type)
    spec = doc["events"].get(event_type) if isinstance(event_type, str) else None
    if spec is None:
        raise UnknownEventType(event_type, _close_matches(event_type))
    limits = doc["limits"]
    found: list[str] = []
    if isinstance(data, Mapping):
        stored = to_json(dict(data), "data", found)
        if not valid(spec["data"], stored):  # the walk for messages only when something is wrong
            found += problems(spec["data"], stored, "data")
    else:
        found.append(f"data: must be an object (a dict), got {type(data).__name__}")
        stored = {}
    unstorable = nul_paths(stored, "data")
    found += [f"{path}: contains a NUL character or a lone surrogate (not storable)" for path in unstorable]
    data_json = json.dumps(stored, ensure_ascii=False)
    if not unstorable and len(data_json.encode()) > limits["data_max_bytes"]:
        found.append(f"data: larger than {limits['data_max_bytes']} bytes as JSON")
    ids, why = recipients_list(recipients)
    found += why
    if ids is not None:
        targets = spec.get("targets_field")
        if not ids and not (targets and isinstance(stored, dict) and stored.get(targets)):
            found.append("recipients: at least one client id is required" + (f" (or data.{targets})" if targets
                                                                               else ""))
        if not valid(doc["recipients"], ids):
            found += problems(doc["recipients"], ids, "recipients")
    found += _key_problems("key", key) + _key_problems("idempotency_key", idempotency_key)
    when, why = _send_at(send_at, limits)
    found += why
    if found:
        raise InvalidEvent(event_type, found)
    run = runner(conn)
    params: list[Any] = [event_type, json.dumps(ids), data_json, key, idempotency_key, when]
    if idempotency_key is None:
        row = run(INSERT, params)
    else:
        row = run(INSERT_IDEMPOTENT, [*params, idempotency_key])
    return int(row[0]) if row else None


def upsert_clients(conn: Any, clients: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Create or update clients in the caller's transaction; return ``{"created": n, "updated": m}``.

    Each client is a mapping with ``id`` (the CRM's id) and any of ``name,
    email, telegram_chat_id, webhook_url, locale, timezone, telegram_enabled,
    email_enabled, webhook_enabled, allow_service, allow_marketing, groups,
    tags, last_active_at`` (the registry's client record).  A field that is absent is never changed, so the
    preferences a client chose in Vestnik's profile stay as they are unless
    the CRM names them; ``null`` removes an address.  Raises
    :class:`InvalidClient` naming every bad field of every client before
    anything is written.
    """
    doc = registry()
    found: list[str] = []
    records: list[dict[str, Any]] = []
    if isinstance(clients, (Mapping, str, bytes)):
        raise InvalidClient([f"clients: must be a list of client mappings, got one {type(clients).__name__}"])
    for i, client in enumerate(clients):
        path = f"clients[{i}]"
        if not isinstance(client, Mapping):
            found.append(f"{path}: must be a mapping with an id, got {type(client).__name__}")
            continue
        record = to_json(dict(client), path, found)
        if "id" not in record:
            found.append(f"{path}.id: required")
        else:
            found += problems(doc["client_id"], record["id"], f"{path}.id")
        fields = {k: v for k, v in record.items() if k != "id"}
        if not valid(doc["client"], fields):
            found += problems(doc["client"], fields, path)
        found += [f"{p}: contains a NUL character or a lone surrogate (not storable)" for p in nul_paths(record, path)]
        records.append(record)
    if found:
        raise InvalidClient(found)
    if not records:
        return {"created": 0, "updated": 0}
    row = runner(conn)(UPSERT, [json.dumps(records, ensure_ascii=False)])
    created, updated = (int(row[0]), int(row[1])) if row else (0, 0)
    return {"created": created, "updated": updated}

