"""The relay: committed outbox rows -> the broker, with publisher confirms.

One round (:meth:`Relay.run_once`) is one database transaction: claim a batch
of pending rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several relays
share the work), publish the batch as one message (``outbox/contract.py``)
and wait for RabbitMQ's confirm, mark the confirmed events published, commit.  Nothing is marked before it is confirmed,
so nothing is lost.  A crash between a confirm and the commit publishes those
events again later: a transport duplicate, which ``handle_event`` absorbs
(it locks the row and skips it once processed).

Between rounds the relay waits for PostgreSQL's NOTIFY (sent at commit by a
trigger on ``outbox_events``) and polls anyway after ``poll_interval_s``:
NOTIFY is lost while the listener is away, so it is a hint and polling is the
truth.  A dead LISTEN connection is reopened, never fatal.  SQLite has no
NOTIFY: the embedded demo polls with a short interval.

Batches grow when workers are behind.  The relay publishes at once what it
claims, so a trickle of events goes out one event per message, each with its
own handling transaction and sends: the cheapest path when workers keep up,
the dearest when they do not (a one-event batch costs several times the CPU
per message of a batch of many), and a backlog of one-event messages in the
broker keeps every message small just when CPU is short.  So the relay keeps
the events of its last batches (``max_in_flight``) and, once that many are
published but not yet handled, holds new events back (re-checking every
``_HOLD_POLL_S``, at most ``hold_max_s``): they wait in the outbox and go out
together as soon as a batch is handled.  A backlog is not held (a round that
claimed a whole batch goes again at once: its batches are as large as they
get, and a relay draining the outbox after an outage keeps its pace).  A
batch counts for ``in_flight_ttl_s``
at most (an event waiting for its predecessor stays published), and a relay
that restarts starts with an empty window: holding is an optimisation, never
a condition for publishing.

Transient outages (PostgreSQL or RabbitMQ down) are retried with capped,
jittered exponential backoff; the loop never dies of them.  While idle the
relay services its AMQP connection's heartbeats, because a pika
``BlockingConnection`` that does no I/O is closed by the server
(``StreamLostError``, pika #564/#1104) and the next burst would start with a
failed publish.  Should it die anyway, Dramatiq's ``enqueue`` drops the
connection and retries on a new one.

pika connections are not thread-safe: a relay and its publisher belong to
one thread.  Run several relays as several threads or processes, each with
its own publisher.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from sqlalchemy import Engine

from vestnik.outbox import queries
from vestnik.outbox.contract import EVENTS_QUEUE, event_message, events_message
from vestnik.shared import faults, heartbeat, timeline
from vestnik.shared.config import Settings
from vestnik.shared.db import is_postgres, safe_url

log = logging.getLogger("vestnik.relay")

NOTIFY_CHANNEL = "vestnik_outbox"  # migrations/versions/0001: the trigger's channel

# Waits are cut into slices this long: between slices the AMQP connection is
# serviced (heartbeats) and the stop event is checked.  Well below any sane
# heartbeat interval (RabbitMQ closes after about two missed ones).
_SLICE_S = 0.5
#: while the window of batches in flight is full, how often the relay looks whether one was handled
_HOLD_POLL_S = 0.01


class PublishFailed(Exception):
    """A publish was not confirmed; the events from it on stay pending."""

    def __init__(self, confirmed: int, left_pending: int) -> None:
        super().__init__(f"publish failed after {confirmed} confirmed; {left_pending} left pending")
        self.confirmed = confirmed
        self.left_pending = left_pending


# ------------------------------------------------------------------ publishers


class PartlyPublished(Exception):
    """The first ``confirmed`` events of a batch were confirmed, the rest not (the cause is chained)."""

    def __init__(self, confirmed: int) -> None:
        super().__init__(f"{confirmed} confirmed")
        self.confirmed = confirmed


class Publisher:
    """Hands events to the broker.

    ``publish_batch`` returns only once the broker has the batch (RabbitMQ: its
    confirm arrived) and raises otherwise (:class:`PartlyPublished` when the
    first events of it are known to be stored).  The base class publishes a
    batch event by event with ``publish``; the broker publishers send one
    message per batch.  ``keepalive`` is called while the relay is idle;
    ``close`` once at the end.  Both default to doing nothing.
    """

    def publish(self, event_id: int, key: str | None) -> None:
        raise NotImplementedError

    def publish_batch(self, events: list[tuple[int, str | None]]) -> None:
        for done, (event_id, key) in enumerate(events):
            try:
                self.publish(event_id, key)
            except Exception as exc:
                raise PartlyPublished(done) from exc

    def keepalive(self) -> None:
        """Service the connection while idle (heartbeats); never raises."""

    def close(self) -> None:
        """Release connections; the publisher is not used afterwards."""


class CallablePublisher(Publisher):
    """A plain ``publish(event_id, key)`` function as a publisher (tests, custom transports)."""

    def __init__(self, publish: Callable[[int, str | None], None]) -> None:
        self._publish = publish

    def publish(self, event_id: int, key: str | None) -> None:
        self._publish(event_id, key)


class BrokerPublisher(Publisher):
    """Enqueues on a Dramatiq broker the caller owns (the embedded demo's ``StubBroker``).

    ``close`` leaves the broker alone: its owner closes it.
    """

    def __init__(self, broker: dramatiq.Broker, *, queue_name: str = EVENTS_QUEUE) -> None:
        if getattr(broker, "confirm_delivery", True) is False:
            raise ValueError("a RabbitMQ broker without confirm_delivery cannot tell a stored publish "
                             "from a lost one; use RabbitmqPublisher")
        self.broker = broker
        self.queue_name = queue_name
        broker.declare_queue(queue_name)

    def publish(self, event_id: int, key: str | None) -> None:
        self.broker.enqueue(event_message(event_id, key, self.queue_name))

    def publish_batch(self, events: list[tuple[int, str | None]]) -> None:
        self.broker.enqueue(events_message([event_id for event_id, _ in events], self.queue_name))


class RabbitmqPublisher(Publisher):
    """Publishes to RabbitMQ through Dramatiq's broker, with publisher confirms.

    Dramatiq's ``RabbitmqBroker(confirm_delivery=True)`` waits for the confirm
    in ``basic_publish`` and raises on a nack, an unroutable message or a lost
    connection; ``enqueue`` retries those on a fresh connection (up to 6
    attempts) and then raises ``ConnectionClosed``.  A retry after a lost
    confirm may store the message twice: a transport duplicate, absorbed by
    the worker.  Queues are declared the way the workers declare them
    (durable, with Dramatiq's delay and dead-letter queues), so their
    arguments match.

    ``blocked_connection_timeout_s``: RabbitMQ blocks publishers during a
    memory or disk alarm; without a timeout the relay would wait forever
    holding its claim.  ``connection_name`` shows in the management UI.
    """

    def __init__(
        self,
        url: str,
        *,
        queue_name: str = EVENTS_QUEUE,
        connection_name: str | None = None,
        blocked_connection_timeout_s: float = 30.0,
        delivery_limit: int = 10,
    ) -> None:
        from vestnik.shared.amqp import VestnikRabbitmqBroker

        self.queue_name = queue_name
        # No middleware: the relay only enqueues, and must not inherit worker behaviour.  The same
        # quorum-queue declaration as the workers' (shared/amqp.py): RabbitMQ refuses a mismatch.
        self.broker = VestnikRabbitmqBroker(url=url, component="relay", confirm_delivery=True, middleware=[],
                                            delivery_limit=delivery_limit)
        params = self.broker.parameters if isinstance(self.broker.parameters, list) else [self.broker.parameters]
        for p in params:
            if connection_name:
                p.client_properties = {**(p.client_properties or {}), "connection_name": connection_name}
            if p.blocked_connection_timeout is None:
                p.blocked_connection_timeout = blocked_connection_timeout_s
        self.broker.declare_queue(queue_name)
        self.connections_opened = 0  # for logs and tests: 1 + reconnects

    def _current_connection(self) -> Any:
        # The broker keeps one connection per thread in ``state``; reading it
        # directly never opens one (the ``connection`` property would).
        return getattr(self.broker.state, "connection", None)

    def publish(self, event_id: int, key: str | None) -> None:
        self._enqueue(event_message(event_id, key, self.queue_name))

    def publish_batch(self, events: list[tuple[int, str | None]]) -> None:
        """One message and one confirm for the whole batch."""
        self._enqueue(events_message([event_id for event_id, _ in events], self.queue_name))

    def _enqueue(self, message: dramatiq.Message) -> None:
        before = self._current_connection()
        self.broker.enqueue(message)
        if self._current_connection() is not before:
            self.connections_opened += 1
            log.info("connected to the broker", extra={"action": "relay.amqp_connected",
                                                        "connections_opened": self.connections_opened})

    def keepalive(self) -> None:
        connection = self._current_connection()
        if connection is None:
            return  # connect lazily at the next publish, not in a loop while the broker is down
        try:
            connection.process_data_events(time_limit=0)  # sends/receives heartbeats
        except Exception as exc:  # noqa: BLE001 - any failure here means: drop it, reconnect on publish
            log.info("broker connection lost while idle; reconnecting at the next publish",
                     extra={"action": "relay.amqp_lost", "error": type(exc).__name__})
            del self.broker.connection

    def close(self) -> None:
        self.broker.close()


def build_publisher(
    settings: Settings, *, broker: dramatiq.Broker | None = None, queue_name: str = EVENTS_QUEUE
) -> Publisher:
    """The publisher for ``settings.broker_url``.

    ``amqp://``: a :class:`RabbitmqPublisher` with its own connection (confirms
    on).  ``stub://`` (embedded): a :class:`BrokerPublisher` on the in-process
    broker the caller passes in, since that broker only exists in its process.
    """
    if settings.embedded:
        if broker is None:
            raise ValueError("the embedded relay needs the in-process broker passed in (broker=...)")
        return BrokerPublisher(broker, queue_name=queue_name)
    return RabbitmqPublisher(settings.broker_url, queue_name=queue_name, delivery_limit=settings.broker_delivery_limit)


def as_publisher(target: Publisher | dramatiq.Broker | Callable[[int, str | None], None]) -> Publisher:
    """Accept what callers naturally have: a publisher, a Dramatiq broker or a function."""
    if isinstance(target, Publisher):
        return target
    if isinstance(target, dramatiq.Broker):
        return BrokerPublisher(target)
    if callable(target):
        return CallablePublisher(target)
    raise TypeError(f"not a publisher, broker or publish callable: {target!r}")


# ------------------------------------------------------------------ helpers


class Backoff:
    """Capped exponential backoff with jitter: 0.5, 1, 2, ... ``max_s``, each
    drawn from the upper half of its step, so relays that failed together
    do not retry together."""

    def __init__(self, base_s: float = 0.5, max_s: float = 30.0) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.failures = 0

    def next_delay_s(self) -> float:
        step = min(self.max_s, self.base_s * 2 ** min(self.failures, 30))
        self.failures += 1
        return random.uniform(step / 2, step)

    def reset(self) -> None:
        self.failures = 0


class _Listener:
    """``LISTEN vestnik_outbox`` on a dedicated psycopg connection (autocommit).

    Errors never leave this class: a broken connection is closed and reopened
    later (with its own backoff), and meanwhile the relay just polls.
    TCP keepalives make a silently dropped connection fail instead of
    waiting forever for notifications that will not come.
    """

    def __init__(self, engine: Engine, channel: str = NOTIFY_CHANNEL, component: str = "relay") -> None:
        # The scheduler listens the same way on its own channel (workers/release.py).
        self.channel, self._component = channel, component
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._where = safe_url(str(engine.url))
        self._conn: Any = None
        self._backoff = Backoff(0.5, 30.0)
        self._retry_at = 0.0
        self.pid: int | None = None  # the listener's backend pid (tests kill it)
        self.opened = 0

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def ensure_open(self) -> None:
        if self._conn is not None or time.monotonic() < self._retry_at:
            return
        import psycopg

        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5, keepalives=1,
                                   keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
            conn.execute(f"LISTEN {self.channel}")
        except psycopg.Error as exc:
            delay = self._backoff.next_delay_s()
            self._retry_at = time.monotonic() + delay
            log.warning("cannot LISTEN; polling meanwhile", extra={
                "action": f"{self._component}.listen_failed", "database": self._where, "retry_in_s": round(delay, 2),
                "error": type(exc).__name__})
            return
        self._conn = conn
        self.pid = conn.info.backend_pid
        self.opened += 1
        log.debug("listening", extra={"action": f"{self._component}.listening", "channel": self.channel,
                                      "pid": self.pid})

    def wait(self, timeout_s: float) -> bool:
        """True when a notification came within ``timeout_s`` (all pending ones are consumed)."""
        if self._conn is None:
            return False
        import psycopg

        try:
            got = any(True for _ in self._conn.notifies(timeout=timeout_s, stop_after=1))
            if got:  # one wake-up for a burst of commits
                for _ in self._conn.notifies(timeout=0):
                    pass
        except psycopg.Error as exc:
            # Reopen after a short backoff: a listener that keeps dying at
            # once must not turn the loop into a busy poll.
            delay = self._backoff.next_delay_s()
            self._retry_at = time.monotonic() + delay
            log.warning("LISTEN connection lost; polling meanwhile", extra={
                "action": f"{self._component}.listener_lost", "retry_in_s": round(delay, 2),
                "error": type(exc).__name__})
            self.close()
            return False
        self._backoff.reset()
        return got

    def close(self) -> None:
        conn, self._conn, self.pid = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # it is gone either way
                conn.close()


@dataclass
class RelayStats:
    """Counters since start, for logs, metrics and tests."""

    batches: int = 0  # rounds that claimed at least one row
    published: int = 0  # confirmed by the broker (a republish after a crash counts again)
    publish_failures: int = 0  # rounds that stopped at an unconfirmed publish
    errors: int = 0  # rounds that failed otherwise (database down, ...)
    notify_wakeups: int = 0  # waits ended early by a NOTIFY
    holds: int = 0  # rounds that waited for a batch in flight to be handled


# ------------------------------------------------------------------ the relay


class Relay:
    """Moves committed outbox rows to the broker; see the module docstring.

    ``publisher`` is a :class:`Publisher`, a Dramatiq broker (wrapped in a
    :class:`BrokerPublisher`) or a plain ``publish(event_id, key)`` callable.
    ``listen`` defaults to True on PostgreSQL (NOTIFY) and is impossible on
    SQLite.  Use one relay from one thread.
    """

    def __init__(
        self,
        engine: Engine,
        publisher: Publisher | dramatiq.Broker | Callable[[int, str | None], None],
        *,
        batch_size: int = 100,
        poll_interval_s: float = 1.0,
        stop_event: threading.Event | None = None,
        listen: bool | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_in_flight: int = 0,
        hold_max_s: float = 0.2,
        in_flight_ttl_s: float = 1.0,
    ) -> None:
        if batch_size < 1 or poll_interval_s <= 0:
            raise ValueError("batch_size must be >= 1 and poll_interval_s > 0")
        if max_in_flight < 0:
            raise ValueError("max_in_flight must not be negative")
        self.engine = engine
        self.publisher = as_publisher(publisher)
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.stop_event = stop_event or threading.Event()
        postgres = is_postgres(engine)
        if listen and not postgres:
            raise ValueError("LISTEN/NOTIFY needs PostgreSQL")
        self.listener = _Listener(engine) if (postgres if listen is None else listen) else None
        self.backoff = Backoff(backoff_base_s, backoff_max_s)
        self.stats = RelayStats()
        #: see "Batches grow when workers are behind" in the module docstring (0: never hold)
        self.max_in_flight = max_in_flight
        self.hold_max_s = hold_max_s
        self.in_flight_ttl_s = in_flight_ttl_s
        self._in_flight: list[tuple[float, list[int]]] = []  # (published at, event ids) of recent batches

    def run_once(self) -> int:
        """Claim, publish and mark one batch in one transaction; return how many were published.

        If a publish fails, the events confirmed before it are still marked and
        committed, the rest stay pending with ``publish_attempts`` + 1, and
        :class:`PublishFailed` is raised (after the commit) so the caller backs off.
        """
        started = time.monotonic()
        confirmed: list[int] = []
        failure: Exception | None = None
        with self.engine.connect() as conn:
            queries.begin_claim(conn)
            rows = queries.claim_unpublished(conn, self.batch_size)
            if not rows:
                conn.rollback()
                return 0
            if timeline.ON:
                timeline.mark("relay.claimed", [event_id for event_id, _ in rows])
            try:
                self.publisher.publish_batch(rows)
                confirmed = [event_id for event_id, _ in rows]
                timeline.mark("relay.confirmed", confirmed)
            except PartlyPublished as exc:  # these were stored; the rest stay pending
                confirmed = [event_id for event_id, _ in rows[:exc.confirmed]]
                failure = exc.__cause__ or exc
            except Exception as exc:  # noqa: BLE001 - the batch stays pending
                failure = exc
            if confirmed:
                faults.hit("relay.after_publish")  # crash test: confirmed, not yet marked
            queries.mark_published(conn, confirmed)
            unpublished = [event_id for event_id, _ in rows[len(confirmed):]]
            queries.note_publish_failure(conn, unpublished)
            conn.commit()
        timeline.mark("relay.committed", confirmed)
        if confirmed and self.max_in_flight:
            self._in_flight.append((time.monotonic(), confirmed))
        self.stats.batches += 1
        self.stats.published += len(confirmed)
        log.info("batch published", extra={
            "action": "relay.batch", "claimed": len(rows), "published": len(confirmed),
            "first_id": rows[0][0], "duration_ms": round((time.monotonic() - started) * 1000, 1)})
        if failure is not None:
            self.stats.publish_failures += 1
            raise PublishFailed(len(confirmed), len(unpublished)) from failure
        return len(confirmed)

    def run_forever(self) -> None:
        """Loop until the stop event is set; the batch in flight is finished first.

        A full batch means more may be waiting: go again at once.  Otherwise
        wait for a NOTIFY, at most ``poll_interval_s``, then poll anyway.
        """
        log.info("relay started", extra={
            "action": "relay.start", "database": safe_url(str(self.engine.url)),
            "batch_size": self.batch_size, "poll_interval_s": self.poll_interval_s,
            "listen": self.listener is not None})
        full = False  # the last round claimed a whole batch: more are waiting, holding would not grow it
        try:
            while not self.stop_event.is_set():
                heartbeat.beat("relay")  # the loop turns: `vestnik health relay`
                if self.listener is not None:
                    # LISTEN before the claim: a commit after it is notified,
                    # one before it is seen by the claim.
                    self.listener.ensure_open()
                try:
                    if not full:
                        self._hold_while_behind()
                    count = self.run_once()
                except PublishFailed as exc:
                    self._back_off("publish not confirmed; events stay pending", "relay.publish_failed", exc)
                    continue
                except Exception as exc:  # noqa: BLE001 - database down and the like: back off, never die
                    self.stats.errors += 1
                    self._back_off("relay round failed", "relay.round_failed", exc)
                    continue
                self.backoff.reset()
                full = count >= self.batch_size
                if not full:
                    self._wait_for_work(self.poll_interval_s)
        finally:
            if self.listener is not None:
                self.listener.close()
            log.info("relay stopped", extra={"action": "relay.stop", "published_total": self.stats.published})

    def _window_full(self) -> bool:
        """``max_in_flight`` recent batches are published and not yet handled (looked up by id)."""
        if not self.max_in_flight:
            return False
        now = time.monotonic()
        self._in_flight = [(at, ids) for at, ids in self._in_flight if now - at < self.in_flight_ttl_s]
        if len(self._in_flight) < self.max_in_flight:
            return False
        with self.engine.connect() as conn:
            waiting = set(queries.still_published(conn, [i for _, ids in self._in_flight for i in ids]))
            conn.rollback()
        self._in_flight = [(at, ids) for at, ids in self._in_flight if waiting.intersection(ids)]
        return len(self._in_flight) >= self.max_in_flight

    def _hold_while_behind(self) -> None:
        """While the window is full, let new events gather in the outbox (at most ``hold_max_s``)."""
        if not self._window_full():
            return
        self.stats.holds += 1
        deadline = time.monotonic() + self.hold_max_s
        while not self.stop_event.wait(_HOLD_POLL_S) and time.monotonic() < deadline and self._window_full():
            pass

    @property
    def published_total(self) -> int:
        """Events confirmed since start (``stats.published``; bench/relay_latency.py reads it)."""
        return self.stats.published

    def stop(self) -> None:
        self.stop_event.set()

    def _back_off(self, message: str, action: str, exc: BaseException) -> None:
        delay = self.backoff.next_delay_s()
        cause = exc.__cause__ or exc
        log.warning(message, extra={"action": action, "retry_in_s": round(delay, 2),
                                    "error": f"{type(cause).__name__}: {str(cause)[:200]}"})
        self._wait_for_work(delay, wake_on_notify=False)

    def _wait_for_work(self, timeout_s: float, *, wake_on_notify: bool = True) -> None:
        """Wait up to ``timeout_s`` in short slices, servicing the AMQP
        connection between them; return early on stop or on a NOTIFY."""
        deadline = time.monotonic() + timeout_s
        while not self.stop_event.is_set():
            self.publisher.keepalive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            slice_s = min(remaining, _SLICE_S)
            if wake_on_notify and self.listener is not None and self.listener.is_open:
                if self.listener.wait(slice_s):
                    self.stats.notify_wakeups += 1
                    return
                if not self.listener.is_open:
                    return  # it just died: poll now, reopen on the next round
            else:
                self.stop_event.wait(slice_s)


def main(settings: Settings) -> int:
    """``vestnik relay``: run until SIGTERM or SIGINT; the batch in flight finishes first."""
    from vestnik.shared.db import make_engine
    from vestnik.shared.logs import configure_logging

    configure_logging(settings)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping after the current batch", extra={"action": "relay.stopping",
                                                             "signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # Its commits need not wait for the disk: a "published" mark lost in a database crash publishes the
    # event again (a duplicate the worker absorbs), and the worker's own commit, which does wait, comes
    # later in the log and makes the mark durable with it.  The handler locks the rows this transaction
    # holds, so every millisecond of this commit is on the way from the CRM's commit to the send.
    engine = make_engine(settings.database_url, pool_size=2, synchronous_commit=False)
    publisher = build_publisher(settings)
    log.info("publishing", extra={"action": "relay.broker", "broker": safe_url(settings.broker_url)})
    relay = Relay(engine, publisher, batch_size=settings.relay_batch_size,
                  poll_interval_s=settings.relay_poll_interval_s, stop_event=stop,
                  max_in_flight=settings.relay_max_in_flight)
    try:
        relay.run_forever()
    finally:
        publisher.close()
        engine.dispose()
    return 0
