"""Inbound webhooks: payment provider, booking system, Telegram bot updates.

Each verifies its caller before reading the body as data (HMAC over the raw
body with a timestamp window; Telegram's secret-token header), refuses
oversized bodies, is idempotent on the provider's event id, and emits through
the outbox in its own transaction: the same path as CRM code.  Answers:
200 done (or a duplicate), 401 bad signature, 413 too large, 422 bad payload
(with the reason).  CSRF does not apply: these are machine callers that
authenticate by signature.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from vestnik.outbox import emit
from vestnik.shared.errors import EventValidationError
from vestnik.shared.models import Notification
from vestnik.webapp import csrf, get_settings
from vestnik.webapp.db import get_session
from vestnik.webapp.signatures import SignatureError, verify

log = logging.getLogger("vestnik.webhooks")
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

MAX_BODY_BYTES = 64 * 1024
TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name


class BadPayload(Exception):
    pass


def _problem(status: int, message: str):
    return jsonify({"ok": False, "error": message}), status


def _signed_json() -> dict[str, Any]:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise BadPayload("__too_large__")
    body = request.get_data(cache=True)
    if len(body) > MAX_BODY_BYTES:
        raise BadPayload("__too_large__")
    verify(request.headers, body, get_settings().webhook_secret_list)
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadPayload(f"body is not JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from None
    if not isinstance(payload, dict):
        raise BadPayload("body must be a JSON object")
    return payload


def _require(payload: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if payload.get(n) in (None, "")]
    if missing:
        raise BadPayload("missing field(s): " + ", ".join(missing))


def _guarded(handler):
    """Turn the common failures into the right status codes (one place)."""

    def wrapper():
        try:
            return handler()
        except SignatureError as exc:
            log.warning("webhook signature refused", extra={"action": "webhook.unauthorized",
                                                            "path": request.path, "reason": str(exc)})
            return _problem(401, f"bad signature: {exc}")
        except BadPayload as exc:
            if str(exc) == "__too_large__":
                return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
            return _problem(422, str(exc))
        except EventValidationError as exc:
            return _problem(422, str(exc))

    wrapper.__name__ = handler.__name__
    return wrapper


def _emit_once(event_type: str, *, source: str, provider_event_id: str, **kwargs: Any):
    session = get_session()
    event_id = emit(session, event_type, idempotency_key=f"{source}:{provider_event_id}",
                    initiator=f"webhook:{source}", **kwargs)
    session.commit()
    if event_id is None:
        return jsonify({"ok": True, "status": "duplicate"}), 200
    return jsonify({"ok": True, "status": "accepted", "event_id": event_id}), 200


@bp.post("/payments")
@csrf.exempt
@_guarded
def payments():
    """SBP-style bank callback: {event_id, payment_id, invoice_id, amount, currency, status[, client_id]}."""
    p = _signed_json()
    _require(p, "event_id", "payment_id", "invoice_id", "amount", "currency", "status")
    if str(p["status"]).lower() not in ("succeeded", "success", "paid", "confirmed"):
        return jsonify({"ok": True, "status": "ignored", "reason": f"status {p['status']!r}"}), 200
    key = f"invoice:{p['invoice_id']}"
    recipients = [int(p["client_id"])] if str(p.get("client_id", "")).isdigit() else _invoice_clients(key)
    if not recipients:
        raise BadPayload(f"no client known for invoice {p['invoice_id']!r}; send client_id")
    return _emit_once(
        "payment_success", source="payments", provider_event_id=str(p["event_id"]), recipients=recipients,
        data={"amount": str(p["amount"]), "currency": str(p["currency"]), "invoice_number": str(p["invoice_id"]),
              "method": "sbp"},
        key=key,
    )


def _invoice_clients(key: str) -> list[int]:
    """Who an invoice was issued to, from the notifications of its invoice_created event."""
    rows = get_session().scalars(
        select(Notification.recipient_id).where(Notification.key == key).distinct().limit(100)
    ).all()
    return sorted(rows)


_BOOKING_TYPES = {"created": "booking_created", "moved": "booking_moved", "cancelled": "booking_cancelled",
                  "canceled": "booking_cancelled"}


@bp.post("/bookings")
@csrf.exempt
@_guarded
def bookings():
    """Booking system: {event_id, type: created|moved|cancelled, booking: {id, client_id, service, starts_at, ...}}."""
    p = _signed_json()
    _require(p, "event_id", "type", "booking")
    event_type = _BOOKING_TYPES.get(str(p["type"]).lower())
    if event_type is None:
        raise BadPayload(f"type must be one of created, moved, cancelled; got {p['type']!r}")
    b = p["booking"]
    if not isinstance(b, dict):
        raise BadPayload("booking must be an object")
    _require(b, "id", "client_id", "service", "starts_at")
    if not str(b["client_id"]).isdigit():
        raise BadPayload("booking.client_id must be a client id")
    fields = ("service", "starts_at") if event_type == "booking_cancelled" else (
        "service", "starts_at", "ends_at", "place")
    data = {"booking_id": str(b["id"]), **{f: b[f] for f in fields if b.get(f) not in (None, "")}}
    return _emit_once(event_type, source="bookings", provider_event_id=str(p["event_id"]),
                      recipients=[int(b["client_id"])], data=data, key=f"booking:{b['id']}")


@bp.post("/telegram")
@csrf.exempt
def telegram():
    """Bot API updates (setWebhook with secret_token): button answers, commands."""
    from vestnik.workers.bot import handle_update

    settings = get_settings()
    given = request.headers.get(TELEGRAM_SECRET_HEADER, "")
    if not settings.secret_key or not hmac.compare_digest(given, settings.telegram_webhook_secret):
        return _problem(401, "bad secret token")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
    update = request.get_json(silent=True)
    if not isinstance(update, dict) or "update_id" not in update:
        return _problem(422, "not a Telegram update")
    session = get_session()
    reply = handle_update(session, update, settings=settings)
    session.commit()
    if reply is not None:
        # Answering inside the webhook response is allowed by the Bot API and needs no extra call.
        return jsonify({"method": reply.method, **reply.params}), 200
    return jsonify({"ok": True}), 200
