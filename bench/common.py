"""Helpers for the benchmarks: the report every bench prints, scratch resources, percentiles.

**The report.**  Every bench prints its figures in one shape through
:class:`Report`: what it measures, the size of the run, the figures (name,
value, unit, and the goal where there is one), and the machine's load
average at the start and the end (this machine is shared: figures taken
under load say so).  The last line is the same report as JSON after
``BENCH-JSON``, for scripts and for the smoke test.  A bench that could not
measure (a figure with no samples, an exception) exits non-zero.

**Scratch resources only.**  A bench never touches data it did not create:
a PostgreSQL database of its own (:func:`scratch_database`), a RabbitMQ
vhost of its own, and a redis-server of its own on a free port
(:func:`private_redis`), all removed at the end.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from vestnik.shared import heartbeat
from vestnik.shared.clients_import import import_clients
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.fakes.botapi import FakeBotApi
from vestnik.shared.fakes.smtp import FakeSmtpServer, LeanSmtpSink
from vestnik.shared.migrate import upgrade
from vestnik.shared.seeds import install_default_templates

ROOT = Path(__file__).resolve().parent.parent
#: channel limits lifted: a benchmark measures Vestnik, not the providers' quotas
NO_LIMITS = {"VESTNIK_TELEGRAM_RATE_PER_S": "100000", "VESTNIK_TELEGRAM_CHAT_RATE_PER_S": "100000",
             "VESTNIK_EMAIL_RATE_PER_MIN": "10000000", "VESTNIK_EMAIL_RATE_PER_HOUR": "10000000",
             "VESTNIK_EMAIL_RATE_PER_DAY": "10000000"}

PG_ADMIN_URL = os.environ.get("VESTNIK_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
JSON_PREFIX = "BENCH-JSON "


class CouldNotMeasure(Exception):
    """The bench ran but has no figure to show (no samples, nothing delivered, ...)."""


@dataclass
class Figure:
    name: str
    value: float
    unit: str = ""
    goal: float | None = None  # at most this much (same unit); None: no goal

    def met(self) -> bool | None:
        return None if self.goal is None or not math.isfinite(self.value) else self.value <= self.goal


def machine_load() -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    return {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2), "cores": os.cpu_count() or 0}


#: the bench process's start (bench.common is imported first thing): the report's "at start"
_STARTED = time.monotonic()
_LOAD_AT_START = machine_load()


@dataclass
class Report:
    """``report = Report("bench.x", "what it measures", size="1000 events")``, ``report.add(...)``, then
    ``report.finish()`` prints it and returns the exit code (see the module docstring)."""

    bench: str
    what: str
    size: str = ""
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load_start: dict[str, float] = field(default_factory=lambda: dict(_LOAD_AT_START))
    started: float = _STARTED

    def add(self, name: str, value: float | None, unit: str = "", goal: float | None = None) -> Figure:
        figure = Figure(name, float("nan") if value is None else float(value), unit, goal)
        self.figures.append(figure)
        return figure

    def add_percentiles(self, name: str, values: list[float], unit: str, ps: tuple[int, ...] = (50, 95, 99),
                        goals: dict[str, float] | None = None) -> None:
        """``name p50``, ``name p95``, ... and ``name max`` of ``values`` (nothing measured: NaN)."""
        goals = goals or {}
        for p in ps:
            self.add(f"{name} p{p}", pct(values, p), unit, goals.get(f"p{p}"))
        self.add(f"{name} max", max(values) if values else None, unit, goals.get("max"))

    def add_timing_comparison(self, slower: str, faster: str, timings: dict[str, list[float]]) -> None:
        """Can ``slower`` be told from ``faster`` by time?  The share of pairs where it is slower (0.5:
        no) as a figure, its p-value as a note (see :func:`slower_share`)."""
        share, p_value = slower_share(timings[slower], timings[faster])
        self.add(f"{slower} slower than {faster} (share of pairs; 0.5: indistinguishable)", share)
        self.note(f"{slower} vs {faster}: share {share:.3f}, two-sided p = {p_value:.3g} (Mann-Whitney; "
                  "p < 0.01 with a share away from 0.5 means the two can be told apart by time)")

    def note(self, text: str) -> None:
        self.notes.append(text)

    def missing(self) -> list[str]:
        return [f.name for f in self.figures if not math.isfinite(f.value)]

    def as_dict(self) -> dict:
        return {"bench": self.bench, "what": self.what, "size": self.size,
                "figures": [{"name": f.name, "value": f.value if math.isfinite(f.value) else None, "unit": f.unit,
                             "goal": f.goal, "met": f.met()} for f in self.figures],
                "notes": self.notes, "load": {"start": self.load_start, "end": machine_load()},
                "wall_s": round(time.monotonic() - self.started, 2)}

    def render(self) -> str:
        data = self.as_dict()
        width = max([len(f.name) for f in self.figures] + [10])
        lines = [f"{self.bench}: {self.what}", f"  size: {self.size}"]
        for f in self.figures:
            shown = f"{f.value:12.2f}" if math.isfinite(f.value) else f"{'n/a':>12}"
            goal = "" if f.goal is None else f"   goal <= {f.goal:g} {f.unit}: {'met' if f.met() else 'MISSED'}"
            lines.append(f"  {f.name:<{width}} {shown} {f.unit}{goal}")
        lines += [f"  note: {n}" for n in self.notes]
        start, end = data["load"]["start"], data["load"]["end"]
        lines.append(f"  machine: load average (1 min) {start['1m']:.2f} at start, {end['1m']:.2f} at end, "
                     f"on {end['cores']} cores; {data['wall_s']:.1f} s wall")
        return "\n".join(lines)

    def finish(self) -> int:
        """Print the report; 0, or 3 when no figure (or a NaN one) says the bench could not measure."""
        print(self.render(), flush=True)
        print(JSON_PREFIX + json.dumps(self.as_dict(), ensure_ascii=False), flush=True)
        missing = self.missing() if self.figures else ["every figure"]
        if missing:
            print(f"{self.bench}: could not measure {', '.join(missing)}", file=sys.stderr, flush=True)
            return 3
        return 0


def run(main: Callable[[], int | None]) -> None:
    """Run a bench's ``main`` and exit with its code; an exception exits 2 after saying what failed."""
    try:
        code = main()
    except KeyboardInterrupt:
        raise
    except CouldNotMeasure as exc:
        print(f"could not measure: {exc}", file=sys.stderr, flush=True)
        code = 3
    except Exception:  # noqa: BLE001 - a bench that crashed did not measure
        traceback.print_exc()
        code = 2
    sys.exit(code or 0)


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of the bench's own on a free port, no persistence; yields its URL.  Never a
    shared Redis: flushing one would wipe someone else's limiter state (or data)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise CouldNotMeasure("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise CouldNotMeasure(f"a private redis-server on port {port} did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(10)


#: a migrated database to copy instead of migrating each scratch database (~1 s): the smoke test passes
#: its own template (tests/integration/test_benches.py); nobody may be connected to it
TEMPLATE_DB_ENV = "VESTNIK_BENCH_TEMPLATE_DB"


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh migrated PostgreSQL database, dropped afterwards; yields its URL."""
    name = f"vestnik_bench_{uuid.uuid4().hex[:8]}"
    template = os.environ.get(TEMPLATE_DB_ENV)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    if not template:
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


def slower_share(a: list[float], b: list[float]) -> tuple[float, float]:
    """How often a sample of ``a`` is slower than one of ``b`` (ties count half), and the two-sided p-value.

    The share is the Mann-Whitney U statistic over ``len(a) * len(b)``: 0.5 when neither kind is
    slower, so a timing side channel shows as a share away from 0.5 with a small p-value (normal
    approximation with the tie correction, fine for the tens of samples and more a bench takes).
    """
    if not a or not b:
        return float("nan"), float("nan")
    ranked = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(ranked)
    ties = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        ties += (j - i + 1) ** 3 - (j - i + 1)
        i = j + 1
    n1, n2 = len(a), len(b)
    u = sum(r for r, (_, kind) in zip(ranks, ranked, strict=True) if kind == 0) - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    z = (u - n1 * n2 / 2) / math.sqrt(variance) if variance > 0 else 0.0
    return u / (n1 * n2), math.erfc(abs(z) / math.sqrt(2))


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
    redis_url: str = ""

    @property
    def redis_port(self) -> int | None:
        return int(self.redis_url.rsplit(":", 1)[1].split("/")[0]) if self.redis_url else None

    def delivered(self) -> int:
        """Messages the fakes accepted (counted, not copied or parsed: benches poll this)."""
        return self.bot.count() + self.smtp.count()

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


def wait_until_up(heartbeat_dir: str, commands: list[str], timeout_s: float = 120) -> None:
    """Until each relay, worker and scheduler among ``commands`` has beaten its heartbeat in ``heartbeat_dir``
    (``VESTNIK_HEARTBEAT_DIR``): the relay has turned its loop, a worker's consumers run, the scheduler
    checked its lock (``shared/heartbeat.py``).  Seconds on a busy machine, under one on a quiet one."""
    names = set(commands) & set(heartbeat.NAMES)
    deadline = time.monotonic() + timeout_s
    while missing := sorted(n for n in names if not os.path.exists(os.path.join(heartbeat_dir, n))):
        if time.monotonic() > deadline:
            raise CouldNotMeasure(f"no heartbeat from {', '.join(missing)} within {timeout_s:g} s of the start")
        time.sleep(0.05)  # a benchmark's polling loop


@contextmanager
def production_stack(clients: int, processes: list[tuple[str, ...]], env: dict[str, str] | None = None,
                     *, limits: str = "lifted", lean_smtp: bool = False) -> Iterator[Stack]:
    """Scratch PostgreSQL database with ``clients`` clients (Telegram and email each), a fresh RabbitMQ
    vhost, a private redis-server, the fake Bot API and SMTP sink, and ``vestnik`` processes (e.g. ``("relay",)``,
    ``("worker", "--processes", "1")``), named ``relay``, ``worker``, ... (``worker-2`` for a second one);
    everything torn down afterwards.  ``lean_smtp``: the SMTP sink is :class:`LeanSmtpSink` (the same ledger,
    about a sixth of aiosmtpd's CPU per message) for benches that count CPU per message."""
    vhost = f"bench_{uuid.uuid4().hex[:6]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True)
    try:
        with ExitStack() as stack:
            redis_url = stack.enter_context(private_redis())
            url = stack.enter_context(scratch_database())
            bot = stack.enter_context(FakeBotApi())
            smtp = stack.enter_context(LeanSmtpSink() if lean_smtp else FakeSmtpServer())
            factory = make_session_factory(make_engine(url))
            csv = "id,name,email,telegram_chat_id,locale,timezone\n" + "".join(
                f"{i},Client {i},c{i}@example.com,{100000 + i},ru,Europe/Moscow\n" for i in range(1, clients + 1))
            with factory() as s:
                install_default_templates(s)
                import_clients(s, io.StringIO(csv))
                s.commit()
            full_env = {**os.environ, "VESTNIK_DATABASE_URL": url,
                        "VESTNIK_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                        "VESTNIK_REDIS_URL": redis_url, "VESTNIK_TELEGRAM_TOKEN": bot.token,
                        "VESTNIK_TELEGRAM_API_BASE": bot.url, "VESTNIK_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
                        "VESTNIK_LOG_LEVEL": "WARNING", **(NO_LIMITS if limits == "lifted" else {}),
                        **(env or {})}
            logs = stack.enter_context(tempfile.TemporaryDirectory())
            full_env["VESTNIK_HEARTBEAT_DIR"] = logs  # wait_until_up reads them
            result = Stack(factory, bot, smtp, full_env, logs, database=url.rsplit("/", 1)[1], vhost=vhost,
                           redis_url=redis_url)
            for args in processes:
                name = args[0] if args[0] not in result.procs else f"{args[0]}-{len(result.procs)}"
                result.start(name, args)
            try:
                wait_until_up(logs, [args[0] for args in processes])  # before a benchmark starts its clock
                yield result
            finally:
                result.stop_all()
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True)
