"""Crashes on the production shape: nothing lost, nothing visible twice.

The relay is killed (``os._exit``, like kill -9) right after RabbitMQ
confirmed a publish and before it could mark the row published; on restart
the event is published again, and the worker absorbs the duplicate."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.e2e.runs import add_clients
from tests.processes import running, vestnik, wait_until
from vestnik.outbox import emit
from vestnik.shared.models import Notification, OutboxEvent

pytestmark = pytest.mark.slow

N = 20
LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}


@pytest.fixture
def env(bare_stack):
    csv = "id,name,email,telegram_chat_id,locale,timezone,email_enabled\n" + "".join(
        f"{i},C{i},c{i}@example.com,{5000 + i},ru,Europe/Moscow,false\n" for i in range(1, N + 1))
    add_clients(bare_stack.factory, csv)
    bare_stack.env.update({"VESTNIK_TELEGRAM_CHAT_RATE_PER_S": "100", "VESTNIK_RELAY_BATCH_SIZE": "50"})
    return bare_stack.factory, bare_stack.env


def test_relay_killed_after_publish_loses_nothing_and_duplicates_nothing_visible(env, bot_api, tmp_path):
    factory, base = env
    with factory() as s:
        for i in range(1, N + 1):
            emit(s, "lesson_cancelled", recipients=[i], data=LESSON, key=f"lesson:{i}")
        s.commit()
    crashing = vestnik("relay-crash", "relay", env={**base, "VESTNIK_FAULT_POINTS": "relay.after_publish"},
                       log_dir=tmp_path)
    assert crashing.popen.wait(timeout=60) == 137  # died right after the first confirmed publish
    with factory() as s:  # nothing was marked: the whole batch rolled back with the crash
        assert s.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.status == "pending")) == N
    with running([vestnik("relay", "relay", env=base, log_dir=tmp_path),
                  vestnik("worker", "worker", "--processes", "1", "--threads", "4", env=base, log_dir=tmp_path)]):
        wait_until(lambda: len(bot_api.messages()) >= N, 60, message=f"{N} Telegram messages")
        wait_until(lambda: _count(factory, OutboxEvent, OutboxEvent.status == "processed") == N, 30,
                   message="every event processed")
    chats = [m["chat_id"] for m in bot_api.messages()]
    assert sorted(chats) == sorted(str(5000 + i) for i in range(1, N + 1))  # each client exactly once
    assert _count(factory, Notification) == N


def _count(factory, model, *where) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))
