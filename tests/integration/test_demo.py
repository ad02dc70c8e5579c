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
from vestnik.shared.models import Client, Notification, OutboxEvent
from vestnik.webapp.demo import build_demo
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
    http, _ = browser_session
    wait_for(lambda: demo.bot_api.messages(), what="any Telegram message (the previous test sends them)")
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
