"""Poison messages: a message whose worker died on it again and again is failed, not run once more.

RabbitMQ's quorum queues count how often a message was handed out without
an ack (``x-delivery-count``, kept in the message's options by
``vestnik.shared.amqp``); at ``VESTNIK_BROKER_DELIVERY_LIMIT`` they would
dead-letter it to ``.XQ``, where nobody looks.  On that last delivery this
middleware marks what the message stands for failed, with the reason, so an
admin sees it, and skips the message (acked):

- ``deliver_notification(id)``: the notification, if still pending or processing;
- ``handle_event(id)``: the outbox event, if not processed yet;
- ``handle_events([ids])``: a batch is split, each event goes on in a message of
  its own (one of them is the poison; the others must not share its fate);
- anything else (pump wake-ups, maintenance, broadcasts): logged; the rows
  a pump held are the reaper's after their lease, and the next tick redoes the rest.
"""

from __future__ import annotations

import logging
from typing import Any

from dramatiq.middleware import Middleware, SkipMessage
from sqlalchemy import update

from vestnik.outbox.contract import HANDLE_EVENT, HANDLE_EVENTS, event_message
from vestnik.shared.models import OutboxEvent, OutboxStatus, utcnow
from vestnik.workers import notifications
from vestnik.workers.broker import DELIVER

log = logging.getLogger("vestnik.workers")


def poison_reason(count: int) -> str:
    return (f"poison message: handed to a worker {count + 1} times without finishing (the worker died on it "
            "each time); not run again")


class PoisonMessages(Middleware):
    def __init__(self, delivery_limit: int) -> None:
        self.delivery_limit = delivery_limit

    def before_process_message(self, broker: Any, message: Any) -> None:
        count = int(message.options.get("delivery_count") or 0)
        if count < self.delivery_limit:
            return
        reason = poison_reason(count)
        if message.actor_name == HANDLE_EVENTS and message.args and len(message.args[0]) > 1:
            for event_id in message.args[0]:
                broker.enqueue(event_message(int(event_id)))
            log.error("poison batch split into single events", extra={
                "action": "worker.poison_split", "message_id": message.message_id, "events": len(message.args[0])})
            raise SkipMessage(reason)
        target = self._fail(message.actor_name, message.args, reason)
        log.error("poison message failed instead of run", extra={
            "action": "worker.poison", "actor": message.actor_name, "message_id": message.message_id,
            "delivery_count": count, **target})
        raise SkipMessage(reason)

    def _fail(self, actor: str, args: tuple, reason: str) -> dict[str, Any]:
        from vestnik.workers.app import runtime

        if actor == HANDLE_EVENTS and args and len(args[0]) == 1:
            actor, args = HANDLE_EVENT, (args[0][0],)
        if actor not in (DELIVER, HANDLE_EVENT) or not args:
            return {}
        now = utcnow()
        with runtime().factory() as session, session.begin():
            if actor == DELIVER:
                notifications.fail_poisoned(session, int(args[0]), reason, now=now)
                return {"notification_id": int(args[0])}
            session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id == int(args[0]), OutboxEvent.status != OutboxStatus.processed.value)
                .values(status=OutboxStatus.failed.value, error=reason)
                .execution_options(synchronize_session=False))
            return {"event_id": int(args[0])}
