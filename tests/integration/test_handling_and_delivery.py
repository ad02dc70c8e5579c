"""handle_event and delivery against the real databases (SQLite and PostgreSQL).

The channel here is a scripted in-test channel: these tests are about what is
recorded; the real channels have their own tests against the fake Bot API and
a real SMTP server.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import Client, DeliveryAttempt, Notification, NotificationTemplate, OutboxEvent, utcnow
from vestnik.shared.seeds import install_default_templates
from vestnik.workers import notifications, scheduling
from vestnik.workers.channels import CHANNELS
from vestnik.workers.channels.base import Channel, DeliveryError
from vestnik.workers.delivery import Delivery
from vestnik.workers.handling import handle_event

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}


class ScriptedChannel(Channel):
    preference_field = "notifications_telegram_enabled"

    def __init__(self, name: str = "telegram", pref: str = "notifications_telegram_enabled") -> None:
        self.name = name
        self.preference_field = pref
        real = CHANNELS[name]  # the registered channel's form: a subject and an HTML part for email
        self.subject_mode, self.html_part, self.supports_buttons = real.subject_mode, real.html_part, \
            real.supports_buttons
        self.sent: list[tuple[str, str]] = []
        self.script: list[DeliveryError | None] = []

    def address_of(self, client):
        return client.telegram_chat_id if self.name == "telegram" else client.email

    def limit_key(self, address):
        return address

    def send(self, address, message):
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.sent.append((address, message.text))
        return f"ext-{len(self.sent)}"


@pytest.fixture
def setup_db(session_factory):
    with session_factory() as s:
        install_default_templates(s)
        s.add_all([
            Client(id=1, name="Анна", email="anna@example.com", telegram_chat_id="1001", locale="ru"),
            Client(id=2, name="Bob", email="bob@example.com", telegram_chat_id="1002", locale="en",
                   timezone="Europe/London", notifications_telegram_enabled=False),
        ])
        s.commit()
    return session_factory


@pytest.fixture
def channels():
    return {"telegram": ScriptedChannel(), "email": ScriptedChannel("email", "notifications_email_enabled")}


def emit_one(factory, event_type="lesson_cancelled", data=None, recipients=(1, 2), **kw) -> int:
    with factory() as s:
        event_id = emit(s, event_type, recipients=list(recipients), data=data or LESSON, **kw)
        s.commit()
    return event_id


def count(factory, model=Notification, *where) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_event_creates_one_row_per_allowed_channel(setup_db, channels):
    result = handle_event(setup_db, channels, emit_one(setup_db))
    assert result.status == "processed"
    with setup_db() as s:
        rows = s.execute(select(Notification.recipient_id, Notification.channel)).all()
        event = s.scalars(select(OutboxEvent)).one()
    assert sorted(rows) == [(1, "email"), (1, "telegram"), (2, "email")]  # Bob switched Telegram off
    assert event.status == "processed"


def test_redelivered_event_creates_nothing_twice(setup_db, channels):
    event_id = emit_one(setup_db)
    assert handle_event(setup_db, channels, event_id).status == "processed"
    assert handle_event(setup_db, channels, event_id).status == "duplicate"
    assert count(setup_db) == 3


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has one writer: no race
def test_concurrent_duplicates_create_one_set(setup_db, channels):
    event_id = emit_one(setup_db)
    results: list[str] = []
    barrier = threading.Barrier(4)

    def run():
        barrier.wait()
        results.append(handle_event(setup_db, channels, event_id).status)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["duplicate"] * 3 + ["processed"]
    assert count(setup_db) == 3


def test_bad_payload_marks_the_event_failed_with_its_reason(setup_db, channels):
    # Bypass emit's validation the way a CRM writing raw SQL could.
    with setup_db() as s:
        s.add(OutboxEvent(event_type="lesson_cancelled", recipients=[1], data={"lesson_title": "X"}))
        s.commit()
        bad_id = s.scalar(select(OutboxEvent.id))
    good_id = emit_one(setup_db)
    assert handle_event(setup_db, channels, bad_id).status == "failed"
    assert handle_event(setup_db, channels, good_id).status == "processed"  # the queue moves on
    with setup_db() as s:
        bad = s.get(OutboxEvent, bad_id)
    assert bad.status == "failed" and "data.starts_at: required" in bad.error


def deliver_all(factory, channels, settings=None):
    delivery = Delivery(factory, channels, settings or Settings())
    with factory() as s:
        ids = s.scalars(select(Notification.id).order_by(Notification.id)).all()
    return delivery, [delivery.deliver(i) for i in ids]


def test_delivery_sends_renders_in_the_clients_language_and_records(setup_db, channels):
    handle_event(setup_db, channels, emit_one(setup_db))
    _, results = deliver_all(setup_db, channels)
    assert [r.outcome for r in results] == ["sent"] * 3
    assert channels["telegram"].sent[0][0] == "1001" and "Занятие отменено" in channels["telegram"].sent[0][1]
    assert "25 ноября, 16:00" in channels["telegram"].sent[0][1]
    bob_mail = [t for a, t in channels["email"].sent if a == "bob@example.com"][0]
    assert "cancelled" in bob_mail and "25 November, 13:00" in bob_mail  # London time, English
    with setup_db() as s:
        n = s.scalars(select(Notification).where(Notification.channel == "email", Notification.recipient_id == 1)).one()
        attempts = s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.notification_id == n.id)).all()
    assert n.status == "sent" and n.sent_at and n.external_id and n.attempts == 1
    assert n.subject.startswith("Занятие «Робототехника»") and "<b>Робототехника</b>" in n.body
    assert [(a.attempt_no, a.outcome) for a in attempts] == [(1, "sent")]


def test_a_second_delivery_of_the_same_row_does_nothing(setup_db, channels):
    handle_event(setup_db, channels, emit_one(setup_db, recipients=[1]))
    delivery, _ = deliver_all(setup_db, channels)
    with setup_db() as s:
        first = s.scalar(select(Notification.id).order_by(Notification.id))
    assert delivery.deliver(first).outcome == "skipped"
    assert len(channels["telegram"].sent) == 1


def test_permanent_error_fails_fast_and_marks_the_address(setup_db, channels):
    channels["telegram"].script = [DeliveryError.permanent("Forbidden: bot was blocked by the user",
                                                           address_unreachable=True)]
    handle_event(setup_db, channels, emit_one(setup_db, recipients=[1]))
    deliver_all(setup_db, channels)
    with setup_db() as s:
        n = s.scalars(select(Notification).where(Notification.channel == "telegram")).one()
        client = s.get(Client, 1)
    assert n.status == "failed" and n.attempts == 1 and "blocked" in n.last_error
    assert client.telegram_unreachable_reason == "Forbidden: bot was blocked by the user"
    # The next event does not even create a Telegram row for that client.
    handle_event(setup_db, channels, emit_one(setup_db, recipients=[1]))
    assert count(setup_db, Notification, Notification.channel == "telegram") == 1


def test_transient_errors_retry_with_backoff_then_fail(setup_db, channels):
    channels["telegram"].script = [DeliveryError.transient("HTTP 502")] * 3
    handle_event(setup_db, channels, emit_one(setup_db, recipients=[1]))
    settings = Settings(max_attempts=3, retry_base_delay_s=0)
    delivery = Delivery(setup_db, channels, settings)
    with setup_db() as s:
        nid = s.scalar(select(Notification.id).where(Notification.channel == "telegram"))
    outcomes = [delivery.deliver(nid) for _ in range(4)]
    assert [o.outcome for o in outcomes] == ["transient", "transient", "transient", "skipped"]
    assert outcomes[0].requeue_in_s is not None and outcomes[2].requeue_in_s is None
    with setup_db() as s:
        n = s.get(Notification, nid)
    assert n.status == "failed" and n.attempts == 3 and n.last_error.startswith("gave up after 3 attempts")


def test_rate_limit_pauses_the_channel_and_is_not_an_attempt(setup_db, channels):
    paused: list[tuple[str, float]] = []
    channels["telegram"].script = [DeliveryError.rate_limited("Too Many Requests: retry after 3", 3)]
    handle_event(setup_db, channels, emit_one(setup_db, recipients=[1]))
    delivery = Delivery(setup_db, channels, Settings(), pause_channel=lambda c, s: paused.append((c, s)))
    with setup_db() as s:
        nid = s.scalar(select(Notification.id).where(Notification.channel == "telegram"))
    before = utcnow()
    result = delivery.deliver(nid)
    assert paused == [("telegram", 3)] and result.requeue_in_s == 3
    with setup_db() as s:
        n = s.get(Notification, nid)
    # The wait is counted from the answer, which came after `before` (however slow the machine).
    assert n.status == "pending" and n.attempts == 0 and n.send_at >= before + timedelta(seconds=3)


def test_uncertain_delivery_is_never_resent(setup_db, channels):
    channels["telegram"].script = [DeliveryError.uncertain("read timeout after the request was sent")]
    handle_event(setup_db, channels, emit_one(setup_db, recipients=[1]))
    delivery, _ = deliver_all(setup_db, channels)
    with setup_db() as s:
        n = s.scalars(select(Notification).where(Notification.channel == "telegram")).one()
    assert n.status == "failed" and n.delivery_uncertain and n.last_error.startswith("delivery uncertain")
    assert delivery.deliver(n.id).outcome == "skipped"


def test_a_template_error_fails_only_that_notification(setup_db, channels):
    with setup_db() as s:
        t = s.scalars(select(NotificationTemplate).where(
            NotificationTemplate.code == "LESSON_CANCELLED", NotificationTemplate.channel == "telegram",
            NotificationTemplate.locale == "ru")).one()
        t.body = "{{ lesson_title.__class__ }}"
        t.updated_by = "admin:1"
        s.commit()
    handle_event(setup_db, channels, emit_one(setup_db, recipients=[1]))
    _, results = deliver_all(setup_db, channels)
    assert sorted(r.outcome for r in results) == ["render_failed", "sent"]
    with setup_db() as s:
        failed = s.scalars(select(Notification).where(Notification.status == "failed")).one()
    assert failed.channel == "telegram" and "sandbox" in failed.last_error


def test_scheduled_rows_wait_for_send_at_and_are_released_once(setup_db, channels):
    send_at = utcnow() + timedelta(hours=1)
    handle_event(setup_db, channels, emit_one(setup_db, recipients=[1], send_at=send_at))
    delivery = Delivery(setup_db, channels, Settings())
    with setup_db() as s:
        ids = s.scalars(select(Notification.id)).all()
    assert all(delivery.deliver(i).outcome == "skipped" for i in ids)  # not due yet
    assert scheduling.release_due(setup_db, utcnow(), redrive_after_s=60) == []
    later = send_at + timedelta(seconds=1)
    released = scheduling.release_due(setup_db, later, redrive_after_s=60)
    assert sorted(r.id for r in released) == sorted(ids)
    assert scheduling.release_due(setup_db, later, redrive_after_s=60) == []  # once per window


def test_reaper_requeues_rows_that_never_reached_the_provider_and_flags_the_others(setup_db, channels):
    handle_event(setup_db, channels, emit_one(setup_db, recipients=[1]))
    with setup_db() as s:
        tg, mail = s.scalars(select(Notification.id).order_by(Notification.channel.desc())).all()
    with setup_db() as s, s.begin():  # both "crash" while processing
        assert len(notifications.claim(s, [tg, mail], now=utcnow(), lease_s=1)) == 2
        notifications.open_attempts(s, [mail], now=utcnow())  # the email worker had opened its provider call
    requeued, uncertain = scheduling.reap_stuck(setup_db, utcnow() + timedelta(seconds=5))
    assert (requeued, uncertain) == (1, 1)
    with setup_db() as s:
        assert s.get(Notification, tg).status == "pending"
        m = s.get(Notification, mail)
    assert m.status == "failed" and m.delivery_uncertain


def test_a_due_row_lost_between_commit_and_enqueue_is_handed_over_again(setup_db, channels):
    handle_event(setup_db, channels, emit_one(setup_db, recipients=[1]))  # rows are handed over (queued_at)
    now = utcnow()
    assert scheduling.release_due(setup_db, now, redrive_after_s=60) == []  # just handed over: not yet
    # ...but the message never arrived (the process died before enqueue, or the queue was purged):
    redriven = scheduling.release_due(setup_db, now + timedelta(seconds=61), redrive_after_s=60)
    with setup_db() as s:
        assert sorted(r.id for r in redriven) == sorted(s.scalars(select(Notification.id)))
    assert scheduling.release_due(setup_db, now + timedelta(seconds=62), redrive_after_s=60) == []


def test_clean_outbox_removes_only_old_processed_events(setup_db, channels):
    old, recent = emit_one(setup_db, recipients=[1]), emit_one(setup_db, recipients=[1])
    pending = emit_one(setup_db, recipients=[1])
    handle_event(setup_db, channels, old)
    handle_event(setup_db, channels, recent)
    with setup_db() as s, s.begin():
        s.get(OutboxEvent, old).processed_at = utcnow() - timedelta(days=8)
    assert scheduling.clean_outbox(setup_db, utcnow(), keep_days=7) == 1
    with setup_db() as s:
        assert sorted(s.scalars(select(OutboxEvent.id))) == sorted([recent, pending])
        assert s.scalar(select(func.count()).select_from(Notification)) == 4  # the history stays


def test_a_preference_changed_after_planning_wins_at_send_time(setup_db, channels):
    handle_event(setup_db, channels, emit_one(setup_db, recipients=[1]))  # Анна: Telegram and email planned
    with setup_db() as s, s.begin():
        s.get(Client, 1).notifications_telegram_enabled = False  # she switches Telegram off meanwhile
    _, results = deliver_all(setup_db, channels)
    assert sorted(r.outcome for r in results) == ["canceled", "sent"]
    assert channels["telegram"].sent == [] and len(channels["email"].sent) == 1
    with setup_db() as s:
        canceled = s.scalars(select(Notification).where(Notification.status == "canceled")).one()
    assert canceled.channel == "telegram" and canceled.last_error == "not sent: channel switched off by the client"


def test_service_notifications_switched_off_cancels_what_was_planned(setup_db, channels):
    handle_event(setup_db, channels, emit_one(setup_db, recipients=[1]))
    with setup_db() as s, s.begin():
        s.get(Client, 1).allow_service_notifications = False
    _, results = deliver_all(setup_db, channels)
    assert [r.outcome for r in results] == ["canceled", "canceled"]
    with setup_db() as s:
        assert {n.last_error for n in s.scalars(select(Notification))} == {
            "not sent: the client no longer accepts service notifications"}


def test_a_cancel_in_the_same_batch_cancels_what_the_batch_planned_before_it(setup_db, channels):
    """A batch inserts its events' rows together; an event that cancels a key still sees the rows
    that earlier events of the same batch planned for that key (invariant 6)."""
    from vestnik.workers.handling import handle_events

    later = (utcnow() + timedelta(days=3)).isoformat()
    scheduled = emit_one(setup_db, "lesson_reminder", data={"lesson_title": "Шахматы", "starts_at": later},
                         key="lesson:77")
    other = emit_one(setup_db, "lesson_reminder", data={"lesson_title": "Робототехника", "starts_at": later})
    cancelled = emit_one(setup_db, "lesson_cancelled", data={"lesson_title": "Шахматы", "starts_at": later},
                         key="lesson:77")
    results = {r.event_id: r for r in handle_events(setup_db, channels, [scheduled, other, cancelled])}
    assert {r.status for r in results.values()} == {"processed"}
    assert results[scheduled].created and results[other].created  # each event's rows, reported as its own
    assert results[cancelled].canceled == sum(
        1 for _, _, _, send_at in results[scheduled].created if send_at is not None and send_at > utcnow())
    with setup_db() as s:
        by_event = dict(s.execute(select(Notification.event_id, func.count()).where(
            Notification.status == "pending", Notification.send_at > utcnow()).group_by(Notification.event_id)).all())
    assert scheduled not in by_event and by_event.get(other)  # the key's reminders went; the other lesson's stay


def test_an_admins_change_of_an_override_or_a_chat_takes_effect_for_the_next_batch(setup_db, channels):
    """Handling keeps the overrides and the chats' subscriptions between batches (on PostgreSQL) and
    checks their version at each batch: any change is what the next event sees."""
    from vestnik.shared.models import Chat, RuleOverride
    from vestnik.workers import chats

    def addresses() -> list[str | None]:
        return sorted(address for _, _, address, _ in
                      handle_event(setup_db, channels, emit_one(setup_db, recipients=[1])).created)

    assert addresses() == ["1001", "anna@example.com"]
    with setup_db() as s, s.begin():
        s.add(RuleOverride(event_type="lesson_cancelled", enabled=False, offsets={}, attachments={}))
    assert addresses() == []
    with setup_db() as s, s.begin():
        s.get(RuleOverride, "lesson_cancelled").enabled = True  # the same rows, one changed
    assert addresses() == ["1001", "anna@example.com"]
    with setup_db() as s, s.begin():
        s.add(Chat(channel="telegram", address="-100777", title="Staff", kind="supergroup", can_post=True,
                   subscriptions={"lesson_cancelled": "LESSON_CANCELLED"}))
    assert addresses() == ["-100777", "1001", "anna@example.com"]
    with setup_db() as s, s.begin():
        chats.mark_unreachable(s, "telegram", "-100777", "the bot was removed")  # a Core UPDATE
    assert addresses() == ["1001", "anna@example.com"]
    with setup_db() as s, s.begin():
        chat = s.scalars(select(Chat)).one()
        chat.unreachable_reason, chat.subscriptions = None, {"lesson_reminder": "LESSON_REMINDER"}
    assert addresses() == ["1001", "anna@example.com"]
    with setup_db() as s, s.begin():
        s.scalars(select(Chat)).one().subscriptions = {"lesson_cancelled": "LESSON_CANCELLED"}
    assert addresses() == ["-100777", "1001", "anna@example.com"]


def test_a_small_and_a_big_insert_write_the_same_rows(setup_db):
    """add_pending sends a small batch as one JSON document and a big one as arrays (PostgreSQL): the
    rows come out the same, to the microsecond and to SQL NULL, and a repeat inserts nothing."""
    from sqlalchemy import text

    event_id = emit_one(setup_db, recipients=[1])
    at = utcnow().replace(microsecond=123456)
    payload = {"lesson_title": "Шахматы «Юниор»", "n": 3, "price": 12.5, "tags": ["a", None], "ok": True}

    def rows(prefix: str, size: int) -> list[dict]:
        return [dict(recipient_id=1, channel="email", recipient_address="anna@example.com",
                     event_type="lesson_cancelled", template_code="LESSON_CANCELLED",
                     payload_json=payload if i % 2 else {}, category="service", locale="ru",
                     send_at=at + timedelta(seconds=i), expires_at=None if i % 2 else at + timedelta(days=1),
                     step=f"{prefix}-{i}", key="lesson:1" if i % 2 else None, event_id=event_id, initiator="crm",
                     queued_at=None if i % 2 else at, attempts=0, delivery_uncertain=False, created_at=at,
                     updated_at=at) for i in range(size)]

    small, big = rows("small", 2), rows("big", notifications.SMALL_INSERT_ROWS + 1)
    with setup_db() as s, s.begin():
        for batch in (small, big):
            added = notifications.add_pending(s, batch)
            assert [(a.channel, a.address, a.send_at, a.event_id) for a in added] == [
                ("email", "anna@example.com", r["send_at"], event_id) for r in batch]
    with setup_db() as s:
        stored = {n.step: n for n in s.scalars(select(Notification))}
        nulls = {r[0]: tuple(r[1:]) for r in s.execute(text(
            "SELECT step, queued_at IS NULL, expires_at IS NULL, key IS NULL FROM notifications"))}
    for r in small + big:
        assert {name: getattr(stored[r["step"]], name) for name in r} == r
        assert stored[r["step"]].status == "pending"
    for i in range(len(small)):
        assert nulls[f"small-{i}"] == nulls[f"big-{i}"]
    with setup_db() as s, s.begin():  # the same event, client, channel and step: skipped
        assert notifications.add_pending(s, small) == [] and notifications.add_pending(s, big) == []
