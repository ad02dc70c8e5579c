"""The client profile in a real browser: sign-in link by email -> history -> toggles -> connect Telegram.

The web app serves on a local port; the email is read from the fake SMTP
server as the client would read it; pressing Start in Telegram is a real
``/start <token>`` update pushed to the fake Bot API, fetched by a running
``vestnik bot`` process (long polling), and the page notices by itself.

Drives Debian's Chromium (/usr/bin/chromium) through Playwright; never
downloads a browser.  Without Chromium the test skips, except under CI.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from tests.processes import vestnik
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import AuditLog, Client, Notification

pytestmark = pytest.mark.browser

CHAT = 90210
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def site(pg_url, bot_api, smtp_server, tmp_path):
    """The web app on a free port, and `vestnik bot` polling the fake Bot API; both on one PostgreSQL db."""
    from werkzeug.serving import make_server

    from vestnik.webapp import create_app

    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with factory() as s:
        s.add(Client(id=1, name="Анна Петрова", email="anna@example.com", locale="ru"))
        s.flush()
        s.add_all([
            Notification(recipient_id=1, channel="telegram", recipient_address="1", event_type="lesson_cancelled",
                         template_code="LESSON_CANCELLED", step="a", status="sent",
                         body="<b>Занятие отменено</b>: Робототехника"),
            Notification(recipient_id=1, channel="email", recipient_address="anna@example.com",
                         event_type="invoice_created", template_code="INVOICE_CREATED", step="b", status="failed",
                         subject="Счёт №17", body="<p>Счёт на 4500 ₽</p>"),
        ])
        s.commit()
    settings = Settings(secret_key="b" * 40, database_url=pg_url, smtp_url=smtp_server.url,
                        telegram_token=bot_api.token, telegram_api_base=bot_api.url,
                        telegram_bot_username="vestnik_fake_bot", public_url="http://127.0.0.1:0")
    server = make_server("127.0.0.1", 0, None, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    settings = settings.replace(public_url=url)
    app = create_app(settings, session_factory=factory)
    server.app = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {"VESTNIK_DATABASE_URL": pg_url, "VESTNIK_TELEGRAM_TOKEN": bot_api.token,
           "VESTNIK_TELEGRAM_API_BASE": bot_api.url, "VESTNIK_SECRET_KEY": settings.secret_key,
           "VESTNIK_PUBLIC_URL": url}
    bot = vestnik("bot", "bot", "--poll-timeout", "5", env=env, log_dir=tmp_path)
    try:
        yield url, factory, bot
    finally:
        bot.signal(signal.SIGTERM)
        bot.stop()
        server.shutdown()
        if "vestnik_sign_in_messenger" in app.extensions:
            app.extensions["vestnik_sign_in_messenger"].close()
        engine.dispose()


def test_sign_in_history_toggles_and_connect_telegram(chromium, site, smtp_server, bot_api):
    from playwright.sync_api import expect

    url, factory, bot = site
    page = chromium.new_page(viewport={"width": 1280, "height": 900}, locale="ru-RU")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        # Sign in: the profile sends us to the sign-in page; the link comes by email.
        page.goto(url + "/me/")
        expect(page.get_by_role("heading", name="Вход")).to_be_visible()
        page.get_by_label("Электронная почта").fill("anna@example.com")
        page.get_by_role("button", name="Прислать ссылку на почту").click()
        expect(page.locator(".flash-info")).to_contain_text("Если этот адрес известен")
        [mail] = smtp_server.wait_for(lambda m: len(m) >= 1, timeout=20)
        link = re.search(r"http://127\.0\.0\.1:\d+/me/login/t/[\w-]+", mail["text"]).group(0)
        page.goto(link)
        page.get_by_role("button", name="Войти").click()

        # History: both notifications, with channel and status.
        expect(page.get_by_role("heading", name="Анна Петрова")).to_be_visible()
        notes = page.locator("article.note")
        expect(notes.filter(has_text="Занятие отменено: Робототехника")).to_be_visible()
        expect(notes.filter(has_text="Счёт на 4500 ₽").locator(".pill")).to_have_text("не доставлено")
        expect(notes.filter(has_text="Робототехника").get_by_role("img", name="Telegram")).to_be_visible()
        expect(notes.filter(has_text="Вход в личный кабинет")).to_be_visible()  # the sign-in email itself

        # Toggles: email off, news on.
        page.get_by_label("Уведомления на почту").uncheck()
        page.get_by_label("Новости и предложения").check()
        page.locator("#settings").get_by_role("button", name="Сохранить").click()  # webhook has its own form
        expect(page.locator(".flash-success")).to_contain_text("Настройки сохранены")
        expect(page.get_by_label("Уведомления на почту")).not_to_be_checked()
        expect(page.get_by_label("Новости и предложения")).to_be_checked()
        with factory() as s:
            anna = s.get(Client, 1)
            assert (anna.notifications_email_enabled, anna.allow_marketing_notifications) == (False, True)
            assert s.scalars(select(AuditLog.actor).where(AuditLog.action == "client.preferences")).all() == [
                "client:1"]

        # Connect Telegram: the deep link; "Start" pressed in Telegram; the page notices.
        expect(page.locator("#telegram")).to_contain_text("Telegram не подключён")
        page.get_by_role("button", name="Подключить Telegram").click()
        deep_link = page.get_by_role("link", name="Открыть бота и нажать «Start»").get_attribute("href")
        parts = urlsplit(deep_link)
        assert (parts.scheme, parts.netloc, parts.path) == ("https", "t.me", "/vestnik_fake_bot")
        bot_api.push_start(CHAT, parse_qs(parts.query)["start"][0], first_name="Анна")
        expect(page.locator("#telegram .tg-status")).to_have_text("Telegram подключён", timeout=20_000)
        bot_api.wait_for(lambda m: any("Telegram подключён" in x["text"] for x in m), timeout=10)
        expect(page.get_by_label("Уведомления в Telegram")).to_be_enabled()

        # The language switcher; then a phone-sized screen has no sideways scrolling.
        page.get_by_role("button", name="EN").click()
        expect(page.locator("#telegram .tg-status")).to_have_text("Telegram connected")
        page.set_viewport_size({"width": 375, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        assert not errors, f"console errors: {errors}"  # e.g. a CSP violation by profile.js
        if os.environ.get("VESTNIK_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "profile-phone.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 900})
            page.screenshot(path=str(SCREENSHOTS / "profile.png"), full_page=True)
    finally:
        page.close()
    assert bot.popen.poll() is None, bot.output()  # the poller kept running throughout
