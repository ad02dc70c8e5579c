"""Reports and CSV export in the admin (workers/reports.py, webapp/admin/export.py), on both backends."""

from __future__ import annotations

import csv
import gc
import io
import re
from datetime import timedelta

import pytest
from werkzeug.security import generate_password_hash

from vestnik.shared.config import Settings
from vestnik.shared.models import AdminUser, AuditLog, Broadcast, Client, Notification, OutboxEvent, utcnow
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app
from vestnik.webapp.admin.export import csv_chunks, safe_cell
from vestnik.workers import reports


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
            s.add(Notification(recipient_id=cid, channel=ch, recipient_address=f"{ch}-{cid}", status=status,
                               event_type=kw.pop("event_type", "mass_broadcast"), last_error=err,
                               template_code=kw.pop("template_code", "ANNOUNCEMENT"), broadcast_id=kw.pop("bid", 7),
                               step=kw.pop("step", "broadcast"), created_at=now - timedelta(seconds=ago), **kw))
        n(1, "email", "sent")
        n(1, "telegram", "failed", "gave up after 5 attempts: timeout")
        n(2, "email", "failed", "gave up after 3 attempts: timeout")
        n(2, "telegram", "failed", "=cmd|' /C calc'!A0")
        n(2, "email", "sent", step="resend-failed-1", ago=30)
        n(1, "email", "sent", event_type="lesson_reminder", template_code="LESSON_REMINDER", bid=None, ago=20)
        n(1, "telegram", "sent", event_type="lesson_reminder", template_code="LESSON_REMINDER", bid=None, ago=15)
        s.add(AuditLog(actor="client:2", action="client.unsubscribe", object_type="client", object_id="2",
                       created_at=now - timedelta(seconds=10)))
        s.add(OutboxEvent(event_type="feedback_received", recipients=[1], data={}, initiator="client:1",
                          created_at=now - timedelta(seconds=5)))
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
