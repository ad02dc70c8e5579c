"""Channel rate limits as Dramatiq middleware.

Delivery messages carry ``options["channel"]`` and ``options["limit_key"]``
(a chat id).  Before such a message runs, the limiter is asked whether a slot
is free.  If not, the message is re-enqueued with a delay of exactly the wait
and skipped: waiting never counts as an attempt and never burns Dramatiq's
retries, and no database work is done for it.

This check only looks; the slot is taken by delivery right before the
provider call (``Limiter.acquire`` in ``workers/delivery.py``), so the claim
and render in between do not blur the spacing the provider sees.  Raising
anything but ``SkipMessage`` here would be useless: Dramatiq logs and swallows
other exceptions from ``before_process_message``.

Waits longer than ``MAX_BROKER_DELAY_S`` (an email daily quota) are not held
in the broker (a delayed message sits unacked in a worker's memory and
RabbitMQ's consumer_timeout would requeue it): the message runs with
``options["defer_s"]`` and delivery moves the row's ``send_at`` instead, for
the scheduler to release later.
"""

from __future__ import annotations

import logging
import random

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
    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        channel = message.options.get("channel")
        if not channel:
            return
        try:
            wait_s = self.limiter.acquire(channel, message.options.get("limit_key"), record=False)
        except Exception:  # noqa: BLE001 - a limiter bug must not let sends through
            log.exception("limiter failed; holding the message", extra={"action": "limiter.error"})
            wait_s = 2.0
        if wait_s <= 0:
            message.options.pop("defer_s", None)
            return
        metrics.limiter_wait(channel, wait_s)
        if wait_s > MAX_BROKER_DELAY_S:
            message.options["defer_s"] = wait_s  # delivery parks the row in the database
            return
        requeue_later(broker, message, wait_s, limiter_waits=int(message.options.get("limiter_waits", 0)) + 1)
        raise SkipMessage(f"{channel} limit: waiting {wait_s:.3f}s")
