"""Groups and channels as recipients (workers/chats.py) on PostgreSQL, against the fake Bot API:
verified through getMe / getChat / getChatMember; a post is a notification without a client that goes
through the one delivery path; a press on its callback button is recorded once per person; a chat that
removed the bot (my_chat_member, or a 403 on send) becomes unreachable with the reason; an event a
chat subscribed to posts there."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from sqlalchemy import select, update

from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import Chat, Notification, NotificationReaction, NotificationTemplate
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app
from vestnik.webapp.webhooks import TELEGRAM_SECRET_HEADER
from vestnik.workers import chats
from vestnik.workers.channels import build_channels
from vestnik.workers.channels.telegram import TelegramChannel
from vestnik.workers.delivery import Delivery
from vestnik.workers.handling import handle_event

GROUP, CHANNEL = -1001234567890, -1009876543210
BUTTONS = "Заказать -> https://shop.example.uz/order/{{ lesson_title|urlencode }}\n" \
          "Понятно -> callback:ok | Вопрос -> callback:question"


def call(api, method: str, **params) -> tuple[int, dict]:
    request = urllib.request.Request(f"{api.url}/bot{api.token}/{method}", data=json.dumps(params).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the fake on 127.0.0.1
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def settings(bot_api) -> Settings:
    return Settings(secret_key="s" * 40, telegram_token=bot_api.token, telegram_api_base=bot_api.url)


@pytest.fixture
def telegram(settings):
    channel = TelegramChannel.from_settings(settings)
    yield channel
    channel.close()


@pytest.fixture
def factory(session_factory):
    with session_factory() as s:
        install_default_templates(s)
        s.execute(update(NotificationTemplate).where(NotificationTemplate.code == "LESSON_CANCELLED",
                                                     NotificationTemplate.channel == "telegram")
                  .values(buttons=BUTTONS))
        s.commit()
    return session_factory


def test_the_fake_answers_getchat_and_getchatmember_as_telegram_does(bot_api):
    bot_api.add_chat(GROUP, "supergroup", "Учителя", bot_status="member")
    bot_api.add_chat(CHANNEL, "channel", "Новости", username="school_news")
    status, body = call(bot_api, "getChat", chat_id=GROUP)
    assert status == 200 and body["ok"] is True
    assert {"id": GROUP, "type": "supergroup", "title": "Учителя"}.items() <= body["result"].items()
    assert body["result"]["permissions"]["can_send_messages"] is True
    bot_id = call(bot_api, "getMe")[1]["result"]["id"]
    member = call(bot_api, "getChatMember", chat_id=GROUP, user_id=bot_id)[1]["result"]
    assert member == {"user": bot_api.bot_user, "status": "member"}
    admin = call(bot_api, "getChatMember", chat_id="@school_news", user_id=bot_id)[1]["result"]
    assert admin["status"] == "administrator" and admin["can_post_messages"] is True
    assert call(bot_api, "getChat", chat_id=-100555) == (
        400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
    bot_api.set_bot_status(GROUP, "kicked")
    assert call(bot_api, "getChat", chat_id=GROUP)[1]["description"] == \
        "Forbidden: bot was kicked from the supergroup chat"
    assert call(bot_api, "sendMessage", chat_id=GROUP, text="x")[0] == 403
    bot_api.set_bot_status(CHANNEL, "left")
    assert call(bot_api, "sendMessage", chat_id=CHANNEL, text="x")[1]["description"] == \
        "Forbidden: bot is not a member of the channel chat"


def test_a_chat_is_verified_through_the_bot_api(factory, bot_api, telegram):
    bot_api.add_chat(GROUP, "supergroup", "Учителя", bot_status="member")
    bot_api.add_chat(CHANNEL, "channel", "Новости", username="school_news", can_post_messages=False)
    with factory() as s:
        group = chats.verify(s, telegram, str(GROUP), actor="admin:1")
        channel = chats.verify(s, telegram, "@school_news", actor="admin:1")
        s.commit()
        assert (group.address, group.kind, group.title, group.bot_status, group.can_post) == (
            str(GROUP), "supergroup", "Учителя", "member", True)
        # a channel's administrator without "post messages" may not post
        assert (channel.address, channel.kind, channel.can_post) == (str(CHANNEL), "channel", False)
        with pytest.raises(chats.ChatError, match="chat not found: the bot cannot see this chat"):
            chats.verify(s, telegram, "-100555", actor="admin:1")
        with pytest.raises(chats.ChatError, match="may not post"):
            chats.post(s, [channel], "LESSON_CANCELLED", {}, send_at=None, initiator="admin:1")


def _deliver_all(factory, settings, ids):
    delivery = Delivery(factory, build_channels(settings), settings)
    try:
        return [delivery.deliver(n).outcome for n in ids]
    finally:
        delivery.close()


def test_a_post_with_buttons_reaches_a_group_and_a_channel_and_a_press_counts_once(factory, settings, bot_api,
                                                                                   telegram):
    bot_api.add_chat(GROUP, "supergroup", "Учителя", bot_status="member")
    bot_api.add_chat(CHANNEL, "channel", "Новости")
    with factory() as s:
        targets = [chats.verify(s, telegram, str(GROUP), actor="admin:1"),
                   chats.verify(s, telegram, str(CHANNEL), actor="admin:1")]
        ids = chats.post(s, targets, "LESSON_CANCELLED",
                         {"lesson_title": "Шахматы", "starts_at": "2026-12-03T13:00:00+00:00"},
                         send_at=None, initiator="admin:1")
        s.commit()
    outcome = _deliver_all(factory, settings, ids)
    with factory() as s:
        errors = [s.get(Notification, i).last_error for i in ids]
    assert outcome == ["sent", "sent"], errors
    posts = {m["chat_id"]: m for m in bot_api.wait_for(lambda m: len(m) >= 2)}
    assert set(posts) == {str(GROUP), str(CHANNEL)}
    assert "Шахматы" in posts[str(GROUP)]["text"]
    assert posts[str(CHANNEL)]["reply_markup"]["inline_keyboard"] == [
        [{"text": "Заказать", "url": "https://shop.example.uz/order/%D0%A8%D0%B0%D1%85%D0%BC%D0%B0%D1%82%D1%8B"}],
        [{"text": "Понятно", "callback_data": "btn:ok"}, {"text": "Вопрос", "callback_data": "btn:question"}]]
    with factory() as s:  # the history shows posts like any notification
        rows = s.scalars(select(Notification).order_by(Notification.id)).all()
        assert [(r.recipient_id, r.recipient_address, r.status, r.event_type, r.initiator) for r in rows] == [
            (None, str(GROUP), "sent", "lesson_cancelled", "admin:1"),
            (None, str(CHANNEL), "sent", "lesson_cancelled", "admin:1")]

    app = create_app(settings, session_factory=factory, config={"TESTING": True})
    secret = app.extensions["vestnik_settings"].telegram_webhook_secret

    def press(data: str, who: int) -> dict:
        update_ = bot_api.push_callback(GROUP, data, message_id=posts[str(GROUP)]["message_id"], from_id=who)
        return app.test_client().post("/webhooks/telegram", json=update_,
                                      headers={TELEGRAM_SECRET_HEADER: secret}).json

    assert press("btn:ok", 501)["text"] == "✓"
    assert press("btn:ok", 501)["text"] == "✓"  # the same person again: answered, not counted twice
    press("btn:ok", 502)
    with factory() as s:
        counted = s.execute(select(NotificationReaction.notification_id, NotificationReaction.value,
                                   NotificationReaction.actor).order_by(NotificationReaction.id)).all()
    assert counted == [(ids[0], "btn:ok", "telegram:501"), (ids[0], "btn:ok", "telegram:502")]


def test_a_chat_that_removed_the_bot_is_unreachable_with_the_reason(factory, settings, bot_api, telegram):
    bot_api.add_chat(GROUP, "supergroup", "Учителя")
    bot_api.add_chat(CHANNEL, "channel", "Новости")
    data = {"lesson_title": "Шахматы", "starts_at": "2026-12-03T13:00:00+00:00"}
    with factory() as s:
        group = chats.verify(s, telegram, str(GROUP), actor="admin:1")
        channel = chats.verify(s, telegram, str(CHANNEL), actor="admin:1")
        waiting = chats.post(s, [group], "LESSON_CANCELLED", data, send_at=None, initiator="admin:1")
        to_channel = chats.post(s, [channel], "LESSON_CANCELLED", data, send_at=None, initiator="admin:1")
        s.commit()
    # The group's admin removes the bot: Telegram tells the webhook.
    app = create_app(settings, session_factory=factory, config={"TESTING": True})
    secret = app.extensions["vestnik_settings"].telegram_webhook_secret
    update_ = bot_api.set_bot_status(GROUP, "left")
    assert app.test_client().post("/webhooks/telegram", json=update_,
                                  headers={TELEGRAM_SECRET_HEADER: secret}).status_code == 200
    # The channel removes it without the update reaching us: the send's 403 says so.
    bot_api.set_bot_status(CHANNEL, "kicked")
    assert _deliver_all(factory, settings, waiting + to_channel) == ["canceled", "permanent"]
    with factory() as s:
        group, channel = s.get(Chat, group.id), s.get(Chat, channel.id)
        assert group.unreachable_reason == "the bot was removed from the chat (my_chat_member: left, by Chat admin)"
        assert channel.unreachable_reason == "sendMessage: 403 Forbidden: bot was kicked from the channel chat"
        assert s.get(Notification, waiting[0]).last_error.startswith("not sent: the chat is unreachable: the bot")
        with pytest.raises(chats.ChatError, match="unreachable"):
            chats.post(s, [group], "LESSON_CANCELLED", data, send_at=None, initiator="admin:1")
    # Added back: the update makes it reachable again.
    update_ = bot_api.set_bot_status(GROUP, "administrator")
    app.test_client().post("/webhooks/telegram", json=update_, headers={TELEGRAM_SECRET_HEADER: secret})
    with factory() as s:
        group = s.get(Chat, group.id)
        assert (group.unreachable_reason, group.bot_status, group.can_post) == (None, "administrator", True)


def test_an_event_a_staff_group_subscribed_to_posts_there(factory, settings, bot_api, telegram):
    from vestnik.shared.models import Client

    bot_api.add_chat(GROUP, "supergroup", "Бухгалтерия")
    with factory() as s:
        s.add(Client(id=7, name="Анна", email="anna@example.ru"))
        group = chats.verify(s, telegram, str(GROUP), actor="admin:1")
        group.subscriptions = {"balance_changed": "LOW_BALANCE"}
        crossed = emit(s, "balance_changed", recipients=[7], data={
            "balance": "350.00", "previous_balance": "1200.00", "threshold": "500.00", "currency": "RUB"})
        still_above = emit(s, "balance_changed", recipients=[7], data={
            "balance": "900.00", "previous_balance": "1200.00", "threshold": "500.00", "currency": "RUB"})
        s.commit()
    channels = build_channels(settings)
    made = handle_event(factory, channels, crossed).created
    assert handle_event(factory, channels, still_above).created == []
    to_group = [n for n, channel, address, _ in made if address == str(GROUP)]
    assert len(to_group) == 1
    assert _deliver_all(factory, settings, to_group) == ["sent"]
    [post] = bot_api.messages(GROUP)
    assert "350" in post["text"]
    with factory() as s:
        row = s.get(Notification, to_group[0])
        assert (row.event_type, row.step, row.recipient_id) == ("balance_changed", f"chat:{group.id}", None)


def test_the_admin_registers_a_chat_chooses_its_events_and_posts(factory, settings, bot_api):
    from tests.integration.test_admin import sign_in_admin, token
    from vestnik.shared.models import AdminUser, AuditLog

    bot_api.add_chat(GROUP, "supergroup", "Учителя", bot_status="member")
    bot_api.add_chat(CHANNEL, "channel", "Новости", username="school_news", bot_status="member")
    c = sign_in_admin(create_app(settings, session_factory=factory, config={"TESTING": True}), factory)
    page = c.get("/admin/chats/").text
    csrf = token(page)
    assert c.post("/admin/chats/add", data={"ref": str(GROUP)}).status_code == 400  # no CSRF token: refused
    c.post("/admin/chats/add", data={"csrf_token": csrf, "ref": str(GROUP)})
    c.post("/admin/chats/add", data={"csrf_token": csrf, "ref": "@school_news"})
    page = c.post("/admin/chats/add", data={"csrf_token": csrf, "ref": "-100555"}, follow_redirects=True).text
    assert "Not added: getChat: 400 Bad Request: chat not found" in page
    assert "may not post" in page  # the channel has the bot as a member only
    with factory() as s:
        group = s.scalar(select(Chat).where(Chat.address == str(GROUP)))
        assert (group.title, group.can_post) == ("Учителя", True)
    c.post(f"/admin/chats/{group.id}/subscribe", data={"csrf_token": csrf, "event": "balance_changed",
                                                      "template": "LOW_BALANCE"})
    page = c.post("/admin/chats/post", data={
        "csrf_token": csrf, "chat": str(group.id), "template": "LESSON_CANCELLED", "when": "at",
        "at": "2099-01-02T09:30", "data": json.dumps({"lesson_title": "Шахматы"})}, follow_redirects=True).text
    assert "1 post(s) of LESSON_CANCELLED queued (2099-01-02 09:30 UTC)." in page
    with factory() as s:
        assert s.get(Chat, group.id).subscriptions == {"balance_changed": "LOW_BALANCE"}
        row = s.scalar(select(Notification))
        assert (row.recipient_address, row.status, row.send_at.isoformat(), row.initiator) == (
            str(GROUP), "pending", "2099-01-02T09:30:00+00:00", "admin:1")
        assert {a.action for a in s.scalars(select(AuditLog))} >= {"chat.add", "chat.events", "chat.post"}
    history = c.get(f"/admin/notification/?flt0_chat_equals={GROUP}").text
    assert "Учителя" in history and f"/admin/notification/details/?id={row.id}" in history
    with factory() as s:  # who pressed what shows on the message's page
        s.add(NotificationReaction(notification_id=row.id, kind="button", value="btn:ok", actor="telegram:501"))
        s.commit()
    details = c.get(f"/admin/notification/details/?id={row.id}").text
    assert "Buttons pressed" in details and "telegram:501" in details and "btn:ok" in details
    with factory() as s:  # the chat's link into the history works in Russian too, and filters
        s.execute(update(AdminUser).values(locale="ru"))
        other = Notification(recipient_id=None, channel="telegram", recipient_address="700", event_type="x",
                             template_code="X", step="test-1", status="sent", initiator="admin:1")
        s.add(other)
        s.commit()
    history = c.get(f"/admin/notification/?flt0_chat_equals={GROUP}").text
    assert "Учителя" in history and f"/admin/notification/details/?id={row.id}" in history
    assert f"/admin/notification/details/?id={other.id}" not in history
    # Removing the chat cancels its posts still to be sent (the 2099 one), with the reason; history stays.
    c.post(f"/admin/chats/{group.id}/remove", data={"csrf_token": csrf})
    with factory() as s:
        post = s.get(Notification, row.id)
        assert (post.status, post.last_error) == ("canceled", "the chat was removed from the registry")
        assert s.get(Notification, other.id).status == "sent" and s.get(Chat, group.id) is None


def test_the_template_editor_previews_the_buttons_and_names_a_bad_one_at_the_field(factory, settings):
    from tests.integration.test_admin import sign_in_admin, token

    c = sign_in_admin(create_app(settings, session_factory=factory, config={"TESTING": True}), factory)
    csrf = token(c.get("/admin/template/new/").text)
    draft = {"code": "LESSON_CANCELLED", "channel": "telegram", "locale": "ru", "body": "Отменено: {{ lesson_title }}",
             "buttons": "Расписание -> https://school.example/{{ lesson_title|urlencode }}\nДа -> callback:yes"}
    answer = c.post("/admin/template/preview/", data=draft, headers={"X-CSRFToken": csrf}).json
    assert answer["problems"] == {}
    assert answer["buttons"][1] == [{"text": "Да", "callback": "btn:yes"}]
    assert answer["buttons"][0][0]["url"].startswith("https://school.example/")
    bad = c.post("/admin/template/preview/", data={**draft, "buttons": "Да -> callback:" + "x" * 70},
                 headers={"X-CSRFToken": csrf}).json
    assert bad["problems"]["buttons"] == ["row 1, button 1: callback data is 74 bytes with the prefix 'btn:'; "
                                          "Telegram takes at most 64"]
    email = c.post("/admin/template/preview/", data={**draft, "channel": "email"}, headers={"X-CSRFToken": csrf}).json
    assert "leave this empty" in email["problems"]["buttons"][0]
