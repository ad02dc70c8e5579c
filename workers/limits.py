"""Per-channel rate limits that hold across every worker process.

Each channel has rules: a limit of sends in a sliding window, for the whole
channel (Telegram 30/s; email per minute, hour and day) and per recipient
(Telegram 1/s per chat).  ``Limiter.acquire(channel, key)`` checks *all* of a
channel's rules and its pause at once and either records one send in each
(returns 0) or records nothing and returns how many seconds to wait until it
could pass.  ``pause(channel, s)`` stops a channel everywhere (Telegram 429).

Backends: Redis (one Lua script, atomic, on Redis's clock so hosts' clocks do
not matter) for production, memory for the embedded one-process mode.  The
windows slide: no window of a rule's length ever holds more than its limit,
not only aligned ones.  If Redis is unreachable the limiter fails closed: it
answers "wait" and nothing is sent (and nothing lost: the caller re-queues).

Why not Dramatiq's ``rate_limits``: its ``WindowRateLimiter`` counts aligned
buckets and only says pass/fail; we need several rules checked atomically,
a channel pause, and the exact wait so a message is re-queued for that long.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vestnik.shared.config import Settings

log = logging.getLogger("vestnik.limits")

#: wait returned when the shared state cannot be read (fail closed)
UNAVAILABLE_WAIT_S = 2.0


@dataclass(frozen=True)
class Rule:
    """At most ``limit`` sends in any ``window_s`` seconds."""

    name: str
    limit: int
    window_s: float

    @classmethod
    def per_second(cls, name: str, rate_per_s: float) -> Rule:
        # 30/s -> 30 per 1 s; 0.5/s -> 1 per 2 s; 1.5/s -> 2 per 1.33 s
        limit = max(1, math.ceil(rate_per_s))
        return cls(name, limit, limit / rate_per_s)


@dataclass(frozen=True)
class ChannelRules:
    overall: tuple[Rule, ...]
    per_key: tuple[Rule, ...] = ()


def rules_for(settings: Settings) -> dict[str, ChannelRules]:
    return {
        "telegram": ChannelRules(
            overall=(Rule.per_second("global", settings.telegram_rate_per_s),),
            per_key=(Rule.per_second("chat", settings.telegram_chat_rate_per_s),),
        ),
        "email": ChannelRules(
            overall=(
                Rule("minute", settings.email_rate_per_min, 60.0),
                Rule("hour", settings.email_rate_per_hour, 3600.0),
                Rule("day", settings.email_rate_per_day, 86400.0),
            ),
        ),
    }


class MemoryLimiterBackend:
    """Sliding-window logs in this process (embedded mode, unit tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.logs: dict[str, deque[float]] = {}
        self.paused_until: dict[str, float] = {}

    def acquire(self, pause_key: str, keys: list[tuple[str, Rule]], record: bool = True) -> float:
        with self.lock:
            now = self.clock()
            wait = self.paused_until.get(pause_key, 0.0) - now
            if wait > 0:
                return wait
            for key, rule in keys:
                log_ = self.logs.setdefault(key, deque())
                while log_ and log_[0] <= now - rule.window_s:
                    log_.popleft()
                if len(log_) >= rule.limit:
                    wait = max(wait, log_[0] + rule.window_s - now)
            if wait > 0 or not record:
                return wait
            for key, _ in keys:
                self.logs[key].append(now)
            return 0.0

    def pause(self, pause_key: str, seconds: float) -> None:
        with self.lock:
            until = self.clock() + seconds
            self.paused_until[pause_key] = max(self.paused_until.get(pause_key, 0.0), until)

    def paused_for(self, pause_key: str) -> float:
        with self.lock:
            return max(0.0, self.paused_until.get(pause_key, 0.0) - self.clock())


_ACQUIRE = """
-- ARGV[1]: a unique member id; ARGV[2]: 1 to record the send, 0 to only look;
-- then limit and window (ms) for each rule key KEYS[2..]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = redis.call('PTTL', KEYS[1])
if paused > 0 then return {paused, now} end
local wait = 0
for i = 2, #KEYS do
  local limit = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    local w = tonumber(oldest[2]) + window - now
    if w > wait then wait = w end
  end
end
if wait > 0 or ARGV[2] == '0' then return {wait, now} end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[1] .. ':' .. i)
  redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2 * i])))
end
return {0, now}
"""

_PAUSE = """
local current = redis.call('PTTL', KEYS[1])
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1
"""


class RedisLimiterBackend:
    """Shared sliding-window logs in Redis sorted sets; one atomic script per acquire."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._acquire = self.client.register_script(_ACQUIRE)
        self._pause = self.client.register_script(_PAUSE)
        #: Redis's clock (ms) of the last granted acquire, for tests that check windows
        self.last_grant_ms: int | None = None

    def acquire(self, pause_key: str, keys: list[tuple[str, Rule]], record: bool = True) -> float:
        argv: list[object] = [uuid.uuid4().hex, 1 if record else 0]
        for _, rule in keys:
            argv += [rule.limit, int(rule.window_s * 1000)]
        wait_ms, now_ms = self._acquire(keys=[pause_key, *[k for k, _ in keys]], args=argv)
        if int(wait_ms) == 0 and record:
            self.last_grant_ms = int(now_ms)
        return int(wait_ms) / 1000

    def pause(self, pause_key: str, seconds: float) -> None:
        self._pause(keys=[pause_key], args=[max(1, int(seconds * 1000))])

    def paused_for(self, pause_key: str) -> float:
        return max(0, self.client.pttl(pause_key)) / 1000


class Limiter:
    def __init__(self, rules: dict[str, ChannelRules], backend: MemoryLimiterBackend | RedisLimiterBackend,
                 prefix: str = "vestnik:limit") -> None:
        self.rules = rules
        self.backend = backend
        self.prefix = prefix

    def _keys(self, channel: str, key: str | None) -> list[tuple[str, Rule]]:
        rules = self.rules.get(channel)
        if rules is None:
            return []
        keys = [(f"{self.prefix}:{channel}:{r.name}", r) for r in rules.overall]
        if key:
            keys += [(f"{self.prefix}:{channel}:{r.name}:{key}", r) for r in rules.per_key]
        return keys

    def acquire(self, channel: str, key: str | None = None, *, record: bool = True) -> float:
        """0 when a send may happen now (and it is counted); else seconds to wait.

        ``record=False`` only looks (the middleware's early check); the send
        itself acquires with ``record=True`` right before the provider call.
        """
        try:
            return self.backend.acquire(f"{self.prefix}:{channel}:pause", self._keys(channel, key), record)
        except Exception as exc:  # noqa: BLE001 - fail closed on any backend trouble
            log.warning("limiter unavailable; holding sends", extra={"action": "limiter.unavailable",
                                                                     "channel": channel,
                                                                     "error": type(exc).__name__})
            return UNAVAILABLE_WAIT_S

    def pause(self, channel: str, seconds: float) -> None:
        """Pause a whole channel in every process (a provider's 429 ``retry_after``)."""
        try:
            self.backend.pause(f"{self.prefix}:{channel}:pause", seconds)
        except Exception as exc:  # noqa: BLE001 - the row already waits retry_after itself
            log.warning("could not record a channel pause", extra={"action": "limiter.pause_failed",
                                                                   "channel": channel,
                                                                   "error": type(exc).__name__})

    def paused_for(self, channel: str) -> float:
        """Seconds the channel stays paused (0 when it is not; fail closed on backend trouble)."""
        try:
            return self.backend.paused_for(f"{self.prefix}:{channel}:pause")
        except Exception:  # noqa: BLE001
            return UNAVAILABLE_WAIT_S


def build_limiter(settings: Settings) -> Limiter:
    backend = RedisLimiterBackend(settings.redis_url) if settings.redis_url else MemoryLimiterBackend()
    return Limiter(rules_for(settings), backend)
