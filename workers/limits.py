"""Per-channel rate limits that hold at the provider, across every worker process.

Each channel has rules: at most ``limit`` sends in any ``window_s`` seconds,
for the whole channel (Telegram 30/s; email per minute, hour and day) and per
recipient key (Telegram 1/s per chat, and 20/min per group chat).

Two parts, both in Redis and shared by every process:

**The plan** paces.  :meth:`Limiter.reserve` takes a whole batch of recipient
keys and, in one atomic script (one Redis round trip), gives each item a
*slot*, the earliest moment it may be sent, or says how long it must wait when
that moment is beyond the horizon.  Slots sit on one timeline per rule: the
k-th slot is never earlier than the (k-limit)-th's expected end plus the
window, and a ``spread`` rule (the bot's 30/s) keeps slots ``window/limit``
apart, a steady pace instead of bursts.  The plan expects a send to end
:data:`EXPECTED_S` after its slot; the real end replaces that when it comes.
A recipient whose own rule holds it back (a second message to one chat within
a second) does not hold up the channel: its item waits, the next items take
the slot.

**The gate** decides, exactly, at the provider.  The sending side calls
:meth:`Limiter.begin` right before a request is written and :meth:`Limiter.end`
with the moment its answer came.  A send counts against each of its rules from
``begin`` until its end plus the window (while in flight, its end unknown, it
counts for good, up to :data:`IN_FLIGHT_S`); ``begin`` lets a send go only
while fewer than ``limit`` sends count.  Why that holds at the provider's
clock, however late a thread runs between the gate and the socket: the
provider stamps a send at some moment between its ``begin`` and its answer.
Take ``limit + 1`` sends stamped within one window and the last of them to
pass the gate, at ``s``.  Every other one began before ``s``; its stamp lies
less than a window from the last one's, which is at or after ``s``, so it was
stamped, and answered, later than ``s`` minus the window: it still counted at
``s``, and the gate would not have let the last one go.  So no window at the
provider holds more than the limit.  Moments are Redis's clock: ``begin`` reads
it before the write; ``end`` passes how long ago (on the sender's clock) the
answer came, and Redis takes that from its own now, which can only place the
end later than it was.  A paused channel (a 429) keeps the gate shut too.

``tests/unit/test_limits.py`` walks senders that run late after the gate (up
to 400 ms, as a loaded two-core machine does) and a provider that stamps
anywhere until the answer: no window exceeds its limit; without the gate the
same senders do.

Backends: Redis (one Lua script, atomic, on Redis's clock so hosts' clocks do
not matter) for production, memory for the embedded one-process mode; both
run the same algorithm.  If Redis is unreachable the limiter fails closed: it
answers "wait" and nothing is sent (and nothing lost: the rows wait).

Long windows survive a Redis restart (Yandex blocks a mailbox for 24 hours
past its daily quota): a channel whose rules have a window of a minute or
more is *seeded* from the database's attempt rows (written before each send,
so none is missed) when its timelines are new, before any slot is given or
gate passed.  The mark that says "seeded" holds the Redis server's run id, so
a server that restarted from a saved copy older than its last sends (an RDB
snapshot, then a crash) is seeded again too; a send the copy already had is
not counted twice (the gate names sends ``<notification>:<attempt>``, as the
attempt rows do).

Why not Dramatiq's ``rate_limits``: its ``WindowRateLimiter`` counts aligned
buckets and only says pass/fail; we need several rules checked atomically, a
pause, slots for a whole batch, the wait for those that must wait, and a count
that lasts until each send's answer.
"""


from __future__ import annotations

import logging
import math
import os
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
#: what the plan expects from a send's slot to its answer; the answer's real moment replaces it when it comes
EXPECTED_S = 0.01
#: rules with windows this long or longer are rebuilt from the database after a Redis restart
SEEDED_WINDOW_S = 60.0
#: a send begun but never reported ended (its worker died mid-call, its answer is uncertain) stops counting
#: as in flight after this long: longer than any provider call may take with its timeouts
IN_FLIGHT_S = 120.0


@dataclass(frozen=True)
class Rule:
    """At most ``limit`` sends in any ``window_s`` seconds; ``spread``: slots at least
    ``window_s / limit`` apart (a steady pace, not bursts of ``limit``)."""

    name: str
    limit: int
    window_s: float
    spread: bool = False

    @classmethod
    def per_second(cls, name: str, rate_per_s: float, *, spread: bool = False) -> Rule:
        # 30/s -> 30 per 1 s; 0.5/s -> 1 per 2 s; 1.5/s -> 2 per 1.33 s
        limit = max(1, math.ceil(rate_per_s))
        return cls(name, limit, limit / rate_per_s, spread)

    @property
    def window_ms(self) -> int:
        """The rule's window, rounded up to the millisecond (the plan's and the gate's)."""
        return int(math.ceil(self.window_s * 1000 - 1e-6))

    @property
    def gap_ms(self) -> int:
        """The least time between two slots of the plan: the window shared evenly, when ``spread``."""
        return self.window_ms // self.limit if self.spread else 0


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
    """One item of a batch: its slot ``at`` (monotonic clock) and the plan's expected end
    ``deadline``, or, when ``at`` is None, not before ``wait_s`` from now.  The send still passes
    :meth:`Limiter.begin` at its slot: the gate, not the slot, decides whether it goes."""

    at: float | None
    deadline: float | None = None
    wait_s: float = 0.0
    #: the slot's name on the plan's timelines (reported with the send's end, so the plan learns it)
    ref: str | None = None

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
    overall: list[tuple[str, int, int, int]]  # (key, limit, window_ms, gap_ms)
    items: list[list[tuple[str, int, int, int]]]  # per item: its per-key rules
    horizon_ms: int
    record: bool = True
    member: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class _Timeline:
    """A rule's state: the limit largest deadlines (ascending) and the last slot."""

    deadlines: list[int]
    last: int
    #: slot name -> its deadline (memory backend: the ends reported later move them)
    refs: dict[str, int] = field(default_factory=dict)


def _earliest(line: _Timeline, limit: int, window: int, gap: int, t: int) -> int:
    t = max(t, line.last + gap if line.last else t)  # slots only move forward, ``gap`` apart
    if len(line.deadlines) >= limit:
        t = max(t, line.deadlines[-limit] + window)
    return t


def _run(plan: _Plan, now: int, paused_ms: int, line_of: Callable[[str, int, int], _Timeline],
         add: Callable[[str, int, int, str], None]) -> list[tuple[int, int, int]]:
    """The slot algorithm: per item (1, slot offset, expected end offset) or (0, wait, 0), ms from now.
    ``_RESERVE`` is the same in Lua."""
    out: list[tuple[int, int, int]] = []
    expected = int(EXPECTED_S * 1000)
    for i, rules in enumerate(plan.items, 1):
        if paused_ms > 0:
            out.append((0, paused_ms, 0))
            continue
        g = now
        for key, limit, window, gap in plan.overall:
            g = _earliest(line_of(key, limit, window), limit, window, gap, g)
        e = now
        for key, limit, window, gap in rules:
            e = _earliest(line_of(key, limit, window), limit, window, gap, e)
        if g - now > plan.horizon_ms:
            out.append((0, max(g, e) - now, 0))
            continue
        if e > g:  # this recipient must wait; the channel's slot goes to the next item
            out.append((0, e - now, 0))
            continue
        every = [*plan.overall, *rules]
        deadline = g + expected
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


@dataclass
class _Gate:
    """What the gate checks: per send, its id and its rules' timelines (key, limit, window ms)."""

    pause_key: str
    seeded_key: str | None
    items: list[tuple[str, list[tuple[str, int, int]]]]


@dataclass
class _Ends:
    """Sends that ended: per send, its id, its plan slot's name, how many ms ago it ended, and its rules'
    timelines (key, window ms)."""

    items: list[tuple[str, str | None, int, list[tuple[str, int]]]]


@dataclass
class _Busy:
    """A rule's sends at the gate: ended ones (id -> free at: end + window, ms) and those in flight
    (id -> begun, ms)."""

    ended: dict[str, int] = field(default_factory=dict)
    open: dict[str, int] = field(default_factory=dict)

    def prune(self, now: int) -> None:
        self.ended = {k: v for k, v in self.ended.items() if v > now}
        self.open = {k: v for k, v in self.open.items() if v > now - int(IN_FLIGHT_S * 1000)}

    def wait(self, limit: int, window: int, now: int) -> int:
        """0 when a send may begin now, else ms until it may: ended sends free their place first (at their
        end + window, no later than now + window); one still in flight frees it ``window`` after its end,
        so not before now + window."""
        n = len(self.ended) + len(self.open)
        if n < limit:
            return 0
        need = n - limit + 1
        if need <= len(self.ended):
            return max(1, sorted(self.ended.values())[need - 1] - now)
        return window


_RESERVE = """
-- KEYS[1] pause, KEYS[2] seeded marker (the run id of the server it was seeded on), KEYS[3..] timelines: a
-- sorted set of deadlines (ms) and,
-- at <key>:last, the last slot.  ARGV: member, horizon_ms, record (1/0), check_seeded (1/0),
-- expected_ms, n_overall, (key index, limit, window, gap)..., n_items, per item: n, (key index, ...)...
-- Every step is O(log n) on the sorted sets (a limit of 100,000 a second costs what 30 does); a dry
-- run (record 0) keeps what it would add in Lua tables and merges them into the same questions.
local member = ARGV[1]
local horizon = tonumber(ARGV[2])
local record = ARGV[3] == '1'
if ARGV[4] == '1' and redis.call('GET', KEYS[2]) ~= string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') then
  return {-1}
end
local expected_ms = tonumber(ARGV[5])
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
local function earliest(ki, limit, window, gap, t0)
  local at = t0
  if last[ki] > 0 and last[ki] + gap > at then at = last[ki] + gap end
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
    for _, r in ipairs(overall) do g = earliest(r[1], r[2], r[3], r[4], g) end
    local e = now
    for _, r in ipairs(rules) do e = earliest(r[1], r[2], r[3], r[4], e) end
    if g - now > horizon then
      value = math.max(g, e) - now
    else
      if e > g then
        value = e - now
      else
        local deadline = g + expected_ms
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

_BEGIN = """
-- The gate, right before sends are written.  KEYS[1] pause, KEYS[2] seeded marker, KEYS[3..] timelines:
-- <key>:busy holds ended sends (score: end + window, ms), <key>:open those in flight (score: begun, ms).
-- ARGV: check_seeded (1/0), in_flight_ms, n_items, per item: id, n, (key index, limit, window)...
-- Returns per item 0 (begun: counted in flight from now) or the ms to wait before asking again.
if ARGV[1] == '1' and redis.call('GET', KEYS[2]) ~= string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') then
  return {-1}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local in_flight = tonumber(ARGV[2])
local paused = redis.call('PTTL', KEYS[1])
local seen = {}
local pos = 4
local out = {}
for i = 1, tonumber(ARGV[3]) do
  local id = ARGV[pos]
  local n = tonumber(ARGV[pos + 1])
  pos = pos + 2
  local rules = {}
  for r = 1, n do
    rules[r] = {tonumber(ARGV[pos]), tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2])}
    pos = pos + 3
  end
  local wait = 0
  if paused > 0 then
    wait = paused
  else
    for _, r in ipairs(rules) do
      local busy, open = KEYS[r[1]] .. ':busy', KEYS[r[1]] .. ':open'
      if not seen[r[1]] then
        seen[r[1]] = true
        redis.call('ZREMRANGEBYSCORE', busy, '-inf', now)
        redis.call('ZREMRANGEBYSCORE', open, '-inf', now - in_flight)
      end
      local ended = redis.call('ZCARD', busy)
      local count = ended + redis.call('ZCARD', open)
      if count >= r[2] then
        local need = count - r[2] + 1
        local w = r[3]
        if need <= ended then
          w = tonumber(redis.call('ZRANGE', busy, need - 1, need - 1, 'WITHSCORES')[2]) - now
          if w < 1 then w = 1 end
        end
        if w > wait then wait = w end
      end
    end
    if wait == 0 then
      for _, r in ipairs(rules) do
        local open = KEYS[r[1]] .. ':open'
        redis.call('ZADD', open, now, id)
        redis.call('PEXPIRE', open, in_flight + 2000)
      end
    end
  end
  out[i] = wait
end
return out
"""

_END = """
-- Sends that ended.  KEYS: timelines.  ARGV: n_items, per item: id, plan slot name ('' if none), ms ago
-- it ended, n, (key index, window)...  A send leaves <key>:open and stays in <key>:busy until its end
-- plus the window; the plan's timeline puts the send at its real end instead of the expected one.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000)
local pos = 2
for i = 1, tonumber(ARGV[1]) do
  local id, ref, ago, n = ARGV[pos], ARGV[pos + 1], tonumber(ARGV[pos + 2]), tonumber(ARGV[pos + 3])
  pos = pos + 4
  local ended = now - ago
  for r = 1, n do
    local key, window = KEYS[tonumber(ARGV[pos])], tonumber(ARGV[pos + 1])
    pos = pos + 2
    redis.call('ZREM', key .. ':open', id)
    redis.call('ZADD', key .. ':busy', ended + window, id)
    redis.call('PEXPIRE', key .. ':busy', window + 2000)
    if ref ~= '' then redis.call('ZADD', key, 'XX', ended, ref) end
  end
end
return 1
"""

_MARK_SEEDED = """
redis.call('SET', KEYS[1], string.match(redis.call('INFO', 'server'), 'run_id:(%w+)'))
return 1
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
        self.busy: dict[str, _Busy] = {}

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
                    line.refs = {r: d for r, d in line.refs.items() if d > now - window}
                    seen[key] = line if plan.record else _Timeline(list(line.deadlines), line.last)
                return seen[key]

            def add(key: str, slot: int, deadline: int, ref: str) -> None:
                self.lines[key].refs[ref] = deadline

            return now, _run(plan, now, paused_ms, line_of, add)

    def begin(self, gate: _Gate) -> list[int]:
        with self.lock:
            if gate.seeded_key is not None and gate.seeded_key not in self.seeded:
                raise NeedsSeed()
            now = int(self.clock() * 1000)
            paused_ms = int(max(0.0, self.paused_until.get(gate.pause_key, 0.0) - self.clock()) * 1000)
            seen: set[str] = set()
            out = []
            for send_id, rules in gate.items:
                if paused_ms > 0:
                    out.append(paused_ms)
                    continue
                wait = 0
                for key, limit, window in rules:
                    busy = self.busy.setdefault(key, _Busy())
                    if key not in seen:
                        seen.add(key)
                        busy.prune(now)
                    wait = max(wait, busy.wait(limit, window, now))
                if wait == 0:
                    for key, _, _ in rules:
                        self.busy[key].open[send_id] = now
                out.append(wait)
            return out

    def end(self, ends: _Ends) -> None:
        with self.lock:
            now = math.ceil(self.clock() * 1000)
            for send_id, ref, ago, rules in ends.items:
                ended = now - ago
                for key, window in rules:
                    busy = self.busy.setdefault(key, _Busy())
                    busy.open.pop(send_id, None)
                    busy.ended[send_id] = ended + window
                    line = self.lines.get(key)
                    before = line.refs.get(ref) if line is not None and ref is not None else None
                    if line is not None and before is not None and before in line.deadlines:
                        line.deadlines.remove(before)
                        line.deadlines.append(ended)
                        line.deadlines.sort()
                        line.refs[ref] = ended  # type: ignore[index]

    def many(self, calls: Sequence[tuple[str, Any]]) -> list[Any]:
        """As the Redis backend's: per call its result or the exception it raised."""
        out: list[Any] = []
        for op, arg in calls:
            try:
                out.append(getattr(self, op)(arg))
            except Exception as exc:  # noqa: BLE001 - handed to the caller per call
                out.append(exc)
        return out

    def seed(self, seeded_key: str, entries: dict[str, list[tuple[int, str, int | None]]], offset_ms: int,
             windows: dict[str, int]) -> None:
        """``entries``: per timeline key, (wall ms begun, id, wall ms ended or None) of past sends;
        ``offset_ms`` turns wall ms into ours; ``windows``: each key's exact window (ms)."""
        with self.lock:
            for key, items in entries.items():
                line = self.lines.setdefault(key, _Timeline([], 0))
                times = [(ended if ended is not None else at) + offset_ms for at, _, ended in items]
                line.deadlines = sorted([*line.deadlines, *times])
                line.last = max([line.last, *times])
                busy = self.busy.setdefault(key, _Busy())
                for at, send_id, ended in items:
                    if ended is None:
                        busy.open[send_id] = at + offset_ms
                    else:
                        busy.ended[send_id] = ended + offset_ms + windows[key]
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
        #: each thread's own connection for the scripts' calls (:meth:`_pipeline`)
        self._local = threading.local()
        self._reserve = self.client.register_script(_RESERVE)
        self._begin = self.client.register_script(_BEGIN)
        self._end = self.client.register_script(_END)
        self._mark_seeded = self.client.register_script(_MARK_SEEDED)
        self._pause = self.client.register_script(_PAUSE)

    @staticmethod
    def _reserve_args(plan: _Plan) -> tuple[list[str], list[Any]]:
        keys = [plan.pause_key, plan.seeded_key or f"{plan.pause_key}:unused"]
        index: dict[str, int] = {}

        def ki(key: str) -> int:
            if key not in index:
                keys.append(key)
                index[key] = len(keys)  # Lua counts from 1
            return index[key]

        argv: list[Any] = [plan.member, plan.horizon_ms, 1 if plan.record else 0, 1 if plan.seeded_key else 0,
                           int(EXPECTED_S * 1000), len(plan.overall)]
        for key, limit, window, gap in plan.overall:
            argv += [ki(key), limit, window, gap]
        argv.append(len(plan.items))
        for rules in plan.items:
            argv.append(len(rules))
            for key, limit, window, gap in rules:
                argv += [ki(key), limit, window, gap]
        return keys, argv

    @staticmethod
    def _reserve_result(raw: Any) -> tuple[int, list[tuple[int, int, int]]]:
        if raw and int(raw[0]) == -1:
            raise NeedsSeed()
        return int(raw[0]), [(int(raw[i]), int(raw[i + 1]), int(raw[i + 2])) for i in range(1, len(raw), 3)]

    @staticmethod
    def _begin_args(gate: _Gate) -> tuple[list[str], list[Any]]:
        keys = [gate.pause_key, gate.seeded_key or f"{gate.pause_key}:unused"]
        index: dict[str, int] = {}
        argv: list[Any] = [1 if gate.seeded_key else 0, int(IN_FLIGHT_S * 1000), len(gate.items)]
        for send_id, rules in gate.items:
            argv += [send_id, len(rules)]
            for key, limit, window in rules:
                if key not in index:
                    keys.append(key)
                    index[key] = len(keys)
                argv += [index[key], limit, window]
        return keys, argv

    @staticmethod
    def _begin_result(raw: Any) -> list[int]:
        if raw and int(raw[0]) == -1:
            raise NeedsSeed()
        return [int(w) for w in raw]

    @staticmethod
    def _end_args(ends: _Ends) -> tuple[list[str], list[Any]]:
        keys: list[str] = []
        index: dict[str, int] = {}
        argv: list[Any] = [len(ends.items)]
        for send_id, ref, ago, rules in ends.items:
            argv += [send_id, ref or "", ago, len(rules)]
            for key, window in rules:
                if key not in index:
                    keys.append(key)
                    index[key] = len(keys)
                argv += [index[key], window]
        return keys, argv

    def _one(self, op: str, arg: Any) -> Any:
        result = self.many([(op, arg)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def reserve(self, plan: _Plan) -> tuple[int, list[tuple[int, int, int]]]:
        return self._one("reserve", plan)  # type: ignore[no-any-return]

    def begin(self, gate: _Gate) -> list[int]:
        return self._one("begin", gate)  # type: ignore[no-any-return]

    def end(self, ends: _Ends) -> None:
        self._one("end", ends)

    def many(self, calls: Sequence[tuple[str, Any]]) -> list[Any]:
        """Several scripts' calls (``reserve``, ``begin``, ``end``; several channels') in one round trip:
        a pipeline of EVALSHAs, not a transaction (each script is atomic on its own, as when called
        alone).  Per call its result, or the exception it raised (``NeedsSeed``: that channel first)."""
        from redis.exceptions import NoScriptError

        scripts = {"reserve": (self._reserve, self._reserve_args, self._reserve_result),
                   "begin": (self._begin, self._begin_args, self._begin_result),
                   "end": (self._end, self._end_args, lambda raw: None)}
        commands = []
        for op, arg in calls:
            script, args, _ = scripts[op]
            keys, argv = args(arg)
            commands.append(("EVALSHA", script.sha, len(keys), *keys, *argv))
        raws = self._pipeline(commands)
        missing = [i for i, raw in enumerate(raws) if isinstance(raw, NoScriptError)]
        if missing:  # Redis restarted or flushed its scripts: load them, then ask those calls again
            for op in {calls[i][0] for i in missing}:
                self.client.script_load(scripts[op][0].script)
            for i, raw in zip(missing, self._pipeline([commands[i] for i in missing]), strict=True):
                raws[i] = raw
        out: list[Any] = []
        for (op, _), raw in zip(calls, raws, strict=True):
            try:
                if isinstance(raw, Exception):
                    raise raw
                out.append(scripts[op][2](raw))
            except Exception as exc:  # noqa: BLE001 - handed to the caller per call
                out.append(exc)
        return out

    def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """``commands`` in one round trip on this thread's own connection; per command its reply, or the
        error Redis answered with.  redis-py's ``Pipeline`` cost about 55 us of CPU more per round trip
        (a pool checkout that polls the socket, command objects, a reset; two scripts' calls: 105 against
        47 us), and a one-recipient batch makes three (reserve, begin, end).  As redis-py's pool does on a
        checkout, a connection the server closed meanwhile (a restart, an idle timeout) is made afresh before
        it is used; a failure during the call is the caller's (the limiter fails closed).  After a fork the
        child makes its own connection."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import ResponseError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            pool = self.client.connection_pool
            conn = local.conn = pool.connection_class(**pool.connection_kwargs)
            local.pid = os.getpid()
        try:
            if conn.can_read():  # connects a new one; on an old one, EOF or bytes nobody asked for
                conn.disconnect()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            conn.disconnect()

        def run() -> list[Any]:
            # hiredis packs a command in C (redis-py's packer loops over the arguments in Python first)
            conn.send_packed_command([b"".join(map(_pack_command, commands))] if _pack_command is not None
                                     else conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:  # this command's answer; the others' follow on the wire
                    replies.append(exc)
            return replies

        return conn.retry.call_with_retry(run, lambda _error: conn.disconnect())  # type: ignore[no-any-return]

    def seed(self, seeded_key: str, entries: dict[str, list[tuple[int, str, int | None]]], offset_ms: int,
             windows: dict[str, int]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for key, items in entries.items():
            if items:
                times = {f"seed:{send_id}": (ended if ended is not None else at) + offset_ms
                         for at, send_id, ended in items}
                pipe.zadd(key, times)  # type: ignore[arg-type]
                pipe.pexpire(key, 2 * 86_400_000)
                pipe.set(f"{key}:last", max(times.values()), px=2 * 86_400_000)
                ended_ = {send_id: ended + offset_ms + windows[key] for _, send_id, ended in items if ended is not None}
                open_ = {send_id: at + offset_ms for at, send_id, ended in items if ended is None}
                if ended_:
                    pipe.zadd(f"{key}:busy", ended_)  # type: ignore[arg-type]
                    pipe.pexpire(f"{key}:busy", windows[key] + 2000)
                if open_:
                    pipe.zadd(f"{key}:open", open_)  # type: ignore[arg-type]
                    pipe.pexpire(f"{key}:open", int(IN_FLIGHT_S * 1000) + 2000)
        self._mark_seeded(keys=[seeded_key], client=pipe)
        pipe.execute()

    def clock_ms(self) -> int:
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def pause(self, pause_key: str, seconds: float) -> None:
        self._pause(keys=[pause_key], args=[max(1, int(seconds * 1000))])

    def paused_for(self, pause_key: str) -> float:
        return max(0, self.client.pttl(pause_key)) / 1000


try:
    from hiredis import pack_command as _pack_command
except ImportError:  # redis-py packs them itself
    _pack_command = None


#: seed(channel, since) -> [(wall-clock ms a send began, its send id, wall-clock ms it ended or None while it
#: has not)], from the database's attempt rows
SeedSource = Callable[[str, float], list[tuple[int, str, int | None]]]


class Limiter:
    def __init__(self, rules: dict[str, ChannelRules], backend: MemoryLimiterBackend | RedisLimiterBackend,
                 prefix: str = "vestnik:limit", *, seed: SeedSource | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # the moments in grants are on this clock (senders compare with time.monotonic)
        self.rules = rules
        self.backend = backend
        self.prefix = prefix
        self.seed_source = seed
        #: (channel, recipient key) -> its rules' timelines as the plan, the gate and the ends pass them:
        #: a batch asks for the same few hundred keys again and again (names built once, not per call)
        self._timelines: dict[tuple[str, str | None], tuple[list[tuple[str, int, int, int]],
                                                            list[tuple[str, int, int]], list[tuple[str, int]]]] = {}

    #: the most (channel, key) entries kept; past it the table starts afresh
    TIMELINES_KEPT = 100_000

    def _key_timelines(self, channel: str, key: str | None
                       ) -> tuple[list[tuple[str, int, int, int]], list[tuple[str, int, int]], list[tuple[str, int]]]:
        """A recipient key's own rule timelines (plan), then every rule's incl. the channel's (gate, ends)."""
        found = self._timelines.get((channel, key))
        if found is None:
            rules = self.rules.get(channel)
            own = [(f"{self.prefix}:{channel}:{r.name}:{key}", r) for r in rules.per_key(key)] if (
                rules is not None and key) else []
            every = [(f"{self.prefix}:{channel}:{r.name}", r) for r in rules.overall] + own if rules is not None else []
            found = ([(name, r.limit, r.window_ms, r.gap_ms) for name, r in own],
                     [(name, r.limit, r.window_ms) for name, r in every],
                     [(name, r.window_ms) for name, r in every])
            if len(self._timelines) >= self.TIMELINES_KEPT:
                self._timelines = {}
            self._timelines[(channel, key)] = found
        return found

    def _plan(self, channel: str, keys: Sequence[str | None], horizon_s: float, record: bool) -> _Plan:
        rules = self.rules.get(channel)
        pause_key = f"{self.prefix}:{channel}:pause"
        horizon_ms = int(horizon_s * 1000)
        if rules is None:
            return _Plan(pause_key, None, [], [[] for _ in keys], horizon_ms, record)

        def rule(r: Rule, key: str | None = None) -> tuple[str, int, int, int]:
            name = f"{self.prefix}:{channel}:{r.name}" + (f":{key}" if key else "")
            return name, r.limit, r.window_ms, r.gap_ms

        overall = [rule(r) for r in rules.overall]
        items = [self._key_timelines(channel, key)[0] for key in keys]
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
        return [Grant(base + value / 1000, base + until / 1000, ref=f"{plan.member}:{i}") if granted
                else Grant(None, None, value / 1000)
                for i, (granted, value, until) in enumerate(results, 1)]

    def _run(self, channel: str, plan: _Plan) -> list[tuple[int, int, int]]:
        try:
            return self.backend.reserve(plan)[1]
        except NeedsSeed:
            self._seed(channel)
            return self.backend.reserve(plan)[1]

    def _seed(self, channel: str) -> None:
        """Rebuild a channel's long windows from the database (its timelines are new, or Redis lost them
        or restarted from an older copy: the marker holds the run id of the server it was seeded on)."""
        rules = self.rules[channel]
        assert self.seed_source is not None
        timelines = {f"{self.prefix}:{channel}:{r.name}": r for r in rules.overall}
        longest_ms = max(r.window_ms for r in rules.overall)
        sends = self.seed_source(channel, time.time() - longest_ms / 1000)
        # Database times are wall-clock; the backend's clock may be another (monotonic, or Redis's).
        offset_ms = self.backend.clock_ms() - int(time.time() * 1000)
        now_wall = int(time.time() * 1000)
        entries = {key: [(at, send_id, ended) for at, send_id, ended in sends
                         if (ended if ended is not None else now_wall) > now_wall - r.window_ms]
                   for key, r in timelines.items()}
        self.backend.seed(f"{self.prefix}:{channel}:seeded", entries, offset_ms,
                          {key: r.window_ms for key, r in timelines.items()})
        log.info("limiter timeline rebuilt from the database", extra={
            "action": "limiter.seeded", "channel": channel, "sends": len(sends)})

    def begin(self, channel: str, sends: Sequence[tuple[str, str | None]]) -> list[float]:
        """The gate, right before sends are written: per ``(send id, recipient key)``, 0.0 when it may be
        written now (it counts as in flight from this moment until :meth:`end`), else the seconds to wait
        before asking again.  A send that waited for the CPU after its slot asks here, and only here is
        it decided: so no sliding window at the provider ever holds more than the limit (the module doc)."""
        if not sends:
            return []
        rules = self.rules.get(channel)
        seeded_key = (f"{self.prefix}:{channel}:seeded"
                      if rules is not None and rules.seeded and self.seed_source is not None else None)
        gate = _Gate(f"{self.prefix}:{channel}:pause", seeded_key,
                     [(send_id, self._key_timelines(channel, key)[1]) for send_id, key in sends])
        try:
            try:
                waits = self.backend.begin(gate)
            except NeedsSeed:
                self._seed(channel)
                waits = self.backend.begin(gate)
        except Exception as exc:  # noqa: BLE001 - fail closed on any backend trouble
            log.warning("limiter unavailable; holding sends", extra={"action": "limiter.unavailable",
                                                                     "channel": channel,
                                                                     "error": type(exc).__name__})
            return [UNAVAILABLE_WAIT_S for _ in sends]
        return [w / 1000 for w in waits]

    def end(self, channel: str, sends: Sequence[tuple[str, str | None, str | None, float]]) -> None:
        """Sends that ended: ``(send id, recipient key, the grant's ref, when its answer came)``, the
        moment on this limiter's clock.  Each then counts until that moment plus each rule's window.  A
        send never reported (its answer uncertain, its worker killed) counts as in flight for
        :data:`IN_FLIGHT_S`."""
        if not sends:
            return
        asked = self.clock()
        ends = _Ends([(send_id, ref, max(0, int((asked - done) * 1000)), self._key_timelines(channel, key)[2])
                      for send_id, key, ref, done in sends])
        try:
            self.backend.end(ends)
        except Exception as exc:  # noqa: BLE001 - the sends count as in flight until IN_FLIGHT_S: safe
            log.warning("could not record sends' ends; they count as in flight for a while", extra={
                "action": "limiter.end_failed", "channel": channel, "error": type(exc).__name__})

    # ---------------------------------------------------------- several channels, one round trip

    def _many(self, calls: list[tuple[str, str, Any]]) -> list[Any]:
        """``(channel, script, argument)`` calls in one round trip; per call its result or exception.
        A channel whose timeline is new is seeded, then its call made again alone."""
        try:
            results = self.backend.many([(op, arg) for _, op, arg in calls])
        except Exception as exc:  # noqa: BLE001 - each caller fails closed (or safe) on its own
            return [exc for _ in calls]
        out = []
        for (channel, op, arg), result in zip(calls, results, strict=True):
            if isinstance(result, NeedsSeed):
                try:
                    self._seed(channel)
                    result = getattr(self.backend, op)(arg)
                except Exception as exc:  # noqa: BLE001
                    result = exc
            out.append(result)
        return out

    def reserve_many(self, wanted: dict[str, Sequence[str | None]], *, horizon_s: float) -> dict[str, list[Grant]]:
        """:meth:`reserve` for several channels in one round trip (an inline batch spans channels)."""
        wanted = {channel: keys for channel, keys in wanted.items() if keys}
        if len(wanted) <= 1:
            return {channel: self.reserve(channel, keys, horizon_s=horizon_s) for channel, keys in wanted.items()}
        plans = {channel: self._plan(channel, keys, horizon_s, record=True) for channel, keys in wanted.items()}
        results = self._many([(channel, "reserve", plan) for channel, plan in plans.items()])
        base = self.clock()
        out: dict[str, list[Grant]] = {}
        for (channel, plan), result in zip(plans.items(), results, strict=True):
            if isinstance(result, Exception):  # fail closed, that channel
                log.warning("limiter unavailable; holding sends", extra={"action": "limiter.unavailable",
                                                                         "channel": channel,
                                                                         "error": type(result).__name__})
                out[channel] = [Grant(None, None, UNAVAILABLE_WAIT_S) for _ in wanted[channel]]
                continue
            out[channel] = [Grant(base + value / 1000, base + until / 1000, ref=f"{plan.member}:{i}") if granted
                            else Grant(None, None, value / 1000)
                            for i, (granted, value, until) in enumerate(result[1], 1)]
        return out

    def _gate(self, channel: str, sends: Sequence[tuple[str, str | None]]) -> _Gate:
        rules = self.rules.get(channel)
        seeded_key = (f"{self.prefix}:{channel}:seeded"
                      if rules is not None and rules.seeded and self.seed_source is not None else None)
        return _Gate(f"{self.prefix}:{channel}:pause", seeded_key,
                     [(send_id, self._key_timelines(channel, key)[1]) for send_id, key in sends])

    def begin_many(self, sends: dict[str, Sequence[tuple[str, str | None]]]) -> dict[str, list[float]]:
        """:meth:`begin` for several channels in one round trip."""
        sends = {channel: s for channel, s in sends.items() if s}
        if len(sends) <= 1:
            return {channel: self.begin(channel, s) for channel, s in sends.items()}
        results = self._many([(channel, "begin", self._gate(channel, s)) for channel, s in sends.items()])
        out: dict[str, list[float]] = {}
        for (channel, s), result in zip(sends.items(), results, strict=True):
            if isinstance(result, Exception):
                log.warning("limiter unavailable; holding sends", extra={"action": "limiter.unavailable",
                                                                         "channel": channel,
                                                                         "error": type(result).__name__})
                out[channel] = [UNAVAILABLE_WAIT_S for _ in s]
            else:
                out[channel] = [w / 1000 for w in result]
        return out

    def end_many(self, sends: dict[str, Sequence[tuple[str, str | None, str | None, float]]]) -> None:
        """:meth:`end` for several channels in one round trip."""
        sends = {channel: s for channel, s in sends.items() if s}
        if len(sends) <= 1:
            for channel, s in sends.items():
                self.end(channel, s)
            return
        asked = self.clock()
        calls = [(channel, "end", _Ends([(send_id, ref, max(0, int((asked - done) * 1000)),
                                          self._key_timelines(channel, key)[2]) for send_id, key, ref, done in s]))
                 for channel, s in sends.items()]
        for (channel, _, _), result in zip(calls, self._many(calls), strict=True):
            if isinstance(result, Exception):  # the sends count as in flight until IN_FLIGHT_S: safe
                log.warning("could not record sends' ends; they count as in flight for a while", extra={
                    "action": "limiter.end_failed", "channel": channel, "error": type(result).__name__})

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
