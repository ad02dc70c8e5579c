"""Sending over a pool of provider connections: one connection per sending thread.

Each channel gets a :class:`SenderPool` of ``size`` threads per worker process
(``VESTNIK_TELEGRAM_CONNECTIONS``, ``VESTNIK_SMTP_CONNECTIONS``: real providers
limit simultaneous connections).  A channel keeps one connection per thread
(``threading.local``), so the threads never wait on each other's socket.

A send is handed over with its grant from the limiter: the thread waits for
the slot, and if it could not start before the deadline (the pool was busy,
the process was descheduled) it does not send at all: the row goes back
without an attempt, and no window at the provider holds more than the limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from vestnik.workers.channels.base import Channel, DeliveryError, RenderedMessage

log = logging.getLogger("vestnik.delivery")


@dataclass(frozen=True)
class Sent:
    """What one send came to; ``late``: its deadline passed first, so it was not sent (not an attempt)."""

    external_id: str | None = None
    error: DeliveryError | None = None
    late: bool = False


def send_one(channel: Channel, address: str, message: RenderedMessage, at: float | None,
             deadline: float | None, again: Callable[[], float | None] | None = None) -> Sent:
    """Wait for the slot ``at`` (monotonic), send unless ``deadline`` has passed, classify.

    A thread that woke too late (a loaded machine) asks ``again`` for a slot right now (one limiter
    round trip: the deadline of that one, returned, is then checked) before it gives the row back."""
    if at is not None:
        pause = at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    if deadline is not None and time.monotonic() > deadline:
        deadline = again() if again is not None else None
        if deadline is None or time.monotonic() > deadline:
            return Sent(late=True)
    try:
        return Sent(channel.send(address, message))
    except DeliveryError as exc:
        return Sent(error=exc)
    except Exception as exc:  # noqa: BLE001 - a bug mid-call: the provider may have the message
        log.exception("channel raised", extra={"action": "delivery.bug", "notification_id": message.notification_id})
        return Sent(error=DeliveryError.uncertain(f"unexpected error: {type(exc).__name__}"))


class SenderPool:
    """``size`` threads sending for one channel, each on its own provider connection."""

    def __init__(self, channel: Channel, size: int) -> None:
        self.channel = channel
        self.size = max(1, size)
        self._executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix=f"vestnik-send-{channel.name}")

    def submit(self, address: str, message: RenderedMessage, at: float | None, deadline: float | None,
               again: Callable[[], float | None] | None = None) -> Future[Sent]:
        return self._executor.submit(send_one, self.channel, address, message, at, deadline, again)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
