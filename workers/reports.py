"""Reports: per broadcast, template or event type — sent, failed by reason, unsubscribed, button presses.

Counts come from the notification rows created in the period (one GROUP BY each, served by the
indexes on ``created_at``).  **Unsubscribed** and **button presses** are the reactions recorded on
those messages when they happened (``workers/reactions.py``: a press on the message its button was
on; an unsubscribe on the client's last marketing message before it).

A failure's *reason* is its last error with the attempt count left out ("gave up after 5
attempts: timeout" and "gave up after 3 attempts: timeout" are one reason), cut to
:data:`REASON_CHARS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vestnik.shared.models import Broadcast, Notification, NotificationReaction, NotificationStatus, ReactionKind

BY = {"broadcast": Notification.broadcast_id, "template": Notification.template_code,
      "event": Notification.event_type}
REASON_CHARS = 80
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
    for k, kind, n in session.execute(
            select(col, NotificationReaction.kind, func.count())
            .join(Notification, Notification.id == NotificationReaction.notification_id)
            .where(*conds).group_by(col, NotificationReaction.kind)):
        if k in rows:
            if kind == ReactionKind.unsubscribe.value:
                rows[k].unsubscribed += n
            elif kind == ReactionKind.button.value:
                rows[k].presses += n
    if by == "broadcast" and rows:
        names = dict(session.execute(select(Broadcast.id, Broadcast.name).where(Broadcast.id.in_(list(rows)))).all())
        for k, r in rows.items():
            r.label = f"#{k} {names.get(k, '')}".strip()
    return sorted(rows.values(), key=lambda r: (-(r.sent + r.failed + r.waiting), r.label))
