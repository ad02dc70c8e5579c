"""Secret canaries: distinctive secrets never show up anywhere, even when connections fail.

The relay, a worker and the web app run with canary values for the bot token,
the SMTP password, the database password (a real PostgreSQL role), the webhook
secret, the secret key (and the broker password), then everything fails: the
Bot API is down, the SMTP host is wrong, the broker refuses the password, the
database is unreachable at start.  None of the canaries may appear in the
process logs (text and json), the stored errors (``notifications.last_error``,
``delivery_attempts.error``, ``outbox_events.error``), the admin's pages or
the messages waiting in RabbitMQ.  Each place is also checked for the failure
evidence itself, so the test cannot pass because nothing happened.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import socket
import subprocess
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, func, select, text
from werkzeug.security import generate_password_hash

from tests.processes import running, vestnik, wait_until
from vestnik.outbox import emit
from vestnik.shared.config import Settings, load_settings, secrets_of
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.fakes.botapi import FakeBotApi
from vestnik.shared.fakes.smtp import FakeSmtpServer
from vestnik.shared.logs import JsonFormatter, KeyValueFormatter, RedactSecrets
from vestnik.shared.models import AdminUser, Client, DeliveryAttempt, Notification, OutboxEvent
from vestnik.shared.seeds import install_default_templates

TAG = secrets.token_hex(4)
CANARIES = {
    "bot token": f"7{secrets.randbelow(10**9):09d}:CANARYbot{TAG}TokenValue",
    "SMTP password": f"CANARYsmtp{TAG}pw",
    "database password": f"CANARYdb{TAG}pw",
    "webhook secret": f"CANARYhook{TAG}secret",
    "secret key": f"CANARYkey{TAG}" + "k" * 24,
    "broker password": f"CANARYamqp{TAG}pw",
}


def leaks(where: str, content: str | bytes) -> list[str]:
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    return [f"{name} in {where}" for name, value in CANARIES.items() if value in content]


def logged(proc) -> str:
    """A process's output so far (the child writes to the file directly; readable after stop too)."""
    return proc.log_path.read_text(errors="replace")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_password(url: str, user: str, password: str, port: int | None = None) -> str:
    parts = urlsplit(url)
    netloc = f"{user}:{password}@{parts.hostname}:{port or parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture
def canary_db(pg_url):
    """The test database reached as a role whose password is the canary."""
    role = f"vestnik_canary_{TAG}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{CANARIES['database password']}'"))
        conn.execute(text(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"))
        conn.execute(text(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"))
    yield with_password(pg_url, role, CANARIES["database password"]), role
    with admin.connect() as conn:
        conn.execute(text(f"DROP OWNED BY {role}"))
        conn.execute(text(f"DROP ROLE {role}"))
    admin.dispose()


def _env(db_url: str, broker_url: str, redis_url: str, log_format: str) -> dict[str, str]:
    return {
        "VESTNIK_DATABASE_URL": db_url,
        "VESTNIK_BROKER_URL": broker_url,
        "VESTNIK_REDIS_URL": redis_url,
        "VESTNIK_TELEGRAM_TOKEN": CANARIES["bot token"],
        "VESTNIK_TELEGRAM_API_BASE": f"http://127.0.0.1:{closed_port()}",  # the Bot API is down
        "VESTNIK_TELEGRAM_CONNECT_TIMEOUT_S": "1",
        "VESTNIK_SMTP_URL": f"smtp://vestnik:{CANARIES['SMTP password']}@127.0.0.1:{closed_port()}",  # wrong host
        "VESTNIK_SMTP_TIMEOUT_S": "2",
        "VESTNIK_EMAIL_FROM": "School <robot@school.test>",
        "VESTNIK_SECRET_KEY": CANARIES["secret key"],
        "VESTNIK_WEBHOOK_SECRETS": CANARIES["webhook secret"],
        "VESTNIK_MAX_ATTEMPTS": "2",
        "VESTNIK_RETRY_BASE_DELAY_S": "0.2",
        "VESTNIK_LOG_FORMAT": log_format,
        "VESTNIK_LOG_LEVEL": "DEBUG",
        "VESTNIK_WEB_WORKERS": "1",  # one gunicorn worker, not four: starts and stops in a third of the time
    }


def _queued_bodies(amqp_url: str) -> dict[str, list[bytes]]:
    """Every message waiting in the vhost's queues (read, then left in place)."""
    import pika

    vhost = urlsplit(amqp_url).path.lstrip("/")
    listed = subprocess.run(["rabbitmqctl", "list_queues", "-p", vhost, "name", "--formatter", "json", "-q"],
                            check=True, capture_output=True, text=True)
    names = [q["name"] for q in json.loads(listed.stdout or "[]")]
    bodies: dict[str, list[bytes]] = {}
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        for name in names:
            got = bodies.setdefault(name, [])
            while True:
                method, properties, body = channel.basic_get(name, auto_ack=False)
                if method is None:
                    break
                got.append(body + repr(properties.headers).encode())
    finally:
        connection.close()  # unacknowledged: everything goes back to its queue
    return bodies


@pytest.mark.timeout(240)
def test_canaries_never_leak_from_failing_processes(canary_db, amqp_vhost_url, redis_url, redis_client, tmp_path):
    db_url, _ = canary_db
    good_broker = amqp_vhost_url
    bad_broker = with_password(amqp_vhost_url, "guest", CANARIES["broker password"])
    found: list[str] = []
    factory = make_session_factory(make_engine(db_url))
    with factory() as s:
        install_default_templates(s)
        s.add(Client(id=1, name="Анна", email="anna@example.com", telegram_chat_id="1001"))
        s.commit()

    # 1. The broker refuses the password: the relay and the worker say so once and exit 2 (no retry fixes it).
    bad_env = _env(db_url, bad_broker, redis_url, "json")
    with running([vestnik("relay-badbroker", "relay", env=bad_env, log_dir=tmp_path),
                  vestnik("worker-badbroker", "worker", "--processes", "1", "--threads", "1", env=bad_env,
                          log_dir=tmp_path)]) as [relay, worker]:
        with factory() as s:
            emit(s, "lesson_cancelled", recipients=[1], data={"lesson_title": "Шахматы",
                                                               "starts_at": "2026-11-25T16:00:00+03:00"})
            s.commit()
        for proc in (relay, worker):
            wait_until(lambda p=proc: p.popen.poll() is not None, 60,
                       message=f"the {proc.name} to report the broker refusal and exit")
            assert proc.popen.returncode == 2 and "refused the credentials" in logged(proc), logged(proc)
    found += leaks("relay log (bad broker password)", logged(relay))
    found += leaks("worker log (bad broker password)", logged(worker))

    # 2. A relay that works publishes it; what waits in RabbitMQ is read.
    with running([vestnik("relay", "relay", env=_env(db_url, good_broker, redis_url, "json"),
                          log_dir=tmp_path)]) as [relay]:
        wait_until(lambda: _count(factory, OutboxEvent, OutboxEvent.status == "published"), 60,
                   message="the event published")
    found += leaks("relay log", logged(relay))
    queued = _queued_bodies(good_broker)
    assert sum(len(b) for b in queued.values()) >= 1, queued

    # 3. The database is unreachable at start: the relay cannot poll, the worker cannot handle the event.
    unreachable_db = with_password(db_url, "canary", CANARIES["database password"], port=closed_port())
    for log_format in ("text", "json"):
        env = _env(unreachable_db, good_broker, redis_url, log_format)
        web_port = closed_port()
        procs = [vestnik(f"relay-nodb-{log_format}", "relay", env=env, log_dir=tmp_path),
                 vestnik(f"worker-nodb-{log_format}", "worker", "--processes", "1", "--threads", "1", env=env,
                         log_dir=tmp_path),
                 vestnik(f"web-nodb-{log_format}", "web", "--port", str(web_port), env=env, log_dir=tmp_path)]
        with running(procs):
            wait_until(lambda: _get(web_port, "/healthz") == 200, 60, message="the web app up")
            assert _get(web_port, "/readyz") == 503  # the database is unreachable: it says so, in its log too
            for proc in procs:
                wait_until(lambda p=proc: p.popen.poll() is not None or "Connection refused" in logged(p), 60,
                           message=f"{proc.name} to report the unreachable database")
        for proc in procs:
            assert "Connection refused" in logged(proc), proc.name
            found += leaks(f"{proc.name} log", logged(proc))
    queued_retried = _queued_bodies(good_broker)  # the failed handling waits for its retry, with its traceback

    # 3b. The web app up with the canaries: sign-in refused, a forged webhook, readiness; its log (access too).
    web_port = closed_port()
    web = vestnik("web", "web", "--port", str(web_port), env=_env(db_url, good_broker, redis_url, "json"),
                  log_dir=tmp_path)
    with running([web]):
        wait_until(lambda: _get(web_port, "/healthz") == 200, 60, message="the web app up")
        import requests

        base = f"http://127.0.0.1:{web_port}"
        with requests.Session() as http:
            page = http.get(f"{base}/admin/login", timeout=10)
            csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
            resp = http.post(f"{base}/admin/login", data={"email": "nobody@school.test", "password": "x",
                                                          "csrf_token": csrf}, timeout=10)
            assert resp.status_code == 401
            found += leaks("the sign-in page", resp.text) + leaks("web cookies", str(http.cookies.get_dict()))
            resp = http.post(f"{base}/webhooks/payments", data=b'{"event_id": "e"}', timeout=10,
                             headers={"X-Vestnik-Timestamp": "1", "X-Vestnik-Signature": "sha256=00"})
            assert resp.status_code == 401
            found += leaks("a webhook answer", resp.text)
            assert http.get(f"{base}/readyz", timeout=10).status_code == 200
        wait_until(lambda: "/webhooks/payments" in logged(web), 30, message="the access log line")
    found += leaks("web log", logged(web))

    # 4. A worker whose channels both fail (Bot API down, wrong SMTP host), and a bad event.
    with factory() as s:  # bad input too: it must be visible, and still hold no secret
        s.add(OutboxEvent(event_type="lesson_cancelled", recipients=[1], data={"lesson_title": "X"}))
        s.commit()
    relay = vestnik("relay-2", "relay", env=_env(db_url, good_broker, redis_url, "text"), log_dir=tmp_path)
    worker = vestnik("worker", "worker", "--processes", "1", "--threads", "2",
                     env=_env(db_url, good_broker, redis_url, "text"), log_dir=tmp_path)
    with running([relay, worker]):
        wait_until(lambda: _count(factory, Notification, Notification.status == "failed") == 2, 120,
                   message="both notifications failed")
        wait_until(lambda: _count(factory, OutboxEvent, OutboxEvent.status == "failed") == 1, 60,
                   message="the bad event failed")
        queued_after = _queued_bodies(good_broker)
    worker_json = vestnik("worker-json", "worker", "--processes", "1", "--threads", "1",
                          env=_env(db_url, good_broker, redis_url, "json"), log_dir=tmp_path)
    with running([worker_json]):
        wait_until(lambda: "ready for action" in logged(worker_json), 60, message="the json worker")
    found += leaks("worker log (json)", logged(worker_json))
    # 4b. The Bot API up (the token is in every request's path), and an SMTP server that refuses the
    # password.
    with factory() as s:
        s.add(Client(id=2, name="Bob", email="bob@example.com", telegram_chat_id="2002"))
        s.commit()
        emit(s, "lesson_cancelled", recipients=[2],
             data={"lesson_title": "Го", "starts_at": "2026-11-25T16:00:00+03:00"})
        s.commit()
    with FakeBotApi(token=CANARIES["bot token"]) as api, FakeSmtpServer(username="vestnik",
                                                                           password="another-password") as smtp:
        env = {**_env(db_url, good_broker, redis_url, "json"), "VESTNIK_TELEGRAM_API_BASE": api.url,
               "VESTNIK_SMTP_URL": f"smtp://vestnik:{CANARIES['SMTP password']}@127.0.0.1:{smtp.port}"}
        relay = vestnik("relay-3", "relay", env=env, log_dir=tmp_path)
        worker_up = vestnik("worker-up", "worker", "--processes", "1", "--threads", "2", env=env, log_dir=tmp_path)
        with running([relay, worker_up]):
            wait_until(lambda: _count(factory, Notification, Notification.recipient_id == 2,
                                      Notification.status.in_(["sent", "failed"])) == 2, 120,
                       message="Bob's two notifications finished")
        assert len(api.messages("2002")) == 1 and smtp.auth_failures >= 1
    # The sends themselves were logged (one line per attempt), and not one of those lines held a canary.
    assert '"channel": "telegram"' in logged(worker_up) and '"channel": "email"' in logged(worker_up)
    found += leaks("worker log (Bot API up, SMTP login refused)", logged(worker_up))
    found += leaks("relay log", logged(relay))

    retried = [b for bodies in queued_retried.values() for b in bodies]
    assert any(b"OperationalError" in body for body in retried), "no failed handling waits in the broker"
    groups = {"before": queued, "retried": queued_retried, "after": queued_after}
    for when, by_queue in groups.items():
        for name, bodies in by_queue.items():
            for body in bodies:
                found += leaks(f"broker queue {name} ({when})", body)
    for proc in (relay, worker):
        found += leaks(f"{proc.name} log", logged(proc))
    assert "gave up after 2 attempts" in logged(worker) or "transient" in logged(worker)

    # 5. Stored errors: they say what failed, and nothing secret.
    with factory() as s:
        errors = [*s.scalars(select(Notification.last_error)), *s.scalars(select(DeliveryAttempt.error)),
                  *s.scalars(select(OutboxEvent.error))]
    errors = [e for e in errors if e]
    assert any("Bot API" in e for e in errors) and any("SMTP" in e for e in errors), errors
    assert any("SMTP login refused" in e for e in errors), errors
    assert any("data.starts_at: required" in e for e in errors), errors
    for error in errors:
        found += leaks("a stored error", error)
    assert found == [], found


def _get(port: int, path: str) -> int | None:
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code
    except requests.RequestException:
        return None


def _count(factory, model, *where) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


# ---------------------------------------------------------------------- the web app


def _capture_logs(settings: Settings) -> tuple[io.StringIO, io.StringIO, list[logging.Handler]]:
    """The app's log records, through the production filter, in both formats."""
    text_out, json_out = io.StringIO(), io.StringIO()
    handlers = []
    for stream, formatter in ((text_out, KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")),
                              (json_out, JsonFormatter())):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(RedactSecrets(secrets_of(settings)))
        logging.getLogger().addHandler(handler)
        handlers.append(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    return text_out, json_out, handlers


def test_canaries_never_appear_in_admin_pages_or_web_logs(canary_db, redis_url, tmp_path):
    from vestnik.webapp import create_app
    from vestnik.webapp.signatures import sign

    db_url, _ = canary_db
    env = _env(db_url, with_password("amqp://guest:x@127.0.0.1:5672/", "guest", CANARIES["broker password"]),
               f"redis://:{CANARIES['broker password']}@127.0.0.1:{closed_port()}/0", "text")
    settings = load_settings(env)
    factory = make_session_factory(make_engine(db_url))
    with factory() as s:
        install_default_templates(s)
        s.add_all([AdminUser(email="admin@school.test", password_hash=generate_password_hash("pw-for-the-test"),
                             role="admin"),
                   Client(id=1, name="Анна", email="anna@example.com", telegram_chat_id="1001")])
        s.flush()
        s.add(Notification(recipient_id=1, channel="telegram", recipient_address="1001", status="failed",
                           event_type="lesson_cancelled", template_code="LESSON_CANCELLED", step="s",
                           last_error="gave up after 2 attempts: sendMessage: connection to the Bot API failed"))
        s.add(OutboxEvent(event_type="lesson_cancelled", recipients=[1], data={"lesson_title": "X"},
                          status="failed", error="data.starts_at: required"))
        s.commit()
    text_out, json_out, handlers = _capture_logs(settings)
    found: list[str] = []
    try:
        app = create_app(settings, config={"TESTING": False})
        c = app.test_client()
        page = c.get("/admin/login")
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
        assert c.post("/admin/login", data={"email": "admin@school.test", "password": "pw-for-the-test",
                                            "csrf_token": csrf}).status_code == 302
        pages = 0
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.arguments or rule.endpoint == "static":
                continue
            resp = c.get(rule.rule)
            pages += 1
            found += leaks(f"GET {rule.rule}", resp.get_data())
            found += leaks(f"GET {rule.rule} headers", str(resp.headers))
        admin = app.extensions["admin"][0]
        with app.test_request_context():
            from flask import url_for

            details = [url_for(f"{v.endpoint}.details_view", id=1) for v in admin._views
                       if getattr(v, "can_view_details", False)]
        for path in details:
            resp = c.get(path)
            assert resp.status_code in (200, 302), path
            found += leaks(f"GET {path}", resp.get_data())
        assert pages >= 8 and len(details) >= 4
        # Webhooks refused for a wrong signature, and the readiness check with a broker and Redis that refuse us.
        body = b'{"event_id": "e"}'
        for headers in (sign("not-the-secret", body), {}):
            resp = c.post("/webhooks/payments", data=body, headers=headers)
            assert resp.status_code == 401
            found += leaks("a webhook answer", resp.get_data())
        resp = c.post("/webhooks/telegram", json={"update_id": 1},
                      headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
        found += leaks("the telegram webhook answer", resp.get_data())
        resp = c.get("/readyz")
        found += leaks("/readyz", resp.get_data())
        # The cookie is signed with the secret key, never carries it.
        found += leaks("the session cookie", c.get_cookie("vestnik_session").value)
        # The same app with its database unreachable: sign-in and readiness fail, and say so.
        down = create_app(load_settings({**env, "VESTNIK_DATABASE_URL": with_password(
            db_url, "canary", CANARIES["database password"], port=closed_port())}), config={"TESTING": False})
        dc = down.test_client()
        resp = dc.get("/readyz")
        assert resp.status_code == 503
        found += leaks("/readyz (database down)", resp.get_data())
        page = dc.get("/admin/login")
        csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
        resp = dc.post("/admin/login", data={"email": "admin@school.test", "password": "pw-for-the-test",
                                             "csrf_token": csrf})
        assert resp.status_code == 500
        found += leaks("the sign-in page (database down)", resp.get_data())
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
    for name, out in (("text log", text_out.getvalue()), ("json log", json_out.getvalue())):
        found += leaks(f"web {name}", out)
    assert "readiness check failed" in json_out.getvalue() and "Connection refused" in text_out.getvalue()
    assert found == [], found
