"""Broadcasts: what an admin (or the CRM) may do to one, as plain functions.

Life of a broadcast::

    draft --send test--> testing --send to everyone--> running --> completed
      |                     |  (auto mode: by itself,      |
      |                     |   when the test went well)   |
      +--start (auto)-------+                              |
    testing / running <--pause / resume--> paused          |
    any state but completed --cancel--> canceled <---------+

These functions only change rows (the caller commits, with its audit entry
in the same transaction).  The workers act on the state: the scheduler's
tick (``workers/broadcasting.py``) expands the selection into notification
rows in batches and hands them to delivery at the channels' pace.  Nothing
here talks to the broker, so the web app needs none.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from vestnik.shared.attachment_refs import ATTACHMENT_KEY
from vestnik.shared.client_ids import client_keys
from vestnik.shared.errors import VestnikError
from vestnik.shared.models import (
    AuditLog,
    Broadcast,
    BroadcastClient,
    BroadcastStatus,
    Category,
    Client,
    Notification,
    NotificationStatus,
    NotificationTemplate,
    utcnow,
)
from vestnik.shared.targeting import Targeting
from vestnik.workers import attachments, notifications
from vestnik.workers.audience import Count, Selection, check_channels, client_conditions, count
from vestnik.workers.channels import CHANNELS

ACTIVE = (BroadcastStatus.testing.value, BroadcastStatus.running.value)
FINAL = (BroadcastStatus.completed.value, BroadcastStatus.canceled.value)
#: notifications made by broadcasts carry this step (resends take another, so the unique keys allow them)
STEP = "broadcast"
EVENT_TYPE = "mass_broadcast"


class BroadcastError(VestnikError):
    """A broadcast action that is not possible now; the message says why."""


def selection(b: Broadcast, *, stage: str | None = None, remaining_only: bool = False) -> Selection:
    """The selection of a broadcast, or of its test stage when it goes to a test group;
    ``remaining_only`` leaves out the messages the broadcast has made already (its test stage)."""
    targeting = Targeting.parse(b.targeting)
    if (stage or b.stage) == "test" and b.test_group:
        targeting = Targeting(groups=(b.test_group,))
    return Selection(targeting, tuple(b.channels), Category(b.category), b.id, remaining_only=remaining_only)


def create(
    session: Session,
    *,
    name: str,
    template_code: str,
    channels: list[str],
    category: str,
    targeting: dict[str, Any],
    initiator: str,
    data: dict[str, Any] | None = None,
    client_ids: list[int] | None = None,
    mode: str = "manual",
    test_size: int = 10,
    test_group: str | None = None,
    stage_wait_s: int = 60,
    max_failure_rate: float = 0.2,
    event_id: int | None = None,
) -> Broadcast:
    """A draft; raises BroadcastError naming the bad field."""
    try:
        chosen = check_channels(channels)
        parsed = Targeting.parse(targeting)
        cat = Category(category)
    except ValueError as exc:
        raise BroadcastError(str(exc)) from None
    if mode not in ("manual", "auto"):
        raise BroadcastError("mode: manual or auto")
    if not 0 < max_failure_rate <= 1:
        raise BroadcastError("max_failure_rate: between 0 and 1")
    if test_size < 1 or stage_wait_s < 0:
        raise BroadcastError("test_size must be at least 1 and stage_wait_s not negative")
    have = set(session.scalars(select(NotificationTemplate.channel).where(
        NotificationTemplate.code == template_code, NotificationTemplate.is_active.is_(True))))
    missing = [c for c in chosen if c not in have]
    if missing:
        raise BroadcastError(f"template {template_code!r} has no active version for: {', '.join(missing)}")
    _check_attachment(session, data, chosen)
    if client_ids is not None:
        parsed = dataclasses.replace(parsed, client_list=True)
    b = Broadcast(
        name=(name or template_code).strip()[:200], template_code=template_code, channels=list(chosen),
        category=cat.value, targeting=parsed.to_json(), data=dict(data or {}), initiator=initiator,
        status=BroadcastStatus.draft.value, mode=mode, test_size=test_size, test_group=test_group or None,
        stage_wait_s=stage_wait_s, max_failure_rate=max_failure_rate, event_id=event_id,
    )
    session.add(b)
    session.flush()
    if client_ids:
        for start in range(0, len(client_ids), 5000):
            session.execute(insert(BroadcastClient), [{"broadcast_id": b.id, "client_id": cid}
                                                      for cid in client_ids[start:start + 5000]])
    return b


def unknown_listed(session: Session, b: Broadcast) -> int:
    """How many uploaded ids name no client (reported on the confirmation page)."""
    return session.scalar(select(func.count()).select_from(BroadcastClient).where(
        BroadcastClient.broadcast_id == b.id, BroadcastClient.client_id.not_in(select(Client.id)))) or 0


def counts(session: Session, b: Broadcast) -> tuple[Count, Count]:
    """(what sending to everyone adds now, the test stage), as expansion would create them.

    Both leave out what the broadcast has made already: after a test stage the first number is
    the rest of the selection (the admin confirms what will be added, never what was sent), and
    a test stage never reaches more than the selection holds.
    """
    whole = count(session, selection(b, stage="all", remaining_only=True))
    if b.test_group:
        test = count(session, selection(b, stage="test", remaining_only=True))
    else:
        sel = selection(b, stage="all", remaining_only=True)
        test = count(session, sel, Client.id.in_(first_clients(selection(b, stage="all"), b.test_size)))
    return whole, test


def made(session: Session, b: Broadcast) -> dict[str, int]:
    """How many messages the broadcast has made so far per channel (its test stage, resends)."""
    return {ch: int(n) for ch, n in session.execute(
        select(Notification.channel, func.count()).where(Notification.broadcast_id == b.id)
        .group_by(Notification.channel))}


def first_clients(sel: Selection, n: int):
    """The test stage's "first N clients": the N lowest ids the rule admits (expansion takes the same)."""
    ids = select(Client.id).where(*client_conditions(sel)).order_by(Client.id).limit(n).subquery()
    return select(ids.c.id)


def audit(session: Session, actor: str, action: str, b: Broadcast, **details: Any) -> None:
    session.add(AuditLog(actor=actor, action=action, object_type="broadcast", object_id=str(b.id),
                         details={"status": b.status, **details}))


def begin_stage(b: Broadcast, stage: str, now: datetime) -> None:
    b.stage = stage
    b.health = None  # the failure-rate window starts at this stage's first tick
    b.expand_cursor = 0
    b.expanded_clients = 0
    b.expand_done = False
    b.expanded_at = None
    b.started_at = b.started_at or now


def send_test(session: Session, b: Broadcast, actor: str, now: datetime | None = None) -> None:
    now = now or utcnow()
    if b.status != BroadcastStatus.draft.value:
        raise BroadcastError(f"a test is sent from a draft; this broadcast is {b.status}")
    if b.mode == "auto":
        # An automatic broadcast goes on by itself after its test: it starts with the confirmed count only.
        raise BroadcastError("an automatic broadcast starts with Start (its test stage comes first)")
    begin_stage(b, "test", now)
    b.status = BroadcastStatus.testing.value
    audit(session, actor, "broadcast.test", b, test_group=b.test_group, test_size=b.test_size)


def send_all(session: Session, b: Broadcast, actor: str, typed: str, now: datetime | None = None) -> Count:
    """Start the full send (auto mode: the test stage first); ``typed`` must be today's message count."""
    now = now or utcnow()
    if b.status not in (BroadcastStatus.draft.value, BroadcastStatus.testing.value):
        raise BroadcastError(f"only a draft or a tested broadcast can start; this one is {b.status}")
    if b.status == BroadcastStatus.testing.value and b.test_done_at is None:
        raise BroadcastError("the test is still being sent; wait until it is done")
    whole = confirm(session, b, typed)
    if b.mode == "auto" and b.status == BroadcastStatus.draft.value:
        begin_stage(b, "test", now)
        b.status = BroadcastStatus.testing.value
    else:
        begin_stage(b, "all", now)
        b.status = BroadcastStatus.running.value
    audit(session, actor, "broadcast.start", b, mode=b.mode, **whole.to_json())
    return whole


def confirm(session: Session, b: Broadcast, typed: str) -> Count:
    """Count again; the typed number must be that count (the admin confirms what will be sent now).
    Records the confirmed numbers; raises BroadcastError when they differ or nothing is left."""
    whole, _ = counts(session, b)
    if typed.replace(",", "").replace(" ", "").replace("\u00a0", "").strip() != str(whole.messages):
        raise BroadcastError(f"type the number of messages, {whole.messages}, to confirm "
                             f"(the selection may have changed since the page was shown)")
    if whole.messages == 0:
        raise BroadcastError("nothing is left to send: the test stage reached the whole selection"
                             if any(made(session, b).values()) else "the selection has no messages to send")
    plan(session, b, whole)
    return whole


def update_text(session: Session, b: Broadcast, actor: str, *, name: str, data: dict[str, Any]) -> None:
    """Change the name and the template data of a broadcast that has sent nothing yet."""
    if b.status not in (BroadcastStatus.draft.value, BroadcastStatus.scheduled.value):
        raise BroadcastError(f"only a draft or a scheduled broadcast can be edited; this one is {b.status}")
    name = (name or "").strip()[:200] or b.template_code
    _check_attachment(session, data, b.channels)
    changes = {}
    if name != b.name:
        changes["name"] = [b.name, name]
    if data != (b.data or {}):
        changes["data"] = [b.data or {}, data]
    if not changes:
        return
    b.name, b.data = name, dict(data)
    audit(session, actor, "broadcast.edit", b, changes=changes)


def _check_attachment(session: Session, data: dict[str, Any] | None, channels: list[str] | tuple[str, ...]) -> None:
    """A broadcast's ``attachment`` (data.attachment): each of its channels can send it, or BroadcastError."""
    ref = (data or {}).get(ATTACHMENT_KEY)
    if ref in (None, ""):
        return
    try:
        attachments.check_reference(session, ref, channels)
    except ValueError as exc:
        raise BroadcastError(f"attachment: {exc}") from None


def plan(session: Session, b: Broadcast, whole: Count) -> None:
    """The confirmed numbers: what was made already (a test stage) plus what the full send adds."""
    already = made(session, b)
    b.planned_clients = whole.clients
    b.planned_messages = whole.messages + sum(already.values())
    b.planned_by_channel = {ch: whole.by_channel.get(ch, 0) + already.get(ch, 0) for ch in b.channels}


def pause(session: Session, b: Broadcast, actor: str, reason: str = "paused by an admin") -> None:
    if b.status not in ACTIVE:
        raise BroadcastError(f"only a sending broadcast can be paused; this one is {b.status}")
    b.status = BroadcastStatus.paused.value
    b.paused_reason = reason
    audit(session, actor, "broadcast.pause" if actor != "system" else "broadcast.auto_pause", b, reason=reason)


def resume(session: Session, b: Broadcast, actor: str) -> None:
    if b.status != BroadcastStatus.paused.value:
        raise BroadcastError(f"only a paused broadcast can resume; this one is {b.status}")
    if b.stage == "test" and b.test_done_at is not None and b.mode == "auto":
        # Paused at the gate after the test stage: resuming is the admin's "go on anyway".
        begin_stage(b, "all", utcnow())
        b.status = BroadcastStatus.running.value
    else:
        b.status = BroadcastStatus.testing.value if b.stage == "test" else BroadcastStatus.running.value
    b.paused_reason = None
    b.health = None  # a fresh failure-rate window from the next tick: the failures so far are judged
    b.fed_at = None
    b.expanded_at = None  # an expansion stopped by the pause continues at the next tick
    audit(session, actor, "broadcast.resume", b)


def cancel(session: Session, b: Broadcast, actor: str, now: datetime | None = None) -> int:
    """Cancel the broadcast and every notification of it not sent yet; return how many."""
    now = now or utcnow()
    if b.status in FINAL:
        raise BroadcastError(f"this broadcast is {b.status} already")
    b.status = BroadcastStatus.canceled.value
    b.finished_at = now
    canceled = notifications.cancel_broadcast(session, b.id, f"broadcast canceled by {actor}", now)
    audit(session, actor, "broadcast.cancel", b, canceled=canceled)
    return canceled


def lock(session: Session, broadcast_id: int, *, skip_locked: bool = False) -> Broadcast | None:
    """The broadcast row, locked for this transaction on PostgreSQL (SQLite has one writer)."""
    stmt = select(Broadcast).where(Broadcast.id == broadcast_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=skip_locked)
    return session.scalars(stmt).first()


@dataclass(frozen=True)
class Progress:
    status: str
    stage: str | None
    sent: int
    failed: int
    pending: int
    canceled: int
    by_channel: dict[str, dict[str, int]]
    planned_messages: int | None
    paused_reason: str | None
    test_done: bool = False

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def progress(session: Session, b: Broadcast) -> Progress:
    """Live numbers from the notification rows (an index-only count on PostgreSQL)."""
    rows = session.execute(
        select(Notification.channel, Notification.status, func.count())
        .where(Notification.broadcast_id == b.id)
        .group_by(Notification.channel, Notification.status)
    ).all()
    by_channel: dict[str, dict[str, int]] = {}
    totals = {"sent": 0, "failed": 0, "pending": 0, "canceled": 0}
    for channel, status, n in rows:
        bucket = "pending" if status in (NotificationStatus.pending.value,
                                         NotificationStatus.processing.value) else status
        by_channel.setdefault(channel, {"sent": 0, "failed": 0, "pending": 0, "canceled": 0})[bucket] += n
        totals[bucket] += n
    return Progress(b.status, b.stage, totals["sent"], totals["failed"], totals["pending"], totals["canceled"],
                    by_channel, b.planned_messages, b.paused_reason, b.test_done_at is not None)


def start_from_event(session: Session, event: Any, now: datetime) -> Broadcast:
    """A CRM's ``mass_broadcast`` event becomes a running broadcast (no test stage: the CRM decided).

    Its recipients (or ``data.targeting``) are the selection; ``data`` is the
    template data.  Raises BroadcastError for what the event cannot mean (a
    template without a version for a channel): the event then fails, visibly.
    """
    data = dict(event.data or {})
    recipients, _unresolved = client_keys(event.recipients or [], session)  # an id naming no client reaches no one
    channels = data.get("channels") or [name for name, cls in CHANNELS.items() if cls.address_field]
    b = create(
        session, name=str(data.get("broadcast_name") or f"{data['template_code']} (event {event.id})"),
        template_code=str(data["template_code"]), channels=channels,
        category=str(data.get("category", Category.service.value)), targeting=data.get("targeting") or {},
        initiator=event.initiator or "system", data=data, client_ids=recipients or None, event_id=event.id,
    )
    whole = count(session, selection(b, stage="all"))
    b.planned_clients, b.planned_messages, b.planned_by_channel = whole.clients, whole.messages, whole.by_channel
    begin_stage(b, "all", now)
    b.status = BroadcastStatus.running.value
    b.expanded_at = now  # the handler's actor queues the expansion right after commit
    audit(session, b.initiator, "broadcast.start", b, event_id=event.id, **whole.to_json())
    return b
