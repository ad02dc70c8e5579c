"""Every module under bench/ still runs: each at a tiny size (``bench.run_all --smoke``), so a bench
that rots fails CI instead of the next person who runs ``make bench``.

Only the shape is checked here, never a figure against a goal (timing goals belong to the benches
themselves, measured on a quiet machine): the bench exits 0, prints the common report (what, size,
figures, machine load) and its JSON twin, and every figure has a value.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import JSON_PREFIX, TEMPLATE_DB_ENV
from bench.run_all import BENCHMARKS, smoke_args

ROOT = Path(__file__).resolve().parents[2]
HELPERS = {"__init__", "common", "run_all"}
MODULES = sorted(f"bench.{p.stem}" for p in (ROOT / "bench").glob("*.py") if p.stem not in HELPERS)

pytestmark = pytest.mark.slow


def test_every_bench_has_a_full_and_a_smoke_run():
    assert set(BENCHMARKS) == set(MODULES), "list each bench in bench/run_all.py's BENCHMARKS"
    assert set(smoke_args()) == set(MODULES), "give each bench a tiny size in bench/run_all.py's smoke_args()"


@pytest.mark.parametrize("module", MODULES)
def test_the_bench_runs_at_a_tiny_size_and_reports_in_the_common_shape(module, amqp_url, pg_template):
    # Scratch databases are copies of the tests' migrated template (a full run migrates its own).
    env = {**os.environ, TEMPLATE_DB_ENV: pg_template}
    result = subprocess.run([sys.executable, "-m", module, *smoke_args()[module]], cwd=ROOT, capture_output=True,
                            text=True, timeout=280, env=env)
    tail = f"\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{module} exited {result.returncode}{tail}"
    lines = [line for line in result.stdout.splitlines() if line.startswith(JSON_PREFIX)]
    assert len(lines) == 1, f"one {JSON_PREFIX!r} line expected{tail}"
    report = json.loads(lines[0][len(JSON_PREFIX):])
    assert report["bench"] == module and report["what"] and report["size"]
    assert report["figures"], f"no figures{tail}"
    for figure in report["figures"]:
        assert figure["value"] is not None and math.isfinite(figure["value"]), figure
    assert {"1m", "cores"} <= set(report["load"]["start"]) and {"1m", "cores"} <= set(report["load"]["end"])
    human = result.stdout.split(JSON_PREFIX, 1)[0]
    assert f"{module}: " in human and "  size: " in human and "  machine: load average" in human
