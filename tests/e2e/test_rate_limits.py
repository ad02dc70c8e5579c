"""Channel limits on the production shape: two worker processes, shared Redis state."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bench.limits_exact import max_in_window
from tests.e2e.runs import add_clients
from tests.processes import running, vestnik, wait_until
from vestnik.outbox import emit
from vestnik.shared.models import DeliveryAttempt, Notification

pytestmark = pytest.mark.slow
N = 12
LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}


@pytest.fixture
def env(bare_stack):
    csv = "id,name,email,telegram_chat_id,locale,timezone,email_enabled\n" + "".join(
        f"{i},C{i},c{i}@example.com,{7000 + i},ru,Europe/Moscow,false\n" for i in range(1, N + 1))
    add_clients(bare_stack.factory, csv)
    return bare_stack.factory, bare_stack.env


def test_a_429_pauses_telegram_for_retry_after_in_every_worker_process(env, bot_api, tmp_path):
    factory, base = env
    bot_api.fail_next(1, "429", retry_after=3)
    with running([vestnik("relay", "relay", env=base, log_dir=tmp_path),
                  vestnik("worker", "worker", "--processes", "2", "--threads", "4", env=base, log_dir=tmp_path)]):
        with factory() as s:
            for i in range(1, N + 1):
                emit(s, "lesson_cancelled", recipients=[i], data=LESSON)
            s.commit()
        wait_until(lambda: len(bot_api.messages()) >= N, 60, message=f"{N} messages")
    with factory() as s:
        limited = s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.outcome == "rate_limited")).one()
        attempts_of_limited = s.get(Notification, limited.notification_id).attempts
        total_rows = s.scalar(select(func.count()).select_from(Notification))
    paused_at = limited.finished_at.timestamp()
    # Nothing, from either process, went out during the 3 s pause.  Requests already on
    # the wire when the 429 came back may still arrive in its first few milliseconds.
    during = [m["time"] - paused_at for m in bot_api.messages() if paused_at + 0.05 < m["time"] < paused_at + 2.95]
    assert during == []
    assert max(m["time"] for m in bot_api.messages()) >= paused_at + 2.95  # the rest went after the pause
    assert attempts_of_limited == 1  # the 429 did not count as an attempt; the retry did
    assert total_rows == N and len(bot_api.messages()) == N


def test_per_chat_limit_spaces_messages_to_one_chat(env, bot_api, tmp_path):
    factory, base = env
    with running([vestnik("relay", "relay", env=base, log_dir=tmp_path),
                  vestnik("worker", "worker", "--processes", "2", "--threads", "4", env=base, log_dir=tmp_path)]):
        with factory() as s:
            for n in range(4):  # four events to the same client
                emit(s, "lesson_cancelled", recipients=[1], data={**LESSON, "reason": f"r{n}"})
            s.commit()
        wait_until(lambda: len(bot_api.messages()) >= 4, 60, message="4 messages to one chat")
    times = sorted(m["time"] for m in bot_api.messages())
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 1.0 - 0.05, gaps  # default: 1 message per second per chat
    assert timedelta(seconds=sum(gaps)) >= timedelta(seconds=2.9)


def test_the_limit_holds_at_the_receiver_in_every_sliding_window(bare_stack, bot_api, tmp_path):
    """The short version of ``bench.limits_exact``: two worker processes, a backlog of three windows'
    worth, and no one-second window on the fake Bot API's clock holds more than the limit."""
    n, rate = 30, 10
    csv = "id,name,telegram_chat_id,locale,timezone,email_enabled\n" + "".join(
        f"{i},C{i},{9000 + i},ru,Europe/Moscow,false\n" for i in range(1, n + 1))
    add_clients(bare_stack.factory, csv)
    env = {**bare_stack.env, "VESTNIK_TELEGRAM_RATE_PER_S": str(rate)}
    with running([vestnik("relay", "relay", env=env, log_dir=tmp_path),
                  vestnik("worker", "worker", "--processes", "2", "--threads", "4", env=env,
                          log_dir=tmp_path)]) as [_, worker]:
        with bare_stack.factory() as s:
            emit(s, "lesson_cancelled", recipients=list(range(1, n + 1)), data=LESSON)
            s.commit()

        def stalled() -> str:
            with bare_stack.factory() as s:
                rows = dict(s.execute(select(Notification.status, func.count()).group_by(Notification.status)).all())
            return (f"{n} messages at {rate}/s: the Bot API has {len(bot_api.messages())}; rows by status {rows}; "
                    f"the worker's log ends:\n{worker.output()[-3000:]}")

        wait_until(lambda: len(bot_api.messages()) >= n, 120 + 10 * n / rate, message=stalled)
    times = [m["time"] for m in bot_api.messages()]
    assert len(times) == n  # each once
    assert max_in_window(times, 1.0) <= rate
