"""The Redis limiter across processes: the limit holds for all of them together."""

from __future__ import annotations

import multiprocessing as mp
import time

from vestnik.shared.config import Settings
from vestnik.workers.limits import Limiter, RedisLimiterBackend, rules_for


def _hammer(url: str, seconds: float, out) -> None:
    backend = RedisLimiterBackend(url)
    lim = Limiter(rules_for(Settings(telegram_rate_per_s=20, telegram_chat_rate_per_s=1000)), backend)
    grants = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        batch = lim.reserve("telegram", [None] * 5, horizon_s=0.3)
        now_mono, now_wall = time.monotonic(), time.time()
        # each grant's slot on the host's wall clock (all three processes share it), in ms
        grants += [int((now_wall + g.at - now_mono) * 1000) for g in batch if g.granted]
        waits = [g.wait_s for g in batch if not g.granted]
        if waits:
            time.sleep(min(min(waits), 0.05))
    out.put(grants)


def max_in_window(times: list[int], window: int) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_three_processes_together_never_exceed_the_limit(redis_url, redis_client):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(redis_url, 2.0, out)) for _ in range(3)]
    for p in procs:
        p.start()
    grants = [t for _ in procs for t in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=30)
    assert max_in_window(grants, 1000) <= 20  # slots, on the host's clock, in milliseconds
    assert len(grants) >= 30  # ~2 s at 20/s, shared


def test_a_pause_set_by_one_process_holds_the_others(redis_url, redis_client):
    a = Limiter(rules_for(Settings()), RedisLimiterBackend(redis_url))
    b = Limiter(rules_for(Settings()), RedisLimiterBackend(redis_url))
    a.pause("telegram", 3)
    assert 2.5 < b.acquire("telegram", "1") <= 3
    assert b.acquire("email") == 0
    assert 2.5 < b.paused_for("telegram") <= 3


def test_a_longer_pause_is_never_shortened(redis_url, redis_client):
    lim = Limiter(rules_for(Settings()), RedisLimiterBackend(redis_url))
    lim.pause("telegram", 10)
    lim.pause("telegram", 2)
    assert lim.paused_for("telegram") > 9
