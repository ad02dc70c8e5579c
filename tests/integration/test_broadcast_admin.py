"""Broadcast screens (Flask test client) and the one-click unsubscribe endpoint, on both backends."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from vestnik.shared.config import Settings
from vestnik.shared.models import AdminUser, AuditLog, Broadcast, Client, ClientGroup, Notification
from vestnik.shared.seeds import install_default_templates
from vestnik.shared.unsubscribe import make_token, marketing_extras, one_click_headers, unsubscribe_url
from vestnik.webapp import create_app
from vestnik.workers.channels.email import EmailChannel
from vestnik.workers.channels.telegram import TelegramChannel

PASSWORD = "correct horse battery"
SECRET = "k" * 32


@pytest.fixture
def app(session_factory):
    app = create_app(Settings(secret_key=SECRET, public_url="https://vestnik.school.test"),
                     session_factory=session_factory, config={"TESTING": True, "SESSION_COOKIE_SECURE": False,
                                                                     "PREFERRED_URL_SCHEME": "http"})
    with session_factory() as s:
        install_default_templates(s)
        s.add_all([
            AdminUser(email="admin@school.test", password_hash=generate_password_hash(PASSWORD), role="admin"),
            AdminUser(email="support@school.test", password_hash=generate_password_hash(PASSWORD), role="support"),
        ])
        for i in range(1, 13):
            s.add(Client(id=i, name=f"Ученик {i}", email=f"p{i}@example.com", telegram_chat_id=str(500 + i),
                         allow_marketing_notifications=i % 2 == 0))
        s.flush()
        s.add_all([ClientGroup(name="Шахматы", client_id=i) for i in range(1, 11)])
        s.commit()
    return app


def token(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def login(client, email="admin@school.test"):
    page = client.get("/admin/login")
    assert client.post("/admin/login", data={"email": email, "password": PASSWORD,
                                             "csrf_token": token(page.text)}).status_code == 302


def _create(c, **overrides) -> int:
    page = c.get("/admin/broadcasts/new")
    assert page.status_code == 200
    form = {"csrf_token": token(page.text), "name": "Турнир", "template_code": "ANNOUNCEMENT",
            "channels": ["telegram", "email"], "category": "service",
            "template_data": '{"title": "Турнир", "text": "В субботу турнир"}', "groups": ["Шахматы"],
            "mode": "manual", "test_size": "2", "test_group": "", "stage_wait_s": "60", "max_failure_pct": "20"}
    form.update(overrides)
    resp = c.post("/admin/broadcasts/new", data=form)
    assert resp.status_code == 302, resp.text
    return int(resp.headers["Location"].rstrip("/").rsplit("/", 1)[1])


def test_admin_creates_counts_previews_tests_starts_pauses_and_cancels(app, session_factory):
    c = app.test_client()
    login(c)
    bid = _create(c)
    page = c.get(f"/admin/broadcasts/{bid}").text
    assert "You will send 20 messages to 10 clients: 10 Telegram, 10 email" in page
    assert "Test stage: 4 messages to 2 clients" in page
    assert "Ученик 1" in page and "В субботу турнир" in page  # the preview, rendered for client 1
    outsider = c.get(f"/admin/broadcasts/{bid}?client=11").text
    assert "not in this selection" in outsider

    csrf = token(page)
    assert c.post(f"/admin/broadcasts/{bid}/test", data={"csrf_token": csrf}).status_code == 302
    with session_factory() as s:
        b = s.get(Broadcast, bid)
        assert b.status == "testing" and b.stage == "test"
        b.test_done_at = b.started_at  # as the feeder marks it when the test rows are finished
        s.commit()
    page = c.get(f"/admin/broadcasts/{bid}").text
    wrong = c.post(f"/admin/broadcasts/{bid}/start", data={"csrf_token": token(page), "typed": "19"},
                   follow_redirects=True)
    assert "type the number of messages, 20" in wrong.text
    assert c.post(f"/admin/broadcasts/{bid}/start", data={"csrf_token": token(page), "typed": "20"}
                  ).status_code == 302
    assert c.get(f"/admin/broadcasts/{bid}/progress.json").json["status"] == "running"
    for action in ("pause", "resume", "cancel"):
        assert c.post(f"/admin/broadcasts/{bid}/{action}", data={"csrf_token": csrf}).status_code == 302
    with session_factory() as s:
        assert s.get(Broadcast, bid).status == "canceled"
        actions = s.scalars(select(AuditLog.action).where(AuditLog.object_type == "broadcast")
                            .order_by(AuditLog.id)).all()
        actors = set(s.scalars(select(AuditLog.actor).where(AuditLog.object_type == "broadcast")))
    assert actions == ["broadcast.create", "broadcast.test", "broadcast.start", "broadcast.pause",
                       "broadcast.resume", "broadcast.cancel"]
    assert actors == {"admin:1"}


def test_support_sees_broadcasts_but_cannot_start_anything(app, session_factory):
    admin = app.test_client()
    login(admin)
    bid = _create(admin)
    c = app.test_client()
    login(c, "support@school.test")
    page = c.get(f"/admin/broadcasts/{bid}")
    assert page.status_code == 200 and "Send test" not in page.text
    assert c.get("/admin/broadcasts/new").status_code == 403
    csrf = token(c.get("/admin/").text)
    for action in ("test", "start", "pause", "cancel"):
        assert c.post(f"/admin/broadcasts/{bid}/{action}", data={"csrf_token": csrf, "typed": "20"}
                      ).status_code == 403
    with session_factory() as s:
        assert s.get(Broadcast, bid).status == "draft"


def test_actions_without_csrf_token_are_refused(app):
    c = app.test_client()
    login(c)
    bid = _create(c)
    assert c.post(f"/admin/broadcasts/{bid}/test", data={}).status_code == 400


def test_marketing_preview_shows_the_unsubscribe_header_and_button(app):
    c = app.test_client()
    login(c)
    bid = _create(c, category="marketing")
    page = c.get(f"/admin/broadcasts/{bid}").text
    assert "You will send 10 messages to 5 clients" in page  # only the even ids opted in
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in page and "[Отписаться от рассылок]" in page


def test_one_click_unsubscribe_turns_marketing_off_and_cancels_what_waits(app, session_factory):
    settings = Settings(secret_key=SECRET, public_url="https://vestnik.school.test")
    headers = one_click_headers(unsubscribe_url(settings, 2))
    url = headers["List-Unsubscribe"].strip("<>")
    assert url.startswith("https://vestnik.school.test/unsubscribe/2.")
    with session_factory() as s:
        for category in ("marketing", "service"):
            s.add(Notification(recipient_id=2, channel="email", recipient_address="p2@example.com",
                               event_type="mass_broadcast", template_code="ANNOUNCEMENT", category=category,
                               step=category, status="pending"))
        s.commit()
    c = app.test_client()
    path = url.removeprefix("https://vestnik.school.test")
    page = c.get(path)  # a GET (a link scanner) changes nothing
    assert page.status_code == 200 and "Отписаться от новостей" in page.text and 'lang="ru"' in page.text
    with session_factory() as s:
        assert s.get(Client, 2).allow_marketing_notifications is True
    # RFC 8058: a POST with List-Unsubscribe=One-Click, no cookie, no CSRF token.
    resp = c.post(path, data={"List-Unsubscribe": "One-Click"})
    assert resp.status_code == 200 and "Вы отписаны" in resp.text
    with session_factory() as s:  # the page speaks the client's language
        s.get(Client, 2).locale = "uz-latn"
        s.commit()
    page = c.get(path)
    assert "Siz axborot xabarlariga obunani bekor qildingiz" in page.text and 'lang="uz-latn"' in page.text
    assert c.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200  # repeating is harmless
    with session_factory() as s:
        assert s.get(Client, 2).allow_marketing_notifications is False
        statuses = dict(s.execute(select(Notification.category, Notification.status)).all())
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "client.unsubscribe")).first()
    assert statuses == {"marketing": "canceled", "service": "pending"}
    assert audit.actor == "client:2" and audit.details["via"] == "one-click"


def test_unsubscribe_tokens_cannot_be_forged(app):
    c = app.test_client()
    good = make_token(SECRET, 2)
    forged = "4." + good.split(".", 1)[1]  # another client's id with this signature
    assert c.post(f"/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert c.post(f"/unsubscribe/{make_token('other-secret-key', 2)}").status_code == 404
    assert c.get("/unsubscribe/garbage").status_code == 404


def test_only_marketing_carries_the_way_out():
    settings = Settings(secret_key=SECRET)
    assert marketing_extras(settings, "service", EmailChannel, 1, "ru") == ({}, ())
    headers, _ = marketing_extras(settings, "marketing", EmailChannel, 1, "ru")
    assert set(headers) == {"List-Unsubscribe", "List-Unsubscribe-Post"}
    _, buttons = marketing_extras(settings, "marketing", TelegramChannel, 1, "en")
    assert buttons[0][0].text == "Unsubscribe" and "/unsubscribe/1." in buttons[0][0].url
    _, buttons = marketing_extras(settings, "marketing", TelegramChannel, 1, "uz-latn")
    assert buttons[0][0].text == "Obunani bekor qilish"


def test_history_links_to_the_broadcast_and_back(app, session_factory):
    c = app.test_client()
    login(c)
    bid = _create(c)
    with session_factory() as s:
        for i, broadcast_id in ((1, bid), (2, None)):
            s.add(Notification(recipient_id=i, channel="telegram", recipient_address=str(500 + i),
                               event_type="mass_broadcast", template_code="ANNOUNCEMENT", step="broadcast",
                               broadcast_id=broadcast_id, status="sent", body=f"<b>row of client {i}</b>"))
        s.commit()
        row = s.scalars(select(Notification.id).where(Notification.broadcast_id == bid)).one()
    details = c.get(f"/admin/broadcasts/{bid}").text
    link = re.search(r'href="([^"]*flt0_broadcast_id_equals=[^"]*)"', details).group(1).replace("&amp;", "&")
    history = c.get(link).text
    assert "row of client 1" in history and "row of client 2" not in history
    assert f'href="/admin/broadcasts/{bid}"' in c.get(f"/admin/notification/details/?id={row}").text


def test_client_details_show_groups_and_tags(app, session_factory):
    from vestnik.shared.models import ClientTag

    with session_factory() as s:
        s.add(ClientTag(tag="vip", client_id=3))
        s.commit()
    c = app.test_client()
    login(c)
    page = c.get("/admin/client/details/?id=3").text
    assert "Шахматы" in page and "#vip" in page


def test_admin_schedules_at_local_time_moves_edits_unschedules_and_sees_it_planned(app, session_factory):
    from datetime import date, timedelta

    c = app.test_client()
    login(c)
    bid = _create(c)
    page = c.get(f"/admin/broadcasts/{bid}").text
    assert "…or schedule it for later" in page
    day = (date.today() + timedelta(days=3)).isoformat()
    form = {"csrf_token": token(page), "s-kind": "local", "s-local_date": day, "s-local_time": "10:00"}
    wrong = c.post(f"/admin/broadcasts/{bid}/schedule", data={**form, "s-typed": "3"}, follow_redirects=True)
    assert "type the number of messages, 20" in wrong.text
    bad = c.post(f"/admin/broadcasts/{bid}/schedule", data={**form, "s-local_time": "25:00", "s-typed": "20"},
                 follow_redirects=True)
    assert "Not scheduled: local time" in bad.text
    done = c.post(f"/admin/broadcasts/{bid}/schedule", data={**form, "s-typed": "20"}, follow_redirects=True)
    assert f"Scheduled at 10:00 on {day} in each client&#39;s time zone" in done.text
    listing = c.get("/admin/broadcasts/").text
    assert 'id="planned"' in listing and "Турнир" in listing.split('id="planned"')[1].split("All broadcasts")[0]
    moved = c.post(f"/admin/broadcasts/{bid}/schedule", data={**form, "s-local_time": "11:30"}, follow_redirects=True)
    assert f"Moved: at 11:30 on {day}" in moved.text
    saved = c.post(f"/admin/broadcasts/{bid}/text", data={"csrf_token": token(page), "t-name": "Турнир!",
                                                          "t-template_data": '{"title": "Т", "text": "Новое"}'},
                   follow_redirects=True)
    assert "Saved." in saved.text and "Турнир!" in saved.text
    assert c.post(f"/admin/broadcasts/{bid}/unschedule", data={"csrf_token": token(page)}).status_code == 302
    with session_factory() as s:
        b = s.get(Broadcast, bid)
        assert b.status == "draft" and b.data["text"] == "Новое"
        actions = [a for a in s.scalars(select(AuditLog.action).where(AuditLog.object_id == str(bid)))]
    assert actions[-4:] == ["broadcast.schedule", "broadcast.reschedule", "broadcast.edit", "broadcast.unschedule"]
