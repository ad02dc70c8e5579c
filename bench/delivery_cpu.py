"""CPU per message of the delivery path itself, in one process: handling, then pumps, no broker.

``bench.throughput`` measures the whole stack, and on a shared machine its rate says more about
the other tenants than about Vestnik.  This bench isolates the worker's own path and counts CPU
time, not wall time, so a loaded machine changes its figures much less:

- handling: ``handle_events`` over batches of 100 events (rows inserted per CPU millisecond);
- delivery: ``Delivery.pump`` called in a loop per channel until nothing is due (claim, render,
  limiter slots on a private redis-server, attempts, sends over the channel pools, records), all
  in this process, CPU of every thread (``time.process_time``);
- PostgreSQL: the backends of the bench's own database over the delivery phase;
- the fake Bot API and the SMTP sink run in a child process each and are measured apart; the sink is
  ``LeanSmtpSink`` (aiosmtpd's ledger behind a lean server: 0.08 ms of CPU per message against
  aiosmtpd's 0.5, ``bench.fakes_cpu``; the tests send to aiosmtpd).

``--pg-stats`` adds what PostgreSQL did per message: rows inserted, updated and of them HOT-updated
per table, index entries written, and the day-count triggers' own time (``track_functions``).

Limits lifted, as in ``bench.throughput``.  Run:
``.venv/bin/python -m bench.delivery_cpu --events 30 --recipients 100``.

``--trickle N`` measures what a steady trickle costs instead (the latency run of ``bench.throughput``):
N one-recipient events, each handled alone and its two rows sent inline, as the worker's
``handle_events`` actor does for a relay message of one event (``workers/actors.py``), one after
the other in this process; CPU of this process and of PostgreSQL per message.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import time
from typing import Any

from sqlalchemy import create_engine, text

from bench.common import NO_LIMITS, PG_ADMIN_URL, CouldNotMeasure, Report, private_redis, run, scratch_database
from bench.throughput import DATA, _cpu_s


def _bot(queue: Any) -> None:
    from vestnik.shared.fakes.botapi import FakeBotApi

    with FakeBotApi() as bot:
        queue.put((bot.url, bot.token))
        while True:
            time.sleep(3600)  # until the bench kills this process


def _smtp(queue: Any) -> None:
    from vestnik.shared.fakes.smtp import LeanSmtpSink

    with LeanSmtpSink() as smtp:
        queue.put(smtp.port)
        while True:
            time.sleep(3600)


def measure(report: Report, events: int, recipients: int, pg_stats: bool = False, trickle: int = 0) -> None:
    bot_queue: Any = multiprocessing.Queue()
    smtp_queue: Any = multiprocessing.Queue()
    bot = multiprocessing.Process(target=_bot, args=(bot_queue,), daemon=True)
    smtp = multiprocessing.Process(target=_smtp, args=(smtp_queue,), daemon=True)
    bot.start()
    smtp.start()
    try:
        bot_url, token = bot_queue.get(timeout=60)
        smtp_port = smtp_queue.get(timeout=60)
        with private_redis() as redis_url, scratch_database() as url:
            os.environ.update({**NO_LIMITS, "VESTNIK_DATABASE_URL": url, "VESTNIK_REDIS_URL": redis_url,
                               "VESTNIK_TELEGRAM_TOKEN": token, "VESTNIK_TELEGRAM_API_BASE": bot_url,
                               "VESTNIK_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "VESTNIK_LOG_LEVEL": "WARNING"})
            if pg_stats:
                admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(text(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" SET track_functions = \'pl\''))
                admin.dispose()
            if trickle:
                _trickle(report, url, trickle, {"Bot API": bot.pid, "SMTP sink": smtp.pid})
            else:
                _run(report, url, events, recipients, {"Bot API": bot.pid, "SMTP sink": smtp.pid}, pg_stats)
    finally:
        bot.kill()
        smtp.kill()


#: Per table: rows inserted, updated, HOT-updated (pg_stat_user_tables; read after a stats flush).
_TABLE_STATS = text("""
SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd,
       (SELECT count(*) FROM pg_index x WHERE x.indrelid = t.relid) AS indexes
FROM pg_stat_user_tables t
WHERE relname IN ('notifications', 'delivery_attempts', 'notification_day_counts')
""")
_FUNCTION_STATS = text("SELECT funcname, calls, self_time FROM pg_stat_user_functions")


def _pg_stats(engine: Any) -> dict[str, tuple[float, ...]]:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        tables = {r[0]: tuple(float(v) for v in r[1:]) for r in conn.execute(_TABLE_STATS)}
        functions = {f"function {r[0]}": (float(r[1]), float(r[2])) for r in conn.execute(_FUNCTION_STATS)}
    return {**tables, **functions}


def _backend_cpu(engine: Any, url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to the bench's database, by pid."""
    with engine.connect() as conn:
        pids = [r[0] for r in conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :d"),
                                           {"d": url.rsplit("/", 1)[1]})]
    return {pid: _cpu_s(pid) for pid in pids}


def _close(delivery: Any, channels: dict[str, Any], engine: Any) -> None:
    delivery.close()
    for ch in channels.values():
        ch.close()
    engine.dispose()


def _trickle(report: Report, url: str, events: int, fakes_pids: dict[str, int]) -> None:
    from types import SimpleNamespace

    from dramatiq.brokers.stub import StubBroker

    from vestnik.outbox import emit
    from vestnik.shared.clients_import import import_clients
    from vestnik.shared.config import load_settings
    from vestnik.shared.db import make_engine, make_session_factory
    from vestnik.shared.logs import configure_logging
    from vestnik.shared.seeds import install_default_templates
    from vestnik.workers import actors, handling, notifications
    from vestnik.workers.channels import build_channels
    from vestnik.workers.delivery import Delivery
    from vestnik.workers.limits import build_limiter

    settings = load_settings()
    configure_logging(settings)
    engine = make_engine(url, pool_size=10)
    factory = make_session_factory(engine)
    csv = "id,name,email,telegram_chat_id,locale,timezone\n" + "".join(
        f"{i},Client {i},c{i}@example.com,{100000 + i},ru,Europe/Moscow\n" for i in range(1, events + 11))
    with factory() as s:
        install_default_templates(s)
        import_clients(s, io.StringIO(csv))
        for i in range(1, events + 11):
            emit(s, "lesson_cancelled", recipients=[i], data=DATA)
        s.commit()
        ids = [r[0] for r in s.execute(text("SELECT id FROM outbox_events ORDER BY id"))]
    channels = build_channels(settings)
    delivery = Delivery(factory, channels, settings, limiter=build_limiter(
        settings, seed=notifications.seed_source(factory)))
    rt = SimpleNamespace(delivery=delivery, broker=StubBroker(), settings=settings)

    handling_cpu = [0.0]  # this thread's CPU in handle_events (delivery's sending threads are not in it)

    def one(event_id: int) -> int:
        started = time.thread_time()
        results = handling.handle_events(factory, channels, [event_id], default_zone=settings.default_timezone,
                                         policies=getattr(delivery, "quiet", None))
        handling_cpu[0] += time.thread_time() - started
        due: dict[str, list[int]] = {}
        clients: dict[int, Any] = {}
        for r in results:
            clients.update(getattr(r, "clients", {}))
            for notification_id, channel, _, _ in r.created:
                due.setdefault(channel, []).append(notification_id)
        if due:
            actors._deliver_inline_all(rt, due, clients)
        return sum(len(v) for v in due.values())

    for event_id in ids[:10]:  # warm: connections, templates, caches
        one(event_id)
    pg_before, fakes_before = _backend_cpu(engine, url), {name: _cpu_s(pid) for name, pid in fakes_pids.items()}
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    handling_cpu[0] = 0.0
    rows = sum(one(event_id) for event_id in ids[10:])
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    pg = sum(v - pg_before.get(pid, 0.0) for pid, v in _backend_cpu(engine, url).items())
    fakes = sum(_cpu_s(pid) - fakes_before[name] for name, pid in fakes_pids.items())
    with engine.connect() as conn:
        sent = conn.execute(text("SELECT count(*) FROM notifications WHERE status = 'sent'")).scalar_one() - 20
    _close(delivery, channels, engine)
    if not sent:
        raise CouldNotMeasure("nothing was sent")
    report.add("rows created", rows, "rows")
    report.add("messages sent", sent, "messages")
    report.add("trickle: handling + inline delivery CPU (this process)", cpu * 1000 / sent, "ms/message")
    report.add("  of it handle_events (its thread)", handling_cpu[0] * 1000 / sent, "ms/message")
    report.add("  of it inline delivery (the rest)", (cpu - handling_cpu[0]) * 1000 / sent, "ms/message")
    report.add("trickle: PostgreSQL CPU", pg * 1000 / sent, "ms/message")
    report.add("trickle: fakes CPU (Bot API, SMTP sink)", fakes * 1000 / sent, "ms/message")
    report.add("trickle: wall per event, one at a time", wall * 1000 / len(ids[10:]), "ms")


def _run(report: Report, url: str, events: int, recipients: int, fakes_pids: dict[str, int],
         pg_stats: bool = False) -> None:
    from vestnik.outbox import emit
    from vestnik.shared.clients_import import import_clients
    from vestnik.shared.config import load_settings
    from vestnik.shared.db import make_engine, make_session_factory
    from vestnik.shared.logs import configure_logging
    from vestnik.shared.seeds import install_default_templates
    from vestnik.workers import handling, notifications
    from vestnik.workers.channels import build_channels
    from vestnik.workers.delivery import Delivery
    from vestnik.workers.limits import build_limiter

    settings = load_settings()
    configure_logging(settings)
    engine = make_engine(url, pool_size=10)
    factory = make_session_factory(engine)
    n = events * recipients
    csv = "id,name,email,telegram_chat_id,locale,timezone\n" + "".join(
        f"{i},Client {i},c{i}@example.com,{100000 + i},ru,Europe/Moscow\n" for i in range(1, n + 1))
    with factory() as s:
        install_default_templates(s)
        import_clients(s, io.StringIO(csv))
        for e in range(events):
            emit(s, "lesson_cancelled", recipients=list(range(e * recipients + 1, (e + 1) * recipients + 1)),
                 data=DATA)
        s.commit()
        ids = [r[0] for r in s.execute(text("SELECT id FROM outbox_events ORDER BY id"))]
    channels = build_channels(settings)
    started = time.process_time()
    for i in range(0, len(ids), 100):
        handling.handle_events(factory, channels, ids[i:i + 100], default_zone=settings.default_timezone)
    handling_s = time.process_time() - started

    delivery = Delivery(factory, channels, settings, limiter=build_limiter(
        settings, seed=notifications.seed_source(factory)))
    pg_before, fakes_before = _backend_cpu(engine, url), {name: _cpu_s(pid) for name, pid in fakes_pids.items()}
    stats_before = _pg_stats(engine) if pg_stats else {}
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    sent = 0
    for channel in ("telegram", "email"):
        while True:
            batch = delivery.pump(channel)
            if not batch.claimed:
                break
            sent += sum(1 for r in batch.results or [] if r.outcome == "sent")
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    pg = sum(v - pg_before.get(pid, 0.0) for pid, v in _backend_cpu(engine, url).items())
    fakes = {name: _cpu_s(pid) - fakes_before[name] for name, pid in fakes_pids.items()}
    if pg_stats:
        time.sleep(1)  # backends flush their statistics at most once a second (PostgreSQL 15)
        stats_after = _pg_stats(engine)
    _close(delivery, channels, engine)
    if not sent:
        raise CouldNotMeasure("nothing was sent")
    report.add("rows created", 2 * n, "rows")
    report.add("handling CPU", handling_s * 1000 / (2 * n), "ms/row")
    report.add("messages sent", sent, "messages")
    report.add("delivery CPU (this process: pumps and sending threads)", cpu * 1000 / sent, "ms/message")
    report.add("PostgreSQL CPU during delivery", pg * 1000 / sent, "ms/message")
    report.add("fakes CPU (Bot API, SMTP sink)", sum(fakes.values()) * 1000 / sent, "ms/message")
    for name, seconds in fakes.items():
        report.add(f"  {name} CPU", seconds * 1000 / sent, "ms/message")
    if pg_stats:
        for name, after in sorted(stats_after.items()):
            before = stats_before.get(name, (0.0,) * len(after))
            if name.startswith("function "):
                report.add(f"{name}: calls", after[0] - before[0], "calls")
                report.add(f"{name}: own time", (after[1] - before[1]) / sent, "ms/message")
                continue
            ins, upd, hot = (after[i] - before[i] for i in range(3))
            report.add(f"{name}: inserted", ins / sent, "rows/message")
            report.add(f"{name}: updated", upd / sent, "rows/message")
            report.add(f"{name}: of them HOT", hot / sent, "rows/message")
            report.add(f"{name}: indexes", after[3], "indexes")
    report.add("rate of one pump at a time", sent / wall, "messages/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--recipients", type=int, default=100, help="clients per event (each: Telegram + email)")
    parser.add_argument("--pg-stats", action="store_true",
                        help="rows, HOT updates and trigger time per message in PostgreSQL")
    parser.add_argument("--trickle", type=int, default=0, metavar="N",
                        help="instead: N one-recipient events, each handled alone and sent inline")
    args = parser.parse_args()
    report = Report("bench.delivery_cpu", "CPU per message of handling and of the delivery pumps in one process "
                    "(no broker), limits lifted; fakes in a child process",
                    size=f"{args.events} events x {args.recipients} recipients x 2 channels")
    measure(report, args.events, args.recipients, args.pg_stats, args.trickle)
    return report.finish()


if __name__ == "__main__":
    run(main)
