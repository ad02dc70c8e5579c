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

The bounds themselves (years, digits of an amount, sizes of ids and text) are
``shared/bounds.py``'s, and every Python check also runs its bounded parser:
a value the schema lets through is one ``bounds`` reads.  The schema's rule
is the narrower of the two where they differ (an amount here is written
``4500.00``: no sign, no surrounding spaces), because the light client and
SQL can only implement what the schema says.
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

from vestnik.shared import bounds
from vestnik.shared.bounds import BoundsError

#: the JSON Schema keywords the light client and the SQL function understand (others are not allowed)
SCHEMA_KEYWORDS = frozenset({
    "type", "enum", "anyOf", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "minimum", "maximum", "format", "x-max-decimals",
    # annotations, ignored by validators
    "title", "description", "examples", "default", "x-error", "x-kind",
})
#: formats with a check beyond their pattern (calendar dates, time zones that exist)
FORMATS = ("date-time", "date", "timezone")

#: Years a date or time may have: a typo such as 0026 or 20266 is refused by name.  Hours, minutes,
#: seconds and UTC offsets (-14:59..+14:59) are bounded by the pattern itself, so Python, JavaScript
#: and PostgreSQL agree on every string; only "does this day exist in this month" needs code.
#: bounds.MIN_YEAR..bounds.MAX_YEAR (1900..2200) as a pattern; tests/unit/test_registry.py walks every year
YEAR_PATTERN = r"(19[0-9]{2}|2[01][0-9]{2}|2200)"
DATE_PART = rf"{YEAR_PATTERN}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
TIMESTAMP_PATTERN = (rf"^{DATE_PART}[Tt ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{{1,6}})?)?"
                     r"([Zz]|[+-](0[0-9]|1[0-4]):[0-5][0-9])$")
DATE_PATTERN = rf"^{DATE_PART}$"
MONEY_PATTERN = rf"^[0-9]{{1,{bounds.MAX_AMOUNT_DIGITS}}}([.][0-9]{{1,{bounds.MAX_AMOUNT_SCALE}}})?$"
MONEY_MAX = 10**bounds.MAX_AMOUNT_DIGITS - 1
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s<>" + '"' + r"'`]+$"
EMAIL_PATTERN = r'^[^@\s,;<>"]+@[^@\s,;<>"]+[.][^@\s,;<>"]+$'
PHONE_PATTERN = r"^[+][1-9][0-9]{6,14}$"  # E.164
CLIENT_ID_PATTERN = r"^[A-Za-z0-9._:@/+=#-]{1,64}$"
CHAT_ID_PATTERN = r"^-?[0-9]{1,20}$"
LOCALE_PATTERN = r"^[a-z]{2}([_-][A-Za-z]{2,4})?$"
TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+/-]{1,63}$"
CHANNEL_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
#: a webhook channel's address: http(s), a host without user name or password, no #fragment (the
#: channel's own check also refuses private targets: workers/channels/webhook.py)
WEBHOOK_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s<>" + '"' + r"'`@#/?]+([/?][^\s<>" + '"' + r"'`#]*)?$"
#: JSON's safe integers; BIGINT columns hold more, JavaScript does not
INT_MAX = 2**53 - 1
BIGINT_MAX = bounds.MAX_BIGINT
#: the longest text field of an event (a title, a reason, a free template variable)
MAX_TEXT_CHARS = 10_000


def _search(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda value: compiled.search(value) is not None


def _reads(parse: Callable[..., Any], value: Any, **kwargs: Any) -> bool:
    """Whether shared/bounds.py's parser reads the value."""
    try:
        parse(value, "", **kwargs)
    except BoundsError:
        return False
    return True


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


def amount_decimals_ok(value: float | int) -> bool:
    """A JSON number written with at most MAX_AMOUNT_SCALE decimals (4500.5, not 4500.12345)."""
    return _reads(bounds.amount, value)


_FORMAT_CHECKS: dict[str, Callable[[Any], bool]] = {
    "date-time": lambda v: valid_date(v) and _reads(bounds.moment, v.upper().replace("Z", "+00:00")),
    "date": lambda v: valid_date(v) and _reads(bounds.day, v),
    "timezone": valid_timezone,
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
        # Control characters are the CRM's data (channels keep them off the wire); what cannot be stored
        # at all (NUL, a lone surrogate) is refused for the whole event by bounds.nul_paths, by its path.
        return (isinstance(value, str) and min_length <= len(value) <= max_length and matches(value)
                and semantic(value))

    return Kind(name, schema, error, check, variable_type)


def text(max_length: int = MAX_TEXT_CHARS, name: str = "text") -> Kind:
    return _string(name, pattern=r"\S", max_length=max_length,
                   error=f"must be a non-empty string of at most {max_length} characters")


def choice(*values: str) -> Kind:
    return Kind("choice", {"enum": list(values)}, f"must be one of {', '.join(values)}",
                lambda v: _reads(bounds.choice, v, choices=values))


_YEARS = f"years {bounds.MIN_YEAR}-{bounds.MAX_YEAR}"
TEXT = text()
TIMESTAMP = _string("timestamp", pattern=TIMESTAMP_PATTERN, max_length=bounds.MAX_TIME_CHARS, fmt="date-time",
                    error=f"must be an ISO 8601 time with a UTC offset, e.g. 2026-11-25T16:00:00+03:00 ({_YEARS})",
                    variable_type="datetime")
DATE = _string("date", pattern=DATE_PATTERN, max_length=10, fmt="date",
               error=f"must be an ISO 8601 date, e.g. 2026-11-30 ({_YEARS})", variable_type="date")
URL = _string("url", pattern=URL_PATTERN, max_length=2000, error="must be an http(s) URL of at most 2000 characters",
              variable_type="url")
EMAIL = _string("email", pattern=EMAIL_PATTERN, max_length=320, error="must be one email address")
WEBHOOK_URL = _string("webhook_url", pattern=WEBHOOK_URL_PATTERN, max_length=2048,
                      error="must be an http(s) URL of at most 2048 characters, without a user name, password "
                            "or #fragment")
#: a phone as stored and sent between machines: E.164 exactly (the human forms, "+7 916 123-45-67", are
#: normalised by bounds.phone where people type them: the CSV import, the admin, the booking webhook)
PHONE = _string("phone", pattern=PHONE_PATTERN, max_length=16,
                error="must be a phone number in E.164 form (+ and the country code, no spaces), e.g. +79161234567")
LOCALE = _string("locale", pattern=LOCALE_PATTERN, max_length=10,
                 error="must be a language code such as ru or en")
TIMEZONE = _string("timezone", pattern=TIMEZONE_PATTERN, max_length=64, fmt="timezone",
                   error="must be a time zone name such as Europe/Moscow")
CHANNEL = _string("channel", pattern=CHANNEL_PATTERN, max_length=32, error="must be a channel name such as email")
#: group names (client_groups.name holds 200) and tags (client_tags.tag holds 100)
GROUP = _string("group", pattern=r"\S", max_length=200, error="must be a non-empty name of at most 200 characters")
TAG = _string("tag", pattern=r"\S", max_length=100, error="must be a non-empty tag of at most 100 characters")

#: ``key`` and ``idempotency_key``: one line of text (no control characters), not only spaces
KEY_PATTERN = r"^(?=.*\S)[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
KEY = _string("key", pattern=KEY_PATTERN, max_length=200,
              error="must be a non-empty line of at most 200 characters (no NUL or other control characters)")

_MONEY_STRING = _search(MONEY_PATTERN)
_MONEY_CHARS = bounds.MAX_AMOUNT_DIGITS + bounds.MAX_AMOUNT_SCALE + 1
MONEY = Kind(
    "money",
    {"anyOf": [{"type": "number", "minimum": 0, "maximum": MONEY_MAX, "x-max-decimals": bounds.MAX_AMOUNT_SCALE},
               {"type": "string", "pattern": MONEY_PATTERN, "maxLength": _MONEY_CHARS}]},
    f'must be a non-negative amount such as 4500.00 or "4500.00" (at most {bounds.MAX_AMOUNT_DIGITS} digits '
    f"before the point, {bounds.MAX_AMOUNT_SCALE} after it)",
    lambda v: ((_is_number(v) and 0 <= v <= MONEY_MAX and amount_decimals_ok(v))
               or (isinstance(v, str) and len(v) <= _MONEY_CHARS and _MONEY_STRING(v) and _reads(bounds.amount, v))),
    "money",
)
INTEGER = Kind("integer", {"type": "integer", "minimum": -INT_MAX, "maximum": INT_MAX},
               f"must be an integer (at most {INT_MAX} in size)",
               lambda v: _is_int(v) and _reads(bounds.integer, v, minimum=-INT_MAX, maximum=INT_MAX), "int")
BOOLEAN = Kind("boolean", {"type": "boolean"}, "must be true or false", lambda v: isinstance(v, bool), "bool")
OBJECT = Kind("object", {"type": "object"}, "must be an object", lambda v: isinstance(v, dict), "dict")

_CLIENT_ID_STRING = _search(CLIENT_ID_PATTERN)
CLIENT_ID = Kind(
    "client_id",
    {"anyOf": [{"type": "integer", "minimum": 1, "maximum": BIGINT_MAX},
               {"type": "string", "pattern": CLIENT_ID_PATTERN, "maxLength": 64}]},
    "must be a client id: a positive integer, or a string of 1 to 64 letters, digits and . _ : @ / + = # - "
    "(the CRM's own id, e.g. a UUID)",
    lambda v: (_is_int(v) and _reads(bounds.identifier, v))
    or (isinstance(v, str) and len(v) <= 64 and _CLIENT_ID_STRING(v)),
    "client_id",
)
_CHAT_STRING = _search(CHAT_ID_PATTERN)
TELEGRAM_CHAT_ID = Kind(
    "telegram_chat_id",
    {"anyOf": [{"type": "integer", "minimum": -BIGINT_MAX, "maximum": BIGINT_MAX},
               {"type": "string", "pattern": CHAT_ID_PATTERN, "maxLength": 21}]},
    "must be a Telegram chat id (a number)",
    lambda v: (_is_int(v) and _reads(bounds.integer, v, minimum=-BIGINT_MAX))
    or (isinstance(v, str) and len(v) <= 21 and _CHAT_STRING(v)),
)
