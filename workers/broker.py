"""The Dramatiq broker, built from settings by a callable (never the implicit
global broker), and the one rule for waking delivery: :func:`wake_channel`."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Middleware

from vestnik.shared.config import Settings

DELIVER = "deliver_notification"  # one row by id: messages of older versions still in a queue
PUMP = "pump_channel"
MAINTENANCE_QUEUE = "maintenance"
BROADCASTS_QUEUE = "broadcasts"
EXPAND_BROADCAST = "expand_broadcast"


def delivery_queue(channel: str) -> str:
    """One queue per channel, so a slow channel never starves another."""
    return f"deliver.{channel}"


def build_broker(settings: Settings, middleware: list[Middleware] | None = None, *,
                 component: str = "worker") -> dramatiq.Broker:
    if settings.embedded:
        broker: dramatiq.Broker = StubBroker()
    else:
        from vestnik.shared.amqp import VestnikRabbitmqBroker

        # Quorum queues, named connections (shared/amqp.py); confirm_delivery: a publish is known
        # to be stored before we go on.
        broker = VestnikRabbitmqBroker(url=settings.broker_url, component=component, confirm_delivery=True,
                                       delivery_limit=settings.broker_delivery_limit)
        from vestnik.workers.middleware.poison import PoisonMessages

        broker.add_middleware(PoisonMessages(settings.broker_delivery_limit))
    broker.add_middleware(CurrentMessage())  # delivery reads the limiter's verdict from the message
    from vestnik.workers.middleware.heartbeat import Heartbeat

    broker.add_middleware(Heartbeat())  # `vestnik health worker`
    if settings.worker_metrics_port and not settings.embedded:
        add_prometheus(broker, settings.worker_metrics_port)
    for m in middleware or []:
        broker.add_middleware(m)
    return broker


def wake_channel(broker: dramatiq.Broker, channel: str, *, delay_s: float | None = None, copies: int = 1) -> None:
    """Wake ``copies`` pumps of a channel: each claims a batch of its due rows from the database.

    The message carries no row: the database is the queue (docs/operations.md,
    "Delivery in batches"), so a wake that is lost, repeated or early costs at
    most an empty claim, and a row can never be orphaned by a lost message.
    """
    delay_ms = int(delay_s * 1000) if delay_s else None
    for _ in range(max(1, copies)):
        broker.enqueue(dramatiq.Message(queue_name=delivery_queue(channel), actor_name=PUMP, args=(channel,),
                                        kwargs={}, options={"channel": channel}), delay=delay_ms)


def prometheus_environment(port: int) -> dict[str, str]:
    """What Dramatiq's Prometheus middleware reads from the environment, at import time."""
    import os
    import tempfile

    return {
        "dramatiq_prom_host": os.environ.get("dramatiq_prom_host", "0.0.0.0"),  # noqa: S104 - for the scraper
        "dramatiq_prom_port": str(port),
        # per port: two worker groups on one host do not mix their counts
        "dramatiq_prom_db": os.path.join(tempfile.gettempdir(), f"vestnik-prometheus-{port}"),
    }


def add_prometheus(broker: dramatiq.Broker, port: int) -> None:
    """Dramatiq's Prometheus middleware (with Vestnik's counters, ``workers/metrics.py``) on ``port``.

    ``vestnik worker`` sets the environment before Dramatiq's CLI starts
    (``prometheus_environment``); this sets it again for other embedders.
    """
    import os

    for key, value in prometheus_environment(port).items():
        os.environ.setdefault(key, value)
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())
