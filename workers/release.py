"""Releasing scheduled notifications at their moment, not at the next tick.

The one active scheduler (``vestnik scheduler``, or the embedded stack's
thread) runs a :class:`ReleaseLoop` while it holds the scheduler lock.  Each
wake costs one indexed query, :func:`vestnik.workers.scheduling.next_due`
(the earliest ``send_at`` that ``release_due`` would take).  If that moment
has come, the due rows are released and handed to delivery at once, then it
asks again; if not, the loop sleeps until the earliest of:

- that ``send_at``;
- a PostgreSQL ``NOTIFY vestnik_scheduler``, sent at commit when a row is
  planned for later or moved (a trigger, migration 0005): a row planned
  earlier than the moment the loop sleeps towards wakes it;
- the safety-net tick, ``VESTNIK_SCHEDULER_TICK_S``: NOTIFY is lost while
  the listener is away, so it is a hint and this poll is the truth.  The
  tick also re-drives rows handed over long ago and never taken
  (``VESTNIK_REDRIVE_AFTER_S``), whose moment no query predicts.

Several schedulers still release each row once: only the lock holder runs
this loop, and ``release_due`` itself takes only rows it can lock
(``SKIP LOCKED``) and moves their ``queued_at`` forward.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared.config import Settings
from vestnik.shared.db import is_postgres
from vestnik.shared.models import utcnow
from vestnik.workers import scheduling
from vestnik.workers.scheduling import Released

log = logging.getLogger("vestnik.scheduler")

NOTIFY_CHANNEL = "vestnik_scheduler"  # migrations/versions/0005: the trigger's channel
#: a wait is cut into slices this long, so a stop is noticed while sleeping towards a far moment
_SLICE_S = 0.5
#: when the query says rows are due but none could be taken (another scheduler holds their locks)
_BUSY_PAUSE_S = 0.05


class ReleaseLoop:
    """See the module docstring.  ``hand_over`` gets each batch of released rows (enqueue them)."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session], hand_over: Callable[[list[Released]], None],
                 *, engine: Engine | None = None, listen: bool | None = None) -> None:
        self.settings = settings
        self.factory = factory
        self.hand_over = hand_over
        self.tick_s = max(0.05, settings.scheduler_tick_s)
        use_listener = is_postgres(settings.database_url) if listen is None else listen
        self.listener = None
        if use_listener and engine is not None:
            from vestnik.outbox.relay import _Listener

            self.listener = _Listener(engine, channel=NOTIFY_CHANNEL, component="scheduler")
        self.wakes = 0  # queries made: one per wake (tests and the idle-cost check read it)
        self.released = 0
        self.notify_wakeups = 0

    def step(self, now: datetime | None = None) -> float:
        """One wake: release what is due; return the seconds to sleep before the next wake."""
        redrive_s = self.settings.redrive_after_s
        while True:
            now = utcnow() if now is None else now
            self.wakes += 1
            due = scheduling.next_due(self.factory, now, redrive_after_s=redrive_s)
            if due is None or due > now:
                until_due = float("inf") if due is None else (due - now).total_seconds()
                return min(until_due, self.tick_s)
            rows = scheduling.release_due(self.factory, now, redrive_after_s=redrive_s)
            if rows:
                self.hand_over(rows)
                self.released += len(rows)
                log.debug("released", extra={"action": "scheduler.released", "count": len(rows)})
            else:
                return _BUSY_PAUSE_S  # due, yet locked by someone else (or expired and canceled): look again soon
            now = None  # more may be due (a batch is at most release_due's limit)

    def run(self, halt: threading.Event) -> None:
        """Wake, release, sleep, until ``halt`` is set.  Errors are logged and retried at the tick."""
        while not halt.is_set():
            if self.listener is not None:
                # LISTEN before the query: a row committed after it is then heard while sleeping.
                self.listener.ensure_open()
            try:
                sleep_s = self.step()
            except Exception:  # noqa: BLE001 - a database outage: the tick retries
                log.exception("releasing due notifications failed", extra={"action": "scheduler.release_failed"})
                sleep_s = self.tick_s
            self._sleep(sleep_s, halt)
        if self.listener is not None:
            self.listener.close()

    def _sleep(self, seconds: float, halt: threading.Event) -> None:
        """Until ``seconds`` have passed, a NOTIFY came, or ``halt`` is set."""
        deadline = time.monotonic() + seconds
        while not halt.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.listener is not None and self.listener.is_open:
                if self.listener.wait(min(left, _SLICE_S)):
                    self.notify_wakeups += 1
                    return
            else:
                halt.wait(min(left, _SLICE_S))


def delivery_hand_over(broker, channels) -> Callable[[list[Released]], None]:  # noqa: ANN001 - dramatiq types
    """Wake the pumps of the channels that have released rows (one wake a channel: the pump claims
    the rows from the database, a full batch wakes the next)."""
    from vestnik.workers.broker import wake_channel

    def hand_over(rows: list[Released]) -> None:
        for channel in sorted({r.channel for r in rows}):
            wake_channel(broker, channel)

    return hand_over
