"""docker/prometheus and docker/grafana: the alert rules and the Prometheus configuration parse with
promtool (Debian's `prometheus` package; CI installs it), the dashboard's queries are valid PromQL,
and every metric the rules and the dashboard read is one Vestnik, Dramatiq or Prometheus exposes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import dramatiq.middleware.prometheus as dramatiq_prometheus
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docker" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "docker" / "grafana" / "vestnik-dashboard.json"
SOURCES = [p for folder in ("webapp", "workers", "shared", "outbox") for p in (ROOT / folder).rglob("*.py")]
METRIC = re.compile(r"\b((?:vestnik|dramatiq)_[a-z0-9_]+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (apt-get install prometheus): CI checks the rules with it")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


def rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {f"{p['title']} {t['refId']}": t["expr"] for p in panels for t in p.get("targets", [])}


def defined_metrics() -> set[str]:
    """Names Vestnik's code exposes, and Dramatiq's Prometheus middleware."""
    names = set()
    for path in SOURCES:
        for match in re.finditer(r'(?:Counter|Gauge|GaugeMetricFamily|Histogram)\(\s*"([a-z0-9_]+)"', path.read_text()):
            names.add(match.group(1))
    names |= set(re.findall(r'"(dramatiq_[a-z_]+)"', Path(dramatiq_prometheus.__file__).read_text()))
    return names


def test_the_alert_rules_parse():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.cluster.yml"])
def test_the_prometheus_configuration_parses(tmp_path, config):
    text = (ROOT / "docker" / "prometheus" / config).read_text().replace("/etc/prometheus/alerts.yml", str(RULES))
    (tmp_path / config).write_text(text)
    result = subprocess.run([promtool(), "check", "config", str(tmp_path / config)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_queries_are_valid_promql(tmp_path):
    # Grafana's macros are not PromQL: give them a value first (promtool would refuse them).
    rules = [{"record": f"vestnik:dashboard_{i}", "expr": expr.replace("$__rate_interval", "5m")}
             for i, expr in enumerate(dashboard_expressions().values())]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_the_rules_and_the_dashboard_read_exists():
    known = defined_metrics()
    assert {"vestnik_outbox_lag_seconds", "vestnik_deliveries_total", "dramatiq_messages_total"} <= known
    missing = {}
    for where, expr in {**rule_expressions(), **dashboard_expressions()}.items():
        for name in METRIC.findall(expr):
            base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name)
            if name not in known and base not in known:
                missing.setdefault(name, []).append(where)
    assert not missing, f"metrics nothing exposes: {missing}"


def test_the_alerts_cover_what_an_operator_must_hear_about():
    exprs = " ".join(rule_expressions().values())
    for metric in ("vestnik_outbox_lag_seconds", "vestnik_queue_messages", "vestnik_deliveries_total",
                   "vestnik_limiter_wait_seconds_total", "vestnik_scheduler_active", "vestnik_channel_daily_quota"):
        assert metric in exprs, metric
    assert 'outcome="uncertain"' in exprs


def test_no_gauge_counts_a_sliding_hour():
    # Counters survive a missed scrape and Prometheus takes their rate over any window.
    assert not [n for n in defined_metrics() if n.endswith("_last_hour")]
