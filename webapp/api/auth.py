"""Who is calling: the API key, its state, its rate.

``Authorization: Bearer vk_...`` (or ``X-API-Key: vk_...``).  401 when no
key is given or the key is unknown, 403 when it was revoked, 429 with
``Retry-After`` (whole seconds) when the key made ``VESTNIK_API_RATE_PER_MIN``
requests in the last minute.  The limit is a moving window (the ``limits``
library, the one behind Flask-Limiter: one Lua script in Redis) shared by every
web process through ``VESTNIK_REDIS_URL``; in memory without it, which is one
process only.  When Redis cannot be reached the API answers 503 with
``Retry-After`` rather than run unlimited.
"""

from __future__ import annotations

import logging
import math
import time

from flask import current_app, g, request

from vestnik.shared import api_keys
from vestnik.shared.config import Settings
from vestnik.shared.models import ApiKey
from vestnik.webapp.api.errors import ApiError
from vestnik.webapp.db import get_session

log = logging.getLogger("vestnik.api")

#: the routes anyone may read (the API's own description)
PUBLIC_ENDPOINTS = {"api.document"}


class ApiLimiter:
    """Requests per minute per API key, in a moving window."""

    def __init__(self, settings: Settings) -> None:
        from limits import RateLimitItemPerMinute, storage, strategies

        url = settings.redis_url.replace("unix://", "redis+unix://", 1) if settings.redis_url else "memory://"
        self.item = RateLimitItemPerMinute(settings.api_rate_per_min)
        self.strategy = strategies.MovingWindowRateLimiter(storage.storage_from_string(url))

    def wait_s(self, key_id: int) -> float:
        """0 when this request is counted and may go on, else seconds until the window lets one through."""
        if self.strategy.hit(self.item, "vestnik-api", str(key_id)):
            return 0.0
        stats = self.strategy.get_window_stats(self.item, "vestnik-api", str(key_id))
        return max(stats.reset_time - time.time(), 0.001)


def build_limiter(settings: Settings) -> ApiLimiter:
    return ApiLimiter(settings)


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
    try:
        wait_s = current_app.extensions["vestnik_api_limiter"].wait_s(key.id)
    except Exception as exc:  # noqa: BLE001 - Redis unreachable: refuse rather than run unlimited
        log.warning("API limiter unavailable", extra={"action": "api.limiter_unavailable",
                                                      "error": type(exc).__name__})
        raise ApiError(503, "the rate limiter is unavailable; retry shortly", headers={"Retry-After": "5"}) from None
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
