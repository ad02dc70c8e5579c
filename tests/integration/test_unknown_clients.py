"""An event naming clients Vestnik does not know is visible: counted on the dashboard and in /metrics,
its ids listed on the event's page (it used to end `processed` with an error string nothing counted)."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families
from werkzeug.security import generate_password_hash

from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import AdminUser, Client, OutboxEvent
from vestnik.webapp import create_app
from vestnik.workers.channels import build_channels
from vestnik.workers.handling import handle_event

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}
PASSWORD = "correct horse battery"


def test_unknown_clients_are_counted_on_the_dashboard_and_in_metrics_and_listed_on_the_event(session_factory):
    with session_factory() as s:
        s.add_all([Client(id=1, name="Анна", email="anna@example.com"),
                   AdminUser(email="admin@school.test", password_hash=generate_password_hash(PASSWORD))])
        known = emit(s, "lesson_cancelled", recipients=[1], data=LESSON)
        unknown = emit(s, "lesson_cancelled", recipients=[1, 999, "crm-7f0c"], data=LESSON)
        s.commit()
    channels = build_channels(Settings())
    for event_id in (known, unknown):
        assert handle_event(session_factory, channels, event_id).status == "processed"
    with session_factory() as s:
        assert s.get(OutboxEvent, known).unknown_clients is None
        assert s.get(OutboxEvent, unknown).unknown_clients == ["999", "crm-7f0c"]

    app = create_app(Settings(secret_key="k" * 32), session_factory=session_factory, config={"TESTING": True})
    c = app.test_client()
    metrics = {s.name: s.value for f in text_string_to_metric_families(c.get("/metrics").text) for s in f.samples}
    assert metrics["vestnik_events_unknown_clients_24h"] == 1
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', c.get("/admin/login").text).group(1)
    c.post("/admin/login", data={"email": "admin@school.test", "password": PASSWORD, "csrf_token": token})
    dashboard = c.get("/admin/").text
    link = re.search(r'<a href="([^"]+)" data-testid="unknown-clients">(\d+)</a>', dashboard)
    assert link and link.group(2) == "1"
    listed = c.get(link.group(1).replace("&amp;", "&")).text
    assert f"/admin/outboxevent/details/?id={unknown}" in listed and f"details/?id={known}&" not in listed
    page = c.get(f"/admin/outboxevent/details/?id={unknown}").text
    assert "Unknown clients" in page and "999, crm-7f0c" in page
