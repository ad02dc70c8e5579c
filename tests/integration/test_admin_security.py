"""Admin security by walking the app: CSRF on every mutating endpoint, no 500 from any filter."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.integration.test_admin import login, make_admin_app, token
from vestnik.shared.models import AuditLog, Notification, NotificationTemplate


@pytest.fixture
def app(session_factory):
    return make_admin_app(session_factory)


def _mutating_admin_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/admin") and rule.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            yield rule


def _state(session_factory):
    with session_factory() as s:
        return (s.scalars(select(Notification.status).order_by(Notification.id)).all(),
                s.scalars(select(NotificationTemplate.body).order_by(NotificationTemplate.id)).all(),
                s.scalars(select(AuditLog.action)).all())


def test_the_walk_finds_every_mutating_admin_endpoint(app):
    paths = {rule.rule for rule in _mutating_admin_rules(app)}
    expected = {"/admin/login", "/admin/logout", "/admin/notification/action/", "/admin/template/new/",
                "/admin/template/edit/", "/admin/template/preview/", "/admin/template/send-test/",
                "/admin/template/versions/restore/", "/admin/client/edit/", "/admin/account/"}
    assert expected <= paths, expected - paths


@pytest.mark.parametrize("how", ["no token", "a token from another session", "a forged token"])
def test_every_mutating_admin_endpoint_refuses_a_request_without_a_valid_csrf_token(app, session_factory, how):
    other = app.test_client()
    login(other, email="support@school.test")
    foreign = token(other.get("/admin/account/").text)
    c = app.test_client()
    login(c)
    before = _state(session_factory)
    checked = []
    for rule in _mutating_admin_rules(app):
        path = re.sub(r"<[^>]+>", "1", rule.rule)
        data = {"id": "1", "rowid": ["1", "2"], "action": "retry", "version": "1", "body": "x",
                "code": "LESSON_CANCELLED", "channel": "telegram", "telegram_chat_id": "1"}
        headers = {}
        if how == "a token from another session":
            data["csrf_token"] = foreign
            headers["X-CSRFToken"] = foreign
        elif how == "a forged token":
            data["csrf_token"] = "IjAwMDAi.ZZZZZZ.forged"
        resp = c.post(f"{path}?id=1", data=data, headers=headers)
        assert resp.status_code == 400 and ("CSRF" in resp.text or "expired" in resp.text), (rule.rule, how)
        checked.append(rule.rule)
    assert len(checked) >= 10
    assert _state(session_factory) == before  # nothing changed, nothing audited
    assert c.get("/admin/").status_code == 200  # and the admin is still signed in


def test_with_a_valid_token_the_same_endpoints_pass_the_csrf_check(app):
    c = app.test_client()
    login(c)
    csrf = token(c.get("/admin/account/").text)
    for rule in _mutating_admin_rules(app):
        if rule.rule in ("/admin/logout", "/admin/login"):
            continue
        resp = c.post(f"{re.sub(r'<[^>]+>', '1', rule.rule)}?id=1", data={"csrf_token": csrf, "id": "1"},
                      headers={"X-CSRFToken": csrf})
        assert resp.status_code != 500, rule.rule
        assert "CSRF" not in resp.text, rule.rule


# ------------------------------------------------------------------ filters never 500

# Odd and hostile values on every filter, search, sort and page of every list: test_hostile_input.py.


@pytest.mark.parametrize("path", ["/admin/notification/details/?id=abc", "/admin/notification/details/?id=99999999",
                                  "/admin/notification/details/?id=" + "9" * 30, "/admin/client/details/?id=x",
                                  "/admin/template/edit/?id=%00", "/admin/outboxevent/details/?id=-1"])
def test_odd_ids_on_detail_pages_never_give_a_500(app, path):
    c = app.test_client()
    login(c)
    assert c.get(path).status_code in (200, 302, 400, 404)
