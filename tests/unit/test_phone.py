"""bounds.phone (where people and booking systems write a phone) and wire.PHONE (where machines do) agree:
what bounds.phone returns is exactly what the registry's E.164 pattern accepts."""

from __future__ import annotations

import pytest

from vestnik.shared import bounds, wire
from vestnik.shared.bounds import BoundsError


@pytest.mark.parametrize(("written", "stored"), [
    ("+79161234567", "+79161234567"),
    ("+7 (916) 123-45-67", "+79161234567"),
    ("+7.916.123.45.67", "+79161234567"),
    ("\u00a0+998\u202f90 123\u201145\u201367 ", "+998901234567"),
    ("+44 20/7946 0958", "+442079460958"),
    ("+1234567", "+1234567"),
    ("+123456789012345", "+123456789012345"),
])
def test_separators_are_dropped_and_the_result_is_what_the_wire_accepts(written, stored):
    assert bounds.phone(written) == stored
    assert wire.PHONE(stored)


@pytest.mark.parametrize(("written", "says"), [
    ("8 916 123-45-67", "must start with + and the country code"),
    ("0049 30 1234567", "must start with + and the country code"),
    ("+0 123 4567", "E.164 form"),
    ("+123456", "E.164 form"),
    ("+1234567890123456", "E.164 form"),
    ("+7 916 CALL-ME", "E.164 form"),
    ("+７９１６１２３４５６７", "E.164 form"),  # full-width digits are not ASCII digits
    ("", "E.164 form"),
    (79161234567, "must be text"),
    ("+7" + " " * 100, "at most 64 characters"),
])
def test_anything_else_is_refused_naming_the_field(written, says):
    with pytest.raises(BoundsError) as err:
        bounds.phone(written, "booking.phone")
    assert err.value.field == "booking.phone" and says in err.value.reason


def test_the_wire_takes_only_the_stored_form():
    assert not wire.PHONE("+7 916 123-45-67") and not wire.PHONE(79161234567) and not wire.PHONE("+0123456789")
    assert wire.PHONE_PATTERN == "^" + bounds.PHONE_E164.pattern.replace("\\+", "[+]") + "$"
