"""Quiet hours: the one rule that says whether a message may go now or waits for the morning.

:func:`hold_until` decides, and every path asks it: planning (an event's rows in
``workers/handling.py`` through :func:`vestnik.workers.rules.plan_event`, a
broadcast's hand-over in ``workers/broadcasting.py``) and the send path (delivery,
right after a row is claimed, for rows that became due late: a retry, the daily
email quota).  The rule, in order:

1. **Urgent news is never held.**  Events in :data:`URGENT_EVENTS` (a lesson
   cancelled or moved, a booking cancelled or moved, a sign-in) go when due,
   whatever the category's quiet hours say.
2. **The category decides whether quiet hours apply.**  By default marketing
   has quiet hours (21:00-09:00) and service messages have none; an admin may
   change either per category (Admin -> Rules -> Quiet hours, a ``quiet_hours``
   row, audited).
3. **The client's own window wins over the category's.**  A client sets it in
   the profile (``/me``); equal start and end mean "any hour suits me".
4. **The window is read in the client's time zone** (an unknown zone: the
   default, ``VESTNIK_DEFAULT_TIMEZONE``).
5. A message due inside the window waits for the window's end; one due outside
   it goes when due.

Nothing here touches the database except :func:`load_policies`; the rest is
pure and table-tested (``tests/unit/test_quiet_hours.py``).
"""

from __future__ import annotations

import re
import time as time_module
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from vestnik.shared.models import Category, QuietHours

MINUTES_PER_DAY = 24 * 60

#: news that cannot wait for the morning: never held, even when an admin gives service messages quiet hours
URGENT_EVENTS = frozenset({"lesson_cancelled", "lesson_rescheduled", "booking_cancelled", "booking_moved",
                           "client_sign_in"})


@dataclass(frozen=True)
class Window:
    """From ``start_min`` to ``end_min`` minutes after local midnight; across midnight when start > end.
    Equal ends: no quiet hours at all."""

    start_min: int
    end_min: int

    def __post_init__(self) -> None:
        for value in (self.start_min, self.end_min):
            if not 0 <= value < MINUTES_PER_DAY:
                raise ValueError("quiet hours: a time between 00:00 and 23:59")

    @property
    def always_open(self) -> bool:
        return self.start_min == self.end_min

    def holds(self, minute: int) -> bool:
        """Whether a message due at this minute of the local day waits."""
        if self.always_open:
            return False
        if self.start_min < self.end_min:
            return self.start_min <= minute < self.end_min
        return minute >= self.start_min or minute < self.end_min

    def label(self) -> str:
        return "none" if self.always_open else f"{hhmm(self.start_min)}–{hhmm(self.end_min)}"

    @classmethod
    def parse(cls, start: str, end: str) -> Window:
        """From ``HH:MM`` strings (a form's values); ValueError names what is wrong."""
        return cls(parse_hhmm(start, "start"), parse_hhmm(end, "end"))


@dataclass(frozen=True)
class Policy:
    """A category's quiet hours: whether they apply, and the window clients get by default."""

    enabled: bool
    window: Window


DEFAULT_WINDOW = Window(21 * 60, 9 * 60)
DEFAULT_POLICIES: dict[str, Policy] = {
    Category.marketing.value: Policy(True, DEFAULT_WINDOW),
    Category.service.value: Policy(False, DEFAULT_WINDOW),
}

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(value: str, what: str = "time") -> int:
    match = _HHMM.match((value or "").strip())
    if match is None:
        raise ValueError(f"{what}: a time such as 21:00 (00:00 to 23:59)")
    return int(match.group(1)) * 60 + int(match.group(2))


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def own_window(start_min: int | None, end_min: int | None) -> Window | None:
    """A client's stored choice: None follows the category's window."""
    if start_min is None or end_min is None:
        return None
    return Window(start_min, end_min)


def zone_of(name: str | None, default: str) -> ZoneInfo:
    for candidate in (name, default, "UTC"):
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def hold_until(due: datetime, *, category: str, event_type: str, zone: ZoneInfo, own: Window | None,
               policies: Mapping[str, Policy]) -> datetime | None:
    """The moment (UTC) a message due at ``due`` may go, when that is later; else None (it goes when due)."""
    if event_type in URGENT_EVENTS:
        return None
    policy = policies.get(category) or DEFAULT_POLICIES.get(category)
    if policy is None or not policy.enabled:
        return None
    window = own if own is not None else policy.window
    if window.always_open:
        return None
    local = due.astimezone(zone)
    minute = local.hour * 60 + local.minute
    if not window.holds(minute):
        return None
    day = local.date()
    if minute >= window.end_min:  # evening part of a window across midnight: it ends tomorrow
        day += timedelta(days=1)
    end = datetime.combine(day, time(window.end_min // 60, window.end_min % 60), tzinfo=zone)
    return end.astimezone(UTC)


def load_policies(session: Session) -> dict[str, Policy]:
    """The defaults with the admin's changes (one small query)."""
    policies = dict(DEFAULT_POLICIES)
    for row in session.scalars(select(QuietHours)):
        try:
            policies[row.category] = Policy(bool(row.enabled), Window(row.start_min, row.end_min))
        except ValueError:
            continue  # a row written by hand outside 00:00-23:59: the default stands
    return policies



#: how a row waiting for quiet hours to end explains itself in the history
REASON = "quiet hours"
#: the send path reads the admin's policies at most this often (seconds): a change applies within it
POLICY_TTL_S = 10.0


class PolicyCache:
    """The policies for the send path, read once per ``POLICY_TTL_S`` instead of once per message."""

    def __init__(self, ttl_s: float = POLICY_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._policies: dict[str, Policy] | None = None
        self._read_at = 0.0

    def get(self, session: Session) -> dict[str, Policy]:
        now = time_module.monotonic()
        if self._policies is None or now - self._read_at > self.ttl_s:
            self._policies = load_policies(session)
            self._read_at = now
        return self._policies
