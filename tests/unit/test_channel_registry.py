"""The channel registry: a new channel is one module and one register() call, nothing else."""

from __future__ import annotations

from typing import ClassVar

import pytest

import vestnik.workers.channels as registry
from vestnik.shared.addresses import ADDRESS_FIELDS, SWITCH_FIELDS
from vestnik.shared.config import Settings
from vestnik.shared.models import Client, utcnow
from vestnik.workers.channels import CHANNELS, build_channels, register
from vestnik.workers.channels.base import Addressable, Channel, DeliveryError, Outcome, RenderedMessage
from vestnik.workers.channels.email import EmailChannel
from vestnik.workers.channels.telegram import TelegramChannel
from vestnik.workers.channels.webhook import WebhookChannel
from vestnik.workers.rules import plan_event


class SmsChannel(Channel):
    """What a third channel looks like: written outside ``workers/channels``, no other module touched."""

    name: ClassVar[str] = "sms"
    preference_field: ClassVar[str] = "notifications_telegram_enabled"  # a real one adds its own column
    body_maxlen: ClassVar[int] = 160

    def __init__(self, *, sender: str) -> None:
        self.sender = sender
        self.sent: list[tuple[str, str]] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> SmsChannel:
        return cls(sender=settings.email_from)

    def address_of(self, client: Addressable) -> str | None:
        return "+79990000000" if client.telegram_chat_id else None  # a real one would read a phone column

    def send(self, address: str, message: RenderedMessage) -> str:
        self.sent.append((address, message.text))
        return f"sms-{len(self.sent)}"


@pytest.fixture(autouse=True)
def restore_registry():
    before = dict(CHANNELS)
    yield
    CHANNELS.clear()
    CHANNELS.update(before)


def test_telegram_email_and_webhook_are_registered():
    assert CHANNELS == {"telegram": TelegramChannel, "email": EmailChannel, "webhook": WebhookChannel}


def test_the_wire_names_on_the_ground_floor_are_the_channels_own():
    """shared/addresses.py repeats what each channel declares (shared/ cannot import the registry)."""
    assert ADDRESS_FIELDS == {cls.address_field: name for name, cls in CHANNELS.items() if cls.address_field}
    assert SWITCH_FIELDS == {cls.switch_field: name for name, cls in CHANNELS.items()}


def test_every_channel_declares_what_it_supports():
    for cls in CHANNELS.values():
        assert cls.subject_mode in ("required", "optional", "none"), cls
        assert cls.title and cls.address_label and cls.switch_field, cls
        assert isinstance(cls.limit_rules(Settings()).overall, tuple), cls
        assert cls.connections(Settings()) > 0, cls


def test_a_third_channel_registers_and_is_built_without_editing_other_modules():
    register(SmsChannel)

    built = build_channels(Settings())

    assert set(built) == {"telegram", "email", "webhook", "sms"}
    assert isinstance(built["sms"], SmsChannel)
    assert built["sms"].send("+79990000000", RenderedMessage(notification_id=1, text="hi")) == "sms-1"
    assert registry.CHANNELS["sms"] is SmsChannel


def test_the_rules_plan_a_registered_channel_like_the_others():
    register(SmsChannel)
    client = Client(id=1, name="A", email="a@example.com", telegram_chat_id="1", locale="ru",
                    notifications_telegram_enabled=True, notifications_email_enabled=True,
                    allow_service_notifications=True)

    data = {"lesson_title": "X", "starts_at": "2026-11-25T16:00:00+03:00"}
    planned, _ = plan_event("lesson_cancelled", data, [1], [client], build_channels(Settings()), now=utcnow())

    assert sorted(p.channel for p in planned) == ["email", "sms", "telegram"]


def test_register_works_as_a_decorator():
    @register
    class WhatsAppChannel(SmsChannel):
        name: ClassVar[str] = "whatsapp"

    assert CHANNELS["whatsapp"] is WhatsAppChannel


def test_a_taken_name_is_not_silently_replaced():
    class Impostor(SmsChannel):
        name: ClassVar[str] = "telegram"

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)
    assert CHANNELS["telegram"] is TelegramChannel

    register(Impostor, replace=True)
    assert CHANNELS["telegram"] is Impostor


def test_only_channels_with_a_name_and_from_settings_register():
    class NoName(SmsChannel):
        name: ClassVar[str] = ""

    with pytest.raises(TypeError):
        register(NoName)
    with pytest.raises(TypeError):
        register(dict)  # type: ignore[arg-type]


def test_unconfigured_channels_are_built_and_fail_permanently_at_send():
    built = build_channels(Settings(telegram_token="", smtp_url=""))

    for name, expected in (("telegram", "VESTNIK_TELEGRAM_TOKEN"), ("email", "VESTNIK_SMTP_URL")):
        with pytest.raises(DeliveryError) as caught:
            built[name].send("1001" if name == "telegram" else "a@example.com",
                             RenderedMessage(notification_id=1, text="hi", subject="s"))
        assert caught.value.outcome is Outcome.permanent
        assert expected in caught.value.reason


def test_configured_channels_come_from_settings():
    built = build_channels(Settings(telegram_token="1:abc", telegram_api_base="http://127.0.0.1:9",
                                    smtp_url="smtps://user:pw@smtp.yandex.ru:465",
                                    email_from="noreply@school.example"))

    assert built["telegram"].describe()["api_base"] == "http://127.0.0.1:9"
    assert built["email"].describe() == {"name": "email", "configured": True, "host": "smtp.yandex.ru",
                                                "port": 465, "ssl": True, "from": "noreply@school.example",
                                                "connections_opened": 0}
    assert "1:abc" not in repr(built["telegram"]) and "pw" not in str(built["email"].describe())
