"""The dashboard's charts (server-side SVG, webapp/admin/charts.py), on both backends."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from werkzeug.security import generate_password_hash

from vestnik.shared.config import Settings
from vestnik.shared.models import AdminUser, Client, Notification, OutboxEvent, utcnow
from vestnik.webapp import create_app
from vestnik.webapp.admin.charts import Series, bars, describe


@pytest.fixture
def app(session_factory):
    now = utcnow()
    with session_factory() as s:
        s.add(AdminUser(email="admin@school.test", password_hash=generate_password_hash("pw-pw-pw-pw")))
        s.add(Client(id=1, name="A", email="a@example.com", telegram_chat_id="1"))
        s.flush()
        for days_ago, status, n in ((0, "sent", 5), (0, "failed", 2), (2, "sent", 9)):
            for _ in range(n):
                created = now - timedelta(days=days_ago, minutes=1)
                s.add(Notification(recipient_id=1, channel="telegram", recipient_address="1", event_type="x",
                                   template_code="X", status=status, created_at=created,
                                   sent_at=created + timedelta(seconds=4) if status == "sent" else None,
                                   last_error="boom" if status == "failed" else None))
        s.add(Notification(recipient_id=1, channel="email", recipient_address="a@example.com", event_type="x",
                           template_code="X", status="failed", delivery_uncertain=True, created_at=now,
                           last_error="delivery uncertain (not resent): timeout"))
        s.add(OutboxEvent(event_type="x", data={}, status="published", created_at=now - timedelta(seconds=10),
                          published_at=now - timedelta(seconds=8)))
        s.commit()
    return create_app(Settings(secret_key="k" * 32), session_factory=session_factory,
                      config={"TESTING": True, "SESSION_COOKIE_SECURE": False})


def test_dashboard_draws_accessible_charts_with_tables(app):
    c = app.test_client()
    page = c.get("/admin/login")
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    c.post("/admin/login", data={"email": "admin@school.test", "password": "pw-pw-pw-pw", "csrf_token": csrf})
    html = c.get("/admin/").text
    assert html.count("<svg") == 4  # telegram, email, waiting, uncertain
    assert '<title id="chart' in html and "telegram: sent and failed per day" in html
    assert "sent: 14 messages in all" in html  # the <desc>: the totals, said
    assert "as a table</summary>" in html
    assert "delivery, average" in html and "<td>4.0</td>" in html  # due to sent: 4 s
    assert "outbox, worst" in html and "<td>2.0</td>" in html  # commit to published: 2 s
    assert 'data-testid="uncertain">1</a>' in html
    uncertain = c.get("/admin/notification/?flt0_delivery_uncertain_equals=1")
    assert uncertain.status_code == 200 and "not resent" in uncertain.text
    assert "<script" not in html.split("<main", 1)[1].split("</main>", 1)[0]  # no script in the charts


def test_bars_scale_label_and_escape():
    svg = bars("<b>x</b>", ["2026-11-01", "2026-11-02"], [Series("sent", [3, 7], "#1e7e34"),
                                                           Series("failed", [0, 1], "#c82333")])
    assert "&lt;b&gt;x&lt;/b&gt;" in svg and 'role="img"' in svg and "aria-labelledby" in svg
    assert svg.count("<rect") == 3  # no bar for a zero
    assert "2026-11-02: 7 sent" in svg and ">10<" in svg  # the axis tops at a round 10 (8 stacked)
    assert describe(["d1", "d2"], [Series("failed", [0, 0], "#000")]) == "d1 to d2. failed: none."
