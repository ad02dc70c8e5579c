"""The quiet-hours rule, table-tested: every branch of hold_until, across zones and midnight."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from vestnik.workers.quiet_hours import (
    DEFAULT_POLICIES,
    URGENT_EVENTS,
    Policy,
    Window,
    hold_until,
    own_window,
    parse_hhmm,
    zone_of,
)

MSK = ZoneInfo("Europe/Moscow")
VLADIVOSTOK = ZoneInfo("Asia/Vladivostok")
KALININGRAD = ZoneInfo("Europe/Kaliningrad")


def _local(zone: ZoneInfo, y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=zone)


def _hold(due: datetime, *, category: str = "marketing", event_type: str = "mass_broadcast",
          zone: ZoneInfo = MSK, own: Window | None = None, policies=DEFAULT_POLICIES):
    return hold_until(due, category=category, event_type=event_type, zone=zone, own=own, policies=policies)


@pytest.mark.parametrize(("hh", "mm", "held_until"), [
    (20, 59, None),                      # a minute before the window: goes
    (21, 0, (2026, 12, 3, 9, 0)),        # the start is inside
    (23, 0, (2026, 12, 3, 9, 0)),        # evening: until tomorrow morning
    (3, 0, (2026, 12, 2, 9, 0)),         # night, after midnight: until this morning
    (8, 59, (2026, 12, 2, 9, 0)),
    (9, 0, None),                        # the end is outside
    (14, 0, None),
])
def test_marketing_waits_for_the_end_of_the_default_window(hh, mm, held_until):
    got = _hold(_local(MSK, 2026, 12, 2, hh, mm))
    expected = None if held_until is None else _local(MSK, *held_until).astimezone(UTC)
    assert got == expected
    assert got is None or got.tzinfo is UTC


def test_service_messages_have_no_quiet_hours_by_default():
    assert _hold(_local(MSK, 2026, 12, 2, 23), category="service", event_type="invoice_created") is None


@pytest.mark.parametrize("event_type", sorted(URGENT_EVENTS))
def test_urgent_news_is_never_held_even_when_service_has_quiet_hours(event_type):
    strict = {**DEFAULT_POLICIES, "service": Policy(True, Window(0, 23 * 60 + 59))}
    assert _hold(_local(MSK, 2026, 12, 2, 3), category="service", event_type=event_type, policies=strict) is None
    # ...while a non-urgent service message is held by the admin's service window
    assert _hold(_local(MSK, 2026, 12, 2, 3), category="service", event_type="invoice_created",
                 policies=strict) == _local(MSK, 2026, 12, 2, 23, 59).astimezone(UTC)


def test_an_admin_may_switch_marketing_quiet_hours_off_or_change_the_window():
    off = {**DEFAULT_POLICIES, "marketing": Policy(False, Window(21 * 60, 9 * 60))}
    assert _hold(_local(MSK, 2026, 12, 2, 23), policies=off) is None
    late = {**DEFAULT_POLICIES, "marketing": Policy(True, Window(22 * 60, 7 * 60))}
    assert _hold(_local(MSK, 2026, 12, 2, 21, 30), policies=late) is None
    assert _hold(_local(MSK, 2026, 12, 2, 22, 30), policies=late) == _local(MSK, 2026, 12, 3, 7).astimezone(UTC)


def test_the_clients_own_window_wins_and_equal_ends_mean_any_hour():
    mine = Window(23 * 60, 7 * 60)
    assert _hold(_local(MSK, 2026, 12, 2, 22), own=mine) is None  # inside the default, outside theirs
    assert _hold(_local(MSK, 2026, 12, 2, 6), own=mine) == _local(MSK, 2026, 12, 2, 7).astimezone(UTC)
    assert _hold(_local(MSK, 2026, 12, 2, 3), own=Window(0, 0)) is None
    day_sleeper = Window(9 * 60, 17 * 60)  # not across midnight
    assert _hold(_local(MSK, 2026, 12, 2, 12), own=day_sleeper) == _local(MSK, 2026, 12, 2, 17).astimezone(UTC)
    assert _hold(_local(MSK, 2026, 12, 2, 23), own=day_sleeper) is None
    # ...but the client's window never gives quiet hours to a category the admin left without them
    assert _hold(_local(MSK, 2026, 12, 2, 12), own=day_sleeper, category="service",
                 event_type="invoice_created") is None


def test_the_window_is_read_in_the_clients_zone():
    moment = datetime(2026, 12, 2, 12, 30, tzinfo=UTC)  # 22:30 in Vladivostok, 14:30 in Kaliningrad
    assert _hold(moment, zone=KALININGRAD) is None
    assert _hold(moment, zone=VLADIVOSTOK) == _local(VLADIVOSTOK, 2026, 12, 3, 9).astimezone(UTC)


def test_a_daylight_saving_zone_ends_at_local_nine_on_both_sides_of_the_change():
    berlin = ZoneInfo("Europe/Berlin")
    for day in (28, 29):  # 2026-03-29: clocks go forward at 02:00
        got = _hold(_local(berlin, 2026, 3, day, 23, 30), zone=berlin)
        assert got.astimezone(berlin).hour == 9 and got.astimezone(berlin).day == day + 1


def test_times_and_zones_from_forms_and_rows():
    assert parse_hhmm("21:00") == 1260 and parse_hhmm(" 9:05 ") == 545
    for bad in ("24:00", "21:60", "9", "", "21.00", "２１:00"):
        with pytest.raises(ValueError, match="a time such as 21:00"):
            parse_hhmm(bad)
    with pytest.raises(ValueError):
        Window(0, 1440)
    assert own_window(None, 540) is None and own_window(60, 540) == Window(60, 540)
    assert zone_of("Mars/Olympus", "Asia/Vladivostok") == VLADIVOSTOK
    assert zone_of(None, "nonsense") == ZoneInfo("UTC")
    assert Window(1260, 540).label() == "21:00–09:00" and Window(0, 0).label() == "none"
