"""Broadcast benchmarks: expansion of 100,000 clients, and send time at the Telegram limit.

1. **Expansion** (in this process, PostgreSQL): 100,000 clients with Telegram
   and email; one broadcast to all of them (200,000 messages).  Measures the
   exact count the admin confirms, the expansion (``run_expansion``: keyset
   batches of ``INSERT ... SELECT``), its peak Python memory (tracemalloc) and
   the process's peak RSS, and the time until the first channel pump is woken
   for the first rows (a recording broker stands in for RabbitMQ here).
2. **Send time** (production shape: PostgreSQL, RabbitMQ, Redis, real
   ``vestnik worker`` and ``vestnik scheduler`` processes, the fake Bot API):
   a Telegram-only broadcast to N recipients at the configured limit, from
   the admin's start to the last message accepted, against the theoretical
   minimum N / limit.

Run: ``.venv/bin/python -m bench.broadcast_expand --clients 100000 --send 2000 --rate 30``
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import func, select, text

from bench.common import Report, private_redis, run, scratch_database, wait_until_up
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.fakes.botapi import FakeBotApi
from vestnik.shared.models import Notification
from vestnik.shared.seeds import install_default_templates
from vestnik.workers import broadcasts
from vestnik.workers.broadcasting import run_expansion
from vestnik.workers.broker import PUMP
from vestnik.workers.channels import build_channels

ROOT = Path(__file__).resolve().parent.parent
DATA = {"title": "Новости школы", "text": "С 1 декабря открыта запись на зимний лагерь."}


def _seed(url: str, clients: int, *, email: bool = True) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO clients (id, name, locale, timezone, allow_service_notifications, "
            "allow_marketing_notifications, created_at, updated_at) "
            "SELECT g, 'Client ' || g, 'ru', 'Europe/Moscow', true, false, now(), now() "
            "FROM generate_series(1, :n) AS g"), {"n": clients})
        conn.execute(text(
            "INSERT INTO client_addresses (client_id, channel, address, enabled, created_at, updated_at) "
            "SELECT g, 'telegram', (100000 + g)::text, true, now(), now() FROM generate_series(1, :n) AS g"
            + (" UNION ALL SELECT g, 'email', 'c' || g || '@example.com', true, now(), now() "
               "FROM generate_series(1, :n) AS g" if email else "")), {"n": clients})
        conn.execute(text("ANALYZE clients"))
        conn.execute(text("ANALYZE client_addresses"))
    factory = make_session_factory(engine)
    with factory() as s:
        install_default_templates(s)
        s.commit()
    engine.dispose()


class RecordingBroker:
    """Stands in for RabbitMQ: notes when each pump wake-up would have been published."""

    def __init__(self) -> None:
        self.first_delivery_at: float | None = None
        self.deliveries = 0

    def enqueue(self, message, delay=None):  # noqa: ANN001 - dramatiq's signature
        if message.actor_name == PUMP:
            self.deliveries += 1
            if self.first_delivery_at is None:
                self.first_delivery_at = time.perf_counter()
        return message


def expansion(report: Report, clients: int) -> None:
    with scratch_database() as url:
        _seed(url, clients)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        settings = Settings(database_url=url, secret_key="bench")
        t0 = time.perf_counter()
        with factory() as s:
            b = broadcasts.create(s, name="bench", template_code="ANNOUNCEMENT", channels=["telegram", "email"],
                                  category="service", targeting={}, initiator="admin:1", data=DATA)
            whole, _ = broadcasts.counts(s, b)
            count_s = time.perf_counter() - t0
            broadcasts.send_all(s, b, "admin:1", str(whole.messages))
            s.commit()
            bid = b.id
        broker = RecordingBroker()
        rt = SimpleNamespace(factory=factory, settings=settings, channels=build_channels(settings), broker=broker)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        start = time.perf_counter()
        run_expansion(rt, bid, budget_s=3600)  # one pass; production re-queues itself every 60 s
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with factory() as s:
            rows = s.scalar(select(func.count()).select_from(Notification).where(Notification.broadcast_id == bid))
        engine.dispose()
    first = (broker.first_delivery_at - start) if broker.first_delivery_at else None
    report.add("count for the confirmation page", count_s * 1000, "ms")
    report.add("expansion: rows", rows, "rows")
    report.add("expansion: time", elapsed, "s")
    report.add("expansion: rate", rows / elapsed if rows else None, "rows/s")
    report.add("expansion: peak Python memory", peak / 1024 / 1024, "MiB")
    report.add("expansion: process peak RSS", rss_after / 1024, "MiB")
    report.add("first channel pump woken", None if first is None else first * 1000, "ms")
    report.note(f"{whole.messages:,} messages to {whole.clients:,} clients; RSS before {rss_before / 1024:.0f} MiB; "
                f"{broker.deliveries} wake-ups during expansion (the feeder keeps ~3 s of each limit due)")

def send_time(report: Report, recipients: int, rate: float) -> None:
    vhost = f"bench_{uuid.uuid4().hex[:6]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True)
    procs: list[subprocess.Popen] = []
    try:
        with private_redis() as redis_url, scratch_database() as url, FakeBotApi() as bot:
            _seed(url, recipients, email=False)
            env = {**os.environ, "VESTNIK_DATABASE_URL": url,
                   "VESTNIK_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                   "VESTNIK_REDIS_URL": redis_url, "VESTNIK_TELEGRAM_TOKEN": bot.token,
                   "VESTNIK_TELEGRAM_API_BASE": bot.url, "VESTNIK_TELEGRAM_RATE_PER_S": str(rate),
                   "VESTNIK_SCHEDULER_TICK_S": "1", "VESTNIK_LOG_LEVEL": "WARNING", "VESTNIK_SECRET_KEY": "bench"}
            logs = tempfile.mkdtemp(prefix="vestnik-bench-")
            env["VESTNIK_HEARTBEAT_DIR"] = logs
            cli = [sys.executable, "-m", "vestnik"]
            for name, args in (("worker", ["worker", "--processes", "1", "--threads", "8"]),
                               ("scheduler", ["scheduler"])):
                procs.append(subprocess.Popen([*cli, *args], env=env, cwd=ROOT,
                                              stdout=open(f"{logs}/{name}.log", "w"),  # noqa: SIM115
                                              stderr=subprocess.STDOUT))
            wait_until_up(logs, ["worker", "scheduler"])  # booted; not part of the measurement
            factory = make_session_factory(make_engine(url))
            with factory() as s:
                b = broadcasts.create(s, name="bench", template_code="ANNOUNCEMENT", channels=["telegram"],
                                      category="service", targeting={}, initiator="admin:1", data=DATA)
                broadcasts.send_all(s, b, "admin:1", str(recipients))
                s.commit()
            start = time.time()
            bot.wait_for(lambda m: len(m) >= recipients, timeout=recipients / rate * 3 + 60)
            times = sorted(m["time"] for m in bot.messages())
            total = times[-1] - start
            minimum = recipients / rate
            # The steady rate, over the middle of the run (start-up and tail excluded).
            lo, hi = times[len(times) // 10], times[len(times) * 9 // 10]
            steady = (len(times) * 8 // 10) / (hi - lo) if hi > lo else float("nan")
            report.add("send: start to the last message", total, "s")
            report.add("send: theoretical minimum", minimum, "s")
            report.add("send: ratio to the minimum", total / minimum, "x")
            report.add("send: first message after start", times[0] - start, "s")
            report.add("send: steady rate", steady, "messages/s")
            report.add("send: peak in any 1 s window (receiver)", _peak(times), "messages")
            report.add("send: worker CPU", _cpu_s(procs[0].pid), "s")
            report.add("send: scheduler CPU", _cpu_s(procs[1].pid), "s")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children that are still alive (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        pids += [int(c) for c in children]
    return total


def _peak(times: list[float]) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--send", type=int, default=2_000, help="recipients of the send-time run (0: skip)")
    parser.add_argument("--rate", type=float, default=30.0, help="Telegram limit, messages per second")
    args = parser.parse_args()
    report = Report("bench.broadcast_expand", "a broadcast's exact count, expansion into rows, and send time at the "
                    "Telegram limit (worker and scheduler processes, the fake Bot API)",
                    size=f"{args.clients:,} clients x 2 channels expanded; {args.send:,} Telegram recipients sent "
                         f"at {args.rate:g}/s")
    expansion(report, args.clients)
    if args.send:
        send_time(report, args.send, args.rate)
    return report.finish()

if __name__ == "__main__":
    run(main)
