"""The API's answers when something is wrong: JSON, one shape, the status that says what.

``{"error": "what happened", "problems": [{"field": "data.starts_at", "message": "..."}]}``;
``problems`` only on a 422, one entry per bad field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flask import Blueprint, Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from vestnik.shared.bounds import BoundsError


class ApiError(Exception):
    """Raised by a view: answered as ``status`` with ``message`` (and ``problems`` on a 422)."""

    def __init__(self, status: int, message: str, problems: Iterable[str] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = list(problems)
        self.headers = dict(headers or {})


def split_problem(problem: str) -> dict[str, str]:
    """``"data.x: must be ..."`` -> ``{"field": "data.x", "message": "must be ..."}``."""
    field, sep, message = problem.partition(": ")
    return {"field": field, "message": message} if sep else {"field": "", "message": problem}


def answer(status: int, message: str, problems: Iterable[str] = (), headers: Mapping[str, str] | None = None):
    body: dict[str, object] = {"error": message}
    listed = [split_problem(p) for p in problems]
    if listed:
        body["problems"] = listed
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _api_error(error: ApiError):
    return answer(error.status, error.message, error.problems, error.headers)


def _bounds_error(error: BoundsError):
    return answer(422, "invalid request", [str(error)])


def register(bp: Blueprint) -> None:
    bp.register_error_handler(ApiError, _api_error)
    bp.register_error_handler(BoundsError, _bounds_error)


def _http_error(error: HTTPException):
    """Werkzeug's errors (404 unknown route, 405, 413) as JSON under /api/, as before elsewhere."""
    if not request.path.startswith("/api/"):
        return error
    return answer(error.code or 500, error.description or error.name)


def register_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
