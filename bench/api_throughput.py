"""The HTTP API under gunicorn: events per second and latency at a steady offered rate.

``vestnik web`` (gunicorn, its production settings) on a scratch PostgreSQL
database, with a private redis-server for the per-key limit; an API key made
for the run.  ``--connections`` client threads, each with its own keep-alive
connection, send ``POST /api/v1/events`` (each with its own
``Idempotency-Key``) on a fixed schedule of ``--rate`` requests a second for
``--seconds``: the schedule does not wait for slow answers, and a request's
latency is counted from its scheduled time, so queueing shows in p99 instead
of hiding (no coordinated omission).  Reported: the achieved rate, p50/p99
latency, errors, the rows written, and the web processes' CPU per event.

Run: ``.venv/bin/python -m bench.api_throughput --rate 200 --seconds 20``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from bench.common import ROOT, CouldNotMeasure, Report, private_redis, run, scratch_database
from vestnik.shared import api_keys
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import OutboxEvent

BODY = {"event_type": "lesson_cancelled", "recipients": [17], "key": "lesson:42",
        "data": {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00",
                 "reason": "болезнь преподавателя"}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (gunicorn's master and workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = {pid}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.add(int(entry.name))
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _wait_ready(port: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CouldNotMeasure(f"vestnik web exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/openapi.json")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise CouldNotMeasure(f"vestnik web did not answer within {timeout_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200, help="requests a second offered")
    parser.add_argument("--seconds", type=float, default=20, help="how long the rate is held")
    parser.add_argument("--connections", type=int, default=16, help="client threads, one keep-alive connection each")
    args = parser.parse_args()
    total = int(args.rate * args.seconds)
    with private_redis() as redis_url, scratch_database() as url:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        with factory() as s:
            _key, raw = api_keys.create(s, "bench", "bench")
            s.commit()
        port = _free_port()
        env = {**os.environ, "VESTNIK_DATABASE_URL": url, "VESTNIK_REDIS_URL": redis_url,
               "VESTNIK_SECRET_KEY": "bench-" + "k" * 32, "VESTNIK_API_RATE_PER_MIN": "100000000",
               "VESTNIK_LOG_LEVEL": "WARNING"}
        web = subprocess.Popen([sys.executable, "-m", "vestnik", "web", "--port", str(port)], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_ready(port, web)
            latencies: list[float] = []
            statuses: dict[int, int] = {}
            lock = threading.Lock()
            counter = iter(range(total))
            start = time.monotonic() + 0.5
            cpu_before = _tree_cpu_s(web.pid)

            def client() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        break
                    due = start + i / args.rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    headers = {"Authorization": f"Bearer {raw}", "Content-Type": "application/json",
                               "Idempotency-Key": f"bench-{i}"}
                    try:
                        conn.request("POST", "/api/v1/events", body=json.dumps(BODY).encode(), headers=headers)
                        response = conn.getresponse()
                        response.read()
                        status = response.status
                    except OSError:
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                        status = 0
                    done = time.monotonic()
                    with lock:
                        statuses[status] = statuses.get(status, 0) + 1
                        latencies.append((done - due) * 1000)
                conn.close()

            threads = [threading.Thread(target=client) for _ in range(args.connections)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - start
            cpu_s = _tree_cpu_s(web.pid) - cpu_before
        finally:
            os.killpg(web.pid, signal.SIGTERM)
            web.wait(30)
        with factory() as s:
            rows = s.scalar(select(func.count()).select_from(OutboxEvent))
        engine.dispose()
    accepted = statuses.get(202, 0)
    if not accepted:
        raise CouldNotMeasure(f"no request was accepted: {statuses}")
    report = Report("bench.api_throughput", "POST /api/v1/events under gunicorn (vestnik web: its workers and "
                    "threads), PostgreSQL, Redis for the per-key limit, a steady offered rate from keep-alive "
                    "connections",
                    size=f"{total} requests at {args.rate:g}/s offered, {args.connections} connections")
    report.add("accepted events per second", accepted / elapsed, "/s")
    report.add_percentiles("latency from the scheduled time", latencies, "ms", ps=(50, 99))
    report.add("requests not accepted", total - accepted, "")
    report.add("web CPU per accepted event (all gunicorn processes)", cpu_s * 1000 / accepted, "ms")
    if rows != accepted:
        report.note(f"{rows} outbox rows for {accepted} accepted requests")
    report.note(f"answers: {json.dumps(statuses)}")
    return report.finish()


if __name__ == "__main__":
    run(main)
