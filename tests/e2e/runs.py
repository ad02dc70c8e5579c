"""Runs of events judged by the delivery ledger, shared by the chaos and outage tests.

``emit_run`` commits events (one per client, round robin, a marker unique to
each in the text) and returns what must arrive; ``settled`` says when every
event is handled and every notification final; ``assert_ledger`` compares
what the fakes received with what was committed.
"""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from tests.processes import vestnik
from vestnik.outbox import emit
from vestnik.shared.clients_import import import_clients
from vestnik.shared.fakes.ledger import Expected, check, received
from vestnik.shared.models import Notification, OutboxEvent

N = 60  # clients, each with Telegram and email: 2 messages per event
CHAOS_ENV = {
    "VESTNIK_TELEGRAM_CHAT_RATE_PER_S": "1000", "VESTNIK_TELEGRAM_RATE_PER_S": "1000",
    "VESTNIK_EMAIL_RATE_PER_MIN": "100000", "VESTNIK_EMAIL_RATE_PER_HOUR": "100000",
    "VESTNIK_EMAIL_RATE_PER_DAY": "100000",
    "VESTNIK_PROCESSING_LEASE_S": "3", "VESTNIK_REDRIVE_AFTER_S": "3", "VESTNIK_RELAY_BATCH_SIZE": "20",
}


def add_clients(factory, csv: str) -> None:
    """Import clients from CSV text (the `vestnik clients import` path) in one transaction."""
    with factory() as s:
        import_clients(s, io.StringIO(csv))
        s.commit()


@pytest.fixture
def chaos(stack):
    csv = "id,name,email,telegram_chat_id,locale,timezone\n" + "".join(
        f"{100 + i},C{i},c{i}@example.com,{7000 + i},ru,Europe/Moscow\n" for i in range(N))
    add_clients(stack.factory, csv)
    stack.env.update(CHAOS_ENV)
    return stack


def emit_run(stack, first: int, count: int, per_commit: int = 10) -> list[Expected]:
    """Events ``first .. first+count-1``, each to one client (round robin), in CRM transactions."""
    expected = []
    with stack.factory() as s:
        for n in range(first, first + count):
            client = n % N
            marker = f"Урок-{n:04d}"
            emit(s, "lesson_cancelled", recipients=[100 + client],
                 data={"lesson_title": marker, "starts_at": "2026-12-25T16:00:00+03:00"})
            expected += [Expected("telegram", str(7000 + client), marker),
                         Expected("email", f"c{client}@example.com", marker)]
            if n % per_commit == 0:
                s.commit()
        s.commit()
    return expected


def uncertain_rows(stack) -> list[tuple[str, str, str]]:
    with stack.factory() as s:
        rows = s.execute(select(Notification.channel, Notification.recipient_address, Notification.payload_json)
                         .where(Notification.delivery_uncertain.is_(True))).all()
    return [(channel, address, data["lesson_title"]) for channel, address, data in rows]


def settled(stack, events: int) -> bool:
    """Every event handled and every notification final (sent, or failed/canceled with a reason)."""
    with stack.factory() as s:
        handled = s.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.status == "processed"))
        open_rows = s.scalar(select(func.count()).select_from(Notification).where(
            Notification.status.in_(["pending", "processing"])))
    return handled == events and open_rows == 0


def assert_ledger(stack, bot_api, smtp_server, expected: list[Expected], *, max_uncertain: int = 0):
    report = check(expected, received(bot_api, smtp_server), uncertain_rows(stack))
    print(f"ledger: {report}")
    assert report.clean, report
    assert report.uncertain <= max_uncertain, report
    with stack.factory() as s:  # exactly one row per event and channel: no duplicate rows
        rows = s.execute(select(Notification.event_id, Notification.channel, func.count())
                         .group_by(Notification.event_id, Notification.channel)).all()
    assert len(rows) == len(expected) and all(n == 1 for *_, n in rows)


def worker(stack, name: str, **env: str):
    return vestnik(name, "worker", "--processes", "1", "--threads", "4", env={**stack.env, **env},
                   log_dir=stack.log_dir)
