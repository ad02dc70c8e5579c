"""Progress a person reads: per channel sent / failed / waiting, the rate, and the estimated end.

The end is the latest of what holds the rest back, per channel, and the broadcast ends when its
slowest channel does:

- **every limit of the channel** (``workers/limits.py``: Telegram's 30 a second; email's per
  minute, hour and *day*): a rule of ``limit`` sends per ``window`` takes what its current
  window still has room for now and ``limit`` more each window after, so 2,000 emails at 480 a
  day take four days and more, whatever the rate of the first minutes says;
- **the measured rate** (the samples the feeder keeps, ``broadcasting._sample``), which includes
  what the limits do not know: provider latency, retries, a loaded worker;
- **waits already decided**: rows held until a client's quiet hours end, waves of a broadcast at
  a local time that have not started.

The sends already made inside a long window (the day's quota used by this morning's other mail)
are counted from the attempt rows, as the limiter seeds itself; they are assumed to have been made
just now, so the estimate errs late, never early.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from vestnik.shared.config import Settings
from vestnik.shared.models import (
    Broadcast,
    BroadcastWave,
    DeliveryAttempt,
    Notification,
    NotificationStatus,
    utcnow,
)
from vestnik.workers.limits import Rule, rules_for

#: windows this long or longer count the sends already made in them (shorter ones refill in seconds)
COUNTED_WINDOW_S = 60.0
#: the attempt counts per channel and window are read at most this often per process
USED_TTL_S = 15.0

FINAL = ("completed", "canceled")


def rule_text(r: Rule) -> str:
    names = {1.0: "a second", 60.0: "a minute", 3600.0: "an hour", 86400.0: "a day"}
    per = names.get(r.window_s) or f"per {r.window_s:g} s"
    return f"{r.limit:,} {per}"


def limit_seconds(remaining: int, rules: Sequence[Rule], used: Mapping[str, int] | None = None
                  ) -> tuple[float, Rule | None]:
    """The least time the rules allow for ``remaining`` sends, and the rule that decides it."""
    used = used or {}
    best, decisive = 0.0, None
    for r in rules:
        room_now = max(0, r.limit - int(used.get(r.name, 0)))
        if remaining <= room_now:
            # The first window's sends go as fast as the shorter rules allow (counted by them).
            seconds = 0.0 if r.window_s >= COUNTED_WINDOW_S else remaining * r.window_s / r.limit
        else:
            seconds = math.ceil((remaining - room_now) / r.limit) * r.window_s
        if seconds > best:
            best, decisive = seconds, r
    return best, decisive


def measured_rate(samples: Iterable[Any] | None, channel: str) -> float | None:
    """Finished messages per second of a channel over the samples kept (None: not enough yet)."""
    points = [(float(t), int((counts or {}).get(channel, 0))) for t, counts in (samples or [])]
    if len(points) < 2 or points[-1][0] - points[0][0] <= 0:
        return None
    (t0, n0), (t1, n1) = points[0], points[-1]
    return max(0.0, (n1 - n0) / (t1 - t0))


_used_cache: dict[tuple[str, str, float], tuple[float, int]] = {}
_used_lock = threading.Lock()


def used_in_window(session: Session, channel: str, window_s: float, now: datetime) -> int:
    """Provider calls of a channel within the last ``window_s`` (cached for a few seconds, per
    database: tests, and tools, open several in one process)."""
    key = (str(session.get_bind().url), channel, window_s)
    with _used_lock:
        hit = _used_cache.get(key)
        if hit and time.monotonic() - hit[0] < USED_TTL_S:
            return hit[1]
    n = session.scalar(select(func.count()).select_from(DeliveryAttempt)
                       .join(Notification, Notification.id == DeliveryAttempt.notification_id)
                       .where(Notification.channel == channel,
                              DeliveryAttempt.started_at >= now - timedelta(seconds=window_s))) or 0
    with _used_lock:
        _used_cache[key] = (time.monotonic(), int(n))
    return int(n)


@dataclass(frozen=True)
class ChannelProgress:
    channel: str
    sent: int
    failed: int
    waiting: int  # pending, processing, and not made yet (the rest of the confirmed count)
    canceled: int
    resent: int  # failed rows a resend round has made again (counted in ``failed``, not lost)
    rate_per_min: float | None
    seconds_left: float | None
    decided_by: str  # what the end depends on, in words

    @property
    def total(self) -> int:
        return self.sent + self.failed + self.waiting + self.canceled


@dataclass(frozen=True)
class Estimate:
    channels: list[ChannelProgress] = field(default_factory=list)
    seconds_left: float | None = None
    ends_at: datetime | None = None
    decided_by: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "channels": [{**c.__dict__, "total": c.total, "ends_in": duration_text(c.seconds_left)}
                         for c in self.channels],
            "seconds_left": self.seconds_left,
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "ends_in": duration_text(self.seconds_left),
            "decided_by": self.decided_by,
        }


def duration_text(seconds: float | None) -> str:
    """"about 4 days 3 h", "about 12 min", "under a minute"; "" when unknown."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return "under a minute"
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"about {days} day{'s' if days != 1 else ''} {hours} h"
    if hours:
        return f"about {hours} h {minutes} min"
    return f"about {minutes} min"


def estimate(session: Session, b: Broadcast, settings: Settings, now: datetime | None = None) -> Estimate:
    """Per channel numbers and the estimated end of a broadcast, from its rows and the limits."""
    now = now or utcnow()
    rows = session.execute(
        select(Notification.channel, Notification.status, func.count(), func.max(Notification.send_at))
        .where(Notification.broadcast_id == b.id).group_by(Notification.channel, Notification.status)).all()
    counts: dict[str, dict[str, int]] = {}
    hold_until: dict[str, datetime] = {}
    for ch, st, n, latest in rows:
        bucket = "waiting" if st in (NotificationStatus.pending.value, NotificationStatus.processing.value) else st
        counts.setdefault(ch, {}).setdefault(bucket, 0)
        counts[ch][bucket] += int(n)
        if bucket == "waiting" and latest is not None and latest > now:
            hold_until[ch] = max(latest, hold_until.get(ch, latest))
    later = aliased(Notification)
    resent = dict(session.execute(
        select(Notification.channel, func.count())
        .where(Notification.broadcast_id == b.id, Notification.status == NotificationStatus.failed.value,
               exists().where(later.broadcast_id == b.id, later.channel == Notification.channel,
                              later.recipient_id == Notification.recipient_id, later.id > Notification.id))
        .group_by(Notification.channel)).all())
    later_wave = session.scalar(select(func.max(BroadcastWave.send_at)).where(
        BroadcastWave.broadcast_id == b.id, BroadcastWave.started_at.is_(None)))
    rules = rules_for(settings)
    active = b.status not in FINAL
    out: list[ChannelProgress] = []
    for ch in list(b.channels) + sorted(set(counts) - set(b.channels)):
        c = counts.get(ch, {})
        made = sum(c.values())
        planned = int((b.planned_by_channel or {}).get(ch, 0))
        not_made = max(0, planned - made) if active else 0
        waiting = c.get("waiting", 0) + not_made
        rate = measured_rate(b.samples, ch)
        seconds: float | None = None
        why = ""
        if active and waiting:
            overall = rules[ch].overall if ch in rules else ()
            used = {r.name: used_in_window(session, ch, r.window_s, now)
                    for r in overall if r.window_s >= COUNTED_WINDOW_S}
            seconds, rule = limit_seconds(waiting, overall, used)
            why = f"{ch} limit {rule_text(rule)}" if rule else ""
            if rate:
                by_rate = waiting / rate
                if by_rate > seconds:
                    seconds, why = by_rate, f"{ch} measured rate"
            for wait_end, what in ((hold_until.get(ch), "quiet hours"), (later_wave, "a later time zone's wave")):
                if wait_end is not None and (wait_end - now).total_seconds() > seconds:
                    seconds, why = (wait_end - now).total_seconds(), f"{ch}: {what}"
        out.append(ChannelProgress(ch, c.get("sent", 0), c.get("failed", 0), waiting, c.get("canceled", 0),
                                   int(resent.get(ch, 0)), round(rate * 60, 1) if rate is not None else None,
                                   seconds, why))
    if b.status == "scheduled" and b.scheduled_at is not None and b.scheduled_at > now:
        # Nothing goes before the first moment: the limits' time counts from then.
        start = (b.scheduled_at - now).total_seconds()
        out = [dataclasses.replace(c, seconds_left=c.seconds_left + start)
               if c.seconds_left is not None and not c.decided_by.endswith("wave") else c for c in out]
    known = [c for c in out if c.seconds_left is not None]
    if not known:
        return Estimate(out)
    slowest = max(known, key=lambda c: c.seconds_left or 0.0)
    left = slowest.seconds_left or 0.0
    return Estimate(out, left, now + timedelta(seconds=left), slowest.decided_by)
