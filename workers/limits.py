"""Per-channel rate limits that hold at the provider, across every worker process.

Each channel has rules: at most ``limit`` sends in any ``window_s`` seconds,
for the whole channel (Telegram 30/s; email per minute, hour and day) and per
recipient key (Telegram 1/s per chat, and 20/min per group chat).

The limiter hands out **slots**: :meth:`Limiter.reserve` takes a whole batch
of recipient keys and, in one atomic script (one Redis round trip), gives each
item the earliest moment it may be sent, or says how long it must wait when
that moment is beyond the horizon.  Slots sit on one timeline per rule: the
k-th slot of a channel is never earlier than the (k-limit)-th plus the window,
so no window of that length ever holds more than the limit.  Senders wait for
their slot and send then (``workers/delivery.py``), so the spacing the
provider sees is the limiter's, not the order in which threads happen to run.

Exact *at the provider*: a grant is an interval, a slot and a deadline; the
sender sends within it or not at all (its row goes back, not an attempt).
Timelines keep deadlines, and the next slot of a rule comes ``window`` plus
:data:`JITTER_S` (what lies between a send and the provider's clock: the
network, the provider's queue) after the limit-th latest deadline.  So no
window of the provider's clock ever holds more than the limit.  The deadline
is tight (:data:`TIGHT_S` after the slot) while a rule's window is at least
half full, and loose (up to half the window, at most :data:`LOOSE_S`) while
it is not, so a burst on an idle channel is not thrown back for a few
milliseconds of queueing.  A saturated Telegram channel sends 30 messages
per 1 + 0.015 + 0.025 s: 1.04x the theoretical minimum.

A recipient whose own rule holds it back (a second message to one chat within
a second) does not hold up the channel: its item waits, the next items take
the slot.  ``pause(channel, s)`` stops a channel everywhere (Telegram 429).

Backends: Redis (one Lua script, atomic, on Redis's clock so hosts' clocks do
not matter) for production, memory for the embedded one-process mode; both
run the same algorithm.  If Redis is unreachable the limiter fails closed: it
answers "wait" and nothing is sent (and nothing lost: the rows wait).

Long windows survive a Redis restart (Yandex blocks a mailbox for 24 hours
past its daily quota): a channel whose rules have a window of a minute or
more is *seeded* from the database's attempt rows when its timeline is new
(``seed`` callback), before any slot is given.

Why not Dramatiq's ``rate_limits``: its ``WindowRateLimiter`` counts aligned
buckets and only says pass/fail; we need several rules checked atomically, a
pause, exact slots for a whole batch, and the wait for those that must wait.
"""


from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vestnik.shared.config import Settings

log = logging.getLogger("vestnik.limits")

#: wait returned when the shared state cannot be read (fail closed)
UNAVAILABLE_WAIT_S = 2.0
#: what lies between a send and the provider's clock (network, the provider's queue), at most 4% of a window
JITTER_S = 0.015
#: a send's deadline after its slot while a rule is half full or more ...
TIGHT_S = 0.025
#: ... and at most this (and half the window) while it is not
LOOSE_S = 1.0
#: rules with windows this long or longer are rebuilt from the database after a Redis restart
SEEDED_WINDOW_S = 60.0


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

    @property
    def window_ms(self) -> int:
        """The window the timeline keeps: the rule's and the jitter before the provider's clock."""
        return int(round((self.window_s + min(JITTER_S, self.window_s * 0.04)) * 1000))

    @property
    def loose_ms(self) -> int:
        return int(min(LOOSE_S, self.window_s / 2) * 1000)


def _no_key_rules(key: str) -> tuple[Rule, ...]:
    return ()


@dataclass(frozen=True)
class ChannelRules:
    overall: tuple[Rule, ...]
    #: the rules of one recipient key (a chat id): a function, since a group chat has more than a private one
    per_key: Callable[[str], tuple[Rule, ...]] = _no_key_rules

    @property
    def seeded(self) -> bool:
        """Whether this channel's timeline is rebuilt from the database when its state was lost."""
        return any(r.window_s >= SEEDED_WINDOW_S for r in self.overall)


def rules_for(settings: Settings) -> dict[str, ChannelRules]:
    """Every registered channel's limits, as the channel declares them (``Channel.limit_rules``)."""
    from vestnik.workers.channels import CHANNELS  # the channels import this module's Rule

    return {name: cls.limit_rules(settings) for name, cls in CHANNELS.items()}


@dataclass(frozen=True)
class Grant:
    """One item of a batch: send it between ``at`` and ``deadline`` (monotonic clock), or, when
    ``at`` is None, not before ``wait_s`` from now."""

    at: float | None
    deadline: float | None = None
    wait_s: float = 0.0

    @property
    def granted(self) -> bool:
        return self.at is not None


class NeedsSeed(Exception):
    """The channel's timeline is new (first use, or Redis lost its data): rebuild it first."""


# ------------------------------------------------------------------ the algorithm, twice


@dataclass
class _Plan:
    """What a backend runs: rule timelines by key, the items, the horizon."""

    pause_key: str
    seeded_key: str | None  # checked when the channel has long windows
    overall: list[tuple[str, int, int, int]]  # (key, limit, window_ms, loose_ms)
    items: list[list[tuple[str, int, int, int]]]  # per item: its per-key rules
    horizon_ms: int
    record: bool = True
    member: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class _Timeline:
    """A rule's state: the limit largest deadlines (ascending) and the last slot."""

    deadlines: list[int]
    last: int


def _earliest(line: _Timeline, limit: int, window: int, t: int) -> int:
    t = max(t, line.last)  # slots only move forward
    if len(line.deadlines) >= limit:
        t = max(t, line.deadlines[-limit] + window)
    return t


def _tight(line: _Timeline, limit: int, window: int, t: int) -> bool:
    """Whether the window before ``t`` is half full already: deadlines must be tight then."""
    busy = sum(1 for d in line.deadlines if d >= t - window)
    return busy * 2 >= limit and busy > 0


def _run(plan: _Plan, now: int, paused_ms: int, line_of: Callable[[str, int, int], _Timeline],
         add: Callable[[str, int, int, str], None]) -> list[tuple[int, int, int]]:
    """The slot algorithm: per item (1, slot offset, deadline offset) or (0, wait, 0), ms from now.
    ``_RESERVE`` is the same in Lua."""
    out: list[tuple[int, int, int]] = []
    for i, rules in enumerate(plan.items, 1):
        if paused_ms > 0:
            out.append((0, paused_ms, 0))
            continue
        g = now
        for key, limit, window, _ in plan.overall:
            g = _earliest(line_of(key, limit, window), limit, window, g)
        if g - now > plan.horizon_ms:
            out.append((0, g - now, 0))
            continue
        e = now
        for key, limit, window, _ in rules:
            e = _earliest(line_of(key, limit, window), limit, window, e)
        if e > g:  # this recipient must wait; the channel's slot goes to the next item
            out.append((0, e - now, 0))
            continue
        every = [*plan.overall, *rules]
        tight = any(_tight(line_of(key, limit, window), limit, window, g) for key, limit, window, _ in every)
        deadline = g + (int(TIGHT_S * 1000) if tight else min(loose for *_, loose in every)) if every else g + 1000
        out.append((1, g - now, deadline - now))
        for key, limit, window, _ in every:
            line = line_of(key, limit, window)
            line.last = g
            line.deadlines.append(deadline)
            line.deadlines.sort()
            del line.deadlines[:-limit]
            if plan.record:
                add(key, g, deadline, f"{plan.member}:{i}")
    return out


_RESERVE = """
-- KEYS[1] pause, KEYS[2] seeded marker, KEYS[3..] timelines: a sorted set of deadlines (ms) and,
-- at <key>:last, the last slot.  ARGV: member, horizon_ms, record (1/0), check_seeded (1/0),
-- tight_ms, n_overall, (key index, limit, window, loose)..., n_items, per item: n, (key index, ...)...
-- Every step is O(log n) on the sorted sets (a limit of 100,000 a second costs what 30 does); a dry
-- run (record 0) keeps what it would add in Lua tables and merges them into the same questions.
local member = ARGV[1]
local horizon = tonumber(ARGV[2])
local record = ARGV[3] == '1'
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then return {-1} end
local tight_ms = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = redis.call('PTTL', KEYS[1])
local seen = {}
local last = {}
local added = {}   -- dry run: deadlines this call would have added, per key
local touched = {}
local function prepare(ki, window)
  if not seen[ki] then
    seen[ki] = true
    redis.call('ZREMRANGEBYSCORE', KEYS[ki], '-inf', now - window)
    last[ki] = tonumber(redis.call('GET', KEYS[ki] .. ':last') or '0')
    added[ki] = {}
  end
end
-- the k-th largest deadline (k >= 1), stored and dry-run ones together
local function kth_largest(ki, k)
  local extra = added[ki]
  if #extra == 0 then
    local r = redis.call('ZREVRANGE', KEYS[ki], k - 1, k - 1, 'WITHSCORES')
    if #r == 0 then return nil end
    return tonumber(r[2])
  end
  -- a dry run only estimates (the real reserve asks again): its own deadlines count as the latest
  if #extra >= k then
    local sorted = {}
    for _, d in ipairs(extra) do sorted[#sorted + 1] = d end
    table.sort(sorted, function(a, b) return a > b end)
    return sorted[k]
  end
  local r = redis.call('ZREVRANGE', KEYS[ki], k - #extra - 1, k - #extra - 1, 'WITHSCORES')
  if #r == 0 then return nil end
  return tonumber(r[2])
end
local function count_from(ki, from)
  local n = redis.call('ZCOUNT', KEYS[ki], from, '+inf')
  for _, d in ipairs(added[ki]) do if d >= from then n = n + 1 end end
  return n
end
local function earliest(ki, limit, window, t0)
  local at = t0
  if last[ki] > at then at = last[ki] end
  local d = kth_largest(ki, limit)
  if d ~= nil and d + window > at then at = d + window end
  return at
end
local pos = 6
local function rules_at()
  local n = tonumber(ARGV[pos]); pos = pos + 1
  local rules = {}
  for r = 1, n do
    rules[r] = {tonumber(ARGV[pos]), tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2]), tonumber(ARGV[pos + 3])}
    pos = pos + 4
    prepare(rules[r][1], rules[r][3])
  end
  return rules
end
local overall = rules_at()
local n_items = tonumber(ARGV[pos]); pos = pos + 1
local out = {now}
for i = 1, n_items do
  local rules = rules_at()
  local granted, value, until_ = 0, 0, 0
  if paused > 0 then
    value = paused
  else
    local g = now
    for _, r in ipairs(overall) do g = earliest(r[1], r[2], r[3], g) end
    if g - now > horizon then
      value = g - now
    else
      local e = now
      for _, r in ipairs(rules) do e = earliest(r[1], r[2], r[3], e) end
      if e > g then
        value = e - now
      else
        local is_tight, loose, any = false, nil, false
        for _, group in ipairs({overall, rules}) do
          for _, r in ipairs(group) do
            any = true
            local busy = count_from(r[1], g - r[3])
            if busy > 0 and busy * 2 >= r[2] then is_tight = true end
            if loose == nil or r[4] < loose then loose = r[4] end
          end
        end
        local deadline = g + 1000
        if any then
          if is_tight then deadline = g + tight_ms else deadline = g + loose end
        end
        granted, value, until_ = 1, g - now, deadline - now
        for _, group in ipairs({overall, rules}) do
          for _, r in ipairs(group) do
            last[r[1]] = g
            if record then
              redis.call('ZADD', KEYS[r[1]], deadline, member .. ':' .. i)
              touched[r[1]] = r[3]
            else
              local extra = added[r[1]]
              extra[#extra + 1] = deadline
            end
          end
        end
      end
    end
  end
  out[#out + 1] = granted
  out[#out + 1] = value
  out[#out + 1] = until_
end
for ki, window in pairs(touched) do
  redis.call('SET', KEYS[ki] .. ':last', last[ki], 'PX', window + horizon + 2000)
  redis.call('PEXPIRE', KEYS[ki], window + horizon + 2000)
end
return out
"""

_PAUSE = """
local current = redis.call('PTTL', KEYS[1])
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1
"""


class MemoryLimiterBackend:
    """The same timelines in this process (embedded mode, unit tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.lines: dict[str, _Timeline] = {}
        self.paused_until: dict[str, float] = {}
        self.seeded: set[str] = set()

    def reserve(self, plan: _Plan) -> tuple[int, list[tuple[int, int, int]]]:
        with self.lock:
            if plan.seeded_key is not None and plan.seeded_key not in self.seeded:
                raise NeedsSeed()
            now = int(self.clock() * 1000)
            paused_ms = int(max(0.0, self.paused_until.get(plan.pause_key, 0.0) - self.clock()) * 1000)
            seen: dict[str, _Timeline] = {}

            def line_of(key: str, limit: int, window: int) -> _Timeline:
                if key not in seen:
                    line = self.lines.setdefault(key, _Timeline([], 0))
                    line.deadlines[:] = [d for d in line.deadlines if d > now - window][-limit:]
                    seen[key] = line if plan.record else _Timeline(list(line.deadlines), line.last)
                return seen[key]

            return now, _run(plan, now, paused_ms, line_of, lambda *_: None)

    def seed(self, seeded_key: str, entries: dict[str, list[tuple[int, str]]], offset_ms: int) -> None:
        """``entries``: per timeline key, (wall ms, id) of past sends; ``offset_ms`` turns wall ms into ours."""
        with self.lock:
            for key, items in entries.items():
                line = self.lines.setdefault(key, _Timeline([], 0))
                times = [at + offset_ms for at, _ in items]
                line.deadlines = sorted({*line.deadlines, *times})
                line.last = max([line.last, *times])
            self.seeded.add(seeded_key)

    def clock_ms(self) -> int:
        return int(self.clock() * 1000)

    def pause(self, pause_key: str, seconds: float) -> None:
        with self.lock:
            until = self.clock() + seconds
            self.paused_until[pause_key] = max(self.paused_until.get(pause_key, 0.0), until)

    def paused_for(self, pause_key: str) -> float:
        with self.lock:
            return max(0.0, self.paused_until.get(pause_key, 0.0) - self.clock())


class RedisLimiterBackend:
    """Timelines in Redis; one atomic script per batch, on Redis's clock (hosts' clocks do not matter)."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._reserve = self.client.register_script(_RESERVE)
        self._pause = self.client.register_script(_PAUSE)

    def reserve(self, plan: _Plan) -> tuple[int, list[tuple[int, int, int]]]:
        keys = [plan.pause_key, plan.seeded_key or f"{plan.pause_key}:unused"]
        index: dict[str, int] = {}

        def ki(key: str) -> int:
            if key not in index:
                keys.append(key)
                index[key] = len(keys)  # Lua counts from 1
            return index[key]

        argv: list[Any] = [plan.member, plan.horizon_ms, 1 if plan.record else 0, 1 if plan.seeded_key else 0,
                           int(TIGHT_S * 1000), len(plan.overall)]
        for key, limit, window, loose in plan.overall:
            argv += [ki(key), limit, window, loose]
        argv.append(len(plan.items))
        for rules in plan.items:
            argv.append(len(rules))
            for key, limit, window, loose in rules:
                argv += [ki(key), limit, window, loose]
        raw = self._reserve(keys=keys, args=argv)
        if raw and int(raw[0]) == -1:
            raise NeedsSeed()
        return int(raw[0]), [(int(raw[i]), int(raw[i + 1]), int(raw[i + 2])) for i in range(1, len(raw), 3)]

    def seed(self, seeded_key: str, entries: dict[str, list[tuple[int, str]]], offset_ms: int) -> None:
        pipe = self.client.pipeline(transaction=True)
        for key, items in entries.items():
            if items:
                pipe.zadd(key, {member: at + offset_ms for at, member in items})
                pipe.pexpire(key, 2 * 86_400_000)
                pipe.set(f"{key}:last", max(at + offset_ms for at, _ in items), px=2 * 86_400_000)
        pipe.set(seeded_key, "1")
        pipe.execute()

    def clock_ms(self) -> int:
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def pause(self, pause_key: str, seconds: float) -> None:
        self._pause(keys=[pause_key], args=[max(1, int(seconds * 1000))])

    def paused_for(self, pause_key: str) -> float:
        return max(0, self.client.pttl(pause_key)) / 1000


#: seed(channel, since) -> [(wall-clock ms of a send, a stable id)], from the database's attempt rows
SeedSource = Callable[[str, float], list[tuple[int, str]]]


class Limiter:
    def __init__(self, rules: dict[str, ChannelRules], backend: MemoryLimiterBackend | RedisLimiterBackend,
                 prefix: str = "vestnik:limit", *, seed: SeedSource | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # the moments in grants are on this clock (senders compare with time.monotonic)
        self.rules = rules
        self.backend = backend
        self.prefix = prefix
        self.seed_source = seed

    def _plan(self, channel: str, keys: Sequence[str | None], horizon_s: float, record: bool) -> _Plan:
        rules = self.rules.get(channel)
        pause_key = f"{self.prefix}:{channel}:pause"
        horizon_ms = int(horizon_s * 1000)
        if rules is None:
            return _Plan(pause_key, None, [], [[] for _ in keys], horizon_ms, record)

        def rule(r: Rule, key: str | None = None) -> tuple[str, int, int, int]:
            name = f"{self.prefix}:{channel}:{r.name}" + (f":{key}" if key else "")
            return name, r.limit, r.window_ms, r.loose_ms

        overall = [rule(r) for r in rules.overall]
        items = [[rule(r, key) for r in rules.per_key(key)] if key else [] for key in keys]
        seeded_key = f"{self.prefix}:{channel}:seeded" if rules.seeded and self.seed_source is not None else None
        return _Plan(pause_key, seeded_key, overall, items, horizon_ms, record)

    def reserve(self, channel: str, keys: Sequence[str | None], *, horizon_s: float) -> list[Grant]:
        """Grants for a batch, in order: when to send each item (and until when), or how long it waits.

        Items take the channel's next slots in turn while those lie within
        ``horizon_s``; an item whose recipient is still held back waits and
        leaves its slot to the next.  One round trip for the whole batch.
        """
        if not keys:
            return []
        plan = self._plan(channel, keys, horizon_s, record=True)
        try:
            results = self._run(channel, plan)
        except Exception as exc:  # noqa: BLE001 - fail closed on any backend trouble
            log.warning("limiter unavailable; holding sends", extra={"action": "limiter.unavailable",
                                                                     "channel": channel,
                                                                     "error": type(exc).__name__})
            return [Grant(None, None, UNAVAILABLE_WAIT_S) for _ in keys]
        base = self.clock()
        return [Grant(base + value / 1000, base + until / 1000) if granted else Grant(None, None, value / 1000)
                for granted, value, until in results]

    def _run(self, channel: str, plan: _Plan) -> list[tuple[int, int, int]]:
        try:
            return self.backend.reserve(plan)[1]
        except NeedsSeed:
            self._seed(channel, plan)
            return self.backend.reserve(plan)[1]

    def _seed(self, channel: str, plan: _Plan) -> None:
        """Rebuild a channel's long windows from the database (its timeline is new or was lost)."""
        assert self.seed_source is not None and plan.seeded_key is not None
        longest_ms = max(window for _, _, window, _ in plan.overall)
        sends = self.seed_source(channel, time.time() - longest_ms / 1000)
        # Database times are wall-clock; the backend's clock may be another (monotonic, or Redis's).
        offset_ms = self.backend.clock_ms() - int(time.time() * 1000)
        now_wall = int(time.time() * 1000)
        entries = {key: [(at, f"seed:{stable}") for at, stable in sends if at > now_wall - window]
                   for key, _, window, _ in plan.overall}
        self.backend.seed(plan.seeded_key, entries, offset_ms)
        log.info("limiter timeline rebuilt from the database", extra={
            "action": "limiter.seeded", "channel": channel, "sends": len(sends)})

    def capacity(self, channel: str, *, horizon_s: float, most: int) -> tuple[int, float]:
        """How many sends the channel could take within ``horizon_s`` (at most ``most``), and, when
        none, how long until the first; only looks (the middleware's check before a pump runs)."""
        plan = self._plan(channel, [None] * max(1, most), horizon_s, record=False)
        try:
            results = self._run(channel, plan)
        except Exception as exc:  # noqa: BLE001 - fail closed
            log.warning("limiter unavailable; holding sends", extra={"action": "limiter.unavailable",
                                                                     "channel": channel,
                                                                     "error": type(exc).__name__})
            return 0, UNAVAILABLE_WAIT_S
        free = sum(1 for granted, _, _ in results if granted)
        return free, 0.0 if free else results[0][1] / 1000

    def acquire(self, channel: str, key: str | None = None) -> float:
        """One send, now: 0 when it may happen at once (and it is counted), else seconds to wait."""
        grant = self.reserve(channel, [key], horizon_s=0.0)[0]
        return 0.0 if grant.granted else max(grant.wait_s, 0.001)

    def pause(self, channel: str, seconds: float) -> None:
        """Pause a whole channel in every process (a provider's 429 ``retry_after``)."""
        try:
            self.backend.pause(f"{self.prefix}:{channel}:pause", seconds)
        except Exception as exc:  # noqa: BLE001 - the rows already wait retry_after themselves
            log.warning("could not record a channel pause", extra={"action": "limiter.pause_failed",
                                                                   "channel": channel,
                                                                   "error": type(exc).__name__})

    def paused_for(self, channel: str) -> float:
        """Seconds the channel stays paused (0 when it is not; fail closed on backend trouble)."""
        try:
            return self.backend.paused_for(f"{self.prefix}:{channel}:pause")
        except Exception:  # noqa: BLE001
            return UNAVAILABLE_WAIT_S


def build_limiter(settings: Settings, *, seed: SeedSource | None = None) -> Limiter:
    backend = RedisLimiterBackend(settings.redis_url) if settings.redis_url else MemoryLimiterBackend()
    return Limiter(rules_for(settings), backend, seed=seed)
