"""Worker liveness: beat ``vestnik.shared.heartbeat`` while the worker's threads live.

A worker process whose consumer (broker connection) or worker threads died
stops beating, so ``vestnik health worker`` fails and the supervisor
restarts it.
"""

from __future__ import annotations

import threading
from typing import Any

from dramatiq.middleware import Middleware

from vestnik.shared import heartbeat

INTERVAL_S = 10.0


class Heartbeat(Middleware):
    def __init__(self, name: str = "worker", interval_s: float = INTERVAL_S) -> None:
        self.name = name
        self.interval_s = interval_s
        self._stop = threading.Event()

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        self._stop.clear()
        threading.Thread(target=self._run, args=(worker,), name="vestnik-heartbeat", daemon=True).start()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self._stop.set()

    def _run(self, worker: Any) -> None:
        while True:
            threads = [*getattr(worker, "consumers", {}).values(), *getattr(worker, "workers", [])]
            if threads and all(t.is_alive() for t in threads):
                heartbeat.beat(self.name)
            if self._stop.wait(self.interval_s):
                return
