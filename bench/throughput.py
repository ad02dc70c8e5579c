"""End-to-end throughput: events -> messages accepted by the local fake Bot API
and SMTP server, limits lifted, with 1 and 2 worker processes.

Production shape: PostgreSQL, RabbitMQ, Redis, ``vestnik relay`` and
``vestnik worker`` as separate processes.  Each event goes to one client who
has Telegram and email, so it yields two messages.
Run: ``.venv/bin/python -m bench.throughput --events 1000 --processes 1 2``.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import scratch_database
from outbox import emit
from shared.clients_import import import_clients
from shared.db import make_engine, make_session_factory
from shared.fakes.botapi import FakeBotApi
from shared.fakes.smtp import FakeSmtpServer
from shared.seeds import install_default_templates

ROOT = Path(__file__).resolve().parent.parent
DATA = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}


def run(events: int, processes: int, threads: int) -> tuple[float, int]:
    vhost = f"bench_{uuid.uuid4().hex[:6]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True)
    try:
        with scratch_database() as url, FakeBotApi() as bot, FakeSmtpServer() as smtp:
            factory = make_session_factory(make_engine(url))
            csv = "id,name,email,telegram_chat_id,locale,timezone\n" + "".join(
                f"{i},Client {i},c{i}@example.com,{100000 + i},ru,Europe/Moscow\n" for i in range(1, events + 1))
            with factory() as s:
                install_default_templates(s)
                import_clients(s, io.StringIO(csv))
                s.commit()
            env = {**os.environ, "VESTNIK_DATABASE_URL": url,
                   "VESTNIK_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                   "VESTNIK_REDIS_URL": "redis://127.0.0.1:6379/14", "VESTNIK_TELEGRAM_TOKEN": bot.token,
                   "VESTNIK_TELEGRAM_API_BASE": bot.url, "VESTNIK_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
                   "VESTNIK_TELEGRAM_RATE_PER_S": "100000", "VESTNIK_TELEGRAM_CHAT_RATE_PER_S": "100000",
                   "VESTNIK_EMAIL_RATE_PER_MIN": "10000000", "VESTNIK_EMAIL_RATE_PER_HOUR": "10000000",
                   "VESTNIK_EMAIL_RATE_PER_DAY": "10000000", "VESTNIK_LOG_LEVEL": "WARNING"}
            subprocess.run(["redis-cli", "-n", "14", "flushdb"], capture_output=True)
            logs = tempfile.TemporaryDirectory()
            cli = [sys.executable, "-m", "shared.cli"]
            procs = [
                subprocess.Popen([*cli, "relay"], env=env, cwd=ROOT, stdout=open(f"{logs.name}/relay", "w"),
                                 stderr=subprocess.STDOUT),
                subprocess.Popen([*cli, "worker", "--processes", str(processes), "--threads", str(threads)],
                                 env=env, cwd=ROOT, stdout=open(f"{logs.name}/worker", "w"), stderr=subprocess.STDOUT),
            ]
            time.sleep(3)  # let the workers connect before the clock starts
            t0 = time.perf_counter()
            with factory() as s:
                for i in range(1, events + 1):
                    emit(s, "lesson_cancelled", recipients=[i], data=DATA)
                    if i % 100 == 0:
                        s.commit()
                s.commit()
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                if len(bot.messages()) + len(smtp.messages()) >= 2 * events:
                    break
                time.sleep(0.02)
            elapsed = time.perf_counter() - t0
            delivered = len(bot.messages()) + len(smtp.messages())
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
            return elapsed, delivered
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    print(f"end-to-end throughput, {args.events} events x 2 channels, limits lifted, {args.threads} threads/process")
    for n in args.processes:
        elapsed, delivered = run(args.events, n, args.threads)
        print(f"  {n} worker process(es): {delivered}/{2 * args.events} messages in {elapsed:.1f} s "
              f"= {delivered / elapsed:.0f} messages/s")


if __name__ == "__main__":
    main()
