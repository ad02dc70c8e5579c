"""Screenshots of the admin's main screens into docs/screenshots/ (run by hand, not by pytest).

    .venv/bin/python -m tests.e2e.admin_screenshots [--out docs/screenshots]

Starts the admin on a temporary SQLite database with sample data
(tests/e2e/admin_site.py) and drives Debian's Chromium through Playwright.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.e2e.admin_site import ADMIN_EMAIL, ADMIN_PASSWORD, start

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import expect, sync_playwright

    from vestnik.shared.fakes.botapi import FakeBotApi

    bot_api = FakeBotApi().start()  # the groups and channels page verifies chats through it
    site = start(Path(tempfile.mkdtemp(prefix="vestnik-shots-")),
                 settings_overrides={"telegram_token": bot_api.token, "telegram_api_base": bot_api.url})
    site.bot_api = bot_api
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1366, "height": 900})

            def shot(name: str, full: bool = True) -> None:
                path = args.out / f"admin-{name}.png"
                page.screenshot(path=str(path), full_page=full)
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)

            page.goto(site.url + "/admin/login")
            page.fill("#email", ADMIN_EMAIL)
            shot("login", full=False)
            page.fill("#password", ADMIN_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#charts svg").first).to_be_visible()
            shot("dashboard")
            page.goto(site.url + "/admin/notification/")
            shot("history", full=False)
            page.goto(site.url + "/admin/notification/?flt0_status_equals=failed&flt1_channel_equals=telegram")
            shot("history-filtered", full=False)
            page.goto(site.url + "/admin/notification/details/?id=8")
            shot("notification")
            with site.session_factory() as s:
                from sqlalchemy import select

                from vestnik.shared.models import NotificationTemplate

                def template_id(channel: str) -> int:
                    return s.scalar(select(NotificationTemplate.id).where(
                        NotificationTemplate.code == "INVOICE_CREATED", NotificationTemplate.channel == channel,
                        NotificationTemplate.locale == "ru"))

                email_id, telegram_id = template_id("email"), template_id("telegram")
            page.goto(site.url + f"/admin/template/edit/?id={telegram_id}")
            expect(page.locator("#te-preview-status")).to_have_text("up to date")
            shot("template-telegram")
            page.goto(site.url + "/admin/template/new/")
            page.fill("#code", "PAYMENT_SUCCESS")
            page.select_option("#channel", "email")
            page.fill("#subject", "Оплата {{ amount|money(currency) }} получена")
            page.locator("trix-editor").click()
            page.keyboard.type("Здравствуйте, ")
            page.locator("#te-variables").get_by_role("button", name="{{ name }}").click()
            page.keyboard.type("! ")
            page.locator("trix-toolbar [data-trix-attribute=bold]").click()
            page.keyboard.type("Спасибо за оплату.")
            page.locator("trix-toolbar [data-trix-attribute=bold]").click()
            page.keyboard.press("Enter")
            page.locator("trix-toolbar [data-trix-attribute=bullet]").click()
            page.keyboard.type("Счёт ")
            page.locator("#te-variables").get_by_role("button", name="{{ invoice_number }}").click()
            page.keyboard.press("Enter")
            page.keyboard.type("Способ: ")
            page.locator("#te-variables").get_by_role("button", name="{{ method }}").click()
            expect(page.frame_locator("#te-preview-frame").locator("li").first).to_contain_text("INV-2026-017")
            shot("template-email")
            page.goto(site.url + f"/admin/template/edit/?id={email_id}")
            page.fill("#body", "{{ invoice_numbr }}")
            page.locator("#body").dispatch_event("input")
            expect(page.locator("#te-problem-body")).to_contain_text("not offered")
            page.get_by_role("button", name="Save", exact=True).click()
            expect(page.locator("#te-preview-status")).to_have_text("with problems")
            shot("template-validation")
            page.goto(site.url + "/admin/client/details/?id=5")
            shot("client")
            chats_and_buttons(site, page, shot, telegram_id)
            page.goto(site.url + "/admin/audit/")
            shot("audit", full=False)
            # The admin in Russian (issue 14): the navbar's switch, kept on the admin user.
            page.goto(site.url + "/admin/")
            page.locator(".lang-switch button[value=ru]").click()
            expect(page.locator("html")).to_have_attribute("lang", "ru")
            expect(page.locator("#charts svg").first).to_be_visible()
            shot("ru-dashboard")
            page.goto(site.url + "/admin/reports/")
            shot("ru-reports", full=False)
            browser.close()
    finally:
        site.stop()
        bot_api.stop()


def chats_and_buttons(site, page, shot, telegram_id: int) -> None:
    """The button editor under the preview, and the groups and channels page with three chats."""
    from playwright.sync_api import expect

    page.goto(site.url + f"/admin/template/edit/?id={telegram_id}")
    page.fill("#buttons", "Оплатить -> https://pay.example.ru/{{ invoice_number }}\n"
                          "Оплатил(а) -> callback:paid | Вопрос -> callback:question")
    expect(page.locator("#te-preview-buttons .te-kb-row")).to_have_count(2)
    expect(page.frame_locator("#te-preview-frame").locator("body")).to_contain_text("INV-2026-017")
    shot("template-buttons")
    api = site.bot_api
    api.add_chat(-1001234567890, "supergroup", "Учителя 5А", bot_status="member")
    api.add_chat(-1009876543210, "channel", "Новости школы", username="school_news")
    api.add_chat(-1005550001111, "supergroup", "Бухгалтерия")
    for ref in ("-1001234567890", "@school_news", "-1005550001111"):
        page.goto(site.url + "/admin/chats/")
        page.fill("#chat-ref", ref)
        page.get_by_role("button", name="Add and verify").click()
    row = page.locator("#chat-list tbody tr").filter(has_text="Бухгалтерия")
    row.locator("select[name=event]").select_option("balance_changed")
    row.locator("select[name=template]").select_option("LOW_BALANCE")
    row.get_by_role("button", name="Add").click()
    api.set_bot_status(-1005550001111, "kicked")
    page.locator("#chat-list tbody tr").filter(has_text="Бухгалтерия").get_by_role(
        "button", name="Verify again").click()
    page.select_option("#post-template", "LESSON_CANCELLED")
    shot("chats")


if __name__ == "__main__":
    main()
