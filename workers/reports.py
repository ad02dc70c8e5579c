"""Reports: per broadcast, template or event type — sent, failed by reason, unsubscribed, button presses.

Counts come from the notification rows created in the period (one GROUP BY each, served by the
indexes on ``created_at``).  Two numbers are *attributed*, since neither act names a message:

- **unsubscribed**: a client's unsubscribe (``client.unsubscribe`` in the audit) counts for the
  last message sent to that client before it (the one whose link or header they most likely used);
- **button presses**: a press of a Telegram button (a ``feedback_received`` event from the bot)
  counts for the last Telegram message sent to that client before it.  Presses are read from the
  outbox, so they are there for as long as the outbox keeps its events.

A failure's *reason* is its last error with the attempt count left out ("gave up after 5
attempts: timeout" and "gave up after 3 attempts: timeout" are one reason), cut to
:data:`REASON_CHARS`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vestnik.shared.models import AuditLog, Broadcast, Notification, NotificationStatus, OutboxEvent

BY = {"broadcast": Notification.broadcast_id, "template": Notification.template_code,
      "event": Notification.event_type}
REASON_CHARS = 80
#: at most this many unsubscribes or presses are attributed per report (each costs one indexed lookup)
ATTRIBUTED_MAX = 5000
_ATTEMPTS = re.compile(r"^gave up after \d+ attempts: ")


def reason_of(last_error: str | None) -> str:
    text = _ATTEMPTS.sub("", (last_error or "no reason recorded").strip())
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 1] + "…"


@dataclass
class Row:
    key: Any
    label: str
    sent: int = 0
    failed: int = 0
    waiting: int = 0
    canceled: int = 0
    unsubscribed: int = 0
    presses: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def top_reasons(self) -> list[tuple[str, int]]:
        return sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:5]

    @property
    def failure_pct(self) -> float:
        done = self.sent + self.failed
        return 100.0 * self.failed / done if done else 0.0


def _last_sent_before(session: Session, client_id: int, at: datetime, channel: str | None = None):
    stmt = (select(Notification.broadcast_id, Notification.template_code, Notification.event_type,
                   Notification.created_at)
            .where(Notification.recipient_id == client_id, Notification.status == NotificationStatus.sent.value,
                   Notification.created_at <= at)
            .order_by(Notification.created_at.desc()).limit(1))
    if channel:
        stmt = stmt.where(Notification.channel == channel)
    return session.execute(stmt).first()


def _attributed(session: Session, by: str, since: datetime, until: datetime
                ) -> tuple[dict[Any, int], dict[Any, int]]:
    """(unsubscribes, presses) per key, each credited to the last message sent before it."""
    index = {"broadcast": 0, "template": 1, "event": 2}[by]
    unsub: dict[Any, int] = defaultdict(int)
    presses: dict[Any, int] = defaultdict(int)
    acts = session.execute(
        select(AuditLog.object_id, AuditLog.created_at)
        .where(AuditLog.action == "client.unsubscribe", AuditLog.created_at >= since, AuditLog.created_at < until)
        .order_by(AuditLog.id).limit(ATTRIBUTED_MAX)).all()
    for client_id, at in acts:
        if client_id and client_id.isdigit():
            last = _last_sent_before(session, int(client_id), at)
            if last is not None and last[3] >= since:
                unsub[last[index]] += 1
    pressed = session.execute(
        select(OutboxEvent.initiator, OutboxEvent.created_at)
        .where(OutboxEvent.event_type == "feedback_received", OutboxEvent.initiator.like("client:%"),
               OutboxEvent.created_at >= since, OutboxEvent.created_at < until)
        .order_by(OutboxEvent.id).limit(ATTRIBUTED_MAX)).all()
    for initiator, at in pressed:
        client_id = initiator.split(":", 1)[1]
        if client_id.isdigit():
            last = _last_sent_before(session, int(client_id), at, "telegram")
            if last is not None and last[3] >= since:
                presses[last[index]] += 1
    return unsub, presses


def report(session: Session, by: str, since: datetime, until: datetime, *, key: Any = None) -> list[Row]:
    """One row per broadcast, template code or event type with messages created in [since, until);
    ``key`` narrows it to one (a broadcast's own page)."""
    if by not in BY:
        raise ValueError(f"by: one of {', '.join(BY)}")
    col = BY[by]
    conds = [Notification.created_at >= since, Notification.created_at < until]
    if by == "broadcast":
        conds.append(Notification.broadcast_id.is_not(None))
    if key is not None:
        conds.append(col == key)
    rows: dict[Any, Row] = {}
    for k, status, n in session.execute(select(col, Notification.status, func.count()).where(*conds)
                                        .group_by(col, Notification.status)):
        r = rows.setdefault(k, Row(k, str(k)))
        if status == NotificationStatus.sent.value:
            r.sent += n
        elif status == NotificationStatus.failed.value:
            r.failed += n
        elif status == NotificationStatus.canceled.value:
            r.canceled += n
        else:
            r.waiting += n
    for k, error, n in session.execute(
            select(col, Notification.last_error, func.count())
            .where(*conds, Notification.status == NotificationStatus.failed.value)
            .group_by(col, Notification.last_error)):
        if k in rows:
            reason = reason_of(error)
            rows[k].reasons[reason] = rows[k].reasons.get(reason, 0) + n
    unsub, presses = _attributed(session, by, since, until)
    for k, n in unsub.items():
        if k in rows:
            rows[k].unsubscribed = n
    for k, n in presses.items():
        if k in rows:
            rows[k].presses = n
    if by == "broadcast" and rows:
        names = dict(session.execute(select(Broadcast.id, Broadcast.name).where(Broadcast.id.in_(list(rows)))).all())
        for k, r in rows.items():
            r.label = f"#{k} {names.get(k, '')}".strip()
    return sorted(rows.values(), key=lambda r: (-(r.sent + r.failed + r.waiting), r.label))
