"""``/metrics``: Prometheus text computed from the database and the broker."""

from __future__ import annotations

from datetime import timedelta

from dramatiq.brokers.rabbitmq import RabbitmqBroker
from prometheus_client.parser import text_string_to_metric_families

from vestnik.outbox import emit
from vestnik.outbox.contract import event_message
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import Client, Notification, NotificationStatus, utcnow
from vestnik.webapp import create_app

SECRET = "test-secret-key-0123456789"


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True)) for s in family.samples}


def test_metrics_report_backlog_lag_stuck_rows_and_queue_depth(pg_url, amqp_vhost_url):
    now = utcnow()
    session_factory = make_session_factory(make_engine(pg_url))
    with session_factory() as s, s.begin():
        s.add(Client(id=1, name="Анна", email="anna@example.com", telegram_chat_id="1001"))
        emit(s, "lesson_cancelled", recipients=[1], data={"lesson_title": "Робототехника",
                                                          "starts_at": "2026-11-25T16:00:00+03:00"})
        common = {"recipient_id": 1, "event_type": "lesson_cancelled", "template_code": "lesson_cancelled",
                  "locale": "ru", "payload_json": {}}
        s.add_all([
            Notification(channel="telegram", recipient_address="1001", status=NotificationStatus.pending.value,
                         send_at=now - timedelta(seconds=30), step="a", **common),
            Notification(channel="telegram", recipient_address="1001", status=NotificationStatus.pending.value,
                         send_at=now + timedelta(hours=1), step="b", **common),
            Notification(channel="email", recipient_address="anna@example.com",
                         status=NotificationStatus.processing.value, locked_until=now - timedelta(minutes=1),
                         step="c", **common),
            Notification(channel="email", recipient_address="anna@example.com", status=NotificationStatus.sent.value,
                         sent_at=now - timedelta(hours=2), created_at=now - timedelta(hours=2), step="d", **common),
            Notification(channel="email", recipient_address="anna@example.com", status=NotificationStatus.sent.value,
                         sent_at=now - timedelta(days=2), created_at=now - timedelta(days=2), step="e", **common),
        ])
    app = create_app(Settings(database_url=pg_url, secret_key=SECRET, broker_url=amqp_vhost_url))
    broker = RabbitmqBroker(url=amqp_vhost_url)
    broker.declare_queue("events")
    broker.enqueue(event_message(1))
    broker.close()

    m = scrape(app.test_client())
    assert m[("vestnik_outbox_events", (("status", "pending"),))] == 1
    assert m[("vestnik_outbox_lag_seconds", ())] >= 0
    assert m[("vestnik_notifications_waiting", (("state", "due"),))] == 1
    assert m[("vestnik_notifications_waiting", (("state", "scheduled"),))] == 1
    assert m[("vestnik_notifications_waiting", (("state", "stuck"),))] == 1
    assert m[("vestnik_notifications_due_lag_seconds", ())] >= 30
    assert m[("vestnik_channel_sent_24h", (("channel", "email"),))] == 1  # the one of two days ago is not
    assert m[("vestnik_channel_daily_quota", (("channel", "email"),))] == Settings().email_rate_per_day
    assert not [name for name, _labels in m if name.endswith("_last_hour")]  # counters now: the workers'
    assert m[("vestnik_queue_messages", (("queue", "events"),))] == 1
    assert m[("vestnik_broker_up", ())] == 1


def test_metrics_say_when_the_broker_is_down_instead_of_failing(sqlite_url):
    app = create_app(Settings(database_url=sqlite_url, secret_key=SECRET,
                              broker_url="amqp://guest:guest@127.0.0.1:1/"))
    m = scrape(app.test_client())
    assert m[("vestnik_broker_up", ())] == 0
    assert m[("vestnik_outbox_events", (("status", "pending"),))] == 0


def test_metrics_token_is_required_when_configured(sqlite_url):
    app = create_app(Settings(database_url=sqlite_url, secret_key=SECRET, metrics_token="s3cret-metrics"))
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scrape(client, Authorization="Bearer s3cret-metrics")


def test_readyz_reports_broker_and_redis_without_failing_on_them(sqlite_url, amqp_url, redis_url):
    app = create_app(Settings(database_url=sqlite_url, secret_key=SECRET, broker_url=amqp_url, redis_url=redis_url))
    body = app.test_client().get("/readyz").get_json()
    assert body["checks"] == {"database": "ok", "schema": "ok", "broker": "ok", "redis": "ok"}
    down = create_app(Settings(database_url=sqlite_url, secret_key=SECRET, broker_url="amqp://guest:guest@127.0.0.1:1/",
                               redis_url="redis://127.0.0.1:1/0"))
    response = down.test_client().get("/readyz")
    assert response.status_code == 200  # the web still serves the admin and the webhooks
    assert response.get_json()["checks"]["broker"].startswith("unreachable")
    assert response.get_json()["checks"]["redis"].startswith("unreachable")


def test_failure_reasons_are_reduced_to_their_class():
    from vestnik.workers.metrics import reason_class

    assert reason_class("550 5.1.1 <anna@example.com>: no such user") == "### #.#.# : no such user"
    assert reason_class("sendMessage: 403 Forbidden: bot was blocked by the user") == (
        "sendMessage: ### Forbidden: bot was blocked by the user")


def test_metrics_say_whether_a_scheduler_holds_the_lock(pg_url):
    from sqlalchemy import text

    from vestnik.workers.scheduler import LOCK_ID

    app = create_app(Settings(database_url=pg_url, secret_key=SECRET))
    assert scrape(app.test_client())[("vestnik_scheduler_active", ())] == 0
    engine = make_engine(pg_url)
    with engine.connect() as conn:  # what `vestnik scheduler` holds while it is the active one
        conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": LOCK_ID})
        assert scrape(app.test_client())[("vestnik_scheduler_active", ())] == 1
        conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": LOCK_ID})
    engine.dispose()
