"""Adding a channel is one module and one registration: nothing else changes."""

from __future__ import annotations

from typing import ClassVar

from shared.config import Settings
from shared.models import Client
from workers import channels as registry
from workers.channels.base import Channel
from workers.rules import plan_event


class SmsChannel(Channel):
    name: ClassVar[str] = "sms"
    preference_field: ClassVar[str] = "notifications_telegram_enabled"  # a real one would add its own column

    @classmethod
    def from_settings(cls, settings: Settings) -> SmsChannel:
        return cls()

    def address_of(self, client):
        return "+79990000000"

    def send(self, address, message):
        return "sms-1"


def test_a_third_channel_is_built_and_planned_without_touching_the_others():
    registry.register(SmsChannel)
    try:
        built = registry.build_channels(Settings())
        assert set(built) == {"telegram", "email", "sms"}
        planned, _ = plan_event("lesson_cancelled", {"lesson_title": "X", "starts_at": "2026-11-25T16:00:00+03:00"},
                                [1], [Client(id=1, name="A", email="a@x.io", telegram_chat_id="1", locale="ru",
                                             notifications_telegram_enabled=True, notifications_email_enabled=True,
                                             allow_service_notifications=True)], built,
                                now=__import__("shared.models", fromlist=["utcnow"]).utcnow())
        assert sorted(p.channel for p in planned) == ["email", "sms", "telegram"]
    finally:
        registry.CHANNELS.pop("sms")
