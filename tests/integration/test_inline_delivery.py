"""A handled batch with few due rows sends them from the handling thread at once; more wake pumps.

Issue 12 (latency): at a trickle of one-recipient events, each row used to wait for a pump's wake-up
(a broker round trip, the limiter middleware's look, a claim that mostly found nothing).  The actor
runs here synchronously on the in-process broker, so what it enqueued can be read off the queues.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import Client, DeliveryAttempt, Notification
from vestnik.shared.seeds import install_default_templates
from vestnik.workers import app
from vestnik.workers.broker import PUMP, delivery_queue

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}


@pytest.fixture
def make_runtime(sqlite_url, bot_api):
    made = []

    def make(**settings):
        broker = app.setup(Settings(database_url=sqlite_url, broker_url="stub://", telegram_token=bot_api.token,
                                    telegram_api_base=bot_api.url, **settings))
        rt = app.runtime()
        made.append((rt, broker))
        with rt.factory() as s:
            install_default_templates(s)
            s.add_all([Client(id=1, name="Анна", telegram_chat_id="1001", locale="ru"),
                       Client(id=2, name="Борис", telegram_chat_id="1002", locale="ru")])
            s.commit()
        return rt, broker

    yield make
    for rt, broker in made:
        rt.close()
        broker.close()


def _handle(rt, broker, recipients):  # noqa: ANN001, ANN202
    with rt.factory() as s:
        event_id = emit(s, "lesson_cancelled", recipients=recipients, data=LESSON)
        s.commit()
    broker.get_actor("handle_events").fn([event_id])  # what the worker thread runs for the relay's message
    with rt.factory() as s:
        return s.scalars(select(Notification).where(Notification.event_id == event_id)).all()


def test_a_small_batch_is_sent_by_the_handling_thread_without_waking_a_pump(make_runtime, bot_api):
    rt, broker = make_runtime()
    rows = _handle(rt, broker, [1, 2])
    assert sorted(r.status for r in rows) == ["sent", "sent"]
    assert sorted(m["chat_id"] for m in bot_api.messages()) == ["1001", "1002"]
    assert broker.queues[delivery_queue("telegram")].qsize() == 0  # no pump was woken
    with rt.factory() as s:  # the same path as a pump's: one attempt each, recorded
        attempts = s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.notification_id.in_(
            [r.id for r in rows]))).all()
        assert sorted((a.attempt_no, a.outcome) for a in attempts) == [(1, "sent"), (1, "sent")]


def test_more_rows_than_the_inline_limit_wake_a_pump_instead(make_runtime, bot_api):
    rt, broker = make_runtime(delivery_inline_rows=1)
    rows = _handle(rt, broker, [1, 2])
    assert sorted(r.status for r in rows) == ["pending", "pending"]
    assert bot_api.messages() == []
    queue = broker.queues[delivery_queue("telegram")]
    assert queue.qsize() == 1
    import dramatiq

    assert dramatiq.Message.decode(queue.get_nowait()).actor_name == PUMP


def test_when_the_inline_send_fails_a_pump_takes_the_rows(make_runtime, bot_api, monkeypatch):
    rt, broker = make_runtime()

    def broken(ids, **_):  # noqa: ANN001, ANN003, ANN202 - the database went away between the two transactions
        raise RuntimeError("connection lost")

    monkeypatch.setattr(rt.delivery, "deliver_rows", broken)
    rows = _handle(rt, broker, [1])
    assert [r.status for r in rows] == ["pending"]  # committed by handling, not lost
    assert broker.queues[delivery_queue("telegram")].qsize() == 1
    monkeypatch.undo()
    broker.get_actor(PUMP).fn("telegram")  # the woken pump
    with rt.factory() as s:
        assert s.get(Notification, rows[0].id).status == "sent"
    assert [m["chat_id"] for m in bot_api.messages()] == ["1001"]


def test_a_message_that_waited_in_the_queue_wakes_a_pump_which_batches_the_backlog(make_runtime, bot_api,
                                                                                     monkeypatch):
    import time

    from vestnik.workers import actors

    rt, broker = make_runtime()
    # handling is behind: its message was enqueued long before it started
    enqueued = time.time() - 60.0
    monkeypatch.setattr(actors, "_enqueued_at", lambda: enqueued)
    rows = _handle(rt, broker, [1])
    assert [r.status for r in rows] == ["pending"]
    assert broker.queues[delivery_queue("telegram")].qsize() == 1
    assert bot_api.messages() == []


def test_the_inline_send_reuses_the_clients_handling_read(make_runtime, bot_api):
    """Handling has just read the recipients with their addresses; the send does not read them again."""
    from sqlalchemy import event

    rt, broker = make_runtime()
    statements: list[str] = []
    event.listen(rt.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    rows = _handle(rt, broker, [1, 2])
    assert sorted(r.status for r in rows) == ["sent", "sent"]
    reads = [s for s in statements if "FROM clients" in s]
    assert len(reads) == 1, reads  # handling's, not delivery's
