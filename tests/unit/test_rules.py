"""plan_event: the specification's channel rules, table-tested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vestnik.shared.models import Client
from vestnik.workers.channels.base import Channel
from vestnik.workers.rules import Override, effective_rule, plan_event, schedule

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class FakeChannel(Channel):
    def __init__(self, name: str, field: str, attr: str) -> None:
        self.name = name
        self.preference_field = field
        self.attr = attr

    def address_of(self, client):
        return getattr(client, self.attr)

    def send(self, address, message):  # pragma: no cover - not used
        raise NotImplementedError


CHANNELS = {
    "telegram": FakeChannel("telegram", "notifications_telegram_enabled", "telegram_chat_id"),
    "email": FakeChannel("email", "notifications_email_enabled", "email"),
}
LESSON = {"lesson_title": "X", "starts_at": "2026-11-25T16:00:00+03:00"}


def client(cid: int, **kw) -> Client:
    base = dict(id=cid, name=f"c{cid}", email=f"c{cid}@example.com", telegram_chat_id=str(1000 + cid),
                locale="ru", timezone="Europe/Moscow", notifications_telegram_enabled=True,
                notifications_email_enabled=True, allow_service_notifications=True,
                allow_marketing_notifications=False, telegram_unreachable_reason=None,
                email_unreachable_reason=None)
    base.update(kw)
    return Client(**base)


def channels_for(planned, rid):
    return sorted(p.channel for p in planned if p.recipient_id == rid)


def test_both_channels_when_both_allowed():
    planned, _ = plan_event("lesson_cancelled", LESSON, [1], [client(1)], CHANNELS, now=NOW)
    assert channels_for(planned, 1) == ["email", "telegram"]
    assert {p.template_code for p in planned} == {"LESSON_CANCELLED"}


def test_a_switched_off_channel_creates_nothing():
    clients = [client(1, notifications_email_enabled=False), client(2, notifications_telegram_enabled=False)]
    planned, skipped = plan_event("lesson_cancelled", LESSON, [1, 2], clients, CHANNELS, now=NOW)
    assert channels_for(planned, 1) == ["telegram"]
    assert channels_for(planned, 2) == ["email"]
    assert any(s.reason == "channel switched off by the client" for s in skipped)


def test_service_preference_off_blocks_service_events():
    planned, skipped = plan_event("lesson_cancelled", LESSON, [1], [client(1, allow_service_notifications=False)],
                                  CHANNELS, now=NOW)
    assert planned == [] and "service" in skipped[0].reason


def test_marketing_reaches_only_clients_who_allow_it():
    data = {"template_code": "ANNOUNCEMENT", "category": "marketing", "title": "t", "text": "x"}
    clients = [client(1), client(2, allow_marketing_notifications=True)]
    planned, _ = plan_event("mass_broadcast", data, [1, 2], clients, CHANNELS, now=NOW)
    assert {p.recipient_id for p in planned} == {2}
    assert {p.category for p in planned} == {"marketing"}


def test_missing_address_unreachable_and_unknown_clients_are_skipped_with_reasons():
    clients = [client(1, email=None), client(2, telegram_unreachable_reason="bot was blocked by the user")]
    planned, skipped = plan_event("lesson_cancelled", LESSON, [1, 2, 3, 1], clients, CHANNELS, now=NOW)
    assert channels_for(planned, 1) == ["telegram"]
    assert channels_for(planned, 2) == ["email"]
    reasons = {(s.recipient_id, s.reason.split(":")[0]) for s in skipped}
    assert (1, "no address") in reasons and (2, "address unreachable") in reasons and (3, "unknown client") in reasons
    assert len(planned) == 2  # the duplicate recipient id 1 is planned once


def test_reminders_are_planned_before_the_lesson_and_several_offsets_allowed():
    data = {"lesson_title": "X", "starts_at": "2026-11-25T16:00:00+03:00"}
    planned, _ = plan_event("lesson_reminder", data, [1], [client(1)], CHANNELS, now=NOW)
    assert {(p.channel, p.send_at.isoformat(), p.step) for p in planned} == {
        ("telegram", "2026-11-24T16:00:00+03:00", "reminder@-86400"),
        ("email", "2026-11-24T16:00:00+03:00", "reminder@-86400")}
    assert all(p.expires_at.isoformat() == "2026-11-25T16:00:00+03:00" for p in planned)
    override = Override(offsets_s={"reminder": [-86400, -7200]})
    planned, _ = plan_event("lesson_reminder", data, [1], [client(1)], {"telegram": CHANNELS["telegram"]},
                            now=NOW, override=override)
    assert sorted(p.step for p in planned) == ["reminder@-7200", "reminder@-86400"]


def test_a_reminder_whose_time_has_passed_is_not_planned():
    data = {"lesson_title": "X", "starts_at": (NOW + timedelta(hours=3)).isoformat()}
    planned, skipped = plan_event("lesson_reminder", data, [1], [client(1)], CHANNELS, now=NOW)
    assert planned == [] and "has passed" in skipped[0].reason


def test_a_switched_off_event_type_plans_nothing():
    timed, skipped = schedule(effective_rule("lesson_cancelled", Override(enabled=False)), LESSON, NOW, None)
    assert timed == [] and "switched off" in skipped[0].reason


def test_onboarding_is_a_chain_of_three():
    data = {"first_step_url": "https://x.example/start"}
    planned, _ = plan_event("client_registered", data, [1], [client(1)], {"email": CHANNELS["email"]}, now=NOW)
    assert [(p.template_code, p.send_at) for p in planned] == [
        ("ONBOARDING_1", None), ("ONBOARDING_2", NOW + timedelta(days=3)), ("ONBOARDING_3", NOW + timedelta(days=7))]


def test_low_balance_notice_only_when_crossing_below_the_threshold():
    def plan(prev, bal):
        data = {"balance": bal, "previous_balance": prev, "threshold": "500", "currency": "RUB"}
        return plan_event("balance_changed", data, [1], [client(1)], {"email": CHANNELS["email"]}, now=NOW)[0]
    assert len(plan("600", "400")) == 1
    assert plan("400", "300") == []  # already below: no second notice
    assert plan("900", "600") == []


def test_feedback_rating_picks_the_answer_and_booking_feedback_has_buttons():
    five = plan_event("feedback_received", {"booking_id": "B1", "rating": 5}, [1], [client(1)], CHANNELS, now=NOW)[0]
    three = plan_event("feedback_received", {"booking_id": "B1", "rating": 3}, [1], [client(1)], CHANNELS, now=NOW)[0]
    assert [p.template_code for p in five] == ["FEEDBACK_REVIEW_LINKS"]
    assert [p.template_code for p in three] == ["FEEDBACK_THANKS"]
    booking = {"booking_id": "B1", "service": "Trial", "starts_at": "2026-11-27T11:00:00+03:00",
               "ends_at": "2026-11-27T12:00:00+03:00"}
    planned, _ = plan_event("booking_created", booking, [1], [client(1)], CHANNELS, now=NOW)
    feedback = [p for p in planned if p.template_code == "BOOKING_FEEDBACK"]
    assert [(p.channel, p.send_at.isoformat()) for p in feedback] == [("telegram", "2026-11-27T14:00:00+03:00")]


def test_planning_asks_the_quiet_hours_rule():
    from vestnik.workers.quiet_hours import DEFAULT_POLICIES, Policy, Window

    night = client(1, timezone="Asia/Vladivostok")  # NOW is 22:00 there
    invoice = {"invoice_number": "INV-1", "amount": "10.00", "currency": "RUB", "due_date": "2026-12-01"}
    strict = {**DEFAULT_POLICIES, "service": Policy(True, Window(21 * 60, 9 * 60))}
    planned, _ = plan_event("invoice_created", invoice, [1], [night], CHANNELS, now=NOW, quiet=strict)
    notices = [p for p in planned if p.step == "notice"]
    assert notices and all(p.send_at == datetime(2026, 11, 20, 23, 0, tzinfo=UTC) for p in notices)  # 09:00 local
    # a cancelled lesson is news that cannot wait; and service has no quiet hours by default
    planned, _ = plan_event("lesson_cancelled", LESSON, [1], [night], CHANNELS, now=NOW, quiet=strict)
    assert planned and all(p.send_at is None for p in planned)
    planned, _ = plan_event("invoice_created", invoice, [1], [night], CHANNELS, now=NOW, quiet=DEFAULT_POLICIES)
    assert all(p.send_at is None for p in planned if p.step == "notice")
