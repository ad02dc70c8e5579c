"""The relay against real PostgreSQL and RabbitMQ (and SQLite with the in-process broker).

Each test publishes to its own queue (deleted afterwards), except the crash
test, which runs the real ``vestnik relay`` process in a fresh virtual host.
Messages are read back with pika's ``basic_get``.  Every wait polls a
condition with a deadline; the one deliberate idle period (the heartbeat
test) ends when RabbitMQ has closed the unserviced connection.
"""

from __future__ import annotations

import collections
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import dramatiq
import pika
import pika.exceptions
import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine, create_engine, select, text, update

from tests.processes import vestnik, wait_until
from vestnik.outbox import emit, queries
from vestnik.outbox.relay import Publisher, RabbitmqPublisher, Relay, build_publisher
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine
from vestnik.shared.models import OutboxEvent, OutboxStatus, utcnow

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}
T = OutboxEvent.__table__


# ------------------------------------------------------------------ helpers


class Rabbit:
    """A test-side pika connection: queue depth, draining, cleanup."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.conn.channel()
        self.pulled: dict[str, list[dramatiq.Message]] = {}

    def _reopen_channel(self) -> None:
        if not self.conn.is_open:
            self.conn = pika.BlockingConnection(pika.URLParameters(self.url))
        self.channel = self.conn.channel()

    def depth(self, queue: str) -> int:
        """How many events reached the queue so far (a message may carry a batch of them)."""
        return len(event_ids(self._pull(queue)))

    def _pull(self, queue: str) -> list[dramatiq.Message]:
        """Every message that reached the queue so far (taken off it and kept here)."""
        kept = self.pulled.setdefault(queue, [])
        try:
            while True:
                method, _props, body = self.channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return kept
                kept.append(dramatiq.Message.decode(body))
        except pika.exceptions.ChannelClosedByBroker:  # 404: nothing was published yet
            self._reopen_channel()
            return kept

    def drain(self, queue: str) -> list[dramatiq.Message]:
        messages = self._pull(queue)
        self.pulled[queue] = []
        return messages

    def delete(self, queue: str) -> None:
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):  # Dramatiq's delay and dead-letter queues
            self.channel.queue_delete(name)

    def close(self) -> None:
        if self.conn.is_open:
            self.conn.close()


@pytest.fixture
def rabbit(amqp_url) -> Iterator[Rabbit]:
    r = Rabbit(amqp_url)
    yield r
    r.close()


@pytest.fixture
def new_queue(rabbit) -> Iterator[Callable[[], str]]:
    """Unique queue names for this test; the queues are deleted afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"vestnik_relay_test_{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield make
    for name in names:
        rabbit.delete(name)


@pytest.fixture
def queue(new_queue) -> str:
    return new_queue()


@pytest.fixture
def publishers(amqp_url) -> Iterator[Callable[..., RabbitmqPublisher]]:
    """RabbitMQ publishers for this test, closed afterwards."""
    made: list[RabbitmqPublisher] = []

    def make(queue_name: str, *, url: str = amqp_url, name: str | None = None) -> RabbitmqPublisher:
        made.append(RabbitmqPublisher(url, queue_name=queue_name, connection_name=name))
        return made[-1]

    yield make
    for p in made:
        p.close()


@pytest.fixture
def pg_engine(pg_url) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def emit_events(engine: Engine, count: int, *, commit: bool = True) -> list[int]:
    """One CRM transaction that emits ``count`` events."""
    with engine.connect() as conn:
        ids = [emit(conn, "lesson_cancelled", recipients=[1], data=LESSON, key=f"lesson:{i}") for i in range(count)]
        conn.commit() if commit else conn.rollback()
    return ids


def statuses(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(T.c.id, T.c.status)).all())


def count_published(engine: Engine) -> int:
    return list(statuses(engine).values()).count(OutboxStatus.published.value)


def event_ids(messages: list[dramatiq.Message]) -> list[int]:
    # a batch message carries a list of ids, a single-event message one id
    return [i for m in messages for i in (m.args[0] if isinstance(m.args[0], list) else [m.args[0]])]


@contextmanager
def running(relay: Relay) -> Iterator[threading.Thread]:
    """``relay.run_forever`` in a thread; stopped and joined afterwards; its exception re-raised."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            relay.run_forever()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=target, name="relay-under-test", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        relay.stop()
        thread.join(timeout=15)
    assert not thread.is_alive(), "the relay did not stop"
    assert not errors, f"run_forever died: {errors[0]!r}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ publishing


def test_relay_publishes_committed_events_once_and_marks_them_published(pg_engine, rabbit, queue, publishers):
    committed = emit_events(pg_engine, 3)
    emit_events(pg_engine, 2, commit=False)  # a CRM transaction that rolled back
    relay = Relay(pg_engine, publishers(queue), batch_size=10, listen=False)

    assert relay.run_once() == 3
    assert relay.run_once() == 0

    messages = rabbit.drain(queue)
    assert sorted(event_ids(messages)) == committed
    assert len(messages) == 1  # one message (and one confirm) for the claimed batch
    first = messages[0]
    assert (first.queue_name, first.actor_name, first.kwargs) == (queue, "handle_events", {})
    with pg_engine.connect() as conn:
        rows = conn.execute(select(T.c.id, T.c.status, T.c.published_at, T.c.publish_attempts)).all()
    assert [r.id for r in rows] == committed  # the rolled-back events never existed
    assert all(r.status == "published" and r.published_at and r.publish_attempts == 0 for r in rows)


def test_notify_wakes_the_relay_long_before_the_poll_interval(pg_engine, rabbit, queue, publishers):
    emit_events(pg_engine, 1)  # published by the first round: afterwards the relay waits
    relay = Relay(pg_engine, publishers(queue), poll_interval_s=30)
    with running(relay):
        wait_until(lambda: relay.stats.batches == 1 and relay.listener.is_open, 10, message="first round")
        emit_events(pg_engine, 1)
        wait_until(lambda: rabbit.depth(queue) == 2, 5, message="the event published after a NOTIFY")
        assert relay.stats.notify_wakeups >= 1
    assert count_published(pg_engine) == 2


def test_polling_finds_rows_without_notify_and_a_killed_listener_is_reopened(pg_engine, rabbit, queue, publishers):
    emit_events(pg_engine, 1)
    relay = Relay(pg_engine, publishers(queue), poll_interval_s=0.3)
    with running(relay):
        wait_until(lambda: relay.stats.batches == 1 and relay.listener.is_open, 10, message="first round")
        old_pid = relay.listener.pid
        with pg_engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": old_pid}).scalar()
            # Commit without the NOTIFY trigger: only polling can find this row.
            conn.execute(text("SET session_replication_role = replica"))
            emit(conn, "lesson_cancelled", recipients=[1], data=LESSON)
            conn.commit()
            conn.execute(text("SET session_replication_role = DEFAULT"))
        wait_until(lambda: rabbit.depth(queue) == 2, 10, message="the un-notified row, found by polling")
        wait_until(lambda: relay.listener.is_open and relay.listener.pid != old_pid, 10,
                   message="the LISTEN connection reopened")
        emit_events(pg_engine, 1)
        wait_until(lambda: rabbit.depth(queue) == 3, 10, message="an event after the reopen")
    assert relay.stats.errors == 0
    assert count_published(pg_engine) == 3


class MeetingPublisher(Publisher):
    """Publishes through ``inner``, but the first publish waits until the other
    relay is publishing too: both hold a claimed batch at the same moment."""

    def __init__(self, inner: Publisher, barrier: threading.Barrier, seen: list[int]) -> None:
        self.inner, self.barrier, self.seen = inner, barrier, seen

    def publish(self, event_id: int, key: str | None) -> None:
        if not self.seen:
            self.barrier.wait(timeout=10)  # with FOR UPDATE but no SKIP LOCKED this would time out
        self.inner.publish(event_id, key)
        self.seen.append(event_id)

    def keepalive(self) -> None:
        self.inner.keepalive()


def test_two_relays_share_500_events_without_duplicates(pg_engine, rabbit, queue, publishers):
    ids = emit_events(pg_engine, 500)
    barrier = threading.Barrier(2)
    seen: tuple[list[int], list[int]] = ([], [])
    relays = [Relay(pg_engine, MeetingPublisher(publishers(queue), barrier, seen[i]), batch_size=50,
                    poll_interval_s=0.2) for i in range(2)]
    with running(relays[0]), running(relays[1]):
        wait_until(lambda: count_published(pg_engine) == 500, 30, message="500 events published")
    counts = collections.Counter(event_ids(rabbit.drain(queue)))
    duplicates = sum(n - 1 for n in counts.values())
    print(f"two relays: {len(seen[0])} + {len(seen[1])} published, {duplicates} duplicates")
    assert set(counts) == set(ids)  # every event at least once
    assert duplicates == 0  # SKIP LOCKED: no row is held by both
    assert seen[0] and seen[1]  # both relays did work, at the same time (the barrier)
    assert all(r.stats.publish_failures == 0 and r.stats.errors == 0 for r in relays)


def test_relay_killed_after_publish_before_mark_republishes_and_loses_nothing(pg_url, amqp_vhost_url, tmp_path):
    engine = make_engine(pg_url)
    ids = emit_events(engine, 25)
    env = {"VESTNIK_DATABASE_URL": pg_url, "VESTNIK_BROKER_URL": amqp_vhost_url, "VESTNIK_RELAY_BATCH_SIZE": "10"}

    crashing = vestnik("relay-crash", "relay", env={**env, "VESTNIK_FAULT_POINTS": "relay.after_publish"},
                       log_dir=tmp_path)
    assert crashing.popen.wait(timeout=30) == 137, crashing.output()
    crashing.stop()
    assert set(statuses(engine).values()) == {"pending"}  # killed before marking: nothing marked

    relay = vestnik("relay", "relay", env=env, log_dir=tmp_path)
    wait_until(lambda: count_published(engine) == 25, 30, message="all 25 published after the restart")
    assert relay.stop() == 0, relay.output()  # SIGTERM: a clean exit

    vhost_rabbit = Rabbit(amqp_vhost_url)
    try:
        counts = collections.Counter(event_ids(vhost_rabbit.drain("events")))
    finally:
        vhost_rabbit.close()
    engine.dispose()
    assert set(counts) == set(ids)  # nothing lost
    # The first batch was confirmed before the kill and published again after it.
    assert sorted(i for i, n in counts.items() if n == 2) == ids[:10]
    assert sum(counts.values()) == 35


# ------------------------------------------------------------------ outages


def test_unreachable_broker_keeps_events_pending_then_a_working_publisher_drains_them(
    pg_engine, rabbit, queue, publishers, caplog
):
    ids = emit_events(pg_engine, 5)
    dead = publishers(queue, url=f"amqp://guest:s3cr3t-pw@127.0.0.1:{free_port()}/")
    relay = Relay(pg_engine, dead, batch_size=10, poll_interval_s=0.2, backoff_base_s=0.02, backoff_max_s=0.1)
    with running(relay) as thread:

        def attempts() -> list[int]:
            with pg_engine.connect() as conn:
                return list(conn.scalars(select(T.c.publish_attempts).order_by(T.c.id)))

        wait_until(lambda: min(attempts()) >= 3, 30, message="three failed rounds")
        assert thread.is_alive()
    assert set(statuses(pg_engine).values()) == {"pending"}
    assert relay.stats.publish_failures >= 3
    assert "s3cr3t-pw" not in caplog.text  # no URL with its password in any log line

    assert Relay(pg_engine, publishers(queue), batch_size=10, listen=False).run_once() == 5
    assert sorted(event_ids(rabbit.drain(queue))) == ids
    assert count_published(pg_engine) == 5


def test_database_outage_does_not_kill_the_loop_and_it_recovers(pg_template, rabbit, queue, publishers):
    from tests.conftest import PG_URL

    name = f"vestnik_relay_outage_{uuid.uuid4().hex[:8]}"
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    engine = make_engine(url)
    relay = Relay(engine, publishers(queue), poll_interval_s=0.2, backoff_base_s=0.02, backoff_max_s=0.2)
    try:
        with running(relay) as thread:
            wait_until(lambda: relay.stats.errors >= 3, 20, message="failed rounds while the database is away")
            assert thread.is_alive()
            with admin.connect() as conn:  # the database "comes back"
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
            ids = emit_events(engine, 3)
            wait_until(lambda: rabbit.depth(queue) == 3, 20, message="published after recovery")
        assert sorted(event_ids(rabbit.drain(queue))) == ids
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _connection_listed(connection_name: str) -> bool:
    out = subprocess.run(["rabbitmqctl", "list_connections", "client_properties"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    return connection_name in out


def test_idle_relay_keeps_its_heartbeating_connection_and_publishes_a_burst(
    pg_engine, rabbit, new_queue, publishers, amqp_url
):
    """heartbeat=2: RabbitMQ closes a connection that does no I/O for a few
    seconds.  The relay services its connection while idle; a bare publisher
    beside it does not, and loses its connection in the same idle period."""
    url = amqp_url + "?heartbeat=2"
    queue, bare_queue = new_queue(), new_queue()
    relay_name, bare_name = f"{queue}-relay", f"{queue}-bare"
    relay_publisher = publishers(queue, url=url, name=relay_name)
    bare = publishers(bare_queue, url=url, name=bare_name)
    emit_events(pg_engine, 1)
    relay = Relay(pg_engine, relay_publisher, poll_interval_s=0.5)
    with running(relay):
        wait_until(lambda: rabbit.depth(queue) == 1, 10, message="the relay connected and published")
        bare.publish(0, None)
        # Idle until the server has dropped the bare connection (about 5-6 s).
        wait_until(lambda: not _connection_listed(bare_name), 30, interval_s=0.5,
                   message="RabbitMQ closing the unserviced connection")
        assert _connection_listed(relay_name)  # the idle relay's connection is alive

        ids = emit_events(pg_engine, 50)
        wait_until(lambda: rabbit.depth(queue) == 51, 10, message="the burst published")
    assert relay_publisher.connections_opened == 1  # no reconnect was needed
    assert relay.stats.publish_failures == 0
    assert sorted(event_ids(rabbit.drain(queue)))[1:] == ids
    assert count_published(pg_engine) == 51

    # Without servicing, the first publish finds the connection dead; Dramatiq
    # retries it on a new connection and nothing is lost.
    bare.publish(1, None)
    assert bare.connections_opened == 2
    assert event_ids(rabbit.drain(bare_queue)) == [0, 1]


# ------------------------------------------------------------------ SQLite, embedded


def test_sqlite_relay_polls_and_publishes_to_the_in_process_broker(sqlite_url):
    engine = make_engine(sqlite_url)
    stub = StubBroker()
    publisher = build_publisher(Settings(database_url=sqlite_url, broker_url="stub://"), broker=stub)
    ids = emit_events(engine, 20)
    emit_events(engine, 3, commit=False)
    relay = Relay(engine, publisher, batch_size=7, poll_interval_s=0.2)
    assert relay.listener is None  # SQLite: no NOTIFY, polling only
    events = stub.queues["events"]
    try:
        with running(relay):
            wait_until(lambda: events.qsize() == 3, 10, message="20 events on the stub queue, as 3 batches")
            # the round counts its batch once it has committed, just after the publish
            wait_until(lambda: relay.stats.batches >= 3, 10, message="the third round's commit")
            assert relay.stats.batches == 3  # full batches go again at once: 7 + 7 + 6
            more = emit_events(engine, 2)
            wait_until(lambda: events.qsize() == 4, 10, message="events committed while it runs")
        published = [dramatiq.Message.decode(events.get_nowait()) for _ in range(4)]
        assert event_ids(published) == ids + more
        assert {m.actor_name for m in published} == {"handle_events"}
        assert count_published(engine) == 22
    finally:
        engine.dispose()


# ------------------------------------------------------------------ the queries


def test_claim_skips_rows_another_relay_holds(pg_engine):
    ids = emit_events(pg_engine, 5)
    with pg_engine.connect() as a, pg_engine.connect() as b:
        queries.begin_claim(a)
        queries.begin_claim(b)
        b.execute(text("SET LOCAL lock_timeout = '2s'"))  # waiting on a's locks fails the test quickly
        held = queries.claim_unpublished(a, 2)
        other = queries.claim_unpublished(b, 10)  # does not wait for a's locks
        assert [i for i, _ in held] == ids[:2]
        assert [i for i, _ in other] == ids[2:]
        assert held[0][1] == "lesson:0"
        a.rollback()
        b.rollback()


def test_queries_mark_count_and_clean_only_what_they_should(engine):
    ids = emit_events(engine, 5)
    now = utcnow()
    old = now - timedelta(days=10)
    with engine.begin() as conn:
        conn.execute(update(T).where(T.c.id == ids[0]).values(status="processed", processed_at=old))
        conn.execute(update(T).where(T.c.id == ids[1]).values(status="processed", processed_at=now))
        conn.execute(update(T).where(T.c.id == ids[2]).values(status="failed", processed_at=old))
        conn.execute(update(T).where(T.c.id == ids[3]).values(created_at=old))
    with engine.begin() as conn:
        assert queries.claim_unpublished(conn, 10) == [(ids[3], "lesson:3"), (ids[4], "lesson:4")]
        count, oldest = queries.backlog(conn)
        assert count == 2 and abs((oldest - old).total_seconds()) < 1
        # A processed event keeps its status; only pending rows are marked or counted.
        assert queries.mark_published(conn, [ids[0], ids[3]]) == 1
        assert queries.note_publish_failure(conn, [ids[1], ids[4]]) == 1
    with engine.begin() as conn:
        assert queries.delete_processed_before(conn, now - timedelta(days=7), limit=10) == 1
        assert queries.delete_processed_before(conn, now - timedelta(days=7)) == 0
        assert queries.backlog(conn)[0] == 1
        attempts = dict(conn.execute(select(T.c.id, T.c.publish_attempts)).all())
    assert statuses(engine) == {ids[1]: "processed", ids[2]: "failed", ids[3]: "published", ids[4]: "pending"}
    assert attempts[ids[4]] == 1


def test_sqlite_claim_takes_the_write_lock_up_front(sqlite_url):
    """No FOR UPDATE on SQLite: a second relay process must not claim between our SELECT and UPDATE."""
    import sqlalchemy.exc

    engine = make_engine(sqlite_url)
    emit_events(engine, 2)
    try:
        with engine.connect() as a, engine.connect() as b:
            queries.begin_claim(a)
            assert len(queries.claim_unpublished(a, 10)) == 2
            b.exec_driver_sql("PRAGMA busy_timeout = 100")
            with pytest.raises(sqlalchemy.exc.OperationalError, match="locked"):
                queries.begin_claim(b)
            a.rollback()
    finally:
        engine.dispose()


# ------------------------------------------------------------------ batches grow when workers are behind


def test_a_full_window_holds_new_events_back_until_a_batch_is_handled_then_sends_them_as_one(sqlite_url):
    engine = make_engine(sqlite_url)
    stub = StubBroker()
    publisher = build_publisher(Settings(database_url=sqlite_url, broker_url="stub://"), broker=stub)
    first = emit_events(engine, 1)
    relay = Relay(engine, publisher, poll_interval_s=0.05, max_in_flight=1, hold_max_s=600, in_flight_ttl_s=600)
    events = stub.queues["events"]
    try:
        with running(relay):
            wait_until(lambda: events.qsize() == 1, 10, message="the first event published")
            later = emit_events(engine, 3) + emit_events(engine, 2)  # two CRM commits while it is not handled
            wait_until(lambda: relay.stats.holds >= 1, 10, message="the relay holding")
            assert events.qsize() == 1  # held in the outbox while the one batch in flight is not handled
            with engine.begin() as conn:  # a worker handles the first event
                conn.execute(update(T).where(T.c.id.in_(first)).values(status=OutboxStatus.processed.value))
            wait_until(lambda: events.qsize() == 2, 10, message="the held events published")
        published = [dramatiq.Message.decode(events.get_nowait()) for _ in range(2)]
        assert [event_ids([m]) for m in published] == [first, later]  # together, in one message
    finally:
        engine.dispose()


def test_without_a_window_or_once_a_batch_is_old_the_relay_never_holds(sqlite_url):
    engine = make_engine(sqlite_url)
    stub = StubBroker()
    publisher = build_publisher(Settings(database_url=sqlite_url, broker_url="stub://"), broker=stub)
    try:
        for relay in (Relay(engine, publisher, max_in_flight=0),
                      Relay(engine, publisher, max_in_flight=1, in_flight_ttl_s=0.0)):
            for _ in range(3):
                emit_events(engine, 1)
                relay._hold_while_behind()
                assert relay.run_once() == 1
            assert relay.stats.holds == 0
    finally:
        engine.dispose()


def test_a_backlog_is_not_held_only_the_trickle_after_it(sqlite_url):
    """Rounds that claim whole batches go again at once (an outbox drained after an outage keeps its
    pace); the first round short of a batch, with the window full, holds."""
    engine = make_engine(sqlite_url)
    stub = StubBroker()
    publisher = build_publisher(Settings(database_url=sqlite_url, broker_url="stub://"), broker=stub)
    backlog = emit_events(engine, 12)
    relay = Relay(engine, publisher, batch_size=5, poll_interval_s=0.05, max_in_flight=1, hold_max_s=600,
                  in_flight_ttl_s=600)
    events = stub.queues["events"]
    try:
        with running(relay):
            # Not held: a hold lasts up to hold_max_s (600 s) while the window is full, which it is from
            # the first batch on (nothing is handled here).  Once the backlog is out the relay may hold
            # at once, with nothing pending, so its holds are not counted here (that raced the test).
            wait_until(lambda: events.qsize() == 3, 10, message="the backlog published: 5 + 5 + 2")
            later = emit_events(engine, 1)
            wait_until(lambda: relay.stats.holds >= 1, 10, message="the relay holding")
            assert events.qsize() == 3
            with engine.begin() as conn:
                conn.execute(update(T).where(T.c.id.in_(backlog)).values(status=OutboxStatus.processed.value))
            wait_until(lambda: events.qsize() == 4, 10, message="the held event published")
        published = [dramatiq.Message.decode(events.get_nowait()) for _ in range(4)]
        assert [event_ids([m]) for m in published] == [backlog[:5], backlog[5:10], backlog[10:], later]
    finally:
        engine.dispose()
