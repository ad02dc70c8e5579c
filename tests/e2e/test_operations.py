"""The operational surface of the non-HTTP processes: heartbeats behind
``vestnik health`` and the workers' Prometheus metrics."""

from __future__ import annotations

import socket
import subprocess

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.runs import emit_run, settled
from tests.processes import ROOT, VESTNIK, running, vestnik, wait_until

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(env: dict, name: str, max_age: float = 60) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([*VESTNIK, "health", name, "--max-age", str(max_age)], env={**os.environ, **env},
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def samples(port: int) -> dict[tuple[str, tuple], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_health_follows_each_process_and_workers_export_metrics(chaos, bot_api, smtp_server, tmp_path):
    port = free_port()
    env = {**chaos.env, "VESTNIK_HEARTBEAT_DIR": str(tmp_path / "hb"), "VESTNIK_WORKER_METRICS_PORT": str(port)}
    for name in ("relay", "worker", "scheduler"):
        assert health(env, name).returncode == 1  # nothing ran yet
    bot_api.block_chat("7001")  # one client blocked the bot: a failure with a reason
    chaos.env.update(env)
    with running([vestnik("relay", "relay", env=env, log_dir=chaos.log_dir),
                  vestnik("worker", "worker", "--processes", "1", "--threads", "4", env=env, log_dir=chaos.log_dir),
                  vestnik("scheduler", "scheduler", env=env, log_dir=chaos.log_dir)]):
        wait_until(lambda: all(health(env, n).returncode == 0 for n in ("relay", "worker", "scheduler")), 60,
                   message="three heartbeats")
        emit_run(chaos, 0, 20)
        wait_until(lambda: settled(chaos, 20), 60, message="the run")

        def scraped():
            try:
                m = samples(port)
            except requests.RequestException:
                return None
            return m if m.get(("vestnik_deliveries_total", (("channel", "telegram"), ("outcome", "sent")))) else None

        m = wait_until(scraped, 30, message="worker metrics")
    assert m[("vestnik_deliveries_total", (("channel", "telegram"), ("outcome", "sent")))] == 19
    assert m[("vestnik_deliveries_total", (("channel", "email"), ("outcome", "sent")))] == 20
    assert m[("vestnik_delivery_failures_total",
              (("channel", "telegram"), ("reason", "sendMessage: ### Forbidden: bot was blocked by the user")))] == 1
    assert any(name == "dramatiq_messages_total" for name, _ in m)  # Dramatiq's own
    # Stopped: the heartbeats go stale.
    assert health(env, "relay", max_age=0.001).returncode == 1
