"""Named crash sites for fault-injection tests; inert in production.

``hit("relay.after_publish")`` ends the process abruptly (``os._exit``, like
``kill -9``: no cleanup, no commit) when that name is listed in the
``VESTNIK_FAULT_POINTS`` environment variable (comma separated).  Unset, as in
production, each call is one dictionary lookup.
"""

from __future__ import annotations

import os

_POINTS = frozenset(p.strip() for p in os.environ.get("VESTNIK_FAULT_POINTS", "").split(",") if p.strip())


def hit(point: str) -> None:
    if point in _POINTS:
        os._exit(137)
