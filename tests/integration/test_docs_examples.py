"""The signing examples of docs/webhooks.md, run against a real server.

The shell example runs in bash with the machine's ``curl`` and ``openssl``; the
Python one is executed as written.  Both must be accepted by Vestnik's own
verification, and a wrong secret must not be.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from tests.doc_blocks import doc_code_blocks
from vestnik.shared.config import Settings
from vestnik.shared.models import Client, OutboxEvent
from vestnik.webapp import create_app

SECRET = "whsec-docs-example-0123456789"


@pytest.fixture
def server(sqlite_url, session_factory):
    with session_factory() as s:
        s.add(Client(id=7, name="Анна", email="a@example.com"))
        s.commit()
    app = create_app(Settings(secret_key="k" * 32, webhook_secrets=SECRET), session_factory=session_factory)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(10)


@pytest.fixture
def db_url(sqlite_url):  # one backend is enough: the examples exercise the HTTP contract
    return sqlite_url


def _events(session_factory) -> list[OutboxEvent]:
    with session_factory() as s:
        return s.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()


def test_the_docs_have_both_signing_examples():
    assert [lang for lang, _ in doc_code_blocks("webhooks.md")] == ["sh", "python"]


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")), reason="needs curl and openssl")
def test_the_shell_example_is_accepted(server, session_factory):
    [(_, script)] = [b for b in doc_code_blocks("webhooks.md") if b[0] == "sh"]
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "URL": f"{server}/webhooks/payments", "SECRET": SECRET})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "accepted"
    [event] = _events(session_factory)
    assert (event.event_type, event.key, event.recipients) == ("payment_success", "invoice:17", [7])
    wrong = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "URL": f"{server}/webhooks/payments", "SECRET": "nope"})
    assert "bad signature" in wrong.stdout and len(_events(session_factory)) == 1


def test_the_python_example_is_accepted(server, session_factory):
    [(_, code)] = [b for b in doc_code_blocks("webhooks.md") if b[0] == "python"]
    namespace: dict = {}
    exec(compile(code, "docs/webhooks.md", "exec"), namespace)  # noqa: S102 - our own documentation
    payment = {"event_id": "bank-evt-1002", "payment_id": "p-1002", "invoice_id": "17", "client_id": 7,
               "amount": "4500.00", "currency": "RUB", "status": "succeeded"}
    answer = namespace["post_signed"](f"{server}/webhooks/payments", SECRET, payment)
    assert answer["status"] == "accepted"
    assert namespace["post_signed"](f"{server}/webhooks/payments", SECRET, payment)["status"] == "duplicate"
    assert len(_events(session_factory)) == 1
