"""handle_event: turn one committed outbox event into notification rows, once.

Idempotency comes from the outbox row itself: the handler locks it
(``FOR UPDATE`` on PostgreSQL; SQLite has one writer), does nothing when it is
already processed or failed, and marks it processed in the same transaction
that inserts the notifications.  A transport duplicate (relay crash after
publish, redelivery after a worker crash) therefore creates nothing twice;
the unique constraint on ``notifications`` is the second line of defence.

Events with the same key take effect in commit order (invariant 6):

- handlers of one key are serialised by a transaction-scoped advisory lock;
- an event whose earlier same-key event is not handled yet waits for it
  (:class:`PredecessorPending`, retried by Dramatiq) for up to
  ``PREDECESSOR_WAIT_S``, then goes ahead;
- an event that arrives after a later same-key *cancelling* event took effect
  is *superseded*: it is recorded and creates nothing, so a cancel that
  followed a reschedule stays cancelled.

Ids are taken before commit, so for same-key events id order equals commit
order only when the CRM serialises its writes about one entity (it locks the
lesson row it changes, as any CRM transaction does); docs/integration.md says so.

A bad payload marks the event failed with its reason (visible to admins) and
returns normally, so the queue moves on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared import client_view
from vestnik.shared.attachment_refs import ATTACHMENT_KEY
from vestnik.shared.client_ids import client_keys, lookup
from vestnik.shared.client_view import ClientView
from vestnik.shared.errors import EventValidationError, VestnikError
from vestnik.shared.events import canonical_event_type, validate_event
from vestnik.shared.models import (
    OutboxEvent,
    OutboxStatus,
    RuleOverride,
    utcnow,
)
from vestnik.workers import broadcasts, chats, notifications, quiet_hours
from vestnik.workers.channels.base import Channel
from vestnik.workers.rules import DEFAULT_RULES, Override, Planned, effective_rule, plan_event

log = logging.getLogger("vestnik.events")

#: How many unknown client ids an event keeps for its page (the count in the log is complete).
MAX_UNKNOWN_LISTED = 1000

#: How long an event waits for an earlier event with the same key (seconds).
PREDECESSOR_WAIT_S = 30.0


class PredecessorPending(VestnikError):
    """An earlier event with the same key is not handled yet; retry shortly."""


@dataclass
class HandleResult:
    event_id: int
    status: str
    #: (notification id, channel, address, send_at) of the rows created
    created: list[tuple[int, str, str | None, datetime | None]] = field(default_factory=list)
    canceled: int = 0
    error: str | None = None
    broadcast_id: int | None = None  # a mass_broadcast became this broadcast: expand it
    #: the recipients as this transaction read them (with their addresses): inline delivery reuses them
    clients: dict[int, ClientView] = field(default_factory=dict)


def _lock_key(session: Session, key: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def load_override(session: Session, event_type: str) -> Override | None:
    row = session.get(RuleOverride, event_type)
    if row is None:
        return None
    return Override(enabled=row.enabled, offsets_s=row.offsets or {}, attachments=row.attachments or {})


def handle_event(
    factory: sessionmaker[Session], channels: dict[str, Channel], event_id: int, *, now: datetime | None = None,
    default_zone: str = "UTC",
) -> HandleResult:
    """One event (a batch of one); raises :class:`PredecessorPending` while an earlier same-key
    event is not handled yet."""
    result = handle_events(factory, channels, [event_id], now=now, default_zone=default_zone)[0]
    if result.status == "waiting":
        raise PredecessorPending(result.error or "an earlier event with the same key is not handled yet")
    return result


def handle_events(
    factory: sessionmaker[Session], channels: dict[str, Channel], event_ids: list[int], *,
    now: datetime | None = None, default_zone: str = "UTC", policies: quiet_hours.PolicyCache | None = None,
) -> list[HandleResult]:
    """A batch of events in one transaction, in id order; one result per id (``waiting``: an
    earlier same-key event is not handled yet, nothing was done for this one).  ``policies``: a
    process's cache of the quiet-hours policies (the worker shares delivery's), else read here."""
    now = now or utcnow()
    with factory() as session, session.begin():
        stmt = select(OutboxEvent).where(OutboxEvent.id.in_(list(event_ids))).order_by(OutboxEvent.id)
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        events = {e.id: e for e in session.scalars(stmt)}
        # string ids (a UUID) of the whole batch in one query; integer ids need none (shared/client_ids.py)
        named = [e.recipients for e in events.values() if isinstance(e.recipients, list)]  # else: _handle fails it
        known = lookup(session, (r for recipients in named for r in recipients))
        wanted = {r for recipients in named for r in client_keys(recipients, known=known)[0]}
        # light read-only rows with their addresses, one Core query (not ORM objects with selectin addresses):
        # planning only reads them, and inline delivery reuses them
        clients = client_view.load(session, wanted)
        quiet = policies.get(session) if policies is not None else quiet_hours.load_policies(session)
        overrides: dict[str, Override | None] = {}  # per event type, read once per batch
        inserts = _Inserts()
        # Groups and channels that take some of these events (a staff alert): one small read per batch.
        posts_to = chats.subscribed(session, {canonical_event_type(e.event_type) for e in events.values()})
        results = []
        for event_id in sorted(set(event_ids)):
            event = events.get(event_id)
            if event is None:
                log.warning("event not found", extra={"action": "event.missing", "event_id": event_id})
                results.append(HandleResult(event_id, "missing"))
                continue
            try:
                results.append(_handle(session, channels, event, clients, now, quiet, default_zone, overrides,
                                       inserts, posts_to, known))
            except PredecessorPending as exc:
                results.append(HandleResult(event_id, "waiting", error=str(exc)))
        inserts.flush(session)
    for r in results:
        if r.status == "processed":
            log.info("event handled", extra={"action": "event.processed", "event_id": r.event_id,
                                             "notifications": len(r.created), "canceled": r.canceled})
    return results


def _handle(session: Session, channels: dict[str, Channel], event: OutboxEvent, clients_by_id: dict[int, ClientView],
            now: datetime, quiet: Any, default_zone: str,
            overrides: dict[str, Override | None] | None = None, inserts: _Inserts | None = None,
            posts_to: chats.Subscribed | None = None, known: dict[str, int] | None = None) -> HandleResult:
    """One event inside the batch's transaction (see the module docstring)."""
    event_id = event.id
    if inserts is None:
        inserts = _Inserts()
    if event.key or event.event_type == broadcasts.EVENT_TYPE:
        # What this event reads or cancels (same-key events, their rows) must see the batch's earlier rows.
        inserts.flush(session)
    if event.status in (OutboxStatus.processed.value, OutboxStatus.failed.value):
        log.info("event already handled", extra={"action": "event.duplicate", "event_id": event_id})
        return HandleResult(event_id, "duplicate")
    # a row written under a deprecated name before the entry points mapped it (or by hand): the new name
    event.event_type = canonical_event_type(event.event_type)
    try:
        validate_event(event.event_type, event.data, recipients=event.recipients)
    except EventValidationError as exc:
        return _fail(event, str(exc), now)

    canceled = 0
    if event.key:
        _lock_key(session, event.key)
        later = _later_handled(session, event)
        if later is not None:
            event.status = OutboxStatus.processed.value
            event.processed_at = now
            event.error = f"superseded by event {later} with the same key {event.key!r}; nothing created"
            log.info("event superseded", extra={"action": "event.superseded", "event_id": event.id})
            return HandleResult(event_id, "superseded", error=event.error)
        if _earlier_pending(session, event) and now - event.created_at < timedelta(seconds=PREDECESSOR_WAIT_S):
            raise PredecessorPending(f"event {event.id} waits for an earlier event with key {event.key!r}")

    if event.event_type == broadcasts.EVENT_TYPE:  # the broadcast machinery: paced, staged, cancelable
        try:
            b = broadcasts.start_from_event(session, event, now)
        except broadcasts.BroadcastError as exc:
            return _fail(event, f"broadcast could not start: {exc}", now)
        event.status = OutboxStatus.processed.value
        event.processed_at = now
        return HandleResult(event_id, "processed", broadcast_id=b.id)

    if overrides is None:
        overrides = {}
    if event.event_type not in overrides:  # a batch of one-recipient events would read it once per event
        overrides[event.event_type] = load_override(session, event.event_type)
    override = overrides[event.event_type]
    rule = effective_rule(event.event_type, override)
    if rule.cancels_key and event.key and rule.enabled:
        canceled = notifications.cancel_by_key(session, event.key,
                                               f"canceled by {event.event_type} (event {event.id})", now)

    recipients, unresolved = client_keys(event.recipients or [], session, known=known)
    clients = [clients_by_id[r] for r in recipients if r in clients_by_id]
    try:
        planned, skipped = plan_event(
            event.event_type, event.data, recipients, clients, channels,
            now=now, send_at=event.send_at, override=override, quiet=quiet, default_zone=default_zone,
        )
    except (KeyError, ValueError, ArithmeticError) as exc:  # a condition met a malformed payload
        return _fail(event, f"rule could not be applied: {type(exc).__name__}: {exc}", now)
    result = HandleResult(event_id, "processed", [], canceled, clients={c.id: c for c in clients})
    inserts.add(result, [_row(event, p, now, override) for p in planned]
                + chats.event_rows(event, rule, (posts_to or {}).get(event.event_type, ()), now))
    event.status = OutboxStatus.processed.value
    event.processed_at = now
    unknown = sorted({str(s.recipient_id) for s in skipped if s.reason == "unknown client"}  # integer ids
                     | {str(r) for r in unresolved})  # as given
    event.error = f"unknown clients: {unknown[:50]}" if unknown else None
    if unknown:  # counted by the dashboard and /metrics, listed on the event's page
        event.unknown_clients = unknown[:MAX_UNKNOWN_LISTED]
        log.warning("event names unknown clients", extra={"action": "event.unknown_clients",
                                                          "event_id": event.id, "count": len(unknown)})
    return result  # its rows are inserted with the batch's (``_Inserts``)


class _Inserts:
    """A batch's planned rows, inserted in one statement (one INSERT per event was most of a batch of
    one-recipient events); flushed before an event that reads or cancels rows and at the batch's end."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.results: dict[int, HandleResult] = {}

    def add(self, result: HandleResult, rows: list[dict[str, Any]]) -> None:
        self.results[result.event_id] = result
        self.rows += rows

    def flush(self, session: Session) -> None:
        if self.rows:
            for r in notifications.add_pending(session, self.rows):
                self.results[r.event_id].created.append((r.id, r.channel, r.address, r.send_at))
        self.rows, self.results = [], {}


def _fail(event: OutboxEvent, reason: str, now: datetime) -> HandleResult:
    event.status = OutboxStatus.failed.value
    event.error = reason
    event.processed_at = now
    log.warning("event rejected", extra={"action": "event.failed", "event_id": event.id, "reason": reason})
    return HandleResult(event.id, "failed", error=reason)


def _later_handled(session: Session, event: OutboxEvent) -> int | None:
    """A later same-key event that cancels the key and already took effect, if any.

    Only cancelling events supersede: a second enrolment in the same lesson
    does not make the first one wrong; a cancellation or a reschedule does.
    """
    cancelling = [name for name, rule in DEFAULT_RULES.items() if rule.cancels_key]
    return session.scalar(
        select(func.max(OutboxEvent.id)).where(
            OutboxEvent.key == event.key,
            OutboxEvent.id > event.id,
            OutboxEvent.event_type.in_(cancelling),
            OutboxEvent.status == OutboxStatus.processed.value,
            OutboxEvent.error.is_(None) | ~OutboxEvent.error.like("superseded%"),
        )
    )


def _earlier_pending(session: Session, event: OutboxEvent) -> bool:
    return (
        session.scalar(
            select(OutboxEvent.id).where(
                OutboxEvent.key == event.key,
                OutboxEvent.id < event.id,
                OutboxEvent.status.in_((OutboxStatus.pending.value, OutboxStatus.published.value)),
            ).limit(1)
        )
        is not None
    )


def _row(event: OutboxEvent, p: Planned, now: datetime, override: Override | None = None) -> dict[str, Any]:
    due_now = p.send_at is None or p.send_at <= now
    payload = event.data
    attached = override.attachments.get(p.step.split("@", 1)[0]) if override is not None else None
    if attached and not (payload or {}).get(ATTACHMENT_KEY):  # the admin's file for this step; the event's own wins
        payload = {**(payload or {}), ATTACHMENT_KEY: attached}
    return dict(
        recipient_id=p.recipient_id,
        channel=p.channel,
        recipient_address=p.address,
        event_type=event.event_type,
        template_code=p.template_code,
        payload_json=payload,
        category=p.category,
        locale=p.locale,
        send_at=p.send_at or now,
        expires_at=p.expires_at,
        step=p.step,
        key=event.key,
        event_id=event.id,
        initiator=event.initiator,
        # Rows due now are handed to delivery right after commit; mark them queued
        # so the scheduler re-drives them only if that hand-over never happened.
        queued_at=now if due_now else None,
        attempts=0,
        delivery_uncertain=False,
        created_at=now,
        updated_at=now,
    )


def mark_failed(factory: sessionmaker[Session], event_ids: list[int], reason: str, *,
                now: datetime | None = None) -> int:
    """Events whose handling failed on every try: failed, with the reason an admin reads (and may
    retry from the admin once the cause is fixed).  Only events not handled yet change."""
    now = now or utcnow()
    with factory() as session, session.begin():
        changed = session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(event_ids),
                   OutboxEvent.status.in_((OutboxStatus.pending.value, OutboxStatus.published.value)))
            .values(status=OutboxStatus.failed.value, error=reason[:2000], processed_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
    log.error("event failed on every try", extra={"action": "event.failed", "event_ids": event_ids[:50],
                                                   "reason": reason[:300]})
    return changed


def retry_failed(session: Session, event_ids: list[int]) -> int:
    """An admin's retry of failed events: pending again, so the relay publishes them once more."""
    return session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(event_ids), OutboxEvent.status == OutboxStatus.failed.value)
        .values(status=OutboxStatus.pending.value, error=None, processed_at=None, published_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
