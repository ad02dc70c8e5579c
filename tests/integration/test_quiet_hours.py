"""Quiet hours on the send path and at planning, on both backends (a fixed clock, a recording channel)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import Client, DeliveryAttempt, Notification, QuietHours
from vestnik.shared.seeds import install_default_templates
from vestnik.workers import notifications
from vestnik.workers.channels.base import Channel
from vestnik.workers.delivery import Delivery
from vestnik.workers.handling import handle_event

NIGHT = datetime(2031, 3, 5, 14, 30, tzinfo=UTC)  # 00:30 in Vladivostok, 17:30 in Moscow
MORNING = datetime(2031, 3, 5, 23, 0, tzinfo=UTC)  # 09:00 in Vladivostok


class Recording(Channel):
    name = "telegram"
    preference_field = "notifications_telegram_enabled"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def address_of(self, client):
        return client.telegram_chat_id

    def send(self, address, message):
        self.sent.append(address)
        return str(len(self.sent))


@pytest.fixture
def night(session_factory):
    with session_factory() as s:
        install_default_templates(s)
        s.add(Client(id=1, name="Владивосток", telegram_chat_id="501", timezone="Asia/Vladivostok",
                     allow_marketing_notifications=True))
        s.add(Client(id=2, name="Москва", telegram_chat_id="502", timezone="Europe/Moscow",
                     allow_marketing_notifications=True))
        s.commit()
    return session_factory


def _due_row(factory, client_id: int, category: str, event_type: str = "mass_broadcast") -> int:
    """A row that became due now (a retry, the end of a quota wait), as the send path finds it."""
    with factory() as s:
        added = notifications.add_pending(s, [dict(
            recipient_id=client_id, channel="telegram", recipient_address=str(500 + client_id),
            event_type=event_type, template_code="ANNOUNCEMENT", payload_json={"title": "T", "text": "x"},
            category=category, locale="ru", send_at=NIGHT, step=f"{category}-{client_id}", attempts=0,
            created_at=NIGHT, updated_at=NIGHT, initiator="system")])
        s.commit()
        return added[0].id


def _delivery(factory, channel, at=NIGHT) -> Delivery:
    settings = Settings(secret_key="k" * 32, default_timezone="Europe/Moscow")
    return Delivery(factory, {"telegram": channel}, settings, clock=lambda: at)


def test_the_send_path_gives_back_marketing_that_came_due_inside_quiet_hours(night):
    channel = Recording()
    held = _due_row(night, 1, "marketing")
    awake = _due_row(night, 2, "marketing")
    service = _due_row(night, 1, "service")
    delivery = _delivery(night, channel)
    results = {nid: delivery.deliver(nid) for nid in (held, awake, service)}
    assert results[held].outcome == "held" and results[held].status == "pending"
    assert channel.sent == ["502", "501"]  # Moscow's marketing (17:30 there) and the service message went
    with night() as s:
        row = s.get(Notification, held)
        assert (row.status, row.send_at, row.attempts, row.queued_at) == ("pending", MORNING, 0, None)
        assert row.last_error.startswith("quiet hours: waits until 2031-03-05 23:00 UTC")
        assert s.scalar(select(DeliveryAttempt).where(DeliveryAttempt.notification_id == held)) is None
    # At the end of the window the same row goes.
    assert _delivery(night, channel, MORNING).deliver(held).status == "sent"


def test_planning_holds_by_the_admins_category_setting_and_never_holds_urgent_news(night):
    with night() as s:  # the admin gives service messages quiet hours too
        s.add(QuietHours(category="service", enabled=True, start_min=21 * 60, end_min=9 * 60))
        cancelled = emit(s, "lesson_cancelled", recipients=[1],
                         data={"lesson_title": "Шахматы", "starts_at": "2031-03-06T10:00:00+10:00"})
        invoice = emit(s, "invoice_created", recipients=[1],
                       data={"invoice_number": "INV-1", "amount": "100.00", "currency": "RUB",
                             "due_date": "2031-03-20", "payment_url": "https://pay.example/1"})
        s.commit()
    channels = {"telegram": Recording()}
    assert handle_event(night, channels, cancelled, now=NIGHT).status == "processed"
    assert handle_event(night, channels, invoice, now=NIGHT).status == "processed"
    with night() as s:
        rows = {(r.event_type, r.step): r.send_at for r in s.scalars(select(Notification))}
    assert rows[("lesson_cancelled", "notice")] == NIGHT  # urgent news: now
    assert rows[("invoice_created", "notice")] == MORNING  # held until 09:00 in Vladivostok
