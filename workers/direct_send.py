"""``vestnik send``: one configured template to one client, now, through delivery.

Not an event and not a broadcast: the rows are made here, one per channel on
which the template exists and the client can be reached, with the event type
the template belongs to (so delivery renders it exactly as for that event:
times in the client's zone and language, an optional field left out is empty),
and the scheduler hands them to delivery within a tick.  The data is checked
against that event's schema first, so a missing field is named here, not in a
failed notification.  A template no event uses (a broadcast's) takes free data.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vestnik.shared.errors import VestnikError
from vestnik.shared.events import category_of, validate_event
from vestnik.shared.models import Category, Client, NotificationTemplate
from vestnik.workers import notifications
from vestnik.workers.channels.base import Channel
from vestnik.workers.rules import allows_category, channel_refusal
from vestnik.workers.template_checks import event_types_using

#: the event type of templates no rule uses (broadcast templates): free data
FREE_DATA_EVENT = "mass_broadcast"


class NotSent(VestnikError):
    """The template cannot be sent to this client (the reason says why)."""


def send(session: Session, channels: Mapping[str, Channel], code: str, client_id: int, data: Mapping[str, Any],
         *, now: datetime, initiator: str = "cli") -> list[tuple[int, str]]:
    """Make the pending rows; return (notification id, channel) for each.  Raises NotSent or
    EventValidationError naming what is wrong."""
    templates = session.scalars(select(NotificationTemplate).where(
        NotificationTemplate.code == code, NotificationTemplate.is_active.is_(True))).all()
    if not templates:
        raise NotSent(f"no active template with code {code!r}")
    users = event_types_using(code)
    event_type = users[0].name if users else FREE_DATA_EVENT
    if users:
        validate_event(event_type, data)
    category = Category(templates[0].category) if not users else category_of(event_type, data)
    client = session.get(Client, client_id)
    if client is None:
        raise NotSent(f"no client {client_id}")
    if not allows_category(client, category):
        raise NotSent(f"client {client.crm_id} does not accept {category.value} notifications")
    rows, refused = [], []
    step = f"send-{uuid.uuid4().hex[:12]}"
    for name in sorted({t.channel for t in templates}):
        channel = channels.get(name)
        reason = "no such channel" if channel is None else channel_refusal(client, name, channel)
        if reason:
            refused.append(f"{name}: {reason}")
            continue
        rows.append(dict(recipient_id=client.id, channel=name, recipient_address=channel.address_of(client) or "",
                         event_type=event_type, template_code=code, payload_json=dict(data), category=category.value,
                         locale=client.locale or "ru", send_at=now, step=step, initiator=initiator, attempts=0,
                         delivery_uncertain=False, created_at=now, updated_at=now))
    if not rows:
        raise NotSent(f"client {client.crm_id} cannot get {code!r} on any channel ({'; '.join(refused)})")
    return [(r.id, r.channel) for r in notifications.add_pending(session, rows)]
