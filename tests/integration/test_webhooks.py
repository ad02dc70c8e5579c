"""Inbound webhooks: signatures, idempotency, size limits, and emitting through the outbox."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from vestnik.shared.config import Settings
from vestnik.shared.models import Client, Notification, OutboxEvent
from vestnik.webapp import create_app
from vestnik.webapp.signatures import sign

SECRET, OLD_SECRET = "whsec-current-0123456789", "whsec-previous-0123456789"


@pytest.fixture
def app(session_factory):
    settings = Settings(secret_key="k" * 32, webhook_secrets=f"{SECRET},{OLD_SECRET}")
    app = create_app(settings, session_factory=session_factory, config={"TESTING": True})
    if "webhooks" not in app.blueprints:
        from vestnik.webapp import webhooks

        app.register_blueprint(webhooks.bp)
    with session_factory() as s:
        s.add(Client(id=7, name="Анна", email="a@example.com", telegram_chat_id="7007"))
        s.commit()
    return app


def post(client, path, payload, secret=SECRET, timestamp=None, raw=None):
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **sign(secret, body, timestamp)}
    return client.post(path, data=body, headers=headers)


PAYMENT = {"event_id": "bank-evt-1", "payment_id": "p-1", "invoice_id": "17", "client_id": 7, "amount": "4500.00",
           "currency": "RUB", "status": "succeeded"}


def events(session_factory):
    with session_factory() as s:
        return s.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()


def test_payment_callback_emits_payment_success_once(app, session_factory):
    c = app.test_client()
    first = post(c, "/webhooks/payments", PAYMENT)
    again = post(c, "/webhooks/payments", PAYMENT)  # the bank retries
    assert first.status_code == 200 and first.json["status"] == "accepted"
    assert again.status_code == 200 and again.json["status"] == "duplicate"
    [event] = events(session_factory)
    assert (event.event_type, event.key, event.recipients) == ("payment_success", "invoice:17", [7])
    assert event.data == {"amount": "4500.00", "currency": "RUB", "invoice_number": "17", "method": "sbp"}


def test_payment_without_client_id_is_resolved_from_the_invoice_notifications(app, session_factory):
    with session_factory() as s:
        s.add(Notification(recipient_id=7, channel="email", recipient_address="a@example.com",
                           event_type="invoice_created", template_code="INVOICE_CREATED", key="invoice:17"))
        s.commit()
    payload = {k: v for k, v in PAYMENT.items() if k != "client_id"}
    assert post(app.test_client(), "/webhooks/payments", payload).status_code == 200
    assert events(session_factory)[0].recipients == [7]


def test_the_previous_secret_works_during_rotation(app, session_factory):
    assert post(app.test_client(), "/webhooks/payments", PAYMENT, secret=OLD_SECRET).status_code == 200


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("wrong secret", {"secret": "not-the-secret"}),
        ("old timestamp", {"timestamp": int(time.time()) - 3600}),
        ("future timestamp", {"timestamp": int(time.time()) + 3600}),
    ],
)
def test_bad_signatures_get_401_and_emit_nothing(app, session_factory, case, kwargs):
    resp = post(app.test_client(), "/webhooks/payments", PAYMENT, **kwargs)
    assert resp.status_code == 401, case
    assert events(session_factory) == []


def test_tampered_body_and_missing_headers_get_401(app, session_factory):
    c = app.test_client()
    body = json.dumps(PAYMENT).encode()
    headers = sign(SECRET, body)
    tampered = body.replace(b"4500.00", b"1.00")
    assert c.post("/webhooks/payments", data=tampered, headers=headers).status_code == 401
    assert c.post("/webhooks/payments", data=body).status_code == 401
    assert events(session_factory) == []


def test_huge_body_gets_413(app, session_factory):
    raw = json.dumps({**PAYMENT, "pad": "x" * 100_000}).encode()
    assert post(app.test_client(), "/webhooks/payments", None, raw=raw).status_code == 413


def test_bad_payload_gets_422_with_the_reason(app, session_factory):
    c = app.test_client()
    resp = post(c, "/webhooks/payments", {"event_id": "e", "status": "succeeded"})
    assert resp.status_code == 422 and "missing field(s)" in resp.json["error"]
    resp = post(c, "/webhooks/payments", {**PAYMENT, "amount": "lots"})
    assert resp.status_code == 422 and resp.json["error"].startswith("amount: must be a number")
    assert post(c, "/webhooks/payments", None, raw=b"{not json").status_code == 422


def test_non_success_payment_status_is_ignored(app, session_factory):
    resp = post(app.test_client(), "/webhooks/payments", {**PAYMENT, "status": "pending"})
    assert resp.status_code == 200 and resp.json["status"] == "ignored"
    assert events(session_factory) == []


def test_booking_webhook_maps_types_to_events(app, session_factory):
    c = app.test_client()
    booking = {"id": "B-1", "client_id": 7, "service": "Пробное занятие",
               "starts_at": "2026-11-27T11:00:00+03:00", "ends_at": "2026-11-27T12:00:00+03:00"}
    assert post(c, "/webhooks/bookings", {"event_id": "b1", "type": "created", "booking": booking}).status_code == 200
    assert post(c, "/webhooks/bookings", {"event_id": "b2", "type": "cancelled", "booking": booking}).status_code == 200
    resp = post(c, "/webhooks/bookings", {"event_id": "b3", "type": "exploded", "booking": booking})
    assert resp.status_code == 422
    assert [(e.event_type, e.key) for e in events(session_factory)] == [
        ("booking_created", "booking:B-1"), ("booking_cancelled", "booking:B-1")]


def test_telegram_update_needs_the_secret_token_and_records_a_rating(app, session_factory):
    c = app.test_client()
    update = {"update_id": 555, "callback_query": {"id": "cb1", "data": "rate:B-1:5",
                                                   "from": {"id": 7007}, "message": {"chat": {"id": 7007}}}}
    assert c.post("/webhooks/telegram", json=update).status_code == 401
    token = app.extensions["vestnik_settings"].telegram_webhook_secret
    resp = c.post("/webhooks/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": token})
    assert resp.status_code == 200 and resp.json["method"] == "answerCallbackQuery"
    c.post("/webhooks/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": token})  # pressed twice
    [event] = events(session_factory)
    assert (event.event_type, event.data, event.recipients) == ("feedback_received",
                                                                {"booking_id": "B-1", "rating": 5}, [7])


def test_one_payment_notifies_once_whatever_its_transport_ids(app, session_factory):
    """A bank may send one payment under several event ids (a retry in a new envelope, a second channel)."""
    c = app.test_client()
    first = post(c, "/webhooks/payments", PAYMENT)
    again = [post(c, "/webhooks/payments", {**PAYMENT, **change}) for change in (
        {"event_id": "bank-evt-2"},
        {"event_id": "bank-evt-3", "status": "paid", "amount": 4500},
        {"event_id": "bank-evt-4", "client_id": "7"},
    )]
    assert first.json["status"] == "accepted"
    assert [r.status_code for r in again] == [200] * 3 and {r.json["status"] for r in again} == {"duplicate"}
    assert [e.event_type for e in events(session_factory)] == ["payment_success"]
    other = post(c, "/webhooks/payments", {**PAYMENT, "event_id": "bank-evt-5", "payment_id": "p-2"})
    assert other.json["status"] == "accepted"  # another payment of the same invoice is news
    assert len(events(session_factory)) == 2
