"""Resending a notification: one rule for the admin's action and ``vestnik resend``.

A resend is a new row (the original keeps its history), rendered again from
its template with the original data.  Some rows cannot be re-sent: an admin's
"send test to me" (no client) and a client's sign-in message (its secret is
gone by design: only its hash was ever stored, and it is single-use anyway).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from vestnik.shared.models import Notification, utcnow

#: rows made outside the event pipeline, whose text cannot be rebuilt
NOT_RESENDABLE_EVENTS = frozenset({"client_sign_in"})


def why_not_resendable(original: Notification) -> str | None:
    if original.recipient_id is None:
        return "a test sent to an admin is not re-sent"
    if original.event_type in NOT_RESENDABLE_EVENTS:
        return "a sign-in message is single-use; the client asks for a new one"
    return None


def resend_copy(session: Session, original: Notification, *, initiator: str,
                now: datetime | None = None) -> Notification:
    """Add a pending copy of ``original`` to the session; ValueError if it cannot be re-sent."""
    reason = why_not_resendable(original)
    if reason is not None:
        raise ValueError(reason)
    now = now or utcnow()
    copy = Notification(
        recipient_id=original.recipient_id, channel=original.channel,
        recipient_address=original.recipient_address, event_type=original.event_type,
        template_code=original.template_code, payload_json=original.payload_json, category=original.category,
        locale=original.locale, key=original.key, event_id=None, broadcast_id=original.broadcast_id,
        step=f"resend-of-{original.id}-{int(now.timestamp())}", initiator=initiator, status="pending",
        send_at=now, created_at=now, updated_at=now,
    )
    session.add(copy)
    return copy
