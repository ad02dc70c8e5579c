"""Cases that walk every field of every event type and of the client record with every kind of value.

Each case is ``(schema name, value, path prefix)``: the same JSON goes through
pydantic (the service), ``vestnik_client``'s validator and the SQL function
``vestnik_json_problems``, and all three must find the same problems.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from vestnik.shared.events import all_event_types

#: one value of each shape and each edge of every kind of shared/wire.py
VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 5.0, 5.5, -0.5, 2**53, 2**53 - 1, 2**63, 2**63 - 1, 10**13, 1e13,
    "", " ", "x", "x\ny", "a" * 200, "a" * 201, "a" * 1000, "a" * 1001, "я" * 1000,
    [], ["a"], [""], ["a"] * 201, [1], ["email"], ["Email"], ["telegram", "sms"], {}, {"a": 1}, {"groups": ["A"]},
    {"groups": "A"}, {"groups": ["A", ""]}, {"x": 1}, {"active_since": "2026-01-01"}, {"has_email": 1},
    "2026-11-25T16:00:00+03:00", "2026-11-25T16:00+03:00", "2026-11-25 16:00:00Z", "2026-11-25t16:00:00z",
    "2026-11-25T16:00:00", "2026-02-30T10:00:00+03:00", "2024-02-29T10:00:00Z", "2025-02-29T10:00:00Z",
    "0026-11-25T16:00:00+03:00", "2026-11-25T24:00:00Z", "2026-11-25T16:60:00Z", "2026-11-25T16:00:60Z",
    "2026-11-25T16:00:00+15:00", "2026-11-25T16:00:00.123456-05:30", "2026-11-25T16:00:00.1234567Z",
    "9999-01-01T00:00:00Z", "2200-12-31T23:59:59+14:00", "2201-01-01T00:00:00Z", "tomorrow",
    "2026-11-30", "2026-11-31", "2026-13-01", "1899-12-31", "2100-01-01", "2200-12-31", "2201-01-01",
    "4500.00", "4500", "-1", "1e3", "1234567890123", "0.12345", "123456789012.1234", "12345678901234",
    "123456789012345", "+5", ".5", " 5", "5.", 4500.1234, 4500.12345, 0.1 + 0.2, 1e-05, 99999999999999, 10**14,
    "a" * 100, "a" * 101, "Иван-42", "x\x01y", "a\u2028b",
    "https://pay.example.com/i/17", "HTTPS://X.RU/a?b=1&c=2", "javascript:alert(1)", "http://", "https://a b",
    "https://x.ru/" + "a" * 2000,
    "sbp", "SBP", "manual", "service", "marketing",
    "ru", "en-US", "uz_Latn", "RU", "russian",
    "Europe/Moscow", "Mars/Olympus", "UTC", "europe/moscow",
    "anna@example.com", "a@b", "a@b.c, d@e.f", "@example.com",
    "123456789", "-1001234567890", "12a", "7f0c1b9e-2d4a-4e55-9b1a-3c1f7c0e9a11", "a b", "1,2", "x" * 64, "x" * 65,
    "email", "telegram", "Email",
]


def event_cases() -> Iterator[tuple[str, Any]]:
    """(event type, data): the example data, then each field missing, each field replaced by each value,
    an unknown field, and data that is not an object."""
    for spec in all_event_types():
        base = spec.example_data()
        yield spec.name, base
        yield spec.name, {**base, "unknown_field": 1}
        yield spec.name, []
        for f in spec.fields:
            without = {k: v for k, v in base.items() if k != f.name}
            yield spec.name, without
            for value in VALUES:
                yield spec.name, {**base, f.name: copy.deepcopy(value)}


CLIENT_FIELDS = ("name", "email", "telegram_chat_id", "locale", "timezone", "telegram_enabled", "email_enabled",
                 "allow_service", "allow_marketing", "groups", "tags", "last_active_at")


def client_cases() -> Iterator[dict[str, Any]]:
    yield {}
    yield {"emial": "a@b.c"}
    for name in CLIENT_FIELDS:
        for value in VALUES:
            yield {name: copy.deepcopy(value)}


def key_cases() -> Iterator[Any]:
    yield from VALUES
    yield from ("lesson:42", "a\tb", "a\x7fb", "a\x85b", "a\u2028b", " x ", "x" * 200, "x" * 201, "урок:42")


def recipient_cases() -> Iterator[Any]:
    yield []
    yield "1,2"
    yield {"a": 1}
    yield list(range(1, 10_002))
    for value in VALUES:
        yield [value]
        yield [1, value]
