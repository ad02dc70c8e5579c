"""Helpers for the benchmarks: a scratch PostgreSQL database and percentiles."""

from __future__ import annotations

import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared.clients_import import import_clients
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.fakes.botapi import FakeBotApi
from vestnik.shared.fakes.smtp import FakeSmtpServer
from vestnik.shared.migrate import upgrade
from vestnik.shared.seeds import install_default_templates

ROOT = Path(__file__).resolve().parent.parent
#: channel limits lifted: a benchmark measures Vestnik, not the providers' quotas
NO_LIMITS = {"VESTNIK_TELEGRAM_RATE_PER_S": "100000", "VESTNIK_TELEGRAM_CHAT_RATE_PER_S": "100000",
             "VESTNIK_EMAIL_RATE_PER_MIN": "10000000", "VESTNIK_EMAIL_RATE_PER_HOUR": "10000000",
             "VESTNIK_EMAIL_RATE_PER_DAY": "10000000"}

PG_ADMIN_URL = os.environ.get("VESTNIK_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh migrated PostgreSQL database, dropped afterwards; yields its URL."""
    name = f"vestnik_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary_ms(values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return (f"mean {statistics.fmean(ms):.3f} ms, p50 {pct(ms, 50):.3f} ms, p99 {pct(ms, 99):.3f} ms "
            f"(n={len(ms)})")


@dataclass
class Stack:
    factory: sessionmaker[Session]
    bot: FakeBotApi
    smtp: FakeSmtpServer
    env: dict[str, str]
    log_dir: str
    database: str = ""
    vhost: str = ""
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    args: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def delivered(self) -> int:
        return len(self.bot.messages()) + len(self.smtp.messages())

    def start(self, name: str, args: tuple[str, ...]) -> subprocess.Popen:
        """Start ``vestnik <args>`` as process ``name`` (its own process group, so kill -9 takes its children)."""
        self.args[name] = args
        out = open(f"{self.log_dir}/{name}.log", "a")  # noqa: SIM115 - the child owns it
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "vestnik", *args], env=self.env, cwd=ROOT,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        return self.procs[name]

    def kill9(self, name: str) -> None:
        """kill -9 the process and its children, then start it again."""
        try:
            os.killpg(self.procs[name].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.procs[name].wait(30)
        self.start(name, self.args[name])

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # the main process only, like docker stop
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@contextmanager
def production_stack(clients: int, processes: list[tuple[str, ...]], env: dict[str, str] | None = None
                     ) -> Iterator[Stack]:
    """Scratch PostgreSQL database with ``clients`` clients (Telegram and email each), a fresh RabbitMQ
    vhost, Redis db 14, the fake Bot API and SMTP sink, and ``vestnik`` processes (e.g. ``("relay",)``,
    ``("worker", "--processes", "1")``), named ``relay``, ``worker``, ... (``worker-2`` for a second one);
    everything torn down afterwards."""
    vhost = f"bench_{uuid.uuid4().hex[:6]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True)
    subprocess.run(["redis-cli", "-n", "14", "flushdb"], capture_output=True)
    try:
        with ExitStack() as stack:
            url = stack.enter_context(scratch_database())
            bot = stack.enter_context(FakeBotApi())
            smtp = stack.enter_context(FakeSmtpServer())
            factory = make_session_factory(make_engine(url))
            csv = "id,name,email,telegram_chat_id,locale,timezone\n" + "".join(
                f"{i},Client {i},c{i}@example.com,{100000 + i},ru,Europe/Moscow\n" for i in range(1, clients + 1))
            with factory() as s:
                install_default_templates(s)
                import_clients(s, io.StringIO(csv))
                s.commit()
            full_env = {**os.environ, "VESTNIK_DATABASE_URL": url,
                        "VESTNIK_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                        "VESTNIK_REDIS_URL": "redis://127.0.0.1:6379/14", "VESTNIK_TELEGRAM_TOKEN": bot.token,
                        "VESTNIK_TELEGRAM_API_BASE": bot.url, "VESTNIK_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
                        "VESTNIK_LOG_LEVEL": "WARNING", **NO_LIMITS, **(env or {})}
            logs = stack.enter_context(tempfile.TemporaryDirectory())
            result = Stack(factory, bot, smtp, full_env, logs, database=url.rsplit("/", 1)[1], vhost=vhost)
            for args in processes:
                name = args[0] if args[0] not in result.procs else f"{args[0]}-{len(result.procs)}"
                result.start(name, args)
            try:
                time.sleep(3)  # let the processes connect before a benchmark starts its clock
                yield result
            finally:
                result.stop_all()
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)
