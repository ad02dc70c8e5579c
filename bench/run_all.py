"""``make bench``: every benchmark in turn, each with the arguments docs/benchmarks.md quotes.

Each runs in its own interpreter so one's memory and threads do not colour
the next one's figures.  Add a benchmark here when you add it to the docs.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS: list[list[str]] = [
    ["bench.crm_overhead", "--n", "2000"],
    ["bench.relay_latency", "--events", "1000", "--rate", "200"],
    ["bench.throughput", "--events", "1000", "--processes", "1", "2"],
    ["bench.scheduler_lateness", "--events", "200", "--spread", "30"],
    ["bench.admin_history"],
    ["bench.broadcast_expand", "--clients", "100000", "--send", "2000", "--rate", "30"],
    ["bench.soak", "--minutes", "10", "--rate", "5", "--seed", "2"],  # the full soak: python -m bench.soak
]


def main() -> int:
    failed = []
    for module, *args in BENCHMARKS:
        print(f"\n$ python -m {module} {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, "-m", module, *args]).returncode != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
