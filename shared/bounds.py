"""Bounded parsers: the one way to read ids, numbers, amounts, times, text and choices from outside.

Every boundary (web forms and query strings, webhooks, the HTTP API, the CLI,
CSV imports, Telegram updates, event schemas) reads untrusted values through
these functions, so one value means the same everywhere and nothing that the
database, Babel or ``datetime`` would choke on gets past the edge:

- integers: ASCII digits only (Python's ``int()`` takes ``"١٢٣"`` and ``"1_000"``,
  ``str.isdigit()`` is true for ``"²"``), at most 19 digits, within PostgreSQL's
  BIGINT unless a smaller range is given; ``True`` is not a number;
- amounts: finite decimals written with ASCII digits, at most ``MAX_AMOUNT_DIGITS``
  digits before the point and ``MAX_AMOUNT_SCALE`` after it;
- times: ISO 8601, aware (with an offset), years within ``MIN_YEAR..MAX_YEAR``
  (so converting to any time zone and formatting never overflows);
- text: a ``str`` (not a number, not a list), without NUL, other control
  characters or lone surrogates (PostgreSQL and UTF-8 cannot store them),
  within a length limit;
- choices: one of a fixed set, compared as given;
- phone numbers: E.164 (``+`` and the country code, 7 to 15 digits), the one written
  form a client's phone is stored, compared and looked up in (:func:`phone`).

Each parser raises :class:`BoundsError` naming the field and what is wrong
(``amount: at most 12 digits before the point``); it is a ``ValueError``, so
pydantic validators may call these parsers directly and report the reason.
The web turns it into a 4xx naming the field, the CLI into a message and a
non-zero exit, never a 5xx or a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

#: PostgreSQL BIGINT (and SQLite INTEGER) range
MAX_BIGINT = 2**63 - 1
MIN_BIGINT = -(2**63)
#: digits of an amount before and after the decimal point (NUMERIC(18, 4) holds them)
MAX_AMOUNT_DIGITS = 14
MAX_AMOUNT_SCALE = 4
#: years a time may fall in: far enough for any booking or report, near enough that
#: moving a time across time zones and formatting it can never leave datetime's range
MIN_YEAR = 1900
MAX_YEAR = 2200
#: characters of an ISO 8601 time string (``2026-11-25T16:00:00.123456+03:00`` is 32)
MAX_TIME_CHARS = 40
#: default text limit for a one-line field (names, titles, codes)
MAX_LINE_CHARS = 1000

_INT = re.compile(r"[+-]?[0-9]{1,19}", re.ASCII)
_AMOUNT = re.compile(r"[+-]?(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]*))?|[+-]?\.(?P<frac2>[0-9]+)", re.ASCII)
_TIME = re.compile(r"[0-9T:.+\-Z ]+", re.ASCII)
# NUL and C0/C1 controls except tab, LF, CR; lone surrogates (from JSON "\ud800" escapes).
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
#: E.164: "+", a country code that does not start with 0, at most 15 digits in all (ITU-T E.164 s. 6)
PHONE_E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)
#: what people and booking widgets write between the digits: spaces (also no-break and thin), hyphens and
#: dashes, dots, parentheses, slashes
_PHONE_SEPARATORS = re.compile(r"[\s\u00a0\u2007\u202f().\-\u2010-\u2015/]")
_BAD_CHARS_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")

T = TypeVar("T")


class BoundsError(ValueError):
    """A value from outside is out of bounds; ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


def _shown(value: Any, limit: int = 40) -> str:
    """A short, printable picture of a bad value for an error message."""
    text = repr(value) if not isinstance(value, str) else repr(value[:limit])
    return text if len(text) <= limit + 10 else text[: limit + 10] + "…"


def integer(value: Any, field: str = "", *, minimum: int = MIN_BIGINT, maximum: int = MAX_BIGINT) -> int:
    """An integer from an ``int`` or a string of ASCII digits (an optional sign), within [minimum, maximum]."""
    if isinstance(value, bool):
        raise BoundsError(field, "must be a whole number, not true/false")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str | bytes):
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        text = text.strip(" \t\r\n")
        if not _INT.fullmatch(text):
            raise BoundsError(field, f"must be a whole number written with the digits 0-9, got {_shown(value)}")
        number = int(text)
    else:
        raise BoundsError(field, f"must be a whole number, got {type(value).__name__}")
    if number < minimum or number > maximum:
        raise BoundsError(field, f"must be between {minimum} and {maximum}, got {_shown(value)}")
    return number


def identifier(value: Any, field: str = "id") -> int:
    """A database id: a positive integer that fits BIGINT."""
    return integer(value, field, minimum=1, maximum=MAX_BIGINT)


def optional_integer(value: Any, field: str = "", *, default: T = None, minimum: int = MIN_BIGINT,  # type: ignore[assignment]
                     maximum: int = MAX_BIGINT) -> int | T:
    """:func:`integer`, with ``None`` or an empty string meaning ``default``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return integer(value, field, minimum=minimum, maximum=maximum)


def page(value: Any, field: str = "page", *, maximum: int = 10_000) -> int:
    """A 1-based page number from a query string (absent means 1)."""
    return optional_integer(value, field, default=1, minimum=1, maximum=maximum)


def amount(value: Any, field: str = "amount", *, max_digits: int = MAX_AMOUNT_DIGITS,
           max_scale: int = MAX_AMOUNT_SCALE, allow_negative: bool = False) -> Decimal:
    """A money amount as a finite Decimal: ``"4500.00"``, ``4500``, ``4500.5`` (a JSON number)."""
    if isinstance(value, bool):
        raise BoundsError(field, "must be a number, not true/false")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise BoundsError(field, "must be a finite number")
        text = repr(value)
        if "e" in text or "E" in text:
            text = format(Decimal(text), "f")
    elif isinstance(value, int):
        if value.bit_length() > 4 * (max_digits + 1):  # str() of a huge int is slow: refuse by size first
            raise BoundsError(field, f"at most {max_digits} digits before the point")
        text = str(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise BoundsError(field, "must be a finite number")
        if value.adjusted() >= max_digits or value.as_tuple().exponent < -(max_digits + max_scale):
            raise BoundsError(field, f"at most {max_digits} digits before the point and {max_scale} after it")
        text = format(value, "f")
    elif isinstance(value, str):
        text = value.strip(" \t\r\n")
        if len(text) > max_digits + max_scale + 3:
            raise BoundsError(field, f"must be a number of at most {max_digits} digits before the point "
                                     f"and {max_scale} after it, got {_shown(value)}")
    else:
        raise BoundsError(field, f"must be a number, got {type(value).__name__}")
    match = _AMOUNT.fullmatch(text)
    if not match:
        raise BoundsError(field, f"must be a number written with the digits 0-9 and a point, got {_shown(value)}")
    whole = (match.group("int") or "").lstrip("0")
    frac = (match.group("frac") or match.group("frac2") or "").rstrip("0")
    if len(whole) > max_digits:
        raise BoundsError(field, f"at most {max_digits} digits before the point, got {len(whole)}")
    if len(frac) > max_scale:
        raise BoundsError(field, f"at most {max_scale} digits after the point, got {len(frac)}")
    try:
        parsed = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only what Decimal reads
        raise BoundsError(field, f"must be a number, got {_shown(value)}") from None
    if parsed < 0 and not allow_negative:
        raise BoundsError(field, "must not be negative")
    return parsed


def _check_year(year: int, field: str, min_year: int, max_year: int) -> None:
    if not min_year <= year <= max_year:
        raise BoundsError(field, f"year must be between {min_year} and {max_year}, got {year}")


def moment(value: Any, field: str = "time", *, min_year: int = MIN_YEAR, max_year: int = MAX_YEAR) -> datetime:
    """An aware time: ISO 8601 text with an offset (``2026-11-25T16:00:00+03:00``) or an aware datetime."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if len(value) > MAX_TIME_CHARS or not _TIME.fullmatch(text):
            raise BoundsError(field, f"must be an ISO 8601 time with an offset, e.g. 2026-11-25T16:00:00+03:00, "
                                     f"got {_shown(value)}")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise BoundsError(field, f"must be an ISO 8601 time with an offset, e.g. 2026-11-25T16:00:00+03:00, "
                                     f"got {_shown(value)}") from None
    else:
        raise BoundsError(field, f"must be an ISO 8601 time text, got {type(value).__name__}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise BoundsError(field, f"needs a UTC offset (e.g. +03:00), got {_shown(value)}")
    _check_year(parsed.year, field, min_year, max_year)
    return parsed


def day(value: Any, field: str = "date", *, min_year: int = MIN_YEAR, max_year: int = MAX_YEAR) -> date:
    """A calendar date: ISO 8601 ``2026-11-30`` (a full time is accepted and its date kept)."""
    if isinstance(value, datetime):
        parsed: date = value.date()
    elif isinstance(value, date):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if len(value) > MAX_TIME_CHARS or not _TIME.fullmatch(text):
            raise BoundsError(field, f"must be an ISO 8601 date, e.g. 2026-11-30, got {_shown(value)}")
        try:
            parsed = datetime.fromisoformat(text).date() if len(text) > 10 else date.fromisoformat(text)
        except ValueError:
            raise BoundsError(field, f"must be an ISO 8601 date, e.g. 2026-11-30, got {_shown(value)}") from None
    else:
        raise BoundsError(field, f"must be an ISO 8601 date text, got {type(value).__name__}")
    _check_year(parsed.year, field, min_year, max_year)
    return parsed


def text(value: Any, field: str = "", *, max_chars: int = MAX_LINE_CHARS, min_chars: int = 0,
         multiline: bool = False, strip: bool = True, controls: bool = False) -> str:
    """A string without NUL, control characters (tab/LF/CR only if ``multiline``; any but NUL if
    ``controls``) or lone surrogates, of ``min_chars`` to ``max_chars`` characters (after stripping
    outer whitespace)."""
    if not isinstance(value, str):
        raise BoundsError(field, f"must be text, got {type(value).__name__}")
    if len(value) > max_chars * 2 + 100:  # do not even scan a megabyte to say it is too long
        raise BoundsError(field, f"at most {max_chars} characters, got {len(value)}")
    result = value.strip() if strip else value
    bad = (_UNSTORABLE if controls else _BAD_CHARS if multiline else _BAD_CHARS_LINE).search(result)
    if bad:
        what = "a NUL character" if bad.group() == "\x00" else f"the character U+{ord(bad.group()):04X}"
        raise BoundsError(field, f"contains {what}, which is not allowed here")
    if len(result) > max_chars:
        raise BoundsError(field, f"at most {max_chars} characters, got {len(result)}")
    if len(result) < min_chars:
        raise BoundsError(field, "required" if min_chars == 1 else f"at least {min_chars} characters")
    return result


def optional_text(value: Any, field: str = "", **kwargs: Any) -> str | None:
    """:func:`text`, with ``None`` or blank meaning None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return text(value, field, **kwargs)


def choice(value: Any, field: str, choices: Iterable[str]) -> str:
    """One of ``choices`` exactly (a number or a list is never a choice)."""
    allowed = tuple(choices)
    if isinstance(value, str) and value in allowed:
        return value
    return _refuse_choice(value, field, allowed)


def _refuse_choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    listed = ", ".join(allowed) if len(allowed) <= 12 else ", ".join(allowed[:12]) + ", …"
    raise BoundsError(field, f"must be one of {listed}; got {_shown(value)}")


def flag(value: Any, field: str = "") -> bool:
    """A yes/no from JSON (true/false) or a form (on/true/1/yes, off/false/0/no, absent = no)."""
    if isinstance(value, bool):
        return value
    word = value.strip().lower() if isinstance(value, str) else value
    if word in ("on", "true", "1", "yes"):
        return True
    if word in (None, "", "off", "false", "0", "no"):
        return False
    raise BoundsError(field, f"must be yes or no, got {_shown(value)}")


def phone(value: Any, field: str = "phone") -> str:
    """A phone number as E.164 (``+79161234567``) from what a person or a booking system writes.

    Spaces, hyphens, dots, parentheses and slashes between the digits are dropped
    (``+7 (916) 123-45-67``); nothing else is guessed: the number must start with
    ``+`` and its country code.  A national form (``8 916 ...``, ``0049 ...``) is
    refused by name rather than given a country, because a guessed country code
    could name another person.  Whether the number is *allocated* is not checked
    (``docs/integration.md``, "Phone numbers", says why).
    """
    if not isinstance(value, str):
        raise BoundsError(field, f"must be text such as +79161234567, got {type(value).__name__}")
    if len(value) > 64:
        raise BoundsError(field, f"at most 64 characters, got {len(value)}")
    compact = _PHONE_SEPARATORS.sub("", value)
    if PHONE_E164.fullmatch(compact):
        return compact
    if compact[:1].isdigit():
        raise BoundsError(field, f"must start with + and the country code (E.164), e.g. +79161234567; "
                                 f"got {_shown(value)}")
    raise BoundsError(field, f"must be a phone number in E.164 form: + and 7 to 15 digits, e.g. +79161234567; "
                             f"got {_shown(value)}")


def nul_paths(value: Any, path: str = "data", *, depth: int = 0) -> list[str]:
    """Where a JSON-like value holds a string PostgreSQL cannot store (NUL, a lone surrogate)."""
    if depth > 32:
        return [f"{path}: nested deeper than 32 levels"]
    if isinstance(value, str):
        return [path] if _unstorable(value) else []
    if isinstance(value, dict):
        found = [f"{path} (a key)" for key in value if isinstance(key, str) and _unstorable(key)]
        return found + [p for key, item in value.items() for p in nul_paths(item, f"{path}.{key}", depth=depth + 1)]
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in nul_paths(item, f"{path}[{i}]", depth=depth + 1)]
    return []


def _unstorable(value: str) -> bool:
    return _UNSTORABLE.search(value) is not None
