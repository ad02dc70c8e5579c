"""Timestamps of one event's way through Vestnik, for ``bench.throughput --timeline``; inert in production.

``mark("relay.confirmed", event_ids)`` appends one JSON line (the stage, the wall-clock time, the ids)
to ``$VESTNIK_TIMELINE/<pid>.jsonl`` when ``VESTNIK_TIMELINE`` names a directory.  Unset, as in
production, each call is one test of a module constant.  The bench joins the lines of every process
by event and notification id to show where the milliseconds between a CRM's commit and the provider's
acceptance go (docs/benchmarks.md, "Latency: where the time goes").
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

_DIR = os.environ.get("VESTNIK_TIMELINE", "")
ON = bool(_DIR)
_lock = threading.Lock()
_files: dict[int, Any] = {}


def mark(stage: str, ids: Iterable[int] = (), **extra: Any) -> None:
    """Note that ``ids`` (event or notification ids, as the stage says) reached ``stage`` now."""
    if not ON:
        return
    line = json.dumps({"s": stage, "t": time.time(), "ids": list(ids), **extra}) + "\n"
    pid = os.getpid()  # a forked worker process writes its own file
    with _lock:
        fh = _files.get(pid)
        if fh is None:
            fh = _files[pid] = open(os.path.join(_DIR, f"{pid}.jsonl"), "a", buffering=1)  # noqa: SIM115
        fh.write(line)


def read(directory: str) -> list[dict[str, Any]]:
    """Every line every process wrote under ``directory``."""
    out = []
    for name in os.listdir(directory):
        if name.endswith(".jsonl"):
            with open(os.path.join(directory, name)) as fh:
                out += [json.loads(line) for line in fh if line.strip()]
    return out
