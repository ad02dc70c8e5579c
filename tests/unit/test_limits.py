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


def sends_within_grants(clock, lim, batches, rng, *, keys=None):
    """Reserve ``batches`` batches as fast as slots allow; each send happens at a random moment between
    its slot and its deadline (the worst a sender may do).  Returns the send times."""
    sent = []
    for _ in range(batches):
        n = rng.randint(1, 80)
        grants = lim.reserve("telegram", [keys(rng) if keys else str(rng.randint(1, 10_000)) for _ in range(n)],
                             horizon_s=2.0)
        sent += [rng.uniform(g.at, g.deadline) for g in grants if g.granted]  # moments on the fake clock
        clock.t += rng.uniform(0, 1.5)
    return sent


def test_sends_anywhere_within_their_grants_never_exceed_the_limit_in_any_window():
    """The provider's clock sees each send somewhere between its slot and its deadline: whatever the
    moment, no one-second window holds more than 30, and a 1 s-per-chat window never 2."""
    rng = random.Random(11)
    clock = Clock()
    lim = limiter(clock, telegram_rate_per_s=30, telegram_chat_rate_per_s=1)
    sent = sends_within_grants(clock, lim, 300, rng)
    assert max_in_window(sent, 1.0) <= 30
    assert len(sent) > 0.9 * 30 * (max(sent) - min(sent))  # and the channel is used, at about 1.04x the minimum
    clock = Clock()
    lim = limiter(clock, telegram_rate_per_s=1000, telegram_chat_rate_per_s=1)
    chats: dict[str, list[float]] = {}
    rng = random.Random(12)
    batches = []
    for _ in range(200):
        keys = [str(rng.randint(1, 5)) for _ in range(rng.randint(1, 10))]
        for key, g in zip(keys, lim.reserve("telegram", keys, horizon_s=2.0), strict=True):
            if g.granted:
                chats.setdefault(key, []).append(rng.uniform(g.at, g.deadline))
        batches.append(len(keys))
        clock.t += rng.uniform(0, 0.7)
    assert all(max_in_window(times, 1.0) <= 1 for times in chats.values())


def test_a_batch_gets_the_next_slots_and_the_rest_waits():
    clock = Clock()
    lim = limiter(clock, telegram_rate_per_s=30, telegram_chat_rate_per_s=1)
    grants = lim.reserve("telegram", [str(i) for i in range(100)], horizon_s=2.0)
    granted = [g for g in grants if g.granted]
    assert 55 <= len(granted) <= 60  # two windows' worth within the 2 s horizon
    assert all(not g.granted and g.wait_s > 1.9 for g in grants[len(granted):])
    assert [g.at for g in granted] == sorted(g.at for g in granted)


def test_a_held_back_recipient_leaves_its_slot_to_the_next():
    clock = Clock()
    lim = limiter(clock, telegram_rate_per_s=30, telegram_chat_rate_per_s=1)
    first, again, other = lim.reserve("telegram", ["A", "A", "B"], horizon_s=2.0)
    assert first.granted and not again.granted and other.granted
    assert 1.0 <= again.wait_s <= 1.6  # its chat's window after the first one's deadline
    assert other.at - first.at < 0.1  # B was not pushed behind A's second message


def test_group_chats_get_twenty_a_minute():
    clock = Clock()
    lim = limiter(clock, telegram_rate_per_s=1000, telegram_chat_rate_per_s=1000)
    granted = 0
    for _ in range(40):
        granted += lim.reserve("telegram", ["-100123"], horizon_s=0.0)[0].granted
        clock.t += 1.0
    assert granted == 20  # 40 s, one a second, but a group takes 20 a minute


def test_capacity_only_looks():
    clock = Clock()
    lim = limiter(clock, telegram_rate_per_s=30)
    assert lim.capacity("telegram", horizon_s=0.5, most=100)[0] == 30  # the first window's worth, now
    assert lim.capacity("telegram", horizon_s=0.5, most=100)[0] == 30  # nothing was taken
    lim.reserve("telegram", [str(i) for i in range(30)], horizon_s=0.5)
    free, wait = lim.capacity("telegram", horizon_s=0.5, most=100)
    assert free == 0 and 0.9 < wait < 1.1


def test_long_windows_are_rebuilt_from_the_database_once():
    clock = Clock()
    seeded: list[str] = []

    def seed(channel, since):
        seeded.append(channel)
        now_ms = int(__import__("time").time() * 1000)
        return [(now_ms - 1000 * i, str(i)) for i in range(480)]  # 480 emails in the last 8 minutes

    lim = Limiter(rules_for(Settings(email_rate_per_min=10_000, email_rate_per_hour=10_000,
                                     email_rate_per_day=480)), MemoryLimiterBackend(clock), seed=seed)
    assert lim.acquire("email") > 3600  # the day's quota is used up: it waits for the window
    assert lim.acquire("email") > 3600
    assert seeded == ["email"]  # rebuilt once, on first use
    assert lim.acquire("telegram", "1") == 0  # a channel without long windows needs no rebuild


def limiter(clock, **settings) -> Limiter:
    return Limiter(rules_for(Settings(**settings)), MemoryLimiterBackend(clock), clock=clock)


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
    assert 1.0 <= wait <= 1.05  # the window, the jitter allowance and the first grant's deadline
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
    assert abs(wait - (86400 - 480 * 60)) < 2  # the first grants had a loose deadline (the window was empty)
    clock.t += wait
    assert lim.acquire("email") == 0


def test_fractional_rates():
    assert Rule.per_second("x", 0.5) == Rule("x", 1, 2.0)
    assert Rule.per_second("x", 30) == Rule("x", 30, 1.0)


def test_unreachable_redis_fails_closed():
    from vestnik.workers.limits import RedisLimiterBackend

    lim = Limiter(rules_for(Settings()), RedisLimiterBackend("redis://127.0.0.1:6390/0"))
    assert lim.acquire("telegram", "1") > 0
