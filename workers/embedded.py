"""The embedded stack: relay, workers and scheduler as threads of one process.

Used by ``vestnik demo`` and by the tests of the embedded mode: SQLite (or any
database), Dramatiq's in-process ``StubBroker`` with real ``Worker`` threads,
the real relay loop and the real maintenance functions.  Only the process
boundaries differ from production; every code path is the same.
"""

from __future__ import annotations

import logging
import threading

import dramatiq

from vestnik.shared.config import Settings
from vestnik.shared.models import utcnow
from vestnik.workers import app, broadcasting, scheduling
from vestnik.workers.channels.base import Channel

log = logging.getLogger("vestnik.embedded")


class EmbeddedStack:
    def __init__(
        self, settings: Settings, *, worker_threads: int = 4, channels: dict[str, Channel] | None = None
    ) -> None:
        if not settings.embedded:
            raise ValueError("the embedded stack needs VESTNIK_BROKER_URL=stub://")
        self.settings = settings
        self.broker = app.setup(settings, channels=channels)
        self.runtime = app.runtime()
        self.worker = dramatiq.Worker(self.broker, worker_threads=worker_threads, worker_timeout=100)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> EmbeddedStack:
        from vestnik.outbox.relay import Relay, build_publisher

        publisher = build_publisher(self.settings, broker=self.broker)
        relay = Relay(
            self.runtime.engine,
            publisher,
            batch_size=self.settings.relay_batch_size,
            poll_interval_s=min(self.settings.relay_poll_interval_s, 0.2),
            stop_event=self.stop_event,
        )
        from vestnik.workers.release import ReleaseLoop, delivery_hand_over

        releaser = ReleaseLoop(self.settings, self.runtime.factory,
                               delivery_hand_over(self.broker, self.runtime.channels), engine=self.runtime.engine)
        self.worker.start()
        self.threads = [
            threading.Thread(target=relay.run_forever, name="vestnik-relay", daemon=True),
            threading.Thread(target=releaser.run, args=(self.stop_event,), name="vestnik-release", daemon=True),
            threading.Thread(target=self._maintenance, name="vestnik-scheduler", daemon=True),
        ]
        for t in self.threads:
            t.start()
        return self

    def _maintenance(self) -> None:
        """The scheduler's periodic ticks, called directly (no Django in the embedded mode); due rows are
        released by the release loop's own thread, at their moment."""
        rt = self.runtime
        last_reap = 0.0
        while not self.stop_event.wait(min(self.settings.scheduler_tick_s, 0.5)):
            try:
                now = utcnow()
                broadcasting.drive(rt)
                if now.timestamp() - last_reap > 30:
                    scheduling.reap_stuck(rt.factory, now)
                    last_reap = now.timestamp()
            except Exception:  # noqa: BLE001 - keep ticking; the next tick retries
                log.exception("maintenance tick failed", extra={"action": "scheduler.tick_failed"})

    def join(self, timeout_s: float = 30.0) -> None:
        """Wait until every queue is empty (tests)."""
        for queue in sorted(self.broker.get_declared_queues()):
            self.broker.join(queue, timeout=int(timeout_s * 1000))
        self.worker.join()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)
        self.worker.stop()
        self.runtime.close()
        self.broker.close()

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
