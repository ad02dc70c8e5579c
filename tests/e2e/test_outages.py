"""Outages of the parts around Vestnik, on the production shape, judged by the
delivery ledger: the broker unreachable for a while, every broker connection
closed under load, every PostgreSQL connection dropped under load, Redis down.

RabbitMQ and PostgreSQL are shared with other tests, so their outages are
scoped to this test's own vhost and database: the broker refuses this vhost
(permissions cleared, connections closed) and PostgreSQL drops every backend
of this database, which is what clients see when the server restarts.  Redis
runs as a private server that the test really stops and starts again.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, func, select, text

from tests.e2e.runs import assert_ledger, emit_run, settled, worker
from tests.processes import PrivateRedis, running, vestnik, wait_until
from vestnik.outbox import emit
from vestnik.shared.models import OutboxEvent

pytestmark = pytest.mark.slow


def vhost_of(amqp_url: str) -> str:
    return urlsplit(amqp_url).path.lstrip("/")


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def close_connections(vhost: str) -> None:
    rabbitmqctl("close_all_connections", "--vhost", vhost, "test: broker outage")


def pending_outbox(stack) -> int:
    with stack.factory() as s:
        return s.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.status == "pending"))


def test_broker_unreachable_crm_commits_continue_and_the_backlog_drains(chaos, bot_api, smtp_server):
    vhost = vhost_of(chaos.env["VESTNIK_BROKER_URL"])
    with running([vestnik("relay", "relay", env=chaos.env, log_dir=chaos.log_dir), worker(chaos, "worker"),
                  vestnik("scheduler", "scheduler", env=chaos.env, log_dir=chaos.log_dir)]) as [relay, *_]:
        expected = emit_run(chaos, 0, 20)
        wait_until(lambda: settled(chaos, 20), 60, message="the first 20 events")
        rabbitmqctl("clear_permissions", "-p", vhost, "guest")  # the broker refuses us from now on
        close_connections(vhost)
        t0 = time.monotonic()
        expected += emit_run(chaos, 20, 30)  # the CRM goes on committing, at its own speed
        assert time.monotonic() - t0 < 5
        wait_until(lambda: "relay.publish_failed" in relay.output() or "relay.round_failed" in relay.output(), 30,
                   message="the relay noticing the outage")
        assert pending_outbox(chaos) == 30  # the outbox holds them
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")  # back
        wait_until(lambda: settled(chaos, 50), 120, message="the backlog to drain")
    assert_ledger(chaos, bot_api, smtp_server, expected)


def test_all_broker_connections_closed_under_load(chaos, bot_api, smtp_server):
    vhost = vhost_of(chaos.env["VESTNIK_BROKER_URL"])
    bot_api.latency_s = 0.2  # sends take long enough for the outage to land in the middle of the run
    with running([vestnik("relay", "relay", env=chaos.env, log_dir=chaos.log_dir), worker(chaos, "worker"),
                  vestnik("scheduler", "scheduler", env=chaos.env, log_dir=chaos.log_dir)]):
        expected = emit_run(chaos, 0, 60)
        for _ in range(2):
            # more progress, or the first run all sent (rabbitmqctl can take seconds on a loaded machine;
            # the 20 events emitted after the closes still meet the reconnected consumers)
            wait_until(lambda n=len(bot_api.messages()): len(bot_api.messages()) > min(n + 5, 59), 60,
                       message="progress")
            close_connections(vhost)
        expected += emit_run(chaos, 60, 20)
        wait_until(lambda: settled(chaos, 80), 120, message="consumers to resume and finish")
    assert_ledger(chaos, bot_api, smtp_server, expected, max_uncertain=4)


def test_postgresql_connections_dropped_under_load(chaos, bot_api, smtp_server):
    database = chaos.env["VESTNIK_DATABASE_URL"].rsplit("/", 1)[1]
    admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    bot_api.latency_s = 0.2  # sends take long enough for the outage to land in the middle of the run
    with running([vestnik("relay", "relay", env=chaos.env, log_dir=chaos.log_dir), worker(chaos, "worker"),
                  vestnik("scheduler", "scheduler", env=chaos.env, log_dir=chaos.log_dir)]):
        expected = emit_run(chaos, 0, 60)

        def drop_connections() -> int:
            with admin.connect() as conn:  # what every client sees when the server restarts
                return conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                         "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}).scalar()

        for _ in range(2):
            wait_until(lambda n=len(bot_api.messages()): len(bot_api.messages()) > n + 5, 60, message="progress")
            # Progress after a drop may come from sends of rows claimed before it, with no connection open
            # yet: drop once the processes have connected again.
            wait_until(lambda: drop_connections() > 0, 60, message="Vestnik's connections to drop")
        expected += emit_run(chaos, 60, 20)
        wait_until(lambda: settled(chaos, 80), 120, message="relay and workers to reconnect and finish")
    admin.dispose()
    assert_ledger(chaos, bot_api, smtp_server, expected)  # a lost connection while recording is retried


def test_redis_down_holds_sends_and_loses_nothing(chaos, bot_api, smtp_server):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis = PrivateRedis()
    redis.start()
    chaos.env["VESTNIK_REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/0"
    try:
        with running([vestnik("relay", "relay", env=chaos.env, log_dir=chaos.log_dir), worker(chaos, "worker"),
                      vestnik("scheduler", "scheduler", env=chaos.env, log_dir=chaos.log_dir)]) as procs:
            expected = emit_run(chaos, 0, 10)
            wait_until(lambda: settled(chaos, 10), 60, message="the first 10 events")
            redis.stop()
            down_at = time.time()
            expected += emit_run(chaos, 10, 30)
            wait_until(lambda: "limiter.unavailable" in procs[1].output(), 30, message="the limiter failing closed")
            wait_until(lambda: pending_outbox(chaos) == 0, 30, message="the events handled meanwhile")
            # No limit could be checked, so nothing was sent (a send already past its check may land
            # in the first second).
            assert [m for m in bot_api.messages() + smtp_server.messages() if m["time"] > down_at + 1] == []
            redis.start()
            wait_until(lambda: settled(chaos, 40), 120, message="sends to resume once Redis is back")
    finally:
        redis.stop()
    assert_ledger(chaos, bot_api, smtp_server, expected)


def test_an_event_committed_while_everything_is_down_is_delivered_later(chaos, bot_api, smtp_server):
    """The CRM's commit never waits for Vestnik: nothing runs, the event waits in the outbox."""
    with chaos.factory() as s:
        emit(s, "lesson_cancelled", recipients=[100], data={"lesson_title": "Урок-9999",
                                                             "starts_at": "2026-12-25T16:00:00+03:00"})
        s.commit()
    assert pending_outbox(chaos) == 1
    with running([vestnik("relay", "relay", env=chaos.env, log_dir=chaos.log_dir), worker(chaos, "worker")]):
        wait_until(lambda: settled(chaos, 1), 60, message="the event delivered")
    assert [m["chat_id"] for m in bot_api.messages()] == ["7000"]
