"""Sending over a pool of provider connections: one connection per sending thread.

Each channel gets a :class:`SenderPool` of ``size`` threads per worker process
(``VESTNIK_TELEGRAM_CONNECTIONS``, ``VESTNIK_SMTP_CONNECTIONS``: real providers
limit simultaneous connections).  A channel keeps one connection per thread
(``threading.local``), so the threads never wait on each other's socket.

A send is handed over once the limiter's gate let it begin (``Limiter.begin``,
in the batch's thread): the sending thread waits for its slot, sends, and notes
when the answer came (``Sent.done``), which the batch reports to the limiter
(``Limiter.end``): the send counts against every window until then plus the
window, however late the thread ran.
"""

from __future__ import annotations

import collections
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from vestnik.workers.channels.base import Channel, DeliveryError, Outcome, RenderedMessage

log = logging.getLogger("vestnik.delivery")


@dataclass(frozen=True)
class Sent:
    """What one send came to; ``late``: the limiter's gate did not let it begin in time, so it was not
    sent (not an attempt); ``done``: when its answer came (monotonic), None when it may not be over (an
    answer never came: the provider may still take it)."""

    external_id: str | None = None
    error: DeliveryError | None = None
    late: bool = False
    done: float | None = None


def send_one(channel: Channel, address: str, message: RenderedMessage, at: float | None = None) -> Sent:
    """Wait for the slot ``at`` (monotonic), send, classify; the limiter's gate was passed before."""
    if at is not None:
        pause = at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    try:
        return Sent(channel.send(address, message), done=time.monotonic())
    except DeliveryError as exc:
        return Sent(error=exc, done=None if exc.outcome is Outcome.uncertain else time.monotonic())
    except Exception as exc:  # noqa: BLE001 - a bug mid-call: the provider may have the message
        log.exception("channel raised", extra={"action": "delivery.bug", "notification_id": message.notification_id})
        return Sent(error=DeliveryError.uncertain(f"unexpected error: {type(exc).__name__}"))


class SenderPool:
    """``size`` threads sending for one channel, each on its own provider connection."""

    def __init__(self, channel: Channel, size: int) -> None:
        self.channel = channel
        self.size = max(1, size)
        self._executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix=f"vestnik-send-{channel.name}")

    def submit(self, address: str, message: RenderedMessage, at: float | None) -> Future[Sent]:
        return self._executor.submit(send_one, self.channel, address, message, at)

    def submit_all(self, jobs: list[tuple[str, RenderedMessage, float | None]]) -> list[Future[Sent]]:
        """Sends that passed the gate together: one task per thread (at most ``size``) takes them in
        turn from a shared queue, earliest first, so a slow send holds up only its own thread.  A
        hundred sends wake four threads, not a hundred hand-overs (each a lock, a wake-up and the
        GIL changing hands)."""
        if len(jobs) == 1:
            return [self.submit(*jobs[0])]
        futures: list[Future[Sent]] = [Future() for _ in jobs]
        queue = collections.deque(zip(jobs, futures, strict=True))

        def take_turns() -> None:
            while True:
                try:
                    (address, message, at), future = queue.popleft()
                except IndexError:
                    return
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(send_one(self.channel, address, message, at))
                except BaseException as exc:  # a thread that dies must not leave its send unanswered
                    future.set_exception(exc)
                    raise

        for _ in range(min(self.size, len(jobs))):
            self._executor.submit(take_turns)
        return futures

    def close(self) -> None:
        self._executor.shutdown(wait=True)
