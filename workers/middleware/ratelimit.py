"""Channel rate limits as Dramatiq middleware: a pump runs only when its channel has room.

Delivery messages wake a channel's pump (``options["channel"]``).  Before one
runs, the limiter is asked how many sends the channel could take within the
delivery horizon, and the answer rides in ``options["capacity"]``: the pump
claims no more rows than that (the limiter then grants the batch its slots
in one round trip, ``workers/delivery.py``).  If the channel has no room (its
limit is reached, or a 429 paused it), the message is re-enqueued with a
delay of exactly the wait and skipped: no database work is done for it, and
waiting never counts as an attempt nor burns Dramatiq's retries.  While one
wake waits for a channel in this process, further wakes of it are dropped:
the waiting one pumps them all.

Raising anything but ``SkipMessage`` here would be useless: Dramatiq logs
and swallows other exceptions from ``before_process_message``.

Waits longer than ``MAX_BROKER_DELAY_S`` (an email daily quota) are not held
in the broker (a delayed message sits unacked in a worker's memory and
RabbitMQ's consumer_timeout would requeue it): the message runs with
``options["defer_s"]`` and the pump moves the channel's due rows' ``send_at``
instead, for the scheduler to release later.
"""

from __future__ import annotations

import logging
import random
import threading
import time

import dramatiq
from dramatiq.middleware import Middleware, SkipMessage

from vestnik.workers import metrics
from vestnik.workers.limits import Limiter

log = logging.getLogger("vestnik.limits")

MAX_BROKER_DELAY_S = 60.0


def requeue_later(broker: dramatiq.Broker, message: dramatiq.Message, delay_s: float, **options: object) -> None:
    """The one rule for putting a message back to wait: same id, a delay, a little jitter."""
    jitter_ms = random.randint(0, 50)  # a crowd of waiting messages does not wake at the same millisecond
    broker.enqueue(message.copy(options=options), delay=int(delay_s * 1000) + jitter_ms)


class ChannelRateLimit(Middleware):
    def __init__(self, limiter: Limiter, *, batch_size: int = 100, horizon_s: float = 2.0) -> None:
        self.limiter = limiter
        self.batch_size = batch_size
        self.horizon_s = horizon_s
        self._lock = threading.Lock()
        self._waiting_until: dict[str, float] = {}  # channel -> when this process's waiting wake runs

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        channel = message.options.get("channel")
        if not channel:
            return
        try:
            free, wait_s = self.limiter.capacity(channel, horizon_s=self.horizon_s, most=self.batch_size)
        except Exception:  # noqa: BLE001 - a limiter bug must not let sends through
            log.exception("limiter failed; holding the message", extra={"action": "limiter.error"})
            free, wait_s = 0, 2.0
        if free > 0:
            message.options.pop("defer_s", None)
            message.options["capacity"] = free
            return
        metrics.limiter_wait(channel, wait_s)
        if wait_s > MAX_BROKER_DELAY_S:
            message.options["defer_s"] = wait_s  # the pump parks the channel's due rows in the database
            return
        now = time.monotonic()
        with self._lock:
            waiting = self._waiting_until.get(channel, 0.0)
            if now < waiting <= now + wait_s + 0.05:
                raise SkipMessage(f"{channel} limit: another wake of this channel is waiting")
            self._waiting_until[channel] = now + wait_s
        requeue_later(broker, message, wait_s, limiter_waits=int(message.options.get("limiter_waits", 0)) + 1)
        raise SkipMessage(f"{channel} limit: waiting {wait_s:.3f}s")
