"""The admin's home: sent and failed per channel per day, queue depth, outbox
lag, the most frequent failure reasons, each linking into the filtered history."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from flask_admin import expose
from sqlalchemy import func, select

from vestnik.shared.models import Notification, NotificationStatus, OutboxEvent, OutboxStatus, utcnow
from vestnik.webapp.admin.base import SecureIndexView
from vestnik.webapp.db import get_session

DAYS = 14


def dashboard_data() -> dict[str, Any]:
    db = get_session()
    now = utcnow()
    since = (now - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    day = func.date(Notification.created_at)
    rows = db.execute(
        select(day, Notification.channel, Notification.status, func.count())
        .where(Notification.created_at >= since,
               Notification.status.in_([NotificationStatus.sent.value, NotificationStatus.failed.value]))
        .group_by(day, Notification.channel, Notification.status)
    ).all()
    per_day: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for d, channel, status, n in rows:
        per_day[channel][str(d)][status] = n
    days = [str((since + timedelta(days=i)).date()) for i in range(DAYS)]
    peak = max([sum(v.values()) for ch in per_day.values() for v in ch.values()] or [1])
    due = db.scalar(select(func.count()).select_from(Notification).where(  # NULL send_at: due (as delivery claims)
        Notification.status == NotificationStatus.pending.value,
        (Notification.send_at <= now) | Notification.send_at.is_(None)))
    scheduled = db.scalar(select(func.count()).select_from(Notification).where(
        Notification.status == NotificationStatus.pending.value, Notification.send_at > now))
    processing = db.scalar(select(func.count()).select_from(Notification).where(
        Notification.status == NotificationStatus.processing.value))
    oldest = db.scalar(select(func.min(OutboxEvent.created_at)).where(
        OutboxEvent.status == OutboxStatus.pending.value))
    backlog = db.scalar(select(func.count()).select_from(OutboxEvent).where(
        OutboxEvent.status == OutboxStatus.pending.value))
    failed_events = db.scalar(select(func.count()).select_from(OutboxEvent).where(
        OutboxEvent.status == OutboxStatus.failed.value))
    unknown_clients_events = db.scalar(select(func.count()).select_from(OutboxEvent).where(
        OutboxEvent.unknown_clients.is_not(None), OutboxEvent.processed_at >= now - timedelta(days=7)))
    reasons = db.execute(
        select(Notification.last_error, func.count())
        .where(Notification.status == NotificationStatus.failed.value,
               Notification.created_at >= now - timedelta(days=7))
        .group_by(Notification.last_error).order_by(func.count().desc()).limit(10)
    ).all()
    return {
        "channels": sorted(per_day), "days": days, "per_day": per_day, "peak": peak,
        "due": due, "scheduled": scheduled, "processing": processing,
        "outbox_backlog": backlog, "outbox_lag_s": (now - oldest).total_seconds() if oldest else 0.0,
        "failed_events": failed_events, "unknown_clients_events": unknown_clients_events, "reasons": reasons,
    }


class DashboardView(SecureIndexView):
    @expose("/")
    def index(self):
        return self.render("admin/dashboard.html", d=dashboard_data())
