"""The bounded parsers (shared/bounds.py): what each accepts, what it refuses, and that refusals name the field.

Property tests (Hypothesis) walk the whole space of a kind of value: any text,
any integer, any decimal, any time.  A parser either returns a value inside its
bounds or raises BoundsError naming the field; nothing else escapes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vestnik.shared import bounds
from vestnik.shared.bounds import BoundsError

#: Everything a JSON body, a form or a CSV cell can carry.
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _refused(parser, value, field="f", **kwargs) -> BoundsError:
    with pytest.raises(BoundsError) as caught:
        parser(value, field, **kwargs)
    assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")
    return caught.value


# ---------------------------------------------------------------- integers


@given(st.integers(min_value=bounds.MIN_BIGINT, max_value=bounds.MAX_BIGINT))
def test_every_bigint_round_trips_through_its_text(number):
    assert bounds.integer(str(number), "n") == number
    assert bounds.integer(number, "n") == number


@given(st.one_of(ANY_JSON, st.binary()))
def test_integer_returns_a_bigint_or_names_the_field(value):
    try:
        number = bounds.integer(value, "client_id")
    except BoundsError as exc:
        assert exc.field == "client_id"
    else:
        assert type(number) is int and bounds.MIN_BIGINT <= number <= bounds.MAX_BIGINT


@pytest.mark.parametrize("value", ["١٢٣", "²", "1_000", "12e3", "0x10", "9" * 20, str(2**63), 2**63, -(2**63) - 1,
                                   True, 1.0, "1.0", "", " ", "1 2", "+", "\x001", None, [1], {"a": 1}])
def test_integer_refuses_what_int_would_take_or_a_bigint_cannot_hold(value):
    _refused(bounds.integer, value)


def test_identifier_is_positive():
    assert bounds.identifier("42") == 42
    for bad in ("0", "-1", 0):
        _refused(bounds.identifier, bad)


def test_page_defaults_to_one_and_has_a_ceiling():
    assert bounds.page(None) == 1 and bounds.page("") == 1 and bounds.page("3") == 3
    _refused(bounds.page, "0", "page")
    _refused(bounds.page, "10001", "page")


# ---------------------------------------------------------------- amounts


@given(st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=0, max_value=Decimal("9" * 14)))
def test_every_amount_of_up_to_14_digits_round_trips(value):
    assert bounds.amount(str(value), "amount") == value


@given(st.one_of(ANY_JSON, st.decimals()))
def test_amount_returns_a_bounded_finite_decimal_or_names_the_field(value):
    try:
        parsed = bounds.amount(value, "amount")
    except BoundsError as exc:
        assert exc.field == "amount"
    else:
        assert isinstance(parsed, Decimal) and parsed.is_finite() and 0 <= parsed < 10 ** bounds.MAX_AMOUNT_DIGITS
        assert -parsed.as_tuple().exponent <= max(bounds.MAX_AMOUNT_SCALE, 0) or parsed == parsed.to_integral()


@pytest.mark.parametrize("value", ["1" * 60000, "1e5", "NaN", "Infinity", "-5", "١٠", "1,5", "0." + "1" * 5, True,
                                   float("nan"), float("inf"), 10**40, Decimal("1E+20"), Decimal("NaN"), "", ["1"]])
def test_amount_refuses_huge_exotic_or_negative_values(value):
    _refused(bounds.amount, value)


@pytest.mark.parametrize(("given", "expected"), [("4500.00", Decimal("4500.00")), (4500, Decimal(4500)),
                                                 (4500.5, Decimal("4500.5")), (" 12.3 ", Decimal("12.3")),
                                                 (".5", Decimal("0.5")), (Decimal("7.25"), Decimal("7.25"))])
def test_amount_reads_the_usual_spellings(given, expected):
    assert bounds.amount(given) == expected


# ---------------------------------------------------------------- times


@given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2199, 12, 30),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-11))])))
def test_every_aware_time_in_range_round_trips_and_converts_anywhere(value):
    parsed = bounds.moment(value.isoformat(), "starts_at")
    assert parsed == value
    # The reason for the year bounds: any zone conversion stays inside datetime's range.
    parsed.astimezone(timezone(timedelta(hours=14)))
    parsed.astimezone(timezone(timedelta(hours=-12)))


@given(ANY_JSON)
def test_moment_returns_an_aware_bounded_time_or_names_the_field(value):
    try:
        parsed = bounds.moment(value, "send_at")
    except BoundsError as exc:
        assert exc.field == "send_at"
    else:
        assert parsed.tzinfo is not None and bounds.MIN_YEAR <= parsed.year <= bounds.MAX_YEAR


PADDED = "2026-11-25T16:00:00+03:00" + " " * 50


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00", "2026-11-25T16:00:00",
                                   "2026-11-25", "tomorrow", "２０２６-11-25T16:00:00+03:00", PADDED, 1795000000, None,
                                   "", datetime(2026, 1, 1)])
def test_moment_refuses_naive_far_exotic_or_non_text_times(value):
    _refused(bounds.moment, value)


def test_day_reads_a_date_and_refuses_far_years():
    assert bounds.day("2026-11-30") == date(2026, 11, 30)
    assert bounds.day("2026-11-30T10:00:00+03:00") == date(2026, 11, 30)
    for bad in ("9999-01-01", "30.11.2026", 20261130, "2026-02-30"):
        _refused(bounds.day, bad)


# ---------------------------------------------------------------- text and choices


@given(st.text())
def test_text_keeps_clean_text_and_refuses_the_rest_by_name(value):
    try:
        parsed = bounds.text(value, "title", max_chars=50, multiline=True)
    except BoundsError as exc:
        assert exc.field == "title"
    else:
        assert len(parsed) <= 50 and "\x00" not in parsed
        parsed.encode("utf-8")  # storable: no lone surrogates


@pytest.mark.parametrize("value", ["a\x00b", "a\ud800b", "x" * 1001, 5, None, ["a"], "line\nbreak", "\x1b[31m"])
def test_one_line_text_refuses_nul_controls_surrogates_length_and_wrong_types(value):
    _refused(bounds.text, value)


def test_text_minimum_says_required():
    assert "required" in str(_refused(bounds.text, "  ", min_chars=1))
    assert bounds.optional_text("  ") is None and bounds.optional_text(" a ") == "a"


def test_choice_is_exact_and_lists_the_choices():
    assert bounds.choice("sbp", "method", ("sbp", "manual")) == "sbp"
    for bad in ("SBP", 1, None, ["sbp"]):
        assert "sbp, manual" in str(_refused(bounds.choice, bad, choices=("sbp", "manual")))


def test_flag_reads_forms_and_json():
    assert [bounds.flag(v) for v in ("on", "true", "1", True)] == [True] * 4
    assert [bounds.flag(v) for v in (None, "", "off", "0", False)] == [False] * 5
    _refused(bounds.flag, "maybe")


def test_nul_paths_finds_unstorable_strings_at_any_depth():
    value = {"a": ["ok", "b\x00"], "c\x00": 1, "d": {"e": "\udc80"}}
    assert bounds.nul_paths(value) == ["data (a key)", "data.a[1]", "data.d.e"]
