"""Scheduled broadcasts at a local time and quiet hours, on the production stack (real relay, worker and
scheduler processes, RabbitMQ, Redis, PostgreSQL, the fake Bot API).  No sleeping: time travel moves a
wave's ``send_at`` (the moment the scheduler starts it) or the clock a client lives by (their zone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from tests.e2e.runs import add_clients
from tests.processes import wait_until
from vestnik.outbox import emit
from vestnik.shared.models import Broadcast, BroadcastWave, Client, Notification
from vestnik.workers import broadcast_schedule, broadcasts
from vestnik.workers.broadcast_schedule import When

pytestmark = pytest.mark.slow

ANNOUNCEMENT = {"title": "Концерт", "text": "В субботу концерт учеников"}


def _broadcast(stack, **kw) -> int:
    args = dict(name="Концерт", template_code="ANNOUNCEMENT", channels=["telegram"], category="service",
                targeting={}, initiator="admin:1", data=ANNOUNCEMENT)
    args.update(kw)
    with stack.factory() as s:
        b = broadcasts.create(s, **args)
        s.commit()
        return b.id


def _travel_wave(stack, bid: int, zone: str) -> None:
    """It is now that zone's moment: move the wave (and the broadcast's first moment) to now."""
    now = datetime.now(UTC)
    with stack.factory() as s, s.begin():
        s.execute(update(BroadcastWave).where(BroadcastWave.broadcast_id == bid, BroadcastWave.zone == zone)
                  .values(send_at=now))
        s.execute(update(Broadcast).where(Broadcast.id == bid, Broadcast.status == "scheduled")
                  .values(scheduled_at=now))


def test_a_broadcast_at_ten_local_reaches_vladivostok_and_kaliningrad_at_their_own_ten(bare_stack, bot_api):
    stack = bare_stack
    add_clients(stack.factory, "id,name,telegram_chat_id,timezone\n"
                               "1,Владивосток,601,Asia/Vladivostok\n2,Калининград,602,Europe/Kaliningrad\n")
    day = datetime.now(UTC).date() + timedelta(days=2)
    bid = _broadcast(stack)
    with stack.factory() as s:
        b = s.get(Broadcast, bid)
        broadcast_schedule.schedule(s, b, "admin:1", "2", When.local(day, "10:00"), default_zone="Europe/Moscow")
        s.commit()
        waves = {w.zone: w.send_at for w in broadcast_schedule.waves(s, bid)}
    for zone in ("Asia/Vladivostok", "Europe/Kaliningrad"):  # each zone's wave is its own 10:00
        assert waves[zone] == datetime.combine(day, datetime.min.time().replace(hour=10),
                                               tzinfo=ZoneInfo(zone)).astimezone(UTC)
    assert waves["Europe/Kaliningrad"] - waves["Asia/Vladivostok"] == timedelta(hours=8)

    with stack.run("worker", "scheduler"):
        _travel_wave(stack, bid, "Asia/Vladivostok")  # 10:00 in Vladivostok, 02:00 in Kaliningrad
        wait_until(lambda: len(bot_api.messages("601")) == 1, 60, message="Vladivostok's message at its 10:00")

        def vladivostok_pass_done() -> bool:
            with stack.factory() as s:
                b = s.get(Broadcast, bid)
                return b.expand_done and b.zones is not None and b.zones["in"] == ["Asia/Vladivostok"]

        wait_until(vladivostok_pass_done, 30, message="the Vladivostok wave expanded")
        assert bot_api.messages("602") == [] and stack.count(Notification.recipient_id == 2) == 0
        with stack.factory() as s:
            assert s.get(Broadcast, bid).status == "running"  # Kaliningrad's 10:00 is still to come

        _travel_wave(stack, bid, "Europe/Kaliningrad")
        wait_until(lambda: len(bot_api.messages("602")) == 1, 60, message="Kaliningrad's message at its 10:00")
        _travel_wave(stack, bid, "*")  # the default zone's wave (no client of ours lives by it)
        wait_until(lambda: stack.rows(Notification.broadcast_id == bid) and
                   _status(stack, bid) == "completed", 60, message="the broadcast completed")
    assert [len(bot_api.messages(c)) for c in ("601", "602")] == [1, 1]  # each once
    assert "Концерт" in bot_api.messages("601")[0]["text"]


def _status(stack, bid: int) -> str:
    with stack.factory() as s:
        return s.get(Broadcast, bid).status


def _zone_at(hour: int, now: datetime) -> str:
    """An Etc zone where it is now ``hour``:mm (Etc/GMT-3 is UTC+3; the offsets run from -12 to +14)."""
    offset = (hour - now.hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" + ("-" if offset > 0 else "+") + str(abs(offset)) if offset else "Etc/GMT"


def test_marketing_due_at_23_local_waits_for_the_end_of_quiet_hours_a_cancelled_lesson_does_not(bare_stack,
                                                                                                  bot_api):
    stack = bare_stack
    now = datetime.now(UTC)
    evening = _zone_at(23, now)
    add_clients(stack.factory, "id,name,telegram_chat_id,timezone,allow_marketing\n"
                               f"1,Полуночник,701,{evening},true\n")
    local = datetime.now(UTC).astimezone(ZoneInfo(evening))
    assert local.hour in (23, 0)  # the client's clock says 23:xx (or just past midnight on a slow run)
    marketing = _broadcast(stack, name="Скидки", category="marketing")
    with stack.factory() as s:
        broadcasts.send_all(s, s.get(Broadcast, marketing), "admin:1", "1")
        emit(s, "lesson_cancelled", recipients=[1],
             data={"lesson_title": "Шахматы", "starts_at": (now + timedelta(hours=10)).isoformat()})
        s.commit()

    with stack.run("relay", "worker", "scheduler"):
        wait_until(lambda: any("Шахматы" in m["text"] for m in bot_api.messages("701")), 60,
                   message="the cancelled lesson sent at once, quiet hours or not")

        def held() -> Notification | None:
            rows = stack.rows(Notification.broadcast_id == marketing, Notification.send_at.is_not(None))
            return rows[0] if rows and rows[0].last_error else None

        wait_until(held, 60, message="the marketing message held by quiet hours")
        row = held()
        end = row.send_at.astimezone(ZoneInfo(evening))
        assert (end.hour, end.minute) == (9, 0) and row.send_at > datetime.now(UTC) and row.status == "pending"
        assert [m for m in bot_api.messages("701") if "Скидки" in m["text"] or "Концерт" in m["text"]] == []

        # Time travel 1: the row comes due while the client's clock still says 23:xx (a retry would):
        # the send path gives it back to the morning rather than send it.
        with stack.factory() as s, s.begin():
            s.execute(update(Notification).where(Notification.id == row.id).values(send_at=datetime.now(UTC)))
        wait_until(lambda: stack.rows(Notification.id == row.id)[0].send_at > datetime.now(UTC) + timedelta(hours=1),
                   60, message="the send path held it again")
        assert len(bot_api.messages("701")) == 1

        # Time travel 2: morning for the client (their clock reads 09:xx) and the row is due: it goes.
        with stack.factory() as s, s.begin():
            s.execute(update(Client).where(Client.id == 1).values(timezone=_zone_at(9, datetime.now(UTC))))
            s.execute(update(Notification).where(Notification.id == row.id).values(send_at=datetime.now(UTC)))
        wait_until(lambda: len(bot_api.messages("701")) == 2, 60, message="the marketing message in the morning")
    with stack.factory() as s:
        assert s.scalars(select(Notification.status).where(Notification.id == row.id)).one() == "sent"
