"""``vestnik scheduler``: periodic maintenance messages through dramatiq-crontab.

This is the only module that imports Django: dramatiq-crontab reads
``django.conf.settings`` (time zone) at import time, so we configure a
minimal settings object here and nowhere else.

Only one scheduler is active: it holds a lock (a PostgreSQL advisory lock on
a dedicated connection; a file lock on SQLite).  Others wait as hot
standbys and take over when the holder's connection goes away.  What the
ticks do is in ``workers/scheduling.py``; they are safe to run twice anyway.

Due notifications are released by this process itself, at their moment:
while it holds the lock, a :class:`vestnik.workers.release.ReleaseLoop`
sleeps until the next due ``send_at`` (woken early by NOTIFY when a row is
planned sooner), with the tick as a safety net.  The periodic jobs
(broadcast pacing, reaping, outbox cleaning) go to the workers as messages.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from vestnik.shared import heartbeat
from vestnik.shared.config import Settings
from vestnik.shared.db import is_postgres, normalise_url

log = logging.getLogger("vestnik.scheduler")

LOCK_ID = 0x7665_7374  # "vest"


@contextmanager
def single_scheduler_lock(
    settings: Settings, stop: threading.Event, retry_s: float = 2.0
) -> Iterator[Callable[[], bool]]:
    """Block until this process is the one scheduler; hold the lock inside the block.

    Yields a check that says whether the lock is still held (the connection
    holding a PostgreSQL advisory lock may die; then another scheduler takes
    over and this one must stop).
    """
    if is_postgres(settings.database_url):
        import psycopg

        url = normalise_url(settings.database_url).replace("postgresql+psycopg://", "postgresql://")
        while not stop.is_set():
            try:
                conn = psycopg.connect(url, autocommit=True)
            except psycopg.OperationalError:
                log.warning("database unreachable; retrying", extra={"action": "scheduler.lock_wait"})
                stop.wait(retry_s)
                continue
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,)).fetchone()[0]:
                log.info("scheduler lock acquired", extra={"action": "scheduler.lock"})

                def still_held(conn: psycopg.Connection = conn) -> bool:
                    try:
                        conn.execute("SELECT 1")
                        return True
                    except psycopg.Error:
                        return False

                try:
                    yield still_held
                finally:
                    conn.close()
                return
            conn.close()
            heartbeat.beat("scheduler")  # a hot standby is healthy too
            log.info("another scheduler is active; standing by", extra={"action": "scheduler.standby"})
            stop.wait(retry_s)
        return
    path = settings.database_url.split("///", 1)[-1] + ".scheduler.lock"
    with open(path, "w") as fh:
        while not stop.is_set():
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                stop.wait(retry_s)
                continue
            yield lambda: True
            return


def _configure_django() -> None:
    from django.conf import settings as django_settings

    if not django_settings.configured:
        django_settings.configure(USE_TZ=True, TIME_ZONE="UTC", INSTALLED_APPS=[])


def main(settings: Settings) -> int:
    from vestnik.workers import app

    broker = app.setup(settings, component="scheduler")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    _configure_django()
    from dramatiq_crontab import cron, interval, scheduler

    from vestnik.workers.release import ReleaseLoop, delivery_hand_over

    rt = app.runtime()
    tick_s = max(1, int(settings.scheduler_tick_s))
    interval(seconds=tick_s)(broker.get_actor("drive_broadcasts"))  # paced hand-over of broadcasts
    # Reap at least twice per lease, so a dead worker's row waits at most ~1.5 leases.
    reap_s = max(1, min(30, int(settings.processing_lease_s // 2)))
    interval(seconds=reap_s)(broker.get_actor("reap_stuck_notifications"))
    cron("17 * * * *")(broker.get_actor("clean_outbox"))

    def supervise() -> None:
        """Tick only while holding the lock.  Losing it (its connection dropped: a database restart)
        pauses the ticks and makes this process a standby again, not a dead one."""
        from apscheduler.schedulers.base import STATE_STOPPED

        while scheduler.state == STATE_STOPPED and not stop.is_set():
            stop.wait(0.05)  # the main thread is starting the scheduler (paused)
        while not stop.is_set():
            with single_scheduler_lock(settings, stop) as still_held:
                if stop.is_set():
                    break
                scheduler.resume()
                halt = threading.Event()
                releaser = ReleaseLoop(settings, rt.factory, delivery_hand_over(broker, rt.channels), engine=rt.engine)
                release_thread = threading.Thread(target=releaser.run, args=(halt,), name="vestnik-release",
                                                  daemon=True)
                release_thread.start()
                log.info("scheduler running", extra={"action": "scheduler.start", "tick_s": settings.scheduler_tick_s,
                                                     "pid": os.getpid()})
                heartbeat.beat("scheduler")
                while not stop.wait(5):
                    heartbeat.beat("scheduler")
                    if not still_held():
                        log.error("scheduler lock lost; standing by", extra={"action": "scheduler.lock_lost"})
                        break
                halt.set()
                release_thread.join(timeout=30)
                scheduler.pause()
        scheduler.shutdown(wait=False)

    threading.Thread(target=supervise, name="vestnik-scheduler-lock", daemon=True).start()
    scheduler.start(paused=True)  # blocks until supervise() shuts it down
    broker.close()
    return 0
