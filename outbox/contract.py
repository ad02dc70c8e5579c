"""The event message contract: what the relay publishes and the workers consume.

It belongs to the outbox, the producer: the relay builds these messages and
``workers/actors.py`` declares the actors that take them.  A message carries
ids only; the worker reads the events from the database (the truth).

The relay publishes **one message per claimed batch** (:func:`events_message`:
``handle_events(event_ids)``), so a batch costs one publish and one confirm.
``handle_event(event_id)`` is the single-event form: a worker still takes it
(messages of an older relay), and splits a failing batch into it.
"""

from __future__ import annotations

from collections.abc import Sequence

import dramatiq

#: the queue the relay publishes to
EVENTS_QUEUE = "events"
#: the actor that handles a batch of events, and the one that handles one
HANDLE_EVENTS = "handle_events"
HANDLE_EVENT = "handle_event"


def events_message(event_ids: Sequence[int], queue_name: str = EVENTS_QUEUE) -> dramatiq.Message:
    """The message the relay publishes for one claimed batch of outbox events."""
    return dramatiq.Message(queue_name=queue_name, actor_name=HANDLE_EVENTS, args=(list(event_ids),), kwargs={},
                            options={})


def event_message(event_id: int, key: str | None = None, queue_name: str = EVENTS_QUEUE) -> dramatiq.Message:
    """One event on its own (the worker's split of a failing batch); the key rides in options."""
    return dramatiq.Message(
        queue_name=queue_name, actor_name=HANDLE_EVENT, args=(event_id,), kwargs={}, options={"key": key}
    )
