"""Soak: a steady event rate for a long time, with random faults, judged by the
delivery ledger.

Production shape (PostgreSQL, RabbitMQ, Redis; ``vestnik relay``,
``vestnik worker``, ``vestnik scheduler`` as processes; Telegram to the fake
Bot API, email to the SMTP sink; the real default channel limits).  Every
``--fault-every`` seconds (on average) one fault from the list below hits;
at the end emitting stops, the run settles, and the report prints:

- lost / duplicated / unexpected messages (``vestnik.shared.fakes.ledger``), and how
  many were flagged "delivery uncertain";
- peak RSS of each process (with its children) and its growth from the
  first minute to the end;
- peak open connections (PostgreSQL backends of the database, RabbitMQ
  connections of the vhost);
- peak outbox lag and due-notification lag.

Faults: kill -9 of the worker, kill -9 of the relay, every broker connection
closed, every PostgreSQL backend of the database dropped, three Bot API 5xx
in a row, a Bot API 429 with ``retry_after``, an SMTP 451.

Run: ``.venv/bin/python -m bench.soak`` (30 minutes at 5 events/s), or
shorter: ``.venv/bin/python -m bench.soak --minutes 10 --rate 5``.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import time
from dataclasses import dataclass, field

from sqlalchemy import create_engine, func, select, text

from bench.common import PG_ADMIN_URL, CouldNotMeasure, Report, production_stack, run
from vestnik.outbox import emit
from vestnik.shared.fakes.ledger import Expected, check, received
from vestnik.shared.models import Notification, OutboxEvent, utcnow

CLIENTS = 300
#: the shipped defaults, but a per-chat limit that 300 clients at 5 events/s never hits
SOAK_ENV = {"VESTNIK_TELEGRAM_RATE_PER_S": "30", "VESTNIK_TELEGRAM_CHAT_RATE_PER_S": "1",
            "VESTNIK_EMAIL_RATE_PER_MIN": "100000", "VESTNIK_EMAIL_RATE_PER_HOUR": "1000000",
            "VESTNIK_EMAIL_RATE_PER_DAY": "10000000", "VESTNIK_PROCESSING_LEASE_S": "30",
            "VESTNIK_REDRIVE_AFTER_S": "30", "VESTNIK_RETRY_BASE_DELAY_S": "2"}


def rss_kb(pid: int) -> int:
    """RSS of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
        except OSError:
            continue
    return total


@dataclass
class Samples:
    rss_first: dict[str, int] = field(default_factory=dict)
    rss_peak: dict[str, int] = field(default_factory=dict)
    rss_last: dict[str, int] = field(default_factory=dict)
    pg_connections: int = 0
    amqp_connections: int = 0
    outbox_lag_s: float = 0.0
    due_lag_s: float = 0.0


def sample(stack, admin, samples: Samples, first_minute: bool) -> None:
    for name, proc in stack.procs.items():
        kb = rss_kb(proc.pid)
        if first_minute or name not in samples.rss_first:
            samples.rss_first[name] = max(samples.rss_first.get(name, 0), kb)
        samples.rss_peak[name] = max(samples.rss_peak.get(name, 0), kb)
        samples.rss_last[name] = kb
    with admin.connect() as conn:
        samples.pg_connections = max(samples.pg_connections, conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db"), {"db": stack.database}).scalar())
    out = subprocess.run(["rabbitmqctl", "-q", "list_connections", "vhost"], capture_output=True, text=True)
    samples.amqp_connections = max(samples.amqp_connections,
                                   sum(1 for line in out.stdout.splitlines() if line.strip() == stack.vhost))
    now = utcnow()
    with stack.factory() as s:
        oldest = s.scalar(select(func.min(OutboxEvent.created_at)).where(OutboxEvent.status == "pending"))
        due = s.scalar(select(func.min(Notification.send_at)).where(Notification.status == "pending",
                                                                   Notification.send_at <= now))
    samples.outbox_lag_s = max(samples.outbox_lag_s, (now - oldest).total_seconds() if oldest else 0.0)
    samples.due_lag_s = max(samples.due_lag_s, (now - due).total_seconds() if due else 0.0)


def inject(stack, admin, rng: random.Random) -> str:
    fault = rng.choice(["kill_worker", "kill_relay", "close_amqp", "drop_pg", "bot_5xx", "bot_429", "smtp_451"])
    if fault == "kill_worker":
        stack.kill9("worker")
    elif fault == "kill_relay":
        stack.kill9("relay")
    elif fault == "close_amqp":
        subprocess.run(["rabbitmqctl", "close_all_connections", "--vhost", stack.vhost, "soak"], capture_output=True)
    elif fault == "drop_pg":
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"),
                         {"db": stack.database})
    elif fault == "bot_5xx":
        stack.bot.fail_next(3, "500")
    elif fault == "bot_429":
        stack.bot.fail_next(1, "429", retry_after=2)
    elif fault == "smtp_451":
        stack.smtp.fail_next(1, "451 4.7.1 Try again later")
    return fault


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=5.0, help="events per second")
    parser.add_argument("--fault-every", type=float, default=30.0, help="mean seconds between faults")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    processes = [("relay",), ("worker", "--processes", "1", "--threads", "8"), ("scheduler",)]
    expected: list[Expected] = []
    faults: list[str] = []
    samples = Samples()
    with production_stack(CLIENTS, processes, env=SOAK_ENV) as stack:
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_fault = t0 + rng.expovariate(1 / args.fault_every)
        next_sample = t0
        n = 0
        while time.monotonic() < end:
            tick = time.monotonic()
            client = rng.randint(1, CLIENTS)
            marker = f"Soak-{n:07d}"
            with stack.factory() as s:
                emit(s, "lesson_cancelled", recipients=[client],
                     data={"lesson_title": marker, "starts_at": "2026-12-25T16:00:00+03:00"})
                s.commit()
            expected += [Expected("telegram", str(100000 + client), marker),
                         Expected("email", f"c{client}@example.com", marker)]
            n += 1
            now = time.monotonic()
            if now >= next_fault:
                faults.append(inject(stack, admin, rng))
                next_fault = now + rng.expovariate(1 / args.fault_every)
            if now >= next_sample:
                sample(stack, admin, samples, first_minute=now - t0 < 60)
                next_sample = now + 10
            time.sleep(max(0.0, 1 / args.rate - (time.monotonic() - tick)))  # the steady rate
        emitted_s = time.monotonic() - t0
        settle_deadline = time.monotonic() + 300
        while time.monotonic() < settle_deadline:
            with stack.factory() as s:
                open_rows = s.scalar(select(func.count()).select_from(Notification).where(
                    Notification.status.in_(["pending", "processing"])))
                unhandled = s.scalar(select(func.count()).select_from(OutboxEvent).where(
                    OutboxEvent.status != "processed"))
            if open_rows == 0 and unhandled == 0:
                break
            time.sleep(0.2)  # a benchmark's polling loop
        sample(stack, admin, samples, first_minute=False)
        with stack.factory() as s:
            rows = s.execute(select(Notification.channel, Notification.recipient_address, Notification.payload_json)
                             .where(Notification.delivery_uncertain.is_(True))).all()
        report = check(expected, received(stack.bot, stack.smtp),
                       [(c, a, d["lesson_title"]) for c, a, d in rows])
    admin.dispose()
    if report.received == 0:
        raise CouldNotMeasure(f"nothing was delivered of {report.expected} expected messages")
    result = Report("bench.soak", "a steady event rate with random faults, judged by the delivery ledger "
                    "(relay, worker and scheduler processes, the shipped channel limits)",
                    size=f"{n} events over {emitted_s / 60:.1f} min ({n / emitted_s:.1f}/s, target {args.rate:g}/s), "
                         f"{len(faults)} faults")
    result.add("expected", report.expected, "messages")
    result.add("received", report.received, "messages")
    result.add("lost", len(report.lost), "messages", goal=0)
    result.add("duplicated", len(report.duplicated), "messages", goal=0)
    result.add("unexpected", len(report.unexpected), "messages", goal=0)
    for name in sorted(samples.rss_peak):
        first, peak, last = samples.rss_first[name], samples.rss_peak[name], samples.rss_last[name]
        result.add(f"{name} RSS peak", peak / 1024, "MiB")
        result.add(f"{name} RSS growth, first minute to end", (last - first) / 1024, "MiB")
    result.add("peak PostgreSQL connections", samples.pg_connections, "")
    result.add("peak RabbitMQ connections", samples.amqp_connections, "")
    result.add("peak outbox lag", samples.outbox_lag_s, "s")
    result.add("peak due-notification lag", samples.due_lag_s, "s")
    result.note(f"ledger: {report}")
    result.note("faults: " + (", ".join(f"{f} x{faults.count(f)}" for f in sorted(set(faults))) or "none")
                + "; restarts reset a process's RSS")
    return result.finish()

if __name__ == "__main__":
    run(main)
