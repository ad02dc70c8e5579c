"""Who is calling: the API key, its state, its rate.

``Authorization: Bearer vk_...`` (or ``X-API-Key: vk_...``).  401 when no
key is given or the key is unknown, 403 when it was revoked, 429 with
``Retry-After`` (whole seconds) when the key made ``VESTNIK_API_RATE_PER_MIN``
requests in the last minute.  The limit is a sliding window shared by every
web process through Redis (``VESTNIK_REDIS_URL``; in memory without it, which
is one process only); like the channel limits it fails closed.
"""

from __future__ import annotations

import logging
import math

from flask import current_app, g, request

from vestnik.shared import api_keys
from vestnik.shared.config import Settings
from vestnik.shared.models import ApiKey
from vestnik.webapp.api.errors import ApiError
from vestnik.webapp.db import get_session
from vestnik.workers.limits import ChannelRules, Limiter, MemoryLimiterBackend, RedisLimiterBackend, Rule

log = logging.getLogger("vestnik.api")

#: the routes anyone may read (the API's own description)
PUBLIC_ENDPOINTS = {"api.document"}


def build_limiter(settings: Settings) -> Limiter:
    rules = {"api": ChannelRules(overall=(), per_key=(Rule("minute", settings.api_rate_per_min, 60.0),))}
    backend = RedisLimiterBackend(settings.redis_url) if settings.redis_url else MemoryLimiterBackend()
    return Limiter(rules, backend, prefix="vestnik:api")


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def authenticate() -> None:
    """Before every API view: the key, or 401/403/429."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    raw = presented_key()
    challenge = {"WWW-Authenticate": 'Bearer realm="vestnik"'}
    if raw is None:
        raise ApiError(401, "an API key is required: Authorization: Bearer vk_... (vestnik api-keys create)",
                       headers=challenge)
    session = get_session()
    key: ApiKey | None = api_keys.find(session, raw)
    if key is None:
        raise ApiError(401, "unknown API key", headers=challenge)
    if key.revoked_at is not None:
        log.warning("revoked API key used", extra={"action": "api.revoked_key", "api_key": key.id})
        raise ApiError(403, f"this API key ({key.prefix}…, {key.name!r}) was revoked")
    wait_s = current_app.extensions["vestnik_api_limiter"].acquire("api", str(key.id))
    if wait_s > 0:
        retry_after = max(1, math.ceil(wait_s))
        raise ApiError(429, f"more than {current_app.extensions['vestnik_settings'].api_rate_per_min} requests a "
                            f"minute with this key; retry after {retry_after} s",
                       headers={"Retry-After": str(retry_after)})
    api_keys.touch(session, key)
    g.api_key = key
    log.info("api request", extra={"action": "api.request", "api_key": key.id, "method": request.method,
                                   "path": request.path})


def current_key() -> ApiKey:
    return g.api_key
