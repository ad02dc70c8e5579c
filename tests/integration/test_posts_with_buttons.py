"""Posts with admin-defined inline buttons to a Telegram group and a channel (registered as recipients
by their negative chat ids), through the real Telegram channel to the fake Bot API, which checks the
reply_markup as the real one does; a callback press is recorded once per person; the admin's form
names a button Telegram would refuse."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update

from tests.integration.test_admin import PASSWORD, login, token
from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import AdminUser, Client, NotificationReaction, NotificationTemplate
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app
from vestnik.webapp.webhooks import TELEGRAM_SECRET_HEADER
from vestnik.workers.channels import build_channels
from vestnik.workers.delivery import Delivery
from vestnik.workers.handling import handle_event

GROUP, CHANNEL = -1001234567890, -1009876543210
BUTTONS = "Расписание -> https://school.example/schedule/{{ lesson_title|urlencode }}\n" \
          "Понятно -> callback:ok | Вопрос -> callback:question"


@pytest.fixture
def settings(bot_api) -> Settings:
    return Settings(secret_key="s" * 40, telegram_token=bot_api.token, telegram_api_base=bot_api.url)


@pytest.fixture
def factory(session_factory):
    with session_factory() as s:
        install_default_templates(s)
        s.add_all([Client(id=50, name="Учителя", telegram_chat_id=str(GROUP)),
                   Client(id=51, name="Новости школы", telegram_chat_id=str(CHANNEL))])
        s.execute(update(NotificationTemplate).where(NotificationTemplate.code == "LESSON_CANCELLED",
                                                     NotificationTemplate.channel == "telegram")
                  .values(buttons=BUTTONS))
        s.commit()
    return session_factory


def test_a_post_with_url_and_callback_buttons_reaches_a_group_and_a_channel(factory, settings, bot_api):
    with factory() as s:
        starts = datetime(2026, 12, 3, 13, tzinfo=UTC).isoformat()
        event_id = emit(s, "lesson_cancelled", recipients=[50, 51],
                        data={"lesson_title": "Шахматы", "starts_at": starts})
        s.commit()
    result = handle_event(factory, build_channels(settings), event_id)
    delivery = Delivery(factory, build_channels(settings), settings)
    try:
        assert [delivery.deliver(n).outcome for n, *_ in result.created] == ["sent", "sent"]
    finally:
        delivery.close()
    posts = {m["chat_id"]: m for m in bot_api.wait_for(lambda m: len(m) >= 2)}
    assert set(posts) == {str(GROUP), str(CHANNEL)}
    keyboard = posts[str(GROUP)]["reply_markup"]["inline_keyboard"]
    schedule = "https://school.example/schedule/%D0%A8%D0%B0%D1%85%D0%BC%D0%B0%D1%82%D1%8B"
    assert keyboard == [[{"text": "Расписание", "url": schedule}],
                        [{"text": "Понятно", "callback_data": "btn:ok"},
                         {"text": "Вопрос", "callback_data": "btn:question"}]]

    app = create_app(settings, session_factory=factory, config={"TESTING": True})
    secret = app.extensions["vestnik_settings"].telegram_webhook_secret
    message_id = posts[str(GROUP)]["message_id"]

    def press(data: str, who: int) -> dict:
        update_ = bot_api.push_callback(GROUP, data, message_id=message_id, from_id=who)
        return app.test_client().post("/webhooks/telegram", json=update_,
                                      headers={TELEGRAM_SECRET_HEADER: secret}).json

    assert press("btn:ok", 501)["text"] == "✓"
    press("btn:ok", 501)  # the same person again: not counted twice
    press("btn:ok", 502)
    press("btn:question", 501)
    with factory() as s:
        counted = s.execute(select(NotificationReaction.value, NotificationReaction.actor)
                            .order_by(NotificationReaction.id)).all()
    assert counted == [("btn:ok", "telegram:501"), ("btn:ok", "telegram:502"), ("btn:question", "telegram:501")]


def test_a_group_gets_twenty_posts_a_minute():
    """25 posts to one group: the limiter's group key (a negative chat id) gives 20 a minute."""
    from vestnik.workers.limits import build_limiter

    limiter = build_limiter(Settings(telegram_rate_per_s=1000, telegram_chat_rate_per_s=1000))
    grants = limiter.reserve("telegram", [str(GROUP)] * 25, horizon_s=120.0)
    times = sorted(g.at for g in grants if g.granted)
    assert len(times) >= 20
    assert all(b - a >= 60.0 - 1e-6 for a, b in zip(times, times[20:], strict=False))  # any 21 span a minute


@pytest.mark.parametrize(("markup", "says"), [
    ({"inline_keyboard": [[{"text": "x", "url": "javascript:alert(1)"}]]}, "BUTTON_URL_INVALID"),
    ({"inline_keyboard": [[{"text": "x", "callback_data": "d" * 65}]]}, "BUTTON_DATA_INVALID"),
    ({"inline_keyboard": [[{"text": "x", "callback_data": "a", "url": "https://x.uz"}]]}, "Text buttons"),
    ({"inline_keyboard": [[{"text": str(i), "callback_data": str(i)} for i in range(101)]]}, "too long"),
])
def test_the_fake_bot_api_refuses_markup_as_telegram_does(bot_api, markup, says):
    body = json.dumps({"chat_id": GROUP, "text": "x", "reply_markup": markup}).encode()
    request = urllib.request.Request(f"{bot_api.url}/bot{bot_api.token}/sendMessage", data=body,
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 - the fake on 127.0.0.1
    assert error.value.code == 400 and says in json.loads(error.value.read())["description"]


def test_the_admin_names_a_button_telegram_would_refuse_at_the_field(factory):
    from werkzeug.security import generate_password_hash

    app = create_app(Settings(secret_key="k" * 32), session_factory=factory, config={"TESTING": True})
    if "auth" not in app.blueprints:
        from vestnik.webapp import admin

        admin.init_app(app)
    with factory() as s:
        s.add(AdminUser(email="admin@school.test", password_hash=generate_password_hash(PASSWORD), role="admin"))
        template_id = s.scalar(select(NotificationTemplate.id).where(NotificationTemplate.code == "LESSON_CANCELLED",
                                                                      NotificationTemplate.channel == "telegram",
                                                                      NotificationTemplate.locale == "ru"))
        s.commit()
    c = app.test_client()
    login(c)
    url = f"/admin/template/edit/?id={template_id}"
    page = c.get(url).text
    form = {"csrf_token": token(page), "code": "LESSON_CANCELLED", "channel": "telegram", "locale": "ru",
            "category": "service", "name": "x", "body": "Занятие {{ lesson_title }} отменено",
            "buttons": "Ok -> callback:ok | Bad -> javascript:alert(1)", "is_active": "y"}
    resp = c.post(url, data=form)
    assert resp.status_code == 200 and "row 1, button 2: the link must start with http://" in resp.text
    resp = c.post(url, data={**form, "buttons": "Ok -> callback:ok"})
    assert resp.status_code == 302
    with factory() as s:
        assert s.get(NotificationTemplate, template_id).buttons == "Ok -> callback:ok"
        assert s.scalar(select(func.count()).select_from(NotificationReaction)) == 0
    assert re.search(r"Telegram buttons", c.get(url).text)
