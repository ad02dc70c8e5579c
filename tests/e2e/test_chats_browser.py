"""The admin's groups and channels and the template's button editor, in Debian's Chromium (Playwright):
register a group and a channel (verified through the fake Bot API), see whether the bot may post,
choose an event that posts there, post a template, see a chat that removed the bot become
unreachable; write buttons in the template editor, see them under the preview and a bad one named at
the field.  Every page is checked for console errors (a CSP violation shows there)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from tests.e2e.admin_site import admin_page, start

pytestmark = pytest.mark.browser
GROUP, CHANNEL = -1001234567890, -1009876543210


@pytest.fixture
def site(tmp_path, bot_api):
    running = start(tmp_path / "admin", settings_overrides={"telegram_token": bot_api.token,
                                                            "telegram_api_base": bot_api.url})
    yield running
    running.stop()


@pytest.fixture
def page(chromium, site):
    page = admin_page(chromium, site.url)
    yield page
    page.close()


def test_register_groups_and_channels_choose_events_post_and_see_one_become_unreachable(page, site, bot_api):
    from playwright.sync_api import expect

    from vestnik.shared.models import AdminUser, Chat, Notification

    bot_api.add_chat(GROUP, "supergroup", "Учителя 5А", bot_status="member")
    bot_api.add_chat(CHANNEL, "channel", "Новости школы", username="school_news", can_post_messages=False)
    page.get_by_role("link", name="Groups and channels").click()
    expect(page.locator("#chat-list")).to_contain_text("No groups or channels yet.")
    page.fill("#chat-ref", str(GROUP))
    page.get_by_role("button", name="Add and verify").click()
    expect(page.locator(".alert-success")).to_contain_text("Учителя 5А is registered; the bot may post there.")
    page.fill("#chat-ref", "-100555")
    page.get_by_role("button", name="Add and verify").click()
    expect(page.locator(".alert-danger")).to_contain_text("Not added: getChat: 400 Bad Request: chat not found")
    page.fill("#chat-ref", "@school_news")
    page.get_by_role("button", name="Add and verify").click()
    expect(page.locator(".alert-warning")).to_contain_text("the bot may not post there (administrator)")
    with site.session_factory() as s:
        group = s.scalar(select(Chat).where(Chat.address == str(GROUP)))
        channel = s.scalar(select(Chat).where(Chat.address == str(CHANNEL)))
    row = page.locator(f"#chat-{group.id}")
    expect(row).to_contain_text("supergroup")
    expect(row).to_contain_text("may post")
    expect(page.locator(f"#chat-{channel.id}")).to_contain_text("may not post")
    expect(page.locator(f"#post-to-{channel.id}")).to_be_disabled()  # the bot may not post there
    # A staff alert: balance_changed posts LOW_BALANCE in the group.
    row.locator("select[name=event]").select_option("balance_changed")
    row.locator("select[name=template]").select_option("LOW_BALANCE")
    row.get_by_role("button", name="Add").click()
    expect(page.locator(f"#chat-{group.id}")).to_contain_text("balance_changed → LOW_BALANCE")
    # A post, now.
    page.check(f"#post-to-{group.id}")
    page.select_option("#post-template", "LESSON_CANCELLED")
    page.fill("#post-data", '{"lesson_title": "Шахматы", "starts_at": "2026-12-03T13:00:00+00:00"}')
    page.locator("#chat-post").get_by_role("button", name="Post").click()
    expect(page.locator(".alert-success")).to_contain_text("1 post(s) of LESSON_CANCELLED queued (now).")
    with site.session_factory() as s:
        post = s.scalar(select(Notification).where(Notification.recipient_address == str(GROUP)))
        assert (post.status, post.recipient_id, post.initiator) == ("pending", None, "admin:1")
    # The history lists the post under the group's name.
    page.locator(f"#chat-{group.id}").get_by_role("link", name="Posts").click()
    expect(page.locator("table.model-list")).to_contain_text("Учителя 5А")
    # The group's admin removes the bot; verifying again says so.
    bot_api.set_bot_status(GROUP, "kicked")
    page.get_by_role("link", name="Groups and channels").click()
    page.locator(f"#chat-{group.id}").get_by_role("button", name="Verify again").click()
    expect(page.locator(".alert-danger")).to_contain_text("Forbidden: bot was kicked from the supergroup chat")
    expect(page.locator(f"#chat-{group.id} .chat-state")).to_contain_text("unreachable")
    # In Russian.
    with site.session_factory() as s:
        s.execute(update(AdminUser).values(locale="ru"))
        s.commit()
    page.reload()
    expect(page.locator("h1")).to_have_text("Группы и каналы")
    expect(page.locator(f"#chat-{group.id} .chat-state")).to_contain_text("недоступен")
    assert not page.errors, page.errors


def test_the_button_editor_shows_the_keyboard_under_the_preview_and_names_a_bad_button(page, site):
    from playwright.sync_api import expect

    from vestnik.shared.models import NotificationTemplate

    with site.session_factory() as s:
        template_id = s.scalar(select(NotificationTemplate.id).where(
            NotificationTemplate.code == "LESSON_CANCELLED", NotificationTemplate.channel == "telegram",
            NotificationTemplate.locale == "ru"))
    page.goto(f"{site.url}/admin/template/edit/?id={template_id}")
    buttons = page.locator("#buttons")
    buttons.fill("Расписание -> https://school.example/schedule/{{ lesson_title|urlencode }}\n"
                 "Понятно -> callback:ok | Вопрос -> callback:question")
    keyboard = page.locator("#te-preview-buttons")
    expect(keyboard.locator(".te-kb-row")).to_have_count(2)
    expect(keyboard.locator(".te-kb-row").nth(0)).to_have_text("Расписание ↗")
    expect(keyboard.locator(".te-kb-row").nth(1).locator(".te-kb-button")).to_have_text(["Понятно", "Вопрос"])
    expect(keyboard.locator("[data-kind=url]")).to_have_attribute("title", "https://school.example/schedule/"
                                                                  "%D0%A0%D0%BE%D0%B1%D0%BE%D1%82%D0%BE%D1%82%D0"
                                                                  "%B5%D1%85%D0%BD%D0%B8%D0%BA%D0%B0")
    buttons.fill("Понятно -> callback:ok | Ссылка -> javascript:alert(1)")
    expect(page.locator("#te-problem-buttons")).to_contain_text(
        "row 1, button 2: the link must start with http://, https:// or tg://")
    expect(keyboard).to_be_hidden()
    buttons.fill("Понятно -> callback:ok | Вопрос -> callback:question")
    expect(page.locator("#te-problem-buttons")).to_be_empty()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".alert-success")).to_be_visible()
    with site.session_factory() as s:
        saved = s.get(NotificationTemplate, template_id).buttons
    assert saved == "Понятно -> callback:ok | Вопрос -> callback:question"
    assert not page.errors, page.errors
