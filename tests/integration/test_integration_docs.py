"""The four ways in, as docs/integration.md shows them, run on real PostgreSQL.

Each tested block of the guide is executed as written: the Python client's
example in a subprocess (as a CRM would run it), the SQL through psql, the
HTTP example in bash with curl against a served app, the CSV through the CLI.
An example that no longer works fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from tests.doc_blocks import DOCS, doc_code_blocks
from vestnik.cli import main
from vestnik.shared import api_keys, client_sync
from vestnik.shared.config import Settings
from vestnik.shared.db import make_engine, make_session_factory
from vestnik.shared.models import Client, ClientGroup, Notification, OutboxEvent
from vestnik.webapp import create_app
from vestnik.workers.channels import build_channels
from vestnik.workers.handling import handle_event

GUIDE = "integration.md"


def block(language: str) -> str:
    [code] = [code for lang, code in doc_code_blocks(GUIDE) if lang == language]
    return code


@pytest.fixture
def factory(pg_url):
    engine = make_engine(pg_url)
    yield make_session_factory(engine)
    engine.dispose()


def test_the_guide_shows_the_four_ways_in_each_with_a_tested_example():
    assert [lang for lang, _ in doc_code_blocks(GUIDE)] == ["python", "sql", "sh", "csv"]
    guide = (DOCS / GUIDE).read_text(encoding="utf-8")
    assert "An HTTP call is not part of the\nCRM's database transaction" in guide
    assert "Idempotency-Key" in guide


def test_the_python_client_example(pg_url, factory, tmp_path):
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with factory() as s:  # the CRM's own table
        s.execute(text("CREATE TABLE enrolments (client_id bigint, lesson_id bigint)"))
        s.commit()
    (tmp_path / "crm.py").write_text(block("python"), encoding="utf-8")
    done = subprocess.run([sys.executable, "crm.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CRM_DATABASE_URL": dsn})
    assert done.returncode == 0, done.stderr
    first, mistake = done.stdout.strip().splitlines()
    guide = " ".join((DOCS / GUIDE).read_text(encoding="utf-8").split())
    assert f"What it prints for the mistake: `{mistake}`." in guide
    with factory() as s:
        event = s.scalars(select(OutboxEvent)).one()
        assert first == f"event {event.id}"
        assert (event.event_type, event.recipients, event.key) == ("lesson_reminder", [1042], "lesson:7")
        assert event.data == {"lesson_title": "Робототехника", "starts_at": "2027-03-15T16:00:00+03:00"}
        assert s.get(Client, 1042).email == "anna@example.com"
        assert s.execute(text("SELECT count(*) FROM enrolments")).scalar() == 1
    assert handle_event(factory, build_channels(Settings()), event.id).status == "processed"
    with factory() as s:  # the client was known when the event was handled
        assert s.get(OutboxEvent, event.id).unknown_clients is None


def test_the_sql_example_through_psql(pg_url, factory):
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed")
    url = make_url(pg_url)
    run = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", url.host, "-p", str(url.port or 5432), "-U",
           url.username, "-d", url.database]
    for _ in range(2):  # twice: the idempotency key keeps it one event
        done = subprocess.run(run, input=block("sql"), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    with factory() as s:
        event = s.scalars(select(OutboxEvent)).one()
        assert (event.event_type, event.recipients, event.key) == ("invoice_created", [2001], "invoice:17")
        boris = s.get(Client, 2001)
        assert (boris.name, boris.locale) == ("Борис", "en")
    wrong = block("sql").replace('"amount": "4500.00"', '"amount": "-5"').replace('"due_date"', '"due"')
    done = subprocess.run(run, input=wrong.replace("invoice-17-created", "other"), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "data.amount: must be a non-negative amount" in done.stderr
    assert ("data.due: unknown field (declared: amount, currency, due_date, file_name, invoice_number, "
            "invoice_pdf_url, payment_url)") in done.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_http_example_with_curl(factory):
    app = create_app(Settings(secret_key="k" * 32), session_factory=factory)
    with factory() as s:
        _key, raw = api_keys.create(s, "docs", "test")
        s.commit()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        done = subprocess.run(["bash", "-c", block("sh")], capture_output=True, text=True, timeout=120,
                              env={"PATH": os.environ["PATH"], "API_URL": f"http://127.0.0.1:{server.server_port}",
                                   "API_KEY": raw})
    finally:
        server.shutdown()
        thread.join(10)
    assert done.returncode == 0, done.stdout + done.stderr
    client, first, again, notifications = (json.loads(line) for line in done.stdout.strip().splitlines())
    assert client["id"] == "3001" and client["email"] == "vera@example.com"
    assert first == again and first["status"] == "accepted"
    assert notifications == {"notifications": [], "next": None}  # not handled yet: no worker here
    with factory() as s:
        event = s.scalars(select(OutboxEvent)).one()
        assert (event.id, event.key, event.recipients) == (first["id"], "lesson:42", [3001])
    handle_event(factory, build_channels(Settings()), first["id"])
    with factory() as s:
        assert s.scalars(select(Notification.channel).where(Notification.recipient_id == 3001)).all() == ["email"]


def test_the_csv_example_through_the_cli(pg_url, factory, tmp_path, monkeypatch, capsys):
    path = tmp_path / "clients.csv"
    path.write_text(block("csv"), encoding="utf-8")
    guide = (DOCS / GUIDE).read_text(encoding="utf-8")
    assert re.search(r"```sh\nvestnik clients import clients.csv\n```", guide)
    monkeypatch.setenv("VESTNIK_DATABASE_URL", pg_url)
    assert main(["clients", "import", str(path)]) == 0
    assert "3 created" in capsys.readouterr().out  # an integer and a UUID id in one file
    with factory() as s:
        anna, john = s.get(Client, 4001), s.get(Client, 4002)
        assert (anna.timezone, anna.allow_marketing_notifications) == ("Europe/Moscow", False)
        assert (john.locale, john.allow_marketing_notifications) == ("en", True)
        assert sorted(s.scalars(select(ClientGroup.name).where(ClientGroup.client_id == 4001))) == [
            "Робототехника", "Шахматы"]
        vera = client_sync.find(s, "7f0c1b9e-2d4a-4e55-9b1a-3c1f7c0e9a11")
        assert (vera.name, vera.timezone, vera.id < 0) == ("Вера Ким", "Asia/Tashkent", True)
