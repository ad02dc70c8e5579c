"""The admin's home, one screen: sent and failed per channel per day, delivery and outbox lag per
day, uncertain deliveries per day (server-side SVG, ``webapp/admin/charts.py``, each with its
table), queue depth now, the most frequent failure reasons, each linking into the filtered history."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from flask_admin import expose
from flask_babel import gettext as _
from sqlalchemy import ColumnElement, func, select

from vestnik.shared import day_counts
from vestnik.shared.models import Notification, NotificationStatus, OutboxEvent, OutboxStatus, utcnow
from vestnik.webapp.admin.base import SecureIndexView
from vestnik.webapp.db import get_session

DAYS = 14


def seconds_between(start: ColumnElement, end: ColumnElement) -> ColumnElement:
    """``end - start`` in seconds, on PostgreSQL and SQLite."""
    if get_session().get_bind().dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def outbox_lag_per_day(since) -> dict[str, tuple[float, float]]:
    """Average and worst wait per day of an outbox event from commit to published (the relay); the
    outbox is cleaned after a few days, so it stays small."""
    o_day = func.date(OutboxEvent.created_at)
    o_wait = seconds_between(OutboxEvent.created_at, OutboxEvent.published_at)
    return {str(d): (float(a or 0), float(m or 0)) for d, a, m in get_session().execute(
        select(o_day, func.avg(o_wait), func.max(o_wait))
        .where(OutboxEvent.created_at >= since, OutboxEvent.published_at.is_not(None)).group_by(o_day))}


def dashboard_data() -> dict[str, Any]:
    db = get_session()
    now = utcnow()
    since = (now - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [str((since + timedelta(days=i)).date()) for i in range(DAYS)]
    # Sent and failed per channel, the wait from due to sent (the queues and the limits) and uncertain
    # deliveries, per UTC day of creation: from notification_day_counts, not the rows (shared/day_counts.py).
    per_day: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    uncertain_by_day: dict[str, int] = defaultdict(int)
    waits: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # day: waited, sum, max
    for c in day_counts.per_day(db, since.date()):
        if c.status in (NotificationStatus.sent.value, NotificationStatus.failed.value) and c.n:
            per_day[c.channel][c.day][c.status] += c.n
        if c.uncertain:
            uncertain_by_day[c.day] += c.n
        if c.waited:
            w = waits[c.day]
            w[0] += c.waited
            w[1] += c.wait_sum
            w[2] = max(w[2], c.wait_max or 0.0)
    outbox = outbox_lag_per_day(since)
    lag = {
        "delivery_avg": [max(0.0, waits[d][1] / waits[d][0]) if waits[d][0] else 0.0 for d in days],
        "delivery_max": [max(0.0, waits[d][2]) if waits[d][0] else 0.0 for d in days],
        "outbox_avg": [max(0.0, outbox.get(d, (0, 0))[0]) for d in days],
        "outbox_max": [max(0.0, outbox.get(d, (0, 0))[1]) for d in days],
    }
    uncertain = [uncertain_by_day.get(d, 0) for d in days]
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
        "lag": lag, "uncertain": uncertain, "uncertain_total": sum(uncertain),
        "oldest_due_s": _oldest_due_s(now),
        "channels": sorted(per_day), "days": days, "per_day": per_day, "peak": peak,
        "due": due, "scheduled": scheduled, "processing": processing,
        "outbox_backlog": backlog, "outbox_lag_s": (now - oldest).total_seconds() if oldest else 0.0,
        "failed_events": failed_events, "unknown_clients_events": unknown_clients_events, "reasons": reasons,
    }


def _oldest_due_s(now) -> float:
    """How long the oldest due message has waited (the queues' lag now): the earliest ``send_at`` of
    a pending row (index ix_notifications_due); a broadcast's held rows (no ``send_at``) wait for
    their broadcast's pace, not in a queue."""
    oldest = get_session().scalar(select(func.min(Notification.send_at)).where(
        Notification.status == NotificationStatus.pending.value, Notification.send_at <= now))
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


def charts(d: dict[str, Any]) -> dict[str, Any]:
    """The SVGs of the dashboard (the template shows each with its table)."""
    from vestnik.webapp.admin.charts import Series, bars

    sent_failed = {}
    for ch in d["channels"]:
        sent = Series(_("sent"), [d["per_day"][ch][day].get("sent", 0) for day in d["days"]], "#1e7e34")
        failed = Series(_("failed"), [d["per_day"][ch][day].get("failed", 0) for day in d["days"]], "#c82333")
        sent_failed[ch] = {"svg": bars(_("%(channel)s: sent and failed per day", channel=ch), d["days"],
                                       [sent, failed], unit=_("messages")), "series": [sent, failed]}
    lag = [Series(_("delivery, average"), d["lag"]["delivery_avg"], "#0062cc"),
           Series(_("delivery, worst"), d["lag"]["delivery_max"], "#5a6268"),
           Series(_("outbox, average"), d["lag"]["outbox_avg"], "#117a8b"),
           Series(_("outbox, worst"), d["lag"]["outbox_max"], "#343a40")]
    uncertain = [Series(_("uncertain"), d["uncertain"], "#b35900")]
    return {
        "sent_failed": sent_failed,
        "lag": {"svg": bars(_("Wait per day in seconds: due to sent, outbox commit to published"), d["days"], lag,
                            unit=_("s"), stacked=False), "series": lag},
        "uncertain": {"svg": bars(_("Uncertain deliveries per day"), d["days"], uncertain, unit=_("messages")),
                      "series": uncertain},
    }


class DashboardView(SecureIndexView):
    @expose("/")
    def index(self):
        d = dashboard_data()
        return self.render("admin/dashboard.html", d=d, charts=charts(d))
