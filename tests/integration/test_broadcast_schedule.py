"""Scheduled broadcasts and quiet hours at hand-over, on both backends (the functions directly, a moved clock)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from vestnik.shared.models import AuditLog, Broadcast, Client, Notification, QuietHours
from vestnik.shared.seeds import install_default_templates
from vestnik.workers import broadcast_schedule, broadcasts
from vestnik.workers.broadcast_schedule import When
from vestnik.workers.broadcasting import expand_batch, feed, start_scheduled

PACE = {"telegram": 30.0, "email": 1.0}
ZONES = {1: "Asia/Vladivostok", 2: "Europe/Kaliningrad", 3: "Europe/Moscow", 4: "Europe/Moscow"}
DAY = date(2031, 3, 5)  # far enough ahead that "now" is before every wave


@pytest.fixture
def clients(session_factory):
    with session_factory() as s:
        install_default_templates(s)
        for i, zone in ZONES.items():
            s.add(Client(id=i, name=f"C{i}", telegram_chat_id=str(500 + i), timezone=zone,
                         allow_marketing_notifications=True))
        s.commit()
    return session_factory


def _draft(s, **kw) -> Broadcast:
    args = dict(name="Concert", template_code="ANNOUNCEMENT", channels=["telegram"], category="service",
                targeting={}, initiator="admin:1", data={"title": "Концерт", "text": "В субботу"})
    args.update(kw)
    b = broadcasts.create(s, **args)
    s.flush()
    return b


def _run(factory, bid: int, now: datetime) -> None:
    """What the scheduler's ticks and the expansion actor do, at a moved clock."""
    start_scheduled(factory, now)
    for _ in range(20):
        fed = feed(factory, bid, PACE, now=now, default_zone="Europe/Moscow")
        while not expand_batch(factory, bid, now=now).done:
            pass
        if not fed.expand and not fed.handed:
            break


def _recipients(factory, bid: int) -> dict[int, datetime | None]:
    with factory() as s:
        return {r.recipient_id: r.send_at for r in s.scalars(select(Notification).where(
            Notification.broadcast_id == bid))}


def test_at_ten_local_each_zone_is_reached_from_its_own_ten_oclock(clients):
    with clients() as s:
        b = _draft(s)
        broadcast_schedule.schedule(s, b, "admin:1", "4", When.local(DAY, "10:00"), default_zone="Europe/Moscow")
        s.commit()
        bid = b.id
        waves = {w.zone: w.send_at for w in broadcast_schedule.waves(s, bid)}
    ten = {z: datetime(2031, 3, 5, 10, tzinfo=ZoneInfo(z)).astimezone(UTC) for z in set(ZONES.values())}
    assert waves == {**ten, "*": ten["Europe/Moscow"]}
    with clients() as s:
        assert s.get(Broadcast, bid).scheduled_at == ten["Asia/Vladivostok"]  # 00:00 UTC, the first wave

    _run(clients, bid, ten["Asia/Vladivostok"] - timedelta(seconds=1))
    assert _recipients(clients, bid) == {}  # not yet anyone's 10:00
    _run(clients, bid, ten["Asia/Vladivostok"])
    assert set(_recipients(clients, bid)) == {1}  # Vladivostok only
    _run(clients, bid, ten["Europe/Moscow"] - timedelta(minutes=1))
    assert set(_recipients(clients, bid)) == {1}
    _run(clients, bid, ten["Europe/Moscow"])
    assert set(_recipients(clients, bid)) == {1, 3, 4}  # Moscow's 10:00 comes an hour before Kaliningrad's
    _run(clients, bid, ten["Europe/Kaliningrad"] - timedelta(minutes=1))
    assert set(_recipients(clients, bid)) == {1, 3, 4}
    _run(clients, bid, ten["Europe/Kaliningrad"])
    got = _recipients(clients, bid)
    assert set(got) == {1, 2, 3, 4}
    for cid, handed_at in got.items():  # each handed over at its own zone's 10:00 (the moved clock)
        assert handed_at == ten[ZONES[cid]]
    with clients() as s:
        actions = s.scalars(select(AuditLog.action).where(AuditLog.object_id == str(bid)).order_by(AuditLog.id))
        assert list(actions)[:2] == ["broadcast.schedule", "broadcast.scheduled_start"]


def test_a_client_whose_zone_has_no_wave_goes_with_the_default_zone(clients):
    with clients() as s:
        b = _draft(s)
        broadcast_schedule.schedule(s, b, "admin:1", "4", When.local(DAY, "10:00"), default_zone="Europe/Moscow")
        s.get(Client, 2).timezone = "America/Anchorage"  # moved after the schedule was made
        s.commit()
        bid = b.id
    moscow_ten = datetime(2031, 3, 5, 7, tzinfo=UTC)
    _run(clients, bid, moscow_ten)
    assert set(_recipients(clients, bid)) == {1, 2, 3, 4}


def test_at_a_moment_then_reschedule_edit_and_unschedule_until_it_starts(clients):
    at = datetime(2031, 3, 5, 9, 30, tzinfo=UTC)
    with clients() as s:
        b = _draft(s)
        with pytest.raises(broadcasts.BroadcastError, match="type the number of messages, 4"):
            broadcast_schedule.schedule(s, b, "admin:1", "3", When.at(at), default_zone="UTC")
        with pytest.raises(broadcasts.BroadcastError, match="has passed"):
            broadcast_schedule.schedule(s, b, "admin:1", "4", When.at(datetime(2020, 1, 1, tzinfo=UTC)),
                                        default_zone="UTC")
        broadcast_schedule.schedule(s, b, "admin:1", "4", When.at(at), default_zone="UTC")
        assert b.status == "scheduled" and b.planned_messages == 4
        broadcast_schedule.reschedule(s, b, "admin:1", When.at(at + timedelta(hours=2)), default_zone="UTC")
        broadcasts.update_text(s, b, "admin:1", name="Concert!", data={"title": "Концерт", "text": "В воскресенье"})
        s.commit()
        bid = b.id
    _run(clients, bid, at + timedelta(hours=1))
    assert _recipients(clients, bid) == {}  # the old moment no longer counts
    with clients() as s:
        b = s.get(Broadcast, bid)
        broadcast_schedule.unschedule(s, b, "admin:1")
        assert b.status == "draft" and b.scheduled_at is None
        broadcast_schedule.schedule(s, b, "admin:1", "4", When.at(at + timedelta(hours=2)), default_zone="UTC")
        s.commit()
    _run(clients, bid, at + timedelta(hours=2))
    assert set(_recipients(clients, bid)) == {1, 2, 3, 4}
    with clients() as s:
        b = s.get(Broadcast, bid)
        assert b.status == "running" and b.data["text"] == "В воскресенье"
        with pytest.raises(broadcasts.BroadcastError, match="only a draft or a scheduled broadcast can be edited"):
            broadcasts.update_text(s, b, "admin:1", name="x", data={})
        with pytest.raises(broadcasts.BroadcastError, match="only a scheduled broadcast can be rescheduled"):
            broadcast_schedule.reschedule(s, b, "admin:1", When.at(at + timedelta(days=1)), default_zone="UTC")
        actions = list(s.scalars(select(AuditLog.action).where(AuditLog.object_id == str(bid)).order_by(AuditLog.id)))
    assert actions == ["broadcast.schedule", "broadcast.reschedule", "broadcast.edit", "broadcast.unschedule",
                       "broadcast.schedule", "broadcast.scheduled_start"]


def test_a_scheduled_broadcast_can_be_canceled_and_never_starts(clients):
    at = datetime(2031, 3, 5, 9, 30, tzinfo=UTC)
    with clients() as s:
        b = _draft(s)
        broadcast_schedule.schedule(s, b, "admin:1", "4", When.at(at), default_zone="UTC")
        broadcasts.cancel(s, b, "admin:1")
        s.commit()
        bid = b.id
    assert start_scheduled(clients, at + timedelta(days=1)) == []
    assert _recipients(clients, bid) == {}


def test_local_times_past_for_some_zone_and_automatic_rollout_are_refused(clients):
    with clients() as s:
        b = _draft(s)
        today = datetime.now(UTC).date()
        with pytest.raises(broadcasts.BroadcastError, match="already past 00:01"):
            broadcast_schedule.schedule(s, b, "admin:1", "4", When.local(today, "00:01"), default_zone="UTC")
        auto = _draft(s, mode="auto")
        with pytest.raises(broadcasts.BroadcastError, match="rolls out by hand"):
            broadcast_schedule.schedule(s, auto, "admin:1", "4", When.local(DAY, "10:00"), default_zone="UTC")
        with pytest.raises(broadcasts.BroadcastError, match="a time such as 21:00"):
            When.local(DAY, "25:00")


def test_marketing_handed_over_inside_quiet_hours_waits_for_their_end_service_does_not(clients):
    night = datetime(2031, 3, 5, 14, tzinfo=UTC)  # 00:00 in Vladivostok, 15:00/16:00/17:00 elsewhere
    with clients() as s:
        s.get(Client, 3).quiet_hours_start_min, s.get(Client, 3).quiet_hours_end_min = 16 * 60, 18 * 60
        s.get(Client, 4).quiet_hours_start_min = s.get(Client, 4).quiet_hours_end_min = 0  # any hour suits them
        marketing = _draft(s, category="marketing")
        service = _draft(s, name="Service")
        for b in (marketing, service):
            broadcasts.send_all(s, b, "admin:1", "4")
        s.commit()
        ids = marketing.id, service.id
    for bid in ids:
        while not expand_batch(clients, bid, now=night).done:
            pass
        feed(clients, bid, PACE, now=night, default_zone="Europe/Moscow")
    held = _recipients(clients, ids[0])
    assert held[1] == datetime(2031, 3, 5, 23, tzinfo=UTC)  # 09:00 in Vladivostok
    assert held[2] == night  # 16:00 in Kaliningrad: outside the default window
    assert held[3] == datetime(2031, 3, 5, 15, tzinfo=UTC)  # 17:00 Moscow, inside their own 16-18: until 18:00
    assert held[4] == night
    assert set(_recipients(clients, ids[1]).values()) == {night}  # service: nobody waits
    with clients() as s:
        row = s.scalars(select(Notification).where(Notification.broadcast_id == ids[0],
                                                   Notification.recipient_id == 1)).one()
        assert row.status == "pending" and row.queued_at is None and "quiet hours" in row.last_error
        # an admin who switches marketing's quiet hours off: the next hand-over holds nobody
        s.add(QuietHours(category="marketing", enabled=False, start_min=21 * 60, end_min=9 * 60))
        s.commit()
    with clients() as s:
        again = _draft(s, category="marketing", name="Again")
        broadcasts.send_all(s, again, "admin:1", "4")
        s.commit()
        bid = again.id
    while not expand_batch(clients, bid, now=night).done:
        pass
    feed(clients, bid, PACE, now=night, default_zone="Europe/Moscow")
    assert set(_recipients(clients, bid).values()) == {night}
