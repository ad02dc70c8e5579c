"""End-to-end throughput: events -> messages accepted by the local fake Bot API
and SMTP server, limits lifted, with 1 and 2 worker processes.

Production shape: PostgreSQL, RabbitMQ, Redis, ``vestnik relay`` and
``vestnik worker`` as separate processes.  Each event goes to one client who
has Telegram and email, so it yields two messages.
Run: ``.venv/bin/python -m bench.throughput --events 1000 --processes 1 2``.
"""

from __future__ import annotations

import argparse
import time

from bench.common import Report, production_stack, run
from vestnik.outbox import emit

DATA = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}


def run_stack(events: int, processes: int, threads: int) -> tuple[float, int]:
    workers = ("worker", "--processes", str(processes), "--threads", str(threads))
    with production_stack(events, [("relay",), workers]) as stack:
        t0 = time.perf_counter()
        with stack.factory() as s:
            for i in range(1, events + 1):
                emit(s, "lesson_cancelled", recipients=[i], data=DATA)
                if i % 100 == 0:
                    s.commit()
            s.commit()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and stack.delivered() < 2 * events:
            time.sleep(0.02)  # a benchmark's polling loop, not a test's synchronisation
        return time.perf_counter() - t0, stack.delivered()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    report = Report("bench.throughput", "end-to-end throughput, events to messages accepted by the fake Bot API "
                    "and SMTP sink, limits lifted (relay and worker processes)",
                    size=f"{args.events} events x 2 channels, {args.threads} threads per worker process")
    for n in args.processes:
        elapsed, delivered = run_stack(args.events, n, args.threads)
        report.add(f"{n} worker process(es): delivered", delivered, "messages")
        report.add(f"{n} worker process(es): rate", delivered / elapsed if delivered else None, "messages/s")
    return report.finish()

if __name__ == "__main__":
    run(main)
