"""CRM overhead of emit: a tiny CRM transaction with and without ``emit``.

Both kinds run interleaved in one process against one PostgreSQL database, so
the ratio compares like with like.  Run: ``.venv/bin/python -m bench.crm_overhead``
(options: ``--n 3000``).
"""

from __future__ import annotations

import argparse
import statistics
import time

from sqlalchemy import text

from bench.common import Report, run, scratch_database
from vestnik.outbox import emit
from vestnik.shared.db import make_engine, make_session_factory

DATA = {"lesson_title": "Робототехника", "old_starts_at": "2026-11-25T16:00:00+03:00",
        "starts_at": "2026-11-26T16:00:00+03:00"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000, help="transactions of each kind")
    args = parser.parse_args()
    with scratch_database() as url:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE crm_lessons (id int primary key, starts_at timestamptz, version int)"))
            conn.execute(text("INSERT INTO crm_lessons SELECT g, now(), 0 FROM generate_series(1, 1000) g"))
        plain: list[float] = []
        with_emit: list[float] = []
        for i in range(args.n * 2 + 200):
            lesson = i % 1000 + 1
            use_emit = i % 2 == 1
            t0 = time.perf_counter()
            with factory() as s:
                s.execute(text("UPDATE crm_lessons SET starts_at = now(), version = version + 1 WHERE id = :id"),
                          {"id": lesson})
                if use_emit:
                    emit(s, "lesson_rescheduled", recipients=[lesson], data=DATA, key=f"lesson:{lesson}")
                s.commit()
            elapsed = time.perf_counter() - t0
            if i >= 200:  # warm-up excluded
                (with_emit if use_emit else plain).append(elapsed)
        engine.dispose()
    report = Report("bench.crm_overhead", "a tiny CRM transaction (UPDATE one row + COMMIT) with and without emit, "
                    "PostgreSQL, interleaved in one process", size=f"{args.n} transactions of each kind")
    for name, values in (("without emit", plain), ("with emit", with_emit)):
        ms = [v * 1000 for v in values]
        report.add(f"{name} mean", statistics.fmean(ms) if ms else None, "ms")
        report.add_percentiles(name, ms, "ms", ps=(50, 99))
    if plain and with_emit:
        report.add("ratio of the means", statistics.fmean(with_emit) / statistics.fmean(plain), "x")
    return report.finish()

if __name__ == "__main__":
    run(main)
