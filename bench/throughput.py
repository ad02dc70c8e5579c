"""End-to-end throughput and latency: events -> messages accepted by the local fake Bot API and SMTP
server, limits lifted, with CPU time per message for every process that takes part.

Production shape: PostgreSQL, RabbitMQ, a private Redis, ``vestnik relay`` and ``vestnik worker``
(``--processes`` worker processes) as separate processes.  Each event goes to ``--recipients``
clients of its own, each with Telegram and email, so it yields ``2 x recipients`` messages.

Throughput: all events are committed at once; the clock runs from the first commit to the last
message accepted.  CPU: user + system time of each process over the same span, per message:

- worker, relay: the ``vestnik`` processes and their children;
- PostgreSQL: the backends connected to the bench's own database (sampled at start and end);
- Redis: the bench's private redis-server;
- RabbitMQ: the whole server (shared with whatever else runs on this machine: an upper bound);
- fakes: the bench process's threads other than its main one (the fake Bot API and SMTP sink);
  the SMTP sink is ``LeanSmtpSink`` (``shared/fakes/smtp.py``: aiosmtpd's ledger and scripted replies
  behind a lean server, 0.08 ms of CPU per message against aiosmtpd's 0.5, ``bench.fakes_cpu``), so
  the fakes take little of the two cores; the tests send to aiosmtpd;
- the CRM's emits (the bench's main thread) are not Vestnik's cost and are shown apart.

Latency (``--rate``): events with one recipient are committed at a steady rate; each message's
latency is from its event's commit to the fake provider's acceptance.  ``--timeline`` adds where that
time goes: every process notes when each event or row passes a stage (``shared/timeline.py``) and the
report shows each step's p50 and p99.

Run: ``.venv/bin/python -m bench.throughput --events 30 --recipients 100 --processes 2``
and ``--events 1000 --recipients 1``; latency: ``--rate 100 --seconds 20``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import threading
import time

from sqlalchemy import create_engine, text

from bench.common import PG_ADMIN_URL, CouldNotMeasure, Report, production_stack, run
from vestnik.outbox import emit

DATA = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}
TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def _cpu_s(pid: int) -> float:
    """User + system seconds of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _pgrep(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


class CpuMeter:
    """CPU seconds per group of processes between :meth:`start` and :meth:`stop`.

    Processes come and go (a pool's overflow connection, a worker's child): a thread samples every
    group every 0.2 s and keeps each process's latest figure, so one that ends meanwhile still
    counts up to its last sample.
    """

    def __init__(self, stack, database: str) -> None:  # noqa: ANN001 - bench.common.Stack
        self.stack = stack
        self.database = database
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.latest: dict[str, dict[int, float]] = {}
        #: the CRM's own PostgreSQL backends (its emit transactions): not Vestnik's cost, shown apart
        self.crm_backends: set[int] = set()
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self.halt.wait(0.2):
            self._remember(self._sample())

    def _remember(self, sample: dict[str, dict[int, float]]) -> None:
        for name, pids in sample.items():
            known = self.latest.setdefault(name, {})
            for pid, cpu in pids.items():
                known[pid] = max(cpu, known.get(pid, 0.0))

    def _backends(self) -> list[int]:
        with self.admin.connect() as conn:
            return [int(r[0]) for r in conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :db"), {"db": self.database})]

    def _groups(self) -> dict[str, list[int]]:
        groups = {name: _tree(p.pid) for name, p in self.stack.procs.items()}
        backends = self._backends()
        groups["postgresql"] = [pid for pid in backends if pid not in self.crm_backends]
        groups["CRM's PostgreSQL backend (emits, not Vestnik)"] = [pid for pid in backends if pid in self.crm_backends]
        groups["redis"] = _pgrep(f"redis-server.*:{self.stack.redis_port}") if self.stack.redis_port else []
        groups["rabbitmq (whole server, shared)"] = _pgrep("beam.smp")
        return groups

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {pid: _cpu_s(pid) for pid in pids} for name, pids in self._groups().items()}

    def start(self) -> None:
        self.before = self._sample()
        self.self_before = resource.getrusage(resource.RUSAGE_SELF)
        self.main_before = time.thread_time()
        self.thread.start()

    def stop(self) -> dict[str, float]:
        self.halt.set()
        self.thread.join()
        self._remember(self._sample())
        out = {}
        base = {pid: cpu for pids in self.before.values() for pid, cpu in pids.items()}  # a pid may change group
        for name, pids in self.latest.items():
            # A process that started meanwhile counts from zero.
            out[name] = sum(cpu - base.get(pid, 0.0) for pid, cpu in pids.items())
        usage = resource.getrusage(resource.RUSAGE_SELF)
        process = (usage.ru_utime + usage.ru_stime) - (self.self_before.ru_utime + self.self_before.ru_stime)
        main = time.thread_time() - self.main_before
        out["fakes (Bot API, SMTP sink) + the meter"] = process - main
        out["CRM emits + polling (not Vestnik)"] = main
        return out


def _consumers(broker_url: str, queue: str) -> int:
    """Consumers of ``queue``: a passive declare's answer (0 while nobody declared it yet), a few
    milliseconds where ``rabbitmqctl list_queues`` takes a second of CPU."""
    import pika
    from pika.exceptions import ChannelClosedByBroker

    with pika.BlockingConnection(pika.URLParameters(broker_url)) as connection:
        try:
            return connection.channel().queue_declare(queue, passive=True).method.consumer_count
        except ChannelClosedByBroker:  # 404: no such queue yet
            return 0


def warm_up(stack, client: int, processes: int) -> None:  # noqa: ANN001 - bench.common.Stack
    """Wait until each of the ``processes`` worker processes consumes, then send one event to ``client``
    and wait until both its messages are accepted: the clock starts once every process is up and
    connected (a worker process still booting adds its start-up, seconds of CPU, to the first events'
    latency and to every figure per message).  ``client``'s messages are not counted."""
    deadline = time.monotonic() + 120
    while _consumers(stack.env["VESTNIK_BROKER_URL"], "events") < processes:
        if time.monotonic() > deadline:
            raise CouldNotMeasure(f"{processes} worker processes did not all consume within 120 s")
        time.sleep(0.05)  # a benchmark's polling loop, not a test's synchronisation
    with stack.factory() as s:
        emit(s, "lesson_cancelled", recipients=[client], data=DATA)
        s.commit()
    deadline = time.monotonic() + 120
    while stack.delivered() < 2:
        if time.monotonic() > deadline:
            raise CouldNotMeasure("the warm-up event was not delivered within 120 s")
        time.sleep(0.02)  # a benchmark's polling loop, not a test's synchronisation


def throughput(report: Report, events: int, recipients: int, processes: int, threads: int) -> None:
    total = events * recipients * 2 + 2  # + the warm-up's two
    workers = ("worker", "--processes", str(processes), "--threads", str(threads))
    with production_stack(events * recipients + 1, [("relay",), workers], lean_smtp=True) as stack:
        warm_up(stack, events * recipients + 1, processes)
        meter = CpuMeter(stack, stack.database)
        meter.start()
        t0 = time.perf_counter()
        with stack.factory() as s:
            meter.crm_backends.add(s.execute(text("SELECT pg_backend_pid()")).scalar_one())
            for e in range(events):
                emit(s, "lesson_cancelled", recipients=list(range(e * recipients + 1, (e + 1) * recipients + 1)),
                     data=DATA)
                if e % 100 == 99:
                    s.commit()
            s.commit()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and stack.delivered() < total:
            time.sleep(0.02)  # a benchmark's polling loop, not a test's synchronisation
        elapsed = time.perf_counter() - t0
        delivered = stack.delivered() - 2
        cpu = meter.stop()
    label = f"{processes} worker process(es), {recipients} recipient(s)/event"
    if not delivered:
        raise CouldNotMeasure("nothing was delivered")
    report.add(f"{label}: delivered", delivered, "messages")
    report.add(f"{label}: rate", delivered / elapsed, "messages/s", goal=None)
    _cpu_figures(report, label, cpu, delivered)


def _cpu_figures(report: Report, label: str, cpu: dict[str, float], delivered: int, goal: float | None = 1.2) -> None:
    """CPU per message of each process, and in all; ``goal``: the issue's 1.2 ms, set for the throughput runs
    (a trickle's small batches cost more per message by design: shown, not judged)."""
    vestnik_cpu = 0.0
    for name, seconds in cpu.items():
        report.add(f"{label}: CPU {name}", seconds * 1000 / delivered, "ms/message")
        if not name.startswith(("CRM", "rabbitmq")):
            vestnik_cpu += seconds
    report.add(f"{label}: CPU total (without RabbitMQ and the CRM)", vestnik_cpu * 1000 / delivered, "ms/message",
               goal=goal)


#: the stages of ``--timeline``, in the order one message passes them (shared/timeline.py marks them)
STAGES = (
    ("commit -> relay claimed", "commit", "relay.claimed"),
    ("relay claimed -> publish confirmed", "relay.claimed", "relay.confirmed"),
    ("confirmed -> relay committed", "relay.confirmed", "relay.committed"),
    ("relay committed -> handling started", "relay.committed", "handle.start"),
    ("handling started -> committed", "handle.start", "handle.committed"),
    ("handling committed -> pump woken (or inline send started)", "handle.committed", "pump.wake"),
    ("(pump message: enqueued -> actor started)", "pump.enqueued", "pump.wake"),
    ("pump woken -> claim committed", "pump.wake", "pump.claimed"),
    ("claim committed -> provider accepted", "pump.claimed", "accepted"),
    ("provider accepted -> chunk sent", "accepted", "pump.sent"),
    ("chunk sent -> recorded", "pump.sent", "pump.recorded"),
)


def latency(report: Report, rate: float, seconds: float, processes: int, threads: int,
            timeline_dir: str | None = None) -> None:
    events = max(1, int(rate * seconds))
    workers = ("worker", "--processes", str(processes), "--threads", str(threads))
    env = {"VESTNIK_TIMELINE": timeline_dir} if timeline_dir else None
    with production_stack(events + 1, [("relay",), workers], env=env, lean_smtp=True) as stack:
        warm_up(stack, events + 1, processes)
        meter = CpuMeter(stack, stack.database)
        meter.start()
        committed: dict[int, float] = {}  # client -> its event's commit
        event_of: dict[int, int] = {}  # client -> event id
        start = time.time()
        with stack.factory() as s:
            meter.crm_backends.add(s.execute(text("SELECT pg_backend_pid()")).scalar_one())
            for i in range(1, events + 1):
                due = start + (i - 1) / rate
                pause = due - time.time()
                if pause > 0:
                    time.sleep(pause)  # the CRM's pace, not a synchronisation
                event_of[i] = emit(s, "lesson_cancelled", recipients=[i], data=DATA)
                s.commit()
                committed[i] = time.time()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and stack.delivered() < 2 * events + 2:
            time.sleep(0.02)
        cpu = meter.stop()
        delivered = stack.delivered() - 2
        values = []
        accepted: dict[tuple[int, str], float] = {}  # (client, channel) -> the fake's acceptance
        for m in stack.bot.messages():
            client = int(m["chat_id"]) - 100000
            if client in committed:
                values.append((m["time"] - committed[client]) * 1000)
                accepted[(client, "telegram")] = m["time"]
        for m in stack.smtp.messages():
            client = int(str(m["to"]).split("@")[0][1:])
            if client in committed:
                values.append((m["time"] - committed[client]) * 1000)
                accepted[(client, "email")] = m["time"]
        if timeline_dir:
            with stack.factory() as s:
                rows = s.execute(text("SELECT id, event_id, recipient_id, channel FROM notifications")).all()
            _timeline(report, timeline_dir, committed, event_of, accepted, rows)
    # One recipient per event (two messages: Telegram and email), as the goal means it.
    if delivered:  # the small batches of a steady trickle: what each message costs on the latency path
        _cpu_figures(report, f"latency run, {rate:g} events/s", cpu, delivered, goal=None)
    report.add_percentiles(f"latency at {rate:g} events/s of 1 recipient each (commit -> accepted)", values, "ms",
                           ps=(50, 99), goals={"p50": 30, "p99": 150})


def _timeline(report: Report, directory: str, committed: dict[int, float], event_of: dict[int, int],
              accepted: dict[tuple[int, str], float], rows: list) -> None:  # noqa: ANN001
    """Each message's timestamps at every stage (``STAGES``), joined by event and notification id; the
    p50 and p99 of each step's milliseconds go into the report."""
    from vestnik.shared import timeline

    by_event: dict[int, dict[str, float]] = {}
    by_row: dict[int, dict[str, float]] = {}
    for line in timeline.read(directory):
        stage, t = line["s"], line["t"]
        if stage.startswith(("relay.", "handle.")):
            for i in line["ids"]:
                by_event.setdefault(i, {}).setdefault(stage, t)  # the first time counts (a redelivery is later)
        elif stage == "pump.done":
            for i in line["ids"]:
                marks = by_row.setdefault(i, {})
                if "pump.wake" not in marks or line["started"] < marks["pump.wake"]:
                    marks["pump.wake"] = line["started"]  # a pump's start, or handling's own send (inline)
                    if line["enqueued"] is not None:
                        marks["pump.enqueued"] = line["enqueued"]
                    else:
                        marks.pop("pump.enqueued", None)
        else:
            for i in line["ids"]:
                by_row.setdefault(i, {}).setdefault(stage, t)
    client_of = {event: client for client, event in event_of.items()}
    steps: dict[str, list[float]] = {name: [] for name, _, _ in STAGES}
    for row_id, event_id, client, channel in rows:
        if client not in committed or row_id not in by_row:
            continue
        marks = {**by_event.get(event_id, {}), **by_row[row_id], "commit": committed[client_of.get(event_id, client)]}
        if (client, channel) in accepted:
            marks["accepted"] = accepted[(client, channel)]
        for name, a, b in STAGES:
            if a in marks and b in marks:
                steps[name].append((marks[b] - marks[a]) * 1000)
    for name, _, _ in STAGES:
        if steps[name]:  # a step no message took (no pump message when handling sends itself) shows nothing
            report.add_percentiles(f"timeline: {name}", steps[name], "ms", ps=(50, 99))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--recipients", type=int, default=100, help="clients per event (each: Telegram + email)")
    parser.add_argument("--processes", type=int, nargs="+", default=[2])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0.0, help="also measure latency at this many events/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the latency run emits")
    parser.add_argument("--timeline", nargs="?", const="", default=None, metavar="DIR",
                        help="with --rate: each message's time at every stage, from the processes' timestamps "
                             "(kept in DIR when given)")
    args = parser.parse_args()
    report = Report("bench.throughput", "end-to-end throughput, events to messages accepted by the fake Bot API "
                    "and SMTP sink, limits lifted (relay and worker processes), with CPU per message per process",
                    size=f"{args.events} events x {args.recipients} recipients x 2 channels, "
                         f"{args.threads} threads per worker process")
    for n in args.processes if args.events else ():  # --events 0: the latency run only
        throughput(report, args.events, args.recipients, n, args.threads)
    if args.rate:
        with tempfile.TemporaryDirectory() as directory:
            if args.timeline:
                os.makedirs(args.timeline, exist_ok=True)
            latency(report, args.rate, args.seconds, args.processes[-1], args.threads,
                    (args.timeline or directory) if args.timeline is not None else None)
    report.note("CPU of PostgreSQL counts the backends of the bench's database only; RabbitMQ is the whole "
                "(shared) server")
    return report.finish()


if __name__ == "__main__":
    run(main)
