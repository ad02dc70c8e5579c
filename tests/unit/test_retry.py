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
