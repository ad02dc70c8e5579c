"""The retry policy: one pure function from an outcome to a decision."""

from __future__ import annotations

import random
from dataclasses import dataclass

from vestnik.workers.channels.base import Outcome


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay_s: float = 0.0
    counts_as_attempt: bool = True


def decide(
    outcome: Outcome,
    *,
    attempts: int,
    max_attempts: int,
    base_delay_s: float,
    max_delay_s: float,
    retry_after_s: float | None = None,
    jitter: random.Random | None = None,
) -> Decision:
    """What to do after an attempt.

    - rate limited: wait what the provider asked, and the attempt does not count;
    - transient: exponential backoff (base * 2^(n-1), capped, +-10% jitter)
      until ``max_attempts`` attempts were made;
    - permanent and uncertain: never retry (an uncertain message may have
      arrived; resending it blindly would duplicate it).
    """
    if outcome is Outcome.rate_limited:
        return Decision(True, max(retry_after_s or 1.0, 0.0), counts_as_attempt=False)
    if outcome is Outcome.transient and attempts < max_attempts:
        delay = min(base_delay_s * (2 ** max(attempts - 1, 0)), max_delay_s)
        rng = jitter or random
        return Decision(True, delay * rng.uniform(0.9, 1.1))
    return Decision(False)
