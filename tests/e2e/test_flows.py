"""The V1 time-based flows, end to end: PostgreSQL, RabbitMQ, Redis, and the real
``vestnik relay``, ``vestnik worker`` and ``vestnik scheduler`` processes.

Nobody waits days: a test "travels in time" by making a scheduled row due now
(``Stack.travel``), and the real scheduler releases it like any other.  The
CRM side is real too: events are emitted in CRM transactions, or arrive
through the signed webhooks of a payment provider, a booking system and
Telegram.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from tests.processes import wait_until
from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import Notification, NotificationStatus, OutboxEvent
from vestnik.webapp import create_app
from vestnik.webapp.signatures import sign

pytestmark = pytest.mark.slow

WEBHOOK_SECRET = "whsec-flows-0123456789"
VERA_CHAT = "1003"  # client 3: Telegram only, Russian, Yekaterinburg


def at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).replace(microsecond=0).isoformat()


def texts(bot_api, chat: str = VERA_CHAT) -> list[str]:
    return [m["text"] for m in bot_api.messages(chat)]


def with_text(bot_api, needle: str, chat: str = VERA_CHAT) -> list[dict]:
    return [m for m in bot_api.messages(chat) if needle in m["text"]]


def all_events_handled(stack) -> bool:
    with stack.factory() as s:
        return all(st == "processed" for st in s.scalars(select(OutboxEvent.status)))


def statuses(stack, key: str) -> dict[str, str]:
    """step -> status of one key's notifications on one channel (Telegram)."""
    return {n.step: n.status for n in stack.rows(Notification.key == key, Notification.channel == "telegram")}


def crm(stack, event_type: str, recipients: list[int], data: dict, key: str | None = None) -> None:
    """One CRM transaction that emits one event."""
    with stack.factory() as s:
        emit(s, event_type, recipients=recipients, data=data, key=key)
        s.commit()


@pytest.fixture
def web(stack):
    """The web app on the same database, for the inbound webhooks."""
    settings = Settings(database_url=stack.env["VESTNIK_DATABASE_URL"], secret_key=stack.env["VESTNIK_SECRET_KEY"],
                        webhook_secrets=WEBHOOK_SECRET)
    return create_app(settings, config={"TESTING": True}).test_client()


def post_signed(web, path: str, payload: dict):
    body = json.dumps(payload).encode()
    response = web.post(path, data=body, headers={"Content-Type": "application/json", **sign(WEBHOOK_SECRET, body)})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def test_lesson_reminders_follow_reschedule_and_cancel(stack, bot_api):
    starts = at(timedelta(days=3))
    with stack.run("relay", "worker", "scheduler"):
        crm(stack, "lesson_reminder", [3], {"lesson_title": "Робототехника", "starts_at": starts}, "lesson:42")
        crm(stack, "lesson_reminder", [3], {"lesson_title": "Шахматы", "starts_at": starts}, "lesson:43")
        # Its reminder (24 h before) is already in the past: it is not created, let alone sent.
        crm(stack, "lesson_reminder", [3], {"lesson_title": "Лепка", "starts_at": at(timedelta(hours=2))},
            "lesson:44")
        wait_until(lambda: all_events_handled(stack), 60, message="three lesson_reminder events handled")
        assert statuses(stack, "lesson:42") == {"reminder@-86400": "pending"}
        assert statuses(stack, "lesson:44") == {}
        [reminder] = stack.rows(Notification.key == "lesson:42", Notification.channel == "telegram")
        assert abs((reminder.send_at - datetime.fromisoformat(starts)).total_seconds() + 86400) < 1

        # Moved two days later: the old reminder is cancelled, a new one is 24 h before the new time.
        moved_to = at(timedelta(days=5))
        crm(stack, "lesson_rescheduled", [3], {"lesson_title": "Робототехника", "old_starts_at": starts,
                                               "starts_at": moved_to}, "lesson:42")
        # Cancelled: its reminder goes, the cancellation notice comes.
        crm(stack, "lesson_cancelled", [3], {"lesson_title": "Шахматы", "starts_at": starts}, "lesson:43")
        wait_until(lambda: with_text(bot_api, "Занятие перенесено") and with_text(bot_api, "Занятие отменено"), 60,
                   message="the 'moved' and 'cancelled' notices")
        wait_until(lambda: all_events_handled(stack), 30, message="events handled")
        rows = stack.rows(Notification.key == "lesson:42", Notification.step.like("reminder%"))
        assert sorted(n.status for n in rows) == ["canceled", "pending"]
        [new] = [n for n in rows if n.status == "pending"]
        assert abs((new.send_at - datetime.fromisoformat(moved_to)).total_seconds() + 86400) < 1
        assert statuses(stack, "lesson:43")["reminder@-86400"] == "canceled"

        # A day passes (time travel): the new reminder goes out, once.
        assert stack.travel(Notification.key == "lesson:42") == 1
        wait_until(lambda: with_text(bot_api, "Напоминаем"), 60, message="the reminder")
        wait_until(lambda: stack.count(Notification.key == "lesson:42", Notification.status == "sent") == 2, 30,
                   message="reminder recorded as sent")

    assert len(with_text(bot_api, "Напоминаем")) == 1
    assert "Робототехника" in with_text(bot_api, "Напоминаем")[0]["text"]
    assert not any("Шахматы" in t and "Напоминаем" in t for t in texts(bot_api))
    assert not any("Лепка" in t for t in texts(bot_api))


def test_a_cancel_right_after_a_reschedule_stays_cancelled_with_two_workers(stack, bot_api):
    """Same key, back-to-back commits, two worker processes: commit order wins."""
    starts = at(timedelta(days=3))
    with stack.run("relay", "worker", "scheduler", worker_processes=2):
        for n in range(5):
            key, lesson = f"lesson:{100 + n}", {"lesson_title": f"Группа {n}", "starts_at": starts}
            crm(stack, "lesson_reminder", [3], lesson, key)
            crm(stack, "lesson_rescheduled", [3], {**lesson, "old_starts_at": starts,
                                                   "starts_at": at(timedelta(days=4))}, key)
            crm(stack, "lesson_cancelled", [3], lesson, key)
        wait_until(lambda: all_events_handled(stack), 90, message="15 events handled")
        wait_until(lambda: len(with_text(bot_api, "Занятие отменено")) == 5, 60, message="five cancellations sent")
    for n in range(5):
        rows = stack.rows(Notification.key == f"lesson:{100 + n}", Notification.step.like("reminder%"))
        assert len(rows) == 2 and all(r.status == "canceled" for r in rows), [(r.step, r.status) for r in rows]
    assert stack.count(Notification.status == "pending") == 0


def test_after_scheduler_downtime_due_reminders_go_once_and_too_late_ones_are_cancelled(stack, bot_api):
    """The scheduler was down for a while: what fell due meanwhile and still makes sense goes out
    once; a reminder whose lesson already started is dropped with a reason."""
    for key, title in (("lesson:7", "Робототехника"), ("lesson:8", "Шахматы")):
        crm(stack, "lesson_reminder", [3], {"lesson_title": title, "starts_at": at(timedelta(days=3))}, key)
    with stack.run("relay", "worker"):
        wait_until(lambda: all_events_handled(stack), 60, message="events handled")
    past = datetime.now(UTC) - timedelta(minutes=5)
    with stack.factory() as s, s.begin():
        late, due = (s.scalars(select(Notification).where(Notification.key == key,
                                                          Notification.channel == "telegram")).one()
                     for key in ("lesson:7", "lesson:8"))
        late.send_at, late.expires_at = past - timedelta(hours=1), past  # due an hour ago; the lesson began
        due.send_at = past - timedelta(hours=1)  # due an hour ago; the lesson is still ahead
    with stack.run("scheduler", "worker"):  # the scheduler's ticks run as maintenance jobs on the workers
        wait_until(lambda: stack.count(Notification.key == "lesson:7", Notification.status == "canceled") == 1, 30,
                   message="the late reminder cancelled")
        wait_until(lambda: stack.count(Notification.key == "lesson:8", Notification.status == "sent") == 1, 30,
                   message="the due reminder sent")
    [n] = stack.rows(Notification.key == "lesson:7", Notification.channel == "telegram")
    assert "too late" in n.last_error
    assert [m["text"] for m in bot_api.messages()] == [with_text(bot_api, "Шахматы")[0]["text"]]  # once


def test_invoice_notice_now_reminders_later_all_cancelled_by_the_payment(stack, bot_api, smtp_server, web):
    invoice = {"invoice_number": "17", "amount": "4500", "currency": "RUB",
               "payment_url": "https://pay.school.test/i/17"}
    with stack.run("relay", "worker", "scheduler"):
        crm(stack, "invoice_created", [1], invoice, "invoice:17")  # Анна: Telegram and email
        wait_until(lambda: with_text(bot_api, "Счёт 17", "1001") and smtp_server.messages(), 60,
                   message="the invoice on both channels")
        assert 'href="https://pay.school.test/i/17"' in with_text(bot_api, "Счёт 17", "1001")[0]["text"]
        assert "https://pay.school.test/i/17" in smtp_server.messages()[0]["html"]
        wait_until(lambda: stack.count(Notification.key == "invoice:17", Notification.status == "pending") == 4, 30,
                   message="two reminders on two channels scheduled")

        # Three days later, the first reminder.
        assert stack.travel(Notification.key == "invoice:17", Notification.step == "reminder@259200") == 2
        wait_until(lambda: with_text(bot_api, "ещё не оплачен", "1001") and len(smtp_server.messages()) == 2, 60,
                   message="the first payment reminder on both channels")

        # The bank calls back: the payment cancels the second reminder.
        post_signed(web, "/webhooks/payments", {"event_id": "bank-1", "payment_id": "p-1", "invoice_id": "17",
                                                "client_id": 1, "amount": "4500.00", "currency": "RUB",
                                                "status": "succeeded"})
        wait_until(lambda: with_text(bot_api, "Оплата получена", "1001") and len(smtp_server.messages()) == 3, 60,
                   message="the payment confirmation")
        wait_until(lambda: all_events_handled(stack), 30, message="events handled")
    second = stack.rows(Notification.key == "invoice:17", Notification.step == "reminder@604800")
    assert [n.status for n in second] == ["canceled", "canceled"]
    assert stack.travel(Notification.key == "invoice:17") == 0  # nothing left to send, ever
    assert len(with_text(bot_api, "ещё не оплачен", "1001")) == 1


def test_onboarding_chain_stops_when_the_client_does_the_thing(stack, bot_api):
    with stack.run("relay", "worker", "scheduler"):
        crm(stack, "client_registered", [3], {"first_step_url": "https://school.test/start"}, "onboarding:3")
        wait_until(lambda: statuses(stack, "onboarding:3").get("day0") == "sent", 60, message="day 0 sent")
        assert with_text(bot_api, "добро пожаловать")
        assert statuses(stack, "onboarding:3") == {"day0": "sent", "day3@259200": "pending", "day7@604800": "pending"}
        assert stack.travel(Notification.key == "onboarding:3", Notification.step == "day3@259200") == 1
        wait_until(lambda: with_text(bot_api, "ещё не записались"), 60, message="day 3")
        crm(stack, "client_activated", [3], {}, "onboarding:3")  # booked a first lesson
        wait_until(lambda: statuses(stack, "onboarding:3").get("day7@604800") == "canceled", 60,
                   message="day 7 cancelled")
    assert stack.travel(Notification.key == "onboarding:3") == 0
    assert len(texts(bot_api)) == 2


def test_booking_confirmation_reminder_feedback_with_rating_and_cancellation(stack, bot_api, web):
    def booking(kind: str, booking_id: str, client_id: int, event_id: str) -> None:
        post_signed(web, "/webhooks/bookings", {"event_id": event_id, "type": kind, "booking": {
            "id": booking_id, "client_id": client_id, "service": "Массаж", "place": "Каб. 3",
            "starts_at": at(timedelta(days=2)), "ends_at": at(timedelta(days=2, hours=1))}})

    def press(chat: str, message: dict, data: str, update_id: int) -> dict:
        update = {"update_id": update_id, "callback_query": {
            "id": f"cb{update_id}", "from": {"id": int(chat), "is_bot": False, "first_name": "Client"},
            "chat_instance": "1", "data": data,
            "message": {"message_id": message["message_id"], "date": 0, "chat": {"id": int(chat), "type": "private"},
                        "text": message["text"]}}}
        response = web.post("/webhooks/telegram", json=update,
                            headers={"X-Telegram-Bot-Api-Secret-Token": Settings(
                                secret_key=stack.env["VESTNIK_SECRET_KEY"]).telegram_webhook_secret})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    with stack.run("relay", "worker", "scheduler"):
        booking("created", "b-1", 3, "bk-1")
        booking("created", "b-2", 1, "bk-2")
        wait_until(lambda: stack.count(Notification.key.in_(["booking:b-1", "booking:b-2"]),
                                       Notification.step == "notice", Notification.status == "sent") == 3, 60,
                   message="both confirmations sent (Анна has email too)")
        assert with_text(bot_api, "Вы записаны") and with_text(bot_api, "Вы записаны", "1001")
        assert statuses(stack, "booking:b-1") == {"notice": "sent", "reminder@-86400": "pending",
                                                   "feedback@7200": "pending"}
        # The visit happened: the feedback request comes with rating buttons 1-5.
        assert stack.travel(Notification.key.in_(["booking:b-1", "booking:b-2"]),
                            Notification.step.like("feedback%"), Notification.channel == "telegram") == 2
        wait_until(lambda: with_text(bot_api, "Оцените") and with_text(bot_api, "Оцените", "1001"), 60,
                   message="the feedback requests")
        [request] = with_text(bot_api, "Оцените")
        buttons = request["reply_markup"]["inline_keyboard"][0]
        assert [b["text"] for b in buttons] == ["1", "2", "3", "4", "5"]
        assert buttons[4]["callback_data"] == "rate:b-1:5"

        # Вера presses 5, twice (a second press changes nothing); Анна presses 2.
        assert press(VERA_CHAT, request, buttons[4]["callback_data"], 1)["method"] == "answerCallbackQuery"
        press(VERA_CHAT, request, buttons[4]["callback_data"], 2)
        [anna_request] = with_text(bot_api, "Оцените", "1001")
        press("1001", anna_request, anna_request["reply_markup"]["inline_keyboard"][0][1]["callback_data"], 3)
        wait_until(lambda: with_text(bot_api, "Будем рады отзыву") and with_text(bot_api, "оценку 2", "1001"), 60,
                   message="review links for 5, thanks for 2")

        # The booking system cancels b-1... (b-2 happened; its reminder is still due before it)
        booking("cancelled", "b-1", 3, "bk-3")
        wait_until(lambda: with_text(bot_api, "Запись отменена"), 60, message="the cancellation notice")
        wait_until(lambda: all_events_handled(stack), 30, message="events handled")

    assert statuses(stack, "booking:b-1")["reminder@-86400"] == "canceled"
    assert len(with_text(bot_api, "Будем рады отзыву")) == 1  # one answer per booking, however many presses
    with stack.factory() as s:
        ratings = sorted((e.recipients[0], e.data["rating"]) for e in s.scalars(
            select(OutboxEvent).where(OutboxEvent.event_type == "feedback_received")))
    assert ratings == [(1, 2), (3, 5)]  # the answers are recorded


class _Files(BaseHTTPRequestHandler):
    content = b"PK\x03\x04 fake xlsx bytes " * 100

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        self.send_header("Content-Length", str(len(self.content)))
        self.end_headers()
        self.wfile.write(self.content)

    def log_message(self, *args) -> None:
        pass


def test_job_finished_sends_statistics_with_the_result_file_attached(stack, bot_api):
    files = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{files.server_port}/reports/11.xlsx"
        with stack.run("relay", "worker"):
            crm(stack, "job_finished", [3], {"job_title": "Отчёт о посещаемости", "stats": {"строк": 1240, "сек": 42},
                                             "file_url": url, "file_name": "attendance-2026-11.xlsx"})
            wait_until(lambda: bot_api.messages(VERA_CHAT), 60, message="the report")
    finally:
        files.shutdown()
    [message] = bot_api.messages(VERA_CHAT)
    assert message["method"] == "sendDocument"
    assert message["document"]["name"] == "attendance-2026-11.xlsx"
    assert message["document"]["content"] == _Files.content
    assert "Отчёт о посещаемости" in message["text"] and "строк: 1240" in message["text"]
    assert stack.count(Notification.status == NotificationStatus.sent.value) == 1
