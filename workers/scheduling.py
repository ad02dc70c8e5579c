"""What the scheduler does each tick, as plain functions over the database.

- ``release_due``: pending rows whose ``send_at`` has come and that are not
  already with the broker go to delivery; those past their ``expires_at``
  (a reminder after the lesson started, after a scheduler outage) are
  canceled instead.  The same query re-drives rows left
  pending by a crash between commit and enqueue (their ``queued_at`` is old).
  Each row is released once per window even when two schedulers run, because
  the UPDATE only takes rows it can lock (``SKIP LOCKED``) and moves
  ``queued_at`` forward.
- ``next_due``: the earliest ``send_at`` that ``release_due`` would take (the
  release loop's one query per wake, ``workers/release.py``).
- ``reap_stuck``: rows left ``processing`` past their lease.  If the provider
  call may have happened (an attempt row is open), the row is failed as
  "delivery uncertain" instead of resent (invariant 4); otherwise it goes back
  to pending.
- ``clean_outbox``: old processed outbox rows are deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select
from sqlalchemy.orm import Session, sessionmaker

from vestnik.outbox import queries as outbox_queries
from vestnik.shared import day_counts
from vestnik.workers import notifications
from vestnik.workers.notifications import Released

__all__ = ["Released", "clean_outbox", "next_due", "next_due_query", "reap_stuck", "release_due"]


def next_due(factory: sessionmaker[Session], now: datetime, *, redrive_after_s: float) -> datetime | None:
    """The earliest ``send_at`` among the rows ``release_due`` would take once it has come, or None.

    One index scan (``ix_notifications_due``, ``send_at`` of pending rows), stopping at the first row
    that is not already with the broker.
    """
    with factory() as session:
        return session.scalar(next_due_query(now, redrive_after_s))


def next_due_query(now: datetime, redrive_after_s: float) -> Select:
    return notifications.next_due_query(now, redrive_after_s=redrive_after_s)


def release_due(
    factory: sessionmaker[Session], now: datetime, *, redrive_after_s: float, limit: int = 1000
) -> list[Released]:
    """Hand due rows to delivery; first cancel the ones that are too late to make sense."""
    with factory() as session, session.begin():
        notifications.expire(session, now)
        return notifications.release_due(session, now, redrive_after_s=redrive_after_s, limit=limit)


def reap_stuck(factory: sessionmaker[Session], now: datetime) -> tuple[int, int]:
    """Return (requeued, marked_uncertain); then fold the dashboard's per-day differences
    (``shared/day_counts.py``: the triggers' rows since the last tick into one per key)."""
    with factory() as session, session.begin():
        reaped = notifications.reap_stuck(session, now)
    with factory() as session, session.begin():
        day_counts.fold(session)
    return reaped


def clean_outbox(factory: sessionmaker[Session], now: datetime, *, keep_days: float) -> int:
    """Delete processed outbox rows older than ``keep_days``, a chunk per transaction."""
    cutoff = now - timedelta(days=keep_days)
    total = 0
    while True:
        with factory() as session, session.begin():
            deleted = outbox_queries.delete_processed_before(session.connection(), cutoff, limit=5000)
        total += deleted
        if deleted < 5000:
            return total
