"""The same answers from both limiter backends: Redis (one Lua script, Redis's clock) and memory.

Each scenario runs on both on the real clock; the figures it checks are far from any edge (a slot
a second away is not judged to the millisecond), so a loaded machine does not change the answers.
"""

from __future__ import annotations

import pytest

from vestnik.shared.config import Settings
from vestnik.workers.limits import LOOSE_S, TIGHT_S, Limiter, MemoryLimiterBackend, RedisLimiterBackend, rules_for


@pytest.fixture(params=["memory", "redis"])
def make(request):
    def build(seed=None, **settings) -> Limiter:
        if request.param == "redis":
            request.getfixturevalue("redis_client")  # flushed before and after
            backend = RedisLimiterBackend(request.getfixturevalue("redis_url"))
        else:
            backend = MemoryLimiterBackend()
        return Limiter(rules_for(Settings(**settings)), backend, seed=seed)

    return build


def test_a_batch_takes_the_free_slots_and_the_rest_waits_for_the_window(make):
    lim = make(telegram_rate_per_s=2, telegram_chat_rate_per_s=100)
    first, second, third = lim.reserve("telegram", [None, None, None], horizon_s=0)
    assert first.granted and second.granted and not third.granted
    assert first.deadline - first.at == pytest.approx(min(LOOSE_S, 0.5), abs=0.002)  # idle: loose
    assert second.deadline - second.at == pytest.approx(TIGHT_S, abs=0.002)  # half full: tight
    assert third.deadline is None and 0.95 < third.wait_s <= 1.1  # the 2nd-latest deadline + the window
    assert lim.reserve("telegram", [None], horizon_s=0)[0].granted is False  # the two were recorded


def test_batches_one_after_another_each_record_their_slots(make):
    lim = make(telegram_rate_per_s=3, telegram_chat_rate_per_s=100)
    assert [lim.reserve("telegram", [None], horizon_s=0)[0].granted for _ in range(4)] == [True, True, True, False]


def test_a_recipients_own_rule_holds_it_back_and_not_the_channel(make):
    lim = make(telegram_rate_per_s=30, telegram_chat_rate_per_s=1, telegram_group_rate_per_min=1)
    grants = lim.reserve("telegram", ["1001", "1001", "1002", "-7", "-7"], horizon_s=5)
    assert [g.granted for g in grants] == [True, False, True, True, False]
    assert 0.9 < grants[1].wait_s < 2.0
    assert 59 < grants[4].wait_s < 62  # the group's 1 a minute, not the chat's 1 a second


def test_looking_at_capacity_records_nothing(make):
    lim = make(telegram_rate_per_s=2, telegram_chat_rate_per_s=100)
    assert lim.capacity("telegram", horizon_s=0, most=5) == (2, 0.0)
    assert lim.capacity("telegram", horizon_s=0, most=5) == (2, 0.0)
    assert [g.granted for g in lim.reserve("telegram", [None] * 3, horizon_s=0)] == [True, True, False]
    free, wait = lim.capacity("telegram", horizon_s=0, most=5)
    assert free == 0 and 0.9 < wait <= 1.6


def test_a_pause_holds_every_item_and_only_grows(make):
    lim = make()
    lim.pause("telegram", 5)
    lim.pause("telegram", 1)
    # What is left of the 5 s (not the 1 s asked after it), whatever a loaded machine took in between.
    left = lim.paused_for("telegram")
    assert 1 < left <= 5
    grants = lim.reserve("telegram", ["1", "2"], horizon_s=60)
    assert all(not g.granted and 0 < g.wait_s <= left for g in grants)
    assert lim.paused_for("email") == 0
    assert lim.reserve("email", [None], horizon_s=0)[0].granted


def test_long_windows_are_seeded_once_from_past_sends(make):
    import time

    calls = []

    def source(channel, since):
        calls.append(channel)
        now_ms = int(time.time() * 1000)
        return [(now_ms - 10_000, "a"), (now_ms - 20_000, "b"), (now_ms - 7_200_000, "old")]

    lim = make(seed=source, email_rate_per_min=3, email_rate_per_hour=100, email_rate_per_day=1000)
    grants = lim.reserve("email", [None, None], horizon_s=0)
    assert [g.granted for g in grants] == [True, False]  # two of the minute's three were sent before
    assert 30 < grants[1].wait_s < 62
    assert lim.reserve("email", [None], horizon_s=0)[0].granted is False
    assert calls == ["email"]  # once: the timeline is marked seeded


def test_redis_keeps_seeded_timelines_two_days_and_marks_the_channel_seeded(redis_url, redis_client):
    backend = RedisLimiterBackend(redis_url)
    backend.seed("t:seeded", {"t:day": [(1000, "seed:a"), (3000, "seed:b")], "t:none": []}, 5)
    two_days_ms = 2 * 86_400_000
    assert redis_client.get("t:seeded") == b"1"
    assert redis_client.zscore("t:day", "seed:a") == 1005 and redis_client.get("t:day:last") == b"3005"
    for key in ("t:day", "t:day:last"):
        assert two_days_ms - 60_000 < redis_client.pttl(key) <= two_days_ms, key
    assert not redis_client.exists("t:none") and not redis_client.exists("t:none:last")
