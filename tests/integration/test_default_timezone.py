"""VESTNIK_DEFAULT_TIMEZONE is the zone of a client without one, wherever a message is rendered."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import Client
from vestnik.shared.seeds import install_default_templates
from vestnik.workers.channels.base import Channel
from vestnik.workers.delivery import Delivery
from vestnik.workers.handling import handle_event

NOW = datetime(2031, 3, 5, 9, 0, tzinfo=UTC)
STARTS = "2031-03-06T10:00:00+00:00"  # 20:00 in Vladivostok, 13:00 in Moscow, 10:00 in UTC


class Recording(Channel):
    name = "telegram"
    preference_field = "notifications_telegram_enabled"

    def __init__(self) -> None:
        self.texts: list[str] = []

    def address_of(self, client):
        return client.telegram_chat_id

    def send(self, address, message):
        self.texts.append(message.text)
        return str(len(self.texts))


@pytest.mark.parametrize(("zone", "shown"), [("Asia/Vladivostok", "20:00"), ("Europe/Moscow", "13:00")])
def test_a_client_without_a_time_zone_reads_times_in_the_configured_default(session_factory, zone, shown):
    with session_factory() as s:
        install_default_templates(s)
        s.add(Client(id=1, name="Анна", telegram_chat_id="501", timezone=""))
        event_id = emit(s, "lesson_cancelled", recipients=[1], data={"lesson_title": "Шахматы", "starts_at": STARTS})
        s.commit()
    channel = Recording()
    settings = Settings(secret_key="k" * 32, default_timezone=zone)
    assert handle_event(session_factory, {"telegram": channel}, event_id, now=NOW,
                        default_zone=zone).status == "processed"
    Delivery(session_factory, {"telegram": channel}, settings, clock=lambda: NOW).pump("telegram")
    assert len(channel.texts) == 1
    assert shown in channel.texts[0], channel.texts[0]
