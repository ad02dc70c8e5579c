"""Attachments from every source, on PostgreSQL: a file uploaded in the admin (checked at upload, stored in
the database) and attached by a broadcast or a rule step reaches the fake Bot API and the SMTP sink alike;
a Telegram file_id is sent by its id and refused for email when saved; the history records what was attached."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from tests.integration.test_admin import PASSWORD, login, token
from vestnik.outbox import emit
from vestnik.shared import api_keys
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import AdminUser, Broadcast, Client, Notification, RuleOverride, StoredFile
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app
from vestnik.workers import broadcasts
from vestnik.workers.broadcasting import expand_batch
from vestnik.workers.channels import build_channels
from vestnik.workers.channels.email import EmailChannel
from vestnik.workers.delivery import Delivery
from vestnik.workers.handling import handle_event

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 12 + b"\n%%EOF\n"
FILE_ID = "BQACAgIAAxkBAAIBZ2VwZXN0bmlrLXByaWNlLWxpc3Q"


@pytest.fixture
def settings(bot_api, smtp_server) -> Settings:
    return Settings(secret_key="s" * 40, smtp_url=smtp_server.url, telegram_token=bot_api.token,
                    telegram_api_base=bot_api.url)


@pytest.fixture
def factory(pg_url):
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with factory() as s:
        install_default_templates(s)
        from werkzeug.security import generate_password_hash

        s.add_all([AdminUser(email="admin@school.test", password_hash=generate_password_hash(PASSWORD),
                             role="admin"),
                   Client(id=1, name="Анна", email="anna@example.com", telegram_chat_id="1001", locale="ru")])
        s.commit()
    yield factory
    engine.dispose()


@pytest.fixture
def admin(factory, settings):
    app = create_app(settings, session_factory=factory, config={"TESTING": True})
    c = app.test_client()
    login(c)
    return c


def upload(admin, name: str, content: bytes):
    page = admin.get("/admin/files/")
    return admin.post("/admin/files/", data={"csrf_token": token(page.text), "upload": (io.BytesIO(content), name)},
                      content_type="multipart/form-data", follow_redirects=True)


def deliver(factory, settings, where) -> dict[str, Notification]:
    delivery = Delivery(factory, build_channels(settings), settings)
    try:
        with factory() as s:
            ids = s.scalars(select(Notification.id).where(where)).all()
        for n in ids:
            delivery.deliver(n)
    finally:
        delivery.close()
    with factory() as s:
        return {n.channel: n for n in s.scalars(select(Notification).where(where))}


def send_the_broadcast(factory, settings) -> tuple[int, dict[str, Notification]]:
    """Send the one broadcast to everyone (the admin's confirmation), expand it, deliver its rows."""
    with factory() as s:
        b = s.scalars(select(Broadcast)).one()
        broadcasts.send_all(s, b, "admin:1", str(broadcasts.counts(s, b)[0].messages))
        s.commit()
        bid = b.id
    while not expand_batch(factory, bid, batch_size=10).done:
        pass
    return bid, deliver(factory, settings, Notification.broadcast_id == bid)


def test_an_upload_is_checked_for_size_and_type_and_stored_in_the_database(admin, factory, monkeypatch):
    big = b"%PDF-1.4\n" + b"0" * (3 * 1024 * 1024)  # over the web's 2 MB body limit: the upload route takes more
    assert "attach it as file:1" in upload(admin, "price-list.pdf", big).text
    refused = {
        "app.exe": b"MZ\x90\x00",
        "page.html": b"<html></html>",
        "fake.pdf": b"<html>not a pdf</html>",
        "empty.pdf": b"",
        "notes.txt": "привет".encode("cp1251"),
    }
    for name, content in refused.items():
        page = upload(admin, name, content)
        assert "Not uploaded:" in page.text, name
    monkeypatch.setattr(EmailChannel, "max_attachment_bytes", 1024)
    assert "Not uploaded: big.pdf is 3 KB; at most 1 KB (the email limit" in upload(admin, "big.pdf", PDF).text
    with factory() as s:
        [row] = s.scalars(select(StoredFile)).all()
        assert (row.name, row.mime_type, row.size, row.uploaded_by) == ("price-list.pdf", "application/pdf", len(big),
                                                                       "admin:1")
    listing = admin.get("/admin/files/").text
    assert "file:1" in listing and "price-list.pdf" in listing
    assert admin.get("/admin/files/1").data == big


def test_an_uploaded_file_attached_by_a_broadcast_reaches_the_bot_api_and_the_smtp_sink(
        admin, factory, settings, bot_api, smtp_server):
    upload(admin, "Прайс-лист.pdf", PDF)
    page = admin.get("/admin/broadcasts/new")
    form = {"csrf_token": token(page.text), "name": "Прайс", "template_code": "ANNOUNCEMENT",
            "channels": ["telegram", "email"], "category": "service",
            "template_data": '{"title": "Новый прайс", "text": "Во вложении"}', "attachment": "file:1",
            "mode": "manual", "test_size": "10", "stage_wait_s": "60", "max_failure_pct": "20"}
    created = admin.post("/admin/broadcasts/new", data=form)
    assert created.status_code == 302, re.findall(r"Not created[^<]*", created.text)
    bid, rows = send_the_broadcast(factory, settings)
    with factory() as s:
        assert s.get(Broadcast, bid).data["attachment"] == "file:1"
    assert {c: n.status for c, n in rows.items()} == {"telegram": "sent", "email": "sent"}
    [mail] = smtp_server.wait_for(lambda m: len(m) >= 1)
    assert mail["attachments"] == [{"filename": "Прайс-лист.pdf", "mime_type": "application/pdf", "content": PDF}]
    [document] = bot_api.wait_for(lambda m: len(m) >= 1)
    assert document["method"] == "sendDocument" and document["document"]["content"] == PDF
    assert document["document"]["name"] == "Прайс-лист.pdf"
    assert rows["email"].attachment == {"source": "file", "ref": "file:1", "name": "Прайс-лист.pdf",
                                        "type": "application/pdf", "bytes": len(PDF)}
    details = admin.get(f"/admin/notification/details/?id={rows['email'].id}").text
    assert "Прайс-лист.pdf (application/pdf, 3 KB) from a file uploaded in the admin: file:1" in details
    assert "📎" in admin.get("/admin/notification/").text
    with factory() as s:
        key, raw = api_keys.create(s, "crm", "test")
        s.commit()
    page = admin.get("/api/v1/notifications?client=1", headers={"Authorization": f"Bearer {raw}"}).get_json()
    assert {n["channel"]: n["attachment"]["ref"] for n in page["notifications"]} == {"telegram": "file:1",
                                                                                    "email": "file:1"}
    # A file still attached by a broadcast that is not finished is not deleted.
    page = admin.get("/admin/files/")
    refused = admin.post("/admin/files/delete", data={"csrf_token": token(page.text), "file_id": "1"},
                         follow_redirects=True)
    assert f"Not deleted: file:1 is attached by broadcast {bid}" in refused.text


def test_a_telegram_file_id_goes_to_telegram_by_its_id_and_is_refused_for_email_at_save(
        admin, factory, settings, bot_api):
    page = admin.get("/admin/broadcasts/new")
    form = {"csrf_token": token(page.text), "name": "Видео", "template_code": "ANNOUNCEMENT",
            "channels": ["telegram", "email"], "category": "service",
            "template_data": '{"title": "Видео", "text": "Смотрите"}', "attachment": f"tg:{FILE_ID}",
            "mode": "manual", "test_size": "10", "stage_wait_s": "60", "max_failure_pct": "20"}
    refused = admin.post("/admin/broadcasts/new", data=form)
    assert refused.status_code == 200
    assert "Not created: attachment: Email cannot send a Telegram file_id" in refused.text
    assert admin.post("/admin/broadcasts/new", data={**form, "attachment": "file:77"}).text.count(
        "file:77: no such uploaded file") == 1
    assert "is not an attachment" in admin.post("/admin/broadcasts/new", data={**form, "attachment": "C:/x.pdf"}).text
    created = admin.post("/admin/broadcasts/new", data={**form, "channels": ["telegram"]})
    assert created.status_code == 302
    bot_api.add_file(FILE_ID, "lesson.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    _, rows = send_the_broadcast(factory, settings)
    assert rows["telegram"].status == "sent"
    [document] = bot_api.wait_for(lambda m: len(m) >= 1)
    assert document["document"]["by_file_id"] == FILE_ID and document["document"]["name"] == "lesson.mp4"
    assert rows["telegram"].attachment["source"] == "telegram_file_id"


def test_a_rule_step_attaches_an_uploaded_file_and_refuses_a_file_id_for_a_step_that_emails(
        admin, factory, settings, bot_api, smtp_server):
    upload(admin, "rules.pdf", PDF)
    page = admin.get("/admin/rules/")
    refused = admin.post("/admin/rules/lesson_cancelled", data={
        "csrf_token": token(page.text), "enabled": "on", "attachment_notice": f"tg:{FILE_ID}"}, follow_redirects=True)
    assert "lesson_cancelled / notice: attachment: Email cannot send a Telegram file_id" in refused.text
    saved = admin.post("/admin/rules/lesson_cancelled", data={
        "csrf_token": token(page.text), "enabled": "on", "attachment_notice": "file:1"}, follow_redirects=True)
    assert "saved" in saved.text and 'value="file:1"' in saved.text
    with factory() as s:
        assert s.get(RuleOverride, "lesson_cancelled").attachments == {"notice": "file:1"}
        event_id = emit(s, "lesson_cancelled", recipients=[1], data={
            "lesson_title": "Робототехника", "starts_at": "2026-12-01T16:00:00+03:00"})
        s.commit()
    handle_event(factory, build_channels(settings), event_id)
    rows = deliver(factory, settings, Notification.event_id == event_id)
    assert {c: n.status for c, n in rows.items()} == {"telegram": "sent", "email": "sent"}
    [mail] = smtp_server.wait_for(lambda m: len(m) >= 1)
    assert mail["attachments"][0]["content"] == PDF
    assert bot_api.wait_for(lambda m: len(m) >= 1)[0]["document"]["content"] == PDF
    # The file deleted afterwards: a later message fails with the reason, nothing else breaks.
    with factory() as s:
        s.get(RuleOverride, "lesson_cancelled").attachments = {}
        s.commit()
    page = admin.get("/admin/files/")
    assert "Deleted rules.pdf" in admin.post("/admin/files/delete", data={"csrf_token": token(page.text),
                                                                          "file_id": "1"}, follow_redirects=True).text
    with factory() as s:
        event_id = emit(s, "mass_broadcast", recipients=[1], data={
            "template_code": "ANNOUNCEMENT", "category": "service", "title": "x", "text": "y", "attachment": "file:1"})
        s.commit()
    result = handle_event(factory, build_channels(settings), event_id)
    assert result.status == "failed" and "file:1: no such uploaded file" in (result.error or "")
