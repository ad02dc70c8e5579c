"""``vestnik web`` serves through gunicorn, as in production (and in docker/)."""

from __future__ import annotations

import socket

import requests

from tests.processes import running, vestnik, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_vestnik_web_serves_health_and_the_admin_login(sqlite_url, tmp_path):
    port = free_port()
    env = {"VESTNIK_DATABASE_URL": sqlite_url, "VESTNIK_SECRET_KEY": "s" * 32}
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{base}/readyz", timeout=10).status_code == 200
        except requests.RequestException:  # not listening yet
            return False

    with running([vestnik("web", "web", "--port", str(port), env=env, log_dir=tmp_path)]) as [web]:
        wait_until(up, 60, message=lambda: f"vestnik web on {port}\n{web.output()}")
        login = requests.get(f"{base}/admin/login", timeout=5)
        assert login.status_code == 200 and 'name="csrf_token"' in login.text
    assert web.popen.returncode == 0  # SIGTERM: a graceful stop
