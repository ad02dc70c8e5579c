"""The HTTP API for a CRM that is not on Vestnik's database: ``/api/v1``.

Routes (the OpenAPI 3.1 document at ``/api/v1/openapi.json`` is generated
from the same pydantic models that validate them, ``webapp/api/openapi.py``):

- ``POST /events``: an event (202 with its id; ``Idempotency-Key`` makes a
  retry return the first event and create nothing);
- ``PUT``/``GET``/``DELETE /clients/{id}``: upsert (merge, never reset),
  read, forget;
- ``GET /notifications?client=&event=&status=``: what happened.

Every route but the document needs an API key (``Authorization: Bearer
vk_...``): 401 without or with an unknown key, 403 with a revoked one, 429
with ``Retry-After`` over ``VESTNIK_API_RATE_PER_MIN`` requests a minute per
key.  Bad input is a 422 with one entry per bad field.  An HTTP call is not
part of the CRM's database transaction: docs/integration.md says how
``Idempotency-Key`` makes retrying safe.
"""

from __future__ import annotations

from flask import Blueprint, Flask

from vestnik.webapp.api import auth, clients, errors, events, notifications, openapi

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.add_url_rule("/openapi.json", view_func=openapi.document, methods=["GET"])
bp.add_url_rule("/events", view_func=events.create, methods=["POST"])
bp.add_url_rule("/clients/<path:client_id>", view_func=clients.put, methods=["PUT"])
bp.add_url_rule("/clients/<path:client_id>", view_func=clients.get, methods=["GET"])
bp.add_url_rule("/clients/<path:client_id>", view_func=clients.delete, methods=["DELETE"])
bp.add_url_rule("/notifications", view_func=notifications.search, methods=["GET"])
bp.before_request(auth.authenticate)
errors.register(bp)


def init_app(app: Flask) -> None:
    from vestnik.webapp import csrf, get_settings

    with app.app_context():
        app.extensions["vestnik_api_limiter"] = auth.build_limiter(get_settings())
    for view in (events.create, clients.put, clients.delete):  # machine callers with API keys, no cookies
        csrf.exempt(view)
    app.register_blueprint(bp)
    errors.register_app(app)
