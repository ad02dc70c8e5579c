"""The limiter's details that test_limits.py's properties leave loose (found by ``make mutate``).

The rules' names and windows (they name the Redis keys every worker shares), the slot deadlines,
a paused or saturated batch answered item by item, the smallest waits, the seeding window, and
what an operator reads in the log when the shared state cannot be reached.
"""

from __future__ import annotations

import logging

import pytest

from vestnik.shared.config import Settings
from vestnik.workers import limits
from vestnik.workers.limits import (
    EXPECTED_S,
    UNAVAILABLE_WAIT_S,
    ChannelRules,
    Limiter,
    MemoryLimiterBackend,
    Rule,
    rules_for,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(clock: Clock, **settings) -> tuple[Limiter, MemoryLimiterBackend]:
    backend = MemoryLimiterBackend(clock)
    return Limiter(rules_for(Settings(**settings)), backend, clock=clock), backend


def test_the_rules_of_each_channel_by_name_limit_and_window():
    rules = rules_for(Settings(telegram_rate_per_s=30, telegram_chat_rate_per_s=1, telegram_group_rate_per_min=20,
                               email_rate_per_min=10, email_rate_per_hour=100, email_rate_per_day=480))
    assert rules["telegram"].overall == (Rule("global", 30, 1.0, spread=True),)
    assert rules["telegram"].per_key("1001") == (Rule("chat", 1, 1.0),)
    assert rules["telegram"].per_key("-1001") == (Rule("chat", 1, 1.0), Rule("group", 20, 60.0))
    assert rules["telegram"].per_key("@channel") == (Rule("chat", 1, 1.0), Rule("group", 20, 60.0))
    assert rules["telegram"].per_key("x@y") == (Rule("chat", 1, 1.0),)
    assert rules["email"].overall == (Rule("minute", 10, 60.0), Rule("hour", 100, 3600.0), Rule("day", 480, 86400.0))
    assert rules["email"].per_key("anna@example.com") == ()
    assert rules["email"].seeded and not rules["telegram"].seeded


def test_timelines_are_named_by_prefix_channel_rule_and_key():
    clock = Clock()
    lim, backend = make(clock)
    assert lim.prefix == "vestnik:limit"
    lim.reserve("telegram", ["1001", None, "-5"], horizon_s=5)
    assert set(backend.lines) == {"vestnik:limit:telegram:global", "vestnik:limit:telegram:chat:1001",
                                  "vestnik:limit:telegram:chat:-5", "vestnik:limit:telegram:group:-5"}
    lim.pause("telegram", 3)
    assert set(backend.paused_until) == {"vestnik:limit:telegram:pause"}
    other = Limiter(rules_for(Settings()), backend, prefix="p", clock=clock)
    other.reserve("telegram", ["7"], horizon_s=1)
    assert "p:telegram:chat:7" in backend.lines


def test_a_channel_without_rules_grants_everything_at_once():
    clock = Clock()
    lim = Limiter({}, MemoryLimiterBackend(clock), clock=clock)
    grants = lim.reserve("sms", ["a", None, "b"], horizon_s=0)
    assert [(g.at, g.deadline, g.wait_s) for g in grants] == [(1000.0, 1000.0 + EXPECTED_S, 0.0)] * 3


def test_the_plan_expects_each_send_to_end_soon_after_its_slot_and_spreads_the_bots_slots():
    clock = Clock()
    lim, _ = make(clock, telegram_rate_per_s=4, telegram_chat_rate_per_s=100)
    grants = lim.reserve("telegram", [None] * 4, horizon_s=1.0)
    assert [round(g.deadline - g.at, 3) for g in grants] == [EXPECTED_S] * 4
    assert [round(g.at - clock.t, 3) for g in grants] == [0.0, 0.25, 0.5, 0.75]


def test_a_paused_channel_answers_every_item_of_a_batch_with_the_pause():
    clock = Clock()
    lim, _ = make(clock)
    lim.pause("telegram", 2.5)
    grants = lim.reserve("telegram", ["1", "2", "3"], horizon_s=10)
    assert [(g.granted, g.wait_s, g.deadline) for g in grants] == [(False, 2.5, None)] * 3
    lim.pause("telegram", 1.0)  # a shorter pause never shortens a longer one
    assert lim.paused_for("telegram") == 2.5
    clock.t += 2.4985
    assert lim.reserve("telegram", ["1"], horizon_s=10)[0].wait_s == 0.001  # the last millisecond still counts
    clock.t += 0.0015
    assert lim.paused_for("telegram") == 0.0 and lim.reserve("telegram", ["1"], horizon_s=10)[0].granted


def test_a_saturated_channel_answers_every_item_beyond_the_horizon():
    clock = Clock()
    lim, _ = make(clock, telegram_rate_per_s=2, telegram_chat_rate_per_s=100)
    grants = lim.reserve("telegram", [None] * 5, horizon_s=0.5)
    assert [g.granted for g in grants] == [True, True, False, False, False]
    assert all(g.deadline is None and g.wait_s > 0.5 for g in grants[2:])


def test_a_held_back_recipient_waits_for_its_own_rule_with_no_deadline():
    clock = Clock()
    lim, _ = make(clock, telegram_rate_per_s=30, telegram_chat_rate_per_s=1)
    first, second = lim.reserve("telegram", ["1001", "1001"], horizon_s=5)
    assert first.granted and not second.granted and second.deadline is None
    assert second.wait_s == pytest.approx(1.0 + EXPECTED_S, abs=0.002)


def test_acquire_returns_zero_when_counted_and_at_least_a_millisecond_otherwise():
    clock = Clock()
    lim, _ = make(clock, telegram_rate_per_s=30, telegram_chat_rate_per_s=1)
    assert lim.acquire("telegram", "1") == 0.0
    assert lim.acquire("telegram", "1") == pytest.approx(1.0 + EXPECTED_S, abs=0.002)
    lim.pause("telegram", 0.5)
    assert lim.acquire("telegram", "2") == 0.5


def test_capacity_counts_free_slots_within_the_horizon_and_the_wait_when_none():
    clock = Clock()
    lim, _ = make(clock, email_rate_per_min=3, email_rate_per_hour=100, email_rate_per_day=1000)
    assert lim.capacity("email", horizon_s=0.0, most=10) == (3, 0.0)
    assert lim.capacity("email", horizon_s=0.0, most=2) == (2, 0.0)
    assert lim.capacity("email", horizon_s=0.0, most=0) == (1, 0.0)  # asks about one at least
    lim.reserve("email", [None] * 3, horizon_s=0)
    free, wait = lim.capacity("email", horizon_s=0.0, most=1)
    assert free == 0 and wait == pytest.approx(60.0 + EXPECTED_S, abs=0.002)
    lim.pause("email", 4)
    assert lim.capacity("email", horizon_s=10, most=5) == (0, 4.0)


class Broken(MemoryLimiterBackend):
    def reserve(self, plan):
        raise ConnectionError("redis is down")

    def pause(self, pause_key, seconds):
        raise ConnectionError("redis is down")

    def paused_for(self, pause_key):
        raise ConnectionError("redis is down")


def test_when_the_shared_state_is_unreachable_every_answer_is_wait_and_the_log_says_so(caplog):
    lim = Limiter(rules_for(Settings()), Broken(Clock()), clock=Clock())
    caplog.set_level(logging.INFO, logger="vestnik.limits")
    assert [(g.at, g.deadline, g.wait_s) for g in lim.reserve("telegram", ["1", "2"], horizon_s=1)] == [
        (None, None, UNAVAILABLE_WAIT_S)] * 2
    assert lim.capacity("email", horizon_s=1, most=3) == (0, UNAVAILABLE_WAIT_S)
    assert lim.paused_for("telegram") == UNAVAILABLE_WAIT_S
    lim.pause("telegram", 5)
    seen = [(r.levelname, r.getMessage(), r.action, r.channel, r.error) for r in caplog.records]
    assert seen == [
        ("WARNING", "limiter unavailable; holding sends", "limiter.unavailable", "telegram", "ConnectionError"),
        ("WARNING", "limiter unavailable; holding sends", "limiter.unavailable", "email", "ConnectionError"),
        ("WARNING", "could not record a channel pause", "limiter.pause_failed", "telegram", "ConnectionError"),
    ]


def test_seeding_reads_the_longest_window_back_and_keeps_only_sends_inside_each(monkeypatch, caplog):
    clock = Clock()
    wall = 1_800_000_000.0
    monkeypatch.setattr(limits.time, "time", lambda: wall)
    asked = []

    def source(channel, since):
        asked.append((channel, since))
        return [(int(wall * 1000) - 30_000, "a", None), (int(wall * 1000) - 61_000, "b", int(wall * 1000) - 60_000),
                (int(wall * 1000) - 3_600_000, "c", int(wall * 1000) - 3_600_000 + 10)]

    backend = MemoryLimiterBackend(clock)
    lim = Limiter(rules_for(Settings(email_rate_per_min=2, email_rate_per_hour=4, email_rate_per_day=100)), backend,
                  seed=source, clock=clock)
    caplog.set_level(logging.INFO, logger="vestnik.limits")
    assert lim.capacity("email", horizon_s=0, most=2) == (1, 0.0)  # one of the minute's two is used
    assert asked == [("email", wall - 86400)]
    offset = int(clock() * 1000) - int(wall * 1000)
    a, b, c = (int(wall * 1000) - ago + offset for ago in (30_000, 60_000, 3_600_000 - 10))
    # The minute's window holds the send still in flight ("a", begun 30 s ago) only: "b" ended exactly on
    # its edge; the hour's holds all three, each at its end ("a" at its beginning: it has not ended).
    assert backend.lines["vestnik:limit:email:minute"].deadlines == [a]
    assert backend.lines["vestnik:limit:email:hour"].deadlines == [c, b, a]
    assert backend.lines["vestnik:limit:email:minute"].last == a
    # The gate's state: ended sends count until their end plus the window, one in flight until it ends.
    assert backend.busy["vestnik:limit:email:hour"].ended == {"b": b + 3_600_000, "c": c + 3_600_000}
    assert backend.busy["vestnik:limit:email:minute"].open == {"a": a}
    [record] = [r for r in caplog.records if r.getMessage() == "limiter timeline rebuilt from the database"]
    assert (record.action, record.channel, record.sends) == ("limiter.seeded", "email", 3)


def test_rule_per_second_and_its_windows():
    assert Rule.per_second("r", 0.5) == Rule("r", 1, 2.0)
    assert Rule.per_second("r", 30).window_ms == 1000
    assert Rule.per_second("r", 3).window_ms == 1000 and Rule.per_second("r", 0.3).window_ms == 3334  # rounded up
    assert Rule.per_second("r", 30).gap_ms == 0 and Rule.per_second("r", 30, spread=True).gap_ms == 33


def test_channel_rules_without_per_key_rules_have_none():
    assert ChannelRules(overall=()).per_key("anything") == ()


def test_build_limiter_takes_redis_when_configured_and_memory_otherwise():
    from vestnik.workers.limits import RedisLimiterBackend, build_limiter

    def source(channel, since):
        return []

    memory = build_limiter(Settings(email_rate_per_min=7), seed=source)
    assert isinstance(memory.backend, MemoryLimiterBackend) and memory.seed_source is source
    assert memory.rules["email"].overall[0] == Rule("minute", 7, 60.0)
    assert set(memory.rules) == {"telegram", "email", "webhook"}
    shared = build_limiter(Settings(redis_url="redis://127.0.0.1:1/0"))  # connects on first use only
    assert isinstance(shared.backend, RedisLimiterBackend) and shared.seed_source is None
    kwargs = shared.backend.client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2, 2)  # fail closed fast


def test_capacity_is_free_without_a_wait_when_the_first_free_slot_is_later_within_the_horizon():
    clock = Clock()
    lim, _ = make(clock, email_rate_per_min=2, email_rate_per_hour=100, email_rate_per_day=1000)
    lim.reserve("email", [None, None], horizon_s=0)
    assert lim.capacity("email", horizon_s=61, most=1) == (1, 0.0)
    [later] = lim.reserve("email", [None], horizon_s=61)
    assert later.at == 1000.0 + 60.010  # the expected end (10 ms) plus the minute, to the millisecond


def test_a_channel_without_rules_still_obeys_its_pause():
    clock = Clock()
    lim = Limiter({}, MemoryLimiterBackend(clock), clock=clock)
    lim.pause("sms", 3)
    assert [(g.granted, g.wait_s) for g in lim.reserve("sms", ["a"], horizon_s=10)] == [(False, 3.0)]
