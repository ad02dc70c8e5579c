"""handle_event: turn one committed outbox event into notification rows, once.

Idempotency comes from the outbox row itself: the handler locks it
(``FOR UPDATE`` on PostgreSQL; SQLite has one writer), does nothing when it is
already processed or failed, and marks it processed in the same transaction
that inserts the notifications.  A transport duplicate (relay crash after
publish, redelivery after a worker crash) therefore creates nothing twice;
the unique constraint on ``notifications`` is the second line of defence.

A bad payload marks the event failed with its reason (visible to admins) and
returns normally, so the queue moves on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import EventValidationError
from shared.events import validate_event
from shared.models import Client, Notification, OutboxEvent, OutboxStatus, utcnow
from workers.channels.base import Channel
from workers.rules import Planned, plan_event

log = logging.getLogger("vestnik.events")


@dataclass
class HandleResult:
    event_id: int
    status: str
    created: list[tuple[int, str, str | None, datetime | None]] = field(default_factory=list)
    # (notification id, channel, address, send_at) of the rows created
    error: str | None = None


def _lock_event(session: Session, event_id: int) -> OutboxEvent | None:
    stmt = select(OutboxEvent).where(OutboxEvent.id == event_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def handle_event(
    factory: sessionmaker[Session], channels: dict[str, Channel], event_id: int, *, now: datetime | None = None
) -> HandleResult:
    now = now or utcnow()
    with factory() as session, session.begin():
        event = _lock_event(session, event_id)
        if event is None:
            log.warning("event not found", extra={"action": "event.missing", "event_id": event_id})
            return HandleResult(event_id, "missing")
        if event.status in (OutboxStatus.processed.value, OutboxStatus.failed.value):
            log.info("event already handled", extra={"action": "event.duplicate", "event_id": event_id})
            return HandleResult(event_id, "duplicate")
        try:
            validate_event(event.event_type, event.data, recipients=event.recipients)
        except EventValidationError as exc:
            event.status = OutboxStatus.failed.value
            event.error = str(exc)
            event.processed_at = now
            log.warning("event rejected", extra={"action": "event.failed", "event_id": event_id,
                                                 "reason": str(exc)})
            return HandleResult(event_id, "failed", error=str(exc))

        recipients = list(event.recipients or [])
        clients = session.scalars(select(Client).where(Client.id.in_(recipients))).all()
        planned, skipped = plan_event(
            event.event_type, event.data, recipients, clients, channels, send_at=event.send_at
        )
        rows = [_row(event, p, now) for p in planned]
        session.add_all(rows)
        session.flush()
        event.status = OutboxStatus.processed.value
        event.processed_at = now
        unknown = sorted({s.recipient_id for s in skipped if s.reason == "unknown client"})
        event.error = f"unknown clients: {unknown[:50]}" if unknown else None
        created = [(r.id, r.channel, r.recipient_address, r.send_at) for r in rows]
    log.info(
        "event handled",
        extra={"action": "event.processed", "event_id": event_id, "created": len(created),
               "skipped": len(skipped)},
    )
    return HandleResult(event_id, "processed", created)


def _row(event: OutboxEvent, p: Planned, now: datetime) -> Notification:
    due_now = p.send_at is None or p.send_at <= now
    return Notification(
        recipient_id=p.recipient_id,
        channel=p.channel,
        recipient_address=p.address,
        event_type=event.event_type,
        template_code=p.template_code,
        payload_json=event.data,
        status="pending",
        category=p.category,
        locale=p.locale,
        send_at=p.send_at or now,
        key=event.key,
        event_id=event.id,
        initiator=event.initiator,
        # Rows due now are handed to delivery right after commit; mark them queued
        # so the scheduler re-drives them only if that hand-over never happened.
        queued_at=now if due_now else None,
        created_at=now,
        updated_at=now,
    )
