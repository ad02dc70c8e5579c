"""shared/bounds.py: every refusal's exact words, and every limit at its edge.

test_bounds.py says what is accepted and refused (with Hypothesis); this file pins what a
caller reads when refused (the field named, the reason, the bad value shown short) and where
each limit sits, one step inside and one outside.  Mutation testing (``make mutate``) found
these unpinned.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from vestnik.shared import bounds
from vestnik.shared.bounds import BoundsError

REFUSALS = [
    # (call, exact message)
    (lambda: bounds.integer(True, "n"), "n: must be a whole number, not true/false"),
    (lambda: bounds.integer("12a", "n"), "n: must be a whole number written with the digits 0-9, got '12a'"),
    (lambda: bounds.integer(b"\xff1", "n"), "n: must be a whole number written with the digits 0-9, got b'\\xff1'"),
    (lambda: bounds.integer(1.5, "n"), "n: must be a whole number, got float"),
    (lambda: bounds.integer("7", "n", minimum=1, maximum=5), "n: must be between 1 and 5, got '7'"),
    (lambda: bounds.identifier("0"), "id: must be between 1 and 9223372036854775807, got '0'"),
    (lambda: bounds.page("0"), "page: must be between 1 and 10000, got '0'"),
    (lambda: bounds.amount(False), "amount: must be a number, not true/false"),
    (lambda: bounds.amount(float("nan")), "amount: must be a finite number"),
    (lambda: bounds.amount(float("inf")), "amount: must be a finite number"),
    (lambda: bounds.amount(float("-inf")), "amount: must be a finite number"),
    (lambda: bounds.amount(Decimal("NaN")), "amount: must be a finite number"),
    (lambda: bounds.amount(10**20), "amount: at most 14 digits before the point"),
    (lambda: bounds.amount(Decimal("1e14")), "amount: at most 14 digits before the point and 4 after it"),
    (lambda: bounds.amount("1" * 22), "amount: must be a number of at most 14 digits before the point and 4 "
                                      "after it, got '" + "1" * 22 + "'"),
    (lambda: bounds.amount([1]), "amount: must be a number, got list"),
    (lambda: bounds.amount("1,5"), "amount: must be a number written with the digits 0-9 and a point, got '1,5'"),
    (lambda: bounds.amount("123456789012345"), "amount: at most 14 digits before the point, got 15"),
    (lambda: bounds.amount("1.12345"), "amount: at most 4 digits after the point, got 5"),
    (lambda: bounds.amount("-1"), "amount: must not be negative"),
    (lambda: bounds.amount(1e-07), "amount: at most 4 digits after the point, got 7"),  # repr '1e-07'
    (lambda: bounds.amount(1e16), "amount: at most 14 digits before the point, got 17"),  # repr '1e+16'
    (lambda: bounds.moment("yesterday", "at"),
     "at: must be an ISO 8601 time with an offset, e.g. 2026-11-25T16:00:00+03:00, got 'yesterday'"),
    (lambda: bounds.moment("2026-13-01T00:00:00+00:00", "at"),
     "at: must be an ISO 8601 time with an offset, e.g. 2026-11-25T16:00:00+03:00, got '2026-13-01T00:00:00+00:00'"),
    (lambda: bounds.moment(5, "at"), "at: must be an ISO 8601 time text, got int"),
    (lambda: bounds.moment("2026-11-25T16:00:00", "at"), "at: needs a UTC offset (e.g. +03:00), got "
                                                         "'2026-11-25T16:00:00'"),
    (lambda: bounds.moment("9999-01-01T00:00:00+00:00", "at"), "at: year must be between 1900 and 2200, got 9999"),
    (lambda: bounds.day("30.11.2026", "d"), "d: must be an ISO 8601 date, e.g. 2026-11-30, got '30.11.2026'"),
    (lambda: bounds.day("2026-02-30", "d"), "d: must be an ISO 8601 date, e.g. 2026-11-30, got '2026-02-30'"),
    (lambda: bounds.day(5, "d"), "d: must be an ISO 8601 date text, got int"),
    (lambda: bounds.day("1899-12-31", "d"), "d: year must be between 1900 and 2200, got 1899"),
    (lambda: bounds.text(5, "t"), "t: must be text, got int"),
    (lambda: bounds.text("x" * 2101, "t"), "t: at most 1000 characters, got 2101"),
    (lambda: bounds.text("a\x00b", "t"), "t: contains a NUL character, which is not allowed here"),
    (lambda: bounds.text("a\x07b", "t"), "t: contains the character U+0007, which is not allowed here"),
    (lambda: bounds.text("a\nb", "t"), "t: contains the character U+000A, which is not allowed here"),
    (lambda: bounds.text("x" * 1001, "t"), "t: at most 1000 characters, got 1001"),
    (lambda: bounds.text("", "t", min_chars=1), "t: required"),
    (lambda: bounds.text("ab", "t", min_chars=3), "t: at least 3 characters"),
    (lambda: bounds.choice(3, "c", ["a", "b"]), "c: must be one of a, b; got 3"),
    (lambda: bounds.choice("z", "c", [str(i) for i in range(13)]),
     "c: must be one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, …; got 'z'"),
    (lambda: bounds.choice("z", "c", [str(i) for i in range(12)]),
     "c: must be one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11; got 'z'"),
    (lambda: bounds.flag("maybe", "f"), "f: must be yes or no, got 'maybe'"),
    (lambda: bounds.flag(2, "f"), "f: must be yes or no, got 2"),
]


@pytest.mark.parametrize(("call", "message"), REFUSALS, ids=[f"refusal{i}" for i in range(len(REFUSALS))])
def test_each_refusal_names_the_field_and_says_why_in_these_words(call, message):
    with pytest.raises(BoundsError) as caught:
        call()
    assert str(caught.value) == message
    field, _, reason = message.partition(": ")
    assert (caught.value.field, caught.value.reason) == (field, reason)


def test_a_refusal_without_a_field_is_the_reason_alone():
    error = BoundsError("", "must be text")
    assert (str(error), error.field, error.reason) == ("must be text", "", "must be text")


def test_a_long_bad_value_is_shown_cut_short():
    with pytest.raises(BoundsError) as caught:
        bounds.flag("y" * 100, "f")
    assert str(caught.value) == "f: must be yes or no, got '" + "y" * 40 + "'"
    with pytest.raises(BoundsError) as caught:
        bounds.flag(["x" * 30, "y" * 30], "f")
    shown = repr(["x" * 30, "y" * 30])[:50] + "…"
    assert str(caught.value) == f"f: must be yes or no, got {shown}"
    with pytest.raises(BoundsError) as caught:
        bounds.flag(["x" * 46], "f")  # its repr is 50 characters: shown whole
    assert str(caught.value) == f"f: must be yes or no, got {['x' * 46]!r}"
    with pytest.raises(BoundsError) as caught:
        bounds.flag(["x" * 47], "f")  # 51: cut at 50
    assert str(caught.value) == f"f: must be yes or no, got {repr(['x' * 47])[:50]}…"


def test_integers_are_read_from_ascii_text_with_outer_whitespace_and_bytes():
    assert bounds.integer(" \t42\r\n") == 42
    assert bounds.integer(b"42") == 42
    assert bounds.integer("-5", minimum=-5) == -5
    assert bounds.integer(5, maximum=5) == 5
    assert bounds.identifier(str(bounds.MAX_BIGINT)) == bounds.MAX_BIGINT
    assert bounds.identifier("1") == 1
    assert bounds.page("1") == 1 and bounds.page(None) == 1 and bounds.page("") == 1
    assert bounds.optional_integer("  ", default=7) == 7
    with pytest.raises(BoundsError):
        bounds.integer("\v42")


def test_amounts_at_every_edge():
    assert bounds.amount("99999999999999.9999") == Decimal("99999999999999.9999")
    assert bounds.amount(" 0012.5000 ") == Decimal("12.5")
    assert bounds.amount("000000000000000001") == 1  # leading zeros are not digits before the point
    assert bounds.amount("1.123400000") == Decimal("1.1234")  # trailing zeros are not digits after it
    assert bounds.amount(".5") == Decimal("0.5")
    assert bounds.amount(4500.5) == Decimal("4500.5")
    assert bounds.amount(1e-4) == Decimal("0.0001")  # repr is '0.0001'
    assert bounds.amount(1e-05, max_scale=5) == Decimal("0.00001")  # repr is '1e-05'
    assert bounds.amount(1.5e13) == Decimal("15000000000000")  # repr is '15000000000000.0'
    assert bounds.amount(99999999999999) == 99999999999999
    assert bounds.amount(Decimal("99999999999999.9999")) == Decimal("99999999999999.9999")
    assert bounds.amount(Decimal("0E-18")) == 0
    assert bounds.amount("-1", allow_negative=True) == -1
    assert bounds.amount("0") == 0
    for refused in ("100000000000000", 100000000000000, "1.00001", Decimal("1E-19"), 1.5e14, "1e3", "0x10"):
        with pytest.raises(BoundsError):
            bounds.amount(refused)


def test_huge_integers_are_refused_by_size_before_being_written_out():
    limit_bits = 4 * (bounds.MAX_AMOUNT_DIGITS + 1)
    with pytest.raises(BoundsError, match="at most 14 digits before the point$"):
        bounds.amount(2**limit_bits)
    digits = len(str(2**limit_bits - 1))
    with pytest.raises(BoundsError, match=f"at most 14 digits before the point, got {digits}$"):
        bounds.amount(2**limit_bits - 1)  # within the quick check: counted digit by digit


def test_an_amount_given_as_text_may_carry_three_characters_beyond_its_digits():
    # sign, point and one leading zero: "-0.1234" style texts up to 21 characters are read, not refused by length
    assert bounds.amount("+0" + "9" * 14 + ".9999", allow_negative=True) == Decimal("99999999999999.9999")
    with pytest.raises(BoundsError, match="must be a number of at most"):
        bounds.amount("+00" + "9" * 14 + ".9999")


def test_times_at_the_edges_of_the_calendar_and_the_length_limit():
    assert bounds.moment("2200-12-31T23:59:59+00:00").year == 2200
    assert bounds.moment("1900-01-01T00:00:00+00:00").year == 1900
    assert bounds.moment(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert bounds.moment(" 2026-11-25T16:00:00+03:00 ").hour == 16
    forty = "2026-11-25T16:00:00.000000+03:00" + " " * 8
    assert len(forty) == bounds.MAX_TIME_CHARS
    assert bounds.moment(forty).minute == 0
    with pytest.raises(BoundsError):
        bounds.moment(forty + " ")
    with pytest.raises(BoundsError, match="needs a UTC offset"):
        bounds.moment(datetime(2026, 1, 1))
    assert bounds.day("2200-12-31") == date(2200, 12, 31)
    assert bounds.day(datetime(2026, 11, 30, 23, 0, tzinfo=UTC)) == date(2026, 11, 30)
    assert bounds.day(date(2026, 11, 30)) == date(2026, 11, 30)
    assert bounds.day("2026-11-30T10:00:00+03:00") == date(2026, 11, 30)
    assert bounds.day("20261130T10") == date(2026, 11, 30)  # longer than a date: read as a time
    day40 = "2026-11-30" + " " * 30
    assert bounds.day(day40) == date(2026, 11, 30)
    with pytest.raises(BoundsError):
        bounds.day(day40 + " ")


def test_text_limits_are_exact_and_counted_after_stripping():
    assert bounds.text("x" * 1000) == "x" * 1000
    assert bounds.text("  " + "x" * 1000 + "  ") == "x" * 1000
    assert bounds.text(" " * 1100 + "x" * 1000) == "x" * 1000  # 2100 characters before stripping: read
    assert bounds.text("a", min_chars=1) == "a"
    assert bounds.text("abc", min_chars=3) == "abc"
    assert bounds.text("  a  ", strip=False) == "  a  "
    assert bounds.text("a\tb\nc", multiline=True) == "a\tb\nc"
    assert bounds.text("a\x07b", controls=True) == "a\x07b"
    with pytest.raises(BoundsError, match="NUL"):
        bounds.text("a\x00b", controls=True)
    with pytest.raises(BoundsError, match="U\\+0007"):
        bounds.text("a\x07b", multiline=True)
    assert bounds.optional_text("  ") is None and bounds.optional_text(None) is None
    assert bounds.optional_text(" x ", "t", max_chars=1) == "x"
    with pytest.raises(BoundsError) as caught:
        bounds.optional_text("xy", "t", max_chars=1)
    assert str(caught.value) == "t: at most 1 characters, got 2"


def test_flags_read_every_documented_word_and_nothing_else():
    for word in ("on", "true", "1", "yes", " YES ", "True"):
        assert bounds.flag(word) is True, word
    for word in (None, "", "off", "false", "0", "no", " NO ", "False"):
        assert bounds.flag(word) is False, word
    assert bounds.flag(True) is True and bounds.flag(False) is False
    for word in ("y", "n", "2", "да"):
        with pytest.raises(BoundsError):
            bounds.flag(word)


def test_nul_paths_names_each_place_and_stops_at_32_levels():
    data = {"a": "ok", "b\x00": 1, "c": ["x", "y\x00"], "d": {"e": "\ud800"}}
    assert bounds.nul_paths(data) == ["data (a key)", "data.c[1]", "data.d.e"]
    deep: object = "\x00"
    for _ in range(32):
        deep = [deep]
    assert bounds.nul_paths(deep) == ["data" + "[0]" * 32]
    assert bounds.nul_paths([deep]) == ["data" + "[0]" * 33 + ": nested deeper than 32 levels"]
    nested: object = "\x00"
    for _ in range(32):
        nested = {"k": nested}
    assert bounds.nul_paths(nested) == ["data" + ".k" * 32]
    assert bounds.nul_paths({"k": nested}) == ["data" + ".k" * 33 + ": nested deeper than 32 levels"]
    assert bounds.nul_paths(("a", "\x00")) == ["data[1]"]
    assert bounds.nul_paths(5) == [] and bounds.nul_paths({1: "x"}) == []


def test_default_field_names():
    for call, start in ((lambda: bounds.day("tomorrow"), "date: must be an ISO 8601 date, e.g. 2026-11-30, got "),
                        (lambda: bounds.moment("x"), "time: must be an ISO 8601 time with an offset"),
                        (lambda: bounds.integer("x"), "must be a whole number written with the digits 0-9"),
                        (lambda: bounds.optional_integer("x"), "must be a whole number written with the digits 0-9"),
                        (lambda: bounds.flag("maybe"), "must be yes or no"),
                        (lambda: bounds.text(5), "must be text, got int"),
                        (lambda: bounds.optional_text(5), "must be text, got int")):
        with pytest.raises(BoundsError) as caught:
            call()
        assert str(caught.value).startswith(start), str(caught.value)
    with pytest.raises(BoundsError) as caught:
        bounds.day("tomorrow", "d")
    assert str(caught.value) == "d: must be an ISO 8601 date, e.g. 2026-11-30, got 'tomorrow'"


def test_only_spaces_tabs_and_line_breaks_are_trimmed_from_numbers():
    for refused in ("\v5", "\f5", "X5", "5X"):
        with pytest.raises(BoundsError):
            bounds.amount(refused)
        with pytest.raises(BoundsError):
            bounds.integer(refused)


def test_a_text_far_over_its_limit_is_refused_before_it_is_stripped():
    with pytest.raises(BoundsError) as caught:
        bounds.text(" " * 1101 + "x" * 1000, "t")
    assert str(caught.value) == "t: at most 1000 characters, got 2101"


def test_a_time_zone_that_gives_no_offset_is_no_offset():
    from datetime import tzinfo

    class NoOffset(tzinfo):
        def utcoffset(self, dt):
            return None

    with pytest.raises(BoundsError, match="needs a UTC offset"):
        bounds.moment(datetime(2026, 1, 1, tzinfo=NoOffset()))
