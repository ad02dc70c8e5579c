"""``/api/v1/clients/{id}``: upsert (PUT), read (GET), forget (DELETE).

``{id}`` is the CRM's own id (an integer or up to 64 of ``A-Za-z0-9._:@/+=#-``, e.g. a UUID;
``42`` and ``"42"`` are the same client, ``"042"`` is another: ``shared/client_ids.py``).  Every
answer names the client by that id, never by Vestnik's row key.
PUT merges: an absent field is never changed, so preferences a client chose
in the profile stay unless the body names them (``shared/client_record.py``).
DELETE forgets: contact data erased, history kept without personal data
(``shared/client_sync.py``); the answer says what was touched.
"""

from __future__ import annotations

from flask import jsonify

from vestnik.shared import client_sync
from vestnik.shared.client_record import record_problems
from vestnik.shared.models import AuditLog, utcnow
from vestnik.webapp import get_settings
from vestnik.webapp.api import schemas
from vestnik.webapp.api.auth import current_key
from vestnik.webapp.api.errors import ApiError
from vestnik.webapp.api.events import json_body
from vestnik.webapp.db import get_session
from vestnik.workers import notifications

MAX_BODY_BYTES = 64 * 1024


def _found(client_id: str):
    session = get_session()
    client = client_sync.find(session, client_id)
    if client is None:
        raise ApiError(404, f"no client with id {client_id!r}")
    return session, client


def put(client_id: str):
    api_key = current_key()
    body = json_body(MAX_BODY_BYTES)
    problems = record_problems(client_id, body)
    if problems:
        raise ApiError(422, "invalid client", problems)
    session = get_session()
    settings = get_settings()
    try:
        client, created = client_sync.upsert(session, client_id, body, default_locale=settings.default_locale,
                                             default_timezone=settings.default_timezone)
    except client_sync.UnknownClientId as exc:
        raise ApiError(422, "invalid client", [str(exc)]) from None
    session.add(AuditLog(actor=api_key.actor, action="client.create" if created else "client.update",
                         object_type="client", object_id=client.crm_id, details={"fields": sorted(body)}))
    session.commit()
    response = jsonify(schemas.Client.model_validate(client_sync.view(session, client)).model_dump())
    response.status_code = 201 if created else 200
    return response


def get(client_id: str):
    session, client = _found(client_id)
    view = schemas.Client.model_validate(client_sync.view(session, client)).model_dump()
    session.commit()  # the key's last use
    return jsonify(view)


def delete(client_id: str):
    api_key = current_key()
    session, client = _found(client_id)
    canceled = notifications.cancel_client(session, client.id, client_sync.FORGOTTEN, utcnow())
    erased = client_sync.forget(session, client)
    touched = {"notifications": erased, "canceled": canceled}
    session.add(AuditLog(actor=api_key.actor, action="client.forget", object_type="client",
                         object_id=client.crm_id, details=touched))
    session.commit()
    return jsonify(schemas.Forgotten(id=client.crm_id, **touched).model_dump())
