"""Delivery in batches: a pump claims, renders, takes slots and records a chunk at a time.

Real parts: PostgreSQL, the fake Bot API over HTTP, the limiter on a private redis-server.
Each test stops a batch in the middle of its sends (a 429, Redis going away, a batch running
long) and checks the ledger: what reached the provider is recorded sent, nothing else went
out, and every unsent row is pending again without an attempt counted.
"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from tests.processes import PrivateRedis, wait_until
from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import Client, DeliveryAttempt, Notification, NotificationTemplate, utcnow
from vestnik.shared.seeds import install_default_templates
from vestnik.workers import delivery as delivery_module
from vestnik.workers.channels import build_channels
from vestnik.workers.delivery import Delivery
from vestnik.workers.handling import handle_events
from vestnik.workers.limits import Limiter, RedisLimiterBackend, rules_for

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}
N = 24


@pytest.fixture
def rig(pg_url, bot_api):
    """N clients with Telegram only, one event to all of them, handled: N pending rows."""
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)

    with factory() as s:
        install_default_templates(s)
        s.add_all([Client(id=i, name=f"C{i}", telegram_chat_id=str(5000 + i), locale="ru",
                          notifications_email_enabled=False) for i in range(1, N + 1)])
        event_id = emit(s, "lesson_cancelled", recipients=list(range(1, N + 1)), data=LESSON)
        s.commit()
    settings = Settings(telegram_token=bot_api.token, telegram_api_base=bot_api.url, telegram_rate_per_s=20,
                        telegram_connections=2)
    channels = build_channels(settings)
    [result] = handle_events(factory, channels, [event_id])
    assert len(result.created) == N
    yield factory, settings, channels
    for ch in channels.values():
        ch.close()
    engine.dispose()


def ledger(factory, bot_api) -> tuple[Counter, dict[str, int], int]:
    """(chat -> messages at the provider, status -> rows, attempts recorded)."""
    at_provider = Counter(m["chat_id"] for m in bot_api.messages())
    with factory() as s:
        statuses = dict(s.execute(select(Notification.status, func.count()).group_by(Notification.status)).all())
        attempts = s.scalar(select(func.count()).select_from(DeliveryAttempt)) or 0
    return at_provider, statuses, attempts


def test_a_pump_sends_a_batch_and_records_it_in_chunks(rig, bot_api, redis_url, redis_client):
    factory, settings, channels = rig
    limiter = Limiter(rules_for(settings), RedisLimiterBackend(redis_url))
    delivery = Delivery(factory, channels, settings, limiter=limiter)
    try:
        first = delivery.pump("telegram")

        def all_sent() -> bool:
            # A row without a slot, or whose send missed its deadline (a loaded machine), is pending
            # again, due when the limiter said: pump it like the next wake-up would.
            delivery.pump("telegram")
            return ledger(factory, bot_api)[1] == {"sent": N}

        wait_until(all_sent, 30 + N / 20, interval_s=0.2,
                   message=lambda: f"all {N} sent: {ledger(factory, bot_api)[1]}")
    finally:
        delivery.close()
    at_provider, statuses, attempts = ledger(factory, bot_api)
    assert first.claimed == N  # one claim took the whole batch
    assert len(at_provider) == N and set(at_provider.values()) == {1}  # every client once
    assert statuses == {"sent": N} and attempts == N  # an attempt row per send, none for a missed deadline
    times = sorted(m["time"] for m in bot_api.messages())
    assert max(sum(1 for t in times if a <= t < a + 1.0) for a in times) <= 20  # the limit, at the provider


def test_a_429_in_the_middle_of_a_batch_pauses_and_gives_the_rest_back(rig, bot_api, redis_url, redis_client):
    factory, settings, channels = rig
    limiter = Limiter(rules_for(settings), RedisLimiterBackend(redis_url))
    delivery = Delivery(factory, channels, settings, limiter=limiter)
    sent_before_429 = 3
    original = bot_api._next_fault

    calls = {"n": 0}

    def third_is_429():
        calls["n"] += 1
        if calls["n"] == sent_before_429 + 1:
            from vestnik.shared.fakes.botapi import Fault

            return Fault("429", retry_after=30)
        return original()

    bot_api._next_fault = third_is_429
    try:
        result = delivery.pump("telegram")
        calls = len(bot_api.calls())
        again = delivery.pump("telegram")  # what was due anyway (a missed deadline) meets the pause
        assert len(bot_api.calls()) == calls  # nothing more reached the provider
        assert all(r.outcome == "rate_limited" and r.requeue_in_s > 25 for r in again.results)
    finally:
        delivery.close()
    at_provider, statuses, attempts = ledger(factory, bot_api)
    assert limiter.paused_for("telegram") > 25  # every worker waits retry_after
    outcomes = Counter(r.outcome for r in result.results)
    assert outcomes["rate_limited"] >= N - len(at_provider) >= 1
    with factory() as s:
        rows = {n.id: n for n in s.scalars(select(Notification))}
        attempt_rows = Counter(a.notification_id for a in s.scalars(select(DeliveryAttempt)))
    sent = [n for n in rows.values() if n.status == "sent"]
    back = [n for n in rows.values() if n.status == "pending"]
    assert len(sent) == len(at_provider) and set(at_provider.values()) == {1}  # recorded what went, once each
    assert len(sent) + len(back) == N and statuses.get("processing", 0) == 0
    assert all(n.attempts == 0 for n in back)  # neither the 429 nor the give-back counts as an attempt
    assert all((n.send_at - utcnow()).total_seconds() > 25 for n in back)  # they wait out retry_after
    assert all(attempt_rows[n.id] <= 1 for n in back)  # only the 429'd one has an attempt row: rate_limited
    assert attempts == len(sent) + 1


def test_redis_going_away_in_the_middle_of_a_batch_loses_and_repeats_nothing(rig, bot_api):
    factory, settings, channels = rig
    redis = PrivateRedis()
    redis.start()
    limiter = Limiter(rules_for(settings), RedisLimiterBackend(f"redis://127.0.0.1:{redis.port}/0"))
    delivery = Delivery(factory, channels, settings, limiter=limiter)
    telegram = channels["telegram"]
    real_send = telegram.send
    sent = {"n": 0}

    def send_then_lose_redis(address, message):
        out = real_send(address, message)
        sent["n"] += 1
        if sent["n"] == 2:
            redis.stop()  # the limiter's Redis dies while the batch is sending
        return out

    telegram.send = send_then_lose_redis  # type: ignore[method-assign]
    try:
        result = delivery.pump("telegram")
    finally:
        delivery.close()
        redis.stop()
    at_provider, statuses, attempts = ledger(factory, bot_api)
    assert result.claimed == N
    assert set(at_provider.values()) == {1}  # nothing twice
    assert 2 <= len(at_provider) < N  # the chunk in flight finished; the limiter held the rest
    assert statuses == {"sent": len(at_provider), "pending": N - len(at_provider)}
    assert attempts == len(at_provider)  # the rows given back have no attempt
    with factory() as s:
        assert s.scalar(select(func.max(Notification.attempts)).where(Notification.status == "pending")) == 0


def test_a_batch_that_runs_long_gives_its_unsent_rows_back_before_the_lease(rig, bot_api, monkeypatch):
    factory, settings, channels = rig
    settings = Settings(**{**settings.__dict__, "processing_lease_s": 2.0, "delivery_chunk_rows": 4})
    delivery = Delivery(factory, channels, settings)
    delivery.budget_s = 0.0  # every chunk after the first finds the budget spent
    try:
        result = delivery.pump("telegram")
    finally:
        delivery.close()
    at_provider, statuses, attempts = ledger(factory, bot_api)
    assert len(at_provider) == 0 or set(at_provider.values()) == {1}
    assert statuses.get("processing", 0) == 0
    assert statuses.get("sent", 0) == len(at_provider) and statuses.get("pending", 0) == N - len(at_provider)
    assert attempts == len(at_provider)
    assert any(r.outcome == "rate_limited" for r in result.results)


def test_rows_due_together_pass_the_gate_in_one_round_trip_and_their_ends_in_another(
        rig, bot_api, redis_url, redis_client, monkeypatch):
    """Limits lifted: a chunk's slots all lie within GATE_AHEAD_S, so the chunk passes the limiter's
    gate in one round trip and reports its ends in one; every row goes exactly once."""
    factory, settings, channels = rig
    settings = Settings(**{**settings.__dict__, "telegram_rate_per_s": 1000, "telegram_chat_rate_per_s": 1000,
                           "delivery_chunk_rows": 8})
    limiter = Limiter(rules_for(settings), RedisLimiterBackend(redis_url))
    begun: list[int] = []
    ended: list[int] = []
    real_begin, real_end = limiter.begin, limiter.end
    limiter.begin = lambda channel, sends: begun.append(len(sends)) or real_begin(channel, sends)  # type: ignore
    limiter.end = lambda channel, sends: ended.append(len(sends)) or real_end(channel, sends)  # type: ignore
    monkeypatch.setattr(delivery_module, "GATE_AHEAD_S", 1.0)  # a loaded machine may spread 8 slots a little
    delivery = Delivery(factory, channels, settings, limiter=limiter)
    try:
        result = delivery.pump("telegram")
    finally:
        delivery.close()
    at_provider, statuses, attempts = ledger(factory, bot_api)
    assert result.claimed == N
    assert begun == [8, 8, 8] and ended == [8, 8, 8]
    assert set(at_provider.values()) == {1} and statuses == {"sent": N} and attempts == N


def test_rows_the_gate_holds_back_go_back_without_an_attempt_and_the_next_chunk_still_opens_first(
        rig, bot_api, redis_url, redis_client, monkeypatch):
    """The first chunk finds the gate shut past GATE_WAIT_S (another worker's sends fill the window):
    it is given back whole, not counted as attempts; the next chunks' attempts still open before
    their sends."""
    factory, settings, channels = rig
    settings = Settings(**{**settings.__dict__, "telegram_rate_per_s": 1000, "telegram_chat_rate_per_s": 1000,
                           "delivery_chunk_rows": 8})
    limiter = Limiter(rules_for(settings), RedisLimiterBackend(redis_url))
    real_begin = limiter.begin
    asked: list[int] = []

    def first_chunk_finds_the_gate_shut(channel, sends):
        asked.append(len(sends))
        if len(asked) == 1:
            return [5.0 for _ in sends]  # longer than GATE_WAIT_S
        return real_begin(channel, sends)

    limiter.begin = first_chunk_finds_the_gate_shut  # type: ignore[method-assign]
    monkeypatch.setattr(delivery_module, "GATE_AHEAD_S", 1.0)
    delivery = Delivery(factory, channels, settings, limiter=limiter)
    try:
        result = delivery.pump("telegram")
    finally:
        delivery.close()
    at_provider, statuses, attempts = ledger(factory, bot_api)
    assert len(at_provider) == N - 8 and set(at_provider.values()) == {1}
    assert statuses == {"sent": N - 8, "pending": 8}
    assert attempts == N - 8  # every send had its attempt row first; the chunk given back has none
    assert result.wake_in_s == 0.0  # due again at once: the next claim's slots decide


def test_rows_due_at_one_instant_are_one_chunk_and_spread_slots_are_chunks_of_16(
        rig, bot_api, redis_url, redis_client, monkeypatch):
    """Limits far above the batch's pace: every slot lies within GATE_AHEAD_S of the first, so the
    batch is one chunk (one gate round trip, one record) up to VESTNIK_DELIVERY_CHUNK_ROWS.  Slots
    spread further apart keep to CHUNK_ROWS rows a chunk."""
    factory, settings, channels = rig
    lifted = Settings(**{**settings.__dict__, "telegram_rate_per_s": 100000, "telegram_chat_rate_per_s": 100000})
    limiter = Limiter(rules_for(lifted), RedisLimiterBackend(redis_url))
    begun: list[int] = []
    real_begin = limiter.begin
    limiter.begin = lambda channel, sends: begun.append(len(sends)) or real_begin(channel, sends)  # type: ignore
    monkeypatch.setattr(delivery_module, "GATE_AHEAD_S", 1.0)  # a loaded machine may spread the slots a little
    delivery = Delivery(factory, channels, lifted, limiter=limiter)
    try:
        result = delivery.pump("telegram")
    finally:
        delivery.close()
    assert result.claimed == N and begun == [N]
    at_provider, statuses, attempts = ledger(factory, bot_api)
    assert set(at_provider.values()) == {1} and statuses == {"sent": N} and attempts == N

    items = [delivery_module._Item(SimpleNamespace(id=i, channel="telegram"), None, None,  # type: ignore[arg-type]
                                   delivery_module.Grant(at=i * 0.01)) for i in range(40)]
    monkeypatch.setattr(delivery_module, "GATE_AHEAD_S", 0.005)
    monkeypatch.setattr(delivery.limiter, "reserve", lambda channel, keys, horizon_s: [it.grant for it in items])
    with delivery._transaction() as tx:
        chunks = delivery._slots(tx, [delivery_module._Item(it.claimed, it.message, it.key) for it in items],
                                 utcnow(), delivery_module.BatchResult(results=[]))
    assert [len(c) for c in chunks] == [16, 16, 8]


def test_a_template_edited_between_batches_is_what_the_next_batch_sends(rig, bot_api):
    """The worker keeps the templates it found while no template row changed: an admin's edit, or a
    template switched off, is what the very next batch sees."""
    factory, settings, channels = rig
    delivery = Delivery(factory, channels, settings)

    def another_event(title: str) -> None:
        with factory() as s:
            event_id = emit(s, "lesson_cancelled", recipients=[1, 2], data={**LESSON, "lesson_title": title})
            s.commit()
        handle_events(factory, channels, [event_id])

    try:
        assert delivery.pump("telegram").claimed == N
        with factory() as s:
            template = s.scalars(select(NotificationTemplate).where(
                NotificationTemplate.code == "LESSON_CANCELLED", NotificationTemplate.channel == "telegram",
                NotificationTemplate.locale == "ru")).one()
            template.body = "Новый текст: {{ lesson_title }}"
            s.commit()
        another_event("Шахматы")
        assert delivery.pump("telegram").claimed == 2
        assert [m["text"] for m in bot_api.messages()[-2:]] == ["Новый текст: Шахматы"] * 2

        with factory() as s:
            for t in s.scalars(select(NotificationTemplate).where(NotificationTemplate.code == "LESSON_CANCELLED",
                                                                  NotificationTemplate.channel == "telegram")):
                t.is_active = False
            s.commit()
        another_event("Рисование")
        result = delivery.pump("telegram")
        assert [r.outcome for r in result.results] == ["render_failed"] * 2
        assert len(bot_api.messages()) == N + 2
    finally:
        delivery.close()
