"""Resend only failed: a finished broadcast tries again where trying again can help.

A failed row of a broadcast is resent when

- its last provider answer was **transient** (a timeout, a 5xx, a rate limit that outlasted the
  retries), or its client's **address has changed** since (a new email after a bounce); and
- nobody has it already: no row of the broadcast for that client or that address on that
  channel is sent, waiting, or *uncertain* (a timeout after the provider may have accepted it
  is never sent twice); and
- the client can still get it (the channel on, an address, the category allowed).

A permanent failure to an unchanged address (a mailbox that does not exist, a bot blocked by
the user) is not resent: it would fail again.  A render failure is not resent either (fix the
template, then resend the row from the history).

Each resend is a *round*: its rows carry the step ``resend-failed-<round>``, so the broadcast's
unique keys (broadcast, client, channel, step) and (broadcast, channel, address, step) allow
one row per client and address per round and never two.  The rows are made *held*, exactly as
an expansion makes them, and the broadcast runs again: the feeder hands them over at the
channels' pace, holds them through quiet hours, judges the failure rate, and completes it.
The admin types the exact number first, as for the first send; the action is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Integer, String, cast, exists, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from vestnik.shared.models import (
    Broadcast,
    BroadcastStatus,
    Category,
    Client,
    DeliveryAttempt,
    Notification,
    NotificationStatus,
    utcnow,
)
from vestnik.workers import broadcasts, notifications
from vestnik.workers.audience import Count, address, reachable
from vestnik.workers.broadcasts import EVENT_TYPE, BroadcastError
from vestnik.workers.channels.base import Outcome

STEP_PREFIX = "resend-failed-"
#: provider answers after which trying again may succeed
TRANSIENT = (Outcome.transient.value, Outcome.rate_limited.value)
#: a row in one of these states means the client has (or will have) the message: never again
HAS_IT = (NotificationStatus.sent.value, NotificationStatus.pending.value, NotificationStatus.processing.value)


def _last_outcome(row: Any):
    """The outcome of a row's last provider call (NULL: never called, e.g. a render failure)."""
    return (select(DeliveryAttempt.outcome).where(DeliveryAttempt.notification_id == row.id)
            .order_by(DeliveryAttempt.attempt_no.desc()).limit(1).scalar_subquery())


def _consent(category: str):
    if category == Category.marketing.value:
        return Client.allow_marketing_notifications.is_(True)
    return Client.allow_service_notifications.is_(True)


def candidates(b: Broadcast, channel: str):
    """One row per message a resend would make on ``channel``: (address now, lowest client id)."""
    f = aliased(Notification)
    other = aliased(Notification)
    now_address = address(channel)
    mine = (other.broadcast_id == b.id, other.channel == channel)
    has_it = or_(other.status.in_(HAS_IT), other.delivery_uncertain.is_(True))
    rows = (
        select(now_address.label("address"), func.min(Client.id).label("client_id"))
        .select_from(f).join(Client, Client.id == f.recipient_id)
        .where(f.broadcast_id == b.id, f.channel == channel, f.status == NotificationStatus.failed.value,
               f.delivery_uncertain.is_(False),
               or_(_last_outcome(f).in_(TRANSIENT), now_address != f.recipient_address),
               reachable(channel), _consent(b.category),
               ~exists().where(*mine, has_it, other.recipient_id == f.recipient_id),
               ~exists().where(*mine, has_it, other.recipient_address == now_address))
        .group_by(now_address)
    )
    return rows.subquery(f"resend_{channel}")


def count(session: Session, b: Broadcast) -> Count:
    """The exact numbers a resend would make now (what the admin types to confirm)."""
    per: dict[str, int] = {}
    clients: set[int] = set()
    for ch in b.channels:
        c = candidates(b, ch)
        ids = list(session.scalars(select(c.c.client_id)))
        per[ch] = len(ids)
        clients.update(ids)
    return Count(len(clients), sum(per.values()), per)


def next_round(session: Session, b: Broadcast) -> int:
    steps = session.scalars(select(Notification.step).distinct().where(
        Notification.broadcast_id == b.id, Notification.step.like(f"{STEP_PREFIX}%")))
    return 1 + max((int(s[len(STEP_PREFIX):]) for s in steps if s[len(STEP_PREFIX):].isdigit()), default=0)


def why_not(b: Broadcast) -> str | None:
    """Why this broadcast cannot resend now (None: it can)."""
    if b.status != BroadcastStatus.completed.value:
        return f"only a completed broadcast resends its failures; this one is {b.status}"
    return None


@dataclass(frozen=True)
class Resent:
    round: int
    count: Count


def _insert(session: Session, b: Broadcast, channel: str, step: str, now: datetime) -> int:
    c = candidates(b, channel)
    n = Notification.__table__.c
    dialect = session.get_bind().dialect.name

    def v(value: Any, column: str):
        col = n[column]
        return literal(value, type_=col.type) if dialect == "sqlite" else cast(literal(value, type_=col.type),
                                                                               col.type)

    rows = (
        select(c.c.client_id, v(channel, "channel"), c.c.address, v(EVENT_TYPE, "event_type"),
               v(b.template_code, "template_code"), v(b.data or {}, "payload_json"), cast(literal(0), Integer),
               v(now, "created_at"), v(now, "updated_at"), v(b.initiator, "initiator"), v(b.category, "category"),
               Client.locale, v(f"broadcast:{b.id}", "key"), cast(literal(step), String(100)),
               cast(literal(b.event_id), BigInteger), cast(literal(b.id), BigInteger), cast(literal(False), Boolean))
        .select_from(c).join(Client, Client.id == c.c.client_id).order_by(c.c.client_id)
    )
    columns = ["recipient_id", "channel", "recipient_address", "event_type", "template_code", "payload_json",
               "attempts", "created_at", "updated_at", "initiator", "category", "locale", "key", "step",
               "event_id", "broadcast_id", "delivery_uncertain"]
    # RETURNING counts exactly on every backend (a rowcount of INSERT ... SELECT may be -1).
    stmt = notifications.insert_ignoring_duplicates(session).from_select(
        [*columns, "status"], rows.add_columns(literal(NotificationStatus.pending.value, type_=n.status.type)))
    return len(session.execute(stmt.returning(n.id)).all())


def resend_failed(session: Session, b: Broadcast, actor: str, typed: str, now: datetime | None = None) -> Resent:
    """Make the resend round's rows (held) and run the broadcast again; ``typed`` must be the count.

    The broadcast row must be locked by the caller (:func:`broadcasts.lock`), so two admins
    clicking at once make one round: the second finds the broadcast running.
    """
    now = now or utcnow()
    reason = why_not(b)
    if reason:
        raise BroadcastError(reason)
    expected = count(session, b)
    if typed.replace(",", "").replace(" ", "").replace("\u00a0", "").strip() != str(expected.messages):
        raise BroadcastError(f"type the number of messages, {expected.messages}, to confirm "
                             f"(the failures may have changed since the page was shown)")
    if expected.messages == 0:
        raise BroadcastError("nothing to resend: no failure of this broadcast is transient or to a changed address")
    rnd = next_round(session, b)
    step = f"{STEP_PREFIX}{rnd}"
    made = {ch: _insert(session, b, ch, step, now) for ch in b.channels}
    if sum(made.values()) != expected.messages:  # the data moved between the count and the insert
        raise BroadcastError(f"the failures changed while resending ({sum(made.values())} instead of "
                             f"{expected.messages}); nothing was resent, look again")
    # Running again through the feeder: paced, held through quiet hours, judged, completed.
    b.status = BroadcastStatus.running.value
    b.stage = "all"
    b.expand_done = True
    b.health = None
    b.samples = None
    b.finished_at = None
    b.fed_at = None
    b.planned_messages = (b.planned_messages or 0) + expected.messages
    b.planned_by_channel = {ch: int((b.planned_by_channel or {}).get(ch, 0)) + made.get(ch, 0) for ch in b.channels}
    broadcasts.audit(session, actor, "broadcast.resend_failed", b, round=rnd, **expected.to_json())
    return Resent(rnd, expected)

