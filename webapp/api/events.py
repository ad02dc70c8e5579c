"""``POST /api/v1/events``: an event from a CRM elsewhere.

The request commits its own transaction: it is not part of the CRM's.  A CRM
that cannot tell whether a request reached Vestnik (a timeout, a dropped
connection) retries it with the same ``Idempotency-Key`` header: the first
event's id comes back (202 again, ``Idempotent-Replayed: true``) and nothing
is created twice.  The key is scoped to the API key, stored as the event's
idempotency key (``api:<key id>:<Idempotency-Key>``); reusing it for a
different event is a 409.
"""

from __future__ import annotations

import json
from typing import Any

from flask import jsonify, request
from sqlalchemy import select

from vestnik.outbox.emit import check, insert_checked
from vestnik.shared import wire
from vestnik.shared.errors import EventValidationError
from vestnik.shared.events import canonical_event_type
from vestnik.shared.models import AuditLog, OutboxEvent
from vestnik.webapp.api import schemas
from vestnik.webapp.api.auth import current_key
from vestnik.webapp.api.errors import ApiError
from vestnik.webapp.boundaries import read_body
from vestnik.webapp.db import get_session

#: an event is at most 64 KiB of data and 10,000 recipients: this bounds the request around them
MAX_BODY_BYTES = 512 * 1024
#: Idempotency-Key header: one line; it is stored after "api:<key id>:" in a 200-character column
MAX_IDEMPOTENCY_KEY_CHARS = 150
FIELDS = ("event_type", "recipients", "data", "key", "send_at")


def json_body(limit_bytes: int) -> Any:
    """The request's JSON body (415 for another type, 400 when it is not JSON, 413 when too large)."""
    if request.mimetype != "application/json":
        raise ApiError(415, "send the body as application/json")
    body = read_body(limit_bytes)
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None


def _idempotency_key(api_key_id: int) -> str | None:
    header = request.headers.get("Idempotency-Key")
    if header is None:
        return None
    if not wire.KEY(header) or len(header) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise ApiError(422, "invalid Idempotency-Key header",
                       [f"Idempotency-Key: must be a non-empty line of at most {MAX_IDEMPOTENCY_KEY_CHARS} "
                        "characters (no NUL or other control characters)"])
    return f"api:{api_key_id}:{header}"


def _same_request(event: OutboxEvent, body: dict[str, Any]) -> bool:
    return (event.event_type == canonical_event_type(body.get("event_type"))
            and event.recipients == body.get("recipients", []) and event.data == body.get("data", {})
            and event.key == body.get("key"))


def create():
    api_key = current_key()
    body = json_body(MAX_BODY_BYTES)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid event", ["body: must be an object"])
    unknown = sorted(set(body) - set(FIELDS))
    problems = [f"{name}: unknown field (declared: {', '.join(sorted(FIELDS))})" for name in unknown]
    if not isinstance(body.get("event_type"), str):
        problems.append("event_type: required (a string)" if "event_type" not in body
                        else "event_type: must be a string")
    idempotency_key = _idempotency_key(api_key.id)
    fields = {"recipients": body.get("recipients", []), "data": body.get("data", {}), "key": body.get("key"),
              "send_at": body.get("send_at"), "idempotency_key": idempotency_key}
    if isinstance(body.get("event_type"), str):
        try:
            event = check(body["event_type"], **fields)
        except EventValidationError as exc:
            problems += exc.problems
    if problems:
        raise ApiError(422, "invalid event", problems)
    session = get_session()
    event_id = insert_checked(session, event, initiator=api_key.actor)
    replayed = event_id is None
    if replayed:  # the Idempotency-Key was used: the first event stands
        first = session.scalars(select(OutboxEvent).where(OutboxEvent.idempotency_key == idempotency_key)).one()
        if not _same_request(first, body):
            raise ApiError(409, "this Idempotency-Key was used for a different event (id "
                                f"{first.id}); use a new key for a new event")
        event_id = first.id
    else:
        session.add(AuditLog(actor=api_key.actor, action="event.emit", object_type="event",
                             object_id=str(event_id), details={"event_type": event["event_type"]}))
    session.commit()
    response = jsonify(schemas.EventAccepted(id=event_id).model_dump())
    response.status_code = 202
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
