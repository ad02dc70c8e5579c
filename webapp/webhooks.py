"""Inbound webhooks: payment provider, booking system, Telegram bot updates.

Each verifies its caller before reading the body as data (HMAC over the raw
body with a timestamp window; Telegram's secret-token header), refuses
oversized bodies however they are sent (chunked too), reads every field it uses
through ``shared/bounds`` (a bad one is a 422 naming it), is idempotent (on the
payment for payments, on the provider's event id otherwise), and emits through
the outbox in its own transaction: the same path as CRM code.  Answers:
200 done (or a duplicate), 401 bad signature, 413 too large, 422 bad payload
(with the reason), 409 a phone that names more than one client.  A booking or
a payment may name its client by ``phone`` (E.164, ``bounds.phone``) instead of
``client_id``: a phone no client has is a 422, a phone two clients share a 409,
each saying so; Vestnik never picks one.  CSRF does not apply: these are machine callers that
authenticate by signature.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from vestnik.outbox import emit
from vestnik.shared import bounds, client_ids
from vestnik.shared.bounds import BoundsError
from vestnik.shared.errors import EventValidationError
from vestnik.shared.models import Client, Notification
from vestnik.shared.wire import CLIENT_ID
from vestnik.webapp import csrf, get_settings
from vestnik.webapp.boundaries import read_body
from vestnik.webapp.db import get_session
from vestnik.webapp.signatures import SignatureError, verify

log = logging.getLogger("vestnik.webhooks")
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

MAX_BODY_BYTES = 64 * 1024
_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)
TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name


class BadPayload(Exception):
    pass


class AmbiguousClient(Exception):
    """A phone that more than one client has: the webhook cannot tell which one is meant."""


def _problem(status: int, message: str):
    return jsonify({"ok": False, "error": message}), status


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested past the parser's depth
        raise BadPayload(f"body is not JSON: {getattr(exc, 'msg', None) or type(exc).__name__}") from None
    if not isinstance(payload, dict):
        raise BadPayload("body must be a JSON object")
    return payload


def _signed_json() -> dict[str, Any]:
    body = read_body(MAX_BODY_BYTES)
    verify(request.headers, body, get_settings().webhook_secret_list)
    return _json_object(body)


def _require(payload: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if payload.get(n) in (None, "")]
    if missing:
        raise BadPayload("missing field(s): " + ", ".join(missing))


def _ref(payload: dict[str, Any], name: str, where: str = "", *, max_chars: int = 100) -> str:
    """A provider's reference (an event, payment, invoice or booking id): short one-line text.

    A JSON number is read as its digits; anything else (a list, true) is refused by name.
    """
    value = payload.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(bounds.integer(value, where + name))
    return bounds.text(value, where + name, min_chars=1, max_chars=max_chars)


def _guarded(handler):
    """Turn the common failures into the right status codes (one place)."""

    def wrapper():
        try:
            return handler()
        except SignatureError as exc:
            log.warning("webhook signature refused", extra={"action": "webhook.unauthorized",
                                                            "path": request.path, "reason": str(exc)})
            return _problem(401, f"bad signature: {exc}")
        except RequestEntityTooLarge:
            return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
        except (BadPayload, BoundsError, EventValidationError) as exc:
            return _problem(422, str(exc))
        except AmbiguousClient as exc:
            return _problem(409, str(exc))

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
    _ref(p, "event_id")
    payment_id, invoice_id = _ref(p, "payment_id"), _ref(p, "invoice_id")
    status = bounds.text(p["status"], "status", max_chars=40)
    if status.lower() not in ("succeeded", "success", "paid", "confirmed"):
        return jsonify({"ok": True, "status": "ignored", "reason": f"status {status!r}"}), 200
    amount = bounds.amount(p["amount"], "amount")
    currency = bounds.text(p["currency"], "currency", max_chars=3)
    if not _CURRENCY.fullmatch(currency):
        raise BoundsError("currency", f"must be a three-letter ISO 4217 code such as RUB, got {currency!r}")
    key = f"invoice:{invoice_id}"
    client_id = _client_id(p["client_id"], "client_id") if p.get("client_id") not in (None, "") else None
    if client_id is None and p.get("phone") not in (None, ""):
        client_id = _client_by_phone(p["phone"], "phone")
    recipients = [client_id] if client_id is not None else _invoice_clients(key)
    if not recipients:
        raise BadPayload(f"no client known for invoice {invoice_id!r}; send client_id or phone")
    # Once per payment: the provider may send one payment under several event ids (a retry with a new
    # envelope, a second notification channel), so the payment, not the delivery, is the idempotency key.
    return _emit_once(
        "payment_success", source="payments", provider_event_id=f"payment:{payment_id}", recipients=recipients,
        data={"amount": str(amount), "currency": currency, "invoice_number": invoice_id, "method": "sbp"},
        key=key,
    )


def _client_id(value: Any, field: str) -> int | str:
    """A client named by the CRM's id: an integer (or its decimal text) or a string id such as a UUID."""
    if not client_ids.valid(value):
        raise BoundsError(field, CLIENT_ID.error)
    key = client_ids.client_key(value)
    return key if key is not None else value


def _client_by_phone(value: Any, field: str) -> int | str:
    """The CRM id of the one client with this phone (E.164 after bounds.phone); refused by name when none or
    several have it."""
    number = bounds.phone(value, field)
    found = get_session().scalars(
        select(Client.crm_id).where(Client.phone == number, Client.forgotten_at.is_(None)).order_by(Client.id)
        .limit(5)
    ).all()
    if not found:
        raise BadPayload(f"{field}: no client has the phone {number}; sync the client with its phone "
                         "(PUT /api/v1/clients/{id}, upsert_clients, the CSV import) or send client_id")
    if len(found) > 1:
        shown = ", ".join(str(i) for i in found[:4]) + (", ..." if len(found) > 4 else "")
        raise AmbiguousClient(f"{field}: {number} is the phone of {'more than 4' if len(found) > 4 else len(found)} "
                              f"clients (ids {shown}); send client_id to say which one")
    key = client_ids.client_key(found[0])
    return key if key is not None else found[0]


def _invoice_clients(key: str) -> list[int | str]:
    """Who an invoice was issued to (CRM ids), from the notifications of its invoice_created event."""
    session = get_session()
    rows = session.scalars(
        select(Notification.recipient_id).where(Notification.key == key, Notification.recipient_id.is_not(None))
        .distinct().limit(100)
    ).all()
    shown = client_ids.crm_ids(session, rows)
    return [k if k > 0 else shown[k] for k in sorted(rows, key=abs) if k > 0 or k in shown]


_BOOKING_TYPES = {"created": "booking_created", "moved": "booking_moved", "cancelled": "booking_cancelled",
                  "canceled": "booking_cancelled"}


@bp.post("/bookings")
@csrf.exempt
@_guarded
def bookings():
    """Booking system: {event_id, type: created|moved|cancelled,
    booking: {id, client_id or phone, service, starts_at, ...}} (client_id wins when both are given)."""
    p = _signed_json()
    _require(p, "event_id", "type", "booking")
    event_id = _ref(p, "event_id")
    kind = p["type"].lower() if isinstance(p["type"], str) else p["type"]
    event_type = _BOOKING_TYPES[bounds.choice(kind, "type", _BOOKING_TYPES)]
    b = p["booking"]
    if not isinstance(b, dict):
        raise BadPayload("booking must be an object")
    _require(b, "id", "service", "starts_at")
    booking_id = _ref(b, "id", "booking.")
    if b.get("client_id") not in (None, ""):
        client_id = _client_id(b["client_id"], "booking.client_id")
    elif b.get("phone") not in (None, ""):
        client_id = _client_by_phone(b["phone"], "booking.phone")
    else:
        raise BadPayload("missing field(s): booking.client_id or booking.phone")
    fields = ("service", "starts_at") if event_type == "booking_cancelled" else (
        "service", "starts_at", "ends_at", "place")
    data = {"booking_id": booking_id, **{f: b[f] for f in fields if b.get(f) not in (None, "")}}
    # The event schema checks the rest (times aware and within range, text storable), naming booking fields.
    return _emit_once(event_type, source="bookings", provider_event_id=event_id,
                      recipients=[client_id], data=data, key=f"booking:{booking_id}")


@bp.post("/telegram")
@csrf.exempt
def telegram():
    """Bot API updates (setWebhook with secret_token): button answers, commands."""
    from vestnik.workers.bot import handle_update

    settings = get_settings()
    # Bytes, not str: compare_digest refuses non-ASCII text with a TypeError (a 500 before authentication).
    given = request.headers.get(TELEGRAM_SECRET_HEADER, "").encode("latin-1", "replace")[:256]
    if not settings.secret_key or not hmac.compare_digest(given, settings.telegram_webhook_secret.encode()):
        return _problem(401, "bad secret token")
    try:
        update = _json_object(read_body(MAX_BODY_BYTES))
    except RequestEntityTooLarge:
        return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
    except BadPayload:
        return _problem(422, "not a Telegram update")
    if "update_id" not in update:
        return _problem(422, "not a Telegram update")
    session = get_session()
    try:
        reply = handle_update(session, update, settings=settings)
    except BoundsError as exc:
        return _problem(422, f"not a Telegram update: {exc}")
    session.commit()
    if reply is not None:
        # Answering inside the webhook response is allowed by the Bot API and needs no extra call.
        return jsonify({"method": reply.method, **reply.params}), 200
    return jsonify({"ok": True}), 200
