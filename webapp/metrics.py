"""``/metrics``: Prometheus gauges of what matters to the promise.

Computed from the database at scrape time, so every web process answers the
same figures and nothing is lost on restart: the outbox backlog and its lag
(is the relay keeping up?), notifications due but not sent (are workers
keeping up?), rows stuck in ``processing`` past their lease (did a worker
die?), what was sent in the last 24 hours against the daily quota, and the
depth of each RabbitMQ queue.  Rates of outcomes (sent, failed, uncertain)
are the workers' counters (``vestnik_deliveries_total``, ``workers/metrics.py``):
counters survive a scrape missed, and Prometheus takes their rate over any
window.  Each query reads an index, so a
scrape stays cheap on millions of rows.

Set ``VESTNIK_METRICS_TOKEN`` to require ``Authorization: Bearer <token>``;
without it the endpoint is open and should be reachable only from the
monitoring network.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from datetime import timedelta

from flask import Blueprint, Response, abort, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from vestnik.outbox.contract import EVENTS_QUEUE
from vestnik.shared.config import Settings
from vestnik.shared.models import Notification, NotificationStatus, OutboxEvent, OutboxStatus, utcnow
from vestnik.workers.broker import BROADCASTS_QUEUE, MAINTENANCE_QUEUE, delivery_queue
from vestnik.workers.channels import CHANNELS

log = logging.getLogger("vestnik.web.metrics")

bp = Blueprint("metrics", __name__)

DAY = timedelta(hours=24)


def database_metrics(session: Session) -> Iterator[GaugeMetricFamily]:
    now = utcnow()
    outbox = GaugeMetricFamily("vestnik_outbox_events", "Outbox events not yet handed over, by status",
                               labels=["status"])
    for status in (OutboxStatus.pending, OutboxStatus.failed):
        outbox.add_metric([status.value], session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.status == status.value)) or 0)
    yield outbox

    yield GaugeMetricFamily(
        "vestnik_events_unknown_clients_24h", "Events handled in the last 24 hours that named clients Vestnik "
        "did not know (nothing went to those ids)",
        value=session.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.unknown_clients.is_not(None), OutboxEvent.processed_at >= now - DAY)) or 0)

    oldest = session.scalar(select(func.min(OutboxEvent.created_at)).where(
        OutboxEvent.status == OutboxStatus.pending.value))
    yield GaugeMetricFamily("vestnik_outbox_lag_seconds", "Age of the oldest unpublished outbox event",
                            value=(now - oldest).total_seconds() if oldest else 0.0)

    pending = Notification.status == NotificationStatus.pending.value
    queue = GaugeMetricFamily("vestnik_notifications_waiting", "Notifications not yet sent", labels=["state"])
    queue.add_metric(["due"], session.scalar(select(func.count()).select_from(Notification).where(
        pending, Notification.send_at <= now)) or 0)
    queue.add_metric(["scheduled"], session.scalar(select(func.count()).select_from(Notification).where(
        pending, Notification.send_at > now)) or 0)
    processing = Notification.status == NotificationStatus.processing.value
    queue.add_metric(["processing"], session.scalar(
        select(func.count()).select_from(Notification).where(processing)) or 0)
    queue.add_metric(["stuck"], session.scalar(select(func.count()).select_from(Notification).where(
        processing, Notification.locked_until < now)) or 0)
    yield queue

    oldest_due = session.scalar(select(func.min(Notification.send_at)).where(pending, Notification.send_at <= now))
    yield GaugeMetricFamily("vestnik_notifications_due_lag_seconds",
                            "How long the oldest due notification has waited past its send time",
                            value=(now - oldest_due).total_seconds() if oldest_due else 0.0)

    # Near the provider's daily quota?  Sent in the last 24 hours against the configured cap (email:
    # Yandex's 500 a day per mailbox); ix_notifications_created reads only the day's rows.
    sent_day = GaugeMetricFamily("vestnik_channel_sent_24h", "Messages sent in the last 24 hours, by channel",
                                 labels=["channel"])
    rows = session.execute(
        select(Notification.channel, func.count())
        .where(Notification.status == NotificationStatus.sent.value, Notification.created_at >= now - DAY)
        .group_by(Notification.channel)
    ).all()
    for channel, n in rows:
        sent_day.add_metric([channel], n)
    yield sent_day


def scheduler_metrics(session: Session) -> Iterator[GaugeMetricFamily]:
    """Is a scheduler active?  The holder of its advisory lock (workers/scheduler.py), seen in pg_locks."""
    if session.get_bind().dialect.name != "postgresql":
        return
    from vestnik.workers.scheduler import LOCK_ID

    held = session.scalar(text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = :id"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"), {"id": LOCK_ID})
    yield GaugeMetricFamily("vestnik_scheduler_active", "Schedulers holding the scheduler lock (1 when healthy)",
                            value=held or 0)


def quota_metrics(settings: Settings) -> Iterator[GaugeMetricFamily]:
    quota = GaugeMetricFamily("vestnik_channel_daily_quota", "The configured messages per day, by channel",
                              labels=["channel"])
    for name, cls in CHANNELS.items():  # each channel's own rules say whether it has a daily quota
        for rule in cls.limit_rules(settings).overall:
            if rule.window_s == timedelta(days=1).total_seconds():
                quota.add_metric([name], rule.limit)
    yield quota


def broker_metrics(settings: Settings, channels: list[str]) -> Iterator[GaugeMetricFamily]:
    """Messages ready in each Vestnik queue (RabbitMQ only; a passive declare per queue)."""
    if settings.embedded:
        return
    import pika

    depth = GaugeMetricFamily("vestnik_queue_messages", "Messages ready in a RabbitMQ queue", labels=["queue"])
    up = 1
    try:
        from vestnik.shared.amqp import node_parameters

        connection = pika.BlockingConnection(node_parameters(settings.broker_url, "web-metrics", timeout_s=2))
        try:
            for name in [EVENTS_QUEUE, MAINTENANCE_QUEUE, BROADCASTS_QUEUE, *[delivery_queue(c) for c in channels]]:
                for queue in (name, f"{name}.DQ", f"{name}.XQ"):  # Dramatiq's delay and dead-letter queues
                    channel = connection.channel()
                    try:
                        result = channel.queue_declare(queue=queue, passive=True)
                        depth.add_metric([queue], result.method.message_count)
                        channel.close()
                    except pika.exceptions.ChannelClosedByBroker:
                        pass  # not declared yet: no worker for it has started
        finally:
            connection.close()
    except Exception as exc:  # noqa: BLE001 - the broker being down is a metric, not a 500
        log.warning("broker unreachable for metrics", extra={"action": "metrics.broker_down",
                                                              "error": type(exc).__name__})
        up = 0
    yield depth
    yield GaugeMetricFamily("vestnik_broker_up", "1 when the broker answered this scrape", value=up)


class _Collector:
    def __init__(self, session: Session, settings: Settings, channels: list[str]) -> None:
        self.session, self.settings, self.channels = session, settings, channels

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from database_metrics(self.session)
        yield from quota_metrics(self.settings)
        yield from scheduler_metrics(self.session)
        yield from broker_metrics(self.settings, self.channels)


@bp.get("/metrics")
def metrics() -> Response:
    from vestnik.webapp import get_settings
    from vestnik.webapp.db import get_session

    settings = get_settings()
    if settings.metrics_token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
            abort(401)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(get_session(), settings, sorted(CHANNELS)))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
