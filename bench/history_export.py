"""The history's CSV export on a production-sized table: time and peak memory.

Fills a dedicated PostgreSQL database (``vestnik_bench_export``; the fill of
``bench/admin_history.py``: realistic clients, channels, statuses, a year of dates) with
1,000,000 notifications, signs in through the Flask test client and downloads
``/admin/notification/export/csv/`` — every row, streamed from a server-side cursor —
reading the response chunk by chunk as a browser would, without keeping it.  Then the
same for a filtered tenth of the table (the last ~36 days).  Memory is bounded when the
peak for the whole table is about the peak for a tenth of it.

Peak memory is the process's resident high-water mark (``VmHWM``), reset before each
export (``/proc/self/clear_refs``), minus the resident size before it.

Run: ``.venv/bin/python -m bench.history_export`` (``--reuse`` keeps a filled database).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from bench.admin_history import history_parser, on_history, signed_in
from bench.common import CouldNotMeasure, Report, run


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise CouldNotMeasure(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def export(client, query: str) -> tuple[int, int, float, float]:
    """(rows, bytes, seconds, peak MB above the start) of one streamed download."""
    _reset_peak()
    base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    resp = client.get(f"/admin/notification/export/csv/{query}", buffered=False)
    if resp.status_code != 200 or not resp.is_streamed:
        raise CouldNotMeasure(f"export answered {resp.status_code} (streamed: {resp.is_streamed})")
    lines = size = 0
    for chunk in resp.response:
        data = chunk if isinstance(chunk, bytes) else chunk.encode()
        size += len(data)
        lines += data.count(b"\n")
    resp.close()
    seconds = time.perf_counter() - t0
    peak = (_status_kb("VmHWM") - base) / 1024
    return lines - 1, size, seconds, max(0.0, peak)


def main() -> int:
    return on_history(history_parser(rows=1_000_000, db="vestnik_bench_export").parse_args(), measure)


def measure(url: str, args: argparse.Namespace) -> int:
    engine, factory, client = signed_in(url)
    with factory() as s:
        total = s.execute(text("SELECT count(*) FROM notifications")).scalar() or 0
    report = Report("bench.history_export", "the history's CSV export (every row, streamed from a server-side "
                    "cursor) through the Flask test client on PostgreSQL: time and peak memory",
                    size=f"{total:,} notifications")
    since = datetime.now(UTC) - timedelta(days=36)
    tenth = f"?flt0_created_utc_greater_than={since:%Y-%m-%d+%H:%M:%S}"
    for label, query in (("whole table", ""), ("last 36 days (about a tenth)", tenth)):
        rows, size, seconds, peak = export(client, query)
        if label == "whole table" and rows != total:
            raise CouldNotMeasure(f"exported {rows:,} rows of {total:,}")
        print(f"{label:30} {rows:>10,} rows {size / 1e6:8.1f} MB {seconds:7.1f} s {rows / seconds:9,.0f} rows/s "
              f"peak +{peak:.1f} MB")
        report.add(f"{label}: rows", rows, "rows")
        report.add(f"{label}: time", seconds, "s")
        report.add(f"{label}: rate", rows / seconds if seconds else None, "rows/s")
        report.add(f"{label}: file", size / 1e6, "MB")
        report.add(f"{label}: peak memory above the start", peak, "MB", goal=100)
    engine.dispose()
    report.note("memory is bounded when the whole table's peak is about the tenth's (one batch of rows is held)")
    return report.finish()


if __name__ == "__main__":
    run(main)
