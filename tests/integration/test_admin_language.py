"""The admin in Russian or English (Flask-Babel), chosen per admin user; every page's lang attribute
follows the choice; Flask-Admin's own words (List, Create, filters) come from its catalogues."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from tests.integration.test_admin import PASSWORD, login, make_admin_app, token
from vestnik.shared.models import AdminUser, AuditLog


@pytest.fixture
def app(session_factory):
    return make_admin_app(session_factory)


def lang_of(html: str) -> str:
    return re.search(r"<html lang=\"([^\"]+)\"", html).group(1)


def test_before_sign_in_the_browser_decides_and_the_switch_overrides(app):
    c = app.test_client()
    page = c.get("/admin/login").text
    assert lang_of(page) == "en" and "Sign in to the admin" in page
    page = c.get("/admin/login", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"}).text
    assert lang_of(page) == "ru" and "Вход в админку" in page and "Пароль" in page
    c.post("/admin/language", data={"lang": "ru", "csrf_token": token(page), "next": "/admin/login"})
    page = c.get("/admin/login").text
    assert lang_of(page) == "ru" and 'aria-current="true">RU<' in page
    bad = c.post("/admin/login", data={"email": "admin@school.test", "password": "wrong", "csrf_token": token(page)})
    assert bad.status_code == 401 and "Неверная почта или пароль." in bad.text


def test_each_admin_reads_the_admin_in_their_own_language(app, session_factory):
    with session_factory() as s:
        s.add(AdminUser(email="olga@school.test", password_hash=generate_password_hash(PASSWORD), role="admin",
                        locale="ru"))
        s.commit()
    olga, admin = app.test_client(), app.test_client()
    assert login(olga, "olga@school.test").status_code == 302
    assert login(admin).status_code == 302
    for path in ("/admin/", "/admin/template/", "/admin/notification/", "/admin/client/", "/admin/rules/",
                 "/admin/account/", "/admin/broadcasts/", "/admin/audit/"):
        russian, english = olga.get(path), admin.get(path)
        assert russian.status_code == english.status_code == 200, path
        assert (lang_of(russian.text), lang_of(english.text)) == ("ru", "en"), path
        assert re.search(r">\s*Шаблоны\s*<", russian.text) and re.search(r">\s*Templates\s*<", english.text), path
        assert "Выйти" in russian.text and "Sign out" in english.text
    listing = olga.get("/admin/template/").text
    assert "Список" in listing and "Создать" in listing and "Переводы" in listing  # Flask-Admin's and ours

    page = admin.get("/admin/").text  # the navbar switch: kept on the admin user and audited
    resp = admin.post("/admin/language", data={"lang": "ru", "csrf_token": token(page), "next": "/admin/template/"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/template/")
    assert lang_of(admin.get("/admin/template/").text) == "ru"
    with session_factory() as s:
        assert s.scalars(select(AdminUser.locale).where(AdminUser.email == "admin@school.test")).one() == "ru"
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "admin.language")).one()
        assert entry.details == {"locale": [None, "ru"]}
    again = app.test_client()  # a new session of the same admin: the choice is theirs, not the cookie's
    login(again)
    assert lang_of(again.get("/admin/").text) == "ru"


def test_my_account_sets_the_language_and_a_wrong_one_changes_nothing(app, session_factory):
    c = app.test_client()
    login(c)
    page = c.get("/admin/account/").text
    assert '<option selected value="en">English</option>' in page or 'value="en" selected' in page
    c.post("/admin/account/", data={"csrf_token": token(page), "telegram_chat_id": "", "locale": "ru"})
    page = c.get("/admin/account/").text
    assert lang_of(page) == "ru" and "Язык админки" in page and "Сохранено." in page
    c.post("/admin/language", data={"lang": "uz-latn", "csrf_token": token(page)})  # not an admin language
    c.post("/admin/account/", data={"csrf_token": token(page), "locale": "de"})
    with session_factory() as s:
        assert s.scalars(select(AdminUser.locale).where(AdminUser.email == "admin@school.test")).one() == "ru"


def test_a_missing_translation_marker_reads_in_the_admins_language(app, session_factory):
    from sqlalchemy import delete

    from vestnik.shared.models import NotificationTemplate

    with session_factory() as s:
        s.execute(delete(NotificationTemplate).where(NotificationTemplate.code == "LESSON_CANCELLED",
                                                     NotificationTemplate.locale == "uz-latn"))
        s.commit()
    c = app.test_client()
    login(c)
    assert "missing: uz-latn" in c.get("/admin/template/?search=LESSON_CANCELLED").text
    c.post("/admin/language", data={"lang": "ru", "csrf_token": token(c.get("/admin/").text)})
    assert "нет: uz-latn" in c.get("/admin/template/?search=LESSON_CANCELLED").text
