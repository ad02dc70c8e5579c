"""The Dramatiq actors.  Thin: each calls one function and hands on what it made.

Actors are declared on the broker given to :func:`declare` (never the
implicit global one).

- ``handle_events(event_ids)``: the relay's batch, in one transaction.  Its
  failures are infrastructure (a database restart) and the handler is
  idempotent, so Dramatiq retries it; a batch that fails is split into single
  events first, so one bad event cannot hold up the others.  An event whose
  handling fails ``VESTNIK_EVENT_MAX_RETRIES`` more times is marked failed
  with its reason (dashboard, metrics, the admin's retry), not left
  ``published`` while its message sits in the dead-letter queue.  A batch
  that leaves few due rows (``VESTNIK_DELIVERY_INLINE_ROWS``) sends them from
  this thread right after its commit (``_deliver_inline_all``); more wake pumps.
- ``pump_channel(channel)``: one delivery batch of a channel
  (``workers/delivery.py``).  Delivery keeps its own retry state in the
  database (``workers/retry.py``), so it has ``max_retries=0``; an exception
  there is a bug, and the reaper recovers the rows after their lease.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import dramatiq
from dramatiq.middleware import CurrentMessage

from vestnik.outbox.contract import EVENTS_QUEUE, HANDLE_EVENT, HANDLE_EVENTS, event_message
from vestnik.shared import faults, timeline
from vestnik.shared.client_view import ClientView
from vestnik.shared.models import utcnow
from vestnik.workers import broadcasting, handling, metrics, scheduling
from vestnik.workers.broker import (
    BROADCASTS_QUEUE,
    DELIVER,
    EXPAND_BROADCAST,
    MAINTENANCE_QUEUE,
    PUMP,
    delivery_queue,
    wake_channel,
)
from vestnik.workers.release import delivery_hand_over

if TYPE_CHECKING:
    from vestnik.workers.app import Runtime

log = logging.getLogger("vestnik.events")

#: below RabbitMQ's consumer_timeout (30 min) with a wide margin
TIME_LIMIT_MS = 5 * 60 * 1000
#: pumps woken per channel for one batch of new rows, at most (each full batch wakes the next)
MAX_WAKES = 8
#: a relay message that waited longer than this before its handling started wakes pumps even for few rows
INLINE_MAX_WAIT_S = 0.1
#: how long an event waits for an earlier event with the same key before it is looked at again
PREDECESSOR_RETRY_S = 1.0


def _deliver_inline_all(rt: Runtime, due: dict[str, list[int]], clients: dict[int, ClientView] | None = None) -> None:
    """Send a few rows handling has just committed from this thread, at once: a pump's wake-up would
    add a broker round trip, a limiter look and a claim that mostly finds the rows taken already.
    The rows of every channel go as one batch (one claim transaction, one record transaction per round;
    each channel keeps its own slots and pauses).  Rows the limiter holds back wait in the database and
    a delayed wake-up of their channel brings them; should this fail, a pump claims whatever is still
    pending (and the reaper what a crash left processing).  ``clients``: the recipients as handling
    read them, so delivery does not read them again."""
    started = timeline.ON and time.time()
    ids = [i for rows in due.values() for i in rows]
    try:
        result = rt.delivery.deliver_rows(ids, clients=clients)
    except Exception:  # noqa: BLE001 - the rows are committed: a pump takes them over
        log.exception("sending the new rows at once failed; a pump takes them", extra={
            "action": "event.inline_failed", "channel": ",".join(sorted(due)), "rows": len(ids)})
        for channel in due:
            wake_channel(rt.broker, channel)
        return
    if timeline.ON:
        for channel in due:
            timeline.mark("pump.done", [r.notification_id for r in result.results or [] if r.channel == channel],
                          enqueued=None, started=started, channel=channel)
    for channel, delay_s in result.wakes.items():
        wake_channel(rt.broker, channel, delay_s=delay_s)


def _behind(started: float) -> bool:
    """The message being handled waited longer than INLINE_MAX_WAIT_S before ``started``: handling is behind.
    Then pumps take the rows: they claim many events' rows at once, where sending each small batch from
    its handling thread would keep the backlog of small messages as small batches (more CPU per message
    just when the CPU is short).  Clocks of other hosts that disagree only move the choice between two
    correct paths."""
    enqueued = _enqueued_at()
    return enqueued is not None and started - enqueued > INLINE_MAX_WAIT_S


def _enqueued_at() -> float | None:
    """When the message being processed was enqueued (wall seconds), for the timeline."""
    current = CurrentMessage.get_current_message()
    return current.message_timestamp / 1000 if current is not None else None


def _retries_left(max_retries: int) -> int:
    current = CurrentMessage.get_current_message()
    done = int(current.options.get("retries", 0)) if current is not None else 0
    return max_retries - done


def declare(broker: dramatiq.Broker, get_runtime: Callable[[], Runtime]) -> dict[str, dramatiq.Actor]:
    max_event_retries = get_runtime().settings.event_max_retries

    def handle_events(event_ids: list[int]) -> None:
        rt = get_runtime()
        started = time.time()
        if timeline.ON:
            timeline.mark("handle.start", event_ids, enqueued=_enqueued_at())
        try:
            results = handling.handle_events(rt.factory, rt.channels, list(event_ids),
                                             default_zone=rt.settings.default_timezone, policies=rt.delivery.quiet)
        except Exception as exc:
            if len(event_ids) > 1:
                # One of them may be the cause: each goes on alone, with its own retries.
                log.warning("event batch failed; handling its events one by one", extra={
                    "action": "event.batch_split", "events": len(event_ids), "error": type(exc).__name__})
                for event_id in event_ids:
                    rt.broker.enqueue(event_message(event_id))
                return
            if _retries_left(max_event_retries) <= 0:
                handling.mark_failed(rt.factory, list(event_ids),
                                     f"handling failed {max_event_retries + 1} times: {type(exc).__name__}: {exc}")
                return  # recorded in the database (the truth): no dead letter to hunt for
            raise
        faults.hit("worker.after_handle_commit")
        timeline.mark("handle.committed", event_ids)
        due: dict[str, list[int]] = {}
        clients: dict[int, ClientView] = {}
        now = utcnow()
        for result in results:
            clients.update(result.clients)
            if result.status == "waiting":  # an earlier same-key event first: look again shortly
                rt.broker.enqueue(event_message(result.event_id), delay=int(PREDECESSOR_RETRY_S * 1000))
            if result.broadcast_id is not None:  # a CRM's mass_broadcast: the broadcast machinery takes it
                broadcasting.enqueue_expansion(rt.broker, result.broadcast_id)
            for notification_id, channel, _, send_at in result.created:
                if send_at is None or send_at <= now:
                    due.setdefault(channel, []).append(notification_id)
        if due and sum(len(ids) for ids in due.values()) <= rt.settings.delivery_inline_rows and not _behind(started):
            _deliver_inline_all(rt, due, clients)
        else:
            for channel, ids in due.items():
                wake_channel(rt.broker, channel, copies=min(MAX_WAKES, math.ceil(len(ids) / rt.delivery.batch_size)))
        timeline.mark("handle.woke", event_ids)

    def handle_event(event_id: int) -> None:
        handle_events([event_id])

    def pump_channel(channel: str) -> None:
        rt = get_runtime()
        current = CurrentMessage.get_current_message()
        options = current.options if current is not None else {}
        if options.get("defer_s"):
            rt.delivery.defer_channel(channel, float(options["defer_s"]))  # a long quota wait: the database keeps it
            return

        def more(full: bool) -> None:
            if full:  # more rows are due: the next pump claims while this one sends
                wake_channel(rt.broker, channel)

        started = timeline.ON and time.time()
        result = rt.delivery.pump(channel, limit=options.get("capacity"), on_claimed=more)
        if timeline.ON:
            timeline.mark("pump.done", [r.notification_id for r in result.results or []], enqueued=_enqueued_at(),
                          started=started, channel=channel)
        if result.wake_in_s is not None:
            wake_channel(rt.broker, channel, delay_s=result.wake_in_s)

    def deliver_notification(notification_id: int) -> None:
        """A row by id (messages queued by an older version): the same batch path, for one row."""
        rt = get_runtime()
        result = rt.delivery.deliver(notification_id)
        if result.requeue_in_s is not None and result.channel:
            wake_channel(rt.broker, result.channel, delay_s=result.requeue_in_s)

    def release_due_notifications() -> None:
        """Kept for messages an older scheduler queued; the scheduler now releases rows itself."""
        rt = get_runtime()
        released = scheduling.release_due(rt.factory, utcnow(), redrive_after_s=rt.settings.redrive_after_s)
        delivery_hand_over(rt.broker, rt.channels)(released)

    def reap_stuck_notifications() -> None:
        rt = get_runtime()
        metrics.reaped(*scheduling.reap_stuck(rt.factory, utcnow()))

    def clean_outbox() -> None:
        rt = get_runtime()
        scheduling.clean_outbox(rt.factory, utcnow(), keep_days=rt.settings.outbox_retention_days)

    def expand_broadcast(broadcast_id: int) -> None:
        broadcasting.run_expansion(get_runtime(), broadcast_id)

    def drive_broadcasts() -> None:
        broadcasting.drive(get_runtime())

    events = {"queue_name": EVENTS_QUEUE, "max_retries": max_event_retries, "min_backoff": 1000,
              "max_backoff": 60_000, "time_limit": TIME_LIMIT_MS}
    actors = {
        HANDLE_EVENTS: dramatiq.actor(handle_events, broker=broker, actor_name=HANDLE_EVENTS, **events),
        HANDLE_EVENT: dramatiq.actor(handle_event, broker=broker, actor_name=HANDLE_EVENT, **events),
        PUMP: dramatiq.actor(pump_channel, broker=broker, actor_name=PUMP, queue_name=delivery_queue("default"),
                             max_retries=0, time_limit=TIME_LIMIT_MS),
        DELIVER: dramatiq.actor(deliver_notification, broker=broker, actor_name=DELIVER,
                                queue_name=delivery_queue("default"), max_retries=0, time_limit=TIME_LIMIT_MS),
    }
    # Expansion has its own queue: a long one never delays the maintenance ticks.
    actors[EXPAND_BROADCAST] = dramatiq.actor(expand_broadcast, broker=broker, actor_name=EXPAND_BROADCAST,
                                              queue_name=BROADCASTS_QUEUE, max_retries=20, min_backoff=1000,
                                              max_backoff=30_000, time_limit=TIME_LIMIT_MS)
    for fn in (release_due_notifications, reap_stuck_notifications, clean_outbox, drive_broadcasts):
        actors[fn.__name__] = dramatiq.actor(fn, broker=broker, actor_name=fn.__name__,
                                             queue_name=MAINTENANCE_QUEUE, max_retries=0,
                                             time_limit=TIME_LIMIT_MS)
    # Delivery messages go to one queue per channel; declare them so workers consume them.
    for name in get_runtime().channels:
        broker.declare_queue(delivery_queue(name))
    return actors
