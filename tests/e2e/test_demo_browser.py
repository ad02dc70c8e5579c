"""The demo in a real browser: press "Cancel lesson", watch the message arrive.

Drives Debian's Chromium (/usr/bin/chromium) through Playwright; never
downloads a browser.  Without Chromium the test skips, except under CI where
a missing browser is a failure.  Set VESTNIK_SCREENSHOTS=1 to refresh
docs/screenshots/demo.png.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "demo.png"


@pytest.fixture
def demo(tmp_path):
    from vestnik.webapp.demo import build_demo

    running = build_demo(tmp_path / "demo", port=0, worker_threads=2)
    yield running
    running.stop()


def test_cancel_lesson_appears_on_what_was_sent(chromium, demo):
    from playwright.sync_api import expect

    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(demo.url + "/")
        expect(page.get_by_role("heading", name="Demo CRM")).to_be_visible()

        page.get_by_role("button", name="Cancel lesson").first.click()
        expect(page.locator(".flash-success")).to_contain_text("Cancelled")

        page.get_by_role("navigation").get_by_role("link", name="What was sent").click()
        # The page refreshes itself; the messages arrive within seconds.
        bubbles = page.locator("#telegram .bubble")
        expect(bubbles.filter(has_text="Занятие отменено").first).to_be_visible(timeout=20_000)  # Russian speakers
        expect(bubbles.filter(has_text="Lesson cancelled").first).to_be_visible(timeout=20_000)  # Emily
        expect(page.locator("#email .mail").filter(has_text="отменено").first).to_be_visible(timeout=20_000)
        expect(page.locator("#notifications .status-sent").first).to_be_visible(timeout=20_000)

        if os.environ.get("VESTNIK_SCREENSHOTS") == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        assert not errors, f"console errors: {errors}"  # e.g. a CSP violation by live.js
    finally:
        page.close()
