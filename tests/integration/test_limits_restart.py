"""The email quotas survive a Redis restart: the limiter rebuilds them from the attempt rows.

Yandex blocks a mailbox for 24 hours past its daily quota, so a restarted Redis must not hand the
day's quota out again.  Each test runs a redis-server of its own on its own port (never the shared
one), delivers email against a small daily quota through the real delivery path, restarts that
server, and delivers again: the sink never gets more than the quota.  Two restarts: one that lost
everything, and one that came back from a saved copy older than the last sends (a crash after a
snapshot), whose counters look plausible but are short.
"""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import func, select

from tests.processes import PrivateRedis
from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import Client, Notification
from vestnik.shared.seeds import install_default_templates
from vestnik.workers.channels import build_channels
from vestnik.workers.delivery import Delivery
from vestnik.workers.handling import handle_events
from vestnik.workers.limits import Limiter, RedisLimiterBackend, rules_for
from vestnik.workers.notifications import seed_source

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}
QUOTA = 4


@pytest.fixture
def mail(pg_url, smtp_server, tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis = PrivateRedis(tmp_path)
    redis.start()
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with factory() as s:
        install_default_templates(s)
        s.commit()
    settings = Settings(smtp_url=smtp_server.url, email_rate_per_min=1000, email_rate_per_hour=1000,
                        email_rate_per_day=QUOTA)
    channels = build_channels(settings)
    clients = iter(range(1, 100))

    def emit_to(n: int) -> None:
        ids = [next(clients) for _ in range(n)]
        with factory() as s:
            s.add_all([Client(id=i, name=f"C{i}", email=f"c{i}@example.com", locale="ru") for i in ids])
            s.flush()
            event_id = emit(s, "lesson_cancelled", recipients=ids, data=LESSON)
            s.commit()
        handle_events(factory, channels, [event_id])

    def pump_until_quiet() -> None:
        """Pump email like a worker whose limiter is the one a fresh process builds (seeded from the
        database when its timelines are new), until no row is due."""
        url = f"redis://127.0.0.1:{redis.port}/0"
        limiter = Limiter(rules_for(settings), RedisLimiterBackend(url), seed=seed_source(factory))
        delivery = Delivery(factory, channels, settings, limiter=limiter)
        try:
            while delivery.pump("email").claimed:
                pass
        finally:
            delivery.close()
            limiter.backend.client.close()

    yield redis, factory, emit_to, pump_until_quiet
    redis.stop()
    for ch in channels.values():
        ch.close()
    engine.dispose()


def pending(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(Notification).where(Notification.status == "pending"))


def test_a_redis_that_lost_everything_keeps_the_days_quota(mail, smtp_server):
    redis, factory, emit_to, pump = mail
    emit_to(QUOTA + 2)
    pump()
    assert len(smtp_server.times()) == QUOTA and pending(factory) == 2  # the rest waits for tomorrow
    redis.stop()  # kill -9: whatever was not saved is gone
    redis.start()  # nothing saved: every counter is gone
    emit_to(1)
    pump()
    assert len(smtp_server.times()) == QUOTA and pending(factory) == 3  # rebuilt from the attempt rows


def test_a_redis_back_from_an_older_copy_keeps_the_days_quota(mail, smtp_server):
    redis, factory, emit_to, pump = mail
    emit_to(2)
    pump()
    assert len(smtp_server.times()) == 2
    import redis as redis_py

    redis_py.Redis(port=redis.port).save()  # a snapshot: two sends counted, the channel marked seeded
    emit_to(QUOTA)
    pump()
    assert len(smtp_server.times()) == QUOTA and pending(factory) == 2
    redis.stop()  # kill -9: whatever was not saved is gone
    redis.start()  # back from the snapshot: its counters say two, the database says four
    emit_to(2)  # due now (the rows above wait for tomorrow)
    pump()
    assert len(smtp_server.times()) == QUOTA and pending(factory) == 4
