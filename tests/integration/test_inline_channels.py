"""An inline batch spans channels: one claim, one record, one limiter round trip per step for all of them.

Issue 12 (the trickle): handling hands every channel's due rows over as one batch.  Each channel keeps
its own limits: a provider's 429 on Telegram pauses Telegram only, and the email of the same event is
sent.  The limiter runs on its in-process backend and on Redis (the scripts pipelined).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import Client, DeliveryAttempt, Notification
from vestnik.shared.seeds import install_default_templates
from vestnik.workers import app
from vestnik.workers.broker import delivery_queue

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}


@pytest.fixture(params=["memory", "redis"])
def runtime(request, sqlite_url, bot_api, smtp_server):
    redis = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    broker = app.setup(Settings(database_url=sqlite_url, broker_url="stub://", telegram_token=bot_api.token,
                                telegram_api_base=bot_api.url, smtp_url=smtp_server.url, redis_url=redis))
    rt = app.runtime()
    with rt.factory() as s:
        install_default_templates(s)
        s.add(Client(id=1, name="Анна", email="anna@example.com", telegram_chat_id="1001", locale="ru"))
        s.commit()
    yield rt, broker
    rt.close()
    broker.close()


def _handle(rt, broker):  # noqa: ANN001, ANN202
    with rt.factory() as s:
        event_id = emit(s, "lesson_cancelled", recipients=[1], data=LESSON)
        s.commit()
    broker.get_actor("handle_events").fn([event_id])
    with rt.factory() as s:
        return {r.channel: r for r in s.scalars(select(Notification).where(Notification.event_id == event_id))}


def test_both_channels_of_an_event_are_sent_by_one_inline_batch(runtime, bot_api, smtp_server):
    rt, broker = runtime
    rows = _handle(rt, broker)
    assert {ch: r.status for ch, r in rows.items()} == {"telegram": "sent", "email": "sent"}
    assert [m["chat_id"] for m in bot_api.messages()] == ["1001"]
    assert len(smtp_server.messages()) == 1
    with rt.factory() as s:
        attempts = s.scalars(select(DeliveryAttempt)).all()
    assert sorted((a.attempt_no, a.outcome) for a in attempts) == [(1, "sent"), (1, "sent")]
    for channel in ("telegram", "email"):
        assert broker.queues[delivery_queue(channel)].qsize() == 0  # no pump was woken


def test_a_429_on_telegram_pauses_telegram_only_and_the_email_goes(runtime, bot_api, smtp_server):
    rt, broker = runtime
    bot_api.fail_next(1, "429", retry_after=30)
    rows = _handle(rt, broker)
    assert rows["email"].status == "sent"
    assert len(smtp_server.messages()) == 1
    assert rows["telegram"].status == "pending" and rows["telegram"].send_at is not None
    assert rows["telegram"].send_at > rows["email"].updated_at  # waits out retry_after; the email did not
    assert rt.delivery.limiter.paused_for("email") == 0
    from dramatiq.common import dq_name

    assert broker.queues[dq_name(delivery_queue("email"))].qsize() == 0
    assert broker.queues[dq_name(delivery_queue("telegram"))].qsize() == 1  # a delayed wake for the telegram row
