"""The embedded demo end to end: a CRM button becomes Telegram messages and emails.

Everything real except the far ends: SQLite, the relay, Dramatiq's in-process
broker and worker threads, the scheduler's ticks, the real Telegram and email
channels talking to the local fake Bot API and the local SMTP sink.  The
buttons are pressed over real HTTP, with the CSRF token read from the page.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import requests
from sqlalchemy import func, select

from vestnik.cli import main as vestnik
from vestnik.shared.models import Client, ClientAddress, Notification, OutboxEvent
from vestnik.webapp.demo import DEMO_ADMIN_EMAIL, DEMO_CLIENT_EMAIL, build_demo, demo_pages
from vestnik.webapp.democrm_models import Lesson

T = TypeVar("T")
FINAL = ("sent", "failed", "canceled")


def wait_for(condition: Callable[[], T], *, timeout_s: float = 20.0, what: str) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)  # the polling interval, not a synchronisation


def test_vestnik_demo_seconds_starts_and_stops_cleanly(tmp_path, capsys):
    # First in this module, before the module's demo starts: one embedded stack per process.
    code = vestnik(["demo", "--port", "0", "--seconds", "0.3", "--data-dir", str(tmp_path / "cli-demo")])
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"Demo CRM\s+http://127\.0\.0\.1:\d+/", out)
    assert "stopped." in out
    assert (tmp_path / "cli-demo" / "vestnik.db").exists()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    running = build_demo(tmp_path_factory.mktemp("demo"), port=0, worker_threads=2)
    yield running
    running.stop()


@pytest.fixture
def browser_session(demo):
    """A requests session that has loaded the CRM page: it holds the session cookie."""
    with requests.Session() as http:
        page = http.get(demo.url + "/", timeout=10)
        assert page.status_code == 200
        yield http, page.text


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html).group(1)


def robotics_lesson_ids(html: str) -> list[int]:
    """The cancellable lessons, in page order (Robotics has every demo client)."""
    return [int(i) for i in re.findall(r'/lessons/(\d+)/cancel" class="inline">\s*<input[^>]*>\s*'
                                       r'<button[^>]*title="Cancel Робототехника', html)]


def clients_by_channel(demo) -> tuple[dict[str, int], dict[str, int], list[Client]]:
    with demo.app.extensions["vestnik_db"]() as s:
        clients = list(s.scalars(select(Client).order_by(Client.id)))
    telegram = {c.telegram_chat_id: c.id for c in clients
                if c.allow_service_notifications and c.notifications_telegram_enabled and c.telegram_chat_id}
    email = {c.email: c.id for c in clients
             if c.allow_service_notifications and c.notifications_email_enabled and c.email}
    silent = [c for c in clients if c.id not in set(telegram.values()) | set(email.values())]
    return telegram, email, silent


def telegram_chats(demo) -> list[str]:
    return [str(m["chat_id"]) for m in demo.bot_api.messages()]


def email_recipients(demo) -> list[str]:
    return [str(m["to"]) for m in demo.smtp.messages()]


def test_cancel_lesson_reaches_every_channel_each_client_allows(demo, browser_session):
    http, html = browser_session
    telegram, email, silent = clients_by_channel(demo)
    # The seed covers every path: someone on each channel, someone on none.
    assert telegram and email and silent
    chats_before, mails_before = len(telegram_chats(demo)), len(email_recipients(demo))

    lesson_id = robotics_lesson_ids(html)[0]
    response = http.post(f"{demo.url}/lessons/{lesson_id}/cancel", data={"csrf_token": csrf_token(html)},
                         timeout=10, allow_redirects=False)
    assert response.status_code == 302

    new_chats = wait_for(lambda: len(telegram_chats(demo)) - chats_before >= len(telegram)
                         and telegram_chats(demo)[chats_before:], what=f"Telegram messages to {sorted(telegram)}")
    new_mails = wait_for(lambda: len(email_recipients(demo)) - mails_before >= len(email)
                         and email_recipients(demo)[mails_before:], what=f"emails to {sorted(email)}")
    # Wait for the records to settle, then check nobody got more than their share.
    with demo.app.extensions["vestnik_db"]() as s:
        def settled():
            event = s.scalars(select(OutboxEvent).where(OutboxEvent.key == f"lesson:{lesson_id}")).one()
            rows = s.scalars(select(Notification).where(Notification.event_id == event.id)).all()
            s.rollback()  # a fresh snapshot next time
            return (event.status == "processed" and rows and all(r.status in FINAL for r in rows)) and rows
        rows = wait_for(settled, what="the event's notifications to reach a final state")
        lesson = s.get(Lesson, lesson_id)
        assert lesson.status == "cancelled"

    assert sorted((r.recipient_id, r.channel, r.status) for r in rows) == sorted(
        [(cid, "telegram", "sent") for cid in telegram.values()] + [(cid, "email", "sent") for cid in email.values()]
    )
    assert sorted(new_chats) == sorted(telegram) and sorted(new_mails) == sorted(email)
    for client in silent:
        assert client.telegram_chat_id not in telegram_chats(demo)
        assert client.email not in email_recipients(demo)
    texts = [m["text"] for m in demo.bot_api.messages()[chats_before:]]
    assert any("Занятие отменено" in t for t in texts) and any("Lesson cancelled" in t for t in texts)


def test_the_sent_page_shows_the_captured_messages(demo, browser_session):
    http, html = browser_session
    if not demo.bot_api.messages():  # alone, or on another xdist worker than the test that cancels a lesson
        http.post(f"{demo.url}/lessons/{robotics_lesson_ids(html)[-1]}/cancel", data={"csrf_token": csrf_token(html)},
                  timeout=10, allow_redirects=False)
    wait_for(lambda: demo.bot_api.messages() and demo.smtp.messages(), what="a Telegram message and an email")
    page = http.get(f"{demo.url}/sent/live", timeout=10).text
    assert 'class="bubble"' in page and 'class="mail"' in page
    assert "<script" not in page


def test_post_without_csrf_token_is_rejected_and_changes_nothing(demo, browser_session):
    http, html = browser_session
    lesson_id = robotics_lesson_ids(html)[-1]
    with demo.app.extensions["vestnik_db"]() as s:
        events_before = s.scalar(select(func.count()).select_from(OutboxEvent))

    response = http.post(f"{demo.url}/lessons/{lesson_id}/cancel", data={}, timeout=10, allow_redirects=False)
    forged = http.post(f"{demo.url}/lessons/{lesson_id}/cancel", data={"csrf_token": "forged"}, timeout=10,
                       allow_redirects=False)

    assert response.status_code == 400 and forged.status_code == 400
    assert "CSRF" in response.text
    with demo.app.extensions["vestnik_db"]() as s:
        assert s.get(Lesson, lesson_id).status == "scheduled"
        assert s.scalar(select(func.count()).select_from(OutboxEvent)) == events_before


def test_the_crm_page_lists_every_demo_page(demo, browser_session):
    _, html = browser_session
    for name, path, _what in demo_pages():
        assert f'<a href="{path}">{name}</a>' in html, name
    assert DEMO_ADMIN_EMAIL in html
    for path in ("/sent", "/me/login", "/admin/"):  # the admin answers with its sign-in page
        assert requests.get(demo.url + path, timeout=10).status_code == 200, path


def test_connecting_telegram_through_the_deep_link_works_against_the_fake_bot_api(demo):
    """Profile → Connect Telegram → the deep link → Start → the bot loop binds the chat, as in production."""
    # The bot the profile links to is the one the fake Bot API is (getMe), so the link and the bot agree.
    me = requests.get(f"{demo.bot_api.url}/bot{demo.settings.telegram_token}/getMe", timeout=10).json()
    assert me["result"]["username"] == demo.settings.telegram_bot_username
    with demo.app.extensions["vestnik_db"]() as s:
        olga = s.scalars(select(Client).where(Client.id.in_(
            select(ClientAddress.client_id).where(ClientAddress.address == DEMO_CLIENT_EMAIL)))).one()
        assert olga.telegram_chat_id is None  # the seeded client to connect
    with requests.Session() as http:
        page = http.get(f"{demo.url}/me/login", timeout=10).text
        mails_before = len(demo.smtp.messages())
        http.post(f"{demo.url}/me/login", data={"email": DEMO_CLIENT_EMAIL, "method": "link",
                                                "csrf_token": csrf_token(page)}, timeout=10)
        mail = wait_for(lambda: [m for m in demo.smtp.messages()[mails_before:] if DEMO_CLIENT_EMAIL in str(m["to"])],
                        what="the sign-in email")[0]
        link = re.search(re.escape(demo.url) + r"(/me/login/t/[\w-]+)", mail["text"]).group(1)
        confirm = http.get(demo.url + link, timeout=10).text
        http.post(demo.url + link, data={"csrf_token": csrf_token(confirm)}, timeout=10)
        profile = http.get(f"{demo.url}/me/", timeout=10).text
        assert "Telegram не подключён" in profile and "не настроено" not in profile

        http.post(f"{demo.url}/me/telegram/connect", data={"csrf_token": csrf_token(profile)}, timeout=10)
        deep_link = re.search(r'href="(/demo/telegram/(\w+)\?start=[\w-]+)"',
                              http.get(f"{demo.url}/me/", timeout=10).text)
        assert deep_link is not None and deep_link.group(2) == me["result"]["username"]
        app_page = http.get(demo.url + deep_link.group(1), timeout=10)
        assert app_page.status_code == 200 and ">Start</button>" in app_page.text
        token = re.search(r'name="start" value="([\w-]+)"', app_page.text).group(1)
        pressed = http.post(demo.url + deep_link.group(1).split("?")[0],
                            data={"start": token, "csrf_token": csrf_token(app_page.text)}, timeout=10,
                            allow_redirects=False)
        assert pressed.status_code == 302 and pressed.headers["Location"].endswith("/sent")

        wait_for(lambda: http.get(f"{demo.url}/me/telegram/status", timeout=10).json()["connected"],
                 what="the bot loop to handle /start <token>")
        with demo.app.extensions["vestnik_db"]() as s:
            chat = s.get(Client, olga.id).telegram_chat_id
        assert chat is not None
        reply = wait_for(lambda: demo.bot_api.messages(chat), what="the bot's answer in the chat")
        assert "Telegram подключён" in reply[-1]["text"]
        profile = http.get(f"{demo.url}/me/", timeout=10).text
        assert "Telegram подключён" in profile and "не настроено" not in profile
