"""Notifications per UTC day, channel, status and "delivery uncertain", with the sent ones' waits:
what the dashboard charts, without reading the rows (``NotificationDayCount``, migration 0020).

On PostgreSQL the triggers of migration 0020 append differences in the writers' transactions;
:func:`fold` sums them into one row per key (the scheduler's reap tick calls it) and :func:`per_day`
sums whatever is there, folded or not, so the figures are exact either way.  On SQLite there is no
trigger and :func:`per_day` groups the notifications themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from sqlalchemy import case, func, select, text
from sqlalchemy.orm import Session

from vestnik.shared.models import Notification, NotificationDayCount, NotificationStatus

# One folder at a time (another one skips): two would only wait on each other's deleted rows.
_FOLD_LOCK = 0x7665_6461_7963  # "vedayc"
_FOLD = text("""
WITH keys AS (
    SELECT day, channel, status, uncertain FROM notification_day_counts
    GROUP BY 1, 2, 3, 4 HAVING count(*) > 1
), gone AS (
    DELETE FROM notification_day_counts c USING keys k
    WHERE c.day = k.day AND c.channel = k.channel AND c.status = k.status AND c.uncertain = k.uncertain
    RETURNING c.day, c.channel, c.status, c.uncertain, c.n, c.waited, c.wait_sum, c.wait_max
)
INSERT INTO notification_day_counts (day, channel, status, uncertain, n, waited, wait_sum, wait_max)
SELECT day, channel, status, uncertain, sum(n), sum(waited), sum(wait_sum), max(wait_max)
FROM gone GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0 OR sum(waited) <> 0
""")


@dataclass(frozen=True)
class DayCount:
    day: str  # ISO date, UTC
    channel: str
    status: str
    uncertain: bool
    n: int
    waited: int  # sent rows with a sent_at: how many waits wait_sum adds up
    wait_sum: float
    wait_max: float | None


def fold(session: Session) -> int:
    """Sum the triggers' differences into one row per key; rows removed. PostgreSQL only (else 0).

    Exact under concurrent writers: the DELETE sees only committed differences and the sum goes back
    in the same statement; differences committed meanwhile stay for the next fold."""
    if session.get_bind().dialect.name != "postgresql":
        return 0
    if not session.scalar(select(func.pg_try_advisory_xact_lock(_FOLD_LOCK))):
        return 0
    return session.execute(_FOLD).rowcount or 0


def per_day(session: Session, since: date) -> list[DayCount]:
    """The figures of the days from ``since`` (UTC) on, one per day, channel, status and uncertain."""
    if session.get_bind().dialect.name == "postgresql":
        c = NotificationDayCount
        rows = session.execute(
            select(c.day, c.channel, c.status, c.uncertain, func.sum(c.n), func.sum(c.waited), func.sum(c.wait_sum),
                   func.max(c.wait_max))
            .where(c.day >= since).group_by(c.day, c.channel, c.status, c.uncertain))
    else:
        n = Notification
        day = func.date(n.created_at)  # stored as naive UTC
        wait = case((n.status == NotificationStatus.sent.value,
                     (func.julianday(n.sent_at) - func.julianday(func.coalesce(n.send_at, n.created_at))) * 86400.0))
        rows = session.execute(
            select(day, n.channel, n.status, n.delivery_uncertain, func.count(), func.count(wait),
                   func.coalesce(func.sum(wait), 0.0), func.max(wait))
            .where(n.created_at >= datetime.combine(since, time(), UTC))
            .group_by(day, n.channel, n.status, n.delivery_uncertain))
    return [DayCount(str(d), ch, st, bool(u), int(k), int(w or 0), float(s or 0), m)
            for d, ch, st, u, k, w, s, m in rows if k or w]
