"""A client who reads Uzbek (Latin script) gets every text in Uzbek: notifications by Telegram (at the
fake Bot API) and email (at the SMTP sink), the bot's replies, the sign-in email, the profile and the
unsubscribe button; a missing Uzbek template falls back as VESTNIK_LOCALE_FALLBACK says, the history
records the locale sent, and the admin's template list shows what is missing."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from tests.integration.test_admin import sign_in_admin
from tests.integration.test_profile import csrf, link_from_mail, request_link
from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import Client, Notification, NotificationTemplate
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app
from vestnik.webapp.webhooks import TELEGRAM_SECRET_HEADER
from vestnik.workers.channels import build_channels
from vestnik.workers.delivery import Delivery
from vestnik.workers.handling import handle_event

CHAT = 7001


@pytest.fixture
def settings(bot_api, smtp_server) -> Settings:
    return Settings(secret_key="s" * 40, smtp_url=smtp_server.url, telegram_token=bot_api.token,
                    telegram_api_base=bot_api.url, telegram_bot_username="vestnik_fake_bot",
                    public_url="http://profile.test")


@pytest.fixture
def factory(session_factory):
    with session_factory() as s:
        install_default_templates(s)
        s.add(Client(id=1, name="Dilnoza", email="dilnoza@example.uz", telegram_chat_id=str(CHAT),
                     locale="uz-latn", timezone="Asia/Tashkent"))
        s.commit()
    return session_factory


def deliver_event(factory, settings, event_type: str, data: dict) -> list[int]:
    with factory() as s:
        event_id = emit(s, event_type, recipients=[1], data=data)
        s.commit()
    result = handle_event(factory, build_channels(settings), event_id)
    delivery = Delivery(factory, build_channels(settings), settings)
    now = datetime.now(UTC)
    due = [n for n, _channel, _address, at in result.created if at is None or at <= now]  # not the reminders
    try:
        for notification_id in due:
            assert delivery.deliver(notification_id).outcome == "sent"
    finally:
        delivery.close()
    return due


def test_an_uzbek_client_gets_uzbek_telegram_and_email(factory, settings, bot_api, smtp_server):
    starts = datetime(2026, 12, 3, 11, 0, tzinfo=UTC).isoformat()
    ids = deliver_event(factory, settings, "lesson_cancelled",
                        {"lesson_title": "Robototexnika", "starts_at": starts, "reason": "oʻqituvchi kasal"})
    [telegram] = bot_api.wait_for(lambda m: len(m) >= 1)
    assert telegram["chat_id"] == str(CHAT)
    assert "Dars bekor qilindi" in telegram["text"] and "3-dekabr, 16:00" in telegram["text"]
    assert "Sabab: oʻqituvchi kasal" in telegram["text"]
    [mail] = smtp_server.wait_for(lambda m: len(m) >= 1)
    assert mail["subject"] == "«Robototexnika» darsi (3-dekabr, 16:00) bekor qilindi"
    assert "Assalomu alaykum, Dilnoza!" in mail["text"] and "Bu avtomatik xabar" in mail["text"]
    with factory() as s:
        assert {n.locale for n in s.scalars(select(Notification).where(Notification.id.in_(ids)))} == {"uz-latn"}

    deliver_event(factory, settings, "invoice_created", {"invoice_number": "F-17", "amount": "250000.00",
                                                          "currency": "UZS", "payment_url": "https://pay.uz/17"})
    texts = [m["text"] for m in bot_api.wait_for(lambda m: len(m) >= 2)]
    assert "Hisob F-17" in texts[1] and "soʻm" in texts[1] and "Toʻlash" in texts[1]


def test_a_missing_uzbek_template_falls_back_and_the_history_and_the_admin_say_so(factory, settings, bot_api,
                                                                                   smtp_server):
    with factory() as s:
        s.execute(update(NotificationTemplate).where(NotificationTemplate.code == "LESSON_CANCELLED",
                                                     NotificationTemplate.locale == "uz-latn",
                                                     NotificationTemplate.channel == "telegram")
                  .values(is_active=False))
        s.commit()
    data = {"lesson_title": "Robototexnika", "starts_at": datetime(2026, 12, 3, 11, tzinfo=UTC).isoformat()}
    ids = deliver_event(factory, settings, "lesson_cancelled", data)
    [telegram] = bot_api.wait_for(lambda m: len(m) >= 1)
    assert "Занятие отменено" in telegram["text"]  # uz-latn:ru
    with factory() as s:
        by_channel = {n.channel: n.locale for n in s.scalars(select(Notification).where(Notification.id.in_(ids)))}
    assert by_channel == {"telegram": "ru", "email": "uz-latn"}

    app = create_app(settings.replace(locale_fallback="uz-latn:en"), session_factory=factory,
                     config={"TESTING": True})
    ids = deliver_event(factory, settings.replace(locale_fallback="uz-latn:en"), "lesson_cancelled", data)
    assert "Lesson cancelled" in bot_api.wait_for(lambda m: len(m) >= 2)[1]["text"]

    c = sign_in_admin(app, factory)
    page = c.get("/admin/template/?search=LESSON_CANCELLED").text
    rows = re.findall(r"<tr.*?</tr>", page, re.S)
    marked = [r for r in rows if 'data-missing="uz-latn"' in r]
    assert marked and all("LESSON_CANCELLED" in r and "telegram" in r for r in marked)
    assert "missing: uz-latn" in page


def test_the_bot_the_sign_in_email_and_the_profile_speak_uzbek(factory, settings, bot_api, smtp_server):
    app = create_app(settings, session_factory=factory, config={"TESTING": True})
    token = app.extensions["vestnik_settings"].telegram_webhook_secret
    hook = app.test_client()

    def webhook(update_):
        return hook.post("/webhooks/telegram", json=update_,
                         headers={TELEGRAM_SECRET_HEADER: token}).json

    assert "Telegramdagi bildirishnomalar oʻchirildi" in webhook(bot_api.push_message(CHAT, "/stop"))["text"]
    assert "Xush kelibsiz" in webhook(bot_api.push_start(CHAT))["text"]
    stranger = webhook(bot_api.push_start(9999, language_code="uz"))  # not a client: their app's language
    assert "Telegramni ulash" in stranger["text"]

    c = app.test_client()
    assert request_link(c, "dilnoza@example.uz").status_code == 200
    mail = smtp_server.wait_for(lambda m: len(m) >= 1)[0]
    assert mail["subject"] == "Shaxsiy kabinetga kirish" and "Assalomu alaykum, Dilnoza!" in mail["text"]
    path = link_from_mail(smtp_server, "dilnoza@example.uz")
    page = c.get(path)
    c.post(path, data={"csrf_token": csrf(page.text)})
    home = c.get("/me/").text
    assert '<html lang="uz-latn">' in home and "Sozlamalar" in home and "Bildirishnomalar" in home
    assert re.search(r'<option value="uz-latn" lang="uz-latn" selected>\s*Oʻzbekcha', home)
    app.extensions["vestnik_sign_in_messenger"].close()


def test_times_and_amounts_read_in_uzbek():
    from vestnik.shared.rendering import build_context, render

    ctx = build_context({"at": datetime(2026, 1, 5, 9, tzinfo=UTC).isoformat(),
                         "amount": "1500.5"}, datetime_fields={"at"}, locale="uz-latn", tz="Asia/Tashkent",
                        client={"name": "Dilnoza", "client_id": 1})
    assert render("{{ at }} · {{ amount|money('UZS') }}", ctx, html_mode=False, locale="uz-latn") == \
        "5-yanvar, 14:00 · 1\xa0500,50\xa0soʻm"
