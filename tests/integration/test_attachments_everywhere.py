"""A rule attaches a file to email (a MIME part) and Telegram (a document) alike: an invoice email
arrives at the SMTP sink with its PDF; each channel's size limit and the file's type are checked with
a reason the history shows."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from vestnik.outbox import emit
from vestnik.shared.config import Settings
from vestnik.shared.models import Client, Notification
from vestnik.shared.seeds import install_default_templates
from vestnik.workers.channels import build_channels
from vestnik.workers.channels.email import EmailChannel
from vestnik.workers.delivery import Delivery
from vestnik.workers.handling import handle_event

PDF = b"%PDF-1.4\n" + b"0" * 3000 + b"\n%%EOF\n"
FILES = {"/inv/7.pdf": ("application/pdf", PDF), "/login": ("text/html; charset=utf-8", b"<html>sign in</html>")}


class _Files(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        kind, body = FILES.get(self.path, ("text/plain", b""))
        self.send_response(200 if self.path in FILES else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def files():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(bot_api, smtp_server) -> Settings:
    return Settings(secret_key="s" * 40, smtp_url=smtp_server.url, telegram_token=bot_api.token,
                    telegram_api_base=bot_api.url)


@pytest.fixture
def factory(session_factory):
    with session_factory() as s:
        install_default_templates(s)
        s.add(Client(id=1, name="Анна", email="anna@example.com", telegram_chat_id="1001", locale="ru"))
        s.commit()
    return session_factory


def invoice(factory, settings, pdf_url: str) -> dict[str, Notification]:
    with factory() as s:
        event_id = emit(s, "invoice_created", recipients=[1], data={
            "invoice_number": "INV-7", "amount": "4500.00", "currency": "RUB",
            "payment_url": "https://pay.example.com/i/7", "invoice_pdf_url": pdf_url, "file_name": "INV-7.pdf"})
        s.commit()
    result = handle_event(factory, build_channels(settings), event_id)
    now = datetime.now(UTC)
    delivery = Delivery(factory, build_channels(settings), settings)
    try:
        for n, _channel, _address, at in result.created:
            if at is None or at <= now:  # the notice; not the payment reminders days later
                delivery.deliver(n)
    finally:
        delivery.close()
    with factory() as s:
        rows = s.scalars(select(Notification).where(Notification.template_code == "INVOICE_CREATED")).all()
        return {n.channel: n for n in rows}


def test_an_invoice_email_arrives_with_its_pdf_and_telegram_gets_the_document(factory, settings, files,
                                                                             smtp_server, bot_api):
    rows = invoice(factory, settings, files + "/inv/7.pdf")
    assert {c: r.status for c, r in rows.items()} == {"email": "sent", "telegram": "sent"}
    [mail] = smtp_server.wait_for(lambda m: len(m) >= 1)
    assert mail["subject"].startswith("Счёт INV-7")
    assert mail["attachments"] == [{"filename": "INV-7.pdf", "mime_type": "application/pdf", "content": PDF}]
    [document] = bot_api.wait_for(lambda m: len(m) >= 1)
    assert document["method"] == "sendDocument" and "INV-7" in document["text"]


def test_a_file_over_the_channels_limit_or_not_a_file_fails_with_the_reason(factory, settings, files,
                                                                           monkeypatch):
    monkeypatch.setattr(EmailChannel, "max_attachment_bytes", 1024)  # the email limit below this PDF
    rows = invoice(factory, settings, files + "/inv/7.pdf")
    assert rows["telegram"].status == "sent"
    assert rows["email"].status == "failed" and "larger than" in rows["email"].last_error
    assert "the email limit" in rows["email"].last_error


def test_an_html_page_instead_of_the_file_is_refused_by_name(factory, settings, files):
    rows = invoice(factory, settings, files + "/login")
    assert {r.status for r in rows.values()} == {"failed"}
    assert all("answered text/html, not a file to attach" in r.last_error for r in rows.values())
