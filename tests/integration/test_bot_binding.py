"""Connecting Telegram: the deep link's token, /start, /stop and my_chat_member, through both update paths.

Updates are built by the fake Bot API in the shapes Telegram sends
(``push_start``, ``push_my_chat_member``, ``push_callback``); the webhook
tests post them with the secret-token header, the polling tests let a real
``vestnik bot`` process fetch them with getUpdates.
"""

from __future__ import annotations

import re
import signal
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from tests.integration.test_profile import csrf, make_settings, sign_in
from tests.processes import vestnik, wait_until
from vestnik.shared import client_auth
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import AuditLog, Client, ClientToken, OutboxEvent, utcnow
from vestnik.webapp import create_app
from vestnik.webapp.webhooks import TELEGRAM_SECRET_HEADER

CHAT = 5005


@pytest.fixture
def settings(bot_api, smtp_server):
    return make_settings(bot_api, smtp_server)


@pytest.fixture
def app(settings, session_factory):
    app = create_app(settings, session_factory=session_factory, config={"TESTING": True})
    with session_factory() as s:
        s.add_all([Client(id=1, name="Анна", email="anna@example.com", locale="ru"),
                   Client(id=2, name="Boris", email="boris@example.com", locale="en", telegram_chat_id="6006")])
        s.commit()
    yield app
    if "vestnik_sign_in_messenger" in app.extensions:
        app.extensions["vestnik_sign_in_messenger"].close()


def connect_link(c) -> str:
    page = c.get("/me/")
    assert c.post("/me/telegram/connect", data={"csrf_token": csrf(page.text)}).status_code == 302
    link = re.search(r'href="(https://t\.me/vestnik_fake_bot\?start=([\w-]+))"', c.get("/me/").text)
    assert link is not None and len(link.group(2)) <= 64
    return link.group(2)


def webhook(app, update):
    token = app.extensions["vestnik_settings"].telegram_webhook_secret
    resp = app.test_client().post("/webhooks/telegram", json=update, headers={TELEGRAM_SECRET_HEADER: token})
    assert resp.status_code == 200, resp.text
    return resp.json


def client(session_factory, client_id=1) -> Client:
    with session_factory() as s:
        return s.get(Client, client_id)


def test_start_with_the_link_token_binds_the_chat_through_the_webhook(app, bot_api, smtp_server, session_factory):
    c = app.test_client()
    sign_in(c, smtp_server)
    token = connect_link(c)
    assert c.get("/me/telegram/status").json == {"connected": False}

    update_ = bot_api.push_start(CHAT, token, language_code="en")
    reply = webhook(app, update_)
    assert reply["method"] == "sendMessage" and reply["chat_id"] == CHAT and "Telegram подключён" in reply["text"]
    anna = client(session_factory)
    assert (anna.telegram_chat_id, anna.notifications_telegram_enabled) == (str(CHAT), True)
    assert c.get("/me/telegram/status").json == {"connected": True}
    assert "Telegram подключён" in c.get("/me/").text

    assert "Telegram подключён" in webhook(app, update_)["text"]  # Telegram redelivers: still "done"
    stolen = bot_api.push_start(7777, token)  # the used link from someone else's chat
    assert "устарела" in webhook(app, stolen)["text"]
    assert client(session_factory).telegram_chat_id == str(CHAT)
    with session_factory() as s:
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "client.telegram_connected")).one()
        assert entry.actor == "client:1" and entry.details["chat_id"] == str(CHAT)


def test_forged_and_expired_tokens_bind_nothing(app, bot_api, smtp_server, session_factory):
    c = app.test_client()
    sign_in(c, smtp_server)
    token = connect_link(c)
    forged = token[:22] + ("A" * 20 if token[22:] != "A" * 20 else "B" * 20)
    assert "expired" in webhook(app, bot_api.push_start(CHAT, forged, language_code="en"))["text"]
    with session_factory() as s:
        s.execute(update(ClientToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    assert "устарела" in webhook(app, bot_api.push_start(CHAT, token))["text"]
    assert client(session_factory).telegram_chat_id is None


def test_a_chat_belongs_to_one_client(app, bot_api, settings, session_factory):
    with session_factory() as s:
        token = client_auth.issue_connect_token(s, settings.secret_key, 1, 900, utcnow())
        s.commit()
    webhook(app, bot_api.push_start(6006, token))  # Boris's chat connects to Anna
    assert client(session_factory, 1).telegram_chat_id == "6006"
    assert client(session_factory, 2).telegram_chat_id is None


def test_kicked_marks_unreachable_start_makes_reachable_stop_turns_off(app, bot_api, session_factory):
    assert webhook(app, bot_api.push_my_chat_member(6006, "kicked")) == {"ok": True}
    boris = client(session_factory, 2)
    assert "blocked the bot" in boris.telegram_unreachable_reason

    reply = webhook(app, bot_api.push_start(6006))
    assert "Welcome back" in reply["text"]
    boris = client(session_factory, 2)
    assert (boris.telegram_unreachable_reason, boris.notifications_telegram_enabled) == (None, True)

    assert "off" in webhook(app, bot_api.push_message(6006, "/stop"))["text"]
    assert client(session_factory, 2).notifications_telegram_enabled is False
    assert "Welcome back" in webhook(app, bot_api.push_start(6006))["text"]
    assert client(session_factory, 2).notifications_telegram_enabled is True
    with session_factory() as s:
        actions = s.scalars(select(AuditLog.action).where(AuditLog.actor == "client:2").order_by(AuditLog.id)).all()
    assert actions == ["client.telegram_unreachable", "client.telegram_restarted", "client.preferences",
                       "client.telegram_restarted"]


def test_an_unknown_chat_is_told_where_to_connect(app, bot_api):
    assert "http://profile.test/me" in webhook(app, bot_api.push_start(4242))["text"]


# ------------------------------------------------------------------ the same through `vestnik bot` (long polling)


def test_vestnik_bot_polls_binds_answers_and_stops_on_sigterm(bot_api, smtp_server, pg_url, tmp_path):
    settings = make_settings(bot_api, smtp_server)
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with factory() as s:
        s.add(Client(id=1, name="Анна", email="anna@example.com", locale="ru"))
        s.flush()
        token = client_auth.issue_connect_token(s, settings.secret_key, 1, 900, utcnow())
        s.commit()
    env = {"VESTNIK_DATABASE_URL": pg_url, "VESTNIK_TELEGRAM_TOKEN": bot_api.token,
           "VESTNIK_TELEGRAM_API_BASE": bot_api.url, "VESTNIK_SECRET_KEY": settings.secret_key,
           "VESTNIK_PUBLIC_URL": "http://profile.test"}
    bot = vestnik("bot", "bot", "--poll-timeout", "5", env=env, log_dir=tmp_path)
    try:
        bot_api.push_start(CHAT, token)

        def fresh() -> Client:
            with factory() as s:
                return s.get(Client, 1)

        wait_until(lambda: fresh().telegram_chat_id == str(CHAT), 20, message="the chat bound by the poller")
        bot_api.wait_for(lambda m: any("Telegram подключён" in x["text"] for x in m if x["chat_id"] == str(CHAT)))

        bot_api.push_my_chat_member(CHAT, "kicked")
        wait_until(lambda: fresh().telegram_unreachable_reason is not None, 20, message="unreachable")
        bot_api.push_start(CHAT)
        wait_until(lambda: fresh().telegram_unreachable_reason is None, 20, message="reachable again")
        bot_api.push_message(CHAT, "/stop")
        wait_until(lambda: fresh().notifications_telegram_enabled is False, 20, message="Telegram off")

        bot_api.push_callback(CHAT, "rate:B-9:4")  # the rating buttons work through polling too
        wait_until(lambda: bot_api.callback_answers(), 20, message="answerCallbackQuery")
        with factory() as s:
            event = s.scalars(select(OutboxEvent).where(OutboxEvent.event_type == "feedback_received")).one()
            assert event.data == {"booking_id": "B-9", "rating": 4} and event.recipients == [1]
    finally:
        bot.signal(signal.SIGTERM)
        code = bot.popen.wait(timeout=15)
        output = bot.output()
        bot.stop()
        engine.dispose()
    assert code == 0, output
    assert "bot polling stopped" in output
    assert bot_api.pending_updates() == 0  # every handled update was confirmed before exit


def test_vestnik_bot_refuses_to_poll_while_a_webhook_is_set(bot_api, smtp_server, sqlite_url, tmp_path):
    bot_api._handle(bot_api.token, "setWebhook", {"url": "https://example.test/webhooks/telegram"}, None)
    env = {"VESTNIK_DATABASE_URL": sqlite_url, "VESTNIK_TELEGRAM_TOKEN": bot_api.token,
           "VESTNIK_TELEGRAM_API_BASE": bot_api.url, "VESTNIK_SECRET_KEY": "s" * 40}
    bot = vestnik("bot", "bot", env=env, log_dir=tmp_path)
    code = bot.popen.wait(timeout=30)
    output = bot.output()
    bot.stop()
    assert code == 2 and "delete-webhook" in output
