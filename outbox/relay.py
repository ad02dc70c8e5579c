"""The relay: committed outbox rows -> RabbitMQ, with publisher confirms.

Each round claims a batch (``FOR UPDATE SKIP LOCKED``, so several relays
share the work), publishes each event and waits for the broker's confirm,
marks the confirmed ones published and commits.  A crash after a publish and
before the commit publishes those events again later: a transport duplicate,
absorbed by ``handle_event``.  Nothing is marked before it is confirmed, so
nothing is lost.

It wakes on PostgreSQL's NOTIFY (sent at commit by a trigger) and polls
anyway: NOTIFY is a hint, lost while the listener is away; polling is the
truth.  Database or broker outages are retried with capped, jittered backoff.
The AMQP connection is serviced while idle (heartbeats), so an idle relay
does not find a dead connection when a burst comes.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from typing import Protocol

import dramatiq
from sqlalchemy import Engine

from outbox import queries
from shared import faults
from shared.config import Settings
from shared.db import is_postgres, normalise_url, safe_url
from workers.broker import EVENTS_QUEUE, event_message

log = logging.getLogger("vestnik.relay")

NOTIFY_CHANNEL = "vestnik_outbox"
MAX_BACKOFF_S = 30.0


class Publisher(Protocol):
    def publish(self, event_id: int, key: str | None) -> None: ...
    def keepalive(self) -> None: ...
    def close(self) -> None: ...


class BrokerPublisher:
    """Publishes through a Dramatiq broker (RabbitMQ with confirms, or the in-process one)."""

    def __init__(self, broker: dramatiq.Broker, queue_name: str = EVENTS_QUEUE) -> None:
        self.broker = broker
        self.queue_name = queue_name
        broker.declare_queue(queue_name)

    def publish(self, event_id: int, key: str | None) -> None:
        message = event_message(event_id, key)
        if self.queue_name != EVENTS_QUEUE:
            message = message.copy(queue_name=self.queue_name)
        self.broker.enqueue(message)  # RabbitMQ: returns only once the broker confirmed it

    def keepalive(self) -> None:
        connection = getattr(self.broker, "connection", None)  # RabbitMQ: this thread's connection
        if connection is not None and getattr(connection, "is_open", False):
            connection.process_data_events(time_limit=0)

    def close(self) -> None:
        self.broker.close()


def build_publisher(settings: Settings, *, broker: dramatiq.Broker | None = None,
                    queue_name: str = EVENTS_QUEUE) -> BrokerPublisher:
    if broker is None:
        if settings.embedded:
            raise ValueError("the embedded relay needs the in-process broker passed in")
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
    return BrokerPublisher(broker, queue_name)


class _Listener:
    """LISTEN on a dedicated psycopg connection; reopened whenever it breaks."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url).replace("postgresql+psycopg://", "postgresql://")
        self.conn = None

    def wait(self, timeout_s: float) -> bool:
        import psycopg

        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            got = False
            for _ in self.conn.notifies(timeout=timeout_s, stop_after=1):
                got = True
            return got
        except psycopg.Error:
            self.close()
            time.sleep(min(timeout_s, 1.0))
            return False

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None


class Relay:
    def __init__(self, engine: Engine, publisher: Publisher, *, batch_size: int = 100, poll_interval_s: float = 1.0,
                 stop_event: threading.Event | None = None, listen: bool = True) -> None:
        self.engine = engine
        self.publisher = publisher
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.stop_event = stop_event or threading.Event()
        self.listener = _Listener(str(engine.url.render_as_string(hide_password=False))) \
            if listen and is_postgres(engine) else None
        self.published_total = 0

    def run_once(self) -> int:
        """One batch in one transaction; returns how many events were confirmed.

        If a publish fails, the ones confirmed before it are still marked and
        committed, the rest stay pending, and PublishFailed tells the loop to back off.
        """
        failure: Exception | None = None
        with self.engine.connect() as conn, conn.begin():
            rows = queries.claim_unpublished(conn, self.batch_size)
            confirmed: list[int] = []
            for event_id, key in rows:
                try:
                    self.publisher.publish(event_id, key)
                except Exception as exc:  # noqa: BLE001 - this and the rest stay pending
                    queries.note_publish_failure(conn, [event_id])
                    failure = exc
                    break
                confirmed.append(event_id)
                faults.hit("relay.after_publish")
            queries.mark_published(conn, confirmed)
        if confirmed:
            self.published_total += len(confirmed)
            log.info("published", extra={"action": "relay.published", "count": len(confirmed),
                                         "last_event_id": confirmed[-1]})
        if failure is not None:
            log.warning("publish failed; will retry", extra={"action": "relay.publish_failed",
                                                             "confirmed": len(confirmed),
                                                             "error": type(failure).__name__})
            raise PublishFailed(len(confirmed))
        return len(confirmed)

    def run_forever(self) -> None:
        backoff = 0.0
        log.info("relay started", extra={"action": "relay.start", "database": safe_url(str(self.engine.url))})
        while not self.stop_event.is_set():
            try:
                count = self.run_once()
                backoff = 0.0
            except Exception as exc:  # noqa: BLE001 - database or broker outage: back off, never die
                backoff = min(MAX_BACKOFF_S, max(0.5, backoff * 2))
                delay = backoff * random.uniform(0.8, 1.2)
                if not isinstance(exc, PublishFailed):
                    log.warning("relay round failed; backing off", extra={"action": "relay.backoff",
                                                                          "delay_s": round(delay, 2),
                                                                          "error": type(exc).__name__})
                self.stop_event.wait(delay)
                continue
            if count >= self.batch_size:
                continue  # more may be waiting
            self._idle()
        if self.listener is not None:
            self.listener.close()
        log.info("relay stopped", extra={"action": "relay.stop", "published": self.published_total})

    def _idle(self) -> None:
        try:
            self.publisher.keepalive()
        except Exception:  # noqa: BLE001 - a dead connection is reopened by the next publish
            log.info("broker connection dropped while idle", extra={"action": "relay.keepalive_failed"})
        if self.listener is not None:
            self.listener.wait(self.poll_interval_s)
        else:
            self.stop_event.wait(self.poll_interval_s)


class PublishFailed(Exception):
    """A batch stopped at a publish that was not confirmed (already logged)."""


def main(settings: Settings) -> int:
    """``vestnik relay``: run until SIGTERM/SIGINT; the batch in flight finishes first."""
    from shared.db import make_engine
    from shared.logs import configure_logging

    configure_logging(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    engine = make_engine(settings.database_url)
    publisher = build_publisher(settings)
    relay = Relay(engine, publisher, batch_size=settings.relay_batch_size,
                  poll_interval_s=settings.relay_poll_interval_s, stop_event=stop)
    try:
        relay.run_forever()
    finally:
        publisher.close()
        engine.dispose()
    return 0
