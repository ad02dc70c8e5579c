"""The retry policy as a table."""

from __future__ import annotations

import random

import pytest

from vestnik.workers.channels.base import Outcome
from vestnik.workers.retry import decide

POLICY = dict(max_attempts=4, base_delay_s=10, max_delay_s=60, jitter=random.Random(1))


@pytest.mark.parametrize(
    ("outcome", "attempts", "retry", "delay_range"),
    [
        (Outcome.transient, 1, True, (9, 11)),
        (Outcome.transient, 2, True, (18, 22)),
        (Outcome.transient, 3, True, (36, 44)),
        (Outcome.transient, 4, False, None),  # attempts exhausted
        (Outcome.permanent, 1, False, None),
        (Outcome.uncertain, 1, False, None),  # never resent blindly
    ],
)
def test_retry_table(outcome, attempts, retry, delay_range):
    d = decide(outcome, attempts=attempts, **POLICY)
    assert d.retry is retry
    if delay_range:
        assert delay_range[0] <= d.delay_s <= delay_range[1]


def test_backoff_is_capped():
    assert decide(Outcome.transient, attempts=3, max_attempts=10, base_delay_s=100, max_delay_s=60).delay_s <= 66


def test_rate_limit_waits_retry_after_and_is_not_an_attempt():
    d = decide(Outcome.rate_limited, attempts=4, retry_after_s=3, **POLICY)
    assert d.retry and d.delay_s == 3 and not d.counts_as_attempt


def test_rate_limit_is_flagged_as_not_an_attempt_and_a_transient_failure_as_one():
    assert decide(Outcome.rate_limited, attempts=1, retry_after_s=3, **POLICY).counts_as_attempt is False
    assert decide(Outcome.transient, attempts=1, **POLICY).counts_as_attempt is True  # else retries never end


def test_rate_limit_without_retry_after_waits_one_second():
    assert decide(Outcome.rate_limited, attempts=1, retry_after_s=None, **POLICY).delay_s == 1.0


def test_rate_limit_waits_a_short_retry_after_exactly_and_never_a_negative_one():
    assert decide(Outcome.rate_limited, attempts=1, retry_after_s=0.25, **POLICY).delay_s == 0.25
    assert decide(Outcome.rate_limited, attempts=1, retry_after_s=-5, **POLICY).delay_s == 0.0


class Fixed:
    """A jitter source that always draws ``value``."""

    def __init__(self, value: float) -> None:
        self.value = value

    def uniform(self, low: float, high: float) -> float:
        assert (low, high) == (0.9, 1.1)
        return self.value


@pytest.mark.parametrize("draw", [0.9, 1.1])
def test_jitter_scales_the_backoff_by_the_drawn_factor(draw):
    policy = {**POLICY, "jitter": Fixed(draw)}
    assert decide(Outcome.transient, attempts=2, **policy).delay_s == pytest.approx(20 * draw)
