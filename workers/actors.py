"""The Dramatiq actors.  Thin: each calls one function and hands on what it made.

Actors are declared on the broker given to :func:`declare` (never the
implicit global one).  Retries: delivery keeps its own retry state in the
database (``workers/retry.py``), so its actor has ``max_retries=0``; an
exception there is a bug, and the reaper recovers the row after its lease.
``handle_event`` lets Dramatiq retry, since its failures are infrastructure
(a database restart) and the handler is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import dramatiq
from dramatiq.middleware import CurrentMessage

from vestnik.outbox.contract import EVENTS_QUEUE, HANDLE_EVENT
from vestnik.shared import faults
from vestnik.shared.models import utcnow
from vestnik.workers import broadcasting, metrics, scheduling
from vestnik.workers.broker import (
    BROADCASTS_QUEUE,
    DELIVER,
    EXPAND_BROADCAST,
    MAINTENANCE_QUEUE,
    delivery_queue,
    enqueue_delivery,
)
from vestnik.workers.handling import PredecessorPending
from vestnik.workers.handling import handle_event as handle
from vestnik.workers.release import delivery_hand_over

if TYPE_CHECKING:
    from vestnik.workers.app import Runtime

#: below RabbitMQ's consumer_timeout (30 min) with a wide margin
TIME_LIMIT_MS = 5 * 60 * 1000


def declare(broker: dramatiq.Broker, get_runtime: Callable[[], Runtime]) -> dict[str, dramatiq.Actor]:
    def handle_event(event_id: int) -> None:
        rt = get_runtime()
        try:
            result = handle(rt.factory, rt.channels, event_id, default_zone=rt.settings.default_timezone)
        except PredecessorPending as exc:
            raise dramatiq.Retry(str(exc), delay=1000) from None  # not an error: wait for the earlier event
        faults.hit("worker.after_handle_commit")
        if result.broadcast_id is not None:  # a CRM's mass_broadcast: the broadcast machinery takes it
            broadcasting.enqueue_expansion(rt.broker, result.broadcast_id)
        now = utcnow()
        for notification_id, channel, address, send_at in result.created:
            if send_at is None or send_at <= now:
                ch = rt.channels[channel]
                enqueue_delivery(rt.broker, notification_id, channel, ch.limit_key(address or ""))

    def deliver_notification(notification_id: int) -> None:
        rt = get_runtime()
        current = CurrentMessage.get_current_message()
        defer_s = current.options.get("defer_s") if current is not None else None
        if defer_s:
            rt.delivery.defer(notification_id, float(defer_s))  # a long quota wait: the database keeps it
            return
        result = rt.delivery.deliver(notification_id)
        if result.requeue_in_s is not None and result.channel:
            enqueue_delivery(rt.broker, notification_id, result.channel, result.limit_key,
                             delay_s=result.requeue_in_s)

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

    actors = {
        HANDLE_EVENT: dramatiq.actor(handle_event, broker=broker, actor_name=HANDLE_EVENT,
                                     queue_name=EVENTS_QUEUE, max_retries=20, min_backoff=1000,
                                     max_backoff=60_000, time_limit=TIME_LIMIT_MS),
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
