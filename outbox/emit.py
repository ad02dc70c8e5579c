"""``emit``: the one call CRM code makes.

It adds one row to ``outbox_events`` through the caller's session or
connection, inside the caller's transaction, and nothing else: no commit, no
broker, no render, no network.  If the CRM's transaction rolls back, the
event never existed; if it commits, the relay will publish it.  On PostgreSQL
a statement trigger on the table NOTIFYs the relay, which PostgreSQL delivers
at commit (see migrations).

Measured: an outbox INSERT makes a tiny CRM transaction about 1.3x longer, so
``emit`` issues exactly one statement (``bench/crm_overhead.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vestnik.shared.errors import EventValidationError, UnknownEventType
from vestnik.shared.events import canonical_event_type, key_problems, parse_send_at, validate_event
from vestnik.shared.models import OutboxEvent

_TABLE = OutboxEvent.__table__
# Built once: constructing an INSERT per call cost ~0.1 ms, a fifth of a tiny
# CRM transaction (bench/crm_overhead.py: 1.53x -> 1.33x).
_INSERT = _TABLE.insert().returning(_TABLE.c.id)
_INSERT_IDEMPOTENT = {
    name: dialect_insert(_TABLE).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(_TABLE.c.id)
    for name, dialect_insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


def check(
    event_type: str,
    *,
    recipients: Any = None,
    data: Any = None,
    key: Any = None,
    idempotency_key: Any = None,
    send_at: Any = None,
) -> dict[str, Any]:
    """An event's columns, checked; raises :class:`EventValidationError` naming every bad field.

    Shapes are not assumed: whatever arrives (JSON from the HTTP API, a CRM's
    Python) is looked at and named, never trusted to be a dict or a list.
    A deprecated event name (``shared.events.ALIASES``) is stored under its new name.
    """
    event_type = canonical_event_type(event_type)
    data = dict(data) if isinstance(data, Mapping) else ({} if data is None else data)
    if recipients is None:
        recipient_list: Any = []
    elif isinstance(recipients, Iterable) and not isinstance(recipients, str | bytes | Mapping):
        recipient_list = list(recipients)
    else:
        recipient_list = recipients
    problems: list[str] = []
    try:
        validate_event(event_type, data, recipients=recipient_list)
    except UnknownEventType:
        raise
    except EventValidationError as exc:
        problems += exc.problems
    when, why = parse_send_at(send_at)
    problems += key_problems("key", key) + key_problems("idempotency_key", idempotency_key) + why
    if problems:
        raise EventValidationError(event_type, problems)
    return {"event_type": event_type, "recipients": recipient_list, "data": data, "key": key,
            "idempotency_key": idempotency_key, "send_at": when}


def emit(
    db: Session | Connection,
    event_type: str,
    *,
    recipients: Iterable[int | str] | None = None,
    data: Mapping[str, Any] | None = None,
    key: str | None = None,
    idempotency_key: str | None = None,
    send_at: datetime | str | None = None,
    initiator: str = "system",
) -> int | None:
    """Add an event to the caller's transaction and return its id.

    ``recipients`` are client ids from the CRM (integers or strings of up to
    64 characters).  ``key`` groups events about
    one thing (``lesson:42``) for cancel and reschedule.  ``idempotency_key``
    makes a retried CRM request harmless: a second event with the same key is
    dropped and ``emit`` returns None.  ``send_at`` delays the event's
    notifications (within a year).  Raises :class:`EventValidationError`
    naming every bad field.  CRMs outside Vestnik's own code use
    ``vestnik_client.emit`` (any driver, no dependencies) instead.
    """
    event = check(event_type, recipients=recipients, data=data, key=key, idempotency_key=idempotency_key,
                  send_at=send_at)
    return insert_checked(db, event, initiator=initiator)


def insert_checked(db: Session | Connection, event: Mapping[str, Any], *, initiator: str = "system") -> int | None:
    """The one INSERT of an event that :func:`check` returned; its id, or None for a used idempotency key."""
    values = {**event, "initiator": initiator, "status": "pending"}
    stmt = _INSERT
    if event["idempotency_key"] is not None:
        bind = db.get_bind() if isinstance(db, Session) else db
        stmt = _INSERT_IDEMPOTENT.get(bind.dialect.name, _INSERT)
    event_id = db.execute(stmt, values).scalar()
    if event_id is None:  # a duplicate idempotency key: the first event stands
        return None
    return int(event_id)


def find_by_idempotency_key(db: Session | Connection, idempotency_key: str) -> int | None:
    """The id of the event that holds an idempotency key (for callers that want it)."""
    return db.execute(select(_TABLE.c.id).where(_TABLE.c.idempotency_key == idempotency_key)).scalar()
