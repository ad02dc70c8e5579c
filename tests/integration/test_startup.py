"""Start-up that tells the truth (vestnik/preflight.py): what no retry fixes is said once and the process
exits 2; an outage is waited out with a visible, growing backoff; bad settings name the variable."""

from __future__ import annotations

import json
import signal

import pika
import pytest

from tests.processes import free_port, vestnik, wait_until


def env_for(pg_url: str, broker_url: str, **more: str) -> dict[str, str]:
    return {"VESTNIK_DATABASE_URL": pg_url, "VESTNIK_BROKER_URL": broker_url, "VESTNIK_SECRET_KEY": "x" * 32,
            "VESTNIK_LOG_FORMAT": "json", **more}


def exited(proc, timeout_s: float = 90) -> int:
    wait_until(lambda: proc.popen.poll() is not None, timeout_s,
               message=lambda: f"{proc.name} to exit; it logged:\n{logged(proc)[-2000:]}")
    return proc.popen.returncode


def logged(proc) -> str:
    return proc.log_path.read_text(errors="replace")


def errors(proc) -> list[dict]:
    records = [json.loads(line) for line in proc.log_path.read_text().splitlines() if line.startswith("{")]
    return [r for r in records if r.get("action") == "startup.failed"]


@pytest.mark.parametrize("command", ["relay", "worker", "scheduler"])
def test_a_database_that_does_not_exist_is_said_once_and_the_process_exits_2(command, pg_url, amqp_vhost_url,
                                                                            tmp_path):
    missing = pg_url.rsplit("/", 1)[0] + "/vestnik_no_such_database"
    proc = vestnik(command, command, env=env_for(missing, amqp_vhost_url), log_dir=tmp_path)
    try:
        assert exited(proc) == 2
    finally:
        proc.stop()
    said = errors(proc)
    assert len(said) == 1 and "database does not exist" in said[0]["message"], logged(proc)


def test_broker_credentials_refused_are_said_once_and_the_worker_exits_2(pg_url, amqp_vhost_url, tmp_path):
    refused = amqp_vhost_url.replace("guest:guest@", "guest:not-the-password@")
    proc = vestnik("worker", "worker", "--processes", "1", env=env_for(pg_url, refused), log_dir=tmp_path)
    try:
        assert exited(proc) == 2
    finally:
        proc.stop()
    said = errors(proc)
    assert len(said) == 1 and "refused the credentials" in said[0]["message"], logged(proc)
    assert "not-the-password" not in logged(proc)


def test_a_classic_queue_from_an_older_version_stops_the_relay_with_the_way_out(pg_url, amqp_vhost_url, tmp_path):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_vhost_url))
    connection.channel().queue_declare("events", durable=True)  # what Dramatiq declared before quorum queues
    connection.close()
    proc = vestnik("relay", "relay", env=env_for(pg_url, amqp_vhost_url), log_dir=tmp_path)
    try:
        assert exited(proc) == 2
    finally:
        proc.stop()
    said = errors(proc)
    assert len(said) == 1 and "Moving from classic queues" in said[0]["message"], logged(proc)


def test_a_broker_outage_is_waited_out_with_a_visible_growing_backoff(pg_url, tmp_path):
    down = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    proc = vestnik("relay", "relay", env=env_for(pg_url, down), log_dir=tmp_path)
    try:
        def waits() -> list[float]:
            return [json.loads(line)["retry_in_s"] for line in proc.log_path.read_text().splitlines()
                    if '"startup.waiting"' in line]

        wait_until(lambda: len(waits()) >= 3, 90, message=lambda: f"three retries; it logged:\n{logged(proc)}")
        assert proc.popen.poll() is None  # still waiting: an outage ends
        assert waits()[:3] == [1.0, 2.0, 4.0]
        proc.signal(signal.SIGTERM)
        exited(proc, 30)
    finally:
        proc.stop()


def test_bad_settings_name_the_variable_and_exit_2(pg_url, amqp_vhost_url, tmp_path):
    proc = vestnik("relay", "relay", env=env_for(pg_url, amqp_vhost_url, VESTNIK_LOG_FORMAT="xml"),
                   log_dir=tmp_path)
    try:
        assert exited(proc) == 2
    finally:
        proc.stop()
    assert "VESTNIK_LOG_FORMAT" in logged(proc) and "text or json" in logged(proc)
