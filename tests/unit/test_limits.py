"""The limiter's rules with a fake clock: no sliding window ever exceeds its limit."""

from __future__ import annotations

import random
from dataclasses import replace

from vestnik.shared.config import Settings
from vestnik.workers.limits import Limiter, MemoryLimiterBackend, Rule, rules_for


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def run_senders(clock, lim, rng, *, seconds, keys, late, gate=True):
    """Worker threads as a loaded machine runs them, on the fake clock: batches reserve slots ahead; a
    send passes the gate (``begin``) at or after its slot, then may wait for the CPU before its request
    is written (``late``: seconds), and the provider stamps it anywhere between the gate and the answer;
    the answer's moment is reported (``end``) when the batch's chunk is done, later still.  Returns the
    provider's stamps as (time, chat)."""
    stamps: list[tuple[float, str]] = []
    queue: list[list] = []  # [due, key, ref, send id]
    flying: list[tuple[float, float, str, str | None, str]] = []  # (answer, reported, key, ref, send id)
    end_at = clock.t + seconds
    n = 0
    while clock.t < end_at:
        if len(queue) < 40:
            batch = [keys(rng) for _ in range(rng.randint(1, 60))]
            for key, g in zip(batch, lim.reserve("telegram", batch, horizon_s=2.0), strict=True):
                if g.granted:
                    n += 1
                    queue.append([g.at, key, g.ref, f"{n}:1"])
        queue.sort(key=lambda q: q[0])
        due = [q for q in queue if q[0] <= clock.t]
        waits = lim.begin("telegram", [(q[3], q[1]) for q in due]) if gate else [0.0] * len(due)
        for q, wait in zip(due, waits, strict=True):
            if wait > 0:
                q[0] = clock.t + wait  # asks again then
                continue
            queue.remove(q)
            written = clock.t + late(rng)  # the thread waited for the CPU after the gate let it go
            answer = written + rng.uniform(0.001, 0.02)
            stamps.append((rng.uniform(written, answer), q[1]))
            flying.append((answer, answer + rng.uniform(0, 0.3), q[1], q[2], q[3]))
        for f in [f for f in flying if f[1] <= clock.t]:
            flying.remove(f)
            lim.end("telegram", [(f[4], f[2], f[3], f[0])])
        clock.t += rng.uniform(0.0005, 0.02)
    return stamps


def loaded(rng) -> float:
    """A thread's wait for the CPU between the gate and the write: mostly short, sometimes 100-400 ms."""
    return rng.uniform(0.1, 0.4) if rng.random() < 0.15 else rng.uniform(0, 0.01)


def test_late_senders_never_exceed_the_limit_in_any_window_at_the_provider():
    """Whenever a send is written after the gate let it go, and whenever the provider stamps it until
    its answer, no one-second window at the provider holds more than 30, nor two to one chat; and the
    channel is used.  The same senders without the gate break the limit: the test can fail."""
    rng = random.Random(11)
    clock = Clock()
    lim = limiter(clock, telegram_rate_per_s=30, telegram_chat_rate_per_s=1)
    stamps = run_senders(clock, lim, rng, seconds=60, keys=lambda r: str(r.randint(1, 3000)), late=loaded)
    times = [t for t, _ in stamps]
    assert max_in_window(times, 1.0) <= 30
    chats: dict[str, list[float]] = {}
    for t, chat in stamps:
        chats.setdefault(chat, []).append(t)
    assert all(max_in_window(ts, 1.0) <= 1 for ts in chats.values())
    assert len(times) > 0.75 * 30 * 60  # a loaded machine's pace: within a quarter of the limit

    clock = Clock()
    ungated = run_senders(clock, limiter(clock, telegram_rate_per_s=30, telegram_chat_rate_per_s=1),
                          random.Random(11), seconds=60, keys=lambda r: str(r.randint(1, 3000)), late=loaded,
                          gate=False)
    assert max_in_window([t for t, _ in ungated], 1.0) > 30


def test_few_chats_and_late_senders_keep_one_a_second_per_chat():
    rng = random.Random(12)
    clock = Clock()
    lim = limiter(clock, telegram_rate_per_s=1000, telegram_chat_rate_per_s=1)
    stamps = run_senders(clock, lim, rng, seconds=30, keys=lambda r: str(r.randint(1, 5)), late=loaded)
    chats: dict[str, list[float]] = {}
    for t, chat in stamps:
        chats.setdefault(chat, []).append(t)
    assert all(max_in_window(ts, 1.0) <= 1 for ts in chats.values())
    assert len(stamps) > 5 * 30 * 0.6


def test_on_a_quiet_machine_the_channel_runs_at_the_limit():
    """Sends written at once and answered within 20 ms: about the limit, within 5 %."""
    rng = random.Random(13)
    clock = Clock()
    lim = limiter(clock, telegram_rate_per_s=30, telegram_chat_rate_per_s=1)
    stamps = run_senders(clock, lim, rng, seconds=60, keys=lambda r: str(r.randint(1, 3000)), late=lambda r: 0.0)
    times = sorted(t for t, _ in stamps)
    assert max_in_window(times, 1.0) <= 30
    assert (times[-1] - times[0]) / ((len(times) - 1) // 30) <= 1.05


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
    assert lim.capacity("telegram", horizon_s=0.5, most=100)[0] == 16  # half a second at the bot's even pace
    assert lim.capacity("telegram", horizon_s=0.5, most=100)[0] == 16  # nothing was taken
    lim.reserve("telegram", [str(i) for i in range(16)], horizon_s=0.5)
    free, wait = lim.capacity("telegram", horizon_s=0.0, most=100)
    assert free == 0 and 0.5 < wait < 0.6


def test_long_windows_are_rebuilt_from_the_database_once():
    clock = Clock()
    seeded: list[str] = []

    def seed(channel, since):
        seeded.append(channel)
        now_ms = int(__import__("time").time() * 1000)
        return [(now_ms - 1000 * i, f"{i}:1", now_ms - 1000 * i + 5) for i in range(480)]  # 480 in 8 min

    lim = Limiter(rules_for(Settings(email_rate_per_min=10_000, email_rate_per_hour=10_000,
                                     email_rate_per_day=480)), MemoryLimiterBackend(clock), seed=seed)
    assert lim.acquire("email") > 3600  # the day's quota is used up: it waits for the window
    assert lim.acquire("email") > 3600
    assert seeded == ["email"]  # rebuilt once, on first use
    assert lim.acquire("telegram", "1") == 0  # a channel without long windows needs no rebuild


def limiter(clock, *, bursts=False, **settings) -> Limiter:
    """The channels' rules; ``bursts``: the bot's rule without its even pace (tests of windows alone)."""
    rules = rules_for(Settings(**settings))
    if bursts:
        telegram = rules["telegram"]
        rules["telegram"] = replace(telegram, overall=tuple(replace(r, spread=False) for r in telegram.overall))
    return Limiter(rules, MemoryLimiterBackend(clock), clock=clock)


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
    lim = limiter(clock, bursts=True, telegram_rate_per_s=30, telegram_chat_rate_per_s=1000)
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
    lim = limiter(clock, bursts=True, telegram_rate_per_s=2, telegram_chat_rate_per_s=100)
    assert lim.acquire("telegram", "1") == 0 and lim.acquire("telegram", "2") == 0
    wait = lim.acquire("telegram", "3")
    assert 1.0 <= wait <= 1.05  # the window, the jitter allowance and the first grant's deadline
    clock.t += wait
    assert lim.acquire("telegram", "3") == 0


def test_per_chat_limit_is_independent_across_chats():
    clock = Clock()
    lim = limiter(clock, bursts=True)
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
