"""The registry shipped with this package and the JSON Schema subset it is written in.

``registry.json`` is generated from Vestnik's own event definitions
(``shared/events.py``); Vestnik's tests fail when it is stale.  It uses only
these keywords: ``type enum anyOf properties required additionalProperties
items minItems maxItems minLength maxLength pattern minimum maximum format``
and ``x-max-decimals`` (digits after the point of a number); ``x-error`` is
the message for a value that is not of its kind.  The same
document is loaded into the ``vestnik_registry`` table for the SQL functions.
"""

from __future__ import annotations

import calendar
import json
import re
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

TYPE_MESSAGES = {"object": "must be an object", "array": "must be a list", "string": "must be a string",
                 "integer": "must be an integer", "number": "must be a number", "boolean": "must be true or false",
                 "null": "must be null"}


@lru_cache(maxsize=1)
def registry() -> dict[str, Any]:
    """The registry document (event types, recipients, client record, limits)."""
    text = resources.files(__package__).joinpath("registry.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=256)
def _pattern(source: str) -> re.Pattern[str]:
    return re.compile(source)


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int)
    if name == "number":
        return isinstance(value, int) or (isinstance(value, float) and value == value
                                          and value not in (float("inf"), float("-inf")))
    raise ValueError(f"unsupported JSON Schema type {name!r}")


def _day_exists(value: str) -> bool:
    year, month, day = int(value[0:4]), int(value[5:7]), int(value[8:10])
    return day <= calendar.monthrange(year, month)[1]


def _timezone_exists(value: str) -> bool:
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(value)
    except ImportError:  # Python without zoneinfo: Vestnik checks it again
        return True
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        # Without any time zone data (Windows without tzdata) nothing can be told: let Vestnik decide.
        return not zoneinfo.available_timezones()
    return True


_FORMATS = {"date-time": _day_exists, "date": _day_exists, "timezone": _timezone_exists}


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _leaf_ok(schema: dict[str, Any], value: Any) -> bool:
    """Type, enum, string and number bounds of one node (not its children)."""
    kind = schema.get("type")
    if kind is not None and not _is_type(value, kind):
        return False
    if "enum" in schema and not any(type(value) is type(e) and value == e for e in schema["enum"]):
        return False
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            return False
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            return False
        if "format" in schema and not _FORMATS[schema["format"]](value):
            return False
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            return False
        if "maximum" in schema and value > schema["maximum"]:
            return False
        if "x-max-decimals" in schema and _decimals(value) > schema["x-max-decimals"]:
            return False
    return True


def _decimals(value: int | float) -> int:
    """Digits after the point of a JSON number as written (4500.5 -> 1; 1e-05 -> 5)."""
    if isinstance(value, int):
        return 0
    exponent = Decimal(repr(value)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _first_real(branches: list[dict[str, Any]]) -> dict[str, Any]:
    return next((b for b in branches if b.get("type") != "null"), branches[0])


def _message(schema: dict[str, Any], value: Any) -> str:
    if "x-error" in schema:
        return schema["x-error"]
    if "anyOf" in schema:
        return _message(_first_real(schema["anyOf"]), value)
    if "enum" in schema:
        return "must be one of " + ", ".join(str(e) for e in schema["enum"])
    kind = schema.get("type")
    if kind and not _is_type(value, kind):
        return TYPE_MESSAGES[kind]
    return "is not valid"


def problems(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Every problem of ``value`` against ``schema``, as "path: reason" (empty: valid).

    An ``anyOf`` with its own ``x-error`` is one kind of value (an amount: a
    number or a string) and fails as a whole; one without is "this or null",
    and a value of the right type reports its own problems (``groups[2]: ...``).
    """
    if "anyOf" in schema:
        branches = schema["anyOf"]
        if any(not problems(branch, value, path) for branch in branches):
            return []
        if "x-error" not in schema:
            for branch in branches:
                if branch.get("type") != "null" and ("type" not in branch or _is_type(value, branch["type"])):
                    return problems(branch, value, path)
        return [f"{path}: {_message(schema, value)}"]
    if not _leaf_ok(schema, value):
        return [f"{path}: {_message(schema, value)}"]
    found: list[str] = []
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            return [f"{path}: at most {schema['maxItems']} items"]
        if len(value) < schema.get("minItems", 0):
            found.append(f"{path}: at least {schema['minItems']} item" + ("s" if schema["minItems"] != 1 else ""))
        if "items" in schema:
            for i, item in enumerate(value):
                found += problems(schema["items"], item, f"{path}[{i}]")
    elif isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                found.append(f"{_child(path, name)}: required")
        for name, sub in properties.items():
            if name in value:
                found += problems(sub, value[name], _child(path, name))
        if schema.get("additionalProperties") is False:
            declared = ", ".join(sorted(properties)) or "none"
            found += [f"{_child(path, name)}: unknown field (declared: {declared})"
                      for name in value if name not in properties]
    return found
