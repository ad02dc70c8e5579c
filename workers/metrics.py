"""Vestnik's worker metrics, next to Dramatiq's own (its Prometheus middleware).

Enabled by ``VESTNIK_WORKER_METRICS_PORT``: Dramatiq's middleware then serves
every worker process's metrics on that port (``/metrics``), through
prometheus_client's multiprocess files, and these counters join them:

- ``vestnik_deliveries_total{channel, outcome}``: provider calls by outcome
  (sent, transient, permanent, rate_limited, uncertain) and render failures;
- ``vestnik_delivery_failures_total{channel, reason}``: failures by reason,
  the reason reduced to its class (digits and addresses removed) so the
  number of series stays small;
- ``vestnik_reaped_total{result}``: rows found ``processing`` past their lease
  (a worker died), put back (``requeued``) or flagged ``uncertain``;
- ``vestnik_limiter_waits_total{channel}`` and
  ``vestnik_limiter_wait_seconds_total{channel}``: how often and how long
  sends waited for the channel limits.

Disabled, each call is a cheap no-op.  The counters are created lazily, after
Dramatiq's middleware pointed prometheus_client at its multiprocess directory.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

_lock = threading.Lock()
_counters: dict[str, Any] | None = None


def _get() -> dict[str, Any] | None:
    global _counters
    if _counters is None:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return None  # metrics are off in this process
        with _lock:
            if _counters is None:
                from prometheus_client import Counter

                _counters = {
                    "deliveries": Counter("vestnik_deliveries_total", "Delivery outcomes",
                                          ["channel", "outcome"], registry=None),
                    "failures": Counter("vestnik_delivery_failures_total", "Delivery failures by reason class",
                                        ["channel", "reason"], registry=None),
                    "waits": Counter("vestnik_limiter_waits_total", "Sends held back by a channel limit",
                                     ["channel"], registry=None),
                    "wait_s": Counter("vestnik_limiter_wait_seconds_total", "Seconds sends were held back",
                                      ["channel"], registry=None),
                    "reaped": Counter("vestnik_reaped_total", "Rows processing past their lease, by outcome",
                                      ["result"], registry=None),
                }
    return _counters


_ADDRESS = re.compile(r"<[^>]*>|\S+@\S+")


def reason_class(reason: str) -> str:
    """``"550 5.1.1 <anna@example.com>: no such user"`` -> ``"### #.#.# : no such user"``."""
    return re.sub(r"\s+", " ", re.sub(r"\d", "#", _ADDRESS.sub("", reason or ""))).strip()[:60] or "unknown"


def delivery(channel: str, outcome: str, reason: str | None = None) -> None:
    counters = _get()
    if counters is None:
        return
    counters["deliveries"].labels(channel, outcome).inc()
    if reason and outcome != "sent":
        counters["failures"].labels(channel, reason_class(reason)).inc()


def limiter_wait(channel: str, seconds: float) -> None:
    counters = _get()
    if counters is None:
        return
    counters["waits"].labels(channel).inc()
    counters["wait_s"].labels(channel).inc(max(seconds, 0.0))


def reaped(requeued: int, uncertain: int) -> None:
    counters = _get()
    if counters is None:
        return
    counters["reaped"].labels("requeued").inc(requeued)
    counters["reaped"].labels("uncertain").inc(uncertain)
