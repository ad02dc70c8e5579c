"""The admin in a real browser: sign in, write templates with the editor, filter the history.

Drives Debian's Chromium (/usr/bin/chromium) through Playwright; never
downloads a browser.  Without Chromium the test skips, except under CI where a
missing browser is a failure.  Every page is also checked for console errors,
which is how a Content-Security-Policy violation shows.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import delete, select

from tests.e2e.admin_site import admin_page, start
from tests.processes import wait_until

pytestmark = pytest.mark.browser


@pytest.fixture
def site(tmp_path, bot_api):
    from vestnik.shared.models import NotificationTemplate

    running = start(tmp_path / "admin", settings_overrides={"telegram_token": bot_api.token,
                                                            "telegram_api_base": bot_api.url})
    with running.session_factory() as s:  # room for new PAYMENT_SUCCESS templates, written in the editor
        s.execute(delete(NotificationTemplate).where(NotificationTemplate.code == "PAYMENT_SUCCESS"))
        s.commit()
    yield running
    running.stop()


@pytest.fixture
def page(chromium, site):
    page = admin_page(chromium, site.url, accept_dialogs=True)
    yield page
    page.close()


def _template(site, code, channel, locale="ru"):
    from vestnik.shared.models import NotificationTemplate

    with site.session_factory() as s:
        return s.scalars(select(NotificationTemplate).where(NotificationTemplate.code == code,
                                                            NotificationTemplate.channel == channel,
                                                            NotificationTemplate.locale == locale)).first()


def test_write_a_telegram_template_with_variables_preview_validation_and_test_send(page, site, bot_api):
    from playwright.sync_api import expect

    expect(page.locator("#charts svg[role=img]").first).to_be_visible()  # the dashboard after sign-in
    page.get_by_role("link", name="Templates").click()
    # The matrix by event: PAYMENT_SUCCESS is missing in Telegram Russian; its cell opens the form for it.
    page.get_by_role("link", name="missing PAYMENT_SUCCESS telegram ru: create it").click()
    expect(page.locator("#code")).to_have_value("PAYMENT_SUCCESS")
    expect(page.locator("#channel")).to_have_value("telegram")
    expect(page.locator("#locale")).to_have_value("ru")
    page.fill("#name", "Оплата получена")
    # The variables of payment_success are listed beside the editor, with examples.
    variables = page.locator("#te-variables")
    expect(variables).to_contain_text("Used by: payment_success")
    expect(variables).to_contain_text('e.g. "4500.00"')
    expect(page.locator("#te-telegram-hints")).to_contain_text("<blockquote>")
    body = page.locator("#body")
    body.click()
    body.type("✅ <b>Оплата</b> ")
    variables.get_by_role("button", name="{{ amount }}").click()
    body.type(" ")
    variables.get_by_role("button", name="{{ currency }}").click()
    body.type(" получена, {{ nam }}!")
    # The live check shows the mistake at the field, before saving.
    expect(page.locator("#te-problem-body")).to_contain_text("nam: not offered by the payment_success event")
    expect(page.locator("#te-counter")).to_contain_text("/ 4096 characters")
    # Saving anyway: the server refuses and says so at the field.
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("form.admin-form")).to_contain_text("nam: not offered by the payment_success event")
    assert _template(site, "PAYMENT_SUCCESS", "telegram") is None
    # Fixed: the preview renders the example data.
    body = page.locator("#body")
    body.fill("✅ <b>Оплата</b> {{ amount }} {{ currency }} получена, {{ name }}!")
    frame = page.frame_locator("#te-preview-frame")
    expect(frame.locator("body")).to_contain_text("✅ Оплата 4500.00 RUB получена, Анна Смирнова!")
    expect(frame.locator("b")).to_have_text("Оплата")
    expect(page.locator("#te-problem-body")).to_be_empty()
    expect(page.locator("#te-counter")).to_contain_text("rendered with the example: 52 / 4096")
    # A real client instead of the example one.
    page.fill("#te-client", "4")
    expect(frame.locator("body")).to_contain_text("получена, Emily Clark!")
    # "Send test to me" reaches the admin's Telegram chat through the Bot API.
    page.get_by_role("button", name="Send test to me").click()
    expect(page.locator("#te-send-result")).to_contain_text("Sent to 700")
    sent = bot_api.wait_for(lambda msgs: any(m["chat_id"] in ("700", 700) for m in msgs))
    assert any("<b>Оплата</b> 4500.00 RUB" in m["text"] for m in sent)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".alert-success")).to_be_visible()
    saved = _template(site, "PAYMENT_SUCCESS", "telegram")
    assert saved.body == "✅ <b>Оплата</b> {{ amount }} {{ currency }} получена, {{ name }}!"
    assert saved.updated_by == "admin:1"
    assert not page.errors, page.errors


def test_write_an_email_template_in_the_visual_editor(page, site):
    from playwright.sync_api import expect

    page.goto(site.url + "/admin/template/new/")
    page.fill("#code", "PAYMENT_SUCCESS")
    page.select_option("#channel", "email")
    page.fill("#name", "Оплата получена (email)")
    page.fill("#subject", "Оплата {{ amount|money(currency) }}")
    editor = page.locator("trix-editor")
    expect(editor).to_be_visible()  # an empty body opens in the visual editor
    editor.click()
    page.keyboard.type("Спасибо, ")
    page.locator("#te-variables").get_by_role("button", name="{{ name }}").click()
    page.keyboard.type("! ")
    page.locator("trix-toolbar [data-trix-attribute=bold]").click()
    page.keyboard.type("Оплата получена")
    page.locator("trix-toolbar [data-trix-attribute=bold]").click()
    page.keyboard.press("Enter")
    page.locator("trix-toolbar [data-trix-attribute=bullet]").click()
    page.keyboard.type("Счёт ")
    page.locator("#te-variables").get_by_role("button", name="{{ invoice_number }}").click()
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")  # out of the list
    page.locator("trix-toolbar [data-trix-attribute=italic]").click()
    page.keyboard.type("Личный кабинет")
    # Select the line with a triple click (Shift+Home depends on the platform's key bindings), and wait
    # until Trix took the selection from the browser's selectionchange event; polled from Python, since
    # wait_for_function evaluates strings in the page, which the admin's CSP forbids.
    page.locator("trix-editor em", has_text="Личный кабинет").click(click_count=3)
    selected = ("() => { const r = document.querySelector('trix-editor').editor.getSelectedRange();"
                " return r[1] - r[0]; }")
    wait_until(lambda: page.evaluate(selected) >= len("Личный кабинет"), 10, message="Trix's selection")
    page.locator("trix-toolbar [data-trix-action=link]").click()
    page.locator("trix-toolbar input[name=href]").fill("https://school.example.com/me")
    page.locator("trix-toolbar input[data-trix-method=setAttribute]").click()
    frame = page.frame_locator("#te-preview-frame")
    expect(frame.locator("a")).to_have_attribute("href", "https://school.example.com/me")
    expect(frame.locator("a")).to_have_text("Личный кабинет")
    expect(frame.locator("em")).to_have_text("Личный кабинет")
    expect(page.locator("#te-preview-subject")).to_have_text("Subject: Оплата 4 500,00 ₽")
    expect(frame.locator("strong")).to_have_text("Оплата получена")
    expect(frame.locator("li")).to_have_text("Счёт INV-2026-017")
    expect(frame.locator("body")).to_contain_text("Спасибо, Анна Смирнова!")
    # The HTML source view shows what will be saved.
    page.get_by_role("button", name="HTML source").click()
    expect(page.locator("#body")).to_be_visible()
    assert "<strong>Оплата получена</strong>" in page.input_value("#body")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".alert-success")).to_be_visible()
    saved = _template(site, "PAYMENT_SUCCESS", "email")
    assert "Спасибо, {{ name }}!" in saved.body and "<strong>Оплата получена</strong>" in saved.body
    assert "<li>Счёт {{ invoice_number }}</li>" in saved.body
    assert '<a href="https://school.example.com/me"><em>Личный кабинет</em></a>' in saved.body
    assert not page.errors, page.errors


def test_filter_the_history_open_a_notification_and_retry_it(page, site):
    from playwright.sync_api import expect

    from vestnik.shared.models import Notification

    page.get_by_role("link", name="History").click()
    expect(page.locator("table.model-list tbody tr")).to_have_count(50)
    page.get_by_role("link", name="Add Filter").click()
    page.locator("a.filter", has_text="Status").click()
    page.locator("table.filters select.filter-val").select_option("failed", force=True)
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"status_equals=failed"))
    rows = page.locator("table.model-list tbody tr")
    expect(rows.first).to_contain_text("failed")
    assert rows.count() == 24 and all("failed" in t for t in rows.all_inner_texts())
    # Retry one in bulk through the "With selected" menu (rebound for the CSP).
    rows.first.locator("input.action-checkbox").check()
    page.get_by_role("button", name="With selected").click()
    page.get_by_role("link", name="Retry failed").click()
    expect(page.locator(".alert")).to_contain_text("1 of 1 notification(s) changed")
    expect(rows).to_have_count(23)
    # Open a notification: its full text, attempts and the error.
    rows.first.get_by_title("full text").click()
    expect(page.get_by_text("Forbidden: bot was blocked by the user").first).to_be_visible()
    expect(page.locator("pre.vestnik-pre").first).to_be_visible()
    expect(page.get_by_role("cell", name="Attempts").first).to_be_visible()
    with site.session_factory() as s:
        assert s.query(Notification).filter_by(status="failed").count() == 23
    assert not page.errors, page.errors
