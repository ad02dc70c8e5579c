"""Python values into the JSON Vestnik stores (the documented forms).

============================  =========================================================
Python                        stored as
============================  =========================================================
``datetime`` (aware)          ISO 8601 with its offset: ``"2026-11-25T16:00:00+03:00"``
                              (a naive datetime is refused: its zone would be a guess)
``date``                      ``"2026-11-25"``
``Decimal``                   its exact digits as a string: ``Decimal("4500.00")`` -> ``"4500.00"``
``UUID``                      ``"7f0c1b9e-2d4a-4e55-9b1a-3c1f7c0e9a11"``
tuple, list                   a list; str, int, float, bool, None, dict (string keys) as they are
============================  =========================================================

Anything else is refused by its path (``data.lesson: a Lesson is not JSON``).
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID


def to_json(value: Any, path: str, problems: list[str]) -> Any:
    """``value`` in its stored form; each value that has none adds a problem naming its path."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            problems.append(f"{path}: {value} is not a finite number")
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            problems.append(f"{path}: a naive datetime; give it a time zone (tzinfo), e.g. "
                            "ZoneInfo('Europe/Moscow'), so the time is not a guess")
            return None
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            problems.append(f"{path}: {value} is not a finite number")
            return None
        return format(value, "f")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(f"{path}: keys must be strings, got {type(key).__name__} {key!r:.40}")
                continue
            out[key] = to_json(item, f"{path}.{key}" if path else key, problems)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(item, f"{path}[{i}]", problems) for i, item in enumerate(value)]
    problems.append(f"{path}: a {type(value).__name__} is not JSON (use str, int, float, bool, None, list, dict, "
                    "date, datetime, Decimal or UUID)")
    return None


def nul_paths(value: Any, path: str) -> list[str]:
    """Where a NUL character hides (PostgreSQL's text and jsonb cannot store it)."""
    if isinstance(value, str):
        return [path] if "\x00" in value else []
    if isinstance(value, dict):
        found = [f"{path} (a key)" for key in value if "\x00" in key]
        return found + [p for key, item in value.items() for p in nul_paths(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in nul_paths(item, f"{path}[{i}]")]
    return []


def recipients_list(recipients: Any) -> tuple[Any, list[str]]:
    """The recipients as a list, or the problem with what was given (a string "1,2" is the usual slip)."""
    if isinstance(recipients, (str, bytes)):
        text = recipients.decode(errors="replace") if isinstance(recipients, bytes) else recipients
        parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
        guess = [int(p) if p.isascii() and p.isdigit() else p for p in parts]
        return None, [f"recipients: must be a list of client ids, not one string ({text[:40]!r}); "
                      f"did you mean {guess[:5]!r}?"]
    if isinstance(recipients, dict) or not hasattr(recipients, "__iter__"):
        return None, [f"recipients: must be a list of client ids, got {type(recipients).__name__}"]
    out = [str(r) if isinstance(r, UUID) else r for r in recipients]
    return out, []
