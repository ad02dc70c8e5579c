"""Resend only failed (workers/broadcast_resend.py) and the estimated end (workers/broadcast_eta.py),
on both backends, through the functions and the admin's pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from vestnik.shared.config import Settings
from vestnik.shared.models import AdminUser, AuditLog, Broadcast, Client, DeliveryAttempt, Notification
from vestnik.shared.seeds import install_default_templates
from vestnik.webapp import create_app
from vestnik.workers import broadcast_eta, broadcast_resend, broadcasts
from vestnik.workers.broadcasting import expand_batch, feed
from vestnik.workers.limits import Rule

PACE = {"telegram": 30.0, "email": 1.0}


@pytest.fixture
def school(session_factory):
    with session_factory() as s:
        install_default_templates(s)
        for i in range(1, 11):
            s.add(Client(id=i, name=f"Client {i}", email=f"c{i}@example.com", telegram_chat_id=str(1000 + i)))
        s.add(AdminUser(email="admin@school.test", password_hash=generate_password_hash("pw-pw-pw-pw"),
                        role="admin", name="Anna Admin"))
        s.commit()
    return session_factory


def _finished_broadcast(factory) -> int:
    """Ten clients, email only; 1-3 sent, 4-5 transient, 6 rate limited, 7 permanent, 8 permanent to
    an address changed since, 9 uncertain, 10 transient but later sent by a single resend."""
    with factory() as s:
        b = broadcasts.create(s, name="News", template_code="ANNOUNCEMENT", channels=["email"], category="service",
                              targeting={}, initiator="admin:1", data={"title": "T", "text": "x"})
        broadcasts.send_all(s, b, "admin:1", typed="10")
        s.commit()
        bid = b.id
    while not expand_batch(factory, bid).done:
        pass
    outcome = {4: "transient", 5: "transient", 6: "rate_limited", 7: "permanent", 8: "permanent", 9: "uncertain",
               10: "transient"}
    with factory() as s:
        for n in s.scalars(select(Notification).where(Notification.broadcast_id == bid)):
            o = outcome.get(n.recipient_id)
            n.status = "failed" if o else "sent"
            n.delivery_uncertain = o == "uncertain"
            if o:
                s.add(DeliveryAttempt(notification_id=n.id, attempt_no=1, outcome="transient"))
                s.add(DeliveryAttempt(notification_id=n.id, attempt_no=2, outcome=o))
        s.get(Client, 8).email = "new8@example.com"
        s.add(Notification(recipient_id=10, channel="email", recipient_address="c10@example.com",
                           event_type="mass_broadcast", template_code="ANNOUNCEMENT", broadcast_id=bid,
                           step="resend-of-x", status="sent"))
        s.commit()
    feed(factory, bid, PACE, now=datetime.now(UTC) + timedelta(seconds=1))
    with factory() as s:
        assert s.get(Broadcast, bid).status == "completed"
    return bid


def test_resend_only_failed_picks_transient_and_changed_addresses_once(school):
    bid = _finished_broadcast(school)
    with school() as s:
        b = s.get(Broadcast, bid)
        assert broadcast_resend.count(s, b).messages == 4  # 4, 5, 6 transient; 8 to its new address
        with pytest.raises(broadcasts.BroadcastError, match="type the number of messages, 4"):
            broadcast_resend.resend_failed(s, b, "admin:1", "5")
        done = broadcast_resend.resend_failed(s, broadcasts.lock(s, bid), "admin:1", "4")
        s.commit()
        assert done.round == 1
        rows = s.execute(select(Notification.recipient_id, Notification.recipient_address, Notification.send_at)
                         .where(Notification.step == "resend-failed-1").order_by(Notification.recipient_id)).all()
        assert [(r[0], r[1]) for r in rows] == [(4, "c4@example.com"), (5, "c5@example.com"),
                                                (6, "c6@example.com"), (8, "new8@example.com")]
        assert all(r[2] is None for r in rows)  # held: the feeder hands them over at the channel's pace
        b = s.get(Broadcast, bid)
        assert b.status == "running" and b.planned_messages == 14
        # While they wait, nobody is resent twice (and a running broadcast does not resend).
        with pytest.raises(broadcasts.BroadcastError, match="only a completed broadcast"):
            broadcast_resend.resend_failed(s, b, "admin:1", "0")
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "broadcast.resend_failed")).one()
        assert audit.details["messages"] == 4 and audit.details["round"] == 1
    # Round 1: 4 fails again (transient), the others get it; the broadcast completes again.
    with school() as s:
        for n in s.scalars(select(Notification).where(Notification.step == "resend-failed-1")):
            n.status = "failed" if n.recipient_id == 4 else "sent"
            if n.recipient_id == 4:
                s.add(DeliveryAttempt(notification_id=n.id, attempt_no=1, outcome="transient"))
        s.commit()
    feed(school, bid, PACE, now=datetime.now(UTC) + timedelta(seconds=2))
    with school() as s:
        b = s.get(Broadcast, bid)
        assert b.status == "completed"
        again = broadcast_resend.count(s, b)
        assert again.messages == 1  # only client 4; 5, 6, 8 have it now
        assert broadcast_resend.resend_failed(s, broadcasts.lock(s, bid), "admin:1", "1").round == 2
        s.commit()


def test_limit_seconds_counts_every_rule_and_the_daily_quota():
    email = (Rule("minute", 20, 60.0), Rule("hour", 300, 3600.0), Rule("day", 480, 86400.0))
    seconds, rule = broadcast_eta.limit_seconds(2000, email)
    assert rule.name == "day" and seconds == 4 * 86400  # 480 today, 480 on each of the next 4 days
    seconds, rule = broadcast_eta.limit_seconds(100, email)
    assert rule.name == "minute" and seconds == 4 * 60
    seconds, rule = broadcast_eta.limit_seconds(100, email, {"day": 480})  # today's quota is used
    assert rule.name == "day" and seconds == 86400
    seconds, rule = broadcast_eta.limit_seconds(90, (Rule("global", 30, 1.0),))
    assert seconds == 2.0
    assert broadcast_eta.duration_text(4 * 86400 + 3 * 3600) == "about 4 days 3 h"
    assert broadcast_eta.measured_rate([[0, {"email": 0}], [60, {"email": 30}]], "email") == 0.5


def test_admin_resends_failed_and_reads_progress_with_an_estimate(school):
    app = create_app(Settings(secret_key="k" * 32, email_rate_per_day=3), session_factory=school,
                     config={"TESTING": True, "SESSION_COOKIE_SECURE": False})
    bid = _finished_broadcast(school)
    c = app.test_client()
    page = c.get("/admin/login")
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    c.post("/admin/login", data={"email": "admin@school.test", "password": "pw-pw-pw-pw", "csrf_token": csrf})
    page = c.get(f"/admin/broadcasts/{bid}").text
    assert "Resend only failed: 4 messages to 4 clients (4 email)" in page
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    wrong = c.post(f"/admin/broadcasts/{bid}/resend-failed", data={"csrf_token": csrf, "typed": "3"},
                   follow_redirects=True)
    assert "type the number of messages, 4" in wrong.text
    assert c.post(f"/admin/broadcasts/{bid}/resend-failed", data={"csrf_token": csrf, "typed": "4"}
                  ).status_code == 302
    p = c.get(f"/admin/broadcasts/{bid}/progress.json").json
    assert p["status"] == "running"
    email = p["estimate"]["channels"][0]
    assert email["channel"] == "email" and email["waiting"] == 4
    # 3 a day: the 4 waiting need more than a day (the attempts made today count), whatever the rate.
    assert p["estimate"]["seconds_left"] >= 86400 and "day" in p["estimate"]["decided_by"]
    assert "Estimated end:" in c.get(f"/admin/broadcasts/{bid}").text


def test_cli_shows_bars_and_the_estimated_end(school, db_url, monkeypatch, capsys):
    from vestnik.cli import main

    bid = _finished_broadcast(school)
    with school() as s:
        broadcast_resend.resend_failed(s, broadcasts.lock(s, bid), "cli", "4")
        s.commit()
    monkeypatch.setenv("VESTNIK_DATABASE_URL", db_url)
    monkeypatch.setenv("VESTNIK_EMAIL_RATE_PER_DAY", "3")
    assert main(["broadcast", "progress", str(bid)]) == 0
    out = capsys.readouterr().out
    assert f"broadcast {bid} 'News': running" in out
    assert "email     [####" in out and "4 sent · 7 failed (5 resent) · 4 waiting" in out
    assert "estimated end: about 2 days" in out and "email limit 3 a day" in out
    assert main(["broadcast", "progress", "999"]) == 1
