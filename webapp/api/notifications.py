"""``GET /api/v1/notifications?client=&event=&status=``: what happened to a CRM's notifications.

Newest first, ``limit`` per page (default 50, at most 200); the answer's
``next`` is the ``before`` of the following page (a keyset: pages stay put
while new rows arrive).
"""

from __future__ import annotations

from datetime import datetime

from flask import jsonify, request
from sqlalchemy import select

from vestnik.shared import bounds, client_ids, wire
from vestnik.shared.models import Notification, NotificationStatus
from vestnik.webapp.api import schemas
from vestnik.webapp.api.errors import ApiError
from vestnik.webapp.db import get_session

STATUSES = tuple(s.value for s in NotificationStatus)
QUERY = ("client", "event", "event_type", "status", "limit", "before")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def view(n: Notification, shown: dict[int, str] | None = None) -> schemas.Notification:
    """One notification; ``shown``: the CRM ids of its client (``client_ids.crm_ids``), else the key's text."""
    client = None if n.recipient_id is None else client_ids.shown(n.recipient_id, (shown or {}).get(n.recipient_id))
    return schemas.Notification(**{
        "id": n.id, "client": client, "channel": n.channel,
        "event_id": n.event_id, "event_type": n.event_type, "template_code": n.template_code, "step": n.step,
        "status": n.status, "attempts": n.attempts, "last_error": n.last_error, "attachment": n.attachment,
        "delivery_uncertain": bool(n.delivery_uncertain), "key": n.key, "send_at": _iso(n.send_at),
        "sent_at": _iso(n.sent_at), "created_at": _iso(n.created_at), "updated_at": _iso(n.updated_at),
    })


def search():
    args = request.args
    problems = [f"{name}: unknown parameter (known: {', '.join(QUERY)})" for name in args if name not in QUERY]
    session = get_session()
    stmt = select(Notification)
    if "client" in args:
        if not wire.CLIENT_ID(args["client"]):
            problems.append(f"client: {wire.CLIENT_ID.error}")
        key = client_ids.resolve(session, args["client"])
        stmt = stmt.where(Notification.recipient_id == key) if key is not None else stmt.where(False)
    if "event" in args:
        try:
            stmt = stmt.where(Notification.event_id == bounds.identifier(args["event"], "event"))
        except bounds.BoundsError as exc:
            problems.append(str(exc))
    if "event_type" in args:
        stmt = stmt.where(Notification.event_type == bounds.text(args["event_type"], "event_type", max_chars=100))
    if "status" in args:
        try:
            stmt = stmt.where(Notification.status == bounds.choice(args["status"], "status", STATUSES))
        except bounds.BoundsError as exc:
            problems.append(str(exc))
    try:
        limit = bounds.optional_integer(args.get("limit"), "limit", default=50, minimum=1, maximum=200)
        before = bounds.optional_integer(args.get("before"), "before", default=None, minimum=1)
    except bounds.BoundsError as exc:
        problems.append(str(exc))
        limit, before = 50, None
    if problems:
        raise ApiError(422, "invalid query", problems)
    if before is not None:
        stmt = stmt.where(Notification.id < before)
    rows = session.scalars(stmt.order_by(Notification.id.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    shown = client_ids.crm_ids(session, (n.recipient_id for n in page))
    result = schemas.NotificationPage(notifications=[view(n, shown) for n in page],
                                      next=page[-1].id if len(rows) > limit else None).model_dump()
    session.commit()  # the key's last use
    return jsonify(result)
