"""The OpenAPI 3.1 document of ``/api/v1``, generated from the models that validate and answer.

Request bodies are the registry's own models (``shared/events.py``: one
schema per event type, chosen by ``event_type``; ``shared/client_record.py``
for clients); answers are ``webapp/api/schemas.py``'s, which the views build
their JSON through.  Nothing here is written by hand but the list of routes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from flask import jsonify
from pydantic import ConfigDict, create_model
from pydantic import Field as Declared
from pydantic.json_schema import models_json_schema

from vestnik.shared import wire
from vestnik.shared.client_record import ClientFields
from vestnik.shared.events import Recipients, all_event_types
from vestnik.webapp.api import schemas

REF = "#/components/schemas/{model}"
Key = wire.KEY.type
Timestamp = wire.TIMESTAMP.type


def event_request_models() -> list[type]:
    """One request model per event type: its ``event_type`` constant and its data model."""
    models = []
    for spec in all_event_types():
        models.append(create_model(
            f"Event_{spec.name}",
            __config__=ConfigDict(extra="forbid", title=f"Event {spec.name}", json_schema_extra={
                "description": spec.description}),
            event_type=(Literal[spec.name], ...),  # type: ignore[valid-type]
            recipients=(Recipients, Declared(default_factory=list, description="the CRM's client ids"
                                             + (f" (or data.{spec.targets_field})" if spec.targets_field else ""))),
            data=(spec.model, ...),
            key=(Key | None, Declared(None, description="groups events about one thing (lesson:42) for cancel "
                                                        "and reschedule")),
            send_at=(Timestamp | None, Declared(None, description="notifications wait until then (within a year)")),
        ))
    return models


def _json(schema_name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(model=schema_name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    why = {400: "the body is not JSON", 401: "no API key, or an unknown one", 403: "the API key was revoked",
           404: "no such client", 409: "the Idempotency-Key was used for a different event",
           413: "the body is too large", 415: "the body is not application/json",
           422: "bad input: one entry per bad field in `problems`",
           429: "too many requests with this key; wait Retry-After seconds",
           503: "the rate limiter (Redis) cannot be reached; retry after Retry-After seconds"}
    out: dict[str, Any] = {}
    for code in codes:
        out[str(code)] = {"description": why[code], "content": _json("Error")}
        if code in (429, 503):
            out[str(code)]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return out


_CLIENT_ID = {"name": "client_id", "in": "path", "required": True,
              "description": "the CRM's own id: an integer, or a string of up to 64 characters (a UUID works); "
                             '42 and "42" are the same client',
              "schema": wire.CLIENT_ID.json_schema()}


@lru_cache(maxsize=1)
def build() -> dict[str, Any]:
    events = event_request_models()
    outputs = [schemas.EventAccepted, schemas.Error, schemas.Client, schemas.Forgotten, schemas.NotificationPage]
    _, top = models_json_schema([(m, "validation") for m in [*events, ClientFields, *outputs]], ref_template=REF)
    components = top["$defs"]
    components["EventRequest"] = {
        "oneOf": [{"$ref": REF.format(model=m.__name__)} for m in events],
        "discriminator": {"propertyName": "event_type",
                          "mapping": {m.__name__.removeprefix("Event_"): REF.format(model=m.__name__)
                                      for m in events}},
    }
    auth_errors = (401, 403, 429, 503)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Vestnik API", "version": "1",
                 "description": "Events and clients from a CRM that is not on Vestnik's database. An HTTP call is "
                                "not part of the CRM's transaction: retry with the same Idempotency-Key."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "vk_..."},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "paths": {
            "/events": {"post": {
                "operationId": "emitEvent", "summary": "Record an event (Vestnik decides who is told what)",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                "description": "a retry with the same key returns the first event and creates "
                                               "nothing (at most 150 characters)",
                                "schema": {"type": "string", "minLength": 1, "maxLength": 150,
                                           "pattern": wire.KEY_PATTERN}}],
                "requestBody": {"required": True, "content": _json("EventRequest")},
                "responses": {"202": {"description": "accepted (or replayed: header Idempotent-Replayed)",
                                      "content": _json("EventAccepted")},
                              **_errors(400, *auth_errors, 409, 413, 415, 422)},
            }},
            "/clients/{client_id}": {
                "parameters": [_CLIENT_ID],
                "put": {"operationId": "upsertClient",
                        "summary": "Create or update a client; absent fields are never changed",
                        "requestBody": {"required": True, "content": _json("ClientFields")},
                        "responses": {"200": {"description": "updated", "content": _json("Client")},
                                      "201": {"description": "created", "content": _json("Client")},
                                      **_errors(400, *auth_errors, 413, 415, 422)}},
                "get": {"operationId": "getClient", "summary": "A client as Vestnik knows it",
                        "responses": {"200": {"description": "the client", "content": _json("Client")},
                                      **_errors(*auth_errors, 404)}},
                "delete": {"operationId": "forgetClient",
                           "summary": "Forget a client: contact data erased, history kept without personal data",
                           "responses": {"200": {"description": "forgotten", "content": _json("Forgotten")},
                                         **_errors(*auth_errors, 404)}},
            },
            "/notifications": {"get": {
                "operationId": "searchNotifications", "summary": "What happened to notifications, newest first",
                "parameters": [
                    {"name": "client", "in": "query", "schema": _CLIENT_ID["schema"]},
                    {"name": "event", "in": "query", "description": "an event id",
                     "schema": {"type": "integer", "minimum": 1, "maximum": wire.BIGINT_MAX}},
                    {"name": "event_type", "in": "query", "schema": {"type": "string", "maxLength": 100}},
                    {"name": "status", "in": "query",
                     "schema": {"enum": ["pending", "processing", "sent", "failed", "canceled"]}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                    {"name": "before", "in": "query", "description": "the previous page's next",
                     "schema": {"type": "integer", "minimum": 1, "maximum": wire.BIGINT_MAX}},
                ],
                "responses": {"200": {"description": "a page", "content": _json("NotificationPage")},
                              **_errors(*auth_errors, 422)},
            }},
        },
    }


def document():
    return jsonify(build())
