"""plan_event: the specification's channel rules, table-tested."""

from __future__ import annotations

from shared.models import Client
from workers.channels.base import Channel
from workers.rules import plan_event


class FakeChannel(Channel):
    def __init__(self, name: str, field: str, attr: str) -> None:
        self.name = name
        self.preference_field = field
        self.attr = attr

    def address_of(self, client):
        return getattr(client, self.attr)

    def send(self, address, message):  # pragma: no cover - not used
        raise NotImplementedError


CHANNELS = {
    "telegram": FakeChannel("telegram", "notifications_telegram_enabled", "telegram_chat_id"),
    "email": FakeChannel("email", "notifications_email_enabled", "email"),
}
LESSON = {"lesson_title": "X", "starts_at": "2026-11-25T16:00:00+03:00"}


def client(cid: int, **kw) -> Client:
    base = dict(id=cid, name=f"c{cid}", email=f"c{cid}@example.com", telegram_chat_id=str(1000 + cid),
                locale="ru", timezone="Europe/Moscow", notifications_telegram_enabled=True,
                notifications_email_enabled=True, allow_service_notifications=True,
                allow_marketing_notifications=False, telegram_unreachable_reason=None,
                email_unreachable_reason=None)
    base.update(kw)
    return Client(**base)


def channels_for(planned, rid):
    return sorted(p.channel for p in planned if p.recipient_id == rid)


def test_both_channels_when_both_allowed():
    planned, _ = plan_event("lesson_cancelled", LESSON, [1], [client(1)], CHANNELS)
    assert channels_for(planned, 1) == ["email", "telegram"]
    assert {p.template_code for p in planned} == {"LESSON_CANCELLED"}


def test_a_switched_off_channel_creates_nothing():
    clients = [client(1, notifications_email_enabled=False), client(2, notifications_telegram_enabled=False)]
    planned, skipped = plan_event("lesson_cancelled", LESSON, [1, 2], clients, CHANNELS)
    assert channels_for(planned, 1) == ["telegram"]
    assert channels_for(planned, 2) == ["email"]
    assert any(s.reason == "channel switched off by the client" for s in skipped)


def test_service_preference_off_blocks_service_events():
    planned, skipped = plan_event("lesson_cancelled", LESSON, [1], [client(1, allow_service_notifications=False)],
                                  CHANNELS)
    assert planned == [] and "service" in skipped[0].reason


def test_marketing_reaches_only_clients_who_allow_it():
    data = {"template_code": "ANNOUNCEMENT", "category": "marketing", "title": "t", "text": "x"}
    clients = [client(1), client(2, allow_marketing_notifications=True)]
    planned, _ = plan_event("mass_broadcast", data, [1, 2], clients, CHANNELS)
    assert {p.recipient_id for p in planned} == {2}
    assert {p.category for p in planned} == {"marketing"}


def test_missing_address_unreachable_and_unknown_clients_are_skipped_with_reasons():
    clients = [client(1, email=None), client(2, telegram_unreachable_reason="bot was blocked by the user")]
    planned, skipped = plan_event("lesson_cancelled", LESSON, [1, 2, 3, 1], clients, CHANNELS)
    assert channels_for(planned, 1) == ["telegram"]
    assert channels_for(planned, 2) == ["email"]
    reasons = {(s.recipient_id, s.reason.split(":")[0]) for s in skipped}
    assert (1, "no address") in reasons and (2, "address unreachable") in reasons and (3, "unknown client") in reasons
    assert len(planned) == 2  # the duplicate recipient id 1 is planned once
