"""``vestnik web`` serves through gunicorn, as in production (and in docker/)."""

from __future__ import annotations

import socket

import requests

from tests.processes import running, vestnik, wait_until
from vestnik.shared.config import Settings
from vestnik.webapp.webhooks import MAX_BODY_BYTES


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
        # A body sent chunked has no Content-Length to check: it is still cut at the limit, past authentication
        # (the right Telegram secret) and before it (a webhook's signature covers the body).
        telegram_secret = Settings(secret_key=env["VESTNIK_SECRET_KEY"]).telegram_webhook_secret
        for path, headers in (("/webhooks/telegram", {"X-Telegram-Bot-Api-Secret-Token": telegram_secret}),
                              ("/webhooks/payments", {})):
            chunks = (b"x" * 65536 for _ in range(MAX_BODY_BYTES // 65536 + 2))  # a generator: sent chunked
            resp = requests.post(base + path, data=chunks, timeout=60,
                                 headers={"Content-Type": "application/json", **headers})
            assert resp.status_code == 413, (path, resp.status_code, resp.text[:300])
    assert web.popen.returncode == 0  # SIGTERM: a graceful stop
