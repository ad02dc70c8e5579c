"""End to end on the production shape: PostgreSQL, RabbitMQ, Redis, and the real
``vestnik relay`` and ``vestnik worker`` processes.  Telegram goes to the local
fake Bot API, email to a real SMTP server (aiosmtpd), both in this process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from tests.processes import ROOT, VESTNIK, running, vestnik, wait_until
from vestnik.outbox import emit
from vestnik.shared.models import Notification, OutboxEvent

pytestmark = pytest.mark.slow

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00", "reason": "болезнь"}


@pytest.fixture
def stack_env(stack):
    return stack.env, stack.factory


def test_committed_event_is_delivered_on_allowed_channels_only(stack_env, bot_api, smtp_server, tmp_path):
    env, factory = stack_env
    with running([vestnik("relay", "relay", env=env, log_dir=tmp_path),
                  vestnik("worker", "worker", "--processes", "1", "--threads", "4", env=env, log_dir=tmp_path)]):
        with factory() as s:  # a CRM transaction that rolls back: nothing may be sent
            emit(s, "lesson_cancelled", recipients=[1, 2, 3, 4], data={**LESSON, "reason": "ROLLED BACK"})
            s.rollback()
        with factory() as s:
            emit(s, "lesson_cancelled", recipients=[1, 2, 3, 4], data=LESSON, key="lesson:42")
            s.commit()
        wait_until(lambda: len(bot_api.messages()) >= 2 and len(smtp_server.messages()) >= 2, 60,
                   message="2 Telegram messages and 2 emails")
        wait_until(lambda: _count(factory, Notification.status == "sent") == 4, 30, message="4 rows sent")
    chats = sorted(m["chat_id"] for m in bot_api.messages())
    assert chats == ["1001", "1003"]  # Bob and Глеб switched Telegram off
    rcpts = sorted(m["to"] for m in smtp_server.messages())
    assert rcpts == ["anna@example.com", "bob@example.com"]  # Вера and Глеб switched email off
    everything = json.dumps([m["text"] for m in bot_api.messages()], ensure_ascii=False)
    assert "ROLLED BACK" not in everything and "25 ноября, 18:00" in everything  # Yekaterinburg time for Вера
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(OutboxEvent)) == 1
        assert s.scalars(select(OutboxEvent.status)).one() == "processed"


def test_cli_emit_prints_the_id_and_a_bad_event_exits_non_zero(stack_env, bot_api, tmp_path):
    env, factory = stack_env
    run = lambda *a: subprocess.run([*VESTNIK, *a], env={**__import__("os").environ, **env}, cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    ok = run("emit", "payment_success", "--recipients", "1",
             "--data", '{"amount": "4500", "currency": "RUB", "method": "sbp"}', "--key", "invoice:17")
    assert ok.returncode == 0, ok.stderr
    event_id = int(ok.stdout.strip())
    bad = run("emit", "payment_success", "--recipients", "1", "--data", '{"amount": "x", "currency": "RUB"}')
    assert bad.returncode != 0
    assert "data.amount: must be a non-negative amount" in bad.stderr and "data.method: required" in bad.stderr
    with running([vestnik("relay", "relay", env=env, log_dir=tmp_path),
                  vestnik("worker", "worker", "--processes", "1", "--threads", "2", env=env, log_dir=tmp_path)]):
        wait_until(lambda: any("Оплата получена" in m["text"] for m in bot_api.messages()), 60,
                   message="the payment message")
    with factory() as s:
        assert s.get(OutboxEvent, event_id).status == "processed"


def _count(factory, *where) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(Notification).where(*where))


def test_bad_config_fails_at_start_naming_the_variable(tmp_path):
    result = subprocess.run([*VESTNIK, "relay"], env={"PATH": "/usr/bin:/bin", "VESTNIK_MAX_ATTEMPTS": "lots",
                                                      "PYTHONPATH": str(ROOT)},
                            cwd=ROOT, capture_output=True, text=True, timeout=60, executable=sys.executable)
    assert result.returncode == 2
    assert "VESTNIK_MAX_ATTEMPTS" in result.stderr
