"""The event message contract: what the relay publishes and the workers consume.

It belongs to the outbox, the producer: the relay builds these messages and
``workers/actors.py`` declares the actor that takes them.  The message carries
ids only; the worker reads the events from the database (the truth).
"""

from __future__ import annotations

import dramatiq

#: the queue the relay publishes to
EVENTS_QUEUE = "events"
#: the actor that handles an event
HANDLE_EVENT = "handle_event"


def event_message(event_id: int, key: str | None = None, queue_name: str = EVENTS_QUEUE) -> dramatiq.Message:
    """The message the relay publishes for one outbox event; the key rides in options."""
    return dramatiq.Message(
        queue_name=queue_name, actor_name=HANDLE_EVENT, args=(event_id,), kwargs={}, options={"key": key}
    )
