"""What the light client and the SQL function cost a CRM transaction, against a hand-written INSERT.

Three kinds of tiny CRM transaction run interleaved (round-robin) on one
psycopg connection to one PostgreSQL database: UPDATE one CRM row, then add
the same outbox row

- by hand: ``INSERT INTO outbox_events ... VALUES (...)`` with ``json.dumps``
  of recipients and data, nothing checked;
- with ``vestnik_client.emit`` (checks the event against its registry, then
  the same one INSERT);
- with ``SELECT vestnik_emit(...)`` (checks it in the database, then INSERTs);

then COMMIT.  Reported: each kind's transaction time (mean, p50, p99), the
ratios of the means against the hand-written INSERT (goals: client <= 1.05,
SQL function <= 1.10), the event step alone, and the client's own CPU time
per event (what validation costs in the CRM's process).

Run: ``.venv/bin/python -m bench.client_overhead --n 2000``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import psycopg

from bench.common import CouldNotMeasure, Report, run, scratch_database
from vestnik_client import INSERT, emit

EVENT = "lesson_rescheduled"
DATA = {"lesson_title": "Робототехника", "old_starts_at": "2026-11-25T16:00:00+03:00",
        "starts_at": "2026-11-26T16:00:00+03:00", "room": "Аудитория 3"}
KINDS = ("insert", "client", "sql")


def _by_hand(conn: psycopg.Connection, lesson: int) -> None:
    conn.execute(INSERT, [EVENT, json.dumps([lesson]), json.dumps(DATA, ensure_ascii=False), f"lesson:{lesson}",
                          None, None]).fetchone()


def _client(conn: psycopg.Connection, lesson: int) -> None:
    emit(conn, EVENT, recipients=[lesson], data=DATA, key=f"lesson:{lesson}")


def _sql(conn: psycopg.Connection, lesson: int) -> None:
    conn.execute("SELECT vestnik_emit(%s, %s::jsonb, %s::jsonb, %s)",
                 [EVENT, json.dumps([lesson]), json.dumps(DATA, ensure_ascii=False), f"lesson:{lesson}"]).fetchone()


STEP = {"insert": _by_hand, "client": _client, "sql": _sql}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000, help="transactions of each kind")
    parser.add_argument("--warmup", type=int, default=100, help="transactions of each kind left out first")
    args = parser.parse_args()
    total = {k: [] for k in KINDS}
    step = {k: [] for k in KINDS}
    cpu = {k: [] for k in KINDS}
    with scratch_database() as url:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            conn.execute("CREATE TABLE crm_lessons (id int PRIMARY KEY, starts_at timestamptz, version int)")
            conn.execute("INSERT INTO crm_lessons SELECT g, now(), 0 FROM generate_series(1, 1000) g")
            conn.commit()
            for i in range((args.n + args.warmup) * len(KINDS)):
                kind = KINDS[i % len(KINDS)]
                lesson = i % 1000 + 1
                t0 = time.perf_counter()
                conn.execute("UPDATE crm_lessons SET starts_at = now(), version = version + 1 WHERE id = %s",
                             [lesson])
                t1, c1 = time.perf_counter(), time.process_time()
                STEP[kind](conn, lesson)
                t2, c2 = time.perf_counter(), time.process_time()
                conn.commit()
                t3 = time.perf_counter()
                if i >= args.warmup * len(KINDS):
                    total[kind].append((t3 - t0) * 1000)
                    step[kind].append((t2 - t1) * 1000)
                    cpu[kind].append((c2 - c1) * 1e6)
            rows = conn.execute("SELECT count(*) FROM outbox_events").fetchone()[0]
    if rows != (args.n + args.warmup) * len(KINDS):
        raise CouldNotMeasure(f"{rows} outbox rows, expected {(args.n + args.warmup) * len(KINDS)}")
    report = Report("bench.client_overhead", "a tiny CRM transaction (UPDATE one row, add one event, COMMIT) with a "
                    "hand-written INSERT, vestnik_client.emit and SELECT vestnik_emit(...), interleaved on one "
                    "psycopg connection, PostgreSQL", size=f"{args.n} transactions of each kind")
    for kind in KINDS:
        report.add(f"{kind}: transaction mean", statistics.fmean(total[kind]), "ms")
        report.add_percentiles(f"{kind}: transaction", total[kind], "ms", ps=(50, 99))
    base = statistics.fmean(total["insert"])
    report.add("client / hand-written INSERT (transaction means)", statistics.fmean(total["client"]) / base, "x",
               goal=1.05)
    report.add("vestnik_emit / hand-written INSERT (transaction means)", statistics.fmean(total["sql"]) / base, "x",
               goal=1.10)
    for kind in KINDS:
        report.add(f"{kind}: the event step alone, p50", statistics.median(step[kind]), "ms")
    report.add("client: CPU in the CRM's process per event (validation + INSERT), mean",
               statistics.fmean(cpu["client"]), "us")
    report.add("hand-written: CPU in the CRM's process per event, mean", statistics.fmean(cpu["insert"]), "us")
    return report.finish()


if __name__ == "__main__":
    run(main)
