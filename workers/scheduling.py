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

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared.models import DeliveryAttempt, Notification, NotificationStatus, OutboxEvent, OutboxStatus


@dataclass(frozen=True)
class Released:
    id: int
    channel: str
    address: str


def _releasable(now: datetime, redrive_after_s: float):  # noqa: ANN202 - a SQL expression
    """Pending rows not with the broker (or handed over so long ago that they are re-driven)."""
    stale = now - timedelta(seconds=redrive_after_s)
    return (Notification.status == NotificationStatus.pending.value) & (
        Notification.queued_at.is_(None) | (Notification.queued_at < stale))


def next_due(factory: sessionmaker[Session], now: datetime, *, redrive_after_s: float) -> datetime | None:
    """The earliest ``send_at`` among the rows ``release_due`` would take once it has come, or None.

    One index scan (``ix_notifications_due``, ``send_at`` of pending rows), stopping at the first row
    that is not already with the broker.
    """
    with factory() as session:
        return session.scalar(next_due_query(now, redrive_after_s))


def next_due_query(now: datetime, redrive_after_s: float) -> Select:
    return (select(Notification.send_at)
            .where(_releasable(now, redrive_after_s), Notification.send_at.is_not(None))
            .order_by(Notification.send_at)
            .limit(1))


def release_due(
    factory: sessionmaker[Session], now: datetime, *, redrive_after_s: float, limit: int = 1000
) -> list[Released]:
    """Hand due rows to delivery; first cancel the ones that are too late to make sense."""
    with factory() as session, session.begin():
        session.execute(
            update(Notification)
            .where(
                Notification.status == NotificationStatus.pending.value,
                Notification.send_at <= now,
                Notification.expires_at < now,
            )
            .values(status=NotificationStatus.canceled.value, updated_at=now,
                    last_error="too late: its moment passed before it could be sent")
            .execution_options(synchronize_session=False)
        )
        pick = (
            select(Notification.id)
            .where(_releasable(now, redrive_after_s), Notification.send_at <= now)
            .order_by(Notification.send_at)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        rows = session.execute(
            update(Notification)
            .where(Notification.id.in_(pick.scalar_subquery()))
            .values(queued_at=now)
            .returning(Notification.id, Notification.channel, Notification.recipient_address)
            .execution_options(synchronize_session=False)
        ).all()
    return [Released(*r) for r in rows]


def reap_stuck(factory: sessionmaker[Session], now: datetime) -> tuple[int, int]:
    """Return (requeued, marked_uncertain)."""
    open_attempt = exists().where(
        DeliveryAttempt.notification_id == Notification.id,
        DeliveryAttempt.attempt_no == Notification.attempts,
        DeliveryAttempt.outcome.is_(None),
    )
    expired = (Notification.status == NotificationStatus.processing.value) & (Notification.locked_until < now)
    with factory() as session, session.begin():
        uncertain = session.execute(
            update(Notification)
            .where(expired, open_attempt)
            .values(
                status=NotificationStatus.failed.value,
                delivery_uncertain=True,
                last_error="delivery uncertain (not resent): the worker stopped during the provider call",
                locked_until=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        requeued = session.execute(
            update(Notification)
            .where(expired, ~open_attempt)
            .values(
                status=NotificationStatus.pending.value,
                queued_at=None,
                locked_until=None,
                last_error="worker stopped before sending; requeued",
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
    return requeued, uncertain


def clean_outbox(factory: sessionmaker[Session], now: datetime, *, keep_days: float) -> int:
    cutoff = now - timedelta(days=keep_days)
    with factory() as session, session.begin():
        return session.execute(
            delete(OutboxEvent).where(
                OutboxEvent.status == OutboxStatus.processed.value, OutboxEvent.processed_at < cutoff
            )
        ).rowcount
