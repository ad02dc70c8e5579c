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
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, func, literal_column, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared import client_view
from vestnik.shared.attachment_refs import ATTACHMENT_KEY
from vestnik.shared.client_ids import client_keys, lookup
from vestnik.shared.client_view import ClientView
from vestnik.shared.db import json_rows, rows_version_sql
from vestnik.shared.errors import EventValidationError, VestnikError
from vestnik.shared.events import canonical_event_type, validate_event
from vestnik.shared.models import (
    OutboxEvent,
    OutboxStatus,
    RuleOverride,
    aware_iso,
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


_E = OutboxEvent.__table__
_R = RuleOverride.__table__


def load_override(session: Session, event_type: str) -> Override | None:
    """An admin's override of one rule, as handling applies it (None: the default rule).  The admin's
    pages read it through their session (and see what it holds); handling reads every override at
    once and keeps them (:class:`SettingsCache`)."""
    row = session.get(RuleOverride, event_type)
    return None if row is None else _override(row.enabled, row.offsets, row.attachments)


def _override(enabled: bool, offsets: dict[str, Any] | None, attachments: dict[str, Any] | None) -> Override:
    return Override(enabled=enabled, offsets_s=offsets or {}, attachments=attachments or {})


def _load_overrides(session: Session) -> dict[str, Override]:
    """Every override (an admin keeps a handful): one Core query."""
    return {r[0]: _override(*r[1:]) for r in session.execute(
        select(_R.c.event_type, _R.c.enabled, _R.c.offsets, _R.c.attachments))}


#: The identity and version of every override and chat row: any insert, update or delete (the admin's,
#: a send that found a chat gone, a hand-written UPDATE) gives another value.  Two uncorrelated scalar
#: subqueries (each runs once, an InitPlan), read with the batch's events (:data:`_READ_EVENTS_LOCKED`),
#: as delivery's template cache reads its version with its claim (``workers/delivery.py``).
_OVERRIDES_VERSION = literal_column(f"({rows_version_sql('rule_overrides', 'event_type')})", String)
_CHATS_VERSION = literal_column(f"({rows_version_sql('chats', 'id')})", String)


class SettingsCache:
    """The overrides and the chats' subscriptions a process read, kept while no such row changed.

    Read per batch they were two ORM queries, about a quarter of handling a one-recipient event.  Each
    batch reads their version with its events (in the batch's own transaction) and reads them again
    when it moved, so an admin's change is what the next batch applies.  Not on SQLite (the embedded
    mode): every batch reads them."""

    def __init__(self) -> None:
        #: (version, overrides, subscriptions), swapped as one (a worker's threads share it)
        self._state: tuple[Any, dict[str, Override], chats.Subscribed] = (None, {}, {})

    def current(self, session: Session, version: Any) -> tuple[dict[str, Override], chats.Subscribed]:
        """What holds at ``version`` (None: unknown, read them now and keep nothing)."""
        if version is None:
            return _load_overrides(session), chats.subscriptions(session)
        state = self._state
        if state[0] != version:
            state = self._state = (version, _load_overrides(session), chats.subscriptions(session))
        return state[1], state[2]


#: One cache per database (a process may talk to several: tests), dropped with its engine.
_SETTINGS: weakref.WeakKeyDictionary[Any, SettingsCache] = weakref.WeakKeyDictionary()


def _settings(session: Session, version: Any) -> tuple[dict[str, Override], chats.Subscribed]:
    bind = session.get_bind()
    cache = _SETTINGS.get(bind)
    if cache is None:
        cache = _SETTINGS.setdefault(bind, SettingsCache())
    return cache.current(session, version)


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


@dataclass
class _Event:
    """An outbox event as its batch read it (a Core row: no ORM object, no flush per event), and the
    outcome handling gives it, written for the whole batch by :class:`_Outcomes`."""

    id: int
    event_type: str
    recipients: Any
    data: Any
    key: str | None
    send_at: datetime | None
    initiator: str
    status: str
    error: str | None
    created_at: datetime
    processed_at: datetime | None
    #: what handling found, when it found unknown clients (None: the column keeps what it holds)
    unknown_clients: list[str] | None = None


_EVENT_COLUMNS = (_E.c.id, _E.c.event_type, _E.c.recipients, _E.c.data, _E.c.key, _E.c.send_at, _E.c.initiator,
                  _E.c.status, _E.c.error, _E.c.created_at, _E.c.processed_at)


#: Built once (building and keying a statement is a good part of a one-event batch's CPU).
_READ_EVENTS = select(*_EVENT_COLUMNS).where(_E.c.id.in_(bindparam("ids", expanding=True))).order_by(_E.c.id)
#: PostgreSQL: the events locked, with the version of the overrides and chats (:class:`SettingsCache`)
_READ_EVENTS_LOCKED = (select(*_EVENT_COLUMNS, _OVERRIDES_VERSION, _CHATS_VERSION)
                       .where(_E.c.id.in_(bindparam("ids", expanding=True))).order_by(_E.c.id)
                       .with_for_update(of=_E))


def _read_events(session: Session, event_ids: list[int]) -> tuple[dict[int, _Event], Any]:
    """The batch's events, locked (``FOR UPDATE`` on PostgreSQL; SQLite has one writer), and the
    version of the overrides and chats (None on SQLite, or when no event was found)."""
    if session.get_bind().dialect.name != "postgresql":
        return {r[0]: _Event(*r) for r in session.execute(_READ_EVENTS, {"ids": event_ids})}, None
    events, version = {}, None
    for r in session.execute(_READ_EVENTS_LOCKED, {"ids": event_ids}):
        events[r[0]] = _Event(*r[:-2])
        version = tuple(r[-2:])
    return events, version


def handle_events(
    factory: sessionmaker[Session], channels: dict[str, Channel], event_ids: list[int], *,
    now: datetime | None = None, default_zone: str = "UTC", policies: quiet_hours.PolicyCache | None = None,
) -> list[HandleResult]:
    """A batch of events in one transaction, in id order; one result per id (``waiting``: an
    earlier same-key event is not handled yet, nothing was done for this one).  ``policies``: a
    process's cache of the quiet-hours policies (the worker shares delivery's), else read here."""
    now = now or utcnow()
    with factory() as session, session.begin():
        events, version = _read_events(session, list(event_ids))
        # string ids (a UUID) of the whole batch in one query; integer ids need none (shared/client_ids.py)
        named = [e.recipients for e in events.values() if isinstance(e.recipients, list)]  # else: _handle fails it
        known = lookup(session, (r for recipients in named for r in recipients))
        wanted = {r for recipients in named for r in client_keys(recipients, known=known)[0]}
        # light read-only rows with their addresses, one Core query (not ORM objects with selectin addresses):
        # planning only reads them, and inline delivery reuses them
        clients = client_view.load(session, wanted)
        quiet = policies.get(session) if policies is not None else quiet_hours.load_policies(session)
        # The overrides and the groups and channels that take some events (a staff alert): the process's
        # copy while their version holds; none needed when no event was found.
        overrides, posts_to = _settings(session, version) if events else ({}, {})
        inserts, outcomes = _Inserts(), _Outcomes()
        results = []
        for event_id in sorted(set(event_ids)):
            event = events.get(event_id)
            if event is None:
                log.warning("event not found", extra={"action": "event.missing", "event_id": event_id})
                results.append(HandleResult(event_id, "missing"))
                continue
            try:
                results.append(_handle(session, channels, event, clients, now, quiet, default_zone, overrides,
                                       inserts, posts_to, known, outcomes))
            except PredecessorPending as exc:
                results.append(HandleResult(event_id, "waiting", error=str(exc)))
        inserts.flush(session)
        outcomes.flush(session)
    for r in results:
        if r.status == "processed":
            log.info("event handled", extra={"action": "event.processed", "event_id": r.event_id,
                                             "notifications": len(r.created), "canceled": r.canceled})
    return results


def _handle(session: Session, channels: dict[str, Channel], event: _Event, clients_by_id: dict[int, ClientView],
            now: datetime, quiet: Any, default_zone: str, overrides: dict[str, Override],
            inserts: _Inserts, posts_to: chats.Subscribed, known: dict[str, int], outcomes: _Outcomes
            ) -> HandleResult:
    """One event inside the batch's transaction (see the module docstring)."""
    event_id = event.id
    if event.key or event.event_type == broadcasts.EVENT_TYPE:
        # What this event reads or cancels (same-key events and their status, their rows) must see the
        # batch's earlier rows and outcomes.
        inserts.flush(session)
        outcomes.flush(session)
    if event.status in (OutboxStatus.processed.value, OutboxStatus.failed.value):
        log.info("event already handled", extra={"action": "event.duplicate", "event_id": event_id})
        return HandleResult(event_id, "duplicate")
    # a row written under a deprecated name before the entry points mapped it (or by hand): the new name
    canonical = canonical_event_type(event.event_type)
    if canonical != event.event_type:
        event.event_type = canonical
        outcomes.add(event)  # written even if the event waits for a predecessor below
    try:
        validate_event(event.event_type, event.data, recipients=event.recipients)
    except EventValidationError as exc:
        return _fail(event, str(exc), now, outcomes)

    canceled = 0
    if event.key:
        _lock_key(session, event.key)
        later = _later_handled(session, event)
        if later is not None:
            _finish(event, OutboxStatus.processed.value, now, outcomes,
                    f"superseded by event {later} with the same key {event.key!r}; nothing created")
            log.info("event superseded", extra={"action": "event.superseded", "event_id": event.id})
            return HandleResult(event_id, "superseded", error=event.error)
        if _earlier_pending(session, event) and now - event.created_at < timedelta(seconds=PREDECESSOR_WAIT_S):
            raise PredecessorPending(f"event {event.id} waits for an earlier event with key {event.key!r}")

    if event.event_type == broadcasts.EVENT_TYPE:  # the broadcast machinery: paced, staged, cancelable
        try:
            b = broadcasts.start_from_event(session, event, now)
        except broadcasts.BroadcastError as exc:
            return _fail(event, f"broadcast could not start: {exc}", now, outcomes)
        _finish(event, OutboxStatus.processed.value, now, outcomes, event.error)
        return HandleResult(event_id, "processed", broadcast_id=b.id)

    override = overrides.get(event.event_type)
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
        return _fail(event, f"rule could not be applied: {type(exc).__name__}: {exc}", now, outcomes)
    result = HandleResult(event_id, "processed", [], canceled, clients={c.id: c for c in clients})
    inserts.add(result, [_row(event, p, now, override) for p in planned]
                + chats.event_rows(event, rule, posts_to.get(event.event_type, ()), now))
    unknown = sorted({str(s.recipient_id) for s in skipped if s.reason == "unknown client"}  # integer ids
                     | {str(r) for r in unresolved})  # as given
    _finish(event, OutboxStatus.processed.value, now, outcomes, f"unknown clients: {unknown[:50]}" if unknown else None)
    if unknown:  # counted by the dashboard and /metrics, listed on the event's page
        event.unknown_clients = unknown[:MAX_UNKNOWN_LISTED]
        log.warning("event names unknown clients", extra={"action": "event.unknown_clients",
                                                          "event_id": event.id, "count": len(unknown)})
    return result  # its rows are inserted with the batch's (``_Inserts``)


def _finish(event: _Event, status: str, now: datetime, outcomes: _Outcomes, error: str | None) -> None:
    event.status, event.processed_at, event.error = status, now, error
    outcomes.add(event)


#: One statement for a batch's outcomes on PostgreSQL, whatever its size: the values travel as one JSON
#: document (psycopg dumps a list parameter in Python, element by element: six arrays cost more than the
#: UPDATE itself for a batch of one).  ``unknown`` null: the column keeps what it holds.
_WRITE_OUTCOMES = text(
    "UPDATE outbox_events AS e SET status = v.status, processed_at = v.processed_at, error = v.error, "
    "event_type = v.event_type, unknown_clients = coalesce(v.unknown, e.unknown_clients) "
    "FROM jsonb_to_recordset(CAST(:outcomes AS jsonb)) "
    "AS v(id bigint, status text, processed_at timestamptz, error text, event_type text, unknown jsonb) "
    "WHERE e.id = v.id")

_OUTCOME_VALUES = dict(status=bindparam("o_status"), processed_at=bindparam("o_processed_at"),
                       error=bindparam("o_error"), event_type=bindparam("o_event_type"))
#: SQLite (the embedded mode): one executemany per shape, with and without unknown clients
_WRITE_OUTCOME = update(_E).where(_E.c.id == bindparam("o_id")).values(**_OUTCOME_VALUES)
_WRITE_OUTCOME_UNKNOWN = update(_E).where(_E.c.id == bindparam("o_id")).values(
    **_OUTCOME_VALUES, unknown_clients=bindparam("o_unknown", type_=_E.c.unknown_clients.type))


class _Outcomes:
    """A batch's event outcomes (status, processed_at, error, unknown clients, a canonicalised type),
    written in one statement (the ORM wrote one UPDATE per event, and flushed before every query);
    flushed before an event that reads same-key events' status and at the batch's end."""

    def __init__(self) -> None:
        self.events: dict[int, _Event] = {}

    def add(self, event: _Event) -> None:
        self.events[event.id] = event

    def flush(self, session: Session) -> None:
        if not self.events:
            return
        events, self.events = list(self.events.values()), {}
        if session.get_bind().dialect.name == "postgresql":
            session.execute(_WRITE_OUTCOMES, {"outcomes": json_rows(
                {"id": e.id, "status": e.status, "error": e.error, "event_type": e.event_type,
                 "processed_at": aware_iso(e.processed_at), "unknown": e.unknown_clients} for e in events)})
            return
        for stmt, some in ((_WRITE_OUTCOME, [e for e in events if e.unknown_clients is None]),
                           (_WRITE_OUTCOME_UNKNOWN, [e for e in events if e.unknown_clients is not None])):
            if some:
                session.execute(stmt, [{"o_id": e.id, "o_status": e.status, "o_processed_at": e.processed_at,
                                        "o_error": e.error, "o_event_type": e.event_type,
                                        "o_unknown": e.unknown_clients} for e in some])


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


def _fail(event: _Event, reason: str, now: datetime, outcomes: _Outcomes) -> HandleResult:
    _finish(event, OutboxStatus.failed.value, now, outcomes, reason)
    log.warning("event rejected", extra={"action": "event.failed", "event_id": event.id, "reason": reason})
    return HandleResult(event.id, "failed", error=reason)


#: The event types whose rules cancel their key: only they supersede an earlier same-key event.
_CANCELLING = [name for name, rule in DEFAULT_RULES.items() if rule.cancels_key]

_LATER_HANDLED = select(func.max(_E.c.id)).where(
    _E.c.key == bindparam("key"),
    _E.c.id > bindparam("id"),
    _E.c.event_type.in_(_CANCELLING),
    _E.c.status == OutboxStatus.processed.value,
    _E.c.error.is_(None) | ~_E.c.error.like("superseded%"),
)
_EARLIER_PENDING = select(_E.c.id).where(
    _E.c.key == bindparam("key"),
    _E.c.id < bindparam("id"),
    _E.c.status.in_((OutboxStatus.pending.value, OutboxStatus.published.value)),
).limit(1)


def _later_handled(session: Session, event: _Event) -> int | None:
    """A later same-key event that cancels the key and already took effect, if any.

    Only cancelling events supersede: a second enrolment in the same lesson
    does not make the first one wrong; a cancellation or a reschedule does.
    """
    return session.scalar(_LATER_HANDLED, {"key": event.key, "id": event.id})


def _earlier_pending(session: Session, event: _Event) -> bool:
    return session.scalar(_EARLIER_PENDING, {"key": event.key, "id": event.id}) is not None


def _row(event: _Event, p: Planned, now: datetime, override: Override | None = None) -> dict[str, Any]:
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
