"""An event whose handling fails on every try is marked failed, visible, and can be retried.

Issue 13, point 5: such an event used to end in the broker's dead-letter queue while its outbox
row stayed ``published``, with no error and a failed-events metric of 0.  The embedded stack runs
the real relay, in-process broker, actors and retries; a bug in handling is simulated for one
event type (it raises on every try), then "fixed" before the admin's retry.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.processes import wait_until
from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import Client, Notification, OutboxEvent
from vestnik.shared.seeds import install_default_templates
from vestnik.workers import handling
from vestnik.workers.embedded import EmbeddedStack

LESSON = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}


@pytest.fixture
def stack(sqlite_url, bot_api, monkeypatch):
    settings = Settings(database_url=sqlite_url, broker_url="stub://", telegram_token=bot_api.token,
                        telegram_api_base=bot_api.url, event_max_retries=1, relay_poll_interval_s=0.1)
    real_plan = handling.plan_event

    def broken_for_cancellations(event_type, *args, **kwargs):
        if event_type == "lesson_cancelled":
            raise RuntimeError("a bug in the rules for lesson_cancelled")
        return real_plan(event_type, *args, **kwargs)

    monkeypatch.setattr(handling, "plan_event", broken_for_cancellations)
    with EmbeddedStack(settings, worker_threads=2) as running:
        with running.runtime.factory() as s:
            install_default_templates(s)
            s.add(Client(id=1, name="Анна", telegram_chat_id="1001", locale="ru"))
            s.commit()
        yield running, monkeypatch, real_plan


def test_an_event_failing_on_every_try_is_marked_failed_counted_and_retried_after_a_fix(stack, bot_api):
    running, monkeypatch, real_plan = stack
    factory = running.runtime.factory
    with factory() as s:
        bad = emit(s, "lesson_cancelled", recipients=[1], data=LESSON)
        good = emit(s, "lesson_rescheduled", recipients=[1], data={
            "lesson_title": "Шахматы", "old_starts_at": "2026-11-25T16:00:00+03:00",
            "starts_at": "2026-11-26T17:30:00+03:00"})
        s.commit()

    def status(event_id):
        with factory() as s:
            return s.get(OutboxEvent, event_id)

    # Two tries (event_max_retries=1, a second apart), then failed with the reason; the other event of
    # its batch is not held up by it.
    wait_until(lambda: status(bad).status == "failed", 30, message=lambda: f"event {bad}: {status(bad).status}")
    assert "RuntimeError: a bug in the rules for lesson_cancelled" in status(bad).error
    assert "handling failed 2 times" in status(bad).error
    wait_until(lambda: status(good).status == "processed", 30, message="the other event handled")
    # Counted where an operator looks: the metrics and the dashboard's query.
    from vestnik.webapp.metrics import database_metrics

    with factory() as s:
        outbox = next(m for m in database_metrics(s) if m.name == "vestnik_outbox_events")
        failed_metric = {sample.labels["status"]: sample.value for sample in outbox.samples}["failed"]
        assert failed_metric == 1
        assert s.scalar(select(func.count()).select_from(Notification).where(Notification.event_id == bad)) == 0

    # The bug is fixed; the admin's retry (Events > Retry failed) hands it to the relay again.
    monkeypatch.setattr(handling, "plan_event", real_plan)
    with factory() as s:
        assert handling.retry_failed(s, [bad, good]) == 1  # only the failed one changes
        s.commit()
    wait_until(lambda: status(bad).status == "processed", 30, message="the retried event handled")
    wait_until(lambda: any("Робототехника" in m["text"] for m in bot_api.messages(chat_id="1001")
                           if "отмен" in m["text"].lower()), 30, message="its message sent")
