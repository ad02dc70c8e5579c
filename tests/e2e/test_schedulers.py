"""Two schedulers started at once: one is active, each due row is released and
sent once; when the active one is killed, the standby takes over."""

from __future__ import annotations

import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.processes import vestnik, wait_until
from vestnik.outbox import emit
from vestnik.shared.models import Notification

pytestmark = pytest.mark.slow


def emit_due_soon(stack, first: int, count: int, after_s: float) -> None:
    """``count`` scheduled cancellation notices for Вера (Telegram only), due ``after_s`` from now."""
    send_at = datetime.now(UTC) + timedelta(seconds=after_s)
    with stack.factory() as s:
        for n in range(first, first + count):
            emit(s, "lesson_cancelled", recipients=[3], send_at=send_at,
                 data={"lesson_title": f"Группа {n}", "starts_at": "2026-12-25T16:00:00+03:00"})
        s.commit()


def holder(schedulers) -> int | None:
    running = [i for i, p in enumerate(schedulers) if "scheduler running" in p.output()]
    assert len(running) <= 1, "two schedulers active at once"
    return running[0] if running else None


def test_two_schedulers_release_each_row_once_and_the_standby_takes_over(stack, bot_api):
    env = {**stack.env, "VESTNIK_TELEGRAM_CHAT_RATE_PER_S": "1000", "VESTNIK_LOG_LEVEL": "INFO"}
    schedulers = [vestnik(f"scheduler-{i}", "scheduler", env=env, log_dir=stack.log_dir) for i in range(2)]
    others = [vestnik("relay", "relay", env=env, log_dir=stack.log_dir),
              vestnik("worker", "worker", "--processes", "1", "--threads", "4", env=env, log_dir=stack.log_dir)]
    try:
        wait_until(lambda: holder(schedulers) is not None, 60, message="one scheduler running")
        active = holder(schedulers)
        emit_due_soon(stack, 0, 20, after_s=2)
        wait_until(lambda: len(bot_api.messages("1003")) >= 20, 60, message="20 scheduled messages")
        assert holder(schedulers) == active  # the other one is still standing by

        schedulers[active].signal(signal.SIGKILL)  # its lock dies with its connection
        standby = 1 - active
        emit_due_soon(stack, 20, 10, after_s=2)
        wait_until(lambda: "scheduler running" in schedulers[standby].output(), 60, message="the standby takes over")
        wait_until(lambda: len(bot_api.messages("1003")) >= 30, 60, message="10 more after the takeover")
        wait_until(lambda: stack.count(Notification.status == "sent") == 30, 30, message="30 rows sent")
    finally:
        for p in schedulers + others:
            p.stop()
    sent = Counter(m["text"].split("\n")[1].split(",")[0] for m in bot_api.messages("1003"))
    assert sent == Counter({f"Группа {n}": 1 for n in range(30)})  # each once, none lost


def test_a_scheduler_that_loses_its_lock_stands_by_and_takes_it_again(stack, bot_api):
    """A database restart drops the lock's connection: the scheduler stops ticking, then resumes."""
    from sqlalchemy import create_engine, text

    env = {**stack.env, "VESTNIK_TELEGRAM_CHAT_RATE_PER_S": "1000", "VESTNIK_LOG_LEVEL": "INFO"}
    database = env["VESTNIK_DATABASE_URL"].rsplit("/", 1)[1]
    admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    scheduler = vestnik("scheduler", "scheduler", env=env, log_dir=stack.log_dir)
    others = [vestnik("relay", "relay", env=env, log_dir=stack.log_dir),
              vestnik("worker", "worker", "--processes", "1", "--threads", "4", env=env, log_dir=stack.log_dir)]
    try:
        wait_until(lambda: scheduler.output().count("scheduler running") == 1, 60, message="the scheduler")
        with admin.connect() as conn:  # drop the advisory lock's connection
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :db AND query LIKE '%pg_try_advisory_lock%'"), {"db": database})
        wait_until(lambda: "scheduler lock lost" in scheduler.output(), 30, message="the loss noticed")
        wait_until(lambda: scheduler.output().count("scheduler running") == 2, 60, message="the lock taken again")
        assert scheduler.popen.poll() is None  # the same process, never exited
        emit_due_soon(stack, 0, 5, after_s=1)
        wait_until(lambda: len(bot_api.messages("1003")) == 5, 60, message="scheduled messages after the takeover")
    finally:
        for p in [scheduler, *others]:
            p.stop()
        admin.dispose()
