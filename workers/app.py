"""Worker runtime: ``setup`` builds everything a worker process needs.

``dramatiq vestnik.workers.app:setup`` (what ``vestnik worker`` runs) calls it with
no arguments: settings come from the environment.  The embedded demo and the
tests call it with their own settings and broker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dramatiq
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared.config import Settings, load_settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.logs import configure_logging
from vestnik.workers import notifications
from vestnik.workers.broker import build_broker
from vestnik.workers.channels import build_channels
from vestnik.workers.channels.base import Channel
from vestnik.workers.delivery import HORIZON_S, Delivery
from vestnik.workers.limits import Limiter, build_limiter
from vestnik.workers.middleware.ratelimit import ChannelRateLimit

log = logging.getLogger("vestnik.workers")


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    channels: dict[str, Channel]
    limiter: Limiter
    broker: dramatiq.Broker
    delivery: Delivery

    def close(self) -> None:
        self.delivery.close()
        for channel in self.channels.values():
            channel.close()
        self.engine.dispose()


_runtime: Runtime | None = None


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("vestnik.workers.app.setup() has not run in this process")
    return _runtime


def setup(settings: Settings | None = None, *, channels: dict[str, Channel] | None = None,
          component: str = "worker") -> dramatiq.Broker:
    """Build the runtime and its broker, declare the actors, and return the broker.

    ``component`` names the process's RabbitMQ connections (``vestnik-worker host:pid``).
    """
    global _runtime
    settings = settings or load_settings()
    configure_logging(settings)
    engine = make_engine(settings.database_url, pool_size=10)  # kept connections: worker threads + senders
    factory = make_session_factory(engine)
    limiter = build_limiter(settings, seed=notifications.seed_source(factory))
    broker = build_broker(settings, [ChannelRateLimit(limiter, batch_size=settings.delivery_batch_size,
                                                      horizon_s=HORIZON_S)], component=component)
    channels = channels if channels is not None else build_channels(settings)
    delivery = Delivery(factory, channels, settings, limiter=limiter)
    _runtime = Runtime(settings, engine, factory, channels, limiter, broker, delivery)
    dramatiq.set_broker(broker)

    from vestnik.workers import actors

    actors.declare(broker, runtime)
    return broker
