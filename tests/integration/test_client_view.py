"""shared/client_view.py: the light rows delivery reads answer as the ORM's Client does."""

from __future__ import annotations

from vestnik.shared import client_view
from vestnik.shared.addresses import ADDRESS_FIELDS
from vestnik.shared.models import Category, Client
from vestnik.workers.rules import allows_category, channel_refusal


class _Channel:
    def __init__(self, name: str) -> None:
        self.name = name

    def address_of(self, client):
        return (client.address(self.name) or "").strip() or None


def test_a_client_view_reads_as_the_orm_client(session_factory):
    with session_factory() as s:
        s.add_all([
            Client(id=1, name="Anna", locale="en", timezone="Asia/Tashkent", email=" a@example.com ",
                   telegram_chat_id="101", allow_marketing_notifications=True, quiet_hours_start_min=60,
                   quiet_hours_end_min=120),
            Client(id=2, name="Boris", email="b@example.com", notifications_telegram_enabled=False),
            Client(id=3, name="Vera"),
        ])
        s.flush()
        s.get(Client, 2).set_unreachable("email", "mailbox does not exist")
        s.commit()
    with session_factory() as s:
        views = client_view.load(s, [1, 2, 3, 99])
        orm = {c.id: c for c in s.query(Client).all()}
    assert sorted(views) == [1, 2, 3]  # an unknown id is left out
    for cid, view in views.items():
        c = orm[cid]
        for name in ("id", "name", "locale", "timezone", "allow_service_notifications",
                     "allow_marketing_notifications", "quiet_hours_start_min", "quiet_hours_end_min"):
            assert getattr(view, name) == getattr(c, name), name
        for field, channel in ADDRESS_FIELDS.items():
            assert getattr(view, field) == getattr(c, field)
            assert view.address(channel) == c.address(channel)
            assert view.channel_enabled(channel) == c.channel_enabled(channel)
            assert view.unreachable_reason(channel) == c.unreachable_reason(channel)
            assert channel_refusal(view, channel, _Channel(channel)) == channel_refusal(c, channel, _Channel(channel))
        for category in Category:
            assert allows_category(view, category) == allows_category(c, category)
    assert client_view.load(s, []) == {}
