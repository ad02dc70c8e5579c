"""The web app's edge: every query string, form field and path number is bounded before a view runs.

One place for what every request must satisfy, whatever view it reaches
(Flask-Admin's, the profile's, a webhook's):

- ``<int:...>`` in a URL matches ASCII digits within BIGINT only (Werkzeug's own
  converter takes ``١٢٣`` and 30-digit numbers, which then fail in the database);
  anything else is "no such page", a 404;
- every query-string and form field name and value is text without NUL, other
  control characters or lone surrogates, and within ``MAX_FIELD_CHARS``; a
  field that is not gets a 400 naming it, before any view or database work;
- a view that reads a number, an amount, a time or a choice parses it with
  :mod:`vestnik.shared.bounds`; the :class:`~vestnik.shared.bounds.BoundsError`
  it may raise becomes a 400 naming the field here (JSON for machine callers
  under ``/webhooks`` and ``/api``, a page for people).

Request bodies are bounded by ``MAX_CONTENT_LENGTH`` and, however they are sent
(``Content-Length`` or chunked), read through :func:`read_body`.
"""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import BaseConverter, ValidationError

from vestnik.shared import bounds
from vestnik.shared.bounds import BoundsError

#: the longest single form or query value (a template body is the largest thing an admin types)
MAX_FIELD_CHARS = 100_000
#: the longest field name
MAX_FIELD_NAME_CHARS = 200


class BoundedIntConverter(BaseConverter):
    """``<int:x>``: ASCII digits only, 1..BIGINT (ids); anything else does not match the route."""

    regex = r"[0-9]{1,19}"
    weight = 50

    def to_python(self, value: str) -> int:
        try:
            return bounds.identifier(value)
        except BoundsError:
            raise ValidationError() from None

    def to_url(self, value: object) -> str:
        return str(int(value))  # type: ignore[call-overload]


#: endpoint -> the largest body it takes, where that is more than MAX_CONTENT_LENGTH (an admin's file upload)
LARGE_BODIES: dict[str, int] = {}


def allow_large_body() -> None:
    """The endpoint's own body limit (LARGE_BODIES), set before anything reads the body (CSRF reads the form)."""
    if request.endpoint in LARGE_BODIES:
        request.max_content_length = LARGE_BODIES[request.endpoint]


def check_fields() -> None:
    """Every query-string and form field of this request is storable, bounded text (else BoundsError)."""
    for where, fields in (("query", request.args), ("form", request.form if _has_form() else None)):
        if fields is None:
            continue
        for name, value in fields.items(multi=True):
            shown = bounds.text(name, f"{where} field name", max_chars=MAX_FIELD_NAME_CHARS, strip=False)
            bounds.text(value, shown, max_chars=MAX_FIELD_CHARS, multiline=True, strip=False)


def _has_form() -> bool:
    return request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data")


def read_body(limit_bytes: int) -> bytes:
    """The raw request body, at most ``limit_bytes`` however it is sent (chunked included); else 413."""
    if request.content_length is not None and request.content_length > limit_bytes:
        raise RequestEntityTooLarge()
    # Read one byte past the limit from the stream: a chunked body has no Content-Length to trust.
    body = request.stream.read(limit_bytes + 1)
    if len(body) > limit_bytes:
        raise RequestEntityTooLarge()
    return body


def wants_json() -> bool:
    return request.path.startswith(("/webhooks/", "/api/")) or request.accept_mimetypes.best == "application/json"


def bounds_error(error: BoundsError):
    """A value out of bounds: 400 naming the field."""
    if wants_json():
        return jsonify({"ok": False, "error": str(error), "field": error.field}), 400
    return render_template("error.html", title="Bad request", message=str(error)), 400


def init_app(app: Flask) -> None:
    # Before any blueprint adds rules: the converter is looked up as each rule is added.
    app.url_map.converters["int"] = BoundedIntConverter
    app.before_request_funcs.setdefault(None, []).insert(0, allow_large_body)  # first of all
    app.before_request(check_fields)
    app.register_error_handler(BoundsError, bounds_error)
