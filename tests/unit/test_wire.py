"""The kinds of value an event may carry (shared/wire.py), built here rather than only at import.

The module builds its kinds (TEXT, URL, choices...) when it is imported; these tests build kinds
with the same factories at test time and check each part: the JSON Schema every validator reads
(vestnik-client, the SQL functions), the check, the message, the template variable's type.
"""

from __future__ import annotations

import pytest

from vestnik.shared import wire


def test_a_string_kind_states_its_schema_and_checks_length_pattern_and_format():
    kind = wire._string("code", pattern=r"^[A-Z]+$", min_length=2, max_length=4, error="must be a code",
                        variable_type="code")
    assert (kind.name, kind.error, kind.variable_type) == ("code", "must be a code", "code")
    assert kind.schema == {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[A-Z]+$"}
    assert kind.json_schema() == {**kind.schema, "x-kind": "code", "x-error": "must be a code"}
    assert [kind(v) for v in ("AB", "ABCD", "A", "ABCDE", "ab", 12, None)] == [
        True, True, False, False, False, False, False]


def test_a_string_kind_without_a_pattern_or_format_checks_only_type_and_length():
    kind = wire._string("free", max_length=3, error="e")
    assert kind.schema == {"type": "string", "minLength": 1, "maxLength": 3}
    assert kind.variable_type == "str"
    assert [kind(v) for v in ("a", "abc", "", "abcd", 3)] == [True, True, False, False, False]


def test_a_format_adds_its_semantic_check_and_names_itself_in_the_schema():
    kind = wire._string("day", pattern=wire.DATE_PATTERN, max_length=10, fmt="date", error="e")
    assert kind.schema["format"] == "date"
    assert kind("2026-02-28") and not kind("2026-02-30") and not kind("2026-13-01")
    zone = wire._string("zone", pattern=wire.TIMEZONE_PATTERN, max_length=64, fmt="timezone", error="e")
    assert zone("Europe/Moscow") and not zone("Europe/Atlantis")


def test_text_is_one_non_blank_string_within_its_length():
    kind = wire.text(5, name="title")
    assert kind.name == "title" and kind.error == "must be a non-empty string of at most 5 characters"
    assert kind.schema == {"type": "string", "minLength": 1, "maxLength": 5, "pattern": r"\S"}
    assert [kind(v) for v in ("hello", " a ", "   ", "", "toolong", 5)] == [True, True, False, False, False, False]
    assert wire.text().schema["maxLength"] == wire.MAX_TEXT_CHARS and wire.text().name == "text"


def test_a_choice_is_one_of_its_values_exactly():
    kind = wire.choice("sbp", "manual")
    assert kind.name == "choice" and kind.schema == {"enum": ["sbp", "manual"]}
    assert kind.error == "must be one of sbp, manual"
    assert [kind(v) for v in ("sbp", "manual", "SBP", "cash", "", 1, None, ["sbp"])] == [
        True, True, False, False, False, False, False, False]


def test_the_search_helper_finds_a_pattern_anywhere():
    found = wire._search(r"\d")
    assert found("a1") is True and found("abc") is False


def test_valid_date_reads_year_month_and_day_from_their_places():
    assert wire.valid_date("2024-02-29") and not wire.valid_date("2023-02-29")
    assert wire.valid_date("2026-11-30T10:00:00+03:00")
    assert not wire.valid_date("2026-11-31")  # the 31st of a 30-day month
    assert wire.valid_date("2026-12-31") and wire.valid_date("2026-01-31")
    assert not wire.valid_date("1900-02-29") and wire.valid_date("2000-02-29")  # by the year's four digits


@pytest.mark.parametrize(("value", "ok"), [
    (0, True), (4500, True), (4500.5, True), ("4500.00", True), (wire.MONEY_MAX, True),
    (-1, False), (float("nan"), False), (float("inf"), False), (float("-inf"), False), (True, False),
    (wire.MONEY_MAX + 1, False), (1.12345, False), ("1.12345", False), ("-1", False), ("1e3", False),
])
def test_money(value, ok):
    assert wire.MONEY(value) is ok


def test_numbers_are_finite_ints_or_floats_and_never_booleans():
    assert wire._is_number(1) and wire._is_number(1.5) and not wire._is_number(True)
    assert not wire._is_number(float("nan")) and not wire._is_number(float("inf"))
    assert not wire._is_number(float("-inf")) and not wire._is_number("1")
