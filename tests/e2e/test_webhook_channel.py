"""The webhook channel end to end: real ``vestnik relay`` and ``vestnik worker`` processes on
PostgreSQL, RabbitMQ and Redis POST signed JSON to a local receiver; the client's switch keeps a
message off the channel, a 410 Gone marks the address unreachable, and the history holds it all."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from tests.e2e.runs import add_clients
from tests.fakes.webhook_receiver import receiving
from tests.processes import wait_until
from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import Client, Notification
from vestnik.shared.signatures import verify
from vestnik.workers.channels import build_channels

pytestmark = pytest.mark.slow

SECRET = "w" * 32
LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}


@pytest.fixture
def receiver():
    with receiving() as server:
        yield server


def test_a_rule_sends_to_the_webhook_signed_and_the_switch_and_410_are_honoured(bare_stack, receiver):
    stack = bare_stack
    stack.env.update({"VESTNIK_WEBHOOK_SIGNING_SECRET": SECRET, "VESTNIK_WEBHOOK_ALLOW_PRIVATE": "1"})
    build_channels(Settings(webhook_allow_private=True))  # this process's CSV check: the receiver is local
    add_clients(stack.factory,
                "id,name,webhook_url,webhook_enabled,locale,timezone\n"
                f"1,Анна,{receiver.url}/crm/1,true,ru,Europe/Moscow\n"
                f"2,Bob,{receiver.url}/crm/2,false,en,Europe/London\n"  # switched the webhook off
                f"3,Вера,{receiver.url}/410/gone,true,ru,Europe/Moscow\n")
    with stack.run("relay", "worker"):
        with stack.factory() as s:
            emit(s, "lesson_cancelled", recipients=[1, 2, 3], data=LESSON, key="lesson:7")
            s.commit()
        wait_until(lambda: stack.count(Notification.channel == "webhook",
                                       Notification.status.in_(["sent", "failed"])) == 2, 90,
                   message=lambda: f"two webhook rows decided; receiver got {receiver.requests()}")
    requests = receiver.requests()
    assert sorted(path for path, _, _ in requests) == ["/410/gone", "/crm/1"]
    path, headers, body = next(r for r in requests if r[0] == "/crm/1")
    verify(headers, body, [SECRET])  # the inbound webhooks' scheme, byte for byte
    sent = json.loads(body)
    [anna] = stack.rows(Notification.channel == "webhook", Notification.recipient_id == 1)
    assert anna.status == "sent" and anna.recipient_address == f"{receiver.url}/crm/1"
    assert sent["notification_id"] == anna.id and sent["client_id"] == 1 and sent["locale"] == "ru"
    assert sent["event_type"] == "lesson_cancelled" and "Робототехника" in sent["subject"]
    assert "<b>Робототехника</b>" in sent["html"] and "Робототехника" in sent["text"]
    assert not stack.rows(Notification.channel == "webhook", Notification.recipient_id == 2)  # switched off
    [vera] = stack.rows(Notification.channel == "webhook", Notification.recipient_id == 3)
    assert vera.status == "failed" and "HTTP 410" in (vera.last_error or "")
    with stack.factory() as s:
        assert "HTTP 410" in (s.get(Client, 3).unreachable_reason("webhook") or "")
        assert s.get(Client, 1).unreachable_reason("webhook") is None
        # The history keeps what was sent: the subject and the HTML body, like an email's.
        row = s.scalars(select(Notification).where(Notification.id == anna.id)).one()
        assert row.subject == sent["subject"] and row.body == sent["html"]
