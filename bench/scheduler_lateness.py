"""Scheduler lateness: how long after its ``send_at`` a scheduled notification
is handed to delivery (released) and accepted by the provider (sent).

Production shape: PostgreSQL, RabbitMQ, Redis; ``vestnik relay``,
``vestnik worker`` and ``vestnik scheduler`` as separate processes; limits
lifted.  Events are emitted up front with ``send_at`` spread evenly over the
next ``--spread`` seconds, one Telegram + email client each; the figures come
from the rows themselves (``queued_at``, ``sent_at`` against ``send_at``).
The old systems ran a cron once a minute: up to 60 s late by design.
Run: ``.venv/bin/python -m bench.scheduler_lateness --events 300 --spread 60``.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

from sqlalchemy import select

from bench.common import Report, production_stack, run
from vestnik.outbox import emit
from vestnik.shared.models import Notification, utcnow

DATA = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which send_at is spread")
    parser.add_argument("--lead", type=float, default=5.0,
                        help="seconds from the emit to the first send_at (every event handled well before its time)")
    args = parser.parse_args()
    processes = [("relay",), ("worker", "--processes", "1", "--threads", "8"), ("scheduler",)]
    with production_stack(args.events, processes) as stack:
        start = utcnow() + timedelta(seconds=args.lead)
        with stack.factory() as s:
            for i in range(1, args.events + 1):
                at = start + timedelta(seconds=args.spread * (i - 1) / max(args.events - 1, 1))
                emit(s, "lesson_cancelled", recipients=[i], data=DATA, send_at=at)
            s.commit()
        deadline = time.monotonic() + args.spread + 120
        while time.monotonic() < deadline and stack.delivered() < 2 * args.events:
            time.sleep(0.2)  # a benchmark's polling loop
        with stack.factory() as s:
            rows = s.execute(select(Notification.send_at, Notification.queued_at, Notification.sent_at)).all()
    released = [(q - a).total_seconds() * 1000 for a, q, _ in rows if q is not None]
    sent = [(t - a).total_seconds() * 1000 for a, _, t in rows if t is not None]
    report = Report("bench.scheduler_lateness", "how long after its send_at a scheduled notification is handed to "
                    "delivery (released: queued_at - send_at) and accepted by the provider (sent: sent_at - send_at)",
                    size=f"{len(rows)} notifications due over {args.spread:g} s; relay, worker and scheduler "
                         f"processes (tick {stack.env.get('VESTNIK_SCHEDULER_TICK_S', '1.0')} s), limits lifted")
    report.add_percentiles("released", released, "ms", goals={"p99": 50})
    report.add_percentiles("sent", sent, "ms", goals={"p99": 200})
    return report.finish()

if __name__ == "__main__":
    run(main)
