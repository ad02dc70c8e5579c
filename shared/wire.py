"""What a value from a CRM may be: one definition per kind of value.

A :class:`Kind` is a JSON Schema fragment, the message given when a value is
not of the kind, and the Python check of the same rule.  Its pydantic type
(:attr:`Kind.type`) validates a value as it arrives in JSON, without any
coercion (``"5"`` is not an integer, ``5`` is not a string), and emits the
fragment into every generated JSON Schema with the message as ``x-error``.

The event registry (``shared/events.py``) and the client record
(``shared/client_record.py``) are built from these kinds, so the same rule
reaches every entry point: pydantic in the service (``emit``, the HTTP API,
the worker), the JSON Schema shipped with ``vestnik-client``, and the SQL
functions ``vestnik_emit``/``vestnik_upsert_client``, which read the same
schema from the ``vestnik_registry`` table.  Those two re-implement only
the JSON Schema keywords listed in :data:`SCHEMA_KEYWORDS`;
``tests/unit/test_registry_parity.py`` walks every kind through all three.

Patterns are written in the subset that Python's ``re``, ECMAScript and
PostgreSQL's regular expressions read alike (``^ $ [] {} ( ) ? \\S \\s``);
JSON Schema's ``pattern`` is a search, not a full match.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

#: the JSON Schema keywords the light client and the SQL function understand (others are not allowed)
SCHEMA_KEYWORDS = frozenset({
    "type", "enum", "anyOf", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "minimum", "maximum", "format",
    # annotations, ignored by validators
    "title", "description", "examples", "default", "x-error", "x-kind",
})
#: formats with a check beyond their pattern (calendar dates, time zones that exist)
FORMATS = ("date-time", "date", "timezone")

#: Years a date or time may have: a typo such as 0026 or 20266 is refused by name.  Hours, minutes,
#: seconds and UTC offsets (-14:59..+14:59) are bounded by the pattern itself, so Python, JavaScript
#: and PostgreSQL agree on every string; only "does this day exist in this month" needs code.
DATE_PART = r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
TIMESTAMP_PATTERN = (rf"^{DATE_PART}[Tt ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{{1,6}})?)?"
                     r"([Zz]|[+-](0[0-9]|1[0-4]):[0-5][0-9])$")
DATE_PATTERN = rf"^{DATE_PART}$"
MONEY_PATTERN = r"^[0-9]{1,12}([.][0-9]{1,4})?$"
MONEY_MAX = 999_999_999_999
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s<>\"'`]+$"
EMAIL_PATTERN = r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+[.][^@\s,;<>\"]+$"
PHONE_PATTERN = r"^[+][1-9][0-9]{6,14}$"  # E.164
CLIENT_ID_PATTERN = r"^[^\s,;]{1,64}$"
CHAT_ID_PATTERN = r"^-?[0-9]{1,20}$"
LOCALE_PATTERN = r"^[a-z]{2}([_-][A-Za-z]{2,4})?$"
TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+/-]{1,63}$"
CHANNEL_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
#: JSON's safe integers; BIGINT columns hold more, JavaScript does not
INT_MAX = 2**53 - 1
BIGINT_MAX = 2**63 - 1


def _search(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda value: compiled.search(value) is not None


def valid_date(value: str) -> bool:
    """The day of a string that matched DATE_PATTERN or TIMESTAMP_PATTERN exists (no 30 February)."""
    year, month, day = int(value[0:4]), int(value[5:7]), int(value[8:10])
    return day <= calendar.monthrange(year, month)[1]


def valid_timezone(value: str) -> bool:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


_FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "date-time": valid_date, "date": valid_date, "timezone": valid_timezone,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and value == value and value not in (float("inf"),
                                                                                            float("-inf"))


@dataclass(frozen=True, eq=False)  # hashed by identity: it sits in typing.Annotated metadata
class Kind:
    """One kind of value: its JSON Schema, its message, its check."""

    name: str
    schema: dict[str, Any]
    error: str
    check: Callable[[Any], bool]
    #: the document's name for the kind of a template variable ("datetime" fields are shown in the client's zone)
    variable_type: str = "str"
    extra: dict[str, Any] = field(default_factory=dict)

    def __call__(self, value: Any) -> bool:
        return bool(self.check(value))

    def json_schema(self) -> dict[str, Any]:
        return {**self.schema, **self.extra, "x-kind": self.name, "x-error": self.error}

    @property
    def type(self) -> Any:
        """The pydantic type: validates without coercion, emits :meth:`json_schema`."""
        def validate(value: Any) -> Any:
            if not self.check(value):
                raise PydanticCustomError("vestnik", self.error)
            return value

        return Annotated[Any, PlainValidator(validate), WithJsonSchema(self.json_schema()), self]


def _string(name: str, *, pattern: str | None = None, min_length: int = 1, max_length: int, error: str,
            fmt: str | None = None, variable_type: str = "str") -> Kind:
    schema: dict[str, Any] = {"type": "string", "minLength": min_length, "maxLength": max_length}
    if pattern:
        schema["pattern"] = pattern
    if fmt:
        schema["format"] = fmt
    matches = _search(pattern) if pattern else (lambda _v: True)
    semantic = _FORMAT_CHECKS[fmt] if fmt else (lambda _v: True)

    def check(value: Any) -> bool:
        return (isinstance(value, str) and min_length <= len(value) <= max_length and matches(value)
                and semantic(value))

    return Kind(name, schema, error, check, variable_type)


def text(max_length: int = 1000) -> Kind:
    return _string("text", pattern=r"\S", max_length=max_length,
                   error=f"must be a non-empty string of at most {max_length} characters")


def choice(*values: str) -> Kind:
    return Kind("choice", {"enum": list(values)}, f"must be one of {', '.join(values)}",
                lambda v: isinstance(v, str) and v in values)


TEXT = text()
TIMESTAMP = _string("timestamp", pattern=TIMESTAMP_PATTERN, max_length=40, fmt="date-time",
                    error="must be an ISO 8601 time with a UTC offset, e.g. 2026-11-25T16:00:00+03:00 "
                          "(years 1900-2099)", variable_type="datetime")
DATE = _string("date", pattern=DATE_PATTERN, max_length=10, fmt="date",
               error="must be an ISO 8601 date, e.g. 2026-11-30 (years 1900-2099)", variable_type="date")
URL = _string("url", pattern=URL_PATTERN, max_length=2000, error="must be an http(s) URL of at most 2000 characters",
              variable_type="url")
EMAIL = _string("email", pattern=EMAIL_PATTERN, max_length=320, error="must be one email address")
PHONE = _string("phone", pattern=PHONE_PATTERN, max_length=16,
                error="must be a phone number in E.164 form, e.g. +79161234567")
LOCALE = _string("locale", pattern=LOCALE_PATTERN, max_length=10,
                 error="must be a language code such as ru or en")
TIMEZONE = _string("timezone", pattern=TIMEZONE_PATTERN, max_length=64, fmt="timezone",
                   error="must be a time zone name such as Europe/Moscow")
CHANNEL = _string("channel", pattern=CHANNEL_PATTERN, max_length=32, error="must be a channel name such as email")
LABEL = _string("label", pattern=r"\S", max_length=200, error="must be a non-empty name of at most 200 characters")

_MONEY_STRING = _search(MONEY_PATTERN)
MONEY = Kind(
    "money",
    {"anyOf": [{"type": "number", "minimum": 0, "maximum": MONEY_MAX},
               {"type": "string", "pattern": MONEY_PATTERN, "maxLength": 17}]},
    'must be a non-negative amount such as 4500.00 or "4500.00" (at most 12 digits before the point, '
    "4 after it)",
    lambda v: (_is_number(v) and 0 <= v <= MONEY_MAX) or (isinstance(v, str) and len(v) <= 17 and _MONEY_STRING(v)),
    "money",
)
INTEGER = Kind("integer", {"type": "integer", "minimum": -INT_MAX, "maximum": INT_MAX},
               f"must be an integer (at most {INT_MAX} in size)",
               lambda v: _is_int(v) and -INT_MAX <= v <= INT_MAX, "int")
BOOLEAN = Kind("boolean", {"type": "boolean"}, "must be true or false", lambda v: isinstance(v, bool), "bool")
OBJECT = Kind("object", {"type": "object"}, "must be an object", lambda v: isinstance(v, dict), "dict")

_CLIENT_ID_STRING = _search(CLIENT_ID_PATTERN)
CLIENT_ID = Kind(
    "client_id",
    {"anyOf": [{"type": "integer", "minimum": 1, "maximum": BIGINT_MAX},
               {"type": "string", "pattern": CLIENT_ID_PATTERN, "maxLength": 64}]},
    "must be a client id: a positive integer, or a string of 1 to 64 characters without spaces, commas or "
    "semicolons (the CRM's own id, e.g. a UUID)",
    lambda v: (_is_int(v) and 1 <= v <= BIGINT_MAX) or (isinstance(v, str) and len(v) <= 64
                                                         and _CLIENT_ID_STRING(v)),
    "client_id",
)
_CHAT_STRING = _search(CHAT_ID_PATTERN)
TELEGRAM_CHAT_ID = Kind(
    "telegram_chat_id",
    {"anyOf": [{"type": "integer", "minimum": -BIGINT_MAX, "maximum": BIGINT_MAX},
               {"type": "string", "pattern": CHAT_ID_PATTERN, "maxLength": 21}]},
    "must be a Telegram chat id (a number)",
    lambda v: (_is_int(v) and -BIGINT_MAX <= v <= BIGINT_MAX) or (isinstance(v, str) and len(v) <= 21
                                                                  and _CHAT_STRING(v)),
)


def canonical_client_id(value: int | str) -> str:
    """A client id as Vestnik stores and compares it: its text (the integer 42 is the id "42")."""
    return str(value)
