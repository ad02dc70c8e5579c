"""The same answers from both limiter backends: Redis (one Lua script, Redis's clock) and memory.

Each scenario runs on both on the real clock; the figures it checks are far from any edge (a slot
a second away is not judged to the millisecond), so a loaded machine does not change the answers.
"""

from __future__ import annotations

import pytest

from vestnik.shared.config import Settings
from vestnik.workers.limits import EXPECTED_S, Limiter, MemoryLimiterBackend, RedisLimiterBackend, rules_for


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
    lim = make(email_rate_per_min=2, email_rate_per_hour=100, email_rate_per_day=1000)
    first, second, third = lim.reserve("email", [None, None, None], horizon_s=0)
    assert first.granted and second.granted and not third.granted
    assert first.deadline - first.at == pytest.approx(EXPECTED_S, abs=0.002)  # the plan expects the end soon
    assert second.deadline - second.at == pytest.approx(EXPECTED_S, abs=0.002)
    assert third.deadline is None and 59.9 < third.wait_s <= 60.1  # the 2nd-latest expected end + the window
    assert lim.reserve("email", [None], horizon_s=0)[0].granted is False  # the two were recorded


def test_a_spread_rule_spaces_its_slots_evenly(make):
    lim = make(telegram_rate_per_s=4, telegram_chat_rate_per_s=100)
    grants = lim.reserve("telegram", [None] * 5, horizon_s=0.8)
    assert [g.granted for g in grants] == [True, True, True, True, False]
    gaps = [b.at - a.at for a, b in zip(grants, grants[1:4], strict=False)]
    assert all(abs(gap - 0.25) < 0.005 for gap in gaps), gaps  # the bot's 4/s, one every 250 ms


def test_batches_one_after_another_each_record_their_slots(make):
    lim = make(email_rate_per_min=3, email_rate_per_hour=100, email_rate_per_day=1000)
    assert [lim.reserve("email", [None], horizon_s=0)[0].granted for _ in range(4)] == [True, True, True, False]


def test_a_recipients_own_rule_holds_it_back_and_not_the_channel(make):
    lim = make(telegram_rate_per_s=30, telegram_chat_rate_per_s=1, telegram_group_rate_per_min=1)
    grants = lim.reserve("telegram", ["1001", "1001", "1002", "-7", "-7"], horizon_s=5)
    assert [g.granted for g in grants] == [True, False, True, True, False]
    assert 0.9 < grants[1].wait_s < 2.0
    assert 59 < grants[4].wait_s < 62  # the group's 1 a minute, not the chat's 1 a second


def test_looking_at_capacity_records_nothing(make):
    lim = make(email_rate_per_min=2, email_rate_per_hour=100, email_rate_per_day=1000)
    assert lim.capacity("email", horizon_s=0, most=5) == (2, 0.0)
    assert lim.capacity("email", horizon_s=0, most=5) == (2, 0.0)
    assert [g.granted for g in lim.reserve("email", [None] * 3, horizon_s=0)] == [True, True, False]
    free, wait = lim.capacity("email", horizon_s=0, most=5)
    assert free == 0 and 59.9 < wait <= 60.1


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
        return [(now_ms - 10_000, "1:1", now_ms - 9_990), (now_ms - 20_000, "2:1", now_ms - 19_990),
                (now_ms - 7_200_000, "3:1", now_ms - 7_199_990)]

    lim = make(seed=source, email_rate_per_min=3, email_rate_per_hour=100, email_rate_per_day=1000)
    grants = lim.reserve("email", [None, None], horizon_s=0)
    assert [g.granted for g in grants] == [True, False]  # two of the minute's three were sent before
    assert 30 < grants[1].wait_s < 62
    assert lim.reserve("email", [None], horizon_s=0)[0].granted is False
    assert calls == ["email"]  # once: the timeline is marked seeded


def test_redis_keeps_seeded_timelines_two_days_and_marks_the_channel_seeded_by_its_run(redis_url, redis_client):
    backend = RedisLimiterBackend(redis_url)
    backend.seed("t:seeded", {"t:day": [(1000, "a", 1200), (3000, "b", None)], "t:none": []}, 5,
                 {"t:day": 86_400_000, "t:none": 60_000})
    two_days_ms = 2 * 86_400_000
    # The marker is this server's run id: a restart, even from a saved copy, asks for seeding again.
    assert redis_client.get("t:seeded") == redis_client.info("server")["run_id"].encode()
    assert redis_client.zscore("t:day", "seed:a") == 1205 and redis_client.get("t:day:last") == b"3005"
    for key in ("t:day", "t:day:last"):
        assert two_days_ms - 60_000 < redis_client.pttl(key) <= two_days_ms, key
    assert redis_client.zscore("t:day:busy", "a") == 1205 + 86_400_000  # ended: counts a day after its end
    assert redis_client.zscore("t:day:open", "b") == 3005  # in flight
    assert not redis_client.exists("t:none") and not redis_client.exists("t:none:last")


def test_the_gate_counts_sends_in_flight_and_until_their_end_plus_the_window(make):
    """``begin`` lets ``limit`` sends go; the next waits at least the window while they are in flight
    (their end is not known); once they ended it waits until the first end plus the window."""
    import time

    lim = make(telegram_rate_per_s=2, telegram_chat_rate_per_s=100)
    assert lim.begin("telegram", [("1:1", "7"), ("2:1", "8"), ("3:1", "9")])[:2] == [0.0, 0.0]
    assert lim.begin("telegram", [("3:1", "9")]) == [1.0]  # both in flight: not before a window from now
    done = time.monotonic()
    lim.end("telegram", [("1:1", "7", None, done), ("2:1", "8", None, done + 0.3)])
    wait = lim.begin("telegram", [("3:1", "9")])[0]
    assert 0.6 < wait <= 1.01  # the first one's end plus the window (rounded up to the millisecond)
    time.sleep(wait)
    assert lim.begin("telegram", [("3:1", "9")]) == [0.0]


def test_the_gate_keeps_one_a_second_to_a_chat_and_holds_a_paused_channel(make):
    lim = make(telegram_rate_per_s=100, telegram_chat_rate_per_s=1)
    assert lim.begin("telegram", [("1:1", "7"), ("2:1", "7"), ("3:1", "8")]) == [0.0, 1.0, 0.0]
    lim.pause("telegram", 5)
    [wait] = lim.begin("telegram", [("4:1", "9")])
    assert 1 < wait <= 5


def test_the_gate_of_a_channel_with_long_windows_seeds_it_first(make):
    import time

    def source(channel, since):
        now_ms = int(time.time() * 1000)
        return [(now_ms - 10_000, "1:1", now_ms - 9_990), (now_ms - 20_000, "2:1", now_ms - 19_990)]

    lim = make(seed=source, email_rate_per_min=3, email_rate_per_hour=100, email_rate_per_day=1000)
    first, second = lim.begin("email", [("3:1", None), ("4:1", None)])
    assert first == 0.0  # two of the minute's three were sent before: the third goes ...
    assert 39 < second <= 40.02  # ... and the fourth waits until the earlier of the two ended a minute ago
