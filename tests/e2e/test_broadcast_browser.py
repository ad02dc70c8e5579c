"""A broadcast in a real browser, on the production shape: create -> count -> preview -> send test ->
send to everyone (typed confirmation) -> live progress -> cancel.

The admin is the real Flask app (served in this process over HTTP) on PostgreSQL; the real
``vestnik worker`` and ``vestnik scheduler`` processes send through RabbitMQ with the Redis limiter
to the fake Bot API.  Telegram is slowed to 3 messages a second so there is a run to watch and cancel.
Set VESTNIK_SCREENSHOTS=1 to refresh docs/screenshots/admin-broadcast.png.
"""

from __future__ import annotations

import collections
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from tests.processes import running, vestnik, wait_until
from vestnik.shared.config import load_settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import AdminUser, AuditLog, Broadcast, Client, ClientGroup, Notification
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "admin-broadcast.png"


@pytest.fixture
def admin_site(pg_url, amqp_vhost_url, redis_url, redis_client, bot_api, smtp_server, tmp_path):
    env = {
        "VESTNIK_DATABASE_URL": pg_url, "VESTNIK_BROKER_URL": amqp_vhost_url, "VESTNIK_REDIS_URL": redis_url,
        "VESTNIK_TELEGRAM_TOKEN": bot_api.token, "VESTNIK_TELEGRAM_API_BASE": bot_api.url,
        "VESTNIK_SMTP_URL": f"smtp://127.0.0.1:{smtp_server.port}", "VESTNIK_EMAIL_FROM": "School <robot@school.test>",
        "VESTNIK_SECRET_KEY": "b" * 32, "VESTNIK_TELEGRAM_RATE_PER_S": "3", "VESTNIK_SCHEDULER_TICK_S": "1",
    }
    factory = make_session_factory(make_engine(pg_url))
    with factory() as s:
        install_default_templates(s)
        s.add(AdminUser(email="admin@school.test", password_hash=generate_password_hash(PASSWORD), role="admin"))
        for i in range(1, 41):  # only client 2 has an email: the preview shows both channels
            s.add(Client(id=i, name=f"Ученик {i}", email="parent2@example.com" if i == 2 else None,
                         telegram_chat_id=str(9000 + i)))
        s.flush()
        s.add_all([ClientGroup(name="Шахматы", client_id=i) for i in range(1, 41)])
        s.commit()
    settings = load_settings(env)
    app = create_app(settings, session_factory=factory)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    procs = [vestnik("worker", "worker", "--processes", "1", "--threads", "4", env=env, log_dir=tmp_path),
             vestnik("scheduler", "scheduler", env=env, log_dir=tmp_path)]
    with running(procs):
        yield f"http://127.0.0.1:{server.server_port}", factory
    server.shutdown()


def test_create_count_preview_test_send_watch_and_cancel(chromium, admin_site, bot_api, smtp_server):
    from playwright.sync_api import expect

    url, factory = admin_site
    page = chromium.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    # Console errors (a CSP violation by broadcast.js, a script error) and failed requests, except the
    # browser's own /favicon.ico probe (the admin pages declare no icon).
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Failed to load resource"
            not in m.text else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400
            and not r.url.endswith("/favicon.ico") else None)
    try:
        page.goto(url + "/admin/login")
        page.fill("input[name=email]", "admin@school.test")
        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name="Sign in").click()

        page.goto(url + "/admin/broadcasts/")
        page.get_by_role("link", name="New broadcast").click()
        page.fill("#name", "Турнир в субботу")
        page.select_option("#template_code", "ANNOUNCEMENT")
        page.fill("#template_data", '{"title": "Турнир", "text": "В субботу шахматный турнир"}')
        page.select_option("#groups", ["Шахматы"])
        page.fill("#test_size", "3")
        page.get_by_role("button", name="Create draft and count").click()

        # Count: the exact numbers before anything is sent.
        expect(page.locator("#count-sentence")).to_have_text(
            "You will send 41 messages to 40 clients: 1 email, 40 Telegram.")
        # Preview for a chosen client of the selection.
        page.select_option("#client", "2")
        page.get_by_role("button", name="Preview").click()
        # As the client will see it, in sandboxed frames (no scripts, no same-origin access).
        telegram = page.frame_locator("#preview iframe.preview-telegram")
        expect(telegram.locator("b")).to_have_text("Турнир")  # Telegram's <b>, applied, not shown as text
        expect(telegram.locator("body")).to_contain_text("В субботу шахматный турнир")
        expect(page.frame_locator("#preview iframe.preview-email").locator("body")).to_contain_text(
            "Здравствуйте, Ученик 2")

        page.get_by_role("button", name="Send test (4 messages)").click()
        expect(page.locator(".alert-success")).to_contain_text("test stage")
        # The page reloads itself when the test is done: "Send to everyone" appears.
        expect(page.get_by_role("button", name="Send to everyone")).to_be_visible(timeout=30_000)
        assert sorted(m["chat_id"] for m in bot_api.messages()) == ["9001", "9002", "9003"]

        # After the test stage the admin confirms what will be added: the 37 messages not sent yet.
        expect(page.locator("#count-sentence")).to_have_text("You will send 37 messages to 37 clients: 37 Telegram.")
        page.fill("#typed", "41")  # a wrong number (the whole selection) is refused
        page.get_by_role("button", name="Send to everyone").click()
        expect(page.locator(".alert-danger, .alert-error")).to_contain_text("type the number of messages, 37")
        page.fill("#typed", "37")
        page.get_by_role("button", name="Send to everyone").click()
        expect(page.locator(".alert-success")).to_contain_text("Started")

        # Live progress: the numbers move without a reload.
        wait_until(lambda: int(page.locator("#p-sent").inner_text()) >= 8, 60, message="progress shows 8 sent")
        if os.environ.get("VESTNIK_SCREENSHOTS") == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        page.get_by_role("button", name="Cancel broadcast").click()
        expect(page.locator(".alert-success")).to_contain_text("Canceled")
        expect(page.locator("[data-status]").first).to_have_text("canceled")
        assert not errors, f"console errors: {errors}"
    finally:
        page.close()

    def rows():
        with factory() as s:
            return collections.Counter(s.scalars(select(Notification.status)))

    wait_until(lambda: set(rows()) <= {"sent", "canceled", "failed"}, 30, message="every row final")
    final = rows()
    assert final["canceled"] > 0 and final["sent"] + final["canceled"] == 41
    assert len(bot_api.messages()) + len(smtp_server.messages()) == final["sent"]  # nothing canceled went out
    with factory() as s:
        assert s.scalars(select(Broadcast.status)).one() == "canceled"
        actions = s.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions[:3] == ["broadcast.create", "broadcast.test", "broadcast.test_done"]
    assert "broadcast.start" in actions and actions[-1] == "broadcast.cancel"
