"""Templates by event (matrix with missing and stale marked) and an audit that reads, on both backends."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from vestnik.shared.config import Settings
from vestnik.shared.models import AdminUser, AuditLog, Broadcast, Client, NotificationTemplate, utcnow
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app


@pytest.fixture
def app(session_factory):
    with session_factory() as s:
        install_default_templates(s)
        s.add(AdminUser(id=1, email="anna@school.test", name="Anna Smirnova",
                        password_hash=generate_password_hash("pw-pw-pw-pw")))
        s.add(Client(id=5, name="Борис Иванов", email="b@example.com"))
        s.add(Broadcast(id=3, name="Ярмарка", template_code="ANNOUNCEMENT", channels=["email"], targeting={},
                        data={}, initiator="admin:1", status="draft"))
        s.flush()
        s.add(AuditLog(actor="admin:1", action="broadcast.edit", object_type="broadcast", object_id="3",
                       details={"status": "draft", "changes": {"name": ["Ярмарка", "Ярмарка 2026"]}}))
        s.add(AuditLog(actor="client:5", action="client.unsubscribe", object_type="client", object_id="5",
                       details={"category": "marketing"}))
        # One message loses a language, another's English is older than its Russian.
        gone = s.scalars(select(NotificationTemplate).where(
            NotificationTemplate.code == "LESSON_CANCELLED", NotificationTemplate.channel == "email",
            NotificationTemplate.locale == "en")).one()
        s.delete(gone)
        ru = s.scalars(select(NotificationTemplate).where(
            NotificationTemplate.code == "INVOICE_CREATED", NotificationTemplate.channel == "telegram",
            NotificationTemplate.locale == "ru")).one()
        ru.updated_at = utcnow() + timedelta(hours=1)
        s.commit()
    return create_app(Settings(secret_key="k" * 32), session_factory=session_factory,
                      config={"TESTING": True, "SESSION_COOKIE_SECURE": False})


def _client(app):
    c = app.test_client()
    page = c.get("/admin/login")
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    c.post("/admin/login", data={"email": "anna@school.test", "password": "pw-pw-pw-pw", "csrf_token": csrf})
    return c


def _cell(html: str, code: str, channel: str, locale: str) -> str:
    m = re.search(rf'<td class="cell-(\w+)" data-code="{code}" data-channel="{channel}" data-locale="{locale}"', html)
    return m.group(1) if m else ""


def test_templates_by_event_mark_missing_and_stale(app):
    html = _client(app).get("/admin/templates/").text
    assert "lesson_cancelled" in html and "invoice_created" in html
    assert _cell(html, "LESSON_CANCELLED", "email", "en") == "missing"
    assert _cell(html, "LESSON_CANCELLED", "email", "ru") == "ok"
    assert _cell(html, "INVOICE_CREATED", "telegram", "en") == "stale"
    assert _cell(html, "INVOICE_CREATED", "telegram", "ru") == "ok"
    assert _cell(html, "BOOKING_FEEDBACK", "email", "ru") == "unused"  # a Telegram-only step
    missing, stale = html.count('class="cell-missing"'), html.count('class="cell-stale"')
    assert missing >= 1 and stale >= 1 and f"{missing} missing, {stale} stale." in html
    assert html.count('<h1') == 1


def test_audit_names_the_person_links_the_object_and_shows_the_change(app):
    html = _client(app).get("/admin/audit/").text
    assert "Anna Smirnova &lt;anna@school.test&gt;" in html and ">admin:1<" not in html
    assert '<a href="/admin/broadcasts/3">broadcast #3</a>' in html
    assert '<del class="text-danger">Ярмарка</del> → <ins class="text-success">Ярмарка 2026</ins>' in html
    assert "Борис Иванов</a>" in html
    body = html.split('<main', 1)[1].split("</main>", 1)[0]
    for raw in ("{&#39;", '{"', "{&#34;"):
        assert raw not in body, body[body.index(raw) - 200:body.index(raw) + 200]  # no raw JSON
    details = _client(app).get("/admin/broadcasts/3").text
    assert "Anna Smirnova" in details


def test_admin_sets_quiet_hours_per_category(app, session_factory):
    from vestnik.workers import quiet_hours

    c = _client(app)
    page = c.get("/admin/quiet-hours/").text
    assert "marketing messages" in page and "on</strong>, 21:00–09:00" in page
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    bad = c.post("/admin/quiet-hours/", data={"csrf_token": csrf, "category": "service", "enabled": "1",
                                              "start": "24:00", "end": "08:00"}, follow_redirects=True)
    assert "Not saved: start" in bad.text
    ok = c.post("/admin/quiet-hours/", data={"csrf_token": csrf, "category": "service", "enabled": "1",
                                             "start": "22:00", "end": "08:00"}, follow_redirects=True)
    assert "service messages: on, 22:00–08:00" in ok.text
    with session_factory() as s:
        policy = quiet_hours.load_policies(s)["service"]
        assert policy.enabled and policy.window.label() == "22:00–08:00"
        assert s.scalars(select(AuditLog).where(AuditLog.action == "quiet_hours.update")).one().actor == "admin:1"
