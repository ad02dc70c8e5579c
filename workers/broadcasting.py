"""Sending a broadcast: expansion into rows, paced hand-over to delivery, stages, health.

- **Expansion** (:func:`expand_batch`, the ``expand_broadcast`` actor) walks
  the selection in keyset order over ``clients.id``: each batch is one
  ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` per channel plus the moved
  cursor, in one transaction with the broadcast row locked.  Memory stays
  flat (no client is loaded into Python), a restart continues from the
  cursor, and the unique keys make a repeated batch create nothing twice.
  The rows are *held*: pending with ``send_at`` NULL, so neither delivery nor
  the scheduler's release picks them up.
- **Hand-over** (:func:`feed`, every scheduler tick and right after the first
  batch) moves held rows to delivery, per channel, only as many as the
  channel's limit can take in ``LOOKAHEAD_S`` seconds, minus those already in
  flight, enqueued k / rate seconds apart.  The limiter (``workers/limits.py``)
  still spaces the sends across all workers; the feeder only keeps the queues
  short, so pause takes effect within seconds and a 100,000-message broadcast
  never floods RabbitMQ.
- **Stages and health**: when a test stage has finished, a manual broadcast
  waits for the admin; an automatic one waits ``stage_wait_s`` and continues
  only if its failure rate is under the threshold.  While sending, the failure
  rate of a sliding window of finished messages is checked on every tick; a
  broadcast above its threshold pauses itself (audited as ``system``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import dramatiq
from sqlalchemy import BigInteger, Boolean, Integer, cast, func, literal, select
from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared.config import Settings
from vestnik.shared.models import AuditLog, Broadcast, BroadcastStatus, Client, Notification, NotificationStatus, utcnow
from vestnik.workers import broadcast_schedule, broadcasts, notifications, quiet_hours
from vestnik.workers.audience import address, client_conditions, reachable
from vestnik.workers.broadcasts import ACTIVE, EVENT_TYPE, STEP, lock, selection
from vestnik.workers.broker import BROADCASTS_QUEUE, EXPAND_BROADCAST, wake_channel
from vestnik.workers.limits import rules_for

if TYPE_CHECKING:
    from vestnik.workers.app import Runtime

log = logging.getLogger("vestnik.broadcasts")

BATCH_SIZE = 1000
#: keep this many seconds of a channel's limit queued for delivery, no more (measured: 2 s left the
#: channel idle while bounced messages waited; 3 s reaches 1.1x the theoretical minimum)
LOOKAHEAD_S = 3.0
#: the failure rate is judged on at least this many finished messages ...
MIN_SAMPLE = 20
#: ... and on windows of up to this many
WINDOW = 200
#: an expansion silent for this long is started again (it continues from its cursor)
EXPAND_STALE_S = 30.0

_NOTIFICATIONS = Notification.__table__


def pace_per_s(settings: Settings) -> dict[str, float]:
    """Each channel's burst rate (its shortest window's limit), from the limiter's own rules."""
    return {name: max(r.limit / r.window_s for r in rules.overall) for name, rules in rules_for(settings).items()
            if rules.overall}


# ------------------------------------------------------------------ expansion


@dataclass(frozen=True)
class Expanded:
    inserted: int
    done: bool


def _value(value: Any, column: str, dialect: str):
    """A typed constant for an INSERT ... SELECT (PostgreSQL needs the type; SQLite must not cast JSON)."""
    col = _NOTIFICATIONS.c[column]
    if dialect == "sqlite":
        return literal(value, type_=col.type)
    return cast(literal(value, type_=col.type), col.type)


def _insert_rows(session: Session, b: Broadcast, channel: str, conds: list, lo: int, hi: int, now: datetime) -> int:
    dialect = session.get_bind().dialect.name
    v = lambda value, column: _value(value, column, dialect)  # noqa: E731
    rows = (
        select(
            Client.id, v(channel, "channel"), address(channel), v(EVENT_TYPE, "event_type"),
            v(b.template_code, "template_code"), v(b.data or {}, "payload_json"),
            cast(literal(0), Integer), v(now, "created_at"),
            v(now, "updated_at"), v(b.initiator, "initiator"), v(b.category, "category"), Client.locale,
            v(f"broadcast:{b.id}", "key"), v(STEP, "step"), cast(literal(b.event_id), BigInteger),
            cast(literal(b.id), BigInteger), cast(literal(False), Boolean),
        )
        .where(*conds, reachable(channel), Client.id > lo, Client.id <= hi)
        .order_by(Client.id)  # lowest id first: it keeps a shared address (same rule as the count)
    )
    columns = ["recipient_id", "channel", "recipient_address", "event_type", "template_code", "payload_json",
               "attempts", "created_at", "updated_at", "initiator", "category", "locale", "key", "step",
               "event_id", "broadcast_id", "delivery_uncertain"]
    return notifications.add_pending_from(session, columns, rows)


def expand_batch(factory: sessionmaker[Session], broadcast_id: int, *, batch_size: int = BATCH_SIZE,
                 now: datetime | None = None) -> Expanded:
    """Create the rows of the next ``batch_size`` clients of the current stage; idempotent."""
    now = now or utcnow()
    with factory() as session, session.begin():
        b = lock(session, broadcast_id)
        if b is None or b.status not in ACTIVE or b.expand_done or b.stage is None:
            return Expanded(0, True)
        sel = selection(b)
        conds = client_conditions(sel) + broadcast_schedule.zone_condition(b)
        limit = batch_size
        if b.stage == "test" and not b.test_group:
            limit = min(limit, b.test_size - b.expanded_clients)
        upper, n = None, 0
        if limit > 0:
            ids = (select(Client.id).where(*conds, Client.id > b.expand_cursor)
                   .order_by(Client.id).limit(limit).subquery())
            upper, n = session.execute(select(func.max(ids.c.id), func.count())).one()
        if upper is None:
            b.expand_done = True
            b.expanded_at = now
            log.info("broadcast expanded", extra={"action": "broadcast.expanded", "broadcast_id": b.id,
                                                  "stage": b.stage})
            return Expanded(0, True)
        inserted = sum(_insert_rows(session, b, ch, conds, b.expand_cursor, upper, now) for ch in sel.channels)
        b.expand_cursor = upper
        b.expanded_clients += n
        b.expanded_at = now
        return Expanded(inserted, False)


# ------------------------------------------------------------------ hand-over, stages, health


@dataclass
class Fed:
    #: (notification id, channel, address) handed to delivery: enqueue each
    handed: list[tuple[int, str, str]] = field(default_factory=list)
    #: the expansion must be (re)started
    expand: bool = False


def _counts(session: Session, broadcast_id: int) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    by = {(ch, st): n for ch, st, n in session.execute(
        select(Notification.channel, Notification.status, func.count())
        .where(Notification.broadcast_id == broadcast_id)
        .group_by(Notification.channel, Notification.status))}
    held = dict(session.execute(
        select(Notification.channel, func.count())
        .where(Notification.broadcast_id == broadcast_id, Notification.status == NotificationStatus.pending.value,
               Notification.send_at.is_(None))
        .group_by(Notification.channel)).all())
    return by, held


def _due_pending(session: Session, broadcast_id: int, now: datetime) -> dict[str, int]:
    """Handed-over rows that are due (in a queue or the limiter's wait), per channel; rows waiting for
    their client's quiet hours to end are not in flight (index ix_notifications_broadcast_due)."""
    return dict(session.execute(
        select(Notification.channel, func.count())
        .where(Notification.broadcast_id == broadcast_id, Notification.status == NotificationStatus.pending.value,
               Notification.send_at.is_not(None), Notification.send_at <= now)
        .group_by(Notification.channel)).all())


def _hold_quiet(session: Session, b: Broadcast, handed: list[tuple[int, str, str]], now: datetime,
                default_zone: str) -> list[tuple[int, str, str]]:
    """Rows just handed over whose clients are inside their quiet hours wait for the end (the
    scheduler releases them then); returns the rows that may go now."""
    policies = quiet_hours.load_policies(session)
    policy = policies.get(b.category) or quiet_hours.DEFAULT_POLICIES.get(b.category)
    if not handed or policy is None or not policy.enabled:
        return handed
    ids = [h[0] for h in handed]
    terms = session.execute(
        select(Notification.id, Client.timezone, Client.quiet_hours_start_min, Client.quiet_hours_end_min)
        .join(Client, Client.id == Notification.recipient_id).where(Notification.id.in_(ids))).all()
    later: dict[int, datetime] = {}
    for nid, tz, start, end in terms:
        until = quiet_hours.hold_until(now, category=b.category, event_type=EVENT_TYPE,
                                       zone=quiet_hours.zone_of(tz, default_zone),
                                       own=quiet_hours.own_window(start, end), policies=policies)
        if until is not None:
            later[nid] = until
    if later:
        notifications.hold(session, later, now=now, reason=quiet_hours.REASON)
    return [h for h in handed if h[0] not in later]


#: a progress sample is taken this often (seconds); the rate is measured over the samples kept
SAMPLE_EVERY_S = 5.0
SAMPLES_KEPT = 25


def _sample(b: Broadcast, by: Mapping[tuple[str, str], int], now: datetime) -> None:
    """Keep the finished count per channel every few seconds: the rate and the estimated end read it."""
    ts = now.timestamp()
    samples = list(b.samples or [])
    if samples and ts - float(samples[-1][0]) < SAMPLE_EVERY_S:
        return
    finished: dict[str, int] = {}
    for (ch, st), n in by.items():
        if st in (NotificationStatus.sent.value, NotificationStatus.failed.value):
            finished[ch] = finished.get(ch, 0) + n
    samples.append([round(ts, 3), finished])
    b.samples = samples[-SAMPLES_KEPT:]


def _unhealthy(b: Broadcast, sent: int, failed: int) -> str | None:
    """Judge the failure rate of the messages finished since the last window; roll the window.

    No window yet (a new stage, a resume) starts one at the counts of now: failures from before
    (the test stage's, those that made it pause) are never judged twice.
    """
    if b.health is None:
        b.health = {"sent": sent, "failed": failed}
        return None
    base = b.health
    d_sent, d_failed = sent - int(base["sent"]), failed - int(base["failed"])
    window = d_sent + d_failed
    if window >= MIN_SAMPLE and d_failed / window > b.max_failure_rate:
        return (f"paused itself: {d_failed} of the last {window} messages failed "
                f"({d_failed / window:.0%} > {b.max_failure_rate:.0%})")
    if window >= WINDOW:
        b.health = {"sent": sent, "failed": failed}
    return None


def _hand_over(session: Session, broadcast_id: int, channel: str, room: int, now: datetime
               ) -> list[tuple[int, str, str]]:
    return [(r.id, r.channel, r.address) for r in notifications.hand_over(session, broadcast_id, channel, room, now)]


def _system_audit(session: Session, action: str, b: Broadcast, **details: Any) -> None:
    session.add(AuditLog(actor="system", action=action, object_type="broadcast", object_id=str(b.id),
                         details={"status": b.status, **details}))


def _stage_finished(session: Session, b: Broadcast, sent: int, failed: int, now: datetime) -> Fed:
    if b.stage == "all":
        b.status = BroadcastStatus.completed.value
        b.finished_at = now
        _system_audit(session, "broadcast.completed", b, sent=sent, failed=failed)
        log.info("broadcast completed", extra={"action": "broadcast.completed", "broadcast_id": b.id,
                                               "sent": sent, "failed": failed})
        return Fed()
    if b.test_done_at is None:
        b.test_done_at = now
        _system_audit(session, "broadcast.test_done", b, sent=sent, failed=failed)
        whole, _ = broadcasts.counts(session, b)
        if whole.messages == 0:
            # The test stage reached the whole selection: there is no "everyone" left to confirm.
            b.status = BroadcastStatus.completed.value
            b.finished_at = now
            _system_audit(session, "broadcast.completed", b, sent=sent, failed=failed,
                          note="the test stage reached the whole selection")
            return Fed()
    if b.mode != "auto" or b.planned_messages is None:
        return Fed()  # the admin looks at the test and decides (auto goes on only after a confirmed start)
    finished = sent + failed
    if finished and failed / finished > b.max_failure_rate:
        broadcasts.pause(session, b, "system", f"paused itself after the test stage: {failed} of {finished} "
                                               f"failed ({failed / finished:.0%} > {b.max_failure_rate:.0%})")
        return Fed()
    if now - b.test_done_at < timedelta(seconds=b.stage_wait_s):
        return Fed()
    broadcasts.begin_stage(b, "all", now)
    b.status = BroadcastStatus.running.value
    b.expanded_at = now
    _system_audit(session, "broadcast.continue", b, test_sent=sent, test_failed=failed)
    return Fed(expand=True)


def feed(factory: sessionmaker[Session], broadcast_id: int, pace: Mapping[str, float], *,
         now: datetime | None = None, lookahead_s: float = LOOKAHEAD_S, default_zone: str = "UTC") -> Fed:
    """One tick of a sending broadcast: health, stage end, waves, and the paced hand-over."""
    now = now or utcnow()
    with factory() as session, session.begin():
        b = lock(session, broadcast_id, skip_locked=True)  # another tick has it: it does the work
        if b is None or b.status not in ACTIVE:
            return Fed()
        by, held = _counts(session, b.id)
        sent = sum(n for (_, st), n in by.items() if st == NotificationStatus.sent.value)
        failed = sum(n for (_, st), n in by.items() if st == NotificationStatus.failed.value)
        reason = _unhealthy(b, sent, failed)
        if reason:
            broadcasts.pause(session, b, "system", reason)
            log.warning("broadcast paused itself", extra={"action": "broadcast.auto_pause", "broadcast_id": b.id,
                                                          "reason": reason})
            return Fed()
        _sample(b, by, now)
        live = {ch: by.get((ch, NotificationStatus.pending.value), 0) + by.get((ch, NotificationStatus.processing
                                                                                  .value), 0)
                for ch in b.channels}
        waves = "done"
        if b.expand_done and b.stage == "all":
            waves = broadcast_schedule.next_pass(session, b, now)
            if waves == "started":
                return Fed(expand=True)
        if b.expand_done and waves == "done" and not any(live.values()):
            return _stage_finished(session, b, sent, failed, now)
        out = Fed()
        due = _due_pending(session, b.id, now)
        # Keep ``lookahead_s`` of the channel's limit in flight: enough to cover the limiter's waits
        # and a tick, few enough that the queues stay short and a pause takes effect within seconds.
        for ch in b.channels:
            rate = pace.get(ch, 1.0)
            in_flight = due.get(ch, 0) + by.get((ch, NotificationStatus.processing.value), 0)
            room = max(1, math.ceil(rate * lookahead_s)) - in_flight
            if room > 0 and held.get(ch, 0):
                out.handed += _hand_over(session, b.id, ch, room, now)
        out.handed = _hold_quiet(session, b, out.handed, now, default_zone)
        b.fed_at = now
        stale = b.expanded_at is None or now - b.expanded_at > timedelta(seconds=EXPAND_STALE_S)
        if not b.expand_done and stale:
            b.expanded_at = now  # claimed: the next ticks do not start another one
            out.expand = True
        return out


def active_ids(factory: sessionmaker[Session]) -> list[int]:
    with factory() as session:
        return list(session.scalars(select(Broadcast.id).where(Broadcast.status.in_(ACTIVE)).order_by(Broadcast.id)))


# ------------------------------------------------------------------ what the actors run


def hand_to_delivery(rt: Runtime, handed: list[tuple[int, str, str]], pace: Mapping[str, float]) -> None:
    """Wake the pumps of the channels whose held rows were just made due: they claim them from the
    database, as many as the channel's limit grants slots for (``workers/limits.py``)."""
    for channel in sorted({ch for _, ch, _ in handed}):
        wake_channel(rt.broker, channel)


def enqueue_expansion(broker: dramatiq.Broker, broadcast_id: int) -> None:
    broker.enqueue(dramatiq.Message(queue_name=BROADCASTS_QUEUE, actor_name=EXPAND_BROADCAST,
                                    args=(broadcast_id,), kwargs={}, options={}))


def run_expansion(rt: Runtime, broadcast_id: int, *, budget_s: float = 60.0, batch_size: int = BATCH_SIZE) -> None:
    """Expand batch after batch; the first batch goes to delivery at once.  After ``budget_s``
    the actor hands over to a fresh message (well inside the actor's time limit)."""
    deadline = time.monotonic() + budget_s
    pace = pace_per_s(rt.settings)
    first = True
    while True:
        step = expand_batch(rt.factory, broadcast_id, batch_size=batch_size)
        if (first and step.inserted) or step.done:
            fed = feed(rt.factory, broadcast_id, pace, default_zone=rt.settings.default_timezone)
            hand_to_delivery(rt, fed.handed, pace)
            if fed.expand:  # the next wave's zones are due already: their pass follows at once
                enqueue_expansion(rt.broker, broadcast_id)
                return
            first = False
        if step.done:
            return
        if time.monotonic() > deadline:
            enqueue_expansion(rt.broker, broadcast_id)
            return


def start_scheduled(factory: sessionmaker[Session], now: datetime | None = None) -> list[int]:
    """Start every scheduled broadcast whose first moment has come; returns their ids."""
    now = now or utcnow()
    started = []
    with factory() as session:
        due = broadcast_schedule.due_ids(session, now)
    for broadcast_id in due:
        with factory() as session, session.begin():
            b = lock(session, broadcast_id, skip_locked=True)
            if b is not None and broadcast_schedule.start(session, b, now):
                started.append(broadcast_id)
                log.info("scheduled broadcast started", extra={"action": "broadcast.scheduled_start",
                                                               "broadcast_id": broadcast_id})
    return started


def drive(rt: Runtime) -> None:
    """The scheduler's tick: start scheduled broadcasts whose time has come, feed every sending
    broadcast, restart stalled expansions."""
    pace = pace_per_s(rt.settings)
    for broadcast_id in start_scheduled(rt.factory):
        enqueue_expansion(rt.broker, broadcast_id)
    for broadcast_id in active_ids(rt.factory):
        fed = feed(rt.factory, broadcast_id, pace, default_zone=rt.settings.default_timezone)
        hand_to_delivery(rt, fed.handed, pace)
        if fed.expand:
            enqueue_expansion(rt.broker, broadcast_id)
