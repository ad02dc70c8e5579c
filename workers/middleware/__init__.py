"""Dramatiq middleware of Vestnik."""

from vestnik.workers.middleware.ratelimit import ChannelRateLimit, requeue_later

__all__ = ["ChannelRateLimit", "requeue_later"]
