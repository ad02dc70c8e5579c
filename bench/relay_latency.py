"""Relay latency: from the CRM's commit to the broker's confirm.

PostgreSQL + RabbitMQ; the relay runs as in production (LISTEN/NOTIFY wake-up,
publisher confirms).  Events are committed one by one at a steady rate; the
latency of each is ``published_at - created_at`` (both written on this host).
With ``--backlog N``, N events are committed first and the relay, started
after them, is timed until it has published them all: its throughput.
Run: ``.venv/bin/python -m bench.relay_latency --events 2000 --rate 200 --backlog 20000``.
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
import uuid

from sqlalchemy import select

from bench.common import Report, run, scratch_database
from vestnik.outbox import emit
from vestnik.outbox.relay import Relay, build_publisher
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import OutboxEvent

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
DATA = {"lesson_title": "X", "starts_at": "2026-11-25T16:00:00+03:00"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200, help="events per second")
    parser.add_argument("--backlog", type=int, default=0, help="events waiting before the relay starts")
    args = parser.parse_args()
    vhost = f"bench_{uuid.uuid4().hex[:6]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True)
    try:
        with scratch_database() as url:
            engine = make_engine(url)
            factory = make_session_factory(engine)
            stop = threading.Event()
            backlog_ids = 0
            for start in range(0, args.backlog, 1000):
                with factory() as s:
                    for _ in range(min(1000, args.backlog - start)):
                        backlog_ids = max(backlog_ids, emit(s, "lesson_cancelled", recipients=[1], data=DATA) or 0)
                    s.commit()
            publisher = build_publisher(Settings(database_url=url, broker_url=AMQP + vhost))
            relay = Relay(engine, publisher, batch_size=100, poll_interval_s=1.0, stop_event=stop)
            thread = threading.Thread(target=relay.run_forever, daemon=True)
            started = time.perf_counter()
            thread.start()
            backlog_s = None
            if args.backlog:
                deadline = time.monotonic() + 60 + args.backlog / 100  # even at 100 events/s it would end
                while relay.published_total < args.backlog and time.monotonic() < deadline:
                    time.sleep(0.01)
                if relay.published_total >= args.backlog:
                    backlog_s = time.perf_counter() - started
            time.sleep(0.5)
            interval = 1.0 / args.rate
            t0 = time.perf_counter()
            for i in range(args.events):
                with factory() as s:
                    emit(s, "lesson_cancelled", recipients=[1], data=DATA)
                    s.commit()
                ahead = t0 + (i + 1) * interval - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            deadline = time.monotonic() + 60
            while relay.published_total < args.backlog + args.events and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            thread.join(10)
            publisher.close()
            with factory() as s:
                rows = s.execute(select(OutboxEvent.created_at, OutboxEvent.published_at)
                                 .where(OutboxEvent.id > backlog_ids)).all()
            lat = [(p - c).total_seconds() * 1000 for c, p in rows if p is not None]
            engine.dispose()
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)
    report = Report("bench.relay_latency", "relay latency, the CRM's commit to the broker's confirm "
                    "(PostgreSQL + RabbitMQ, LISTEN/NOTIFY wake-up)",
                    size=f"{args.events} events committed one by one at {args.rate:g} events/s"
                    + (f", after a backlog of {args.backlog}" if args.backlog else ""))
    report.add("published", len(lat), "events")
    report.add_percentiles("latency", lat, "ms", ps=(50, 99))
    if args.backlog:
        report.add("backlog drained", None if backlog_s is None else args.backlog / backlog_s, "events/s")
    return report.finish()

if __name__ == "__main__":
    run(main)
