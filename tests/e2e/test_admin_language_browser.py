"""The admin's language switch in a real browser (Debian's Chromium through Playwright): a Russian
browser gets the sign-in page in Russian, the switch changes the language of every page and its lang
attribute, and the choice stays with the admin after signing out and in again."""

from __future__ import annotations

import pytest

from tests.e2e.admin_site import ADMIN_EMAIL, ADMIN_PASSWORD, start

pytestmark = pytest.mark.browser


@pytest.fixture
def site(tmp_path):
    running = start(tmp_path / "admin")
    yield running
    running.stop()


def test_the_language_switch_changes_every_page_and_is_kept_per_admin(chromium, site):
    from playwright.sync_api import expect

    context = chromium.new_context(locale="ru-RU", viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(site.url + "/admin/login")
    expect(page.locator("html")).to_have_attribute("lang", "ru")  # the browser's Accept-Language
    expect(page.get_by_role("heading", name="Вход в админку")).to_be_visible()

    page.get_by_role("button", name="EN").click()  # before signing in: kept in the session
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.fill("#email", ADMIN_EMAIL)
    page.fill("#password", ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Templates")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")

    page.get_by_role("button", name="RU").click()  # in the navbar: kept on the admin user
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page.get_by_role("button", name="RU")).to_have_attribute("aria-current", "true")
    for link in ("История", "Клиенты", "Журнал действий", "Моя учётная запись"):
        page.get_by_role("link", name=link, exact=True).click()
        expect(page.locator("html")).to_have_attribute("lang", "ru")
        expect(page.get_by_role("heading", level=1)).to_have_text(link)
    page.goto(site.url + "/admin/template/")
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page.get_by_role("link", name="Создать")).to_be_visible()  # Flask-Admin's own catalogue
    expect(page.get_by_role("columnheader", name="Переводы")).to_be_visible()

    page.get_by_role("button", name="Выйти").click()
    context.clear_cookies()  # a fresh session: the language comes from the admin user, not the cookie
    page.goto(site.url + "/admin/login")
    page.get_by_role("button", name="EN").click()
    page.fill("#email", ADMIN_EMAIL)
    page.fill("#password", ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page.get_by_role("link", name="Сводка")).to_be_visible()
    assert errors == []
    context.close()
