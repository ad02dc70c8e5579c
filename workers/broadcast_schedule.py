"""Scheduled broadcasts: at a moment, or at a local time in each client's own time zone.

A schedule is a list of *waves* (``broadcast_waves`` rows): a moment and the time zones it
covers.  "At a moment" is one wave for everyone (zone ``*``).  "At 10:00 in each client's zone
on 5 December" is one wave per time zone the clients live in (10:00 in Vladivostok is 00:00 UTC,
in Kaliningrad 08:00 UTC) plus ``*`` at the default zone's 10:00 for clients in any zone without a
wave of its own (one who moved after the schedule was made).

Life of a scheduled broadcast::

    draft/tested --schedule (typed count)--> scheduled --first wave due--> running --> completed
                                               |   ^  reschedule / edit the text
                                               |   +------------------------------+
                                               +--unschedule--> draft ; cancel --> canceled

Until the first wave starts, the time and the text can be changed and the whole can be canceled.
The scheduler's tick (:func:`start_due`) starts a broadcast whose first wave has come; from then
on, each tick of the feeder (``workers/broadcasting.py``) starts an expansion pass for the waves
that have come (:func:`next_pass`), so each client's rows are made, and handed over at the
channels' pace, from their own zone's moment.  Time travel in tests is moving a wave's
``send_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, false, or_, select
from sqlalchemy.orm import Session

from vestnik.shared.models import Broadcast, BroadcastStatus, BroadcastWave, Client, utcnow
from vestnik.workers import broadcasts
from vestnik.workers.audience import Count
from vestnik.workers.broadcasts import BroadcastError
from vestnik.workers.quiet_hours import hhmm, parse_hhmm, zone_of

EVERYONE = "*"


@dataclass(frozen=True)
class When:
    """What the admin chose: a moment (aware), or a local date and time in each client's zone."""

    moment: datetime | None = None
    local_date: date | None = None
    local_time_min: int | None = None

    @classmethod
    def at(cls, moment: datetime) -> When:
        if moment.tzinfo is None:
            raise BroadcastError("send at: a moment with its time zone")
        return cls(moment=moment.astimezone(UTC))

    @classmethod
    def local(cls, day: date, hh_mm: str) -> When:
        try:
            minutes = parse_hhmm(hh_mm, "local time")
        except ValueError as exc:
            raise BroadcastError(str(exc)) from None
        return cls(local_date=day, local_time_min=minutes)

    @property
    def is_local(self) -> bool:
        return self.local_date is not None

    def describe(self) -> str:
        if self.moment is not None:
            return f"at {self.moment:%Y-%m-%d %H:%M} UTC"
        return f"at {hhmm(self.local_time_min or 0)} on {self.local_date:%Y-%m-%d} in each client's time zone"


def when_of(b: Broadcast) -> When | None:
    if b.local_date and b.local_time:
        return When(local_date=date.fromisoformat(b.local_date), local_time_min=parse_hhmm(b.local_time))
    if b.scheduled_at is not None:
        return When(moment=b.scheduled_at)
    return None


def waves_for(session: Session, when: When, default_zone: str) -> list[tuple[str, datetime]]:
    """The (zone, moment) pairs of a schedule, earliest first."""
    if when.moment is not None:
        return [(EVERYONE, when.moment)]
    assert when.local_date is not None and when.local_time_min is not None
    local = time(when.local_time_min // 60, when.local_time_min % 60)

    def moment(zone_name: str) -> datetime:
        return datetime.combine(when.local_date, local, tzinfo=zone_of(zone_name, default_zone)).astimezone(UTC)

    # One look at the zones clients live in (an index-free scan, once per schedule, not per tick).
    zones = {z for z in session.scalars(select(Client.timezone).distinct()) if z}
    waves = [(z, moment(z)) for z in sorted(zones) if zone_of(z, "").key == z]  # known IANA names only
    waves.append((EVERYONE, moment(default_zone)))
    return sorted(waves, key=lambda w: (w[1], w[0]))


def _set_waves(session: Session, b: Broadcast, when: When, default_zone: str, now: datetime) -> list[BroadcastWave]:
    waves = waves_for(session, when, default_zone)
    late = [(z, at) for z, at in waves if at <= now and z != EVERYONE]
    if when.moment is not None and when.moment <= now:
        raise BroadcastError(f"send at: {when.moment:%Y-%m-%d %H:%M} UTC has passed; choose a later moment")
    if late:
        zone, at = late[0]
        raise BroadcastError(f"it is already past {hhmm(when.local_time_min or 0)} on {when.local_date} in {zone} "
                             f"({len(late)} time zone(s) of your clients); choose a later date")
    session.execute(delete(BroadcastWave).where(BroadcastWave.broadcast_id == b.id))
    rows = [BroadcastWave(broadcast_id=b.id, zone=z, send_at=at) for z, at in waves]
    session.add_all(rows)
    b.scheduled_at = min(at for _, at in waves)
    b.local_date = when.local_date.isoformat() if when.local_date else None
    b.local_time = hhmm(when.local_time_min) if when.local_time_min is not None else None
    return rows


def schedule(session: Session, b: Broadcast, actor: str, typed: str, when: When, *, default_zone: str,
             now: datetime | None = None) -> Count:
    """Confirm the count (typed, as for "send to everyone") and set the broadcast to go later."""
    now = now or utcnow()
    if b.status not in (BroadcastStatus.draft.value, BroadcastStatus.testing.value):
        raise BroadcastError(f"only a draft or a tested broadcast can be scheduled; this one is {b.status}")
    if b.status == BroadcastStatus.testing.value and b.test_done_at is None:
        raise BroadcastError("the test is still being sent; wait until it is done")
    if when.is_local and b.mode == "auto":
        raise BroadcastError("a broadcast at a local time rolls out by hand: send the test first, then schedule it")
    whole = broadcasts.confirm(session, b, typed)
    waves = _set_waves(session, b, when, default_zone, now)
    b.status = BroadcastStatus.scheduled.value
    broadcasts.audit(session, actor, "broadcast.schedule", b, when=when.describe(),
                     first=b.scheduled_at.isoformat(), waves=len(waves), **whole.to_json())
    return whole


def reschedule(session: Session, b: Broadcast, actor: str, when: When, *, default_zone: str,
               now: datetime | None = None) -> None:
    now = now or utcnow()
    if b.status != BroadcastStatus.scheduled.value:
        raise BroadcastError(f"only a scheduled broadcast can be rescheduled; this one is {b.status}")
    if when.is_local and b.mode == "auto":
        raise BroadcastError("a broadcast at a local time rolls out by hand: send the test first, then schedule it")
    before = when_of(b)
    _set_waves(session, b, when, default_zone, now)
    broadcasts.audit(session, actor, "broadcast.reschedule", b,
                     changes={"when": [before.describe() if before else None, when.describe()]})


def unschedule(session: Session, b: Broadcast, actor: str) -> None:
    """Back to a draft (or to its tested state): nothing is sent, the count will be confirmed again."""
    if b.status != BroadcastStatus.scheduled.value:
        raise BroadcastError(f"only a scheduled broadcast can be unscheduled; this one is {b.status}")
    session.execute(delete(BroadcastWave).where(BroadcastWave.broadcast_id == b.id))
    b.status = BroadcastStatus.testing.value if b.test_done_at else BroadcastStatus.draft.value
    b.scheduled_at = b.local_date = b.local_time = None
    broadcasts.audit(session, actor, "broadcast.unschedule", b)


def waves(session: Session, broadcast_id: int) -> list[BroadcastWave]:
    return list(session.scalars(select(BroadcastWave).where(BroadcastWave.broadcast_id == broadcast_id)
                                .order_by(BroadcastWave.send_at, BroadcastWave.zone)))


# ------------------------------------------------------------------ what the scheduler's tick does


def due_ids(session: Session, now: datetime) -> list[int]:
    """Scheduled broadcasts whose first wave has come."""
    return list(session.scalars(select(Broadcast.id).where(
        Broadcast.status == BroadcastStatus.scheduled.value, Broadcast.scheduled_at <= now).order_by(Broadcast.id)))


def start(session: Session, b: Broadcast, now: datetime) -> bool:
    """Start a scheduled broadcast whose time has come (the broadcast row locked by the caller).

    The selection is counted again: a scheduled send goes to the selection as it is when it starts
    (clients who opted out meanwhile are left out, new ones included); the audit keeps both numbers.
    """
    if b.status != BroadcastStatus.scheduled.value or b.scheduled_at is None or b.scheduled_at > now:
        return False
    confirmed = b.planned_messages
    whole, _ = broadcasts.counts(session, b)
    broadcasts.plan(session, b, whole)
    when = when_of(b)
    if when is not None and when.is_local:
        broadcasts.begin_stage(b, "all", now)
        b.status = BroadcastStatus.running.value
        b.expand_done = True  # nothing yet: the feeder starts a pass per wave as each zone's moment comes
    else:
        session.execute(BroadcastWave.__table__.update().where(BroadcastWave.broadcast_id == b.id)
                        .values(started_at=now))
        auto_test_first = b.mode == "auto" and b.test_done_at is None
        broadcasts.begin_stage(b, "test" if auto_test_first else "all", now)
        b.status = BroadcastStatus.testing.value if auto_test_first else BroadcastStatus.running.value
    broadcasts.audit(session, "system", "broadcast.scheduled_start", b, confirmed=confirmed, **whole.to_json())
    return True


def next_pass(session: Session, b: Broadcast, now: datetime) -> str:
    """For a broadcast at local times whose last pass is done: ``"started"`` a pass for the waves
    that have come, ``"waiting"`` for a later wave, or ``"done"`` (every wave expanded)."""
    if b.local_date is None:
        return "done"
    rows = waves(session, b.id)
    pending = [w for w in rows if w.started_at is None]
    if not pending:
        return "done"
    due = [w for w in pending if w.send_at <= now]
    if not due:
        return "waiting"
    for w in due:
        w.started_at = now
    own = sorted(w.zone for w in rows if w.zone != EVERYONE)
    b.zones = {"in": sorted(w.zone for w in due if w.zone != EVERYONE), "rest": any(w.zone == EVERYONE for w in due),
               "own": own}
    broadcasts.begin_stage(b, "all", now)
    b.expanded_at = now
    return "started"


def zone_condition(b: Broadcast) -> list[ColumnElement[bool]]:
    """The clients the current pass covers (every client when the broadcast is not at local times)."""
    z: dict[str, Any] | None = b.zones
    if not z or b.stage != "all":
        return []
    parts = []
    if z.get("in"):
        parts.append(Client.timezone.in_(z["in"]))
    if z.get("rest"):
        parts.append(or_(Client.timezone.is_(None), Client.timezone.not_in(z.get("own") or [""])))
    return [or_(*parts)] if parts else [and_(false())]
