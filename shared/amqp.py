"""RabbitMQ as Vestnik declares it: quorum queues, a delivery limit, named connections, several nodes.

Every Vestnik queue is a **quorum queue** (replicated over the cluster's
nodes, durable, safe through a node's loss), and so are Dramatiq's delay
(``.DQ``) and dead-letter (``.XQ``) queues.  Vestnik declares them itself,
with identical arguments from the relay, the workers and the scheduler: a
queue declared twice with different arguments is refused by RabbitMQ (406).
A queue's type is fixed when it is created, never by a policy: moving from
classic queues is a migration (docs/operations.md).

- ``x-delivery-limit``: a message handed out that many times without being
  acked (its worker died on it each time: a poison message) is dead-lettered
  to ``.XQ`` by RabbitMQ.  Before that happens, the worker's
  ``PoisonMessages`` middleware (``workers/middleware/poison.py``) sees the
  count RabbitMQ puts in the ``x-delivery-count`` header and marks the
  notification or event failed with the reason, so nothing disappears
  without an admin seeing it.
- No ``x-max-priority``: quorum queues refuse it before RabbitMQ 4.0.
- ``connection_name``: every connection is named in the management UI
  (``vestnik-worker host:pid``, ``vestnik-relay host:pid``, ...).
- ``VESTNIK_BROKER_URL`` may list several nodes separated by ``;``; pika
  tries them in order when connecting (a client-side list of the cluster's
  nodes, no load balancer needed).

Dramatiq has no queue-type option (dramatiq PRs #869, #871), so this
subclass overrides its queue-argument methods (private API, pinned by the
tests in ``tests/integration/test_quorum_queues.py``).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker, _RabbitmqConsumer, xq_name

#: deliveries of one message before RabbitMQ dead-letters it (the middleware acts one earlier)
DELIVERY_LIMIT = 5
#: the header RabbitMQ's quorum queues put on a redelivered message
DELIVERY_COUNT_HEADER = "x-delivery-count"


def connection_name(component: str) -> str:
    """``vestnik-<component> <host>:<pid>``: who holds a connection, as the management UI shows it."""
    return f"vestnik-{component} {socket.gethostname()}:{os.getpid()}"


def node_parameters(url: str, component: str, *, timeout_s: float | None = None) -> list[Any]:
    """pika's parameters for each node of ``url`` (``;``-separated), the connection named; with
    ``timeout_s``, one quick attempt per node (a probe: health, metrics, start-up checks)."""
    import pika

    nodes = [pika.URLParameters(node.strip()) for node in url.split(";")]
    for params in nodes:
        params.client_properties = {**(params.client_properties or {}), "connection_name": connection_name(component)}
        if timeout_s is not None:
            params.socket_timeout = params.blocked_connection_timeout = timeout_s
            params.connection_attempts = 1
    return nodes


class _CountingConsumer(_RabbitmqConsumer):
    """Dramatiq's consumer, keeping RabbitMQ's delivery count in the message's options."""

    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        inner = self.iterator

        def counted():  # noqa: ANN202 - a generator of pika's (method, properties, body)
            for method, properties, body in inner:
                if method is not None:
                    headers = getattr(properties, "headers", None) or {}
                    self._count = int(headers.get(DELIVERY_COUNT_HEADER) or 0)
                yield method, properties, body

        self._count = 0
        self.iterator = counted()

    def __next__(self):  # noqa: ANN204 - Dramatiq's MessageProxy or None
        message = super().__next__()
        if message is not None:
            message.options["delivery_count"] = self._count
        return message


class VestnikRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker with quorum queues and named connections (see the module docstring)."""

    def __init__(self, *, url: str, component: str, delivery_limit: int = DELIVERY_LIMIT, **kwargs: Any) -> None:
        super().__init__(url=url, **kwargs)
        self.delivery_limit = delivery_limit
        name = connection_name(component)
        params = self.parameters if isinstance(self.parameters, list) else [self.parameters]
        for p in params:
            p.client_properties = {**(p.client_properties or {}), "connection_name": name}

    @property
    def consumer_class(self) -> type:
        return _CountingConsumer

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": xq_name(queue_name),
        }

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return self.channel.queue_declare(
            queue=xq_name(queue_name), durable=True,
            # Dead messages expire after Dramatiq's week (a static TTL: expiry is head-first).
            arguments={"x-queue-type": "quorum", "x-message-ttl": DEAD_MESSAGE_TTL},
        )
