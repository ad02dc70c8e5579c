"""The admin for daily use in Chromium: resend only failed, progress with an estimated end (live, no
reload), CSV export of the history and of a broadcast's failed recipients, the dashboard's charts,
scheduling at a local time and the planned list, quiet hours per category.

The admin is the real Flask app on SQLite with sample data (``tests/e2e/admin_site.py``); no
worker runs, so each step's progress is made by writing the rows a worker would write, and the
page is watched picking it up by itself.  With VESTNIK_SCREENSHOTS=1 the test also refreshes
docs/screenshots/admin-daily-*.png at desktop (1366 px) and phone (390 px) widths.
"""

from __future__ import annotations

import csv
import io
import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.e2e.admin_site import ADMIN_EMAIL, ADMIN_PASSWORD, start
from vestnik.shared.models import Broadcast, Client, DeliveryAttempt, Notification, utcnow
from vestnik.workers import broadcasts
from vestnik.workers.broadcasting import expand_batch

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDTHS = {"desktop": 1366, "phone": 390}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    # Three emails a day: the estimated end is set by the daily quota, in days.
    s = start(tmp_path_factory.mktemp("admin-daily"), settings_overrides={"email_rate_per_day": 3})
    yield s
    s.stop()


def _finished_broadcast(factory) -> int:
    """A completed broadcast to clients 1-4 by email: 1 sent, 2 and 3 failed for a transient reason,
    4 failed permanently (not resent); client 1's name is a spreadsheet formula."""
    with factory() as s:
        s.get(Client, 1).name = "=HYPERLINK(\"http://x\")"
        b = broadcasts.create(s, name="Ярмарка", template_code="ANNOUNCEMENT", channels=["email"],
                              category="service", targeting={}, initiator="admin:1",
                              data={"title": "Ярмарка", "text": "В субботу"}, client_ids=[1, 2, 3, 4])
        whole, _ = broadcasts.counts(s, b)
        broadcasts.send_all(s, b, "admin:1", typed=str(whole.messages))
        s.commit()
        bid = b.id
    while not expand_batch(factory, bid).done:
        pass
    with factory() as s:
        for n in s.scalars(select(Notification).where(Notification.broadcast_id == bid)):
            outcome = {2: "transient", 3: "rate_limited", 4: "permanent"}.get(n.recipient_id)
            n.status = "failed" if outcome else "sent"
            n.last_error = {"transient": "gave up after 5 attempts: 451 try later", "rate_limited": "429 slow down",
                            "permanent": "=550 no such mailbox"}.get(outcome)
            if outcome:
                s.add(DeliveryAttempt(notification_id=n.id, attempt_no=1, outcome=outcome))
        b = s.get(Broadcast, bid)
        b.status, b.finished_at = "completed", utcnow()
        s.commit()
    return bid


def _sign_in(page, url: str) -> None:
    page.goto(url + "/admin/login")
    page.fill("#email", ADMIN_EMAIL)
    page.fill("#password", ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url + "/admin/")


def _shots(browser, url: str, name: str, path: str) -> None:
    if os.environ.get("VESTNIK_SCREENSHOTS") != "1":
        return
    for label, width in WIDTHS.items():
        page = browser.new_page(viewport={"width": width, "height": 900})
        _sign_in(page, url)
        page.goto(url + path)
        page.screenshot(path=str(SHOTS / f"admin-daily-{name}-{label}.png"), full_page=True)
        page.close()


def _watch_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error"
            and "Failed to load resource" not in m.text else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400
            and not r.url.endswith("/favicon.ico") else None)
    return errors


def test_resend_failed_then_progress_with_an_estimate_updates_live(chromium, site):
    from playwright.sync_api import expect

    bid = _finished_broadcast(site.session_factory)
    page = chromium.new_page(viewport={"width": 1366, "height": 900})
    errors = _watch_errors(page)
    _sign_in(page, site.url)
    page.goto(f"{site.url}/admin/broadcasts/{bid}")
    resend = page.locator("#resend")
    expect(resend).to_contain_text("Resend only failed: 2 messages to 2 clients (2 email)")
    page.fill("#resend-typed", "3")
    resend.get_by_role("button", name="Resend failed").click()
    expect(page.get_by_role("alert")).to_contain_text("type the number of messages, 2")
    page.fill("#resend-typed", "2")
    page.locator("#resend").get_by_role("button", name="Resend failed").click()
    expect(page.get_by_role("alert")).to_contain_text("Resending 2 failed messages (round 1)")
    email = page.locator('#p-channels [data-channel="email"]')
    expect(email).to_contain_text("1 sent · 3 failed (2 resent) · 2 waiting")
    # Three a day, the day's three used already (the attempts above): the end is days away.
    expect(page.locator("#p-eta")).to_be_visible()
    expect(page.locator("#p-ends-in")).to_contain_text("day")
    expect(page.locator("#p-decided")).to_contain_text("email limit 3 a day")
    bar = email.locator(".progress-stack")
    expect(bar).to_have_attribute("aria-label", "email: 1 sent, 3 failed, 2 waiting of 6")
    _shots(chromium, site.url, "progress", f"/admin/broadcasts/{bid}")
    # A worker sends one of them: the page shows it by itself (the marker proves there was no reload).
    page.evaluate("window.__noReload = true")
    with site.session_factory() as s:
        s.execute(update(Notification).where(Notification.broadcast_id == bid,
                                             Notification.step == "resend-failed-1",
                                             Notification.recipient_id == 2).values(status="sent"))
        s.commit()
    expect(email).to_contain_text("2 sent · 3 failed (2 resent) · 1 waiting")
    expect(bar).to_have_attribute("aria-label", "email: 2 sent, 3 failed, 1 waiting of 6")
    assert page.evaluate("window.__noReload") is True
    assert not errors, errors  # no CSP violation, no failed request


def test_export_history_and_failed_recipients(chromium, site):
    from playwright.sync_api import expect

    bid = _finished_broadcast(site.session_factory)
    page = chromium.new_page(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    _sign_in(page, site.url)
    page.goto(f"{site.url}/admin/broadcasts/{bid}")
    expect(page.locator("#report")).to_contain_text("451 try later")
    with page.expect_download() as got:
        page.get_by_role("link", name="failed recipients (CSV)").click()
    rows = list(csv.reader(io.StringIO(Path(got.value.path()).read_text("utf-8-sig"))))
    assert rows[0][:3] == ["client_id", "client_name", "channel"]
    assert sorted(r[0] for r in rows[1:]) == ["2", "3", "4"]
    assert "'=550 no such mailbox" in {r[4] for r in rows[1:]}  # a formula is not a formula in Excel
    # The history filtered to failed email, exported with its filters (every row, not a page).
    page.goto(f"{site.url}/admin/notification/?flt0_status_equals=failed&flt1_channel_equals=email")
    with page.expect_download() as got:
        page.get_by_role("link", name="Export").click()
    text = Path(got.value.path()).read_text("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    assert header[:4] == ["id", "created_at_utc", "sent_at_utc", "status"]
    assert {r[header.index("status")] for r in rows[1:]} == {"failed"}
    assert {r[header.index("channel")] for r in rows[1:]} == {"email"}
    with site.session_factory() as s:
        from sqlalchemy import func

        expected = s.scalar(select(func.count()).select_from(Notification).where(
            Notification.status == "failed", Notification.channel == "email"))
    assert len(rows) - 1 == expected


def test_dashboard_charts_and_reports(chromium, site):
    from playwright.sync_api import expect

    page = chromium.new_page(viewport={"width": 1366, "height": 900})
    errors = _watch_errors(page)
    _sign_in(page, site.url)
    charts = page.locator("#charts svg[role=img]")
    expect(charts).to_have_count(4)
    telegram = page.get_by_role("img", name="telegram: sent and failed per day")
    expect(telegram).to_be_visible()
    assert telegram.locator("rect").count() > 5
    page.get_by_text("telegram: sent and failed as a table").click()
    expect(page.locator("#charts details[open] table").first).to_be_visible()
    _shots(chromium, site.url, "dashboard", "/admin/")
    page.goto(site.url + "/admin/reports/?by=event&days=30")
    expect(page.locator("#report")).to_contain_text("lesson_cancelled")
    _shots(chromium, site.url, "reports", "/admin/reports/?by=event&days=30")
    page.goto(site.url + "/admin/templates/")
    expect(page.locator("#matrix-summary")).to_contain_text("missing")
    _shots(chromium, site.url, "templates", "/admin/templates/")
    page.goto(site.url + "/admin/audit/")
    expect(page.locator("main")).not_to_contain_text("admin:1 ")
    _shots(chromium, site.url, "audit", "/admin/audit/")
    assert not errors, errors


def test_schedule_at_local_time_and_see_it_planned(chromium, site):
    from playwright.sync_api import expect

    with site.session_factory() as s:
        b = broadcasts.create(s, name="Концерт", template_code="ANNOUNCEMENT", channels=["telegram"],
                              category="service", targeting={}, initiator="admin:1",
                              data={"title": "Концерт", "text": "В воскресенье"})
        whole, _ = broadcasts.counts(s, b)
        s.commit()
        bid = b.id
    page = chromium.new_page(viewport={"width": 1366, "height": 900})
    _sign_in(page, site.url)
    page.goto(f"{site.url}/admin/broadcasts/{bid}")
    page.get_by_text("…or schedule it for later").click()
    day = (date.today() + timedelta(days=5)).isoformat()
    page.select_option("#s-kind", "local")
    page.fill("#s-local_date", day)
    page.fill("#s-local_time", "10:00")
    page.fill("#s-typed", str(whole.messages))
    page.get_by_role("button", name="Schedule").click()
    expect(page.get_by_role("alert")).to_contain_text(f"Scheduled at 10:00 on {day} in each client's time zone")
    expect(page.locator("#scheduled")).to_contain_text("Scheduled at 10:00")
    page.goto(site.url + "/admin/broadcasts/")
    expect(page.locator("#planned")).to_contain_text("Концерт")
    _shots(chromium, site.url, "planned", "/admin/broadcasts/")
    page.goto(site.url + "/admin/quiet-hours/")
    expect(page.locator("#qh-marketing")).to_contain_text("on, 21:00–09:00")


def test_a_client_sets_own_quiet_hours_in_the_profile(chromium, site):
    """The profile's quiet hours are the client's window for marketing (workers/quiet_hours.py)."""
    from playwright.sync_api import expect

    from vestnik.shared import client_auth
    from vestnik.shared.models import AuditLog, ClientTokenPurpose
    from vestnik.workers import quiet_hours

    with site.session_factory() as s:
        raw = client_auth.issue(s, "s" * 32, 3, ClientTokenPurpose.sign_in_link, 600, utcnow())
        s.commit()
    page = chromium.new_page(viewport={"width": 390, "height": 900})
    page.goto(f"{site.url}/me/login/t/{raw}")
    page.locator("form button.btn.primary").click()
    quiet = page.locator("#quiet")
    expect(quiet).to_contain_text("21:00–09:00")  # the marketing default it follows
    expect(page.locator("#quiet_start")).to_have_value("21:00")
    quiet.locator("input[name=quiet_own]").check()
    page.fill("#quiet_start", "22:30")
    page.fill("#quiet_end", "07:15")
    page.locator("#settings button[type=submit]").click()
    expect(page.locator("#quiet_start")).to_have_value("22:30")
    expect(quiet.locator("input[name=quiet_own]")).to_be_checked()
    with site.session_factory() as s:
        client = s.get(Client, 3)
        own = quiet_hours.own_window(client.quiet_hours_start_min, client.quiet_hours_end_min)
        assert own is not None and own.label() == "22:30–07:15"
        change = s.scalars(select(AuditLog).where(AuditLog.actor == "client:3").order_by(AuditLog.id.desc())).first()
        assert change.details["changes"]["quiet_hours_start_min"] == [None, 22 * 60 + 30]
    if os.environ.get("VESTNIK_SCREENSHOTS") == "1":
        page.locator("#settings").screenshot(path=str(SHOTS / "profile-quiet-hours-phone.png"))
    # Back to the default: unchecked, both cleared.
    quiet.locator("input[name=quiet_own]").uncheck()
    page.locator("#settings button[type=submit]").click()
    expect(quiet.locator("input[name=quiet_own]")).not_to_be_checked()
    with site.session_factory() as s:
        assert s.get(Client, 3).quiet_hours_start_min is None
