"""A running admin on a free port, with a little data: for browser tests and screenshots.

SQLite in a temporary folder, migrated by the real Alembic scripts, the shipped
templates, one admin, a few clients and a few hundred notifications of every
status; the app is served by Werkzeug in a thread.  Optional fake Bot API and
SMTP server make "send test to me" work.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

ADMIN_EMAIL = "admin@school.test"
ADMIN_PASSWORD = "correct horse battery"


@dataclass
class AdminSite:
    url: str
    session_factory: Any
    app: Any
    _server: Any
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


def seed(session_factory: Any) -> None:
    from vestnik.shared.models import AdminUser, AuditLog, Client, DeliveryAttempt, Notification, utcnow
    from vestnik.shared.seeds import install_default_templates

    now = utcnow()
    with session_factory() as s:
        install_default_templates(s)
        s.add(AdminUser(email=ADMIN_EMAIL, password_hash=generate_password_hash(ADMIN_PASSWORD), role="admin",
                        telegram_chat_id="700"))
        names = ["Анна Смирнова", "Борис Иванов", "Вера Петрова", "Emily Clark", "Дмитрий Орлов"]
        for i, name in enumerate(names, start=1):
            s.add(Client(id=i, name=name, email=f"client{i}@example.com", telegram_chat_id=str(1000 + i),
                         locale="en" if name.startswith("Emily") else "ru",
                         telegram_unreachable_reason="Forbidden: bot was blocked by the user" if i == 5 else None))
        s.flush()
        events = [("lesson_cancelled", "LESSON_CANCELLED", "❌ <b>Занятие отменено</b>\nРобототехника, 25 ноября"),
                  ("invoice_created", "INVOICE_CREATED", "🧾 Счёт INV-2026-017 на 4 500,00 ₽"),
                  ("payment_success", "PAYMENT_SUCCESS", "✅ Оплата 4 500,00 ₽ получена"),
                  ("lesson_reminder", "LESSON_REMINDER", "⏰ Завтра в 16:00 — Робототехника")]
        statuses = ["sent"] * 7 + ["failed", "pending", "canceled"]
        for i in range(240):
            event, code, body = events[i % len(events)]
            status = statuses[i % len(statuses)]
            channel = "telegram" if i % 3 else "email"
            created = now - timedelta(hours=i * 1.5)
            n = Notification(
                recipient_id=i % 5 + 1, channel=channel,
                recipient_address=f"client{i % 5 + 1}@example.com" if channel == "email" else str(1001 + i % 5),
                event_type=event, template_code=code, step=f"s{i}", status=status, body=body, attempts=1,
                subject="Уведомление" if channel == "email" else None, key=f"lesson:{i % 17}",
                initiator="admin:1" if i % 23 == 0 else "system", created_at=created, updated_at=created,
                sent_at=created + timedelta(seconds=2) if status == "sent" else None,
                send_at=now + timedelta(hours=i % 48) if status == "pending" else created,
                last_error="Forbidden: bot was blocked by the user" if status == "failed" else None,
            )
            s.add(n)
            s.flush()
            if status in ("sent", "failed"):
                s.add(DeliveryAttempt(notification_id=n.id, attempt_no=1, started_at=created,
                                      finished_at=created + timedelta(seconds=1),
                                      outcome="sent" if status == "sent" else "permanent",
                                      error=n.last_error, external_id=f"m-{i}" if status == "sent" else None))
        s.add(AuditLog(actor="admin:1", action="template.update", object_type="template", object_id="3",
                       details={"code": "LESSON_CANCELLED", "version": 2}))
        s.add(AuditLog(actor="admin:1", action="client.preferences", object_type="client", object_id="2",
                       details={"changes": {"allow_marketing_notifications": [False, True]}}))
        s.commit()


def start(folder: Path, *, settings_overrides: dict[str, Any] | None = None) -> AdminSite:
    from vestnik.shared.config import Settings
    from vestnik.shared.db import make_engine, make_session_factory
    from vestnik.shared.migrate import upgrade
    from vestnik.webapp import create_app

    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'admin.db'}"
    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    seed(factory)
    settings = Settings(database_url=url, secret_key="s" * 32, **(settings_overrides or {}))
    app = create_app(settings, session_factory=factory)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request in test output
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="admin-site", daemon=True)
    thread.start()
    return AdminSite(f"http://127.0.0.1:{server.server_port}", factory, app, server, thread)


def admin_page(chromium: Any, url: str, *, accept_dialogs: bool = False) -> Any:
    """A new page of the admin at ``url``, signed in as ADMIN_EMAIL; console and page errors collect
    in ``page.errors`` (a test asserts there are none: the CSP blocks what it must not run)."""
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    if accept_dialogs:
        page.on("dialog", lambda d: d.accept())
    page.errors = errors
    page.goto(url + "/admin/")
    page.fill("#email", ADMIN_EMAIL)
    page.fill("#password", ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    return page
