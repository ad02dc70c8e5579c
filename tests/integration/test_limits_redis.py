"""The Redis limiter across processes: the limit holds for all of them together."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

from vestnik.shared.config import Settings
from vestnik.workers.limits import Limiter, RedisLimiterBackend, rules_for


def _hammer(url: str, seconds: float, out) -> None:
    """One worker process: slots from the plan, each send through the gate, stamped by "the provider"
    (this host's wall clock) between the gate and the end, which is then reported."""
    backend = RedisLimiterBackend(url)
    lim = Limiter(rules_for(Settings(telegram_rate_per_s=20, telegram_chat_rate_per_s=1000)), backend)
    stamps = []
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        batch = lim.reserve("telegram", [None] * 5, horizon_s=0.3)
        for g in batch:
            if not g.granted:
                continue
            n += 1
            send_id = f"{os.getpid()}:{n}"
            time.sleep(max(0.0, g.at - time.monotonic()))
            while (wait := lim.begin("telegram", [(send_id, None)])[0]) > 0:
                time.sleep(wait)
            stamps.append(int(time.time() * 1000))
            lim.end("telegram", [(send_id, None, g.ref, time.monotonic())])
        waits = [g.wait_s for g in batch if not g.granted]
        if waits:
            time.sleep(min(min(waits), 0.05))
    out.put(stamps)


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
    assert max_in_window(grants, 1000) <= 20  # sends, on the host's clock, in milliseconds
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
