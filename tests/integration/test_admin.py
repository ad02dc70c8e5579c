"""Admin: sign-in, roles, sessions dying at logout, history, templates, rules.

CSRF and odd input on every endpoint: test_admin_security.py and test_hostile_input.py.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from vestnik.shared.config import Settings
from vestnik.shared.models import AdminUser, AuditLog, Client, Notification, NotificationTemplate, TemplateVersion
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app

PASSWORD = "correct horse battery"


def make_admin_app(session_factory):
    """The app with the admin, an admin and a support user, a client and four notifications."""
    app = create_app(Settings(secret_key="k" * 32), session_factory=session_factory, config={"TESTING": True})
    if "auth" not in app.blueprints:
        from vestnik.webapp import admin

        admin.init_app(app)
    with session_factory() as s:
        install_default_templates(s)
        s.add_all([
            AdminUser(email="admin@school.test", password_hash=generate_password_hash(PASSWORD), role="admin"),
            AdminUser(email="support@school.test", password_hash=generate_password_hash(PASSWORD), role="support"),
            Client(id=1, name="Анна", email="anna@example.com", telegram_chat_id="1001"),
        ])
        s.flush()
        for i, status in enumerate(["sent", "failed", "pending", "canceled"]):
            s.add(Notification(recipient_id=1, channel="telegram", recipient_address="1001",
                               event_type="lesson_cancelled", template_code="LESSON_CANCELLED", step=f"s{i}",
                               status=status, body=f"<b>text {status}</b>",
                               last_error="Forbidden: bot was blocked by the user" if status == "failed" else None))
        s.commit()
    return app


@pytest.fixture
def app(session_factory):
    return make_admin_app(session_factory)


def token(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def login(client, email="admin@school.test", password=PASSWORD, next_url=None):
    page = client.get("/admin/login")
    url = "/admin/login" + (f"?next={next_url}" if next_url else "")
    return client.post(url, data={"email": email, "password": password, "csrf_token": token(page.text)})


def sign_in_admin(app, factory, email: str = "admin@school.test", role: str = "admin"):
    """A test client of ``app`` signed in as a new admin user (the admin blueprint added if missing)."""
    if "auth" not in app.blueprints:
        from vestnik.webapp import admin

        admin.init_app(app)
    with factory() as s:
        s.add(AdminUser(email=email, password_hash=generate_password_hash(PASSWORD), role=role))
        s.commit()
    client = app.test_client()
    assert login(client, email).status_code == 302
    return client


def test_every_admin_page_requires_sign_in(app):
    c = app.test_client()
    for path in ["/admin/", "/admin/notification/", "/admin/template/", "/admin/client/", "/admin/audit/",
                 "/admin/outboxevent/", "/admin/template/new/"]:
        resp = c.get(path)
        assert resp.status_code == 302 and "/admin/login" in resp.headers["Location"], path


def test_sign_in_and_the_pages_answer(app):
    c = app.test_client()
    assert login(c).status_code == 302
    for path in ["/admin/", "/admin/notification/", "/admin/template/", "/admin/client/", "/admin/audit/",
                 "/admin/outboxevent/", "/admin/notification/details/?id=1", "/admin/client/details/?id=1"]:
        assert c.get(path).status_code == 200, path
    history = c.get("/admin/notification/").text
    assert "text failed" in history and "&lt;b&gt;" not in history.split("text failed")[0][-40:]


def test_wrong_password_is_generic_and_five_failures_lock_the_account(app, session_factory):
    c = app.test_client()
    resp = login(c, password="nope")
    assert resp.status_code == 401 and "Invalid email or password" in resp.text
    assert "Invalid email or password" in login(c, email="ghost@school.test").text  # no user enumeration
    for _ in range(4):
        login(c, password="nope")
    assert login(c).status_code == 429  # locked even with the right password
    with session_factory() as s:
        assert s.scalars(select(AuditLog.action)).all() == ["admin.locked_out"]
    assert login(c, email="ghost@school.test").status_code == 401  # the lock is the address's, not everyone's


def test_every_login_costs_one_password_hash_whoever_the_address_belongs_to(app, session_factory, monkeypatch):
    """Timing cannot tell a real admin's address: known, unknown and inactive addresses hash once;
    locked ones (real or not) hash never.  bench/admin_login_timing.py prints the times themselves."""
    from vestnik.webapp.admin import auth

    with session_factory() as s:
        s.add(AdminUser(email="gone@school.test", password_hash=generate_password_hash(PASSWORD), role="admin",
                        is_active=False))
        s.commit()
    calls: list[str] = []
    real = auth.check_password_hash

    def counted(stored: str, given: str) -> bool:
        calls.append(stored.split("$")[0])
        return real(stored, given)

    monkeypatch.setattr(auth, "check_password_hash", counted)
    c = app.test_client()
    answers = {}
    for email in ("admin@school.test", "ghost@school.test", "gone@school.test"):
        calls.clear()
        resp = login(c, email=email, password="nope")
        answers[email] = (resp.status_code, "Invalid email or password" in resp.text)
        assert len(calls) == 1 and calls[0].startswith("scrypt"), (email, calls)
    assert len(set(answers.values())) == 1, answers
    for email in ("admin@school.test", "ghost@school.test"):
        for _ in range(4):
            login(c, email=email, password="nope")
        calls.clear()
        resp = login(c, email=email, password=PASSWORD)
        assert resp.status_code == 429 and "Too many failed attempts" in resp.text and calls == [], email


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example/",
                                    "javascript:alert(1)"])
def test_next_never_leaves_the_site(app, target):
    resp = login(app.test_client(), next_url=target)
    assert resp.headers["Location"].endswith("/admin/")


def test_next_within_the_site_is_followed(app):
    resp = login(app.test_client(), next_url="/admin/template/")
    assert resp.headers["Location"].endswith("/admin/template/")


def test_a_copied_session_cookie_is_refused_after_logout(app):
    c = app.test_client()
    login(c)
    stolen = c.get_cookie("vestnik_session").value
    page = c.get("/admin/")
    c.post("/admin/logout", data={"csrf_token": token(page.text)})
    thief = app.test_client()
    thief.set_cookie("vestnik_session", stolen)
    assert thief.get("/admin/").status_code == 302


def test_support_role_reads_but_cannot_change(app, session_factory):
    c = app.test_client()
    login(c, email="support@school.test")
    assert c.get("/admin/notification/").status_code == 200
    assert c.get("/admin/template/new/").status_code in (302, 403)
    page = c.get("/admin/notification/")
    resp = c.post("/admin/notification/action/", data={"action": "retry", "rowid": ["2"],
                                                        "csrf_token": token(page.text)})
    assert resp.status_code in (302, 403)
    with session_factory() as s:
        assert s.scalar(select(Notification.status).where(Notification.id == 2)) == "failed"


def test_retry_action_moves_failed_back_to_pending_and_is_audited(app, session_factory):
    c = app.test_client()
    login(c)
    page = c.get("/admin/notification/")
    resp = c.post("/admin/notification/action/", data={"action": "retry", "rowid": ["1", "2"],
                                                        "csrf_token": token(page.text)})
    assert resp.status_code == 302
    with session_factory() as s:
        assert s.scalar(select(Notification.status).where(Notification.id == 2)) == "pending"
        assert s.scalar(select(Notification.status).where(Notification.id == 1)) == "sent"  # not failed: unchanged
        assert s.scalars(select(AuditLog.action)).all() == ["notification.retry"]


def test_template_save_validates_and_keeps_versions(app, session_factory):
    c = app.test_client()
    login(c)
    with session_factory() as s:
        t = s.scalars(select(NotificationTemplate).where(NotificationTemplate.code == "LESSON_CANCELLED",
                                                         NotificationTemplate.channel == "telegram",
                                                         NotificationTemplate.locale == "ru")).one()
    url = f"/admin/template/edit/?id={t.id}"
    form = {"code": t.code, "channel": "telegram", "locale": "ru", "category": "service", "name": t.name,
            "description": "", "subject": "", "is_active": "y"}
    page = c.get(url)
    bad = c.post(url, data={**form, "body": "{{ lesson_titel }}", "csrf_token": token(page.text)})
    assert bad.status_code == 200 and "lesson_titel: not offered" in bad.text
    good = c.post(url, data={**form, "body": "Отмена: {{ lesson_title }}", "csrf_token": token(page.text)})
    assert good.status_code == 302
    with session_factory() as s:
        saved = s.get(NotificationTemplate, t.id)
        versions = s.scalars(select(TemplateVersion).where(TemplateVersion.template_id == t.id)).all()
    assert saved.body == "Отмена: {{ lesson_title }}" and saved.updated_by.startswith("admin:")
    # The shipped text is kept as version 1, so it can be restored.
    assert [v.body for v in versions] == [t.body, "Отмена: {{ lesson_title }}"]
    assert versions[0].updated_by == "shipped default"



def test_rules_page_switches_an_event_off_and_changes_offsets_audited(app, session_factory):
    from vestnik.workers.handling import load_override
    from vestnik.workers.rules import effective_rule

    c = app.test_client()
    login(c)
    page = c.get("/admin/rules/")
    assert page.status_code == 200 and 'name="offsets_reminder"' in page.text
    no_csrf = c.post("/admin/rules/lesson_reminder", data={"enabled": "on", "offsets_reminder": "-24h"})
    assert no_csrf.status_code == 400
    bad = c.post("/admin/rules/lesson_reminder", data={"csrf_token": token(page.text), "enabled": "on",
                                                        "offsets_reminder": "yesterday"}, follow_redirects=True)
    assert "is not an offset" in bad.text
    c.post("/admin/rules/lesson_reminder", data={"csrf_token": token(page.text), "enabled": "on",
                                                  "offsets_reminder": "-2h, -1d"})
    c.post("/admin/rules/payment_success", data={"csrf_token": token(page.text)})  # unchecked: switched off
    with session_factory() as s:
        assert effective_rule("lesson_reminder", load_override(s, "lesson_reminder")).steps[0].offsets_s == (
            -86400.0, -7200.0)
        assert effective_rule("payment_success", load_override(s, "payment_success")).enabled is False
        entries = s.scalars(select(AuditLog).where(AuditLog.action == "rule.update").order_by(AuditLog.id)).all()
        assert [(e.actor, e.object_id) for e in entries] == [("admin:1", "lesson_reminder"),
                                                              ("admin:1", "payment_success")]
        assert entries[0].details["after"]["offsets"] == {"reminder": [-86400.0, -7200.0]}
    # Back to the defaults: the override row goes away, the change is audited too.
    c.post("/admin/rules/lesson_reminder", data={"csrf_token": token(page.text), "enabled": "on",
                                                  "offsets_reminder": "-1d"})
    with session_factory() as s:
        assert load_override(s, "lesson_reminder") is None


def test_support_sees_rules_but_cannot_change_them(app):
    c = app.test_client()
    login(c, email="support@school.test")
    page = c.get("/admin/rules/")
    assert page.status_code == 200 and "Save" not in page.text
    assert c.post("/admin/rules/lesson_reminder", data={"csrf_token": token(page.text)}).status_code == 403


def test_client_card_shows_reachability_and_the_latest_notifications(app):
    c = app.test_client()
    login(c)
    card = c.get("/admin/client/details/?id=1").text
    assert "Telegram reachability" in card and "reachable" in card
    assert card.count("text failed") == 1 and "Forbidden: bot was blocked" in card  # the status cell's error marker
    assert "flt0_client_id_equals=1" in card


def test_dashboard_counts_a_pending_row_without_send_at_as_due(app):
    c = app.test_client()
    login(c)
    html = c.get("/admin/").text
    due = re.search(r"Due now, waiting</h2><p class=\"h4 mb-1\"><a [^>]+>(\d+)</a>", html)
    assert due and due.group(1) == "1"  # the fixture's one pending row (send_at NULL: delivery claims it now)
