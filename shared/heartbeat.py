"""Liveness of the processes that serve no HTTP: relay, workers, scheduler.

Each one touches a file (``VESTNIK_HEARTBEAT_DIR``/``<name>``) from its own
loop while it is making progress: the relay after every round, a worker while
its consumer and worker threads are alive, the scheduler on every lock check
(active or standing by).  ``vestnik health <name>`` exits 0 when the file is
fresh and 1 otherwise: the container's health check, or a supervisor's.
A file and not a port: nothing to bind or secure, and it works the same in
a container, under systemd and in the tests.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

DEFAULT_DIR = Path(tempfile.gettempdir()) / "vestnik-heartbeat"
NAMES = ("relay", "worker", "scheduler")


def directory() -> Path:
    return Path(os.environ.get("VESTNIK_HEARTBEAT_DIR") or DEFAULT_DIR)


#: a busy relay turns its loop many times a second; a beat a second is plenty for a check in minutes
MIN_INTERVAL_S = 1.0
_last: dict[str, float] = {}


def beat(name: str) -> None:
    """Record that ``name`` is alive now; never raises (a full disk must not stop the work)."""
    now = time.monotonic()
    if now - _last.get(name, -MIN_INTERVAL_S) < MIN_INTERVAL_S:
        return
    _last[name] = now
    try:
        path = directory()
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".{name}.{os.getpid()}"
        tmp.write_text(f"{time.time():.3f} {os.getpid()}\n")
        tmp.replace(path / name)  # atomic: a reader never sees half a file
    except OSError:
        pass


def age_s(name: str) -> float | None:
    """Seconds since the last beat, or None if there was none."""
    try:
        stamp = float((directory() / name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, time.time() - stamp)


def check(name: str, max_age_s: float) -> tuple[bool, str]:
    age = age_s(name)
    if age is None:
        return False, f"{name}: no heartbeat in {directory()}"
    if age > max_age_s:
        return False, f"{name}: last heartbeat {age:.0f} s ago (limit {max_age_s:.0f} s)"
    return True, f"{name}: alive ({age:.1f} s ago)"
