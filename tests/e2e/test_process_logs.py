"""With VESTNIK_LOG_FORMAT=json every process writes one JSON object per line: web (gunicorn's master,
error and access logs), relay, worker (Dramatiq's main process and its worker process), scheduler.
Each line has an ISO 8601 time with its offset, the ids of what it is about, no None fields, and
no secret; the text format says the same as key=value, without ``reason=None`` either."""

from __future__ import annotations

import json
import re

import requests

from tests.processes import free_port, running, vestnik, wait_for_web, wait_until
from vestnik.outbox import emit
from vestnik.shared.models import Notification

ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")
SECRET_KEY = "k3y-" + "s" * 36
TOKEN_IN_PATH = "Tok3nThatSignsIn-1234567890abcdef"


def lines_of(proc) -> list[str]:
    return [line for line in proc.log_path.read_text(errors="replace").splitlines() if line.strip()]


def test_every_process_logs_one_json_object_per_line_with_ids_and_no_secret(stack, bot_api):
    env = {**stack.env, "VESTNIK_LOG_FORMAT": "json", "VESTNIK_LOG_LEVEL": "INFO", "VESTNIK_SECRET_KEY": SECRET_KEY,
           "VESTNIK_TELEGRAM_CHAT_RATE_PER_S": "1000"}
    port = free_port()
    procs = [vestnik("web", "web", "--port", str(port), env=env, log_dir=stack.log_dir),
             vestnik("relay", "relay", env=env, log_dir=stack.log_dir),
             vestnik("worker", "worker", "--processes", "1", "--threads", "2", env=env, log_dir=stack.log_dir),
             vestnik("scheduler", "scheduler", env=env, log_dir=stack.log_dir)]
    with running(procs):
        base = f"http://127.0.0.1:{port}"
        wait_for_web(base)
        requests.get(f"{base}/me/login/t/{TOKEN_IN_PATH}", timeout=10)  # a sign-in link: its token is a secret
        with stack.factory() as s:
            event_id = emit(s, "lesson_cancelled", recipients=[1], data={"lesson_title": "Шахматы",
                                                                         "starts_at": "2026-12-25T16:00:00+03:00"})
            s.commit()
        wait_until(lambda: stack.count(Notification.status == "sent") >= 2, 120, message="the event delivered")
        wait_until(lambda: "web.request" in procs[0].output(), 30, message="the access log line")
    seen_fields: dict[str, set[str]] = {}
    for proc in procs:
        lines = lines_of(proc)
        assert lines, f"{proc.name} logged nothing"
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise AssertionError(f"{proc.name}: not JSON: {line[:300]}") from None
            assert isinstance(record, dict) and {"time", "level", "logger", "message"} <= set(record), line
            assert ISO_WITH_OFFSET.match(record["time"]), record["time"]
            assert None not in record.values(), line  # a success has no "reason": null
            for secret in (SECRET_KEY, TOKEN_IN_PATH, bot_api.token):
                assert secret not in line, f"{proc.name} logged a secret: {line[:300]}"
            seen_fields.setdefault(proc.name, set()).update(record)
    worker_lines = [json.loads(line) for line in lines_of(procs[2])]
    assert any(r["logger"].startswith("dramatiq") and "MainProcess" in r["logger"] for r in worker_lines), \
        "Dramatiq's main process lines are JSON too"
    assert "notification_id" in seen_fields["worker"] and "event_id" in seen_fields["worker"]
    access = [json.loads(line) for line in lines_of(procs[0]) if '"web.request"' in line]
    assert any(r["status"] == 200 and r["path"] == "/healthz" and r["method"] == "GET" for r in access)
    assert any("/me/login/t/" in r["path"] for r in access)  # logged, with the token masked
    relay_events = [json.loads(line) for line in lines_of(procs[1])]
    assert any(r.get("event_id") == event_id or r.get("action", "").startswith("relay") for r in relay_events)
