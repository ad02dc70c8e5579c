"""The limiter's rules with a fake clock: no sliding window ever exceeds its limit."""

from __future__ import annotations

import random

from vestnik.shared.config import Settings
from vestnik.workers.limits import Limiter, MemoryLimiterBackend, Rule, rules_for


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def limiter(clock, **settings) -> Limiter:
    return Limiter(rules_for(Settings(**settings)), MemoryLimiterBackend(clock))


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_no_sliding_window_exceeds_the_limit_under_random_arrivals():
    clock = Clock()
    lim = limiter(clock, telegram_rate_per_s=30, telegram_chat_rate_per_s=1000)
    rng = random.Random(7)
    granted: list[float] = []
    for _ in range(5000):
        clock.t += rng.expovariate(80)  # 80 arrivals/s against a 30/s limit
        if lim.acquire("telegram", str(rng.randint(1, 500))) == 0:
            granted.append(clock.t)
    assert max_in_window(granted, 1.0) == 30
    assert len(granted) > 0.9 * 30 * (clock.t - 1000)  # and the limit is used, not starved


def test_the_returned_wait_is_exact_enough_to_pass_then():
    clock = Clock()
    lim = limiter(clock, telegram_rate_per_s=2, telegram_chat_rate_per_s=100)
    assert lim.acquire("telegram", "1") == 0 and lim.acquire("telegram", "2") == 0
    wait = lim.acquire("telegram", "3")
    assert 0.99 <= wait <= 1.0
    clock.t += wait
    assert lim.acquire("telegram", "3") == 0


def test_per_chat_limit_is_independent_across_chats():
    clock = Clock()
    lim = limiter(clock)
    assert lim.acquire("telegram", "A") == 0
    assert lim.acquire("telegram", "A") > 0.9  # 1 per second to one chat
    assert lim.acquire("telegram", "B") == 0


def test_pause_blocks_the_channel_until_it_ends():
    clock = Clock()
    lim = limiter(clock)
    lim.pause("telegram", 3)
    assert 2.9 < lim.acquire("telegram", "A") <= 3
    assert lim.acquire("email") == 0  # other channels are not paused
    clock.t += 3.01
    assert lim.acquire("telegram", "A") == 0


def test_daily_email_quota_makes_the_next_message_wait_for_the_window():
    clock = Clock()
    lim = limiter(clock, email_rate_per_min=10_000, email_rate_per_hour=10_000, email_rate_per_day=480)
    for _ in range(480):
        assert lim.acquire("email") == 0
        clock.t += 60
    wait = lim.acquire("email")  # the 481st, 8 hours after the first
    assert abs(wait - (86400 - 480 * 60)) < 1
    clock.t += wait
    assert lim.acquire("email") == 0


def test_fractional_rates():
    assert Rule.per_second("x", 0.5) == Rule("x", 1, 2.0)
    assert Rule.per_second("x", 30) == Rule("x", 30, 1.0)


def test_unreachable_redis_fails_closed():
    from vestnik.workers.limits import RedisLimiterBackend

    lim = Limiter(rules_for(Settings()), RedisLimiterBackend("redis://127.0.0.1:6390/0"))
    assert lim.acquire("telegram", "1") > 0
