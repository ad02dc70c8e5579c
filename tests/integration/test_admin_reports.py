"""Reports and CSV export in the admin (workers/reports.py, webapp/admin/export.py), on both backends."""

from __future__ import annotations

import csv
import gc
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from vestnik.shared.config import Settings
from vestnik.shared.models import AdminUser, AuditLog, Broadcast, Client, Notification, utcnow
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app
from vestnik.webapp.admin.export import csv_chunks, safe_cell
from vestnik.workers import reactions, reports


@pytest.fixture(autouse=True)
def _finalize_streams():
    """Streamed responses leave generators for the garbage collector; collect them inside the test
    (CPython 3.11.7 fails a later compile() if their finalizers run during it)."""
    yield
    gc.collect()


@pytest.fixture
def app(session_factory):
    now = utcnow()
    with session_factory() as s:
        install_default_templates(s)
        s.add(AdminUser(email="admin@school.test", password_hash=generate_password_hash("pw-pw-pw-pw"),
                        role="support", name="Sam Support"))
        s.add(Client(id=1, name="=HYPERLINK(\"http://evil\")", email="a@example.com", telegram_chat_id="11"))
        s.add(Client(id=2, name="Борис", email="b@example.com", telegram_chat_id="-100200"))
        s.add(Broadcast(id=7, name="Ярмарка", template_code="ANNOUNCEMENT", channels=["email", "telegram"],
                        targeting={}, data={}, initiator="admin:1", status="completed", category="marketing",
                        created_at=now - timedelta(hours=1)))
        s.flush()

        def n(cid, ch, status, err=None, ago=60, **kw):
            bid = kw.pop("bid", 7)
            s.add(Notification(recipient_id=cid, channel=ch, recipient_address=f"{ch}-{cid}", status=status,
                               event_type=kw.pop("event_type", "mass_broadcast"), last_error=err,
                               template_code=kw.pop("template_code", "ANNOUNCEMENT"), broadcast_id=bid,
                               category="marketing" if bid else "service",
                               sent_at=now - timedelta(seconds=ago) if status == "sent" else None,
                               step=kw.pop("step", "broadcast"), created_at=now - timedelta(seconds=ago), **kw))
        n(1, "email", "sent")
        n(1, "telegram", "failed", "gave up after 5 attempts: timeout")
        n(2, "email", "failed", "gave up after 3 attempts: timeout")
        n(2, "telegram", "failed", "=cmd|' /C calc'!A0")
        n(2, "email", "sent", step="resend-failed-1", ago=30)
        n(1, "email", "sent", event_type="lesson_reminder", template_code="LESSON_REMINDER", bid=None, ago=20)
        n(1, "telegram", "sent", event_type="lesson_reminder", template_code="LESSON_REMINDER", bid=None, ago=15)
        s.flush()
        # The client unsubscribes after the broadcast's resend reached them; client 1 presses a button on
        # the reminder (no message id known: the last Telegram message to that chat).
        assert reactions.record_unsubscribe(s, 2, now - timedelta(seconds=10)) is not None
        assert reactions.record_button(s, "telegram-1", None, "rate:9:5", now - timedelta(seconds=5)) is not None
        s.commit()
    return create_app(Settings(secret_key="k" * 32), session_factory=session_factory,
                      config={"TESTING": True, "SESSION_COOKIE_SECURE": False})


def _login(c):
    page = c.get("/admin/login")
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    assert c.post("/admin/login", data={"email": "admin@school.test", "password": "pw-pw-pw-pw",
                                        "csrf_token": csrf}).status_code == 302


def test_report_per_broadcast_template_and_event(session_factory, app):
    now = utcnow()
    with session_factory() as s:
        by_b = {r.key: r for r in reports.report(s, "broadcast", now - timedelta(days=1), now)}
        r = by_b[7]
        assert (r.sent, r.failed, r.unsubscribed) == (2, 3, 1)
        assert dict(r.top_reasons) == {"timeout": 2, "=cmd|' /C calc'!A0": 1}
        by_e = {r.key: r for r in reports.report(s, "event", now - timedelta(days=1), now)}
        # The press is credited to the last Telegram message client 1 got before it: the reminder.
        assert by_e["lesson_reminder"].presses == 1 and by_e["lesson_reminder"].sent == 2
        assert by_e["mass_broadcast"].presses == 0
        by_t = {r.key: r for r in reports.report(s, "template", now - timedelta(days=1), now)}
        assert set(by_t) == {"ANNOUNCEMENT", "LESSON_REMINDER"}


def test_reports_page_and_broadcast_report(app):
    c = app.test_client()
    _login(c)
    page = c.get("/admin/reports/?by=broadcast&days=7").text
    assert "#7 Ярмарка" in page and "2 × timeout" in page
    assert "Event types" in c.get("/admin/reports/?by=event").text
    details = c.get("/admin/broadcasts/7").text
    assert "failed recipients (CSV)" in details and "Unsubscribed" in details


def test_failed_recipients_csv_is_streamed_and_safe(app, session_factory):
    c = app.test_client()
    _login(c)
    resp = c.get("/admin/broadcasts/7/failed.csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv" and resp.is_streamed
    text = resp.get_data(as_text=True)
    resp.close()
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0][:4] == ["client_id", "client_name", "channel", "address"]
    names = {r[1] for r in rows[1:]}
    assert "'=HYPERLINK(\"http://evil\")" in names and "Борис" in names
    reasons = {r[4] for r in rows[1:]}
    assert "'=cmd|' /C calc'!A0" in reasons
    assert len(rows) == 4  # three failed rows and the header
    with session_factory() as s:
        assert s.query(AuditLog).filter_by(action="broadcast.export_failed").count() == 1


def test_history_export_keeps_the_filters_and_streams(app):
    c = app.test_client()
    _login(c)
    resp = c.get("/admin/notification/export/csv/?flt0_status_equals=failed&flt1_channel_equals=telegram")
    assert resp.status_code == 200 and resp.is_streamed
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True).lstrip("\ufeff"))))
    resp.close()
    assert rows[0][0] == "id" and len(rows) == 3
    assert {r[rows[0].index("status")] for r in rows[1:]} == {"failed"}
    assert {r[rows[0].index("address")] for r in rows[1:]} == {"telegram-1", "telegram-2"}
    whole = c.get("/admin/notification/export/csv/")
    everything = whole.get_data(as_text=True)
    whole.close()
    assert everything.count("\n") == 8  # header and seven rows: no page limit


@pytest.mark.parametrize("value, expected", [
    ("=1+1", "'=1+1"), ("+7 999", "'+7 999"), ("-100200", "'-100200"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("ok = fine", "ok = fine"), (-5, -5), (None, ""), (True, "yes"),
])
def test_formula_cells_are_made_inert(value, expected):
    assert safe_cell(value) == expected


def test_chunks_hold_a_bounded_number_of_rows():
    chunks = list(csv_chunks(["n"], ([i] for i in range(10)), batch=4))
    assert len(chunks) == 3 and chunks[0].count("\n") == 5  # BOM+header and 4 rows


def test_a_button_press_counts_for_the_message_it_was_on(session_factory):
    from vestnik.shared.models import NotificationReaction
    from vestnik.workers.bot import handle_update

    now = utcnow()
    with session_factory() as s:
        s.add(Client(id=1, name="A", telegram_chat_id="11"))
        s.flush()
        for i, ext in ((1, "500"), (2, "501")):
            s.add(Notification(id=i, recipient_id=1, channel="telegram", recipient_address="11", status="sent",
                               event_type="booking_created", template_code="BOOKING_FEEDBACK", external_id=ext,
                               sent_at=now - timedelta(minutes=10 - i)))
        s.commit()
        handle_update(s, {"update_id": 1, "callback_query": {
            "id": "q", "data": "rate:b1:5", "from": {"id": 11},
            "message": {"message_id": 500, "chat": {"id": 11, "type": "private"}}}})
        s.commit()
        got = s.scalars(select(NotificationReaction)).one()
        assert (got.notification_id, got.kind, got.value) == (1, "button", "rate:b1:5")  # not the later message
