"""Admin template editor: variables beside the form, live preview, test sends, versions."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from tests.integration.test_admin import login, make_admin_app, token
from vestnik.shared.config import Settings
from vestnik.shared.models import (
    AdminUser,
    AuditLog,
    DeliveryAttempt,
    Notification,
    NotificationTemplate,
    TemplateVersion,
)


@pytest.fixture
def app(session_factory):
    return make_admin_app(session_factory)


def _editor(c, path="/admin/template/new/"):
    page = c.get(path)
    assert page.status_code == 200
    return page.text


def _preview(c, csrf, **form):
    data = {"code": "LESSON_CANCELLED", "channel": "telegram", "locale": "ru", "subject": "", "body": "",
            **form}
    return c.post("/admin/template/preview/", data=data, headers={"X-CSRFToken": csrf})


def test_editor_lists_the_event_variables_with_examples(app):
    c = app.test_client()
    login(c)
    html = _editor(c)
    catalogue = json.loads(re.search(r'<script type="application/json" id="te-catalogue">(.*?)</script>',
                                     html, re.S).group(1))
    assert catalogue["codes"]["LESSON_CANCELLED"] == ["lesson_cancelled"]
    assert catalogue["codes"]["PAYMENT_REMINDER"] == ["invoice_created"]
    fields = {f["name"]: f for f in catalogue["events"]["lesson_cancelled"]["fields"]}
    assert fields["lesson_title"]["example"] == "Робототехника" and fields["reason"]["required"] is False
    assert [f["name"] for f in catalogue["client"]] == ["name", "client_id"]
    assert catalogue["telegram_max_chars"] == 4096
    # The editor's assets are the app's own files, no CDN, and they are served.
    for src in re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html):
        assert not src.startswith(("http:", "https:", "//")), src
    assert 'src="/static/vendor/trix/trix.umd.min.js"' in html
    for asset in ["/static/vendor/trix/trix.umd.min.js", "/static/vendor/trix/trix.css",
                  "/static/admin/template_editor.js", "/static/admin/template_editor.css"]:
        assert c.get(asset).status_code == 200, asset


def test_preview_renders_unsaved_telegram_content_with_the_example_data(app, session_factory):
    c = app.test_client()
    login(c)
    csrf = token(_editor(c))
    resp = _preview(c, csrf, body="<b>{{ lesson_title }}</b> {{ starts_at }} для {{ name }}")
    assert resp.status_code == 200
    answer = resp.get_json()
    assert answer["problems"] == {}
    assert answer["text"] == "<b>Робототехника</b> 25 ноября, 16:00 для Анна Смирнова"
    assert answer["length"] == len(answer["text"]) and answer["limit"] == 4096
    assert answer["event"] == "lesson_cancelled"
    with session_factory() as s:  # a preview saves nothing
        assert s.scalar(select(NotificationTemplate).where(NotificationTemplate.body.like("%для {{ name }}%"))) is None


def test_preview_escapes_data_and_shows_problems_at_their_field(app):
    c = app.test_client()
    login(c)
    csrf = token(_editor(c))
    answer = _preview(c, csrf, body="{{ lesson_titel }}").get_json()
    assert "lesson_titel: not offered" in answer["problems"]["body"][0] and answer["text"] is None
    answer = _preview(c, csrf, body="{{ lesson_title }} <div>x</div>").get_json()
    assert "Telegram does not accept these tags: div" in answer["problems"]["body"][0]
    answer = _preview(c, csrf, body="{% if %}").get_json()
    assert answer["problems"]["body"][0].startswith("syntax error: line 1")
    answer = _preview(c, csrf, body="{{ ''.__class__ }}").get_json()
    assert "sandbox" in answer["problems"]["body"][0] or "unsafe" in answer["problems"]["body"][0]
    answer = _preview(c, csrf, channel="email", body="<p>{{ name }}</p>", subject="").get_json()
    assert answer["problems"]["subject"] == ["Email needs a subject"]


def test_preview_of_an_email_with_a_real_client(app):
    c = app.test_client()
    login(c)
    csrf = token(_editor(c))
    answer = _preview(c, csrf, channel="email", subject="Отмена: {{ lesson_title }}", client_id="1",
                      body="<div>Здравствуйте, <strong>{{ name }}</strong>!</div><ul><li>{{ reason }}</li></ul>"
                      ).get_json()
    assert answer["problems"] == {}
    assert answer["subject"] == "Отмена: Робототехника"
    assert "<strong>Анна</strong>" in answer["html"] and answer["client"] == "Анна (#1)"
    assert "- болезнь преподавателя" in answer["text"]
    missing = _preview(c, csrf, channel="email", subject="x", body="x", client_id="999").get_json()
    assert missing["problems"]["client_id"] == ["no client #999"]


def test_preview_counts_telegram_characters_against_4096(app):
    c = app.test_client()
    login(c)
    csrf = token(_editor(c))
    answer = _preview(c, csrf, body="{{ lesson_title }}" + "я" * 4090).get_json()
    assert answer["length"] == 4090 + len("Робототехника") and "4096" in answer["problems"]["body"][0]


def test_preview_and_send_test_need_csrf_and_a_writer(app):
    c = app.test_client()
    login(c)
    for path in ["/admin/template/preview/", "/admin/template/send-test/"]:
        assert c.post(path, data={"code": "X", "channel": "telegram", "body": "x"}).status_code == 400
    support = app.test_client()
    login(support, email="support@school.test")
    csrf = token(support.get("/admin/notification/").text)
    for path in ["/admin/template/preview/", "/admin/template/send-test/"]:
        assert support.post(path, data={"body": "x"}, headers={"X-CSRFToken": csrf}).status_code == 403


def test_saving_an_email_template_from_the_editor(app, session_factory):
    c = app.test_client()
    login(c)
    html = _editor(c)
    resp = c.post("/admin/template/new/", data={
        "code": "LESSON_CANCELLED", "channel": "email", "locale": "en", "category": "service", "name": "x",
        "description": "", "subject": "", "body": "<div>{{ name }}</div>", "is_active": "y",
        "csrf_token": token(html)})
    assert resp.status_code == 200  # the form again, with the problem at the subject
    assert "Email needs a subject" in resp.text
    with session_factory() as s:
        assert s.scalar(select(NotificationTemplate).where(NotificationTemplate.name == "x")) is None


# ------------------------------------------------------------------ send test to me


@pytest.fixture
def channels_app(app, bot_api, smtp_server, session_factory):
    app.extensions["vestnik_settings"] = Settings(
        secret_key="k" * 32, telegram_token=bot_api.token, telegram_api_base=bot_api.url, smtp_url=smtp_server.url,
        email_from="Vestnik <noreply@school.test>")
    with session_factory() as s:
        admin = s.scalars(select(AdminUser).where(AdminUser.email == "admin@school.test")).one()
        admin.telegram_chat_id = "777"
        s.commit()
    return app


def test_send_test_to_me_by_telegram_goes_through_the_bot_api_and_is_recorded(channels_app, bot_api,
                                                                              session_factory):
    c = channels_app.test_client()
    login(c)
    csrf = token(_editor(c))
    resp = c.post("/admin/template/send-test/", headers={"X-CSRFToken": csrf}, data={
        "code": "LESSON_CANCELLED", "channel": "telegram", "locale": "ru",
        "body": "Тест: <b>{{ lesson_title }}</b> для {{ name }}"})
    answer = resp.get_json()
    assert resp.status_code == 200 and answer["ok"] is True and answer["address"] == "777"
    sent = bot_api.wait_for(lambda msgs: len(msgs) >= 1)
    assert sent[0]["chat_id"] in ("777", 777) and "Тест: <b>Робототехника</b> для admin" in sent[0]["text"]
    with session_factory() as s:
        n = s.scalars(select(Notification).where(Notification.recipient_id.is_(None))).one()
        attempts = s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.notification_id == n.id)).all()
        admin_id = s.scalar(select(AdminUser.id).where(AdminUser.email == "admin@school.test"))
        audit = s.scalars(select(AuditLog.action)).all()
    assert n.initiator == f"admin:{admin_id}" and n.status == "sent" and n.recipient_address == "777"
    assert n.body == "Тест: <b>Робототехника</b> для admin" and n.sent_at is not None
    assert [(a.outcome, a.attempt_no) for a in attempts] == [("sent", 1)]
    assert "template.send_test" in audit
    # It shows in the history (filter "initiator: any admin") and its detail page opens.
    history = c.get("/admin/notification/?flt0_initiator_is=admin")
    assert history.status_code == 200 and "777" in history.text
    assert c.get(f"/admin/notification/details/?id={n.id}").status_code == 200


def test_send_test_to_me_by_email_reaches_the_smtp_server(channels_app, smtp_server, session_factory):
    c = channels_app.test_client()
    login(c)
    csrf = token(_editor(c))
    answer = c.post("/admin/template/send-test/", headers={"X-CSRFToken": csrf}, data={
        "code": "LESSON_CANCELLED", "channel": "email", "locale": "ru", "subject": "Тест {{ lesson_title }}",
        "body": "<div><strong>{{ lesson_title }}</strong> &amp; {{ reason }}</div>"}).get_json()
    assert answer["ok"] is True and answer["address"] == "admin@school.test"
    mail = smtp_server.wait_for(lambda msgs: len(msgs) >= 1)[0]
    assert mail["to"] == "admin@school.test" and mail["subject"] == "Тест Робототехника"
    assert "<strong>Робототехника</strong> &amp; болезнь преподавателя" in mail["html"]


def test_send_test_failure_is_recorded_and_shown(channels_app, smtp_server, session_factory):
    c = channels_app.test_client()
    login(c)
    csrf = token(_editor(c))
    smtp_server.fail_next(1, reply="554 5.7.1 Message rejected as spam", at="DATA")
    resp = c.post("/admin/template/send-test/", headers={"X-CSRFToken": csrf}, data={
        "code": "LESSON_CANCELLED", "channel": "email", "locale": "ru", "subject": "x", "body": "<div>x</div>"})
    answer = resp.get_json()
    assert answer["ok"] is False and answer["status"] == "failed" and "5.7.1" in answer["error"]
    with session_factory() as s:
        assert s.scalar(select(Notification.status).where(Notification.recipient_id.is_(None))) == "failed"


def test_send_test_without_an_address_or_with_a_broken_template_is_refused(app, session_factory):
    c = app.test_client()
    login(c)
    csrf = token(_editor(c))
    resp = c.post("/admin/template/send-test/", headers={"X-CSRFToken": csrf},
                  data={"code": "LESSON_CANCELLED", "channel": "telegram", "body": "x"})
    assert resp.status_code == 422 and "Telegram chat id" in resp.get_json()["error"]
    resp = c.post("/admin/template/send-test/", headers={"X-CSRFToken": csrf},
                  data={"code": "LESSON_CANCELLED", "channel": "email", "subject": "x", "body": "{{ nope }}"})
    assert resp.status_code == 422 and "nope" in resp.get_json()["error"]
    with session_factory() as s:
        assert s.scalar(select(Notification).where(Notification.recipient_id.is_(None))) is None


def test_resend_skips_test_sends(channels_app, session_factory):
    c = channels_app.test_client()
    login(c)
    csrf = token(_editor(c))
    c.post("/admin/template/send-test/", headers={"X-CSRFToken": csrf},
           data={"code": "LESSON_CANCELLED", "channel": "telegram", "body": "x"})
    with session_factory() as s:
        test_id = s.scalar(select(Notification.id).where(Notification.recipient_id.is_(None)))
        before = s.query(Notification).count()
    page = c.get("/admin/notification/")
    c.post("/admin/notification/action/", data={"action": "resend", "rowid": [str(test_id)],
                                                 "csrf_token": token(page.text)})
    with session_factory() as s:
        assert s.query(Notification).count() == before


# ------------------------------------------------------------------ versions


def _telegram_template(session_factory) -> NotificationTemplate:
    with session_factory() as s:
        return s.scalars(select(NotificationTemplate).where(NotificationTemplate.code == "LESSON_CANCELLED",
                                                            NotificationTemplate.channel == "telegram",
                                                            NotificationTemplate.locale == "ru")).one()


def _save(c, t, body):
    url = f"/admin/template/edit/?id={t.id}"
    page = c.get(url)
    resp = c.post(url, data={"code": t.code, "channel": "telegram", "locale": "ru", "category": "service",
                             "name": t.name, "description": "", "subject": "", "is_active": "y", "body": body,
                             "csrf_token": token(page.text)})
    assert resp.status_code == 302, resp.text[:2000]


def test_versions_are_listed_viewable_and_restorable_with_an_audit(app, session_factory):
    c = app.test_client()
    login(c)
    t = _telegram_template(session_factory)
    shipped = t.body
    _save(c, t, "Первая правка: {{ lesson_title }}")
    _save(c, t, "Вторая правка: {{ lesson_title }}")
    listing = c.get(f"/admin/template/versions/?id={t.id}")
    assert listing.status_code == 200
    assert all(f"v{n}" in listing.text for n in (1, 2, 3)) and "shipped default" in listing.text
    shown = c.get(f"/admin/template/versions/view/?id={t.id}&version=1")
    assert shown.status_code == 200 and "Занятие отменено" in shown.text
    assert "-Вторая правка: {{ lesson_title }}" in shown.text  # the diff from the current body
    resp = c.post("/admin/template/versions/restore/", data={"id": t.id, "version": "1",
                                                              "csrf_token": token(shown.text)})
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/admin/template/edit/?id={t.id}")
    with session_factory() as s:
        restored = s.get(NotificationTemplate, t.id)
        versions = s.scalars(select(TemplateVersion).where(TemplateVersion.template_id == t.id)
                             .order_by(TemplateVersion.version)).all()
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "template.restore")).all()
    assert restored.body == shipped and restored.updated_by.startswith("admin:")
    assert [v.version for v in versions] == [1, 2, 3, 4] and versions[-1].body == shipped
    assert len(audit) == 1 and audit[0].details["restored_version"] == 1 and audit[0].details["version"] == 4


def test_restore_refuses_a_version_that_no_longer_passes_the_checks(app, session_factory):
    c = app.test_client()
    login(c)
    t = _telegram_template(session_factory)
    with session_factory() as s:
        s.add(TemplateVersion(template_id=t.id, version=1, name="old", body="{{ lesson_titel }}",
                              updated_by="admin:1"))
        s.commit()
    page = c.get(f"/admin/template/versions/view/?id={t.id}&version=1")
    resp = c.post("/admin/template/versions/restore/", data={"id": t.id, "version": "1",
                                                              "csrf_token": token(page.text)},
                  follow_redirects=True)
    assert "cannot be restored" in resp.text and "lesson_titel" in resp.text
    with session_factory() as s:
        assert s.get(NotificationTemplate, t.id).body == t.body


def test_support_sees_versions_but_cannot_restore(app, session_factory):
    c = app.test_client()
    login(c)
    t = _telegram_template(session_factory)
    _save(c, t, "Правка: {{ lesson_title }}")
    support = app.test_client()
    login(support, email="support@school.test")
    page = support.get(f"/admin/template/versions/view/?id={t.id}&version=1")
    assert page.status_code == 200 and "Restore version" not in page.text
    resp = support.post("/admin/template/versions/restore/", data={"id": t.id, "version": "1",
                                                                    "csrf_token": token(page.text)})
    assert resp.status_code == 403


@pytest.mark.parametrize(("query", "status"), [("id=abc", 400), ("id=999999", 404), ("id=1&version=x", 400),
                                               ("id=1&version=999", 404)])
def test_odd_version_urls_give_a_4xx_not_500(app, query, status):
    c = app.test_client()
    login(c)
    path = "/admin/template/versions/view/" if "version" in query else "/admin/template/versions/"
    resp = c.get(f"{path}?{query}")
    assert resp.status_code == status
    if status == 400:  # not a number: the answer names the field
        assert ("version: " if "version" in query else "id: ") in resp.text


def test_my_account_sets_the_telegram_chat_id_for_tests(app, session_factory):
    c = app.test_client()
    login(c)
    page = c.get("/admin/account/")
    assert page.status_code == 200 and "admin@school.test" in page.text
    bad = c.post("/admin/account/", data={"telegram_chat_id": "12ab", "csrf_token": token(page.text)})
    assert bad.status_code == 200 and "digits only" in bad.text
    assert c.post("/admin/account/", data={"telegram_chat_id": "4242", "csrf_token": token(page.text)}
                  ).status_code == 302
    with session_factory() as s:
        assert s.scalar(select(AdminUser.telegram_chat_id).where(AdminUser.email == "admin@school.test")) == "4242"
        assert "admin.account" in s.scalars(select(AuditLog.action)).all()


def test_a_second_template_for_the_same_code_channel_and_locale_is_refused_at_the_field(app, session_factory):
    c = app.test_client()
    login(c)
    resp = c.post("/admin/template/new/", data={
        "code": "LESSON_CANCELLED", "channel": "telegram", "locale": "ru", "category": "service", "name": "dup",
        "description": "", "subject": "", "body": "{{ lesson_title }}", "is_active": "y",
        "csrf_token": token(_editor(c))})
    assert resp.status_code == 200 and "exists already" in resp.text
    assert "IntegrityError" not in resp.text and "INSERT" not in resp.text
    # The error is at its field; Flask-Admin's generic banner would only repeat that something is wrong.
    assert "Failed to create record" not in resp.text and "Failed to save record" not in resp.text
    with session_factory() as s:
        assert s.scalar(select(NotificationTemplate).where(NotificationTemplate.name == "dup")) is None


def test_a_test_send_cut_short_is_left_for_the_reaper_as_uncertain(channels_app, session_factory, monkeypatch):
    from datetime import timedelta

    from vestnik.shared.models import utcnow
    from vestnik.workers.channels.telegram import TelegramChannel
    from vestnik.workers.scheduling import reap_stuck

    c = channels_app.test_client()
    login(c)
    csrf = token(_editor(c))

    def dies(self, address, message):
        with session_factory() as s:  # what another process sees during the call
            n = s.scalars(select(Notification).where(Notification.recipient_id.is_(None))).one()
            assert n.status == "processing" and n.locked_until is not None
        raise KeyboardInterrupt  # the process is stopped mid-call

    monkeypatch.setattr(TelegramChannel, "send", dies)
    with pytest.raises(KeyboardInterrupt):
        c.post("/admin/template/send-test/", headers={"X-CSRFToken": csrf},
               data={"code": "LESSON_CANCELLED", "channel": "telegram", "body": "x"})
    assert reap_stuck(session_factory, utcnow() + timedelta(hours=1)) == (0, 1)
    with session_factory() as s:
        n = s.scalars(select(Notification).where(Notification.recipient_id.is_(None))).one()
    assert n.status == "failed" and n.delivery_uncertain is True
