"""Vestnik's RabbitMQ queues as Vestnik declares them (shared/amqp.py), on a real RabbitMQ:
quorum queues with their delay and dead-letter queues, the same arguments from the relay and the
workers, named connections, and a poison message failed with its reason instead of run again."""

from __future__ import annotations

import json
import subprocess

import dramatiq
import pika
import pytest
from sqlalchemy import select

from tests.processes import wait_until
from vestnik.outbox.contract import EVENTS_QUEUE
from vestnik.outbox.relay import RabbitmqPublisher
from vestnik.shared.config import Settings
from vestnik.shared.models import Notification, OutboxEvent, utcnow
from vestnik.workers import app
from vestnik.workers.broker import DELIVER, build_broker, delivery_queue

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def rabbitmqctl_json(*args: str) -> list[dict]:
    out = subprocess.run(["rabbitmqctl", "-q", *args, "--formatter", "json"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return json.loads(out or "[]")


def queues(vhost: str) -> dict[str, dict]:
    return {q["name"]: q for q in rabbitmqctl_json("list_queues", "-p", vhost, "name", "type", "arguments")}


def argument(queue: dict, name: str):
    return next((value for key, _type, value in queue["arguments"] if key == name), None)


def test_every_queue_is_a_quorum_queue_declared_alike_by_the_relay_and_the_workers(amqp_vhost_url, db_url):
    vhost = amqp_vhost_url.rsplit("/", 1)[1]
    settings = Settings(database_url=db_url, broker_url=amqp_vhost_url)
    publisher = RabbitmqPublisher(amqp_vhost_url)  # declares the events queue first, as the relay does
    broker = app.setup(settings)  # the workers' declarations: every actor's queue, the same events queue
    try:
        for name in list(broker.get_declared_queues()):
            broker.declare_queue(name, ensure=True)  # a mismatch with the relay's would be refused (406)
        publisher.publish(1, None)
        found = queues(vhost)
    finally:
        publisher.close()
        broker.close()
        app.runtime().close()
    for base in (EVENTS_QUEUE, delivery_queue("telegram"), delivery_queue("email"), "maintenance"):
        for name in (base, f"{base}.DQ", f"{base}.XQ"):
            assert found[name]["type"] == "quorum", (name, found[name])
        for name in (base, f"{base}.DQ"):
            assert argument(found[name], "x-delivery-limit") == settings.broker_delivery_limit
            assert argument(found[name], "x-dead-letter-routing-key") == f"{base}.XQ"
    assert not [n for n in found if argument(found[n], "x-max-priority")]


def connection_names(vhost: str) -> list[str | None]:
    return [next((v for k, _t, v in c["client_properties"] if k == "connection_name"), None)
            for c in rabbitmqctl_json("list_connections", "vhost", "client_properties") if c["vhost"] == vhost]


def test_every_connection_is_named_in_the_management_ui(amqp_vhost_url, db_url):
    vhost = amqp_vhost_url.rsplit("/", 1)[1]
    publisher = RabbitmqPublisher(amqp_vhost_url)
    broker = build_broker(Settings(database_url=db_url, broker_url=amqp_vhost_url), component="scheduler")
    try:
        publisher.publish(1, None)
        broker.declare_queue("maintenance", ensure=True)
        names = wait_until(lambda: len(connection_names(vhost)) == 2 and connection_names(vhost), 30,
                           message="the relay's and the scheduler's connections")
    finally:
        publisher.close()
        broker.close()
    assert len(names) == 2 and all(names), names
    assert {n.split(" ")[0] for n in names} == {"vestnik-relay", "vestnik-scheduler"}


def test_a_poison_message_fails_its_notification_with_the_reason_instead_of_running_again(
        amqp_vhost_url, db_url, session_factory):
    limit = 2
    settings = Settings(database_url=db_url, broker_url=amqp_vhost_url, broker_delivery_limit=limit)
    now = utcnow()
    with session_factory() as s:
        row = Notification(recipient_id=None, channel="telegram", recipient_address="1001", payload_json={},
                           event_type="lesson_cancelled", template_code="LESSON_CANCELLED", send_at=now,
                           queued_at=now)
        event = OutboxEvent(event_type="lesson_cancelled", recipients=[1], data={}, status="published")
        s.add_all([row, event])
        s.commit()
        row_id, event_id = row.id, event.id
    broker = app.setup(settings)
    try:
        # a delivery message by row id (what an older version queued; the pump's wake-ups carry no row)
        broker.enqueue(dramatiq.Message(queue_name=delivery_queue("telegram"), actor_name=DELIVER, args=(row_id,),
                                        kwargs={}, options={"channel": "telegram"}))
        broker.enqueue(dramatiq.Message(queue_name=EVENTS_QUEUE, actor_name="handle_event", args=(event_id,),
                                        kwargs={}, options={}))
        # A worker that dies holding each message: taken and never acked, `limit` times.
        params = pika.URLParameters(amqp_vhost_url)
        for queue in (delivery_queue("telegram"), EVENTS_QUEUE):
            for _ in range(limit):
                connection = pika.BlockingConnection(params)
                method = wait_until(lambda c=connection, q=queue: c.channel().basic_get(q, auto_ack=False)[0], 30,
                                    message=f"the message on {queue}")
                assert method is not None
                connection.close()  # the "crash": RabbitMQ hands it out again, counting
        worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=200)
        worker.start()
        try:
            def settled():
                with session_factory() as s:
                    n = s.get(Notification, row_id)
                    e = s.get(OutboxEvent, event_id)
                    return n.status == "failed" and e.status == "failed" and (n, e)
            n, e = wait_until(settled, 60, message="the notification and the event failed as poison")
            wait_until(lambda: all(broker.get_queue_message_counts(q) == (0, 0, 0)
                                   for q in (delivery_queue("telegram"), EVENTS_QUEUE)), 30,
                       message="both messages acked")
        finally:
            worker.stop()
    finally:
        broker.close()
        app.runtime().close()
    assert "poison message" in n.last_error and f"{limit + 1} times" in n.last_error
    assert "poison message" in e.error
    with session_factory() as s:  # nothing was created for the event: it never ran
        assert s.scalars(select(Notification).where(Notification.event_id == event_id)).all() == []
