"""``make bench``: every benchmark in turn, each with the arguments docs/benchmarks.md quotes.

Each runs in its own interpreter so one's memory and threads do not colour
the next one's figures.  ``--smoke`` runs each at a tiny size instead (a few
seconds each): the test suite does that, so a bench that no longer runs
fails CI (``tests/integration/test_benches.py``).  Add a benchmark to both
tables when you add it to the docs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import uuid

#: module -> the arguments of its full run (the figures in docs/benchmarks.md)
BENCHMARKS: dict[str, list[str]] = {
    "bench.crm_overhead": ["--n", "2000"],
    "bench.client_overhead": ["--n", "2000"],
    "bench.string_ids": ["--rounds", "40", "--batch", "100"],
    "bench.api_throughput": ["--rate", "200", "--seconds", "20"],
    "bench.relay_latency": ["--events", "1000", "--rate", "200", "--backlog", "20000"],
    "bench.throughput": ["--events", "30", "--recipients", "100", "--processes", "2", "--rate", "100"],
    "bench.delivery_cpu": ["--events", "30", "--recipients", "100"],
    "bench.fakes_cpu": ["--messages", "3000"],
    "bench.scheduler_lateness": ["--events", "200", "--spread", "30"],
    "bench.limits_exact": ["--seconds", "300"],
    "bench.admin_history": [],
    "bench.history_export": ["--rows", "1000000"],
    "bench.broadcast_expand": ["--clients", "100000", "--send", "2000", "--rate", "30"],
    "bench.sign_in_timing": ["--requests", "200"],
    "bench.admin_login_timing": ["--requests", "100"],
    "bench.soak": ["--minutes", "10", "--rate", "5", "--seed", "2"],  # the full soak: python -m bench.soak
}


def smoke_args() -> dict[str, list[str]]:
    """module -> the arguments of a run that only proves the bench still works (seconds, not figures)."""
    return {
        "bench.crm_overhead": ["--n", "20"],
        "bench.client_overhead": ["--n", "5", "--warmup", "2"],
        "bench.string_ids": ["--rounds", "1", "--batch", "3", "--warmup", "0"],
        "bench.api_throughput": ["--rate", "20", "--seconds", "1", "--connections", "2"],
        "bench.relay_latency": ["--events", "20", "--rate", "100", "--backlog", "200"],
        "bench.throughput": ["--events", "4", "--recipients", "3", "--processes", "1", "--threads", "2",
                             "--rate", "5", "--seconds", "1"],
        "bench.delivery_cpu": ["--events", "2", "--recipients", "3"],
        "bench.fakes_cpu": ["--messages", "20", "--threads", "2"],
        "bench.scheduler_lateness": ["--events", "6", "--spread", "2", "--lead", "1"],
        "bench.limits_exact": ["--seconds", "2"],  # two windows of the 30/s limit: the pacing figure too
        # A database of its own, dropped at the end: never the full run's vestnik_bench_history.
        "bench.admin_history": ["--rows", "3000", "--clients", "300", "--repeat", "2", "--drop", "--explain",
                                "--db", f"vestnik_bench_smoke_{uuid.uuid4().hex[:8]}"],
        "bench.history_export": ["--rows", "3000", "--clients", "300", "--drop",
                                 "--db", f"vestnik_bench_smoke_{uuid.uuid4().hex[:8]}"],
        "bench.broadcast_expand": ["--clients", "200", "--send", "10", "--rate", "100"],
        "bench.sign_in_timing": ["--requests", "5"],
        "bench.admin_login_timing": ["--requests", "4"],
        "bench.soak": ["--minutes", "0.1", "--rate", "5", "--fault-every", "4", "--seed", "2"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="each bench at a tiny size (does it still run?)")
    parser.add_argument("only", nargs="*", help="run only these modules, e.g. bench.soak")
    args = parser.parse_args()
    table = smoke_args() if args.smoke else BENCHMARKS
    failed = []
    for module, bench_args in table.items():
        if args.only and module not in args.only:
            continue
        print(f"\n$ python -m {module} {' '.join(bench_args)}", flush=True)
        if subprocess.run([sys.executable, "-m", module, *bench_args]).returncode != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
