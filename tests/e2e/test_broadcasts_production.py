"""Broadcasts end to end on the production shape: PostgreSQL, RabbitMQ, Redis, and the real
``vestnik relay``, ``vestnik worker`` and ``vestnik scheduler`` processes; Telegram goes to the
fake Bot API and email to a real SMTP server, both in this process.

The admin's actions are the same functions the admin's pages call (``workers/broadcasts.py``),
committed to the database; the processes pick them up from there, as in production.
"""

from __future__ import annotations

import collections
import re

import pytest
from sqlalchemy import func, select

from tests.processes import running, vestnik, wait_until
from vestnik.outbox import emit
from vestnik.shared.models import AuditLog, Broadcast, Client, ClientGroup, Notification, QuietHours
from vestnik.workers import broadcasts

pytestmark = pytest.mark.slow

DATA = {"title": "Турнир", "text": "В субботу шахматный турнир"}
N = 40  # clients 1..40; group "Шахматы" = 1..30


@pytest.fixture
def stack(bare_stack, tmp_path):
    env = {
        **bare_stack.env,
        "VESTNIK_EMAIL_RATE_PER_MIN": "1000", "VESTNIK_EMAIL_RATE_PER_HOUR": "10000",
        "VESTNIK_EMAIL_RATE_PER_DAY": "100000",
        "VESTNIK_SECRET_KEY": "s" * 32,
        "VESTNIK_PUBLIC_URL": "https://vestnik.school.test",
        "VESTNIK_SCHEDULER_TICK_S": "1",
    }
    factory = bare_stack.factory
    with factory() as s:
        for i in range(1, N + 1):
            s.add(Client(
                id=i, name=f"Ученик {i}", email=f"p{i}@example.com", telegram_chat_id=str(7000 + i),
                # every third client opted in to marketing; 5 switched Telegram off; 6 has no email
                allow_marketing_notifications=i % 3 == 0, notifications_telegram_enabled=i != 5,
            ))
        s.flush()
        s.get(Client, 6).email = None
        s.add_all([ClientGroup(name="Шахматы", client_id=i) for i in range(1, 31)])
        # These tests are about preferences and counts, at any hour: marketing's quiet hours (tested in
        # test_quiet_hours_production.py) would hold the marketing broadcast when run in the evening.
        s.add(QuietHours(category="marketing", enabled=False, start_min=21 * 60, end_min=9 * 60))
        s.commit()
    procs = [vestnik("relay", "relay", env=env, log_dir=tmp_path),
             vestnik("worker", "worker", "--processes", "1", "--threads", "4", env=env, log_dir=tmp_path),
             vestnik("scheduler", "scheduler", env=env, log_dir=tmp_path)]
    with running(procs):
        yield env, factory, procs


def _new(factory, **kw) -> tuple[int, broadcasts.Count, broadcasts.Count]:
    args = dict(name="Турнир", template_code="ANNOUNCEMENT", channels=["telegram", "email"], category="service",
                targeting={"groups": ["Шахматы"]}, initiator="admin:1", data=DATA)
    args.update(kw)
    with factory() as s:
        b = broadcasts.create(s, **args)
        whole, test = broadcasts.counts(s, b)
        s.commit()
        return b.id, whole, test


def _do(factory, bid, action, *args):
    with factory() as s:
        b = broadcasts.lock(s, bid)
        result = getattr(broadcasts, action)(s, b, "admin:1", *args)
        s.commit()
        return result


def _broadcast(factory, bid) -> Broadcast:
    with factory() as s:
        return s.get(Broadcast, bid)


def _status(factory, bid) -> str:
    return _broadcast(factory, bid).status


def _rows(factory, bid) -> list[tuple[int, str, str]]:
    with factory() as s:
        return s.execute(select(Notification.recipient_id, Notification.channel, Notification.status)
                         .where(Notification.broadcast_id == bid)).all()


def _in_flight(factory, bid) -> int:
    """Rows handed to delivery and not finished (held rows have no send_at yet)."""
    with factory() as s:
        return s.scalar(select(func.count()).select_from(Notification).where(
            Notification.broadcast_id == bid, Notification.send_at.is_not(None),
            Notification.status.in_(("pending", "processing"))))


def _wait(predicate, timeout_s: float, what: str, procs, factory=None) -> None:
    """wait_until, with the processes' logs and the broadcasts' rows in the failure message."""
    try:
        wait_until(predicate, timeout_s, message=what)
    except AssertionError as exc:
        state = ""
        if factory is not None:
            with factory() as s:
                state = "\n".join(str({c.name: getattr(b, c.name) for c in Broadcast.__table__.columns})
                                  for b in s.scalars(select(Broadcast)))
        logs = "\n".join(f"--- {p.name}\n{p.output()[-4000:]}" for p in procs)
        raise AssertionError(f"{exc}\n{state}\n{logs}") from None


def test_service_and_marketing_respect_preferences_and_the_count_is_what_is_sent(stack, bot_api, smtp_server):
    env, factory, procs = stack
    service, s_count, _ = _new(factory)
    marketing, m_count, _ = _new(factory, name="Скидки", category="marketing", targeting={})
    # 30 in the group; Telegram: all but 5; email: all but 6.  Marketing: multiples of 3 among all 40.
    assert s_count.by_channel == {"telegram": 29, "email": 29} and s_count.clients == 30
    assert m_count.by_channel == {"telegram": 13, "email": 12} and m_count.clients == 13
    _do(factory, service, "send_all", str(s_count.messages))
    _do(factory, marketing, "send_all", str(m_count.messages))
    _wait(lambda: _status(factory, service) == "completed" and _status(factory, marketing) == "completed",
          90, "both broadcasts completed", procs, factory)

    for bid, shown in ((service, s_count), (marketing, m_count)):
        rows = _rows(factory, bid)
        assert len(rows) == shown.messages  # the count shown is the number of messages created
        assert collections.Counter(st for _, _, st in rows) == {"sent": shown.messages}
    chats = collections.Counter(m["chat_id"] for m in bot_api.messages())
    mails = collections.Counter(m["to"] for m in smtp_server.messages())
    assert sum(chats.values()) == 29 + 13 and sum(mails.values()) == 29 + 12
    assert chats[str(7000 + 5)] == 0 and mails["p6@example.com"] == 0  # switched off / no address
    assert chats[str(7000 + 31)] == 0 and chats[str(7000 + 33)] == 1  # 31 is outside the group; 33 opted in
    assert chats[str(7000 + 3)] == 2 and chats[str(7000 + 1)] == 1  # 3: service and marketing; 1: service only

    # Marketing carries the way out; service does not.
    marketing_mail = next(m for m in smtp_server.messages() if m["to"] == "p33@example.com")
    assert marketing_mail["message"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(r"<https://vestnik\.school\.test/unsubscribe/33\.[\w-]+>",
                        marketing_mail["message"]["List-Unsubscribe"].strip())  # folded: leading FWS
    service_mail = next(m for m in smtp_server.messages() if m["to"] == "p1@example.com")
    assert service_mail["message"]["List-Unsubscribe"] is None
    marketing_tg = [m for m in bot_api.messages(7033) if m["reply_markup"]]
    assert len(marketing_tg) == 1
    assert "/unsubscribe/33." in marketing_tg[0]["reply_markup"]["inline_keyboard"][0][0]["url"]
    with factory() as s:
        audit = s.scalars(select(AuditLog.action).where(AuditLog.object_id == str(service))
                          .order_by(AuditLog.id)).all()
    assert audit == ["broadcast.start", "broadcast.completed"]


def test_test_stage_then_full_send_reaches_each_client_exactly_once(stack, bot_api, smtp_server):
    env, factory, procs = stack
    bid, whole, test = _new(factory, test_size=5)
    assert test.clients == 5 and test.messages == 9  # client 5 has Telegram off
    _do(factory, bid, "send_test")
    _wait(lambda: _broadcast(factory, bid).test_done_at is not None, 60, "the test stage finished", procs, factory)
    assert sorted({m["chat_id"] for m in bot_api.messages()}) == [str(7000 + i) for i in (1, 2, 3, 4)]
    assert len(smtp_server.messages()) == 5 and _status(factory, bid) == "testing"  # waits for the admin

    with factory() as s:  # after the test stage, the admin confirms what will be added, not what was sent
        rest, _ = broadcasts.counts(s, s.get(Broadcast, bid))
    assert rest.messages == whole.messages - test.messages
    _do(factory, bid, "send_all", str(rest.messages))
    _wait(lambda: _status(factory, bid) == "completed", 90, "completed", procs, factory)
    chats = collections.Counter(m["chat_id"] for m in bot_api.messages())
    mails = collections.Counter(m["to"] for m in smtp_server.messages())
    assert set(chats.values()) == {1} and len(chats) == 29
    assert set(mails.values()) == {1} and len(mails) == 29
    assert len(_rows(factory, bid)) == whole.messages


def test_pause_holds_and_cancel_mid_run_stops_the_rest(bot_api, tmp_path, stack):
    env, factory, procs = stack
    for p in procs[1:]:  # a slow Telegram, so there is a middle to cancel in
        p.stop()
    slow = {**env, "VESTNIK_TELEGRAM_RATE_PER_S": "4"}
    with running([vestnik("worker-slow", "worker", "--processes", "1", "--threads", "4", env=slow,
                          log_dir=tmp_path),
                  vestnik("scheduler-slow", "scheduler", env=slow, log_dir=tmp_path)]) as slow_procs:
        bid, whole, _ = _new(factory, channels=["telegram"], targeting={})
        _do(factory, bid, "send_all", str(whole.messages))
        _wait(lambda: len(bot_api.messages()) >= 4, 60, "a few sent", slow_procs, factory)

        _do(factory, bid, "pause")  # what is in flight (about 2 s of the limit) drains; the rest is held
        wait_until(lambda: _in_flight(factory, bid) == 0, 30, message="in-flight messages drained")
        sent_at_pause = len(bot_api.messages())
        assert sent_at_pause == sum(1 for _, _, st in _rows(factory, bid) if st == "sent") < whole.messages
        _do(factory, bid, "resume")
        wait_until(lambda: len(bot_api.messages()) >= sent_at_pause + 4, 60, message="sending again")

        canceled = _do(factory, bid, "cancel")
        assert canceled > 0  # a middle to cancel in (how many depends on the machine's speed, not the rule)
        # Whatever was already claimed finishes; nothing else may go out.
        wait_until(lambda: all(st in ("sent", "failed", "canceled") for _, _, st in _rows(factory, bid)), 30,
                   message="every row final")
        sent_rows = sum(1 for _, _, st in _rows(factory, bid) if st == "sent")
        assert len(bot_api.messages()) == sent_rows < whole.messages
        assert sum(1 for _, _, st in _rows(factory, bid) if st == "canceled") == whole.messages - sent_rows
        assert _status(factory, bid) == "canceled"


def test_auto_mode_pauses_itself_when_the_test_stage_fails(stack, bot_api):
    env, factory, procs = stack
    bot_api.fail_ratio(0.5, "blocked")  # every second chat has blocked the bot
    bid, whole, test = _new(factory, channels=["telegram"], mode="auto", test_size=10, stage_wait_s=0,
                            max_failure_rate=0.2)
    _do(factory, bid, "send_all", str(whole.messages))
    _wait(lambda: _status(factory, bid) == "paused", 60, "paused itself", procs, factory)
    b = _broadcast(factory, bid)
    assert "after the test stage" in b.paused_reason and b.stage == "test"
    rows = _rows(factory, bid)
    assert len(rows) == test.messages  # the rest of the selection was never created, let alone sent
    assert collections.Counter(st for _, _, st in rows) == {"sent": 5, "failed": 5}
    with factory() as s:
        auto = s.scalars(select(AuditLog).where(AuditLog.action == "broadcast.auto_pause")).one()
    assert auto.actor == "system"

    bot_api.fail_ratio(0)  # fixed; the admin resumes: the rest goes out
    _do(factory, bid, "resume")
    _wait(lambda: _status(factory, bid) == "completed", 90, "completed", procs, factory)
    assert len(_rows(factory, bid)) == whole.messages


def test_crm_mass_broadcast_event_runs_as_a_system_broadcast(stack, bot_api, smtp_server):
    env, factory, procs = stack
    with factory() as s:  # e.g. all lessons of a class are cancelled for a day
        emit(s, "mass_broadcast", data={**DATA, "template_code": "ANNOUNCEMENT", "category": "service",
                                        "targeting": {"groups": ["Шахматы"]}, "channels": ["telegram"],
                                        "broadcast_name": "Занятия отменены"})
        s.commit()
    _wait(lambda: _completed_system(factory), 90, "system broadcast completed", procs, factory)
    b = _completed_system(factory)
    assert b.initiator == "system" and b.name == "Занятия отменены" and b.planned_messages == 29
    assert len(bot_api.messages()) == 29 and not smtp_server.messages()


def _completed_system(factory) -> Broadcast | None:
    with factory() as s:
        return s.scalars(select(Broadcast).where(Broadcast.status == "completed")).first()
