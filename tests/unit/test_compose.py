"""docker/: the compose files validate against the Compose Specification (check-jsonschema's vendored
schema, offline: no Docker engine runs here), and say what an operator relies on: a health check that
fits each service, resource limits, RabbitMQ 4 with management and Prometheus, Redis persistent, web
only behind the TLS proxy, and a build context without a developer's virtualenv."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
CLUSTER = DOCKER / "compose.cluster.yaml"


def services(path: Path) -> dict[str, dict]:
    return yaml.safe_load(path.read_text())["services"]  # merge keys (<<: *vestnik) resolved


def test_the_compose_files_follow_the_compose_specification():
    tool = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    result = subprocess.run([tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE), str(CLUSTER)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_long_running_service_has_a_health_check_that_fits_it_and_limits():
    for name, service in services(COMPOSE).items():
        check = service.get("healthcheck", {})
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("cpus") and limits.get("memory"), f"{name}: no resource limits"
        if name == "migrate":  # runs once and exits
            assert check.get("disable") is True
            continue
        assert check.get("test"), f"{name}: no health check"
        command = " ".join(check["test"])
        process = (service.get("command") or [""])[0]
        if process in ("relay", "worker", "scheduler", "bot"):
            # the process's own heartbeat, not another service's HTTP check
            assert f"vestnik health {process}" in command, (name, command)
        if process == "web":
            assert "/readyz" in command


def test_the_image_has_no_health_check_that_would_fit_only_one_service():
    assert "HEALTHCHECK" not in "\n".join(
        line for line in (DOCKER / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#"))


def test_rabbitmq_4_with_management_and_prometheus_redis_persistent_web_behind_tls():
    found = services(COMPOSE)
    image = found["rabbitmq"]["image"]
    assert image.startswith("rabbitmq:4") and image.endswith("-management"), image
    plugins = (DOCKER / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_management" in plugins and "rabbitmq_prometheus" in plugins
    redis = " ".join(found["redis"]["command"])
    assert "--appendonly yes" in redis and any(v.endswith(":/data") for v in found["redis"]["volumes"])
    assert "ports" not in found["web"], "web is published only through the proxy"
    assert any("443" in p for p in found["proxy"]["ports"])
    assert "reverse_proxy web:8000" in (DOCKER / "Caddyfile").read_text()
    assert found["web"]["environment"]["VESTNIK_TRUSTED_PROXIES"] == "1"


def test_the_cluster_layout_runs_three_nodes_and_gives_every_process_all_of_them():
    found = services(CLUSTER)
    assert {"rabbitmq", "rabbitmq-2", "rabbitmq-3"} <= set(found)
    nodes = (DOCKER / "rabbitmq" / "cluster.conf").read_text()
    for host in ("rabbitmq", "rabbitmq-2", "rabbitmq-3"):
        assert f"rabbit@{host}\n" in nodes
    for name in ("relay", "worker", "scheduler", "web", "migrate"):
        urls = found[name]["environment"]["VESTNIK_BROKER_URL"].split(";")
        assert [u.split("@")[1].split(":")[0] for u in urls] == ["rabbitmq", "rabbitmq-2", "rabbitmq-3"], name


@pytest.mark.parametrize("kept_out", [".venv", ".git", "docker/.env", "*.db", "var"])
def test_the_build_context_leaves_out(kept_out):
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert kept_out in ignored
